"""A real Gateway API implementation (Traefik) and a real Prometheus, with real HTTP requests.

Host backends: reference model servers (`modelversioning model-server`) as host processes on the host's
own non-loopback address (the API server refuses loopback addresses in EndpointSlices), behind
selector-less Services with hand-written EndpointSlices. Real-node backends: the operator's rendered
Deployments and Services, running on the real node (`real_node` fixture). The HTTPRoutes are the
operator's: rendered by its gatewayAPI router (the code the operator runs), and in
test_operator_written_route_is_accepted_by_traefik written by the running operator itself. Every
request goes only to loopback, this host's own address or the real node's bridge.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from childserver import free_port
from controlplane import ControlPlane
from gateway import CONTROLLER_NAME, Response, Traefik, weighted_split_tolerance
from helpers import Objects, make_artifact, model_version, wait_for
from prometheus import Prometheus

HOST = "fraud-detector.models.example.com"
MODEL = "fraud-detector"
SERVICE_PORT = 80


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def traefik(cluster: ControlPlane) -> Iterator[Traefik]:
    gw = Traefik(cluster)
    gw.start()  # raises (the tests error) if Traefik or its Gateway cannot start
    try:
        yield gw
    finally:
        gw.stop()
        print(f"traefik startup {gw.timings.get('total', -1):.2f}s: {gw.summary()}")


@pytest.fixture(scope="module")
def prometheus(cluster: ControlPlane, traefik: Traefik) -> Iterator[Prometheus]:
    prom = Prometheus(cp=cluster, traefik=traefik)
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


def host_address() -> str:
    """This host's first global-scope IPv4 address (what Traefik connects to for host backends)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, timeout=10
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise AssertionError(f"this host has no global IPv4 address for host-process backends:\n{out}")


