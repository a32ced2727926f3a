"""A real Gateway API implementation for the e2e harness: Traefik on the host.

Traefik v3 (built from the Go module proxy by ``e2e/build-dataplane.sh``) runs as a host process with
its Kubernetes Gateway provider against a ``ControlPlane``; it serves a GatewayClass
(``traefik.io/gateway-controller``) and one Gateway whose HTTP listener is Traefik's ``web``
entryPoint on a free loopback port. HTTPRoutes attach to it with ``Traefik.parent_ref()`` (what a
ModelEndpoint's ``routing.parentRefs`` takes). Traefik routes to the ready addresses of the
EndpointSlices of each backend Service directly (pod IPs on the real node's bridge, or any address
the host can reach), so no kube-proxy is involved.

    with ControlPlane() as cp, Traefik(cp) as gw:
        cp.apply(route_with_parent(gw.parent_ref()))
        gw.wait_route(namespace, name)                 # Accepted + ResolvedRefs by Traefik
        r = gw.request("/v1/predict", host="fraud.models.example.com", method="POST", body=b"{}")
        r.status, r.headers["x-model-version"], r.json()["hostname"]

Also on loopback: Prometheus metrics (``metrics_url``, entryPoint ``metrics``) and Traefik's API and
ping (``api_url``, entryPoint ``traefik``: ``/api/http/routers``, ``/api/http/services``, ``/ping``).

What Traefik v3.7.13's provider does with our HTTPRoute (read in pkg/provider/kubernetes/gateway,
proven in e2e/test_gateway_prometheus.py): backendRef weights (smooth weighted round robin:
deterministic, not random), backendRef- and rule-level RequestHeaderModifier and
ResponseHeaderModifier, URLRewrite, RequestRedirect, ExtensionRef (Traefik Middlewares). Not
RequestMirror: an unsupported rule filter makes that rule answer 500 to every request, and the
route's status says nothing about it (Accepted and ResolvedRefs stay True; only Traefik's log says
"Unable to load HTTPRoute filters ... unsupported filter RequestMirror"). (An unsupported filter on a
backendRef is reported: ResolvedRefs False/InvalidKind, and that backend's share answers 500.)
Traefik's own mirroring exists only as a TraefikService (kubernetesCRD provider and Traefik's CRDs),
and the provider drops backendRef filters on a TraefikService backendRef (loadService: middlewares are
attached only when it builds the service itself), so our per-variant headers would be lost there.

Traefik watches GRPCRoute, BackendTLSPolicy and TLSRoute (v1) besides what our operator uses, and
waits for their informers to sync: the CRDs missing from the cluster are installed from the
``sigs.k8s.io/gateway-api`` module source of the same version (standard channel).

Environment:
    MV_DATAPLANE_BIN_DIR   directory with ``traefik`` and ``prometheus`` (skips build-dataplane.sh)
    MV_E2E_KEEP            "1": keep the work dir (config, logs) after stop()
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import ControlPlane, _die_with_parent, _free_port, _Proc  # noqa: E402

BUILD_SCRIPT = E2E_DIR / "build-dataplane.sh"
GATEWAY_API_VERSION = "v1.6.1"  # the CRDs in ../shared/thirdparty-crds, and what Traefik 3.7 is built against
CONTROLLER_NAME = "traefik.io/gateway-controller"
INSTANCE_LABEL = "modelversioning.io/e2e-traefik"
GATEWAY_GROUP = "gateway.networking.k8s.io"
# CRDs Traefik's Gateway provider lists and watches (pkg/provider/kubernetes/gateway/client.go, WatchAll).
TRAEFIK_WATCHED_CRDS = (
    "gatewayclasses",
    "gateways",
    "httproutes",
    "grpcroutes",
    "referencegrants",
    "backendtlspolicies",
    "tlsroutes",
)


# Request and response headers Traefik's access log keeps (request_<name>, downstream_<name>).
ACCESS_LOG_HEADERS = ("X-Request-Id", "X-Model-Version", "X-Model-Sha256", "X-Endpoint-Variant")


class GatewayError(RuntimeError):
    """Traefik (or its GatewayClass/Gateway) could not be started."""


def _log(msg: str) -> None:
    print(f"[gateway] {msg}", file=sys.stderr, flush=True)


def find_dataplane_bin_dir(log: Callable[[str], None] = _log) -> Path:
    """``$MV_DATAPLANE_BIN_DIR``, else the bin dir printed by build-dataplane.sh (builds once)."""
    env_dir = os.environ.get("MV_DATAPLANE_BIN_DIR")
    if env_dir:
        return Path(env_dir)
    log(f"getting traefik and prometheus via {BUILD_SCRIPT.name} (builds once, slow the first time)")
    try:
        res = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, timeout=3 * 3600
        )
    except subprocess.TimeoutExpired as e:
        raise GatewayError(f"{BUILD_SCRIPT.name} did not finish in 3h") from e
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    if res.returncode != 0 or not lines:
        raise GatewayError(f"{BUILD_SCRIPT.name} failed with exit code {res.returncode}")
    return Path(lines[-1].strip())


def gateway_api_crd_dir(version: str = GATEWAY_API_VERSION) -> Path:
    """config/crd/standard of the sigs.k8s.io/gateway-api module (from the module cache or the proxy)."""
    if not shutil.which("go"):
        raise GatewayError("Go is needed to fetch the Gateway API CRDs Traefik watches")
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            ["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{version}"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
        )
    if res.returncode != 0:
        raise GatewayError(f"go mod download sigs.k8s.io/gateway-api@{version}: {res.stderr or res.stdout}")
    d = Path(json.loads(res.stdout)["Dir"]) / "config" / "crd" / "standard"
    if not d.is_dir():
        raise GatewayError(f"{d} does not exist")
    return d


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RouteStatus:
    """An HTTPRoute's status as written by Traefik for one parent."""

    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)  # type -> condition
    raw: dict[str, Any] = field(default_factory=dict)

    def is_true(self, cond: str) -> bool:
        return self.conditions.get(cond, {}).get("status") == "True"


