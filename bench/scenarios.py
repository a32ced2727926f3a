"""The measurements made on the running cluster (see run.py for the order and the scales)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cluster import BenchCluster, Weights, ep_converged, percentile, safe_vs_weights


def _stats(samples_ms: list[float], prefix: str = "") -> dict[str, float]:
    if not samples_ms:
        return {f"{prefix}{k}": float("nan") for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")}
    return {
        f"{prefix}p50_ms": round(percentile(samples_ms, 50), 2),
        f"{prefix}p95_ms": round(percentile(samples_ms, 95), 2),
        f"{prefix}p99_ms": round(percentile(samples_ms, 99), 2),
        f"{prefix}max_ms": round(max(samples_ms), 2),
        f"{prefix}mean_ms": round(sum(samples_ms) / len(samples_ms), 2),
    }


def _change(
    bc: BenchCluster, endpoint: str, weights: Weights, timeout: float
) -> tuple[float, float, float] | None:
    """Patch the weights; (patch round trip, write -> VirtualService event, write -> status Ready event)
    in ms, or None if the route did not show the weights in time."""
    assert bc.watch_vs is not None and bc.watch_ep is not None
    mark_vs, mark_ep = bc.watch_vs.mark(), bc.watch_ep.mark()
    t_send = time.monotonic()
    t = bc.set_weights(endpoint, weights)
    ev = bc.watch_vs.wait_event(endpoint, lambda o: safe_vs_weights(o) == weights, mark_vs, timeout)
    if ev is None:
        return None
    ready = bc.watch_ep.wait_event(endpoint, lambda o: ep_converged(o, weights), mark_ep, timeout)
    ready_ms = (ready.at - t) * 1000 if ready is not None else float("nan")
    return (t - t_send) * 1000, (ev.at - t) * 1000, ready_ms


def breakdown(bc: BenchCluster, start: int, end: int, endpoint: str) -> dict[str, Any]:
    """Where a weight change's time goes, from the API server's audit timestamps: each spec PATCH of
    the endpoint, then the operator's first route PATCH after it and its first status PATCH after that."""
    from cluster import OPERATOR_USER

    reqs = bc.audit_requests(start, end, endpoint)
    spec = [r for r in reqs if r["user"] != OPERATOR_USER and r["verb"] == "patch"
            and r["resource"] == "modelendpoints"]
    route = [r for r in reqs if r["user"] == OPERATOR_USER and r["resource"] == "virtualservices"]
    status = [r for r in reqs if r["user"] == OPERATOR_USER and r["resource"] == "modelendpoints/status"]
    react, write, st_after, spec_ms = [], [], [], []
    for i, s in enumerate(spec):
        nxt = spec[i + 1]["received"] if i + 1 < len(spec) else float("inf")
        r = next((x for x in route if s["received"] < x["received"] < nxt), None)
        if r is None:
            continue
        spec_ms.append((s["completed"] - s["received"]) * 1000)
        react.append((r["received"] - s["completed"]) * 1000)
        write.append((r["completed"] - r["received"]) * 1000)
        st = next((x for x in status if r["received"] < x["received"] < nxt), None)
        if st is not None:
            st_after.append((st["received"] - r["completed"]) * 1000)

    def p(xs: list[float], q: float) -> float:
        return round(percentile(xs, q), 2) if xs else float("nan")

    return {
        "pairs": len(react),
        "spec_patch_apiserver_p50_ms": p(spec_ms, 50),
        "operator_reaction_p50_ms": p(react, 50),
        "operator_reaction_p99_ms": p(react, 99),
        "route_patch_apiserver_p50_ms": p(write, 50),
        "route_patch_apiserver_p99_ms": p(write, 99),
        "status_patch_after_route_p50_ms": p(st_after, 50),
        "route_patches": len(route),
        "status_patches": len(status),
        "spec_patches": len(spec),
    }