class HostModelServer:
    """`modelversioning model-server` as a host process, as the operator's pod spec runs it."""

    def __init__(self, workdir: Path, version: str, variant: str, *, bind: str) -> None:
        self.version, self.variant, self.bind = version, variant, bind
        self.model_dir = workdir / f"{variant}-{version}"
        self.model_dir.mkdir(parents=True)
        data = f"{MODEL} {version} weights\n".encode() * 64
        (self.model_dir / "model.bin").write_bytes(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.port = free_port(bind)
        self.admin_port = free_port("127.0.0.1")
        self.admin_token = secrets.token_urlsafe(24)  # the fault port is closed without one
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def start(self) -> HostModelServer:
        exe = shutil.which("modelversioning", path=str(Path(sys.executable).parent))
        cmd = [exe] if exe else [sys.executable, "-m", "modelversioning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
        env.update(
            MODEL_PATH=str(self.model_dir),
            MODEL_NAME=MODEL,
            MODEL_VERSION=self.version,
            MODEL_SHA256=self.sha256,
            MODEL_VARIANT=self.variant,
            MODEL_SERVER_HOST=self.bind,
            MODEL_SERVER_PORT=str(self.port),
            MODEL_SERVER_ADMIN_PORT=str(self.admin_port),
            MODEL_SERVER_ADMIN_TOKEN=self.admin_token,
            MODEL_SERVER_DRAIN_SECONDS="0",
        )
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [*cmd, "model-server"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"model-server {self.variant} exited:\n{self.proc.communicate()[0]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(healthy, 30, f"host model-server {self.variant} {self.version} healthy")
        print(f"host model-server {self.variant} healthy in {time.monotonic() - t0:.2f}s")
        return self

    def set_faults(self, **faults: Any) -> None:
        req = urllib.request.Request(
            f"http://{self.bind}:{self.admin_port}/faults",
            data=json.dumps(faults).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        # The admin port binds where the server does (MODEL_SERVER_HOST).
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def counter(self, code: str = "200") -> float:
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            predict = line.startswith("modelserver_requests_total{") and 'handler="predict"' in line
            if predict and f'code="{code}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def host_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HostModelServer]]:
    addr = host_address()
    work = tmp_path_factory.mktemp("host-models")
    servers = {
        "stable": HostModelServer(work, "2.3.8", "stable", bind=addr),
        "canary": HostModelServer(work, "2.4.1", "canary", bind=addr),
        "shadow": HostModelServer(work, "3.0.0-rc.1", "shadow", bind=addr),
    }
    try:
        for s in servers.values():
            s.start()
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="module")
def backend_ns(cluster: ControlPlane, host_servers: dict[str, HostModelServer]) -> Iterator[str]:
    """A namespace with one selector-less Service + EndpointSlice per host model server."""
    ns = f"e2e-gw-{secrets.token_hex(3)}"
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for variant, s in host_servers.items():
        svc = f"{MODEL}-{variant}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc, "namespace": ns},
                "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]},
            }
        )
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc}-host",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": svc,
                        "endpointslice.kubernetes.io/managed-by": "mv-e2e",
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": s.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [s.bind], "conditions": {"ready": True}}],
            }
        )
    cluster.apply(docs)
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------------------------------------- helpers
def render_route(
    traefik: Traefik,
    ns: str,
    servers: dict[str, HostModelServer],
    weights: dict[str, int],
    *,
    name: str = MODEL,
    host: str = HOST,
    mirror: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The HTTPRoute the operator's gatewayAPI router renders for these weights (ownerReferences
    dropped: the ModelEndpoint is not in the cluster here, and the garbage collector would delete it)."""
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.render import EndpointRef, RouteInput, VariantTarget, get_router

    spec_variants = [{"name": v, "version": servers[v].version, "weight": w} for v, w in weights.items()]
    spec: dict[str, Any] = {
        "model": MODEL,
        "variants": spec_variants,
        "routing": {"router": "gatewayAPI", "hosts": [host], "parentRefs": [traefik.parent_ref()]},
        "port": SERVICE_PORT,
        "allowMajorVersionMix": True,
    }
    if mirror:
        spec["variants"].append({"name": mirror[0], "version": servers[mirror[0]].version, "weight": 0})
        spec["mirror"] = {"variant": mirror[0], "percent": mirror[1]}
        spec["requiredStage"] = "staging"

    def target(v: str, w: int) -> VariantTarget:
        s = servers[v]
        return VariantTarget(
            variant=v, service=f"{MODEL}-{v}", model=MODEL, version=s.version, sha256=s.sha256, weight=w
        )

    inp = RouteInput(
        endpoint=EndpointRef(name, ns, "00000000-0000-0000-0000-000000000000"),
        spec=ModelEndpointSpec.model_validate(spec),
        destinations=[target(v, w) for v, w in weights.items()],
        mirror=target(mirror[0], 0) if mirror else None,
        mirror_percent=mirror[1] if mirror else 0,
    )
    route = get_router("gatewayAPI").render(inp)
    assert route is not None
    route["metadata"].pop("ownerReferences", None)
    return route


def check_identity(r: Response) -> str:
    """The route's x-model-* headers match the server that answered (its body); returns the variant."""
    assert r.status == 200, (r.status, r.headers, r.body[:300])
    body = r.json()
    h = r.headers
    assert h.get("x-model-name") == body["model"] == MODEL, (h, body)
    assert h.get("x-model-version") == body["version"], (h, body)
    assert h.get("x-model-sha256") == body["sha256"][:12], (h, body)
    assert h.get("x-endpoint-variant") == body["variant"], (h, body)
    return str(body["variant"])


def measure(traefik: Traefik, n: int, host: str = HOST) -> Counter[str]:
    return Counter(
        check_identity(r) for r in traefik.requests(n, "/v1/predict", host=host, method="POST", body=b"{}")
    )


def wait_serving(
    traefik: Traefik, want: Callable[[Counter[str]], bool], what: str, timeout: float = 30
) -> float:
    """Poll with small batches until `want(batch counts)`; returns the seconds it took."""
    t0 = time.monotonic()

    def ok() -> bool:
        batch = traefik.requests(20, "/v1/predict", host=HOST, method="POST", body=b"{}")
        if any(r.status != 200 for r in batch):
            return False
        return want(Counter(check_identity(r) for r in batch))

    wait_for(ok, timeout, what, interval=0.05)
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------- tests
def test_traefik_accepts_the_gateway_class_and_publishes_its_features(traefik: Traefik) -> None:
    status = traefik.gateway_class_status()
    conds = {c["type"]: c for c in status.get("conditions") or []}
    assert conds["Accepted"]["status"] == "True", status
    features = traefik.supported_features()
    print(f"Traefik GatewayClass supportedFeatures: {sorted(features)}")
    # What our route uses: weights and headers are core/extended features Traefik declares...
    assert {"HTTPRoute", "HTTPRouteResponseHeaderModification"} <= features, features
    # ...RequestMirror is not.
    assert "HTTPRouteRequestMirror" not in features


