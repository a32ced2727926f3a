#!/usr/bin/env python3
"""Benchmarks of the modelversioning operator on the e2e control plane (real kube-apiserver, etcd,
controller-manager, scheduler; kwok fake nodes), the operator running as a subprocess under its own
ServiceAccount so that its requests can be told apart in the audit log.

    python bench/run.py [--scale tiny|full] [--only NAME ...] [--json bench/results/latest.json]
    ./dev bench --scale full

Sections: single (one endpoint's weight change on a quiet operator: its reaction and PATCH -> route
event, every run), latency (weight change -> route), rollback, restart (convergence after an operator
restart), memory (operator RSS vs fleet size), idle (operator API requests while nothing changes),
hashing (verify_artifact vs hashlib vs sha256sum), cli (`kubectl models` start: --help, and a rollback's
start -> first API request against a loopback API server; bench/cli_start.py, no cluster), init (the
artifact init container, `verify-artifact` as the pod runs it, against a plain urllib copy of the same
file from a loopback HTTP server: wall, CPU, MiB/s, start -> first request; bench/init_start.py, no
cluster), production (the production record's write budget: status writes per minute of the fleet's
versions serving, the operator's ModelVersion reconciler on a simulated clock; bench/production_writes.py,
no cluster). Every scale parameter can be overridden; see --help.
The fleet's operator writes are logged by object kind and cause (bench/writes.py); --in-use
admission|finalizer chooses how served versions are protected (the chart's in-use policy bound, or the
in-use finalizer). Opt-in (only with --only): peer, Argo Rollouts and Flagger on the same control plane:
    ./dev bench --only peer [--peer-rollouts 200 --peer-blocks 5 --peer-per-block 20 --peer-flagger 10]
and dataplane, real traffic on the real node with Traefik and Prometheus (bench/dataplane.py; root):
    ./dev bench --only dataplane [--dp-rollbacks 5 --dp-auto 5 --dp-steps 2]
and ttfa, time to first answer of a new version against a plain Deployment, on the same real data
plane (bench/ttfa.py; root; with dataplane in one run, both share one control plane and node):
    ./dev bench --only ttfa [--ttfa-sizes 10,256,1024 --ttfa-replicas 5]
                            [--ttfa-cache-mib 256 --ttfa-cache-replicas 10 --ttfa-cache-oci 1]  (node cache)
and oip, Open Inference Protocol latency through Traefik, MLServer against the reference server, and
the time from apply to the first correct prediction (bench/oip.py; root; same real data plane):
    ./dev bench --only oip [--oip-requests 1000 --oip-rate 50]
The results are printed as a table and written as JSON; docs/benchmarks.md explains them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "e2e"))
sys.path.insert(0, str(HERE))

from real_node import REAL_NODE_SECTIONS, run_real_node  # noqa: E402
from runinfo import Results, machine, memory_steps, memory_summary, operator_settings  # noqa: E402
from targets import evaluate, print_table  # noqa: E402

SECTIONS = (
    "single", "latency", "rollback", "restart", "memory", "idle", "hashing", "cli", "init", "production",
)  # fmt: skip
OPT_IN = ("peer", *REAL_NODE_SECTIONS)  # run only when named in --only
# on the kwok control plane (dataplane, ttfa, oip: their own; hashing, cli and init need none)
CLUSTER_SECTIONS = ("single", "latency", "rollback", "restart", "memory", "idle", "peer")

OIP_REQUESTS = 1000  # per runtime, at 50/s: 20 s each
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {
        "versions": 20,
        "endpoints": 5,
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
        "peer_argo_settings": "defaults,tuned",
        "peer_argo_tuned_flags": None,
        "peer_flagger": 2,
        "peer_flagger_rounds": 1,
        "dp_rollbacks": 3,
        "dp_auto": 3,
        "dp_steps": 1,
        "ttfa_sizes": "10,256,1024",
        "ttfa_replicas": 5,
        "ttfa_cache_mib": 10.0,
        "ttfa_cache_replicas": 4,
        "ttfa_cache_oci": 0,
        "oip_requests": OIP_REQUESTS,
        "oip_rate": 50.0,
        "cli_repeats": 20,
        "single_changes": 30,
        "init_sizes": "16,64",
        "init_repeats": 3,
        "production_minutes": 15.0,
        "production_flips": 1,
        "production_interval": 600.0,
    },
    "full": {
        "versions": 1000,
        "endpoints": 200,
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
        "peer_argo_settings": "defaults,tuned",
        "peer_argo_tuned_flags": None,
        "peer_flagger": 10,
        "peer_flagger_rounds": 2,
        "dp_rollbacks": 20,
        "dp_auto": 10,
        "dp_steps": 4,
        "ttfa_sizes": "10,256,1024",
        "ttfa_replicas": 5,
        "ttfa_cache_mib": 256.0,
        "ttfa_cache_replicas": 10,
        "ttfa_cache_oci": 1,
        "oip_requests": OIP_REQUESTS,
        "oip_rate": 50.0,
        "cli_repeats": 20,
        "single_changes": 100,
        "init_sizes": "256,1024",
        "init_repeats": 5,
        "production_minutes": 30.0,
        "production_flips": 10,
        "production_interval": 600.0,
    },
}


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _section_overrides(g: Any) -> None:
    """The rest of the scale overrides: the sections' own (hashing, peer, dataplane, ttfa, oip, cli, init) and
    the convergence timeout."""
    g.add_argument("--hash-single-mib", type=int, help="size of the single big file")
    g.add_argument("--hash-files", type=int, help="number of files of the many-files case")
    g.add_argument("--hash-file-mib", type=int, help="size of each of those files")
    g.add_argument("--hash-repeats", type=int, help="repeats per hashing method (median reported)")
    g.add_argument("--hash-workers", type=int, help="verify_artifact's max_workers (artifacts.maxWorkers)")
    g.add_argument(
        "--hash-dir", default=None, help="directory for the hashing and init temp files (default: $TMPDIR)"
    )
    g.add_argument("--converge-timeout", type=float, help="seconds to wait for a fleet to converge")
    import peer

    peer.add_args(g)
    g.add_argument("--dp-rollbacks", type=int, help="dataplane: `kubectl models rollback` runs under load")
    g.add_argument("--dp-auto", type=int, help="dataplane: automatic rollbacks of a failing canary")
    g.add_argument("--dp-steps", type=int, help="dataplane: good-canary runs (3 step transitions each)")
    g.add_argument("--ttfa-sizes", help="ttfa: artifact sizes in MiB, comma-separated (e.g. 10,256,1024)")
    g.add_argument("--ttfa-replicas", type=int, help="ttfa: the scale-up's replicas, from 1 (< 2: none)")
    g.add_argument("--ttfa-cache-mib", type=float, help="ttfa: node cache cold/cached size in MiB (0: skip)")
    g.add_argument("--ttfa-cache-replicas", type=int, help="ttfa: node cache scale-up's replicas, from 1")
    g.add_argument(
        "--ttfa-cache-oci", type=int, choices=(0, 1), help="ttfa: the node cache part for oci:// too"
    )
    g.add_argument("--oip-requests", type=int, help="oip: inference requests per runtime")
    g.add_argument("--oip-rate", type=float, help="oip: requests per second (paced)")
    g.add_argument("--cli-repeats", type=int, help="cli: runs of each `kubectl models` command timed")
    g.add_argument("--single-changes", type=int, help="weight changes of one endpoint on a quiet operator")
    g.add_argument("--init-sizes", help="init: artifact sizes in MiB, comma-separated (e.g. 256,1024)")
    g.add_argument("--init-repeats", type=int, help="init: runs of each init container per size")
    g.add_argument("--production-minutes", type=float, help="production: simulated minutes of serving")
    g.add_argument("--production-flips", type=int, help="production: route changes (blue <-> green) a minute")
    g.add_argument("--production-interval", type=float, help="production: production.intervalSeconds")


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
    ap.add_argument(
        "--in-use",
        choices=("admission", "finalizer"),
        default="admission",
        help="how a served ModelVersion is protected from deletion: the chart's in-use admission policy "
        "bound (the chart's default; status.servedBy is the record), or unbound, so that the operator "
        "adds the modelversioning.io/in-use finalizer (default: admission)",
    )
    g = ap.add_argument_group("scale overrides (default: the preset's)")
    g.add_argument("--versions", type=int, help="ModelVersions of the main fleet")
    g.add_argument("--endpoints", type=int, help="ModelEndpoints of the main fleet (2 variants each, >= 2)")
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
    _section_overrides(g)
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

    p = args.params
    want = set(args.sections)
    steps = memory_steps(p["memory_steps"]) if "memory" in want else []
    max_eps = max([p["endpoints"], *(e for _, e in steps)])
    if "peer" in want:  # the Rollouts' pods too: stable + canary (+ one leaving) each; Flagger's and ours
        max_eps += 2 * p["peer_rollouts"] + 2 * p["peer_flagger"]
    qps = args.controller_qps or None
    res.data["setup"]["controller_qps"] = qps or "default (20)"
    overrides = operator_settings(args.set)
    res.data["setup"]["operator_settings"] = overrides
    with peer_prometheus(want, p) as prom:  # the peer's Flagger comparison: the operator must know it
        bc = BenchCluster(
            nodes_for(max_eps),
            p["drift_seconds"],
            log,
            controller_qps=qps,
            in_use=args.in_use,
            settings={**overrides, **peer_operator_settings(prom, overrides)},
        )
        run_on(bc, args, res, prom)


def peer_prometheus(want: set[str], p: dict[str, Any]) -> Any:
    import contextlib

    if "peer" not in want or not p["peer_flagger"]:
        return contextlib.nullcontext()
    import peer

    return peer.prometheus(True)


def peer_operator_settings(prom: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    if prom is None:
        return {}
    import peer

    return {"analysis": {**peer.operator_settings(prom)["analysis"], **overrides.get("analysis", {})}}


def run_on(bc: Any, args: argparse.Namespace, res: Results, prom: Any) -> None:
    """Every kwok section of the run on `bc` (started here, stopped at the end)."""
    from scenarios import (
        idle_traffic,
        memory_sample,
        restart_convergence,
        rollbacks,
        settled_rss,
        weight_changes,
    )

    p, want = args.params, set(args.sections)
    steps = memory_steps(p["memory_steps"]) if "memory" in want else []
    try:
        log(f"starting the control plane ({bc.nodes} kwok nodes) and the operator")
        bc.start()
        res.data["setup"]["startup_seconds"] = {k: round(v, 2) for k, v in bc.startup_seconds.items()}
        res.data["setup"]["kwok_nodes"] = bc.nodes
        mem: list[dict[str, Any]] = []
        if "memory" in want:
            mem.append(memory_sample(bc))
        fleet = new_fleet(bc, args)
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

            guarded(res, "peer", lambda: peer.run(bc, p, log, prom))
        res.data["setup"]["operator_metrics"] = bc.metrics()
    finally:
        # a second SIGTERM (timeout(1) and a signal to the process group both send one) must not cut the
        # clean-up short: an operator left behind retries against a control plane that is gone
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        res.data["setup"]["operator_log_tail"] = bc.op.logs(30).splitlines() if bc.op else []
        res.save()
        bc.stop()


def new_fleet(bc: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The main fleet created and converged: its times, where the CPU went, and the operator's writes
    by kind and cause (bench/writes.py, logged too)."""
    import writes

    p = args.params
    off, cpu, parts = bc.audit_offset(), bc.cpu_seconds(), bc.component_cpu()
    events0 = bc.operator_events()
    fleet: dict[str, Any] = bc.populate(p["versions"], p["endpoints"], p["converge_timeout"])
    fleet["operator_cpu_seconds"] = round(bc.cpu_seconds() - cpu, 1)
    after = bc.component_cpu()
    fleet["events_dropped"] = bc.metrics().get("events_dropped")  # a full backlog of Events to post
    fleet["cpu_seconds_by_process"] = {k: round(after[k] - parts.get(k, 0.0), 1) for k in after}
    fleet["operator_requests"] = bc.operator_requests(off)["by_verb_resource"]
    fleet["writes_by_user"] = bc.writes_by_user(off)  # the operator's share of the API server's work
    created = {"ModelVersion": fleet["created_versions"], "ModelEndpoint": fleet["created_endpoints"]}
    fleet["writes"] = bc.operator_writes(off, events0, created)  # by kind and cause (bench/writes.py)
    fleet["in_use_protection"] = args.in_use
    for line in writes.lines(fleet["writes"]):
        log(line)
    from cluster import OPERATOR_USER

    user = OPERATOR_USER.removeprefix("system:")  # writes_by_user's keys drop "system:"
    cpu_api = fleet["cpu_seconds_by_process"].get("kube-apiserver")
    log(writes.apiserver_cost_line(cpu_api, fleet["writes_by_user"], user))
    if "modelversions/status" in os.environ.get("MV_AUDIT_REQUEST", ""):  # with the request bodies
        vs = fleet["version_status"] = bc.version_status(off)  # what each version status PATCH changed
        log(f"version status PATCHes: {vs['per_version']} per version ({vs['own_per_version']} its own)")
        for row in vs["by_sequence"][:8]:
            log(f"  {row['versions']:>6}  {row['sequence']}")
    return fleet


