"""Traffic, proven with traffic: real model pods on the real node, a real gateway (Traefik) and a real
Prometheus, driven by the operator. Every claim about what answers a request is checked by sending
requests (bounded loops, only to loopback and the node's own addresses).

The session operator is reconfigured for this module (and restored after): the init container is
the locally built operator image, Prometheus is the analysis source, and the Gateway API mirror is
not declared supported (Traefik lacks RequestMirror).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

import admission
from controlplane import ControlPlane
from gateway import Traefik, weighted_split_tolerance
from helmchart import CHART, Helm
from helpers import Objects, cond_is, model_endpoint, model_version, wait_for
from images import OPERATOR_IMAGE
from node import NODE_IP, NODE_NAME
from prometheus import Prometheus

pytestmark = pytest.mark.timeout(1800)
HOST = "fraud.models.example.com"
PREDICT = "/v1/predict"


# ------------------------------------------------------------------------------------------ fixtures
class ArtifactServer:
    """Serves a directory over HTTP on the node's address (pods and the operator fetch from it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = type("H", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        self.httpd = http.server.ThreadingHTTPServer(
            (NODE_IP, 0),
            lambda *a: handler(*a, directory=str(root)),  # type: ignore[misc]
        )
        self.base = f"http://{NODE_IP}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, rel: str, data: bytes) -> tuple[str, str]:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return f"{self.base}/{rel}", hashlib.sha256(data).hexdigest()


@dataclass
class DataPlane:
    cluster: ControlPlane
    node: Any
    gw: Traefik
    prom: Prometheus
    art: ArtifactServer
    operator: Any
    placement: dict[str, Any] = field(default_factory=dict)
    # Each test routes its own host: a finished test's namespace (and its HTTPRoute) is deleted in the
    # background, and two routes for one host on one Gateway would share its traffic.
    host: str = HOST


@pytest.fixture(scope="module")
def dataplane(cluster, real_node, operator, tmp_path_factory) -> Iterator[DataPlane]:  # type: ignore[no-untyped-def]
    gw = Traefik(cluster)
    gw.start()
    prom = Prometheus(cp=cluster, traefik=gw)
    prom.start()
    art = ArtifactServer(tmp_path_factory.mktemp("served-artifacts"))
    original = operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg.setdefault("serving", {}).update(
        {"initImage": OPERATOR_IMAGE, "initImagePullPolicy": "Never", "gatewayApiFeatures": []}
    )
    cfg["analysis"] = {"prometheusUrl": prom.url, "timeoutSeconds": 3}
    operator.config.write_text(yaml.safe_dump(cfg))
    operator.restart()
    try:
        yield DataPlane(cluster, real_node, gw, prom, art, operator, real_node.pod_placement())
    finally:
        operator.config.write_text(original)
        operator.restart()
        art.httpd.shutdown()
        prom.stop()
        gw.stop()


@pytest.fixture
def dp(dataplane, namespace) -> DataPlane:  # type: ignore[no-untyped-def]
    return replace(dataplane, host=f"{namespace}.models.example.com")


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


def register(dp: DataPlane, objs: Objects, model: str, version: str, *, stage: str = "production",
             env: dict[str, str] | None = None, served: bytes | None = None) -> str:  # fmt: skip
    """A ModelVersion whose artifact the harness serves over HTTP and whose runtime is the reference
    model server of our image. `served`: what the server hands out (differs from the registered
    bytes: a tampered store)."""
    data = f"{model} {version} weights {secrets.token_hex(4)}\n".encode()
    uri, sha = dp.art.put(f"{objs.ns}/{model}/{version}/model.bin", data)
    if served is not None:
        dp.art.put(f"{objs.ns}/{model}/{version}/model.bin", served)
    mv = model_version(model, version, uri, sha, stage=stage)
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE,
        "command": ["modelversioning", "model-server"],
        "port": 8080,
        "healthPath": "/healthz",
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    objs.create(mv)
    return sha


