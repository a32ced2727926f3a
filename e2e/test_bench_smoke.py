"""Smoke run of the benchmarks: `bench/run.py --scale tiny` end to end on its own control plane, the
opt-in peer section (Argo Rollouts and Flagger, bench/peer.py) at tiny scale, and the opt-in real-traffic
sections on the session's data plane (its real node, Traefik and Prometheus): dataplane (bench/dataplane.py)
with one run of each kind, ttfa (bench/ttfa.py, time to first answer) with a 1 MiB artifact and a
scale-up to 2 replicas, and oip (bench/oip.py: MLServer and the reference server) with 200 requests each.

The real-traffic ones (marked ``measurement``: 3.6 min of the node lane, the critical path of CI, for
figures that are the benchmark's) are run by `./dev bench --smoke`, not by `./dev test`.

Only the shape of the results is checked (every section present, its numbers numeric); timings are
the benchmark's business, not a test's. The peer smoke run (Argo Rollouts at its defaults and tuned,
Flagger's rollback on a failed check against ours, 2 objects each) fails (never skips) when a peer
cannot be built or found: `./dev test` builds them (e2e/build-argo-rollouts.sh, e2e/build-flagger.sh).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("single", "latency", "rollback", "restart", "memory", "idle", "hashing", "cli")
NUMERIC = {
    "single": ("reaction_p50_ms", "reaction_p99_ms", "route_p50_ms", "route_p99_ms"),
    "latency": ("p50_ms", "p95_ms", "p99_ms", "ready_p50_ms", "measured"),
    "rollback": ("p50_ms", "p99_ms", "deployment_generation_changes", "measured"),
    "restart": ("operator_start_seconds", "changed_routes_seconds", "all_ready_seconds", "endpoints"),
    "idle": ("seconds", "requests", "writes", "operator_cpu_percent"),
    "memory": ("kib_per_object",),
    "hashing": ("cpus",),
    "cli": ("repeats",),
}


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.lane("bench")
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
    for key in ("rollback_help", "help", "first_request", "patch", "rollback_exit"):
        assert _is_number(sections["cli"][key]["p50_ms"]), f"cli.{key}"
    assert data["targets"], "no target rows"
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.lane("bench")
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
            # the shape of every number, not figures: the smallest run that has each of them (one
            # block per Argo setting, one Canary of Flagger's), 2-3 minutes less than the tiny preset
            "--peer-rollouts",
            "4",
            "--peer-blocks",
            "1",
            "--peer-per-block",
            "2",
            "--peer-flagger",
            "1",
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
    assert set(peer["settings"]) == {"defaults", "tuned"}, list(peer["settings"])
    for setting, st in peer["settings"].items():
        _check_argo_setting(setting, st)
    for who in ("argo_rollouts", "operator"):
        assert _is_number(peer["idle"][who]["writes"]), f"idle writes {who}"
    fl = peer["flagger"]
    assert "error" not in fl, f"flagger: {fl['error']}\n{proc.stderr[-4000:]}"
    for side in ("flagger", "ours"):
        assert fl[side]["n"] > 0 and fl[side]["timeouts"] == 0, f"flagger.{side}: {fl[side]}"
        for key in ("p50_ms", "p95_ms", "max_ms", "flip_to_visible_p50_ms"):
            assert _is_number(fl[side][key]), f"flagger.{side}.{key} = {fl[side][key]!r}"
    assert _is_number(fl["flagger_requests_per_second"]), fl["flagger_requests_per_second"]
    assert proc.returncode == 0, proc.stderr[-4000:]


def _check_argo_setting(setting: str, st: dict[str, Any]) -> None:
    """One Argo setting's samples, ratios, RSS, and per block the quiet wait and Argo's own figures."""
    for kind in ("promote", "abort", "weight", "rollback"):
        assert st[kind]["n"] > 0, f"{setting}: no {kind} sample: {st[kind]}"
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            assert _is_number(st[kind][key]), f"{setting}.{kind}.{key} = {st[kind][key]!r}"
    for key in ("weight_vs_promote_p50", "weight_vs_abort_p50", "rollback_vs_abort_p50"):
        assert _is_number(st["ratios"][key]), f"{setting}.ratios.{key} = {st['ratios'][key]!r}"
    for who in ("argo_rollouts", "operator"):
        assert _is_number(st["rss_mib"][who]) and st["rss_mib"][who] > 0, f"{setting}: rss {who}"
    assert st["blocks"], f"{setting}: no block"
    for blk in st["blocks"]:
        for key in ("total_s", "argo_scale_down_s", "argo_queues_s", "ours_queue_s"):
            assert _is_number(blk["quiet"][key]), f"{setting}: quiet.{key} = {blk['quiet']}"
        assert blk["argo"]["adds"].get("Rollouts", 0) > 0, f"{setting}: no Rollouts-queue adds: {blk['argo']}"
        assert _is_number(blk["argo"]["rollouts_reconcile_mean_ms"]), blk["argo"]
        assert sum(blk["argo"]["api_requests"].values()) > 0, blk["argo"]
        assert _is_number(blk["throttled"]["requests"]) and _is_number(blk["throttled"]["seconds"])


@pytest.mark.measurement
def test_bench_real_traffic_once(dataplane) -> None:  # type: ignore[no-untyped-def]
    """The real-traffic sections (bench/dataplane.py, bench/ttfa.py) once each, through the functions
    bench/run.py calls, on the session's data plane: the same harness, without a control plane and a
    real node of their own (one per machine at a time: they would wait for the session's)."""
    bench_dir = str(REPO / "bench")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import dataplane as bench_dataplane  # bench/dataplane.py
    import ttfa

    dp = bench_dataplane.run(1, 1, 1, dataplane)
    for section, keys in {
        "rollback": ("command_to_last_new_response", "command_returned", "command_reported_write_to_route"),
        "automatic": ("visible_to_failed", "visible_to_route_on_baseline", "visible_to_last_canary_response"),
        "steps": ("pause_end_to_next_weight_in_route",),
    }.items():
        for key in keys:
            st = dp[section][key]
            ok = st["n"] > 0 and _is_number(st["p50_ms"]) and _is_number(st["p99_ms"])
            assert ok, f"{section}.{key}: {st}"
    objs = bench_dataplane.namespace(dataplane, ttfa.NS)
    serving = bench_dataplane.operator_settings("")["serving"]
    _check_ttfa(ttfa.run(dataplane, objs, serving, [1.0], 2, print), "")


def _check_ttfa(tt: dict[str, object] | None, stderr: str) -> None:
    """Every phase of both sides measured for the one size, and the scale-up's figures."""
    assert tt is not None, f"ttfa section missing:\n{stderr[-4000:]}"
    assert "error" not in tt, f"ttfa: {tt['error']}\n{stderr[-4000:]}"
    (size,) = tt["sizes"]  # type: ignore[index]
    for side in ("ours", "plain"):
        phases = size[side]["phases_s"]
        only_ours = ("verify", "hash", "record", "route")
        for key, value in phases.items():
            if side == "plain" and key in only_ours:
                assert value is None, f"plain.{key} = {value!r}"
            else:
                assert _is_number(value) and value >= 0, f"{side}.{key} = {value!r}"
        assert _is_number(size[side]["init_mib_s"]), f"{side}.init_mib_s"
    assert _is_number(size["ratio"]), size["ratio"]
    scale = tt["scale_up"]  # type: ignore[index]
    for side in ("ours", "plain"):
        assert scale[side]["answering_pods"] == 2, scale[side]
        assert _is_number(scale[side]["all_ready_s"]) and _is_number(scale[side]["all_answering_s"]), scale[
            side
        ]


@pytest.mark.measurement
def test_bench_oip_once(dataplane) -> None:  # type: ignore[no-untyped-def]
    """The oip section (bench/oip.py) with a few requests, through the function bench/run.py calls, on
    the session's data plane: both runtimes answered correctly and every number is there."""
    bench_dir = str(REPO / "bench")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import oip  # bench/oip.py

    out = oip.run(dataplane, 200, 50.0, print)  # 4 s per runtime at 50/s
    for runtime in ("mlserver", "reference"):
        sec = out[runtime]
        assert _is_number(sec["apply_to_first_correct_s"]) and sec["apply_to_first_correct_s"] > 0, sec
        lat = sec["latency"]
        assert lat["n"] == 200 and lat["errors"] == 0, lat
        assert _is_number(lat["p50_ms"]) and _is_number(lat["p99_ms"]) and _is_number(lat["achieved_rate"])
