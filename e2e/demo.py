#!/usr/bin/env python3
"""The operator's main job on an embedded default, with real traffic.

A local control plane with a real node (kubelet + containerd running the locally built images),
Traefik as the Gateway API implementation, Prometheus, and the operator; then `examples/` applied
(adapted to this machine, see `adapt`), and the seed story played with real requests:

1. every response says which version answered (`x-model-version`), through the gateway (printed
   as `curl -si` prints it);
2. support-chatbot's green 2.4.1 takes all traffic and degrades: `kubectl models rollback` moves it
   back to blue 2.3.8 (a response before and after);
3. 2.4.1 is rolled out again, as a canary, under traffic: the analysis sees its error rate in
   Prometheus and the operator puts all traffic back on 2.3.8, with no human; the demo prints a
   response before, during and after, and the timeline;
4. `kubectl models rollout status`: the steps, the weights and every measurement.

    ./dev demo            # or: python e2e/demo.py [--once]

Runs until Ctrl-C (or, with --once, exits after the story), then cleans up everything it started.
"""

from __future__ import annotations

import argparse
import copy
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from controlplane import ControlPlane  # noqa: E402
from gateway import Response, Traefik  # noqa: E402
from images import OPERATOR_IMAGE  # noqa: E402
from node import NODE_IP  # noqa: E402
from operator_proc import OperatorProcess  # noqa: E402
from prometheus import Prometheus  # noqa: E402

