"""Numbers of the peer comparison (bench/peer.py): percentiles, the controllers' reactions from the API
server's audit log, ratios, process figures, and the lines printed per block and per run."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster import NS, OPERATOR_USER, WRITE_VERBS, _ts, percentile
from peer_argo import ARGO_NS, ARGO_USER

KINDS = ("promote", "abort", "weight", "rollback")
# (ours, theirs): how many times faster ours is, their latency / ours
PAIRS = (("weight", "promote"), ("weight", "abort"), ("rollback", "promote"), ("rollback", "abort"))


def stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "n": len(xs),
        "p50_ms": round(percentile(xs, 50), 2),
        "p95_ms": round(percentile(xs, 95), 2),
        "p99_ms": round(percentile(xs, 99), 2),
        "max_ms": round(max(xs), 2),
    }


def ratios(out: dict[str, Any]) -> dict[str, float]:
    def ratio(a: str, b: str, q: str) -> float:
        x, y = out[a][q], out[b][q]
        return round(y / x, 2) if x and x == x and y == y else float("nan")

    return {
        f"{ours}_vs_{theirs}_{q[:3]}": ratio(ours, theirs, q)
        for ours, theirs in PAIRS
        for q in ("p50_ms", "p95_ms", "p99_ms")
    }


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lease_writes(reqs: dict[str, Any]) -> int:
    return sum(
        v
        for k, v in reqs["by_verb_resource"].items()
        if k.split()[0] in WRITE_VERBS and k.endswith(" leases")
    )


def reactions(
    audit_log: Path, start: int, end: int, trials: list[tuple[str, str, str, str, float]]
) -> dict[str, Any]:
    """Per kind, from the audit log: trigger PATCH completed -> the controller's first write of the
    VirtualService received. `trials`: (kind, trigger resource, trigger name, VirtualService, wall
    clock before the trigger)."""
    with audit_log.open("rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start))
    triggers: dict[tuple[str, str], list[tuple[float, float]]] = {}
    vs_writes: dict[str, list[tuple[str, float]]] = {}
    for line in data.splitlines():
        if b'"ResponseComplete"' not in line or NS.encode() not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            ev = json.loads(line)
            ref, user, verb = ev.get("objectRef") or {}, ev["user"]["username"], ev["verb"]
            if ref.get("namespace") not in (NS, ARGO_NS) or verb not in ("patch", "update"):
                continue
            res = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            recv, done = _ts(ev["requestReceivedTimestamp"]), _ts(ev["stageTimestamp"])
            if res == "virtualservices" and user in (ARGO_USER, OPERATOR_USER):
                vs_writes.setdefault(ref["name"], []).append((user, recv))
            elif user not in (ARGO_USER, OPERATOR_USER):
                triggers.setdefault((res, ref["name"]), []).append((recv, done))
    react: dict[str, list[float]] = {k: [] for k in KINDS}
    for kind, res, name, vs, wall in trials:
        trig = next((t for t in sorted(triggers.get((res, name), [])) if t[0] >= wall - 0.01), None)
        if trig is None:
            continue
        user = ARGO_USER if kind in ("promote", "abort") else OPERATOR_USER
        w = next(
            (r for u, r in sorted(vs_writes.get(vs, []), key=lambda x: x[1]) if u == user and r > trig[1]),
            None,
        )
        if w is not None and w - trig[1] < 60:
            react[kind].append((w - trig[1]) * 1000)
    return {
        k: {
            "n": len(v),
            "p50_ms": round(percentile(v, 50), 2) if v else float("nan"),
            "p99_ms": round(percentile(v, 99), 2) if v else float("nan"),
        }
        for k, v in react.items()
    }


def block_line(setting: str, b: int, blk: dict[str, Any]) -> str:
    """One block's waits and what Argo's metrics and log say about it."""
    q, argo, thr = blk["quiet"], blk["argo"], blk["throttled"]
    adds = argo["adds"].get("Rollouts", 0.0)
    api = sum(argo["api_requests"].values())
    # a ReplicaSet scaled (update; a delayed scale-down is one), or annotated (patch: scale-down deadlines)
    rs_update, rs_patch = (argo["api_requests"].get(f"{v} replicasets", 0) for v in ("update", "patch"))
    return " ".join(
        [
            f"peer [{setting}] block {b + 1}: quiet after {q['total_s']} s",
            f"(scale-down {q['argo_scale_down_s']} s, Argo queues {q['argo_queues_s']} s,",
            f"ours {q['ours_queue_s']} s); Argo: {adds:g} Rollouts-queue adds",
            f"({adds / max(1, blk['argo_samples']):.1f} per promote or abort), queue wait mean",
            f"{argo['rollouts_queue_wait_mean_ms']} ms, reconcile mean",
            f"{argo['rollouts_reconcile_mean_ms']} ms,",
            f"{api} API requests ({rs_update} ReplicaSet updates, {rs_patch} patches,",
            f"{sum(argo['api_errors'].values())} failed),",
            f"{sum(argo['retries'].values()):g} retries; client-side throttling: {thr['requests']}",
            f"requests held {thr['seconds']} s (max {thr['max_s']} s)",
        ]
    )


def summary_line(setting: str, res: dict[str, Any]) -> str:
    r, p50 = res["ratios"], {k: res[k]["p50_ms"] for k in KINDS}
    return " ".join(
        [
            f"peer [{setting}]: p50 promote {p50['promote']} ms, abort {p50['abort']} ms,",
            f"our weight change {p50['weight']} ms, our rollback {p50['rollback']} ms;",
            f"ours faster x{r['weight_vs_promote_p50']} vs promote, x{r['weight_vs_abort_p50']} vs abort;",
            f"RSS argo {res['rss_mib']['argo_rollouts']} MiB vs ours {res['rss_mib']['operator']} MiB",
        ]
    )


def rss(argo_pid: int, op_pid: int) -> dict[str, float]:
    a, o = [], []
    for _ in range(5):
        a.append(proc_rss_mib(argo_pid))
        o.append(proc_rss_mib(op_pid))
        time.sleep(0.2)
    return {"argo_rollouts": round(max(a), 1), "operator": round(max(o), 1)}


def idle(bc: Any, argo_pid: int, quiet: Callable[[], Any], seconds: float) -> dict[str, Any]:
    """Requests, writes and CPU of both over an idle window, once both are quiet (`quiet`) and neither
    wrote anything but Leases for 5 s."""
    op_pid = bc.op.pid
    t0 = time.monotonic()
    bc.wait_quiet(3.0, 120)
    quiet()
    off, since = bc.audit_offset(), time.monotonic()
    while time.monotonic() - since < 5.0 and time.monotonic() - t0 < 300:
        time.sleep(1.0)
        now = bc.audit_offset()
        for user in (ARGO_USER, OPERATOR_USER):
            reqs = bc.operator_requests(off, now, user=user)
            if reqs["writes"] - lease_writes(reqs):
                since = time.monotonic()
        off = now
    settled = time.monotonic() - t0
    off0 = bc.audit_offset()
    cpu0 = (proc_cpu_seconds(argo_pid), proc_cpu_seconds(op_pid))
    t1 = time.monotonic()
    time.sleep(seconds)
    off1, elapsed = bc.audit_offset(), time.monotonic() - t1
    cpu1 = (proc_cpu_seconds(argo_pid), proc_cpu_seconds(op_pid))
    out: dict[str, Any] = {"seconds": round(elapsed, 1), "settled_seconds_before": round(settled, 1)}
    for key, user, c in (("argo_rollouts", ARGO_USER, 0), ("operator", OPERATOR_USER, 1)):
        reqs = bc.operator_requests(off0, off1, user=user)
        lease = lease_writes(reqs)
        out[key] = {
            "requests": reqs["requests"],
            "writes": reqs["writes"],
            "lease_writes": lease,
            "other_writes": reqs["writes"] - lease,
            "by_verb": reqs["by_verb"],
            "by_verb_resource": reqs["by_verb_resource"],
            "cpu_percent": round(100 * (cpu1[c] - cpu0[c]) / elapsed, 2),
        }
    return out
