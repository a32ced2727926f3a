#!/usr/bin/env python3
"""Benchmarks with real traffic: a real node, real model pods, Traefik and Prometheus (e2e harness).

    python bench/dataplane.py [--rollbacks 5] [--auto 5] [--steps 2]
    ./dev bench --only dataplane [--dp-rollbacks N --dp-auto N --dp-steps N]   (results in its JSON)

Clients send predictions continuously through the gateway in every section (2 threads, at most ~50
requests/s each); each endpoint routes its own host (an HTTPRoute deleted in the background would
share a reused host's traffic).

1. rollback: an endpoint serves 2.4.1 (2.3.8 warm at 0 %); `kubectl models rollback` (the plugin, as
   a user runs it) moves all traffic back. Measured: from the command's start to the last response of
   2.4.1 (every response after it comes from 2.3.8), and the command's own report (its API write to
   the route at 100 %). Rolled forward again with an API write; repeated.
2. automatic rollback: a canary answering 30 % of its requests with 500 ramps to 30 % under an
   error-rate analysis (every 2 s, 5 s window, max 5 %). Measured: from the first moment the canary's
   error rate above the threshold is visible in Prometheus (polled every 100 ms with the analysis's own
   query) to the rollout's Failed status, to the route carrying the baseline only (watched) and to
   the last response from the canary a client saw. Then the declared weights go back (applied at once)
   and, 8 s later (past the rate window), forward again: a new rollout.
3. steps: a good canary through setWeight 10/30/60 with a 5 s pause after each, analysis every 2 s.
   Measured: from each pause's end (the step's start + its duration, or the first passing measurement
   in it if later) to the route carrying the next weight (watched). Repeated by going back and forth.

Printed as numbers (p50 / p99; below 100 samples the p99 is the largest), never asserted. Needs root
(the real node), like the e2e tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from controlplane import ControlPlane  # noqa: E402
from dataplane_harness import ArtifactServer, DataPlane  # noqa: E402
from gateway import Traefik  # noqa: E402
from helpers import Objects, cond_is, wait_for  # noqa: E402
from images import OPERATOR_IMAGE  # noqa: E402
from operator_proc import OperatorProcess  # noqa: E402
from prometheus import Prometheus  # noqa: E402
from test_dataplane import (  # noqa: E402
    ObjectWatch,
    _traffic,
    canary_weights,
    endpoint,
    live_on,
    register,
)

NS = "bench-dataplane"
KUBECTL_MODELS = Path(sys.executable).parent / "kubectl-models"
OLD = (
    {"name": "stable", "version": "2.3.8", "weight": 100},
    {"name": "canary", "version": "2.4.1", "weight": 0},
)
NEW = (
    {"name": "stable", "version": "2.3.8", "weight": 0},
    {"name": "canary", "version": "2.4.1", "weight": 100},
)


def _log(msg: str) -> None:
    print(f"[bench dataplane] {msg}", file=sys.stderr, flush=True)


def stats(xs: list[float]) -> dict[str, Any]:
    """Seconds -> {n, p50_ms, p99_ms, samples_ms} (nearest rank: p99 of fewer than 100 is the max)."""
    ms = sorted(round(x * 1000, 1) for x in xs)
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "samples_ms": []}

    def rank(p: float) -> float:
        return ms[max(0, math.ceil(p * len(ms)) - 1)]

    return {"n": len(ms), "p50_ms": rank(0.5), "p99_ms": rank(0.99), "samples_ms": ms}


def fmt(st: dict[str, Any]) -> str:
    if not st["n"]:
        return "n/a"
    return f"p50 {st['p50_ms']:.0f} ms, p99 {st['p99_ms']:.0f} ms (n={st['n']})"


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _rollout(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("rollout") or {})


def _endpoint_watch(objs: Objects, name: str, extract: Callable[[dict[str, Any]], Any]) -> ObjectWatch:
    return ObjectWatch(objs, "modelversioning.io", "v1alpha1", "modelendpoints", name, extract)


def _setup(dp: DataPlane, objs: Objects, name: str, variants: Any, canary_env: dict[str, str] | None = None,
           strategy: dict[str, Any] | None = None) -> DataPlane:  # fmt: skip
    dp = replace(dp, host=f"{name}.bench.example.com")
    register(dp, objs, name, "2.3.8")
    register(dp, objs, name, "2.4.1", env=canary_env)
    extra = {"strategy": strategy} if strategy else {}
    objs.create(endpoint(dp, name, name, [dict(v) for v in variants], **extra))
    wait_for(lambda: cond_is(objs.mep(name), "Ready", "True"), 300, f"{name} Ready")
    want = "2.3.8" if variants[0]["weight"] else "2.4.1"
    wait_for(lambda: live_on(dp, {want: 1}), 60, f"{name}: {want} answers through Traefik")
    return dp


def _set(objs: Objects, name: str, variants: Any) -> None:
    objs.patch_mep(name, {"spec": {"variants": [dict(v) for v in variants]}})


# ------------------------------------------------------------------------------------ rollback
def rollbacks(dp: DataPlane, objs: Objects, runs: int) -> dict[str, Any]:
    """`kubectl models rollback` under load."""
    name = "chat"
    dp = _setup(dp, objs, name, NEW)
    cmd = (
        [str(KUBECTL_MODELS)]
        if KUBECTL_MODELS.exists()
        else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
    )
    cmd += ["--kubeconfig", str(dp.cluster.kubeconfig), "-n", objs.ns, "rollback", name, "-o", "json"]
    to_last_new, returned, reported = [], [], []
    with _traffic(dp) as loop:
        loop.wait_until(lambda s: s.status == 200 and s.version == "2.4.1", settle=20)
        for i in range(runs):
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            returned.append(time.monotonic() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"kubectl models rollback failed ({proc.returncode}): {proc.stderr}")
            out = json.loads(proc.stdout)
            assert out["target"] == "stable", out
            reported.append(float(out["seconds"]))
            loop.wait_until(lambda s: s.status == 200 and s.version == "2.3.8", since=t0, settle=40)
            last_new = max((s.t for s in loop.since(t0) if s.version == "2.4.1"), default=t0)
            to_last_new.append(last_new - t0)
            _log(f"rollback {i}: command -> last 2.4.1 {last_new - t0:.2f}s (command {returned[-1]:.2f}s)")
            t1 = time.monotonic()
            _set(objs, name, NEW)  # forward again, for the next run
            loop.wait_until(lambda s: s.status == 200 and s.version == "2.4.1", since=t1, settle=40)
    bad = loop.failures()
    objs.delete_mep(name)
    return {
        "command_to_last_new_response": stats(to_last_new),
        "command_returned": stats(returned),
        "command_reported_write_to_route": stats(reported),
        "requests": len(loop.samples),
        "non_2xx": len(bad),
    }


# ------------------------------------------------------------------------ automatic rollback
def automatic(dp: DataPlane, objs: Objects, runs: int) -> dict[str, Any]:
    from modelversioning.analysis.templates import Vars, builtin, render_query

    name, window, threshold = "auto", "5s", 0.05
    metric = {"name": "errors", "template": "error-rate", "window": window, "max": threshold}
    strategy = {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": [{"setWeight": 30}, {"pause": {"duration": "60s"}}],
            "analysis": {"interval": "2s", "metrics": [metric]},
        }
    }
    dp = _setup(dp, objs, name, OLD, {"MODEL_SERVER_ERROR_RATE": "0.3"}, strategy)
    # the analysis's own query (the operator narrows the window to the rollout's age at first)
    query = render_query(
        builtin("error-rate", "modelServer", 0.99), Vars(objs.ns, name, "canary", "2.4.1", "", window)
    )
    to_failed, to_route, to_clients = [], [], []
    with (
        ObjectWatch.route(objs, name) as route,
        _endpoint_watch(objs, name, lambda o: _rollout(o).get("phase")) as phase,
        _traffic(dp) as loop,
    ):
        for i in range(runs):
            t_go = time.monotonic()
            _set(objs, name, NEW)

            def visible() -> float | None:
                v = dp.prom.query_value(query)
                return time.monotonic() if v is not None and not math.isnan(v) and v > threshold else None

            t_visible = wait_for(
                visible, 120, "the canary's error rate above the threshold in Prometheus", 0.1
            )
            wait_for(lambda: phase.last() == "Failed", 120, "rollout Failed", 0.05)
            t_failed = next(t for t, _, p in reversed(phase.changes) if p == "Failed")
            wait_for(
                lambda t=t_go: canary_weights(route)[-1] == 0 and route.changes[-1][0] > t, 60, "back", 0.05
            )
            t_route = route.changes[-1][0]
            loop.wait_until(lambda s: s.status == 200 and s.version == "2.3.8", since=t_route, settle=40)
            t_last = max((s.t for s in loop.since(t_go) if s.version == "2.4.1"), default=t_route)
            to_failed.append(t_failed - t_visible)
            to_route.append(t_route - t_visible)
            to_clients.append(t_last - t_visible)
            _log(
                f"automatic {i}: visible in Prometheus {t_visible - t_go:.2f}s after the change; then "
                f"Failed {t_failed - t_visible:+.2f}s, route on the baseline {t_route - t_visible:+.2f}s, "
                f"last canary response {t_last - t_visible:+.2f}s"
            )
            _set(objs, name, OLD)  # applied at once (a rollback never ramps); a new rollout next time
            time.sleep(8)  # past the rate window: the next run's visibility is its own errors
    objs.delete_mep(name)
    return {
        "visible_to_failed": stats(to_failed),
        "visible_to_route_on_baseline": stats(to_route),
        "visible_to_last_canary_response": stats(to_clients),
        "requests": len(loop.samples),
        "non_2xx": len(loop.failures()),
    }


# ------------------------------------------------------------------------------------- steps
def steps(dp: DataPlane, objs: Objects, runs: int) -> dict[str, Any]:
    name, pause = "steps", 5.0
    plan: list[dict[str, Any]] = []
    for w in (10, 30, 60):
        plan += [{"setWeight": w}, {"pause": {"duration": f"{pause:g}s"}}]
    metric = {"name": "errors", "template": "error-rate", "window": "5s", "max": 0.05}
    strategy = {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": plan,
            "analysis": {"interval": "2s", "metrics": [metric]},
        }
    }
    dp = _setup(dp, objs, name, OLD, None, strategy)
    delays: list[float] = []

    def step_of(o: dict[str, Any]) -> Any:
        ro = _rollout(o)
        return (ro.get("target"), ro.get("step"), ro.get("stepStartedAt"), ro.get("phase"))

    with (
        ObjectWatch.route(objs, name) as route,
        _endpoint_watch(objs, name, step_of) as status,
        _traffic(dp),
    ):
        for i in range(runs):
            t_go = time.monotonic()
            _set(objs, name, NEW)
            wait_for(
                lambda: status.last()[3] == "Succeeded" and canary_weights(route)[-1] == 100, 180, "100 %"
            )
            ro = _rollout(objs.mep(name))
            target = ro["target"]
            passed = sorted(_epoch(m["at"]) for m in ro["measurements"] if m["verdict"] == "Passed")
            pauses = {
                idx: _epoch(started)
                for tgt, idx, started, _ in status.values()
                if tgt == target and idx is not None and idx < len(plan) and "pause" in plan[idx] and started
            }
            changes = [(wall, (w or {}).get("canary", 0)) for t, wall, w in route.changes if t >= t_go]
            run = []
            for idx, started in sorted(pauses.items()):
                end = max(started + pause, next((p for p in passed if p >= started), started + pause))
                weight = plan[idx - 1]["setWeight"]
                nxt = next((wall for wall, c in changes if wall >= started and c != weight), None)
                if nxt is not None:
                    run.append(nxt - end)
            delays += run
            _log(f"steps {i}: pause end -> next weight in the route {[round(d * 1000) for d in run]} ms")
            t_back = time.monotonic()
            _set(objs, name, OLD)
            wait_for(lambda t=t_back: canary_weights(route)[-1] == 0 and route.changes[-1][0] > t, 60, "at 0")
    objs.delete_mep(name)
    return {"pause_end_to_next_weight_in_route": stats(delays), "pause_seconds": pause}


# --------------------------------------------------------------------------------------- run
def operator_settings(prom_url: str) -> dict[str, Any]:
    return {
        "artifacts": {"allowPrivateNetworks": True},
        "serving": {
            "initImage": OPERATOR_IMAGE,
            "initImagePullPolicy": "Never",
            "drainSeconds": 2,
            "gatewayApiFeatures": [],
        },
        "analysis": {"prometheusUrl": prom_url, "timeoutSeconds": 3},
    }


@contextlib.contextmanager
def environment() -> Iterator[DataPlane]:
    """A control plane with the real node, Traefik, Prometheus, the artifact server and the operator
    (configured by operator_settings), for every real-traffic section of one run (dataplane, ttfa)."""
    with ControlPlane(real_node=True) as cp, Traefik(cp) as gw, Prometheus(cp=cp, traefik=gw) as prom:
        art = ArtifactServer(Path(cp.workdir or "/tmp") / "bench-artifacts")
        try:
            with OperatorProcess(cp.kubeconfig, settings=operator_settings(prom.url)) as op:
                yield DataPlane(cp, cp.real_node, gw, prom, art, op, cp.real_node.pod_placement())
        finally:
            art.httpd.shutdown()


def namespace(dp: DataPlane, name: str) -> Objects:
    """A namespace of its own on the environment's cluster, and an API client for it."""
    dp.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(dp.cluster.kubeconfig), client_configuration=cfg)
    objs = Objects(client.ApiClient(cfg), name)
    wait_for(lambda: objs.core.read_namespaced_service_account("default", name), 30, "namespace ready")
    return objs