def endpoint(
    dp: DataPlane, name: str, model: str, variants: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    ep = model_endpoint(name, model, variants, router="gatewayAPI", **extra)
    ep["spec"]["routing"] = {"router": "gatewayAPI", "hosts": [dp.host], "parentRefs": [dp.gw.parent_ref()]}
    ep["spec"]["placement"] = dp.placement
    return ep


def predict(dp: DataPlane, n: int) -> list[Any]:
    return dp.gw.requests(n, PREDICT, host=dp.host, method="POST", body=b'{"inputs": [1, 2, 3]}')


def versions(responses: list[Any]) -> Counter[str]:
    return Counter(r.headers.get("x-model-version", "?") for r in responses if r.status == 200)


LAST: dict[str, Any] = {}


def live_on(dp: DataPlane, want: dict[str, float], n: int = 40) -> bool:
    """All of n responses are 200 and come from exactly the versions in `want` (the last answers are
    kept in LAST for the failure message)."""
    rs = predict(dp, n)
    LAST["responses"] = Counter(f"{r.status} {r.headers.get('x-model-version', '-')}" for r in rs)
    return all(r.status == 200 for r in rs) and set(versions(rs)) == set(want)


def explain(objs: Objects, name: str) -> str:
    st = objs.mep(name).get("status") or {}
    out = {
        "last responses": LAST.get("responses"),
        "effectiveWeights": st.get("effectiveWeights"),
        "rollout": {k: v for k, v in (st.get("rollout") or {}).items() if k != "measurements"},
        "variants": [
            {k: v.get(k) for k in ("name", "reason", "message", "serving")} for v in st.get("variants") or []
        ],
    }
    return json.dumps(out, default=str)[:3000]


class Load:
    """Requests sent continuously in a thread; every response kept with the time it arrived."""

    def __init__(self, dp: DataPlane, seconds: float = 600) -> None:
        self.dp = dp
        self.log: list[tuple[float, int, str, str]] = []  # (t, status, header version, body version)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(30)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for r in predict(self.dp, 10):
                body = r.json().get("version", "?") if r.status == 200 else "-"
                self.log.append((time.time(), r.status, r.headers.get("x-model-version", "?"), body))

    def since(self, t: float) -> list[tuple[float, int, str, str]]:
        return [x for x in self.log if x[0] >= t]


# ------------------------------------------------------------------------------------------- tests
def test_every_response_says_who_answered_and_the_split_follows_the_weights(dp, objs):  # type: ignore[no-untyped-def]
    sha_a = register(dp, objs, "fraud", "2.3.8")
    sha_b = register(dp, objs, "fraud", "2.4.1")
    objs.create(endpoint(dp, "fraud", "fraud", [
        {"name": "stable", "version": "2.3.8", "weight": 90},
        {"name": "canary", "version": "2.4.1", "weight": 10},
    ]))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("fraud"), "Ready", "True"), 300, "Ready on real pods")
    wait_for(lambda: live_on(dp, {"2.3.8": 1, "2.4.1": 1}, 60), 120, "both versions answer through Traefik")
    rs = predict(dp, 400)
    assert all(r.status == 200 for r in rs), Counter(r.status for r in rs)
    digests = {"2.3.8": sha_a, "2.4.1": sha_b}
    for r in rs:
        body = r.json()
        # the headers the route sets match what the answering server says about itself
        assert r.headers["x-model-version"] == body["version"]
        assert r.headers["x-model-name"] == "fraud" == body["model"]
        assert digests[body["version"]].startswith(r.headers["x-model-sha256"])
        assert r.headers["x-endpoint-variant"] == ("stable" if body["version"] == "2.3.8" else "canary")
    share = versions(rs)["2.4.1"] / len(rs)
    tol = weighted_split_tolerance(len(rs), 0.10)
    print(f"canary share {share:.3f} over {len(rs)} requests (90/10 declared, tolerance {tol:.3f})")
    assert abs(share - 0.10) <= tol
    objs.set_weights("fraud", {"stable": 50, "canary": 50})
    tol50 = weighted_split_tolerance(100, 0.5)
    wait_for(lambda: abs(versions(predict(dp, 100))["2.4.1"] / 100 - 0.5) <= tol50, 60, "50/50 measured")