def test_route_headers_and_weighted_split_through_traefik(
    cluster: ControlPlane, traefik: Traefik, backend_ns: str, host_servers: dict[str, HostModelServer]
) -> None:
    route = render_route(traefik, backend_ns, host_servers, {"stable": 90, "canary": 10})
    cluster.apply(route)
    t0 = time.monotonic()
    st = traefik.wait_route(backend_ns, MODEL)
    accepted = time.monotonic() - t0
    assert st.conditions["Accepted"]["reason"] == "Accepted"
    assert st.conditions["ResolvedRefs"]["reason"] == "ResolvedRefs"
    assert st.raw["controllerName"] == CONTROLLER_NAME
    took = wait_serving(
        traefik, lambda c: set(c) <= {"stable", "canary"} and "stable" in c, "the route to serve"
    )
    print(f"route Accepted+ResolvedRefs in {accepted:.2f}s, serving {took:.2f}s after that")

    # Every response names the version that answered, and the route's headers say the same.
    n = 1000
    counts = measure(traefik, n)
    share = counts["canary"] / n
    tol = weighted_split_tolerance(n, 0.10)
    print(f"90/10 over {n} requests: {dict(counts)} (canary {share:.3f}, tolerance +-{tol:.3f})")
    assert set(counts) == {"stable", "canary"}
    assert abs(share - 0.10) <= tol, (counts, tol)

    # A weight edit changes the measured split: 50/50, then all on stable (a rollback).
    cluster.apply(render_route(traefik, backend_ns, host_servers, {"stable": 50, "canary": 50}))
    took = wait_serving(traefik, lambda c: abs(c["canary"] - 10) <= 4, "a 50/50 split")
    counts = measure(traefik, 400)
    tol = weighted_split_tolerance(400, 0.5)
    print(f"50/50 over 400 requests: {dict(counts)} (landed in {took:.2f}s; tolerance +-{tol:.3f})")
    assert abs(counts["canary"] / 400 - 0.5) <= tol, counts

    t_edit = time.monotonic()
    cluster.apply(render_route(traefik, backend_ns, host_servers, {"stable": 100, "canary": 0}))
    took = wait_serving(traefik, lambda c: set(c) == {"stable"}, "every response from stable")
    print(
        f"weight edit to 100/0: every response from stable {time.monotonic() - t_edit:.2f}s after the apply"
    )
    assert set(measure(traefik, 200)) == {"stable"}


def test_weight_flip_under_continuous_traffic(
    cluster: ControlPlane, traefik: Traefik, backend_ns: str, host_servers: dict[str, HostModelServer]
) -> None:
    """A rollback-style weight edit (all traffic to the other version) while clients keep sending:
    no request fails, and from some instant on every response comes from the new side."""
    cluster.apply(render_route(traefik, backend_ns, host_servers, {"stable": 0, "canary": 100}))
    wait_serving(traefik, lambda c: set(c) == {"canary"}, "everything on canary")
    with traefik.traffic(host=HOST, threads=2) as loop:
        wait_for(lambda: len(loop.samples) >= 50, 30, "some traffic")
        t_edit = time.monotonic()
        cluster.apply(render_route(traefik, backend_ns, host_servers, {"stable": 100, "canary": 0}))
        t_flip = loop.wait_until(lambda s: s.version == "2.3.8", since=t_edit, settle=100)
    total = len(loop.since(t_edit))
    print(
        f"weight flip under traffic: every response from stable {t_flip - t_edit:.2f}s after the apply "
        f"({total} requests after the edit, {len(loop.failures())} failed)"
    )
    assert not loop.failures(), loop.failures()[:5]
    assert all(s.version in ("2.3.8", "2.4.1") for s in loop.samples)


