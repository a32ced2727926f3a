#!/usr/bin/env python3
"""The operator's main job on an embedded default: a local control plane (built on first use),
the CRDs, the operator, and examples/ applied; then the result. Runs until Ctrl-C, then cleans up.

    ./dev demo            # or: python e2e/demo.py [--once]
"""

from __future__ import annotations

import argparse
import http.server
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from controlplane import ControlPlane  # noqa: E402
from operator_proc import OperatorProcess  # noqa: E402

ARTIFACT_PORT = 18080  # the examples' artifact URIs point here


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def serve_artifacts() -> http.server.ThreadingHTTPServer:
    handler = partial(_QuietHandler, directory=str(REPO / "examples" / "artifacts"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", ARTIFACT_PORT), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def wait_ready(cp: ControlPlane, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cp.kubectl(
            "get",
            "modelendpoints",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
            check=False,
        ).stdout.split()
        if out and all(s == "True" for s in out):
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="show the result and exit (no waiting for Ctrl-C)")
    args = ap.parse_args()
    srv = serve_artifacts()
    with ControlPlane() as cp:
        op = OperatorProcess(
            cp.kubeconfig, settings={"artifacts": {"allowPrivateNetworks": True}}, metrics_port=8089
        )
        with op:
            print(f"==> operator running (pid {op.pid}); metrics on http://127.0.0.1:8089/metrics")
            files = sorted((REPO / "examples").rglob("modelversion-*.yaml"))
            print(cp.kubectl("apply", *sum((["-f", str(f)] for f in files), [])).stdout)
            eps = sorted((REPO / "examples").rglob("endpoint-*.yaml"))
            print(cp.kubectl("apply", *sum((["-f", str(f)] for f in eps), [])).stdout)
            ok = wait_ready(cp)
            print("==> kubectl get models")
            print(cp.kubectl("get", "models", "-o", "wide").stdout)
            print("==> routes written by the operator")
            print(
                cp.kubectl(
                    "get",
                    "virtualservices.networking.istio.io,httproutes.gateway.networking.k8s.io",
                    check=False,
                ).stdout
            )
            print(
                cp.kubectl(
                    "get",
                    "virtualservice",
                    "fraud-detector",
                    "-o",
                    "jsonpath={range .spec.http[0].route[*]}{.destination.host} weight={.weight} "
                    "version={.headers.response.set.x-model-version}{'\\n'}{end}",
                    check=False,
                ).stdout
            )
            print("==> deployments (pods run on kwok fake nodes)")
            print(
                cp.kubectl(
                    "get", "deployments", "-l", "app.kubernetes.io/managed-by=modelversioning-operator"
                ).stdout
            )
            if not ok:
                print("!! not every endpoint became Ready; operator log tail:\n" + op.logs(60))
            else:
                # The seed story: support-chatbot 2.4.1 (green, 100%) degrades; roll back to the warm 2.3.8.
                print("==> kubectl models rollback support-chatbot   (2.4.1 degraded; 2.3.8 is warm at 0%)")
                plugin = Path(sys.executable).with_name("kubectl-models")
                res = subprocess.run(
                    [str(plugin), "--kubeconfig", str(cp.kubeconfig), "rollback", "support-chatbot"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                print(res.stdout + res.stderr)
                print(cp.kubectl("get", "models").stdout)
            print(f"==> KUBECONFIG={cp.kubeconfig}")
            print(
                "    try: kubectl get models; kubectl describe mv fraud-detector-v2.4.1;"
                " kubectl models status fraud-detector"
            )
            if args.once:
                return 0 if ok else 1
            print("==> running; Ctrl-C to stop and clean up")
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            stop.wait()
    srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