def test_a_tampered_artifact_never_answers(dp, objs):  # type: ignore[no-untyped-def]
    """The operator verified the registered bytes; the store then serves other bytes (swapped after
    verification). The real init container refuses them: the pod never becomes Ready, and no request
    ever reaches the new version."""
    register(dp, objs, "tamper", "1.0.0")
    objs.create(endpoint(dp, "tamper", "tamper", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("tamper"), "Ready", "True"), 300, "1.0.0 live")
    # Ready means the route is written; the gateway answers for this test's own host once it read it
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    register(dp, objs, "tamper", "1.1.0")
    wait_for(lambda: cond_is(objs.mv("tamper-v1.1.0"), "ArtifactVerified", "True"), 60, "1.1.0 verified")
    dp.art.put(f"{objs.ns}/tamper/1.1.0/model.bin", b"tampered weights\n")  # the swap
    with Load(dp) as load:
        objs.patch_mep(
            "tamper", {"spec": {"variants": [{"name": "main", "version": "1.1.0", "weight": 100}]}}
        )

        def init_failed() -> bool:
            pods = objs.core.list_namespaced_pod(
                objs.ns, label_selector="modelversioning.io/version=1.1.0"
            ).items
            return any(
                (cs.last_state and cs.last_state.terminated and cs.last_state.terminated.exit_code != 0)
                or (cs.state and cs.state.terminated and cs.state.terminated.exit_code != 0)
                for p in pods
                for cs in p.status.init_container_statuses or []
            )

        wait_for(init_failed, 180, "the 1.1.0 pod's init container to refuse the artifact")
        pods = objs.core.list_namespaced_pod(objs.ns, label_selector="modelversioning.io/version=1.1.0").items
        assert pods and not any(
            c.type == "Ready" and c.status == "True" for p in pods for c in p.status.conditions or []
        )
    statuses = Counter(s for _, s, _, _ in load.log)
    served = Counter(v for _, s, v, _ in load.log if s == 200)
    print(f"during the tampered rollout: {dict(statuses)} {dict(served)}")
    assert set(statuses) == {200} and set(served) == {"1.0.0"}