class Traefik:
    """Traefik with the Kubernetes Gateway provider, a GatewayClass and a Gateway, as a context manager.

    Attributes once started: ``url`` (http://host:web_port, the Gateway's HTTP listener),
    ``metrics_url``, ``api_url``, ``web_port``, ``gateway_name``, ``gateway_namespace``,
    ``gateway_class``, ``timings`` (step -> seconds), ``workdir``, ``bin``.
    """

    def __init__(
        self,
        cp: ControlPlane,
        *,
        listen_host: str = "127.0.0.1",
        gateway_name: str = "mv-gateway",
        gateway_namespace: str | None = None,
        gateway_class: str | None = None,
        bin_dir: Path | str | None = None,
        log: Callable[[str], None] | None = _log,
        keep: bool | None = None,
        throttle: str = "100ms",
    ) -> None:
        self.cp = cp
        self.listen_host = listen_host
        self.gateway_name = gateway_name
        # Unique per instance: two Traefiks on one cluster (or one starting while the previous one's
        # objects are being deleted) never program or write the status of each other's Gateway.
        # Never all digits or digits-e-digits ("123e45"): as a label value kubectl's YAML reads that as a
        # number and refuses the object (7 errors in one CI run)
        self.instance = "t" + secrets.token_hex(3)
        self.gateway_namespace = gateway_namespace or f"mv-gateway-{self.instance}"
        self.gateway_class = gateway_class or f"mv-traefik-{self.instance}"
        self.log = log or (lambda _m: None)
        self.keep = os.environ.get("MV_E2E_KEEP") == "1" if keep is None else keep
        self.throttle = throttle
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.bin: Path = Path()
        self.workdir: Path | None = None
        self.web_port = self.metrics_port = self.api_port = 0
        self.timings: dict[str, float] = {}
        self.proc: _Proc | None = None
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ public API
    @property
    def url(self) -> str:
        return f"http://{self._client_host}:{self.web_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def api_url(self) -> str:
        return f"http://{self._client_host}:{self.api_port}"

    @property
    def metrics_target(self) -> str:
        """host:port Prometheus scrapes (path /metrics)."""
        return f"{self._client_host}:{self.metrics_port}"

    def parent_ref(self, section: bool = True) -> dict[str, Any]:
        """A parentRef to this Gateway (camelCase, as in a ModelEndpoint's routing.parentRefs)."""
        ref: dict[str, Any] = {"name": self.gateway_name, "namespace": self.gateway_namespace}
        if section:
            ref["sectionName"] = "web"
        return ref

    def __enter__(self) -> Traefik:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Traefik:
        if self._started:
            return self
        self._started = True
        t0 = time.monotonic()
        try:
            self._step("binary", self._find_binary)
            self._step("CRDs", self._ensure_crds)
            self.workdir = Path(tempfile.mkdtemp(prefix="mv-traefik-"))
            taken: set[int] = set()
            self.web_port, self.metrics_port, self.api_port = (_free_port(taken) for _ in range(3))
            self._step("traefik ready", self._start_traefik)
            self._step("gateway programmed", self._apply_gateway)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        self.log(f"traefik {self.url} ready in {self.timings['total']:.1f}s ({self.summary()})")
        return self

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items() if k != "total")

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            if not self.cp._stopped:
                self.cp.kubectl(
                    "delete",
                    f"gateways.{GATEWAY_GROUP}/{self.gateway_name}",
                    "-n",
                    self.gateway_namespace,
                    "--ignore-not-found",
                    "--wait=false",
                    check=False,
                    timeout=30,
                )
                self.cp.kubectl(
                    "delete",
                    f"gatewayclasses.{GATEWAY_GROUP}/{self.gateway_class}",
                    "--ignore-not-found",
                    "--wait=false",
                    check=False,
                    timeout=30,
                )
                self.cp.kubectl(
                    "delete",
                    "namespace",
                    self.gateway_namespace,
                    "--ignore-not-found",
                    "--wait=false",
                    check=False,
                )
        if self.proc is not None:
            p = self.proc.popen
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        if self.workdir is not None and self.workdir.exists():
            if self.keep:
                self.log(f"kept {self.workdir} (traefik config and logs)")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self, lines: int = 60) -> str:
        return self.proc.tail(lines) if self.proc is not None else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    # ------------------------------------------------------------------ requests
    def request(
        self,
        path: str = "/",
        *,
        host: str | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> Response:
        """One HTTP request through the Gateway's listener (Host header = ``host``)."""
        return self.requests(1, path, host=host, method=method, body=body, headers=headers, timeout=timeout)[
            0
        ]

    def requests(
        self,
        n: int,
        path: str = "/",
        *,
        host: str | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> list[Response]:
        """``n`` sequential requests over one keep-alive connection (reconnects if Traefik closes it)."""
        out: list[Response] = []
        conn: http.client.HTTPConnection | None = None
        hdrs = dict(headers or {})
        if host:
            hdrs["Host"] = host
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        reused = False  # a kept-alive connection the server may have closed meanwhile: retried once
        try:
            while len(out) < n:
                if conn is None:
                    conn = http.client.HTTPConnection(self._client_host, self.web_port, timeout=timeout)
                    reused = False
                t0 = time.monotonic()
                try:
                    conn.request(method, path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    conn = None
                    if not reused:
                        raise
                    continue
                reused = True
                out.append(
                    Response(
                        resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, time.monotonic() - t0
                    )
                )
                if resp.will_close:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()
        return out

    def traffic(self, path: str = "/v1/predict", **kwargs: Any) -> TrafficLoop:
        """Continuous requests in background threads (a context manager; see TrafficLoop)."""
        return TrafficLoop(self, path, **kwargs)

    # ------------------------------------------------------------------ status
    def route_status(self, namespace: str, name: str) -> RouteStatus:
        """Conditions Traefik wrote on an HTTPRoute for this Gateway (empty if none yet)."""
        res = self.cp.kubectl(
            "get", f"httproutes.{GATEWAY_GROUP}", name, "-n", namespace, "-o", "json", check=False
        )
        if res.returncode != 0:
            return RouteStatus()
        route = json.loads(res.stdout)
        for parent in (route.get("status") or {}).get("parents") or []:
            ref = parent.get("parentRef") or {}
            if (
                parent.get("controllerName") == CONTROLLER_NAME
                and ref.get("name") == self.gateway_name
                and (ref.get("namespace") or namespace) == self.gateway_namespace
            ):
                return RouteStatus({c["type"]: c for c in parent.get("conditions") or []}, parent)
        return RouteStatus()

    def wait_route(
        self,
        namespace: str,
        name: str,
        timeout: float = 60,
        conditions: Iterable[str] = ("Accepted", "ResolvedRefs"),
    ) -> RouteStatus:
        """Until Traefik reports the conditions True for the current generation of the route."""
        want = tuple(conditions)
        last = RouteStatus()

        def ok() -> bool:
            nonlocal last
            last = self.route_status(namespace, name)
            gen = self._generation("httproutes", namespace, name)
            return all(
                last.is_true(c) and last.conditions[c].get("observedGeneration") in (None, gen) for c in want
            )

        self._wait(
            f"HTTPRoute {namespace}/{name} {'+'.join(want)}", ok, timeout, lambda: json.dumps(last.raw)
        )
        return last

    def routers(self) -> list[dict[str, Any]]:
        """Traefik's loaded HTTP routers (its API): name, rule, service, status, ..."""
        with urllib.request.urlopen(self.api_url + "/api/http/routers", timeout=5) as r:
            return list(json.loads(r.read()))

    def services(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.api_url + "/api/http/services", timeout=5) as r:
            return list(json.loads(r.read()))

    def access_log(self, host: str | None = None) -> list[dict[str, Any]]:
        """Traefik's access log (``<workdir>/access.log``, one JSON object per request, written as it
        answers): ``RequestHost``, ``ServiceName``, ``ServiceAddr`` (the pod ip:port that answered),
        ``OriginStatus``, ``DownstreamStatus``, ``StartUTC``... Only the requests for ``host`` if given."""
        assert self.workdir is not None
        path = self.workdir / "access.log"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if host is None or entry.get("RequestHost") == host:
                    entries.append(entry)
        return entries

    def gateway_class_status(self) -> dict[str, Any]:
        res = self.cp.kubectl("get", f"gatewayclasses.{GATEWAY_GROUP}", self.gateway_class, "-o", "json")
        return dict(json.loads(res.stdout).get("status") or {})

    def supported_features(self) -> set[str]:
        """GatewayClass status.supportedFeatures, as Traefik publishes them."""
        return {
            f["name"] if isinstance(f, dict) else str(f)
            for f in self.gateway_class_status().get("supportedFeatures") or []
        }

    # ------------------------------------------------------------------ internals
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.listen_host in ("0.0.0.0", "") else self.listen_host

    def _step(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        result = fn()
        self.timings[name] = time.monotonic() - t0
        self.log(f"{name}: {self.timings[name]:.2f}s")
        return result

    def _wait(
        self, what: str, check: Callable[[], bool], timeout: float, detail: Callable[[], str] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            if self.proc is not None and not self.proc.alive():
                raise GatewayError(
                    f"traefik exited ({self.proc.popen.returncode}) while waiting for {what}:\n{self.logs()}"
                )
            try:
                if check():
                    return
            except Exception as e:  # transient: not up yet
                last_error = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                extra = detail() if detail else ""
                raise GatewayError(
                    f"timed out after {timeout:.0f}s waiting for {what}. {last_error}\n{extra}\n"
                    f"---- traefik log (tail) ----\n{self.logs()}"
                )
            time.sleep(0.1)

    def _find_binary(self) -> None:
        bin_dir = self._bin_dir or find_dataplane_bin_dir(self.log)
        self.bin = bin_dir / "traefik"
        if not os.access(self.bin, os.X_OK):
            raise GatewayError(f"no traefik binary in {bin_dir} (run e2e/build-dataplane.sh)")

    def _generation(self, plural: str, namespace: str, name: str) -> int | None:
        res = self.cp.kubectl(
            "get",
            f"{plural}.{GATEWAY_GROUP}",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.metadata.generation}",
            check=False,
        )
        return int(res.stdout) if res.returncode == 0 and res.stdout.strip().isdigit() else None

    def _ensure_crds(self) -> None:
        res = self.cp.kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}")
        have = set(res.stdout.split())
        missing = [p for p in TRAEFIK_WATCHED_CRDS if f"{p}.{GATEWAY_GROUP}" not in have]
        if not missing:
            return
        crd_dir = gateway_api_crd_dir()
        files = [crd_dir / f"{GATEWAY_GROUP}_{p}.yaml" for p in missing]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise GatewayError(f"Gateway API CRDs not found: {', '.join(absent)}")
        self.log(f"installing Gateway API {GATEWAY_API_VERSION} CRDs Traefik watches: {', '.join(missing)}")
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=mv-e2e"]
        for f in files:
            args += ["-f", str(f)]
        self.cp.kubectl(*args, timeout=120)
        self.cp.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{p}.{GATEWAY_GROUP}" for p in missing],
            timeout=90,
        )

    def _static_config(self) -> dict[str, Any]:
        assert self.workdir is not None
        host = self.listen_host
        return {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {
                "web": {"address": f"{host}:{self.web_port}"},
                "metrics": {"address": f"{self._client_host}:{self.metrics_port}"},
                "traefik": {"address": f"{self._client_host}:{self.api_port}"},
            },
            "api": {"insecure": True, "dashboard": False},
            "ping": {"entryPoint": "traefik"},
            "metrics": {
                "prometheus": {
                    "entryPoint": "metrics",
                    "addEntryPointsLabels": True,
                    "addRoutersLabels": True,
                    "addServicesLabels": True,
                    "buckets": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                }
            },
            "providers": {
                # Default 2s between applied configurations: a weight edit would take that long to land.
                "providersThrottleDuration": self.throttle,
                "kubernetesGateway": {
                    "statusAddress": {"ip": self._client_host},
                    # Only our GatewayClass (the selector applies to GatewayClasses).
                    "labelSelector": f"{INSTANCE_LABEL}={self.instance}",
                },
            },
            "log": {"level": "INFO", "noColor": True},
            # Headers are dropped from the access log by default; these are kept (Go's canonical names):
            # the client's request id, and the response headers our routes set (downstream_...), so one
            # line says "request X was answered by version Y" (docs/design.md, "Point-in-time answers").
            "accessLog": {
                "filePath": str(self.workdir / "access.log"),
                "format": "json",
                "fields": {"headers": {"names": {h: "keep" for h in ACCESS_LOG_HEADERS}}},
            },
        }

    def _start_traefik(self) -> None:
        assert self.workdir is not None
        cfg = self.workdir / "traefik.yaml"
        cfg.write_text(yaml.safe_dump(self._static_config(), sort_keys=False))
        log_path = self.workdir / "traefik.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_SERVICE_", "TRAEFIK_"))}
        # The provider reads $KUBECONFIG (pkg/provider/kubernetes/gateway/kubernetes.go, newK8sClient).
        env["KUBECONFIG"] = str(self.cp.kubeconfig)
        logf = log_path.open("wb")
        popen = subprocess.Popen(
            [str(self.bin), f"--configFile={cfg}"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,
        )
        logf.close()
        self.proc = _Proc("traefik", popen, log_path)

        def ping() -> bool:
            with urllib.request.urlopen(self.api_url + "/ping", timeout=2) as r:
                return bool(r.status == 200)

        self._wait("traefik /ping", ping, timeout=60)

    def _apply_gateway(self) -> None:
        self.cp.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.gateway_namespace}},
                {
                    "apiVersion": f"{GATEWAY_GROUP}/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": self.gateway_class, "labels": {INSTANCE_LABEL: self.instance}},
                    "spec": {"controllerName": CONTROLLER_NAME},
                },
                {
                    "apiVersion": f"{GATEWAY_GROUP}/v1",
                    "kind": "Gateway",
                    "metadata": {"name": self.gateway_name, "namespace": self.gateway_namespace},
                    "spec": {
                        "gatewayClassName": self.gateway_class,
                        "listeners": [
                            {
                                "name": "web",
                                "protocol": "HTTP",
                                # Traefik maps a listener to the entryPoint with that port.
                                "port": self.web_port,
                                "allowedRoutes": {"namespaces": {"from": "All"}},
                            }
                        ],
                    },
                },
            ]
        )
        status: dict[str, Any] = {}

        def programmed() -> bool:
            nonlocal status
            res = self.cp.kubectl(
                "get",
                f"gateways.{GATEWAY_GROUP}",
                self.gateway_name,
                "-n",
                self.gateway_namespace,
                "-o",
                "json",
            )
            status = json.loads(res.stdout).get("status") or {}
            conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return conds.get("Accepted") == "True" and conds.get("Programmed") == "True"

        self._wait(
            f"Gateway {self.gateway_namespace}/{self.gateway_name} Accepted+Programmed",
            programmed,
            60,
            lambda: json.dumps(status),
        )