def run(rollback_runs: int, auto_runs: int, step_runs: int, dp: DataPlane | None = None) -> dict[str, Any]:
    """The sections on `dp` (default: an environment of their own); print and return the numbers."""
    if dp is None:
        with environment() as env:
            return run(rollback_runs, auto_runs, step_runs, env)
    out: dict[str, Any] = {"runs": {"rollback": rollback_runs, "automatic": auto_runs, "steps": step_runs}}
    t0 = time.monotonic()
    objs = namespace(dp, NS)
    if rollback_runs > 0:
        out["rollback"] = rollbacks(dp, objs, rollback_runs)
    if auto_runs > 0:
        out["automatic"] = automatic(dp, objs, auto_runs)
    if step_runs > 0:
        out["steps"] = steps(dp, objs, step_runs)
    out["seconds"] = round(time.monotonic() - t0, 1)
    report(out)
    return out


LINES = {
    "rollback": (
        "kubectl models rollback under load",
        {
            "command_to_last_new_response": "command start -> last response of the new version",
            "command_returned": "command start -> command returned",
            "command_reported_write_to_route": "its API write -> route at 100 % (its own report)",
        },
    ),
    "automatic": (
        "automatic rollback under load",
        {
            "visible_to_failed": "bad value visible in Prometheus -> rollout Failed",
            "visible_to_route_on_baseline": "bad value visible in Prometheus -> route on the baseline",
            "visible_to_last_canary_response": "bad value visible in Prometheus -> last canary response",
        },
    ),
    "steps": ("steps", {"pause_end_to_next_weight_in_route": "pause end -> next weight in the route"}),
}


def report(out: dict[str, Any]) -> None:
    print("real traffic (numbers, not assertions; see docs/benchmarks.md):")
    for section, (title, rows) in LINES.items():
        sec = out.get(section)
        if sec is None:
            continue
        load = f" ({sec['requests']} requests, {sec['non_2xx']} non-2xx)" if "requests" in sec else ""
        print(f"  {title}{load}:")
        for key, label in rows.items():
            print(f"    {label + ':':<60} {fmt(sec[key])}")
    print(yaml.safe_dump({"seconds": out.get("seconds")}).strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rollbacks", type=int, default=5, help="kubectl models rollback runs")
    ap.add_argument("--auto", type=int, default=5, help="automatic rollback runs")
    ap.add_argument("--steps", type=int, default=2, help="good-canary runs (3 step transitions each)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    out = run(args.rollbacks, args.auto, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