def test_version_change_of_the_only_variant_under_load(dp, objs):  # type: ignore[no-untyped-def]
    register(dp, objs, "solo", "2.3.8")
    objs.create(endpoint(dp, "solo", "solo", [{"name": "stable", "version": "2.3.8", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("solo"), "Ready", "True"), 300, "2.3.8 live")
    wait_for(lambda: live_on(dp, {"2.3.8": 1}), 60, "2.3.8 answers")
    register(dp, objs, "solo", "2.4.1", stage="candidate")
    with Load(dp) as load:
        objs.patch_mep(
            "solo", {"spec": {"variants": [{"name": "stable", "version": "2.4.1", "weight": 100}]}}
        )
        # the new slot is deployed and its pod becomes Ready, but 2.4.1 is a candidate: no traffic
        wait_for(lambda: _ready_pods(objs, "2.4.1") > 0, 180, "the 2.4.1 pod Ready (warm, no traffic)")
        t_promote = time.time()
        objs.patch_mv("solo-v2.4.1", {"spec": {"stage": "production"}})
        wait_for(lambda: _recent_versions(load) == {"2.4.1"}, 90, "every response from 2.4.1")
    early = [x for x in load.log if x[2] == "2.4.1" and x[0] < t_promote]
    bad = [x for x in load.log if x[1] != 200]
    mismatched = [x for x in load.log if x[1] == 200 and x[2] != x[3]]
    print(f"{len(load.log)} responses: {dict(Counter(v for _, _, v, _ in load.log))}, non-2xx {len(bad)}")
    assert not bad, bad[:5]
    assert not early, f"2.4.1 answered before it was promoted: {early[:3]}"
    assert not mismatched, mismatched[:3]


def _recent_versions(load: Load, seconds: float = 1.0) -> set[str]:
    return {v for _, _, v, _ in load.since(time.time() - seconds)}


def _ready_pods(objs: Objects, version: str) -> int:
    pods = objs.core.list_namespaced_pod(
        objs.ns, label_selector=f"modelversioning.io/version={version}"
    ).items
    return sum(1 for p in pods for c in p.status.conditions or [] if c.type == "Ready" and c.status == "True")


def test_rollback_under_load_is_a_weight_edit(dp, objs):  # type: ignore[no-untyped-def]
    register(dp, objs, "chat", "2.3.8")
    register(dp, objs, "chat", "2.4.1")
    objs.create(endpoint(dp, "chat", "chat", [
        {"name": "blue", "version": "2.3.8", "weight": 0},
        {"name": "green", "version": "2.4.1", "weight": 100},
    ]))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("chat"), "Ready", "True"), 300, "green live")
    wait_for(lambda: live_on(dp, {"2.4.1": 1}), 60, "2.4.1 answers")
    with Load(dp) as load:
        wait_for(lambda: len(load.log) > 20, 30, "load running")
        t0 = time.time()
        objs.set_weights("chat", {"blue": 100, "green": 0})
        wait_for(
            lambda: _recent_versions(load, 0.5) == {"2.3.8"}, 60, "every response from 2.3.8", interval=0.05
        )
        last_new = max((x[0] for x in load.log if x[2] == "2.4.1"), default=t0)
    print(f"rollback: weight edit -> last 2.4.1 response {max(0.0, last_new - t0) * 1000:.0f} ms")
    assert all(s == 200 for _, s, _, _ in load.log)


def test_mirror_on_a_gateway_that_cannot_mirror_is_left_out(dp, objs):  # type: ignore[no-untyped-def]
    register(dp, objs, "shadow", "2.3.8")
    register(dp, objs, "shadow", "3.0.0-rc.1", stage="staging")
    objs.create(endpoint(dp, "shadow", "shadow", [
        {"name": "live", "version": "2.3.8", "weight": 100},
        {"name": "shadow", "version": "3.0.0-rc.1"},
    ], mirror={"variant": "shadow", "percent": 50}))  # fmt: skip
    wait_for(
        lambda: cond_is(objs.mep("shadow"), "Degraded", "True", "MirrorUnsupported"), 300, "MirrorUnsupported"
    )
    wait_for(lambda: live_on(dp, {"2.3.8": 1}), 120, "live answers")
    rs = predict(dp, 100)
    assert all(r.status == 200 for r in rs)  # Traefik answers 500 to a rule with RequestMirror: not written
    rt = objs.httproute("shadow")
    assert not rt["spec"]["rules"][0].get("filters")


# ------------------------------------------------------------------------------ progressive delivery
def _strategy(metrics: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "6s"}},
                {"setWeight": 50},
                {"pause": {"duration": "6s"}},
            ],
            "analysis": {"interval": "3s", "metrics": metrics, **analysis},
            "promoteOnSuccess": True,
        }
    }


ERRORS = [{"name": "errors", "template": "error-rate", "window": "10s", "max": 0.05}]


def _canary(dp: DataPlane, objs: Objects, name: str, bad_env: dict[str, str] | None, **analysis: Any) -> None:
    register(dp, objs, name, "2.3.8")
    register(dp, objs, name, "2.4.1", env=bad_env)
    variants = [
        {"name": "stable", "version": "2.3.8", "weight": 100},
        {"name": "canary", "version": "2.4.1", "weight": 0},
    ]
    objs.create(endpoint(dp, name, name, variants, strategy=_strategy(ERRORS, **analysis)))
    wait_for(lambda: cond_is(objs.mep(name), "Ready", "True"), 300, "stable live, canary warm")
    wait_for(lambda: live_on(dp, {"2.3.8": 1}), 60, "2.3.8 answers")


