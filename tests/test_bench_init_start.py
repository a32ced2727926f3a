"""The benchmark's `init` section (bench/init_start.py, through bench/run.py) runs at a tiny size and
reports numbers: the shape only, never a timing (the section prints; it asserts nothing)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
METHODS = ("verify_artifact", "plain_copy")


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_the_init_section_runs_and_reports_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import run  # bench/run.py

    out = tmp_path / "bench.json"
    argv = ["--only", "init", "--init-sizes", "1", "--init-repeats", "2", "--json", str(out)]
    assert run.main([*argv, "--hash-dir", str(tmp_path)]) == 0
    section = json.loads(out.read_text())["sections"]["init"]
    one = section["sizes"]["1"]
    assert one["n"] == 2 and one["mib"] == 1
    for method in METHODS:
        m = one[method]
        for key in ("wall", "cpu", "first_request"):
            assert _number(m[f"{key}_p50_s"]) and _number(m[f"{key}_best_s"])
            assert m[f"{key}_best_s"] <= m[f"{key}_p50_s"]
        assert m["first_request_p50_s"] < m["wall_p50_s"]  # the request came before the exit
        assert _number(m["mib_s_p50"]) and m["mib_s_best"] >= m["mib_s_p50"]
    assert _number(one["wall_ratio_p50"]) and _number(one["cpu_ratio_p50"])
    assert isinstance(one["start_extra_s"], float)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # the temp files are gone
    table = capsys.readouterr().out
    assert "1 MiB: verify-artifact / plain copy, wall p50 (s)" in table
    sys.modules.pop("run", None)
