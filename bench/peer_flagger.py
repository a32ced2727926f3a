"""Flagger for the peer comparison (bench/peer.py): the comparable action is a rollback on a failed check.

Flagger (built from the Go module proxy by ``e2e/build-flagger.sh``, cached, never committed; its CRDs
read from the module cache, ``artifacts/flagger/crd.yaml``) runs as a host process under its own
ServiceAccount, on the bench namespace (``-namespace``), with the Gateway API provider
(``-mesh-provider=gatewayapi:v1``: it writes an HTTPRoute per Canary) and the run's Prometheus.

Both sides read one series the benchmark controls, ``bench_peer_bad{obj="<name>"}`` (0 or 1, served by
``BadMetric`` and scraped by Prometheus every second):

- Flagger: a Deployment ``fl-NNNN`` (1 kwok pod) and a Canary (``stepWeight`` = ``maxWeight`` = 20, a
  MetricTemplate ``max(bench_peer_bad{obj="{{ target }}"})`` with ``thresholdRange.max: 0.5``,
  ``threshold: 1``, ``interval: 10s``) held at 20 % by a ``confirm-promotion`` webhook that always says
  no (phase WaitingPromotion; the analysis keeps running every interval). 10 s is Flagger's floor:
  ``Canary.GetAnalysisInterval`` returns 10 s for anything shorter; each Canary's job ticks on its own
  ``time.Ticker`` of that interval (``-control-loop-interval`` only starts and stops the jobs). A
  failed check counts (``failedChecks`` 1) at one tick, and the rollback (HTTPRoute back to primary
  100) happens at the next: 1-2 intervals after the value is visible.
- ours: an endpoint ``au-NNNN`` (gatewayAPI router, an HTTPRoute) with a canary strategy (setWeight 20,
  then a pause without duration) whose analysis (``interval: 2s``, our floor; ``failureLimit: 0``) runs
  ``max(bench_peer_bad{obj="{{endpoint}}"})`` with ``max: 0.5``: the first failed measurement fails the
  rollout and puts the route back on the start split (stable 100).

Measured, one sample at a time, alternating sides: from the first moment Prometheus answers the query
with the failing value (polled every 50 ms) to the arrival, on a watch of HTTPRoutes, of the route with
the canary at 0. Re-arming (the value back to 0, then a new revision for Flagger, a new rollout for us)
happens between rounds, never during one.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cluster import NS, BenchCluster, Weights, _free_port
from kubernetes import client
from peer_argo import built_binary, module_dir
from watchers import Obj

from helpers import GROUP, VERSION, make_artifact, model_endpoint, model_version, route_weights
from operator_proc import terminate

FLAGGER_VERSION = os.environ.get("FLAGGER_VERSION", "v1.41.0")
FLAGGER_MODULE = "github.com/fluxcd/flagger"
FLAGGER_SA = "flagger"
FLAGGER_USER = f"system:serviceaccount:{NS}:{FLAGGER_SA}"
FLAGGER_GROUP, FLAGGER_API = "flagger.app", "v1beta1"
GW_GROUP, GW_VERSION = "gateway.networking.k8s.io", "v1"
INTERVAL_FLAGGER, INTERVAL_OURS = "10s", "2s"  # each side's floor
ARMED: Weights = {"stable": 80, "canary": 20}
START: Weights = {"stable": 100, "canary": 0}
METRIC = "bench_peer_bad"
TEMPLATE = "bench-bad"


def fl_name(i: int) -> str:
    return f"fl-{i:04d}"


def au_name(i: int) -> str:
    return f"au-{i:04d}"


def flagger_binary() -> Path:
    """``$MV_FLAGGER_BIN_DIR/flagger``, else what e2e/build-flagger.sh builds (cached)."""
    return built_binary("MV_FLAGGER_BIN_DIR", "build-flagger.sh", "flagger")


def flagger_crd_file() -> Path:
    f = module_dir(FLAGGER_MODULE, FLAGGER_VERSION) / "artifacts" / "flagger" / "crd.yaml"
    if not f.is_file():
        raise RuntimeError(f"no {f}")
    return f


# ---------------------------------------------------------------------------------------------- the value
class BadMetric:
    """``bench_peer_bad{obj}`` on /metrics (0 or 1 per object) and /gate, Flagger's confirm-promotion
    webhook, which always answers 403 (never promote: the Canary stays at 20 %)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                with outer.lock:
                    lines = [f'{METRIC}{{obj="{k}"}} {v}' for k, v in sorted(outer.values.items())]
                body = ("# TYPE bench_peer_bad gauge\n" + "\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_error(403 if self.path == "/gate" else 404)

            def log_message(self, *_a: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, name="bad-metric", daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def set(self, obj: str, bad: bool) -> None:
        with self.lock:
            self.values[obj] = int(bad)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def query(obj: str) -> str:
    return f'max({METRIC}{{obj="{obj}"}})'


# ---------------------------------------------------------------------------------------------- process
class FlaggerProcess:
    def __init__(self, binary: Path, kubeconfig: Path, workdir: Path, prom_url: str) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig
        self.log_path = workdir / "flagger.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.flags = [
            f"-namespace={NS}",
            "-mesh-provider=gatewayapi:v1",
            f"-metrics-server={prom_url}",
            f"-port={self.port}",
            "-log-level=info",
            # leader election: off, its default; -kubeconfig-qps 100 / -kubeconfig-burst 250: defaults
        ]

    def start(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), f"-kubeconfig={self.kubeconfig}", *self.flags],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flagger exited with {self.proc.returncode}:\n{self.logs()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r,
            ):
                if r.status == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"flagger not healthy within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


