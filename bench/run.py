#!/usr/bin/env python3
"""Benchmarks of the modelversioning operator on the e2e control plane (real kube-apiserver, etcd,
controller-manager, scheduler; kwok fake nodes), the operator running as a subprocess under its own
ServiceAccount so that its requests can be told apart in the audit log.

    python bench/run.py [--scale tiny|full] [--only NAME ...] [--json bench/results/latest.json]
    ./dev bench --scale full

Sections: single (one endpoint's weight change on a quiet operator: its reaction and PATCH -> route
event, every run), latency (weight change -> route), rollback, restart (convergence after an operator
restart), memory (operator RSS vs fleet size), idle (operator API requests while nothing changes),
hashing (verify_artifact vs hashlib vs sha256sum). Every scale parameter can be overridden; see --help.
Opt-in (only with --only): peer, Argo Rollouts on the same control plane (bench/peer.py):
    ./dev bench --only peer [--peer-rollouts 200 --peer-blocks 5 --peer-per-block 20]
and dataplane, real traffic on the real node with Traefik and Prometheus (bench/dataplane.py; root):
    ./dev bench --only dataplane [--dp-rollbacks 5 --dp-auto 5 --dp-steps 2]
The results are printed as a table and written as JSON; docs/benchmarks.md explains them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "e2e"))
sys.path.insert(0, str(HERE))

SECTIONS = ("single", "latency", "rollback", "restart", "memory", "idle", "hashing")
OPT_IN = ("peer", "dataplane")  # run only when named in --only
CLUSTER_SECTIONS = (*SECTIONS[:-1], "peer")  # on the kwok control plane (dataplane starts its own)

SCALES: dict[str, dict[str, Any]] = {
    "tiny": {
        "versions": 20,
        "endpoints": 5,
        "single_changes": 30,
        "changes": 10,
        "rollbacks": 3,
        "restart_changed": 5,
        "idle_seconds": 10.0,
        "drift_seconds": 5.0,
        "memory_steps": "60:15",
        "hash_single_mib": 32,
        "hash_files": 16,
        "hash_file_mib": 2,
        "hash_repeats": 3,
        "hash_workers": 4,
        "converge_timeout": 300.0,
        "peer_rollouts": 20,
        "peer_blocks": 2,
        "peer_per_block": 5,
        "peer_idle_seconds": 20.0,
        "dp_rollbacks": 3,
        "dp_auto": 3,
        "dp_steps": 1,
    },
    "full": {
        "versions": 1000,
        "endpoints": 200,
        "single_changes": 100,
        "changes": 200,
        "rollbacks": 50,
        "restart_changed": 50,
        "idle_seconds": 300.0,
        "drift_seconds": 60.0,
        "memory_steps": "5000:1000",
        "hash_single_mib": 2048,
        "hash_files": 16,
        "hash_file_mib": 128,
        "hash_repeats": 3,
        "hash_workers": 4,
        "converge_timeout": 1800.0,
        "peer_rollouts": 200,
        "peer_blocks": 6,
        "peer_per_block": 20,
        "peer_idle_seconds": 120.0,
        "dp_rollbacks": 20,
        "dp_auto": 10,
        "dp_steps": 4,
    },
}

TARGETS = {  # issue #17 (the latency targets are stated at 10,000 versions / 2,000 endpoints)
    "single_reaction_p50": 3.0,  # ms, issue #25: one endpoint, quiet operator: PATCH -> our route write
    "single_route_p50": 10.0,  # ms, issue #25: the same PATCH returned -> the route's watch event
    "latency_p50": 15.0,  # ms
    "latency_p99": 100.0,  # ms
    "rollback_p99": 250.0,  # ms
    "idle_writes": 0,
    "idle_cpu_percent": 1.0,
    "rss_mib": ((1000, 200, 120.0), (10000, 2000, 250.0)),  # (versions, endpoints, MiB), restarted too
    "restart_seconds": 20.0,  # every object Ready after an operator restart
    "fleet_seconds": 300.0,  # a new fleet of 12,000 objects converged
    "hash_single_ratio": 0.9,  # verify_artifact / hashlib, one big file
    "hash_many_share": 0.8,  # many files: verify/hashlib >= share * min(cpus, workers)
    "peer_vs_promote": 4.0,  # our weight change p50 this many times faster than an Argo promote
    "peer_vs_abort": 2.0,  # ... and than an Argo abort (issue #17)
}

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="tiny", help="preset (default: tiny)")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=(*SECTIONS, *OPT_IN),
        metavar="NAME",
        help=f"run only these sections ({', '.join(SECTIONS)}; opt-in: {', '.join(OPT_IN)})",
    )
    ap.add_argument(
        "--json", default=str(HERE / "results" / "latest.json"), help="where to write the results"
    )
    g = ap.add_argument_group("scale overrides (default: the preset's)")
    g.add_argument("--versions", type=int, help="ModelVersions of the main fleet")
    g.add_argument("--endpoints", type=int, help="ModelEndpoints of the main fleet (2 variants each, >= 2)")
    g.add_argument("--single-changes", type=int, help="weight changes of one endpoint on a quiet operator")
    g.add_argument("--changes", type=int, help="weight changes timed (latency)")
    g.add_argument("--rollbacks", type=int, help="rollbacks timed")
    g.add_argument("--restart-changed", type=int, help="endpoints changed while the operator is down")
    g.add_argument("--idle-seconds", type=float, help="idle window for counting API requests")
    g.add_argument("--drift-seconds", type=float, help="operator serving.driftCheckSeconds")
    ap.add_argument(
        "--controller-qps",
        type=int,
        default=300,
        help="kube-controller-manager's and kube-scheduler's --kube-api-qps (burst twice that); 0 keeps "
        "Kubernetes' default of 20, which throttles the ReplicaSets and pods behind thousands of Deployments",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an operator setting for this run, e.g. serving.reconcileWorkers=16 (value read as YAML; repeat "
        "for more); recorded in the results",
    )
    g.add_argument(
        "--memory-steps", help="larger fleets for the memory curve, 'versions:endpoints,...' ('' for none)"
    )
    g.add_argument("--hash-single-mib", type=int, help="size of the single big file")
    g.add_argument("--hash-files", type=int, help="number of files of the many-files case")
    g.add_argument("--hash-file-mib", type=int, help="size of each of those files")
    g.add_argument("--hash-repeats", type=int, help="repeats per hashing method (median reported)")
    g.add_argument("--hash-workers", type=int, help="verify_artifact's max_workers (artifacts.maxWorkers)")
    g.add_argument("--hash-dir", default=None, help="directory for the hashing temp files (default: $TMPDIR)")
    g.add_argument("--converge-timeout", type=float, help="seconds to wait for a fleet to converge")
    g.add_argument("--peer-rollouts", type=int, help="peer: Argo Rollouts, and as many ModelEndpoints")
    g.add_argument("--peer-blocks", type=int, help="peer: alternating measurement blocks")
    g.add_argument("--peer-per-block", type=int, help="peer: samples of each kind per block (<= rollouts/2)")
    g.add_argument("--peer-idle-seconds", type=float, help="peer: idle window for counting writes")
    g.add_argument("--dp-rollbacks", type=int, help="dataplane: `kubectl models rollback` runs under load")
    g.add_argument("--dp-auto", type=int, help="dataplane: automatic rollbacks of a failing canary")
    g.add_argument("--dp-steps", type=int, help="dataplane: good-canary runs (3 step transitions each)")
    args = ap.parse_args(argv)
    params = dict(SCALES[args.scale])
    for key in params:
        val = getattr(args, key, None)
        if val is not None:
            params[key] = val
    params["restart_changed"] = min(params["restart_changed"], params["endpoints"])
    args.sections = list(args.only or SECTIONS)
    if args.sections == ["peer"]:  # the main fleet is the peer's size: both sides at the same count
        params["versions"] = args.versions or 2 * params["peer_rollouts"]
        params["endpoints"] = args.endpoints or params["peer_rollouts"]
    if params["endpoints"] < 2:
        ap.error("--endpoints must be >= 2 (one for the latency test, one for the rollbacks)")
    args.params = params
    return args


def memory_steps(spec: str) -> list[tuple[int, int]]:
    steps = []
    for part in (spec or "").split(","):
        if part.strip():
            v, _, e = part.partition(":")
            steps.append((int(v), int(e or 0)))
    return steps


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_mib"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return info


class Results:
    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "sections": {}, "setup": {}, "targets": []}

    def section(self, name: str, value: dict[str, Any]) -> None:
        self.data["sections"][name] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(self.data), indent=2, sort_keys=False) + "\n")
        tmp.replace(self.path)


def _clean(x: Any) -> Any:
    """NaN/inf are not JSON: null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def guarded(
    res: Results,
    name: str,
    fn: Callable[[], dict[str, Any]],
    cpu_of: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any] | None:
    """Run one section; `cpu_of` (process -> CPU seconds so far) adds where the section's CPU went."""
    log(f"== {name}")
    load0 = os.getloadavg()[0]
    try:
        cpu0 = cpu_of() if cpu_of else {}
        out = fn()
        out["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # other work on the machine
        if cpu_of:
            cpu1 = cpu_of()
            out["cpu_seconds_by_process"] = {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1}
    except Exception as e:  # noqa: BLE001 - one failed section must not lose the others
        log(f"{name} FAILED: {e!r}\n{traceback.format_exc()}")
        res.section(name, {"error": f"{type(e).__name__}: {e}"})
        return None
    res.section(name, out)
    return out


# ---------------------------------------------------------------------------------------------- run
def run_cluster(args: argparse.Namespace, res: Results) -> None:
    from cluster import BenchCluster, nodes_for
    from scenarios import (
        idle_traffic,
        memory_sample,
        restart_convergence,
        rollbacks,
        settled_rss,
        weight_changes,
    )

    p = args.params
    want = set(args.sections)
    steps = memory_steps(p["memory_steps"]) if "memory" in want else []
    max_eps = max([p["endpoints"], *(e for _, e in steps)])
    if "peer" in want:  # the Rollouts' pods too: stable + canary (+ one leaving) each
        max_eps += 2 * p["peer_rollouts"]
    qps = args.controller_qps or None
    res.data["setup"]["controller_qps"] = qps or "default (20)"
    overrides = operator_settings(args.set)
    res.data["setup"]["operator_settings"] = overrides
    bc = BenchCluster(nodes_for(max_eps), p["drift_seconds"], log, controller_qps=qps, settings=overrides)
    try:
        log(f"starting the control plane ({nodes_for(max_eps)} kwok nodes) and the operator")
        bc.start()
        res.data["setup"]["startup_seconds"] = {k: round(v, 2) for k, v in bc.startup_seconds.items()}
        res.data["setup"]["kwok_nodes"] = bc.nodes
        mem: list[dict[str, Any]] = []
        if "memory" in want:
            mem.append(memory_sample(bc))
        off, cpu, parts = bc.audit_offset(), bc.cpu_seconds(), bc.component_cpu()
        fleet = bc.populate(p["versions"], p["endpoints"], p["converge_timeout"])
        fleet["operator_cpu_seconds"] = round(bc.cpu_seconds() - cpu, 1)
        after = bc.component_cpu()
        fleet["events_dropped"] = bc.metrics().get("events_dropped")  # a full backlog of Events to post
        fleet["cpu_seconds_by_process"] = {k: round(after[k] - parts.get(k, 0.0), 1) for k in after}
        fleet["operator_requests"] = bc.operator_requests(off)["by_verb_resource"]
        fleet["writes_by_user"] = bc.writes_by_user(off)  # the operator's share of the API server's work
        res.data["setup"]["fleet"] = fleet
        res.save()
        if not fleet["converged"]:
            raise RuntimeError(f"the fleet did not converge in {p['converge_timeout']}s: {fleet}")
        if "memory" in want:
            mem.append(memory_sample(bc, fleet))
        if "single" in want:  # first: the control plane and the operator are quiet
            import single

            n = p["single_changes"]
            guarded(res, "single", lambda: single.run(bc, bc.eps[0], n, log), bc.component_cpu)
        if "latency" in want:
            changes = p["changes"]
            guarded(res, "latency", lambda: weight_changes(bc, bc.eps[0], changes, log), bc.component_cpu)
        if "rollback" in want:
            guarded(res, "rollback", lambda: rollbacks(bc, bc.eps[1], p["rollbacks"], log), bc.component_cpu)
        if "idle" in want:
            guarded(res, "idle", lambda: idle_traffic(bc, p["idle_seconds"], log), bc.component_cpu)
        if "restart" in want:
            out = guarded(
                res,
                "restart",
                lambda: restart_convergence(bc, p["restart_changed"], p["converge_timeout"], log),
            )
            if out is not None and mem:
                first = memory_sample(bc)["rss_mib"]
                settled = settled_rss(bc)
                mem[-1]["rss_mib_fresh_process"] = settled["rss_mib"]
                mem[-1]["rss_mib_fresh_process_first_sample"] = first
                mem[-1]["rss_fresh_process_settled_after_s"] = settled["settled_after_s"]
        if "memory" in want:

            def grow() -> dict[str, Any]:
                for v, e in steps:
                    log(f"memory: growing the fleet to {v} versions / {e} endpoints")
                    off, cpu = bc.audit_offset(), bc.cpu_seconds()
                    step = bc.populate(v, e, p["converge_timeout"])
                    sample = memory_sample(bc, step)
                    sample["operator_cpu_seconds"] = round(bc.cpu_seconds() - cpu, 1)
                    sample["operator_requests"] = bc.operator_requests(off)["by_verb_resource"]
                    mem.append(sample)
                    res.section("memory", memory_summary(mem))
                return memory_summary(mem)

            guarded(res, "memory", grow)
        if "peer" in want:  # last: it adds Argo Rollouts and their pods to the cluster
            import peer

            guarded(
                res,
                "peer",
                lambda: peer.run(
                    bc, p["peer_rollouts"], p["peer_blocks"], p["peer_per_block"], p["peer_idle_seconds"], log
                ),
            )
        res.data["setup"]["operator_metrics"] = bc.metrics()
    finally:
        # a second SIGTERM (timeout(1) and a signal to the process group both send one) must not cut the
        # clean-up short: an operator left behind retries against a control plane that is gone
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        res.data["setup"]["operator_log_tail"] = bc.op.logs(30).splitlines() if bc.op else []
        res.save()
        bc.stop()


def operator_settings(pairs: list[str]) -> dict[str, Any]:
    """--set serving.reconcileWorkers=16 --set verification.workers=4 -> nested settings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def memory_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": steps}
    for prev, cur in zip(steps, steps[1:], strict=False):
        d_obj = (cur["versions"] + cur["endpoints"]) - (prev["versions"] + prev["endpoints"])
        if d_obj > 0:
            cur["kib_per_object"] = round((cur["rss_mib"] - prev["rss_mib"]) * 1024 / d_obj, 2)
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        d_obj = (last["versions"] + last["endpoints"]) - (first["versions"] + first["endpoints"])
        growth = (last["rss_mib"] - first["rss_mib"]) * 1024
        out["kib_per_object"] = round(growth / d_obj, 2) if d_obj else 0.0
    return out


def run_dataplane(args: argparse.Namespace, res: Results) -> None:
    """Real traffic (bench/dataplane.py): its own control plane with the real node, Traefik and
    Prometheus, after the kwok sections (one cluster at a time on the machine)."""
    import dataplane

    p = args.params
    guarded(res, "dataplane", lambda: dataplane.run(p["dp_rollbacks"], p["dp_auto"], p["dp_steps"]))


def run_hashing(args: argparse.Namespace, res: Results) -> None:
    import hashing

    p = args.params
    guarded(
        res,
        "hashing",
        lambda: hashing.run(
            p["hash_single_mib"],
            p["hash_files"],
            p["hash_file_mib"],
            p["hash_repeats"],
            p["hash_workers"],
            log,
            args.hash_dir,
        ),
    )


# ---------------------------------------------------------------------------------------------- targets
def evaluate(res: Results) -> list[dict[str, Any]]:
    s = res.data["sections"]
    rows: list[dict[str, Any]] = []

    def add(section: str, metric: str, value: Any, target: str, met: bool | None, note: str = "") -> None:
        rows.append(
            {"section": section, "metric": metric, "value": value, "target": target, "met": met, "note": note}
        )

    def num(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    from single import table_rows  # the single-object figure: printed every run, so a regression shows

    table_rows(s.get("single") or {}, add, num, TARGETS["single_reaction_p50"], TARGETS["single_route_p50"])
    lat = s.get("latency") or {}
    if num(lat.get("p50_ms")):
        add(
            "latency",
            "weight change -> route p50 (ms)",
            lat["p50_ms"],
            f"< {TARGETS['latency_p50']:g}",
            lat["p50_ms"] < TARGETS["latency_p50"],
        )
        add("latency", "p95 (ms)", lat["p95_ms"], "", None)
        add(
            "latency",
            "p99 (ms)",
            lat["p99_ms"],
            f"< {TARGETS['latency_p99']:g}",
            lat["p99_ms"] < TARGETS["latency_p99"],
        )
        add(
            "latency",
            "-> status Ready p50 / p99 (ms)",
            f"{lat['ready_p50_ms']} / {lat['ready_p99_ms']}",
            "",
            None,
        )
    rb = s.get("rollback") or {}
    if num(rb.get("p99_ms")):
        add("rollback", "rollback -> route p50 (ms)", rb["p50_ms"], "", None)
        add(
            "rollback",
            "rollback -> route p99 (ms)",
            rb["p99_ms"],
            f"< {TARGETS['rollback_p99']:g}",
            rb["p99_ms"] < TARGETS["rollback_p99"],
        )
        add(
            "rollback",
            "Deployment re-rolls",
            rb["deployment_generation_changes"],
            "0",
            rb["deployment_generation_changes"] == 0,
        )
    rs = s.get("restart") or {}
    if num(rs.get("all_ready_seconds")):
        add(
            "restart",
            f"{rs['changed']} changed routes updated (s)",
            rs["changed_routes_seconds"],
            "",
            None,
            f"operator up in {rs['operator_start_seconds']} s",
        )
        add(
            "restart",
            f"all {rs['endpoints']} endpoints + {rs['versions']} versions Ready (s)",
            rs["all_ready_seconds"],
            f"<= {TARGETS['restart_seconds']:g}",
            rs["converged"] and rs["all_ready_seconds"] <= TARGETS["restart_seconds"],
        )
    mem = s.get("memory") or {}
    rss_targets = {(v, e): mib for v, e, mib in TARGETS["rss_mib"]}
    for st in mem.get("steps") or []:
        want = rss_targets.get((st["versions"], st["endpoints"]))
        target = f"<= {want:g}" if want is not None else ""
        note = "" if want is not None else "no target at this size"
        add(
            "memory",
            f"RSS at {st['versions']} versions / {st['endpoints']} endpoints (MiB)",
            st["rss_mib"],
            target,
            st["rss_mib"] <= want if want is not None else None,
            note,
        )
        if "rss_mib_fresh_process" in st:
            fresh = st["rss_mib_fresh_process"]
            add(
                "memory",
                "  same fleet, operator restarted (MiB)",
                fresh,
                target,
                fresh <= want if want is not None else None,
                f"once steady ({st.get('rss_fresh_process_settled_after_s')} s later); "
                f"{st.get('rss_mib_fresh_process_first_sample')} at the first sample",
            )
    if num(mem.get("kib_per_object")):
        add("memory", "growth per object (KiB)", mem["kib_per_object"], "", None)
    idle = s.get("idle") or {}
    if num(idle.get("writes")):
        add(
            "idle",
            f"operator writes in {idle['seconds']:g} s",
            idle["writes"],
            "0",
            idle["writes"] == TARGETS["idle_writes"],
        )
        add(
            "idle",
            "operator requests by verb",
            ", ".join(f"{k}={v}" for k, v in idle["by_verb"].items()) or "none",
            "",
            None,
        )
        add(
            "idle",
            "operator CPU, a drift check included (%)",
            idle["operator_cpu_percent"],
            "",
            None,
            f"reconcile seconds {idle.get('reconcile_seconds')}",
        )
        if num(idle.get("operator_cpu_percent_median_second")):
            between = idle["operator_cpu_percent_median_second"]
            target = f"<= {TARGETS['idle_cpu_percent']:g}"
            add(
                "idle",
                "operator CPU between drift checks (%, its median second)",
                between,
                target,
                between <= TARGETS["idle_cpu_percent"],
                f"{idle.get('seconds_above_5_percent')} s above 5 %; CPU outside reconciles "
                f"{idle.get('operator_cpu_percent_between_checks')} %",
            )
    fleet = res.data["setup"].get("fleet") or {}
    if num(fleet.get("converge_seconds")):
        n = int(fleet.get("versions", 0)) + int(fleet.get("endpoints", 0))
        add(
            "setup",
            f"new fleet of {n} objects converged (s)",
            fleet["converge_seconds"],
            f"<= {TARGETS['fleet_seconds']:g} at 12000",
            fleet["converge_seconds"] <= TARGETS["fleet_seconds"] if n >= 12000 else None,
            "" if n >= 12000 else "smaller fleet",
        )
    h = s.get("hashing") or {}
    if "single" in h:
        sg, mn = h["single"], h["many"]
        add(
            "hashing",
            f"1 x {sg['mib']} MiB: verify_artifact MiB/s",
            sg["verify_artifact_mib_s"],
            "",
            None,
            f"hashlib {sg['hashlib_mib_s']}, sha256sum {sg['sha256sum_mib_s']}",
        )
        add(
            "hashing",
            "  verify / hashlib",
            sg["verify_vs_hashlib"],
            f">= {TARGETS['hash_single_ratio']}",
            sg["verify_vs_hashlib"] >= TARGETS["hash_single_ratio"],
            f"verify / sha256sum {sg['verify_vs_sha256sum']}",
        )
        par = min(h["cpus"], h["verify_workers"])
        want = TARGETS["hash_many_share"] * par
        add(
            "hashing",
            f"{h['files']} x {h['file_mib']} MiB: verify_artifact MiB/s",
            mn["verify_artifact_mib_s"],
            "",
            None,
            f"hashlib {mn['hashlib_mib_s']}, sha256sum {mn['sha256sum_mib_s']}",
        )
        add(
            "hashing",
            "  verify / hashlib",
            mn["verify_vs_hashlib"],
            f">= {want:.2g} (~{par} cores)",
            mn["verify_vs_hashlib"] >= want,
            f"verify / sha256sum {mn['verify_vs_sha256sum']}",
        )
    pr = s.get("peer") or {}
    if num((pr.get("weight") or {}).get("p50_ms")):
        n = pr["rollouts"]
        labels = {
            "promote": "Argo promote",
            "abort": "Argo abort",
            "weight": "our weight change",
            "rollback": "our rollback",
        }
        for k, label in labels.items():
            st = pr[k]
            add(
                "peer",
                f"{label} -> VirtualService p50 / p95 / p99 (ms)",
                f"{st['p50_ms']} / {st['p95_ms']} / {st['p99_ms']}",
                "",
                None,
                f"n={st['n']}, timeouts {st['timeouts']}, controller reaction p50 "
                f"{(pr.get('reaction') or {}).get(k, {}).get('p50_ms')} ms",
            )
        r = pr["ratios"]
        for theirs, want in (("promote", TARGETS["peer_vs_promote"]), ("abort", TARGETS["peer_vs_abort"])):
            x = r[f"weight_vs_{theirs}_p50"]
            met = x >= want if num(x) else None
            add(
                "peer",
                f"ours faster than {theirs}, p50 (x)",
                x,
                f">= {want:g}",
                met,
                f"p95 x{r[f'weight_vs_{theirs}_p95']}, p99 x{r[f'weight_vs_{theirs}_p99']}; rollback p50 "
                f"x{r[f'rollback_vs_{theirs}_p50']}",
            )
        rss = pr["rss_mib"]
        add(
            "peer",
            f"RSS at {n} rollouts / endpoints: ours vs Argo (MiB)",
            f"{rss['operator']} / {rss['argo_rollouts']}",
            "ours <= Argo's",
            rss["operator"] <= rss["argo_rollouts"],
        )
        idle = pr["idle"]
        add(
            "peer",
            f"idle writes in {idle['seconds']:g} s: ours vs Argo",
            f"{idle['operator']['writes']} / {idle['argo_rollouts']['writes']}",
            "ours 0",
            idle["operator"]["writes"] == 0,
            f"Argo: {idle['argo_rollouts']['lease_writes']} Lease writes; CPU ours "
            f"{idle['operator']['cpu_percent']}% / Argo {idle['argo_rollouts']['cpu_percent']}%",
        )
    dpl = s.get("dataplane")
    if dpl and "error" not in dpl:
        from dataplane import LINES  # real traffic: printed, never a target

        for key, (_, lines) in LINES.items():
            for metric, label in lines.items():
                st = (dpl.get(key) or {}).get(metric)
                if st and num(st.get("p50_ms")):
                    value = f"{st['p50_ms']:.0f} / {st['p99_ms']:.0f}"
                    add("dataplane", f"{label}: p50 / p99 (ms)", value, "", None, f"n={st['n']}")
    for name, sec in s.items():
        if "error" in sec:
            add(name, "ERROR", sec["error"], "", False)
    return rows


def print_table(rows: list[dict[str, Any]], res: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    meta = res.data["meta"]
    table = Table(title=f"modelversioning operator benchmarks ({meta['scale']}, {meta['date']})")
    for col in ("Section", "Metric", "Value", "Target", "Result", "Note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        result = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[r["met"]]
        table.add_row(r["section"], r["metric"], str(r["value"]), r["target"], result, r["note"])
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "scale": args.scale,
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "sections": args.sections,
        "params": args.params,
        "machine": machine(),
    }
    res = Results(Path(args.json), meta)
    res.save()
    try:
        if "hashing" in args.sections:  # before the cluster starts: nothing else on the CPUs
            run_hashing(args, res)
        if set(args.sections) & set(CLUSTER_SECTIONS):
            try:
                run_cluster(args, res)
            except Exception as e:  # noqa: BLE001 - report what was measured
                log(f"cluster benchmarks FAILED: {e!r}\n{traceback.format_exc()}")
                res.data["setup"]["error"] = f"{type(e).__name__}: {e}"
                for name in args.sections:
                    if name in CLUSTER_SECTIONS and name not in res.data["sections"]:
                        res.section(name, {"error": f"not run: {type(e).__name__}: {e}"})
        if "dataplane" in args.sections:
            run_dataplane(args, res)
    finally:
        res.data["meta"]["duration_seconds"] = round(time.monotonic() - T0, 1)
        res.data["meta"]["machine"]["loadavg_end"] = list(os.getloadavg())
        rows = evaluate(res)
        res.data["targets"] = rows
        res.save()
    print_table(rows, res)
    log(f"results written to {args.json} in {res.data['meta']['duration_seconds']}s")
    failed = [n for n, sec in res.data["sections"].items() if "error" in sec]
    return 1 if failed or res.data["setup"].get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