def weight_changes(bc: BenchCluster, endpoint: str, k: int, log: Callable[[str], None]) -> dict[str, Any]:
    """K weight edits of one endpoint, each measured from the PATCH's return to the VirtualService
    event carrying the new weights (and to the endpoint's status reporting them, Ready)."""
    bc.wait_converged(time.monotonic(), 120, endpoints=[endpoint], versions=False)
    bc.wait_quiet(1.0, 30)
    assert bc.watch_vs is not None
    bc.watch_vs.forget_history()
    route, ready, patch = [], [], []
    failures = 0
    prev = bc.desired[endpoint]["stable"]
    off0 = bc.audit_offset()
    for i in range(k):
        w = 10 + (i * 37) % 81
        if w == prev:
            w = w + 1 if w < 90 else w - 1
        res = _change(bc, endpoint, {"stable": w, "canary": 100 - w}, timeout=30)
        prev = w
        if res is None:
            failures += 1
            continue
        patch.append(res[0])
        route.append(res[1])
        if res[2] == res[2]:  # not NaN
            ready.append(res[2])
    out: dict[str, Any] = {
        "endpoint": endpoint,
        "changes": k,
        "measured": len(route),
        "timeouts": failures,
        **_stats(route),
        **_stats(ready, "ready_"),
        "patch_p50_ms": round(percentile(patch, 50), 2) if patch else float("nan"),
        "early_arrivals": sum(1 for x in route if x < 0),
    }
    bc.wait_quiet(1.0, 30)
    out["breakdown"] = breakdown(bc, off0, bc.audit_offset(), endpoint)
    log(f"weight change: p50 {out['p50_ms']} ms, p95 {out['p95_ms']} ms, p99 {out['p99_ms']} ms "
        f"(status Ready p50 {out['ready_p50_ms']} ms)")
    return out