@dataclass
class Sample:
    t: float  # time.monotonic() when the response (or the error) came back
    status: int  # -1: connection error
    version: str | None  # x-model-version
    variant: str | None  # x-endpoint-variant
    error: str = ""
    elapsed: float = 0.0  # seconds from sending the request to this response (or error)


class TrafficLoop:
    """Continuous requests through a Traefik Gateway in background threads, recording every response.

        with gw.traffic(host=HOST) as loop:
            ...change weights...
            t = loop.wait_until(lambda s: s.version == "2.3.8", settle=50)
        assert not loop.failures()

    Each thread keeps one keep-alive connection (a new one after an error); ``interval`` seconds between
    requests per thread (0: back to back).
    """

    def __init__(
        self,
        gw: Traefik,
        path: str = "/v1/predict",
        *,
        host: str | None = None,
        method: str = "POST",
        body: bytes | None = b"{}",
        threads: int = 2,
        interval: float = 0.0,
    ) -> None:
        self.gw, self.path, self.host, self.method, self.body = gw, path, host, method, body
        self.threads, self.interval = threads, interval
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> TrafficLoop:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"traffic-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def _run(self) -> None:
        hdrs = {"Host": self.host} if self.host else {}
        if self.body is not None:
            hdrs["Content-Type"] = "application/json"
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.gw._client_host, self.gw.web_port, timeout=10)
            sent = time.monotonic()
            try:
                conn.request(self.method, self.path, body=self.body, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                now = time.monotonic()
                sample = Sample(
                    now,
                    resp.status,
                    resp.getheader("x-model-version"),
                    resp.getheader("x-endpoint-variant"),
                    elapsed=now - sent,
                )
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                now = time.monotonic()
                sample = Sample(now, -1, None, None, f"{type(e).__name__}: {e}", now - sent)
                conn.close()
                conn = None
            with self._lock:
                self.samples.append(sample)
            if self.interval:
                self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def since(self, t0: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.t >= t0]

    def failures(self, t0: float = 0.0) -> list[Sample]:
        """Responses that were not 2xx (or connection errors) since ``t0``."""
        return [s for s in self.since(t0) if not 200 <= s.status < 300]

    def wait_until(
        self,
        predicate: Callable[[Sample], bool],
        *,
        since: float | None = None,
        settle: int = 20,
        timeout: float = 60,
    ) -> float:
        """Until ``settle`` consecutive responses after ``since`` (default: now) satisfy ``predicate``;
        returns the time of the first of them (time.monotonic())."""
        t0 = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            run: list[Sample] = []
            for s in self.since(t0):
                run = [*run, s] if predicate(s) else []
            if len(run) >= settle:
                return run[0].t
            if time.monotonic() > deadline:
                last = self.since(t0)[-5:]
                raise GatewayError(f"timed out after {timeout:.0f}s: last responses {last}")
            time.sleep(0.05)


def weighted_split_tolerance(n: int, p: float, z: float = 4.0) -> float:
    """Half-width of a ``z``-sigma binomial interval for a share ``p`` measured over ``n`` requests.

    With z=4 a correct random split falls outside it with probability < 1e-4 (normal approximation);
    Traefik's weighted round robin is deterministic and lands within +-1 request of the exact share.
    """
    return float(z * (p * (1 - p) / n) ** 0.5)