def test_prometheus_scrapes_model_servers_and_traefik(
    cluster: ControlPlane,
    traefik: Traefik,
    prometheus: Prometheus,
    backend_ns: str,
    host_servers: dict[str, HostModelServer],
) -> None:
    for variant in ("stable", "canary"):
        s = host_servers[variant]
        prometheus.add_target(
            "model-servers",
            f"{s.bind}:{s.port}",
            {"namespace": backend_ns, "endpoint": MODEL, "pod": f"host-{variant}", "variant": variant},
        )
    t0 = time.monotonic()
    prometheus.wait_target_up("model-servers", count=2, timeout=30)
    prometheus.wait_target_up("traefik", timeout=30)
    print(
        f"targets up {time.monotonic() - t0:.2f}s after being added (Prometheus applies discovery every 5s)"
    )

    # The canary misbehaves: half of its predictions fail (evenly spread, so exactly half).
    host_servers["canary"].set_faults(errorRate=0.5)
    try:
        cluster.apply(render_route(traefik, backend_ns, host_servers, {"stable": 80, "canary": 20}))
        wait_for(
            lambda: any(
                r.headers.get("x-endpoint-variant") == "canary"
                for r in traefik.requests(10, "/v1/predict", host=HOST, method="POST", body=b"{}")
            ),
            30,
            "the canary to get traffic",
        )
        responses = traefik.requests(500, "/v1/predict", host=HOST, method="POST", body=b"{}")
    finally:
        host_servers["canary"].set_faults(errorRate=0)
    by = Counter((r.headers.get("x-endpoint-variant"), r.status) for r in responses)
    print(f"80/20 with a failing canary: {dict(by)}")
    # Clients see errors only from the canary's share; the route's headers still say who answered.
    assert {v for v, code in by if code != 200} == {"canary"}
    assert abs(by[("canary", 500)] - by[("canary", 200)]) <= 1

    # Prometheus has exactly what the servers counted (once a scrape after the last request landed).
    expect = {
        v: (host_servers[v].counter("200"), host_servers[v].counter("500")) for v in ("stable", "canary")
    }

    def scraped() -> bool:
        got: dict[tuple[str, str], float] = {}
        for s in prometheus.query(
            "sum by (variant, version, code) "
            '(modelserver_requests_total{job="model-servers",handler="predict"})'
        ):
            got[(s["metric"]["variant"], s["metric"]["code"])] = float(s["value"][1])
        return all(
            got.get((v, "200"), 0) == ok and got.get((v, "500"), 0) == err for v, (ok, err) in expect.items()
        )

    wait_for(scraped, 30, f"Prometheus to have the servers' counts {expect}", interval=0.3)
    ratio = prometheus.query_value(
        'sum(modelserver_requests_total{job="model-servers",variant="canary",code=~"5.."})'
        ' / sum(modelserver_requests_total{job="model-servers",variant="canary"})'
    )
    assert ratio is not None and 0.0 < ratio <= 0.5, ratio
    series = prometheus.query('modelserver_request_duration_seconds_bucket{job="model-servers",le="+Inf"}')
    assert {s["metric"]["variant"] for s in series} == {"stable", "canary"}
    labels = series[0]["metric"]
    assert {"model", "version", "variant", "namespace", "endpoint", "pod"} <= set(labels), labels

    # The built-in analysis templates of progressive delivery (source modelServer) find these series.
    from modelversioning.analysis.templates import Vars, builtin, render_query

    def template(name: str, variant: str) -> float | None:
        v = host_servers[variant]
        q = render_query(
            builtin(name, "modelServer", 0.99), Vars(backend_ns, MODEL, variant, v.version, "", "1m")
        )
        return prometheus.query_value(q)

    canary_errors, stable_errors = template("error-rate", "canary"), template("error-rate", "stable")
    latency = template("latency", "canary")
    print(
        f"analysis templates: error-rate canary {canary_errors}, stable {stable_errors}; p99 canary {latency}"
    )
    assert canary_errors is not None and 0 < canary_errors <= 0.5, canary_errors
    assert stable_errors == 0
    assert latency is not None and latency > 0

    # Traefik's own request metrics, per backend Service (what issue 13's built-in templates query).
    per_service = prometheus.wait_query(
        # Traefik names a backend "<router>-svc-<namespace>-<Service>-<index>@kubernetesgateway".
        "sum by (service, code) "
        f'(traefik_service_requests_total{{service=~".*-svc-{backend_ns}-{MODEL}-.*"}})',
        lambda res: any(s["metric"]["code"] == "500" for s in res),
    )
    print(
        "traefik_service_requests_total:",
        {(s["metric"]["service"], s["metric"]["code"]): s["value"][1] for s in per_service},
    )
    canary_500 = [
        s for s in per_service if "canary" in s["metric"]["service"] and s["metric"]["code"] == "500"
    ]
    stable_500 = [
        s for s in per_service if "stable" in s["metric"]["service"] and s["metric"]["code"] == "500"
    ]
    assert canary_500 and not stable_500, per_service
    assert prometheus.query('traefik_entrypoint_requests_total{entrypoint="web"}')

    # The built-in `source: traefik` templates select the series real Traefik writes, and only the slot's
    # own (its router hash has 20 hex digits: a selector built for 10 found nothing, and every canary
    # analysis of that source said "no data"). The selector of the rendered query, asked as is:
    def traefik_series(variant: str) -> set[str]:
        v = host_servers[variant]
        vars_ = Vars(backend_ns, MODEL, variant, v.version, f"{MODEL}-{variant}", "1m")
        found = re.search(
            r'service=~"((?:[^"\\]|\\.)*)"', render_query(builtin("error-rate", "traefik", 0.99), vars_)
        )
        assert found is not None
        res = prometheus.query(
            f'count by (service) (traefik_service_requests_total{{service=~"{found.group(1)}"}})'
        )
        return {s["metric"]["service"] for s in res}

    for variant in ("canary", "stable"):
        selected = traefik_series(variant)
        print(f"traefik template ({variant}) selects: {selected}")
        assert selected, f"the traefik template selects none of Traefik's series for {variant}"
        assert all(f"-svc-{backend_ns}-{MODEL}-{variant}-" in name for name in selected), selected