def rollbacks(bc: BenchCluster, endpoint: str, runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The new version (canary) at 100% with the previous one (stable) warm at 0%; roll back to the
    previous version at 100% and time it until the route shows it; roll forward again; R times."""
    new, old = {"stable": 0, "canary": 100}, {"stable": 100, "canary": 0}
    bc.set_weights(endpoint, new)
    conv = bc.wait_converged(time.monotonic(), 120, endpoints=[endpoint], versions=False)
    if not conv.ok:
        raise RuntimeError(f"{endpoint} did not converge at canary=100 before the rollbacks")
    gen0 = {v: bc.deployment_generation(endpoint, v) for v in ("stable", "canary")}
    back, back_ready, forward = [], [], []
    failures = 0
    off0 = bc.audit_offset()
    for _ in range(runs):
        res = _change(bc, endpoint, old, timeout=30)
        if res is None:
            failures += 1
        else:
            back.append(res[1])
            if res[2] == res[2]:
                back_ready.append(res[2])
        res = _change(bc, endpoint, new, timeout=30)
        if res is None:
            failures += 1
        else:
            forward.append(res[1])
    gen1 = {v: bc.deployment_generation(endpoint, v) for v in ("stable", "canary")}
    out: dict[str, Any] = {
        "endpoint": endpoint,
        "runs": runs,
        "measured": len(back),
        "timeouts": failures,
        **_stats(back),
        **_stats(back_ready, "ready_"),
        "roll_forward_p50_ms": round(percentile(forward, 50), 2) if forward else float("nan"),
        "deployment_generation_changes": sum(gen1[v] - gen0[v] for v in gen0),
        "breakdown": breakdown(bc, off0, bc.audit_offset(), endpoint),
    }
    log(f"rollback: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms; Deployments re-rolled: "
        f"{out['deployment_generation_changes']}")
    return out


def restart_convergence(
    bc: BenchCluster, changed: int, timeout: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Stop the operator, change `changed` endpoints' weights, start it; time until every endpoint is
    Ready at its declared weights (status + VirtualService) and every ModelVersion is Ready again."""
    assert bc.op is not None and bc.watch_vs is not None
    pre = bc.wait_converged(time.monotonic(), 300)
    if not pre.ok:
        raise RuntimeError("the fleet did not converge before the restart test")
    names = bc.eps[2:2 + changed] if len(bc.eps) >= changed + 2 else bc.eps[:changed]
    before = {n: dict(w) for n, w in bc.desired.items()}
    t = time.monotonic()
    bc.op.stop()
    stop_s = time.monotonic() - t
    mark_vs = bc.watch_vs.mark()

    def flip(name: str) -> None:
        cur = bc.desired[name]["stable"]
        w = 40 if cur != 40 else 60
        bc.set_weights(name, {"stable": w, "canary": 100 - w})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(flip, names))
    off = bc.audit_offset()
    t0 = time.monotonic()
    started_s = bc.start_operator()
    with bc.profiled("restart", 60):
        conv = bc.wait_converged(t0, timeout)
    bc.wait_quiet(2.0, 60)
    reqs = bc.operator_requests(off)
    routes_at = []
    for name in names:
        want = bc.desired[name]
        ev = bc.watch_vs.wait_event(name, lambda o, w=want: safe_vs_weights(o) == w, mark_vs, 0)
        if ev is not None:
            routes_at.append(ev.at - t0)
    # Every route the restarted operator wrote should carry either the weights from before the restart
    # or the declared ones; anything else is a transient traffic shift made by the restart itself.
    unexpected = []
    with bc.watch_vs.cond:
        for name, evs in bc.watch_vs.events.items():
            for ev in evs:
                w = safe_vs_weights(ev.obj)
                if ev.seq > mark_vs and w not in (before.get(name), bc.desired.get(name)):
                    unexpected.append({"endpoint": name, "weights": w, "after_start_s": round(ev.at - t0, 3),
                                       "expected": bc.desired.get(name), "before": before.get(name)})
    out = {
        "endpoints": len(bc.desired),
        "versions": len(bc.mvs),
        "changed": len(names),
        "stop_seconds": round(stop_s, 3),
        "operator_start_seconds": round(started_s, 3),
        "changed_routes_seconds": round(max(routes_at), 3) if len(routes_at) == len(names) else float("nan"),
        "all_ready_seconds": round(conv.seconds, 3),
        "converged": conv.ok,
        "converged_objects": conv.done,
        "objects": conv.total,
        "operator_requests": reqs["by_verb_resource"],
        "operator_writes": reqs["writes"],
        "unexpected_routes": len(unexpected),
        "unexpected_route_examples": unexpected[:10],
    }
    if unexpected:
        log(f"restart: {len(unexpected)} route writes with weights that were neither the old nor the "
            f"declared ones, e.g. {unexpected[:3]}")
    log(f"restart: operator up in {started_s:.1f}s, changed routes after {out['changed_routes_seconds']}s, "
        f"all {conv.total} objects Ready after {conv.seconds:.1f}s")
    return out