ARTIFACTS = REPO / "examples" / "artifacts"
CHATBOT_HOST = "chatbot.example.com"
FRAUD_HOST = "fraud-detector.models.example.com"
# The seed story's degradation: 2.4.1 answers a third of the predictions with 500.
DEGRADED = {"MODEL_SERVER_ERROR_RATE": "0.35"}
PLUGIN = Path(sys.executable).with_name("kubectl-models")  # `kubectl models`, installed with the package


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def serve_artifacts() -> tuple[http.server.ThreadingHTTPServer, str]:
    srv = http.server.ThreadingHTTPServer((NODE_IP, 0), partial(_Quiet, directory=str(ARTIFACTS)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://{NODE_IP}:{srv.server_address[1]}"


def adapt(doc: dict[str, Any], base: str, gw: Traefik, placement: dict[str, Any]) -> dict[str, Any]:
    """The examples are written for a real cluster; here: artifacts from the demo's server on the node
    address, the reference model server of our image as the runtime, routes on Traefik (Istio has no
    data plane here), pods on the real node."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    if doc["kind"] == "ModelVersion":
        rel = spec["artifact"]["uri"].split("/", 3)[3]  # http://127.0.0.1:18080/<model>/<version>/model.bin
        spec["artifact"]["uri"] = f"{base}/{rel}"
        env = dict(DEGRADED) if (spec["model"], spec["version"]) == ("support-chatbot", "2.4.1") else {}
        spec["runtime"] = {
            "image": OPERATOR_IMAGE,
            "command": ["modelversioning", "model-server"],
            "port": 8080,
            "healthPath": "/healthz",
            "env": [{"name": k, "value": v} for k, v in env.items()],
        }
    else:
        host = CHATBOT_HOST if spec["model"] == "support-chatbot" else FRAUD_HOST
        spec["routing"] = {"router": "gatewayAPI", "hosts": [host], "parentRefs": [gw.parent_ref()]}
        spec["placement"] = placement
        spec.pop("mirror", None)  # Traefik cannot mirror (see README: data-plane support)
    return doc


def docs(pattern: str) -> list[dict[str, Any]]:
    out = []
    for f in sorted((REPO / "examples").rglob(pattern)):
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def wait(what: str, check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    print(f"!! timed out waiting for {what}")
    return False


def ready(cp: ControlPlane, name: str) -> bool:
    out = cp.kubectl(
        "get",
        "modelendpoint",
        name,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    ).stdout
    return out.strip() == "True"


def curl(gw: Traefik, host: str, n: int) -> Counter[str]:
    rs = gw.requests(n, "/v1/predict", host=host, method="POST", body=b'{"inputs": [1]}')
    return Counter(f"{r.status} {r.headers.get('x-model-version', '-')}" for r in rs)


PREDICTION = b'{"inputs": [1]}'


def show(r: Response, gw: Traefik, host: str, caption: str) -> None:
    """A real response through Traefik, printed as `curl -si` prints it (status line, every header
    in the order received, the body)."""
    print(f"    # {caption}")
    print(f"    $ curl -si {gw.url}/v1/predict -H 'Host: {host}' -d '{PREDICTION.decode()}'")
    print(f"    HTTP/1.1 {r.status} {HTTPStatus(r.status).phrase}")
    for name, value in r.headers.items():
        print(f"    {name}: {value}")
    print()
    print("    " + r.body.decode(errors="replace").strip())
    print()


def curl_si(gw: Traefik, host: str, caption: str) -> Response:
    r = gw.request("/v1/predict", host=host, method="POST", body=PREDICTION)
    show(r, gw, host, caption)
    return r


def answering(gw: Traefik, host: str, versions: set[str], n: int = 20) -> bool:
    """n responses in a row come from exactly these versions (any status: 2.4.1 answers 500s too)."""
    rs = gw.requests(n, "/v1/predict", host=host, method="POST", body=PREDICTION)
    return {r.headers.get("x-model-version", "-") for r in rs} == versions


class Load(threading.Thread):
    """Clients sending predictions to support-chatbot; a per-second timeline of what answered."""

    def __init__(self, gw: Traefik) -> None:
        super().__init__(daemon=True)
        self.gw, self.stop_ = gw, threading.Event()
        self.seconds: dict[int, Counter[str]] = {}
        self.t0 = time.time()

    def run(self) -> None:
        while not self.stop_.is_set():
            for r in self.gw.requests(5, "/v1/predict", host=CHATBOT_HOST, method="POST", body=b"{}"):
                sec = int(time.time() - self.t0)
                self.seconds.setdefault(sec, Counter())[
                    f"{r.status} {r.headers.get('x-model-version', '-')}"
                ] += 1


def manual_rollback(cp: ControlPlane, gw: Traefik) -> bool:
    print("==> support-chatbot: green 2.4.1 takes all traffic (endpoint-bluegreen.yaml),")
    print("    and answers a third of the predictions with 500: a human rolls it back")
    if not wait("2.4.1 answering through Traefik", lambda: answering(gw, CHATBOT_HOST, {"2.4.1"}), 60):
        return False
    curl_si(gw, CHATBOT_HOST, "before the rollback: green 2.4.1 answers")
    print("    $ kubectl models rollback support-chatbot")
    res = subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(cp.kubeconfig), "rollback", "support-chatbot"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    print("\n".join("    " + ln for ln in (res.stdout + res.stderr).rstrip().splitlines()))
    if res.returncode != 0:
        return False
    # The plugin returns once the HTTPRoute sends 100 % to blue; Traefik applies it a moment later.
    ok = wait("2.3.8 serving all chatbot traffic", lambda: answering(gw, CHATBOT_HOST, {"2.3.8"}), 30)
    curl_si(gw, CHATBOT_HOST, "after the rollback: blue 2.3.8 answers")
    return ok


def canary_answer(gw: Traefik, tries: int = 60) -> None:
    """Requests until the canary (2.4.1) answers one: printed, with how many it took."""
    for i in range(1, tries + 1):
        r = gw.request("/v1/predict", host=CHATBOT_HOST, method="POST", body=PREDICTION)
        if r.headers.get("x-model-version") == "2.4.1":
            show(r, gw, CHATBOT_HOST, f"during the canary: 2.4.1 answered request {i} (its share: 25 %)")
            return
        time.sleep(0.1)
    print(f"    (the canary answered none of {tries} requests)")


def automatic_rollback(cp: ControlPlane, gw: Traefik) -> bool:
    print("==> the seed story: 2.4.1 rolls out again, as a canary with an error-rate analysis, under traffic")
    strategy = {
        "canary": {
            "variant": "green",
            "baseline": "blue",
            "steps": [
                {"setWeight": 25},
                {"pause": {"duration": "20s"}},
                {"setWeight": 50},
                {"pause": {"duration": "20s"}},
            ],
            "analysis": {
                "interval": "5s",
                "metrics": [{"name": "error-rate", "template": "error-rate", "window": "15s", "max": 0.05}],
            },
        }
    }
    blue_live = [
        {"name": "blue", "version": "2.3.8", "weight": 100},
        {"name": "green", "version": "2.4.1", "weight": 0},
    ]
    back = {"spec": {"variants": blue_live, "strategy": strategy}}
    cp.kubectl("patch", "modelendpoint", "support-chatbot", "--type=merge", "-p", json.dumps(back))
    wait("2.3.8 serving all chatbot traffic", lambda: set(curl(gw, CHATBOT_HOST, 20)) == {"200 2.3.8"}, 120)
    curl_si(gw, CHATBOT_HOST, "before the rollout: blue 2.3.8 answers")
    load = Load(gw)
    load.start()
    time.sleep(3)
    t_go = time.time()
    go = {"spec": {"variants": [{"name": "blue", "version": "2.3.8", "weight": 0},
                                {"name": "green", "version": "2.4.1", "weight": 100}]}}  # fmt: skip
    cp.kubectl("patch", "modelendpoint", "support-chatbot", "--type=merge", "-p", json.dumps(go))
    print("    (kubectl patch: declared end state green 2.4.1 = 100 %; the strategy ramps it)")
    canary_answer(gw)

    def phase() -> str:
        return cp.kubectl(
            "get", "mep", "support-chatbot", "-o", "jsonpath={.status.rollout.phase}", check=False
        ).stdout.strip()

    ok = wait("the automatic rollback", lambda: phase() == "Failed", 240)
    t_failed = time.time()
    wait(
        "clients back on 2.3.8",
        lambda: set(load.seconds.get(int(time.time() - load.t0) - 1, {})) == {"200 2.3.8"},
        60,
    )
    time.sleep(2)
    load.stop_.set()
    load.join(10)
    print("    timeline (seconds since the patch: responses by status and x-model-version)")
    start = int(t_go - load.t0)
    for sec in sorted(s for s in load.seconds if s >= start - 1):
        mark = "  <- rolled back" if int(t_failed - load.t0) == sec else ""
        print(
            f"    t={sec - start:+4d}s  "
            + ", ".join(f"{k}: {v}" for k, v in sorted(load.seconds[sec].items()))
            + mark
        )
    msg = cp.kubectl(
        "get", "mep", "support-chatbot", "-o", "jsonpath={.status.rollout.message}", check=False
    ).stdout
    print(f"    status.rollout: Failed, {msg}")
    print(f"    from the patch to the rollback decision: {t_failed - t_go:.1f}s")
    curl_si(gw, CHATBOT_HOST, "after the automatic rollback: blue 2.3.8 answers again")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="play the story and exit (no waiting for Ctrl-C)")
    args = ap.parse_args()
    with ControlPlane(real_node=True) as cp, Traefik(cp) as gw, Prometheus(cp=cp, traefik=gw) as prom:
        srv, base = serve_artifacts()
        settings = {
            "artifacts": {"allowPrivateNetworks": True},
            "serving": {"initImage": OPERATOR_IMAGE, "initImagePullPolicy": "Never", "drainSeconds": 2},
            "analysis": {"prometheusUrl": prom.url},
        }
        with OperatorProcess(cp.kubeconfig, settings=settings, metrics_port=8089) as op:
            print(f"==> operator running (pid {op.pid}); metrics on http://127.0.0.1:8089/metrics")
            placement = cp.real_node.pod_placement()
            manifests = [adapt(d, base, gw, placement) for d in docs("modelversion-*.yaml")]
            manifests += [adapt(d, base, gw, placement) for d in docs("endpoint-*.yaml")]
            print(cp.apply(manifests))
            ok = all(
                wait(f"{n} Ready (real pods)", lambda n=n: ready(cp, n), 300)
                for n in ("fraud-detector", "support-chatbot")
            )
            print("==> kubectl get models")
            print(cp.kubectl("get", "models", "-o", "wide").stdout)
            print("==> pods on the real node (verified by their init container before serving)")
            print(cp.kubectl("get", "pods", "-o", "wide").stdout)
            if ok:
                print("==> real requests through Traefik: every response says which version answered")
                curl_si(gw, FRAUD_HOST, "fraud-detector: stable 2.3.8 at 90 %, canary 2.4.1 at 10 %")
                print(f"    100 requests to fraud-detector: {dict(curl(gw, FRAUD_HOST, 100))}")
                ok = manual_rollback(cp, gw) and automatic_rollback(cp, gw)
                print("==> kubectl models rollout status support-chatbot")
                cmd = [
                    str(PLUGIN),
                    "--kubeconfig",
                    str(cp.kubeconfig),
                    "rollout",
                    "status",
                    "support-chatbot",
                ]
                print(subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout)
            else:
                print("!! not every endpoint became Ready; operator log tail:\n" + op.logs(60))
            print(f"==> KUBECONFIG={cp.kubeconfig}  gateway: {gw.url} (Host: {CHATBOT_HOST} or {FRAUD_HOST})")
            print(
                "    try: kubectl get models; kubectl models which fraud-detector; "
                "kubectl models rollout status support-chatbot"
            )
            if args.once:
                srv.shutdown()
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