def test_request_mirror_is_not_implemented_by_traefik(
    cluster: ControlPlane, traefik: Traefik, backend_ns: str, host_servers: dict[str, HostModelServer]
) -> None:
    """What Traefik 3.7 does with our RequestMirror filter, recorded as observed (not what the spec asks)."""
    host = "shadow.models.example.com"
    name = f"{MODEL}-mirror"
    before = host_servers["shadow"].counter("200")
    route = render_route(
        traefik, backend_ns, host_servers, {"stable": 100}, name=name, host=host, mirror=("shadow", 100)
    )
    assert route["spec"]["rules"][0]["filters"][0]["type"] == "RequestMirror"
    route["metadata"]["name"] = name
    cluster.apply(route)
    st = traefik.wait_route(backend_ns, name)
    print(
        "HTTPRoute status written by Traefik for a route with RequestMirror:",
        json.dumps(st.raw["conditions"]),
    )
    # The status does not say that the filter is unsupported (the spec says it MUST): both True.
    assert st.is_true("Accepted") and st.is_true("ResolvedRefs")
    # But the whole rule is replaced by a 500 responder: no request reaches stable, none is mirrored.
    responses = wait_for(
        lambda: (
            (rs := traefik.requests(20, "/v1/predict", host=host, method="POST", body=b"{}"))
            and all(r.status == 500 for r in rs)
            and rs
        ),
        30,
        "Traefik to load the mirrored route",
    )
    assert not any("x-model-version" in r.headers for r in responses)
    assert host_servers["shadow"].counter("200") == before
    assert "unsupported filter RequestMirror" in traefik.logs(400)
    cluster.kubectl("delete", "httproute", name, "-n", backend_ns)