def idle_traffic(bc: BenchCluster, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    """The operator's requests by verb, from the audit log, over `seconds` with nothing to do."""
    conv = bc.wait_converged(time.monotonic(), 300)
    bc.wait_quiet(3.0, 120)
    off0, cpu0, m0 = bc.audit_offset(), bc.cpu_seconds(), bc.metrics()
    t0 = time.monotonic()
    ticks: list[tuple[float, float]] = [(t0, cpu0)]
    with bc.profiled("idle", seconds):
        while time.monotonic() - t0 < seconds:  # the measurement window itself, sampled each second
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - t0))))
            ticks.append((time.monotonic(), bc.cpu_seconds()))
    pairs = zip(ticks, ticks[1:], strict=False)
    per_second = sorted(100 * (c1 - c0) / (t1 - ta) for (ta, c0), (t1, c1) in pairs if t1 - ta > 0.5)
    off1, cpu1, m1 = bc.audit_offset(), bc.cpu_seconds(), bc.metrics()
    elapsed = time.monotonic() - t0
    reqs = bc.operator_requests(off0, off1)
    reconciles = {
        k: m1.get("reconciles", {}).get(k, 0) - m0.get("reconciles", {}).get(k, 0)
        for k in m1.get("reconciles", {})
    }
    reconcile_s = {
        k: round(m1.get("reconcile_seconds", {}).get(k, 0) - m0.get("reconcile_seconds", {}).get(k, 0), 3)
        for k in m1.get("reconcile_seconds", {})
    }
    cpu = cpu1 - cpu0
    out = {
        "seconds": round(elapsed, 1),
        "converged_before": conv.ok,
        "drift_check_seconds": bc.drift_seconds,
        **reqs,
        "reconciles": reconciles,
        "reconcile_seconds": reconcile_s,
        "operator_cpu_seconds": round(cpu, 2),
        "operator_cpu_percent": round(100 * cpu / elapsed, 2),
        # what the process spends outside the drift check's reconciles (their time is wall time of
        # reconciles that make no request, so close to CPU): issue #17's "between drift checks"
        "operator_cpu_percent_between_checks": round(
            100 * max(0.0, cpu - sum(reconcile_s.values())) / elapsed, 2
        ),
        # the same from the other side: the operator's CPU in its median second (a drift check is a
        # burst of a few seconds in a 60 s period), and how many seconds were busier than 5 %
        "operator_cpu_percent_median_second": (
            round(per_second[len(per_second) // 2], 2) if per_second else None
        ),
        "seconds_above_5_percent": sum(1 for x in per_second if x > 5),
    }
    log(f"idle {elapsed:.0f}s: {reqs['requests']} operator requests {reqs['by_verb']}, "
        f"{reqs['writes']} writes, operator CPU {out['operator_cpu_percent']}%")
    return out


def settled_rss(bc: BenchCluster, window: float = 10.0, timeout: float = 120.0) -> dict[str, Any]:
    """RSS once it stops moving: after a restart the operator still lists once more and hands memory
    back after its backlog (resync._release_when_settled); the first sample would catch that
    transient. Samples every 2 s until the last `window` seconds stayed within 1 MiB."""
    t0 = time.monotonic()
    first = bc.rss()["VmRSS"]
    samples: list[tuple[float, float]] = []
    while time.monotonic() - t0 < timeout:
        now = time.monotonic()
        samples.append((now, bc.rss()["VmRSS"]))
        recent = [r for t, r in samples if now - t <= window]
        if now - t0 >= window and len(recent) >= 4 and max(recent) - min(recent) < 1.0:
            break
        time.sleep(2)
    if os.environ.get("MODELVERSIONING_HEAP_REPORT") and bc.op is not None and bc.op.pid is not None:
        os.kill(bc.op.pid, signal.SIGUSR2)  # the settled process's heap report, to compare with the first
        time.sleep(5)
    return {"rss_mib": round(samples[-1][1], 1), "first_rss_mib": round(first, 1),
            "settled_after_s": round(time.monotonic() - t0, 1)}


def memory_sample(bc: BenchCluster, fleet: dict[str, Any] | None = None) -> dict[str, Any]:
    """Operator RSS once the fleet is converged and the operator quiet (max of a few samples)."""
    bc.wait_quiet(3.0, 120)
    samples = []
    for _ in range(5):
        samples.append(bc.rss())
        time.sleep(0.2)
    if os.environ.get("MODELVERSIONING_HEAP_REPORT") and bc.op is not None and bc.op.pid is not None:
        os.kill(bc.op.pid, signal.SIGUSR2)  # the operator appends a heap report (handlers/heapreport.py)
        time.sleep(5)
    out: dict[str, Any] = {
        "versions": len(bc.mvs),
        "endpoints": len(bc.desired),
        "rss_mib": round(max(s["VmRSS"] for s in samples), 1),
        "hwm_mib": round(max(s["VmHWM"] for s in samples), 1),
    }
    if fleet:
        keys = ("create_seconds", "create_per_second", "converge_seconds", "endpoints_converge_seconds",
                "versions_converge_seconds", "converged")
        out.update({k: fleet[k] for k in keys})
    return out
