"""Smoke run of the benchmarks: `bench/run.py --scale tiny` end to end on its own control plane, the
opt-in peer section (Argo Rollouts, bench/peer.py) at tiny scale, and the opt-in dataplane section
(real traffic, bench/dataplane.py) with one run of each kind on a real node of its own.

Only the shape of the results is checked (every section present, its numbers numeric); timings are
the benchmark's business, not a test's. The peer smoke run fails (never skips) when the Argo Rollouts
controller cannot be built or found: `./dev test` builds it (e2e/build-argo-rollouts.sh).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("single", "latency", "rollback", "restart", "memory", "idle", "hashing")
NUMERIC = {
    "single": ("reaction_p50_ms", "reaction_p99_ms", "route_p50_ms", "route_p99_ms"),
    "latency": ("p50_ms", "p95_ms", "p99_ms", "ready_p50_ms", "measured"),
    "rollback": ("p50_ms", "p99_ms", "deployment_generation_changes", "measured"),
    "restart": ("operator_start_seconds", "changed_routes_seconds", "all_ready_seconds", "endpoints"),
    "idle": ("seconds", "requests", "writes", "operator_cpu_percent"),
    "memory": ("kib_per_object",),
    "hashing": ("cpus",),
}


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def test_bench_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--scale", "tiny", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), f"no JSON written (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    data = json.loads(out.read_text())
    sections = data["sections"]
    for name in SECTIONS:
        assert name in sections, f"section {name} missing:\n{proc.stderr[-4000:]}"
        assert "error" not in sections[name], f"{name}: {sections[name]['error']}\n{proc.stderr[-4000:]}"
        for key in NUMERIC[name]:
            assert _is_number(sections[name].get(key)), f"{name}.{key} = {sections[name].get(key)!r}"
    steps = sections["memory"]["steps"]
    assert len(steps) >= 3 and all(_is_number(s["rss_mib"]) and s["rss_mib"] > 0 for s in steps)
    assert isinstance(sections["idle"]["by_verb"], dict)
    for case in ("single", "many"):
        for key in ("verify_artifact_mib_s", "hashlib_mib_s", "sha256sum_mib_s", "verify_vs_hashlib"):
            assert _is_number(sections["hashing"][case][key]), f"hashing.{case}.{key}"
    assert data["targets"], "no target rows"
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_bench_peer_tiny(tmp_path: Path) -> None:
    out = tmp_path / "peer.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--scale",
            "tiny",
            "--only",
            "peer",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.exists(), f"no JSON written (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    peer = json.loads(out.read_text())["sections"].get("peer")
    assert peer is not None, f"peer section missing:\n{proc.stderr[-4000:]}"
    assert "error" not in peer, f"peer: {peer['error']}\n{proc.stderr[-4000:]}"
    for kind in ("promote", "abort", "weight", "rollback"):
        assert peer[kind]["n"] > 0, f"no {kind} sample: {peer[kind]}"
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            assert _is_number(peer[kind][key]), f"peer.{kind}.{key} = {peer[kind][key]!r}"
    for key in ("weight_vs_promote_p50", "weight_vs_abort_p50", "rollback_vs_abort_p50"):
        assert _is_number(peer["ratios"][key]), f"peer.ratios.{key} = {peer['ratios'][key]!r}"
    for who in ("argo_rollouts", "operator"):
        assert _is_number(peer["rss_mib"][who]) and peer["rss_mib"][who] > 0, f"rss {who}"
        assert _is_number(peer["idle"][who]["writes"]), f"idle writes {who}"
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.own_real_node  # its own control plane and real node: runs before the session's takes the lock
def test_bench_dataplane_once(tmp_path: Path) -> None:
    out = tmp_path / "dataplane.json"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--only", "dataplane", "--json", str(out)]
    cmd += ["--dp-rollbacks", "1", "--dp-auto", "1", "--dp-steps", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.exists(), f"no JSON written (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    dp = json.loads(out.read_text())["sections"].get("dataplane")
    assert dp is not None, f"dataplane section missing:\n{proc.stderr[-4000:]}"
    assert "error" not in dp, f"dataplane: {dp['error']}\n{proc.stderr[-4000:]}"
    for section, keys in {
        "rollback": ("command_to_last_new_response", "command_returned", "command_reported_write_to_route"),
        "automatic": ("visible_to_failed", "visible_to_route_on_baseline", "visible_to_last_canary_response"),
        "steps": ("pause_end_to_next_weight_in_route",),
    }.items():
        for key in keys:
            st = dp[section][key]
            ok = st["n"] > 0 and _is_number(st["p50_ms"]) and _is_number(st["p99_ms"])
            assert ok, f"{section}.{key}: {st}"
    assert proc.returncode == 0, proc.stderr[-4000:]
