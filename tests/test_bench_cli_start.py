"""The benchmark's `cli` section (bench/cli_start.py, through bench/run.py) runs at a tiny repeat count
and reports numbers: the shape only, never a timing (the section prints; it asserts nothing)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
KEYS = ("rollback_help", "help", "first_request", "patch", "rollback_exit")


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_the_cli_section_runs_and_reports_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import run  # bench/run.py

    out = tmp_path / "bench.json"
    assert run.main(["--only", "cli", "--cli-repeats", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    section = data["sections"]["cli"]
    for key in KEYS:
        assert section[key]["n"] == 2 and _number(section[key]["p50_ms"]) and _number(section[key]["max_ms"])
        assert section[key]["max_ms"] >= section[key]["p50_ms"]
    for key in ("rollback_help", "help", "rollback_exit"):  # the process's own CPU, whatever the load
        assert _number(section[key]["cpu_p50_ms"])
    firsts, patches, exits = (section[k]["p50_ms"] for k in ("first_request", "patch", "rollback_exit"))
    assert firsts < patches < exits  # the order of events in each run
    path = "/apis/modelversioning.io/v1alpha1/namespaces/models/modelendpoints/fraud-detector"
    assert section["first_request_path"] == f"GET {path}"
    rows = [r for r in data["targets"] if r["section"] == "cli"]
    assert len(rows) == len(KEYS) and all(r["met"] is None and r["target"] == "" for r in rows)  # no targets
    table = capsys.readouterr().out
    assert "start -> first API request: p50 / max (ms)" in table and "rollback --help" in table
    sys.modules.pop("run", None)