def _go(objs: Objects, name: str) -> None:
    objs.patch_mep(name, {"spec": {"variants": [
        {"name": "stable", "version": "2.3.8", "weight": 0},
        {"name": "canary", "version": "2.4.1", "weight": 100},
    ]}})  # fmt: skip


def _phase(objs: Objects, name: str) -> str:
    return str(((objs.mep(name).get("status") or {}).get("rollout") or {}).get("phase", ""))


def test_a_good_canary_ramps_to_full_traffic(dp, objs):  # type: ignore[no-untyped-def]
    _canary(dp, objs, "good", None)
    with Load(dp) as load:
        _go(objs, "good")
        wait_for(lambda: _phase(objs, "good") == "Succeeded", 240, "rollout Succeeded")
        try:
            wait_for(lambda: live_on(dp, {"2.4.1": 1}), 60, "all traffic on 2.4.1")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{explain(objs, 'good')}") from None
    shares = [v for _, _, v, _ in load.log]
    assert "2.4.1" in shares and all(s == 200 for _, s, _, _ in load.log)
    ro = objs.mep("good")["status"]["rollout"]
    verdicts = [m["verdict"] for m in ro["measurements"]]
    # the first window may have no canary requests yet (inconclusive, never a pass); nothing failed
    assert "Passed" in verdicts and "Failed" not in verdicts, ro["measurements"]


def test_a_bad_canary_is_rolled_back_automatically_under_load(dp, objs):  # type: ignore[no-untyped-def]
    _canary(dp, objs, "bad", {"MODEL_SERVER_ERROR_RATE": "0.5"})
    with Load(dp) as load:
        t0 = time.time()
        _go(objs, "bad")
        wait_for(lambda: _phase(objs, "bad") == "Failed", 240, "rollout Failed")
        t_failed = time.time()
        wait_for(lambda: live_on(dp, {"2.3.8": 1}, 60), 30, "traffic back on 2.3.8")
    errors = [x for x in load.log if x[1] != 200]
    after = [x for x in load.since(t_failed + 5) if x[1] != 200]
    print(
        f"bad canary: {len(errors)} errors of {len(load.log)} requests; "
        f"failed {t_failed - t0:.1f}s after start"
    )
    assert errors and not after  # clients saw the canary's errors only while it had a share
    ep = objs.mep("bad")
    assert cond_is(ep, "Degraded", "True", "RolloutFailed")
    assert "errors=" in ep["status"]["rollout"]["message"]


def _operator_prometheus(dp: DataPlane, url: str) -> None:
    cfg = yaml.safe_load(dp.operator.config.read_text()) or {}
    cfg.setdefault("analysis", {})["prometheusUrl"] = url
    dp.operator.config.write_text(yaml.safe_dump(cfg))
    dp.operator.restart()


def test_prometheus_down_never_promotes(dp, objs):  # type: ignore[no-untyped-def]
    _canary(dp, objs, "blind", None, inconclusiveLimit=1)
    # the operator's Prometheus is unreachable (a closed port), the shared Prometheus stays up
    _operator_prometheus(dp, "http://127.0.0.1:9")
    try:
        with Load(dp):
            _go(objs, "blind")
            wait_for(lambda: _phase(objs, "blind") == "Failed", 240, "rollout Failed (inconclusive)")
            ro = objs.mep("blind")["status"]["rollout"]
            assert "inconclusive" in ro["message"] and "unreachable" in json.dumps(ro["measurements"])
            assert not any(m["verdict"] == "Passed" for m in ro["measurements"])
            wait_for(lambda: live_on(dp, {"2.3.8": 1}), 60, "traffic back on 2.3.8")
    finally:
        _operator_prometheus(dp, dp.prom.url)