def test_operator_written_route_is_accepted_by_traefik(
    cluster: ControlPlane,
    kube: object,
    namespace: str,
    operator: object,
    artifact_root: Path,
    traefik: Traefik,
) -> None:
    """The running operator writes the HTTPRoute (pods on kwok nodes: no requests), and Traefik accepts it."""
    objs = Objects(kube, namespace)  # type: ignore[arg-type]
    for version in ("2.3.8", "2.4.1"):
        uri, sha = make_artifact(artifact_root, "gwop", version)
        objs.create(model_version("gwop", version, uri, sha, stage="production"))
    objs.create(
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelEndpoint",
            "metadata": {"name": "gwop"},
            "spec": {
                "model": "gwop",
                "variants": [
                    {"name": "stable", "version": "2.3.8", "weight": 90},
                    {"name": "canary", "version": "2.4.1", "weight": 10},
                ],
                "routing": {
                    "router": "gatewayAPI",
                    "hosts": ["gwop.models.example.com"],
                    "parentRefs": [traefik.parent_ref()],
                },
            },
        }
    )

    def weights() -> dict[str, int] | None:
        from helpers import route_weights

        rt = objs.httproute("gwop")
        w = route_weights(rt)
        return w if w == {"stable": 90, "canary": 10} else None

    wait_for(weights, 120, "the operator's HTTPRoute at 90/10")
    st = traefik.wait_route(namespace, "gwop")
    print("Traefik status on the operator's HTTPRoute:", json.dumps(st.raw["conditions"]))

    # Traefik writes the route's status, then builds its routers from its next configuration (its
    # provider throttles those): the routers show up shortly after the status, not with it
    def ours() -> list[dict[str, Any]]:
        return [r for r in traefik.routers() if "gwop" in r.get("name", "")]

    routers = wait_for(ours, 30, "Traefik's routers for the route")
    assert routers and all(r.get("status") == "enabled" for r in routers), routers


# ---------------------------------------------------------------------------------------------- real node
REAL_HOST = "real.models.example.com"


