#!/usr/bin/env python3
"""The API server's CPU per write while a new fleet converges, and where it goes (issue #25).

    python bench/apiserver_cost.py [--versions 1000 --endpoints 200] [--variant today|nobind|noaudit]
                                   [--profile-seconds 60 --profile-out /tmp/apiserver.pprof]

One control plane as the benchmark starts it (bench/cluster.py: the operator under its own
ServiceAccount, the chart's admission policies, the in-use policy bound), one fleet created and
converged, then printed (never asserted):

- kube-apiserver CPU seconds (user + system, /proc) from the first create to convergence;
- the writes the API server answered meanwhile (``apiserver_request_total``, verbs POST PUT PATCH
  DELETE APPLY, every user: the operator, the benchmark's creates, the controller-manager, kwok...),
  and the operator's own writes (audit log, when it logs);
- CPU seconds per write, and the convergence time.

Variants: ``today`` (as the benchmark runs), ``nobind`` (every admission policy binding deleted but
the in-use policy's, which matches DELETE only and decides whether the operator uses finalizers),
``noaudit`` (the audit policy at level None: MV_APISERVER_AUDIT). With --profile-seconds the API
server's CPU profile is taken from the first create on (/debug/pprof/profile, MV_APISERVER_PROFILING)
and written to --profile-out: `go tool pprof -top <file>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def writes_total(metrics_text: str) -> int:
    """Write requests the API server answered so far (apiserver_request_total, write verbs)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        verb = labels.split('verb="', 1)[1].split('"', 1)[0] if 'verb="' in labels else ""
        if verb in WRITE_VERBS:
            total += float(value)
    return int(total)


def _raw(cp: Any, path: str, timeout: float) -> bytes:
    req = urllib.request.Request(cp.server + path)
    req.add_header("Authorization", f"Bearer {cp.token}")
    with urllib.request.urlopen(req, context=cp._ssl, timeout=timeout) as r:
        return bytes(r.read())


def apiserver_cpu(cp: Any) -> float:
    pid = next(p.popen.pid for p in cp._procs if p.name == "kube-apiserver")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def object_sizes(cp: Any) -> dict[str, dict[str, int]]:
    """Median JSON size of the converged objects of each kind (bytes; and of their managedFields):
    what every write of one re-encodes, stores, diffs field by field and sends to each watcher."""
    out: dict[str, dict[str, int]] = {}
    for plural in ("modelversions", "modelendpoints", "models"):
        path = f"/apis/modelversioning.io/v1alpha1/namespaces/bench/{plural}"
        items = json.loads(_raw(cp, path, 60))["items"]
        if not items:
            continue
        whole = sorted(len(json.dumps(o, separators=(",", ":"))) for o in items)
        managed = sorted(
            len(json.dumps(o["metadata"].get("managedFields", []), separators=(",", ":"))) for o in items
        )
        status = sorted(len(json.dumps(o.get("status", {}), separators=(",", ":"))) for o in items)
        mid = len(items) // 2
        out[plural] = {"object": whole[mid], "managedFields": managed[mid], "status": status[mid]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--variant", choices=("today", "nobind", "noaudit"), default="today")
    ap.add_argument("--profile-seconds", type=int, default=0)
    ap.add_argument("--profile-out", default="/tmp/apiserver.pprof")
    ap.add_argument("--converge-timeout", type=float, default=900)
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args()

    os.environ["MV_APISERVER_PROFILING"] = "1"
    if args.variant == "noaudit":
        os.environ["MV_APISERVER_AUDIT"] = "None"
    from cluster import OPERATOR_USER, BenchCluster, nodes_for

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    bc = BenchCluster(nodes_for(args.endpoints), 60.0, log, controller_qps=300)
    try:
        bc.start()
        cp = bc.cp
        assert cp is not None
        if args.variant == "nobind":
            import admission

            for policy in admission.policies():
                name = policy["metadata"]["name"]
                if name != admission.IN_USE_POLICY:
                    admission.unbind(cp, name)
            time.sleep(3)  # the API server's policy informer
        off = bc.audit_offset()
        w0, c0 = writes_total(_raw(cp, "/metrics", 30).decode()), apiserver_cpu(cp)
        prof: dict[str, bytes] = {}

        def profile() -> None:
            prof["data"] = _raw(cp, f"/debug/pprof/profile?seconds={args.profile_seconds}",
                                args.profile_seconds + 60)

        t = threading.Thread(target=profile, daemon=True)
        if args.profile_seconds:
            t.start()
        fleet = bc.populate(args.versions, args.endpoints, args.converge_timeout)
        c1, w1 = apiserver_cpu(cp), writes_total(_raw(cp, "/metrics", 30).decode())
        if args.profile_seconds:
            t.join()
            Path(args.profile_out).write_bytes(prof.get("data", b""))
        by_user = bc.writes_by_user(off) if args.variant != "noaudit" else {}
        op_writes = by_user.get(OPERATOR_USER.removeprefix("system:"))
        op_requests = bc.operator_requests(off)["by_verb_resource"] if args.variant != "noaudit" else {}
        try:
            sizes = object_sizes(cp)
        except Exception as e:  # a figure less, never the run
            sizes = {"error": {str(e)[:80]: 0}}
        out = {
            "variant": args.variant,
            "versions": args.versions,
            "endpoints": args.endpoints,
            "converged": fleet["converged"],
            "converge_seconds": fleet["converge_seconds"],
            "apiserver_cpu_seconds": round(c1 - c0, 1),
            "writes": w1 - w0,
            "operator_writes": op_writes,
            "apiserver_cpu_ms_per_write": round(1000 * (c1 - c0) / max(1, w1 - w0), 2),
            "object_bytes": sizes,
            "writes_by_user": by_user,
            "operator_requests": op_requests,
            "load1": os.getloadavg()[0],
        }
        print(json.dumps(out), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(out) + "\n")
        return 0
    finally:
        bc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