def test_operator_restart_mid_rollout_resumes_at_the_same_step(dp, objs):  # type: ignore[no-untyped-def]
    _canary(dp, objs, "resume", None)
    with Load(dp):  # the analysis needs traffic to measure
        _go(objs, "resume")
        wait_for(
            lambda: (objs.mep("resume")["status"].get("rollout") or {}).get("step", 0) >= 1, 120, "step 1"
        )
        before = objs.mep("resume")["status"]["effectiveWeights"]
        dp.operator.restart()
        after = objs.mep("resume")["status"]["effectiveWeights"]
        assert after["canary"] >= before["canary"]  # never backwards
        try:
            wait_for(
                lambda: _phase(objs, "resume") == "Succeeded", 240, "rollout Succeeded after the restart"
            )
        except AssertionError as e:
            ms = (objs.mep("resume")["status"].get("rollout") or {}).get("measurements")
            raise AssertionError(f"{e}\n{explain(objs, 'resume')}\n{json.dumps(ms)[:2000]}") from None


# ------------------------------------------------------------------------------ the chart, for real
def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (a pod IP on the node's bridge)
            return r.status, r.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def test_the_chart_runs_the_operator_as_a_pod_on_the_real_node(dp, objs, namespace, tmp_path):  # type: ignore[no-untyped-def]
    """`helm install` of our chart with the locally built image: the operator runs as a pod on the real
    node under the chart's ServiceAccount, RBAC (namespaced watch), probes and security context,
    answers /healthz and /metrics on its pod IP, and alone (the session operator is stopped) verifies
    a version and reconciles an endpoint that answers real requests through Traefik."""
    helm = Helm.find(dp.cluster, tmp_path / "helm")
    release = "mvo"
    fullname = f"{release}-modelversioning-operator"
    sa = f"system:serviceaccount:{namespace}:{fullname}"
    repo, tag = OPERATOR_IMAGE.rsplit(":", 1)
    values = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "crds": {"enabled": False},  # the session's CRDs stay
        "admission": {"enabled": False},  # the harness's policies stay; the chart's SA joins them below
        "watch": {"allNamespaces": False, "namespaces": [namespace]},
        "config": {
            "artifacts": {"allowedPrivateNetworks": [f"{NODE_IP}/32"]},
            "serving": {"initImage": OPERATOR_IMAGE, "initImagePullPolicy": "Never", "drainSeconds": 1},
        },
        **dp.placement,
    }
    core = objs.core
    dp.operator.stop()
    installed = False
    try:
        with admission.allow_operator(dp.cluster, sa):
            install = ["install", release, str(CHART), "--namespace", namespace]
            helm(*install, "--values", helm.values_file(values), "--wait", "--timeout", "240s", timeout=300)
            installed = True
            (pod,) = core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=operator"
            ).items
            assert pod.spec.node_name == NODE_NAME and pod.spec.service_account_name == fullname
            assert pod.status.container_statuses[0].ready
            assert pod.spec.containers[0].security_context.read_only_root_filesystem
            ip = pod.status.pod_ip
            assert _get(f"http://{ip}:8081/healthz")[0] == 200
            register(dp, objs, "incluster", "1.0.0")
            objs.create(
                endpoint(dp, "incluster", "incluster", [{"name": "main", "version": "1.0.0", "weight": 100}])
            )
            wait_for(
                lambda: cond_is(objs.mep("incluster"), "Ready", "True"), 300, "Ready, reconciled by the pod"
            )
            wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
            status, page = _get(f"http://{ip}:8080/metrics")
            assert status == 200 and "modelversioning_artifact_verifications_total{" in page, page[:500]
            # still the same pod (never restarted by its probes meanwhile)
            (again,) = core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=operator"
            ).items
            assert again.metadata.uid == pod.metadata.uid
            assert again.status.container_statuses[0].restart_count == 0
            helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "90s")
            installed = False
    finally:
        if installed:
            helm("uninstall", release, "--namespace", namespace, check=False)
        dp.operator.start()