def test_real_pods_behind_traefik_scraped_by_prometheus(
    cluster: ControlPlane,
    real_node: Any,
    namespace: str,
    dataplane: Any,
) -> None:
    """The operator's Deployments, Services and HTTPRoute (rendered by its code) on the real node: the
    init container verifies the artifact, the reference server answers through Traefik, and
    Prometheus discovers and scrapes the pods. The session's data plane's Traefik and Prometheus (the
    other tests of this module run in the control lane with their own)."""
    traefik: Traefik = dataplane.gw
    prometheus: Prometheus = dataplane.prom
    from images import OPERATOR_IMAGE
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.api.settings import ArtifactPolicy, Serving
    from modelversioning.render import (
        EndpointRef,
        RouteInput,
        VariantTarget,
        get_router,
        render_deployment,
        render_service,
    )
    from node import NODE_IP

    artifacts = {v: f"{MODEL} {v} weights\n".encode() * 512 for v in ("2.3.8", "2.4.1")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = artifacts.get(self.path.strip("/").split("/")[0])
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer((NODE_IP, 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://{NODE_IP}:{srv.server_address[1]}"
    try:
        placement = real_node.pod_placement()
        spec = ModelEndpointSpec.model_validate(
            {
                "model": MODEL,
                "variants": [
                    {"name": "stable", "version": "2.3.8", "weight": 90, "replicas": 2},
                    {"name": "canary", "version": "2.4.1", "weight": 10},
                ],
                "routing": {
                    "router": "gatewayAPI",
                    "hosts": [REAL_HOST],
                    "parentRefs": [traefik.parent_ref()],
                },
                "port": SERVICE_PORT,
                "placement": {
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                },
            }
        )
        ref = EndpointRef(MODEL, namespace, "00000000-0000-0000-0000-000000000000")
        serving = Serving(init_image=OPERATOR_IMAGE, init_image_pull_policy="Never")
        versions = {
            v.name: ModelVersionSpec.model_validate(
                {
                    "model": MODEL,
                    "version": v.version,
                    "artifact": {
                        "uri": f"{base}/{v.version}/model.bin",
                        "sha256": hashlib.sha256(artifacts[v.version]).hexdigest(),
                    },
                    "lineage": {"codeCommit": "3f9c2a1", "dataset": {"name": "tx", "version": "2024-06-30"}},
                    "metrics": {"auc": 0.9},
                    "runtime": {
                        "image": OPERATOR_IMAGE,
                        "args": ["model-server", "--port", "8080"],
                        "port": 8080,
                        "healthPath": "/healthz",
                    },
                }
            )
            for v in spec.variants
        }
        # The init container enforces the operator's artifact policy (--policy-json): the artifacts are
        # served from the node address, a private one.
        policy = ArtifactPolicy(allowed_private_networks=[f"{NODE_IP}/32"])
        docs: list[dict[str, Any]] = []
        targets = []
        for v in spec.variants:
            dep = render_deployment(ref, spec, v, versions[v.name], serving, policy=policy)
            svc = render_service(dep, SERVICE_PORT)
            for obj in (dep, svc):
                obj["metadata"].pop("ownerReferences", None)  # no ModelEndpoint: the GC would delete them
            docs += [dep, svc]
            targets.append(
                VariantTarget(
                    variant=v.name,
                    service=svc["metadata"]["name"],
                    model=MODEL,
                    version=v.version,
                    sha256=versions[v.name].artifact.sha256,
                    weight=v.weight,
                )
            )
        t0 = time.monotonic()
        cluster.apply(docs)
        deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
        res = cluster.kubectl(
            "wait",
            "-n",
            namespace,
            "--for=condition=Available",
            "--timeout=240s",
            *[f"deployment/{d}" for d in deployments],
            check=False,
            timeout=300,
        )
        if res.returncode != 0:
            pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
            events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
            inits = "\n".join(
                cluster.kubectl(
                    "logs",
                    "-n",
                    namespace,
                    f"deployment/{d}",
                    "-c",
                    "verify-artifact",
                    "--tail=5",
                    check=False,
                ).stdout
                for d in deployments
            )
            raise AssertionError(
                f"model Deployments not Available: {res.stderr}\n{pods}\n{events}\n{inits}\n"
                f"{real_node.logs('kubelet', 30)}"
            )
        print(
            f"3 model pods (init container verified, server ready) Available in {time.monotonic() - t0:.1f}s"
        )

        route = get_router("gatewayAPI").render(RouteInput(endpoint=ref, spec=spec, destinations=targets))
        assert route is not None
        route["metadata"].pop("ownerReferences", None)
        cluster.apply(route)
        traefik.wait_route(namespace, route["metadata"]["name"])

        pods_json = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
        pod_variant = {
            p["metadata"]["name"]: p["metadata"]["labels"]["modelversioning.io/variant"] for p in pods_json
        }
        assert sorted(pod_variant.values()) == ["canary", "stable", "stable"], pod_variant

        def serving() -> bool:
            rs = traefik.requests(10, "/v1/predict", host=REAL_HOST, method="POST", body=b"{}")
            return all(r.status == 200 for r in rs)

        wait_for(serving, 60, "Traefik to route to the real pods", interval=0.2)
        n = 1000
        responses = traefik.requests(n, "/v1/predict", host=REAL_HOST, method="POST", body=b"{}")
        by_pod: Counter[str] = Counter()
        for r in responses:
            variant = check_identity(r)
            pod = r.json()["hostname"]  # the pod's hostname is its name
            assert pod_variant.get(pod) == variant, (pod, variant, pod_variant)
            by_pod[pod] += 1
        share = sum(c for p, c in by_pod.items() if pod_variant[p] == "canary") / n
        tol = weighted_split_tolerance(n, 0.10)
        print(f"real pods, 90/10 over {n} requests: {dict(by_pod)} (canary {share:.3f}, +-{tol:.3f})")
        assert abs(share - 0.10) <= tol and len(by_pod) == 3

        # Prometheus found the pods by itself (the harness's pod discovery) and has their counts.
        prometheus.wait_target_up("model-pods", count=3, timeout=60, namespace=namespace)

        def scraped() -> bool:
            got = {
                s["metric"]["pod"]: float(s["value"][1])
                for s in prometheus.query(
                    f'sum by (pod) (modelserver_requests_total{{job="model-pods",namespace="{namespace}",'
                    'handler="predict",code="200"})'
                )
            }
            return all(got.get(p, 0) >= c for p, c in by_pod.items())

        wait_for(scraped, 30, "Prometheus to have every pod's predictions", interval=0.3)
        labels = prometheus.query(f'modelserver_model_info{{job="model-pods",namespace="{namespace}"}}')
        assert {(s["metric"]["variant"], s["metric"]["version"]) for s in labels} == {
            ("stable", "2.3.8"),
            ("canary", "2.4.1"),
        }, labels
        assert all(s["metric"].get("endpoint") == MODEL and s["metric"].get("node") for s in labels), labels
    finally:
        srv.shutdown()
        srv.server_close()