# ---------------------------------------------------------------------------------------------- objects
def flagger_objects(i: int, prom_url: str, gate_url: str) -> list[Obj]:
    name = fl_name(i)
    labels = {"app": name}
    container = {
        "name": "server",
        "image": "registry.invalid/model-server:1",
        "ports": [{"containerPort": 8080}],
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"bench/rev": "0"}},
                "spec": {"containers": [container]},
            },
        },
    }
    canary = {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_API}",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 600,
            "service": {
                "port": 80,
                "targetPort": 8080,
                "hosts": [f"{name}.example.com"],
                "gatewayRefs": [{"name": "models-gateway", "namespace": NS}],
            },
            "analysis": {
                "interval": INTERVAL_FLAGGER,
                "threshold": 1,
                "stepWeight": ARMED["canary"],
                "maxWeight": ARMED["canary"],
                "metrics": [
                    {
                        "name": "bad",
                        "templateRef": {"name": TEMPLATE, "namespace": NS},
                        "thresholdRange": {"max": 0.5},
                        "interval": INTERVAL_FLAGGER,
                    }
                ],
                "webhooks": [{"name": "hold", "type": "confirm-promotion", "url": gate_url}],
            },
        },
    }
    return [deploy, canary]


def metric_template(prom_url: str) -> Obj:
    return {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_API}",
        "kind": "MetricTemplate",
        "metadata": {"name": TEMPLATE, "namespace": NS},
        "spec": {
            "provider": {"type": "prometheus", "address": prom_url},
            "query": f'max({METRIC}{{obj="{{{{ target }}}}"}})',
        },
    }


def our_strategy() -> dict[str, Any]:
    metric = {"name": "bad", "query": f'max({METRIC}{{obj="{{{{endpoint}}}}"}})', "max": 0.5}
    return {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": [{"setWeight": ARMED["canary"]}, {"pause": {}}],
            "analysis": {"interval": INTERVAL_OURS, "failureLimit": 0, "metrics": [metric]},
        }
    }


def flagger_route_weights(rt: Obj | None) -> Weights | None:
    """primary ("stable") / canary weights of the HTTPRoute Flagger writes for a Canary."""
    if rt is None:
        return None
    out: Weights = {}
    with contextlib.suppress(KeyError, TypeError, ValueError):
        for rule in rt["spec"].get("rules") or []:
            for b in rule.get("backendRefs") or []:
                role = "canary" if b["name"].endswith("-canary") else "stable"
                out[role] = out.get(role, 0) + int(b.get("weight", 1))
            if out:
                return out
    return out or None


def our_route_weights(rt: Obj | None) -> Weights | None:
    if rt is None:
        return None
    try:
        w = route_weights(rt)
    except (KeyError, TypeError, ValueError):
        return None
    return {"stable": w.get("stable", 0), "canary": w.get("canary", 0)}


def create_ours(bc: BenchCluster, i: int) -> None:
    """Endpoint au-NNNN on a model of its own (pa-NNNN, versions 1.0.0 and 1.1.0), at the start split."""
    model = f"pa-{i:04d}"
    for v in ("1.0.0", "1.1.0"):
        uri, sha = make_artifact(bc.root, model, v)
        bc._create("modelversions", model_version(model, v, uri, sha, stage="production"))
    variants = [
        {"name": "stable", "version": "1.0.0", "weight": START["stable"]},
        {"name": "canary", "version": "1.1.0", "weight": START["canary"]},
    ]
    ep = model_endpoint(au_name(i), model, variants, router="gatewayAPI", strategy=our_strategy())
    bc._create("modelendpoints", ep)


def set_ours(co: client.CustomObjectsApi, name: str, weights: Weights) -> None:
    variants = [
        {"name": "stable", "version": "1.0.0", "weight": weights["stable"]},
        {"name": "canary", "version": "1.1.0", "weight": weights["canary"]},
    ]
    co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "modelendpoints", name, {"spec": {"variants": variants}}
    )


def poll_visible(value_of: Callable[[], float | None], want: float, timeout: float = 60) -> float:
    """time.monotonic() of the first answer equal to `want` (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = value_of()
        if v is not None and not math.isnan(v) and v == want:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"Prometheus did not answer {want} within {timeout}s")


def parallel(fn: Callable[[Any], None], items: list[Any], workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, items))


def load_crds(cp: Any) -> list[str]:
    docs = [d for d in yaml.safe_load_all(flagger_crd_file().read_text()) if d]
    names = [d["metadata"]["name"] for d in docs if d.get("kind") == "CustomResourceDefinition"]
    cp.kubectl("create", "-f", str(flagger_crd_file()))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    return names