def run_cli(args: argparse.Namespace, res: Results) -> None:
    import cli_start

    guarded(res, "cli", lambda: cli_start.run(args.params["cli_repeats"], log))


def run_init(args: argparse.Namespace, res: Results) -> None:
    import init_start

    p = args.params
    sizes = [float(x) for x in str(p["init_sizes"]).split(",") if x.strip()]
    guarded(res, "init", lambda: init_start.run(sizes, p["init_repeats"], log, args.hash_dir))


def run_production(args: argparse.Namespace, res: Results) -> None:
    import production_writes

    p = args.params
    guarded(
        res,
        "production",
        lambda: production_writes.run(
            p["versions"], p["endpoints"], p["production_minutes"], p["production_flips"],
            p["production_interval"], log,
        ),
    )  # fmt: skip


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
        if "cli" in args.sections:  # first: nothing else of ours on the CPUs
            run_cli(args, res)
        if "hashing" in args.sections:  # before the cluster starts: nothing else on the CPUs
            run_hashing(args, res)
        if "init" in args.sections:
            run_init(args, res)
        if "production" in args.sections:  # no cluster: the reconciler on a simulated clock
            run_production(args, res)
        if set(args.sections) & set(CLUSTER_SECTIONS):
            try:
                run_cluster(args, res)
            except Exception as e:  # noqa: BLE001 - report what was measured
                log(f"cluster benchmarks FAILED: {e!r}\n{traceback.format_exc()}")
                res.data["setup"]["error"] = f"{type(e).__name__}: {e}"
                for name in args.sections:
                    if name in CLUSTER_SECTIONS and name not in res.data["sections"]:
                        res.section(name, {"error": f"not run: {type(e).__name__}: {e}"})
        if set(args.sections) & set(REAL_NODE_SECTIONS):
            run_real_node(args, res, guarded, log)
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
