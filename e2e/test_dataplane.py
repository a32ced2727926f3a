"""Traffic, proven with traffic: real model pods on the real node, a real gateway (Traefik) and a real
Prometheus, driven by the operator. Every claim about what answers a request is checked by sending
requests (bounded loops, only to loopback and the node's own addresses).

The session operator is reconfigured for this module (and restored after): the init container is
the locally built operator image, Prometheus is the analysis source, and the Gateway API mirror is
not declared supported (Traefik lacks RequestMirror).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import admission
from dataplane_harness import DataPlane
from gateway import weighted_split_tolerance
from helmchart import CHART, Helm
from helpers import Objects, cond_is, model_endpoint, model_version, route_weights, wait_for
from images import OPERATOR_IMAGE
from node import NODE_IP, NODE_NAME

pytestmark = pytest.mark.timeout(1800)
PREDICT = "/v1/predict"


# ------------------------------------------------------------------------------------------ fixtures
# `dataplane` (module-scoped) and `dp` are in conftest.py, the data plane itself in dataplane_harness.py
@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


def register(dp: DataPlane, objs: Objects, model: str, version: str, *, stage: str = "production",
             env: dict[str, str] | None = None, served: bytes | None = None,
             runtime: dict[str, Any] | None = None) -> str:  # fmt: skip
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
        **(runtime or {}),
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

        seen: list[Any] = []  # the 1.1.0 pods as they were when their init container refused

        def init_failed() -> bool:
            pods = objs.core.list_namespaced_pod(
                objs.ns, label_selector="modelversioning.io/version=1.1.0"
            ).items
            seen[:] = pods
            return any(
                (cs.last_state and cs.last_state.terminated and cs.last_state.terminated.exit_code != 0)
                or (cs.state and cs.state.terminated and cs.state.terminated.exit_code != 0)
                for p in pods
                for cs in p.status.init_container_statuses or []
            )

        wait_for(init_failed, 180, "the 1.1.0 pod's init container to refuse the artifact")
        pods = list(seen)
        assert pods and not any(
            c.type == "Ready" and c.status == "True" for p in pods for c in p.status.conditions or []
        )
        # the refusal re-verifies 1.1.0 at once: DigestMismatch on the version, and on the endpoint
        wait_for(lambda: cond_is(objs.mv("tamper-v1.1.0"), "ArtifactVerified", "False", "DigestMismatch"), 60,
                 "1.1.0 re-verified: DigestMismatch")  # fmt: skip
        time.sleep(3)  # requests keep coming meanwhile
    statuses = Counter(s for _, s, _, _ in load.log)
    served = Counter(v for _, s, v, _ in load.log if s == 200)
    print(f"during the tampered rollout: {dict(statuses)} {dict(served)}")
    assert set(statuses) == {200} and set(served) == {"1.0.0"}
    # Why: the init container's own report (its termination message, FallbackToLogsOnError), as the pods
    # were when it refused (the operator removes the slot of a version that is DigestMismatch now).
    tampered_sha = hashlib.sha256(b"tampered weights\n").hexdigest()
    reports = [_init_report(p) for p in pods]
    assert any(r and (r["ok"], r["reason"], r["actual"]) == (False, "DigestMismatch", tampered_sha)
               for r in reports), reports  # fmt: skip
    # The server side: the model server of 1.1.0 never started, so nothing could have reached it ...
    for p in pods:
        for cs in p.status.container_statuses or []:
            assert not cs.started and not cs.ready and cs.restart_count == 0, cs
            assert cs.state.running is None and cs.state.terminated is None, cs.state
            assert cs.last_state.running is None and cs.last_state.terminated is None, cs.last_state
    # ... and Traefik's access log: every request of the load was proxied to a 1.0.0 pod, none to a
    # 1.1.0 pod (which had a pod IP from its sandbox on).
    ips = {"1.0.0": {p.status.pod_ip for p in objs.core.list_namespaced_pod(
        objs.ns, label_selector="modelversioning.io/version=1.0.0").items if p.status.pod_ip},
        "1.1.0": {p.status.pod_ip for p in pods if p.status.pod_ip}}  # fmt: skip

    def logged() -> Counter[str] | None:  # Traefik writes an entry once it has answered
        # (entries without a ServiceAddr: the 404s of before Traefik read the route)
        by_ip = Counter(
            e["ServiceAddr"].rsplit(":", 1)[0] for e in dp.gw.access_log(dp.host) if e.get("ServiceAddr")
        )
        return by_ip if sum(by_ip.values()) >= len(load.log) else None

    answered = wait_for(logged, 10, f"Traefik's access log to hold the {len(load.log)} requests of the load")
    print(f"Traefik's access log for {dp.host}, by backend pod IP: {dict(answered)}; pod IPs {ips}")
    assert ips["1.1.0"] and not set(answered) & ips["1.1.0"], (answered, ips)
    assert set(answered) <= ips["1.0.0"], (answered, ips)


def _scaled(objs: Objects, name: str, variant: dict[str, Any]) -> None:
    objs.patch_mep(name, {"spec": {"variants": [variant]}})


def test_bytes_changed_under_a_serving_version_are_reported_when_it_scales(dp, objs):  # type: ignore[no-untyped-def]
    """Issue 24.3: the bytes behind a serving version's URI are overwritten, then the variant scales
    from 2 to 4 replicas. The new pods' init containers refuse the digest (traffic stays on the 2 old
    pods: 0 errors); within 30 s the endpoint is Degraded=DigestMismatch and the version, re-verified
    at once, ArtifactVerified=False (as landed: Ready "serving as declared", ArtifactVerified=True)."""
    register(dp, objs, "swapped", "1.0.0")
    main = {"name": "main", "version": "1.0.0", "weight": 100, "replicas": 2}
    objs.create(endpoint(dp, "swapped", "swapped", [main]))
    wait_for(lambda: cond_is(objs.mep("swapped"), "Ready", "True"), 300, "1.0.0 live on 2 pods")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers")
    dp.art.put(f"{objs.ns}/swapped/1.0.0/model.bin", b"other weights\n")  # the store changed
    with Load(dp) as load:
        t0 = time.monotonic()
        _scaled(objs, "swapped", {**main, "replicas": 4})
        wait_for(lambda: cond_is(objs.mep("swapped"), "Degraded", "True", "DigestMismatch"), 120,
                 "the endpoint Degraded with the pods' DigestMismatch")  # fmt: skip
        reported = time.monotonic() - t0
        mv = lambda: objs.mv("swapped-v1.0.0")  # noqa: E731
        wait_for(lambda: cond_is(mv(), "ArtifactVerified", "False", "DigestMismatch"), 60, "re-verified")
        time.sleep(2)  # requests keep coming to the 2 old pods
    codes = Counter(x[1] for x in load.log)
    served = Counter(x[3] for x in load.log if x[1] == 200)
    print(f"scaled over changed bytes: Degraded after {reported:.1f} s; answers {dict(codes)} {dict(served)}")
    assert set(codes) == {200} and set(served) == {"1.0.0"}, (codes, served)
    assert any(e.reason == "DigestMismatch" for e in objs.events("swapped"))


@pytest.mark.parametrize(
    ("runtime", "reason"),
    [
        ({"healthPath": "/no-such-health"}, "RuntimeNotReady"),
        ({"image": "registry.invalid/none:1"}, "ImagePullFailed"),
    ],
    ids=["never-ready", "image-pull"],
)
def test_a_new_version_whose_pods_fail_is_reported_and_never_answers(dp, objs, runtime, reason):  # type: ignore[no-untyped-def]
    """Issue 24.3: a new version whose server never becomes ready (a wrong health path) or whose image
    cannot be pulled: traffic stays on the old version, and the endpoint says why, from the pod."""
    register(dp, objs, "broken", "1.0.0")
    objs.create(endpoint(dp, "broken", "broken", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("broken"), "Ready", "True"), 300, "1.0.0 live")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers")
    register(dp, objs, "broken", "1.1.0", runtime=runtime)
    wait_for(lambda: cond_is(objs.mv("broken-v1.1.0"), "ArtifactVerified", "True"), 60, "1.1.0 verified")
    with Load(dp) as load:
        _scaled(objs, "broken", {"name": "main", "version": "1.1.0", "weight": 100})
        wait_for(lambda: cond_is(objs.mep("broken"), "Degraded", "True", reason), 180,
                 f"the endpoint Degraded={reason}")  # fmt: skip
        time.sleep(2)
    cond = next(c for c in objs.mep("broken")["status"]["conditions"] if c["type"] == "Degraded")
    codes = Counter(x[1] for x in load.log)
    served = Counter(x[3] for x in load.log if x[1] == 200)
    print(f"{reason}: {cond['message']!r}; answers {dict(codes)} {dict(served)}")
    assert set(codes) == {200} and set(served) == {"1.0.0"}, (codes, served)
    assert any(e.reason == reason for e in objs.events("broken"))


def _init_report(pod: Any) -> dict[str, Any] | None:
    """The last JSON line of the verify-artifact init container's termination message."""
    for cs in pod.status.init_container_statuses or []:
        for state in (cs.state, cs.last_state):
            message = (state.terminated.message or "") if state and state.terminated else ""
            lines = [ln for ln in message.splitlines() if ln.startswith("{")]
            if lines:
                return dict(json.loads(lines[-1]))
    return None


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


def test_revoking_the_only_serving_version_closes_the_route_under_load(dp, objs, cluster):  # type: ignore[no-untyped-def]
    """Issue 23.6: `kubectl models revoke` of the only version an endpoint serves. The revoked model
    never answers again once the route changes: the endpoint answers 5xx with x-model-unavailable:
    revoked (the gateway's own answer for a backend without endpoints), and its status says why."""
    import subprocess
    import sys

    register(dp, objs, "pulled", "1.0.0")
    objs.create(endpoint(dp, "pulled", "pulled", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("pulled"), "Ready", "True"), 300, "1.0.0 live")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers")
    with ObjectWatch.route(objs, "pulled") as route, Load(dp) as load:
        wait_for(lambda: len(load.log) > 20, 30, "load running")
        cli = [
            sys.executable,
            "-m",
            "modelversioning.cli.kubectl_models",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ]
        done = subprocess.run([*cli, "-n", objs.ns, "revoke", "pulled", "1.0.0", "--reason", "e2e: CVE"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        why = f"{explain(objs, 'pulled')}; route {route.last()}; mv {objs.mv('pulled-v1.0.0').get('status')}"
        assert done.returncode == 0, f"{done.stdout}{done.stderr}; {why}"
        wait_for(lambda: cond_is(objs.mep("pulled"), "Ready", "False", "Revoked"), 60, "Ready=False Revoked")
        closed_at = route.changes[-1][1]  # wall time of the last route write (the closed route)
        time.sleep(3)  # answers after the route change, under load
    after = [x for x in load.log if x[0] > closed_at + 1.0]
    codes = Counter(x[1] for x in after)
    print(f"revoked: {len(after)} answers after the route change: {dict(codes)}; route: {route.changes}")
    assert after, "no answers after the route change"
    assert not [x for x in after if x[1] == 200 or x[3] == "1.0.0"], codes  # the revoked model never answers
    rs = predict(dp, 5)
    assert all(r.status >= 500 for r in rs), [r.status for r in rs]
    print(f"closed route answers {sorted({r.status for r in rs})}, x-model-unavailable: "
          f"{sorted({r.headers.get('x-model-unavailable') for r in rs}, key=str)}")  # fmt: skip
    st = objs.mep("pulled")["status"]
    assert (st.get("closed") or {}).get("reason") == "revoked", st.get("closed")
    assert any(e.reason == "Revoked" for e in objs.events("pulled"))


def test_deleting_an_endpoint_under_load_removes_the_route_before_its_pods(dp, objs):  # type: ignore[no-untyped-def]
    """Issue 24.4: deleting an endpoint under traffic answers 2xx until its route is gone, then the
    gateway's own 404; never a 5xx (as landed: 24 x 500 in one of two runs, the pods went with the
    route). The finalizer modelversioning.io/drain holds the slots for the drain grace after the
    route's removal is observed."""
    from kubernetes.client.rest import ApiException

    register(dp, objs, "leaving", "1.0.0")
    objs.create(endpoint(dp, "leaving", "leaving", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("leaving"), "Ready", "True"), 300, "1.0.0 live")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers")

    def endpoint_gone() -> bool:
        try:
            objs.mep("leaving")
        except ApiException as e:
            return e.status == 404
        return False

    with ObjectWatch.route(objs, "leaving") as route, Load(dp) as load:
        wait_for(lambda: len(load.log) > 20, 30, "load running")
        objs.delete_mep("leaving")
        wait_for(lambda: route.last() is None, 60, "the route deleted first")
        removed_at = route.changes[-1][1]
        wait_for(endpoint_gone, 120, "the slots drained and the finalizer released")
        recent = lambda: load.since(time.time() - 1)  # noqa: E731
        wait_for(lambda: recent() and all(x[1] == 404 for x in recent()), 60, "the gateway's own 404")
    codes = Counter(x[1] for x in load.log)
    before = Counter(x[1] for x in load.log if x[0] < removed_at)
    print(f"deleted under load: before the route went {dict(before)}; all {dict(codes)}")
    assert set(before) == {200}, before
    assert set(codes) <= {200, 404}, codes  # never a 5xx: the pods outlive the route


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
class ObjectWatch:
    """Every distinct value of `extract(object)` one named object took, from a watch of the API
    server (a poll can miss a value that lasted less than its interval; a watch sees every write):
    `changes` is [(time.monotonic(), time.time(), value)] in the order the writes were applied, and
    `versions` the resourceVersion of each (one etcd here: its revisions order writes across objects)."""

    def __init__(self, objs: Objects, group: str, version: str, plural: str, name: str, extract: Any) -> None:
        self.objs, self.group, self.version, self.plural, self.name = objs, group, version, plural, name
        self.extract = extract
        self.changes: list[tuple[float, float, Any]] = []
        self.versions: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def route(cls, objs: Objects, name: str) -> ObjectWatch:
        """variant -> weight of the HTTPRoute the operator writes for endpoint `name`."""
        return cls(objs, "gateway.networking.k8s.io", "v1", "httproutes", name, route_weights)

    def __enter__(self) -> ObjectWatch:
        self._t.start()
        wait_for(lambda: self.changes, 30, f"the watch of {self.plural}/{self.name} to see it")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(10)

    def last(self) -> Any:
        with self._lock:
            return self.changes[-1][2] if self.changes else None

    def values(self) -> list[Any]:
        with self._lock:
            return [v for _, _, v in self.changes]

    def _record(self, value: Any, rv: str) -> None:
        with self._lock:
            if not self.changes or self.changes[-1][2] != value:
                self.changes.append((time.monotonic(), time.time(), value))
                self.versions.append(int(rv))

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        rv: str | None = None
        while not self._stop.is_set():
            kwargs: dict[str, Any] = {"field_selector": f"metadata.name={self.name}", "timeout_seconds": 2}
            if rv:
                kwargs["resource_version"] = rv
            try:
                for ev in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.objs.co.list_namespaced_custom_object,
                    self.group, self.version, self.objs.ns, self.plural, **kwargs,
                ):  # fmt: skip
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    self._record(None if ev["type"] == "DELETED" else self.extract(obj), rv)
                    if self._stop.is_set():
                        return
            except ApiException as e:
                if e.status == 410:  # too old: watch again from the current state
                    rv = None
                time.sleep(0.1)
            except Exception:  # noqa: BLE001 - a dropped connection: resume from the last version seen
                time.sleep(0.1)


def _traffic(dp: DataPlane) -> Any:
    """Clients sending predictions through the gateway: 2 threads, ~50 requests/s each at most."""
    return dp.gw.traffic(host=dp.host, body=b'{"inputs": [1, 2, 3]}', threads=2, interval=0.02)


def canary_weights(route: ObjectWatch) -> list[int]:
    return [int((w or {}).get("canary", 0)) for w in route.values()]


def held(route: ObjectWatch, weight: int) -> float:
    """Seconds the route carried `weight` for the canary (until its next change)."""
    ch = route.changes
    i = next(i for i, (_, _, w) in enumerate(ch) if int((w or {}).get("canary", 0)) == weight)
    return ch[i + 1][0] - ch[i][0]


INTERVAL_S, WINDOW_S = 3.0, 10.0  # the analysis of these tests
SCRAPE_S = 1.0  # the harness's Prometheus scrape interval (e2e/prometheus.py)
ROUTE_S = 2.0  # the operator's route write plus Traefik reading it (measured ~0.4 s; slack for load)
# How long clients may see a bad canary, from its first response to the last bad one: the first
# measurement comes one analysis interval after the rollout started, it sees what Prometheus scraped
# (one scrape interval late) over its rate window, and the failed measurement puts the route back in
# the same reconcile (then Traefik reads it).
BAD_WINDOW_S = INTERVAL_S + WINDOW_S + SCRAPE_S + ROUTE_S
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
]


def _strategy(
    metrics: list[dict[str, Any]], *, steps: list[dict[str, Any]] | None = None,
    canary: dict[str, Any] | None = None, **analysis: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": steps or STEPS,
            "analysis": {"interval": f"{INTERVAL_S:g}s", "metrics": metrics, **analysis},
            "promoteOnSuccess": True,
            **(canary or {}),
        }
    }


ERRORS = [{"name": "errors", "template": "error-rate", "window": f"{WINDOW_S:g}s", "max": 0.05}]


def _canary(dp: DataPlane, objs: Objects, name: str, bad_env: dict[str, str] | None, *,
            strategy: dict[str, Any] | None = None, canary_stage: str = "production",
            **analysis: Any) -> None:  # fmt: skip
    register(dp, objs, name, "2.3.8")
    register(dp, objs, name, "2.4.1", env=bad_env, stage=canary_stage)
    variants = [
        {"name": "stable", "version": "2.3.8", "weight": 100},
        {"name": "canary", "version": "2.4.1", "weight": 0},
    ]
    objs.create(endpoint(dp, name, name, variants, strategy=strategy or _strategy(ERRORS, **analysis)))
    wait_for(lambda: cond_is(objs.mep(name), "Ready", "True"), 300, "stable live, canary warm")
    wait_for(lambda: live_on(dp, {"2.3.8": 1}), 60, "2.3.8 answers")


def _go(objs: Objects, name: str) -> None:
    objs.patch_mep(name, {"spec": {"variants": [
        {"name": "stable", "version": "2.3.8", "weight": 0},
        {"name": "canary", "version": "2.4.1", "weight": 100},
    ]}})  # fmt: skip


def _rollout(objs: Objects, name: str) -> dict[str, Any]:
    return dict((objs.mep(name).get("status") or {}).get("rollout") or {})


def _phase(objs: Objects, name: str) -> str:
    return str(_rollout(objs, name).get("phase", ""))


def _wait_phase(objs: Objects, name: str, phase: str, timeout: float = 240) -> None:
    try:
        wait_for(lambda: _phase(objs, name) == phase, timeout, f"rollout {phase}", interval=0.1)
    except AssertionError as e:
        ms = _rollout(objs, name).get("measurements")
        raise AssertionError(f"{e}\n{explain(objs, name)}\n{json.dumps(ms)[:2000]}") from None


GOOD_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {"duration": "6s"}},
    {"setWeight": 30},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
]


def test_a_good_canary_ramps_through_every_step_and_earns_its_promotion(dp, objs):  # type: ignore[no-untyped-def]
    """2.4.1 is in staging, one stage below the endpoint's requiredStage (production): the strategy
    lets it take at most 50 % (maxWeightBelowStage) while the analysis judges it. The route carries
    every step's weight in order, each for at least its pause; the success promotes 2.4.1 to
    production (history: the endpoint as actor, the analysis as reason), and only then does it take
    the declared 100 %. Clients see no error throughout."""
    strategy = _strategy(ERRORS, steps=GOOD_STEPS, canary={"maxWeightBelowStage": 50})
    # the canary's own runtime (modelServer) earns a promotion only where the platform trusts it
    with _trusting_the_model_server(objs):
        _canary(dp, objs, "good", None, strategy=strategy, canary_stage="staging")
        _ramp_and_promote(dp, objs)


@contextlib.contextmanager
def _trusting_the_model_server(objs: Objects) -> Iterator[None]:
    name = f"trust-{objs.ns}"
    body = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelPlatformPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": objs.ns}},
            "analysis": {"trustedSources": ["modelServer", "traefik", "istio"]},
        },
    }
    objs.co.create_cluster_custom_object("modelversioning.io", "v1alpha1", "modelplatformpolicies", body)
    try:
        yield
    finally:
        objs.co.delete_cluster_custom_object("modelversioning.io", "v1alpha1", "modelplatformpolicies", name)


def _ramp_and_promote(dp, objs):  # type: ignore[no-untyped-def]
    assert objs.mv("good-v2.4.1")["status"]["stage"] == "staging"
    stage = ObjectWatch(objs, "modelversioning.io", "v1alpha1", "modelversions", "good-v2.4.1",
                        lambda o: (o.get("status") or {}).get("stage"))  # fmt: skip
    with ObjectWatch.route(objs, "good") as route, stage, _traffic(dp) as loop:
        t0 = time.monotonic()
        _go(objs, "good")
        _wait_phase(objs, "good", "Succeeded")
        wait_for(lambda: (objs.mv("good-v2.4.1").get("status") or {}).get("stage") == "production", 60,
                 "2.4.1 promoted to production by the rollout")  # fmt: skip
        wait_for(
            lambda: canary_weights(route)[-1] == 100, 60, "the route at 100 % once 2.4.1 is in production"
        )
        loop.wait_until(lambda s: s.status == 200 and s.version == "2.4.1", settle=40, timeout=60)
    print(f"route changes (canary %): {[(round(t - t0, 1), w) for t, _, w in route.changes]}")
    # every step in order, nothing skipped, never backwards; 50 % (the allowance) until the promotion
    assert canary_weights(route) == [0, 10, 30, 50, 100], route.changes
    for w in (10, 30, 50):  # each setWeight is followed by a 6 s pause
        assert held(route, w) >= 6 - 0.5, (w, route.changes)
    promoted = stage.versions[stage.values().index("production")]  # the write of status.stage
    assert route.versions[-1] > promoted, "the canary took more than its allowance before its promotion"
    samples = loop.since(t0)
    assert not loop.failures(t0), loop.failures(t0)[:5]
    assert {s.version for s in samples} == {"2.3.8", "2.4.1"}
    mv = objs.mv("good-v2.4.1")
    hop = mv["status"]["history"][-1]
    print(f"2.4.1 history: {hop}")
    assert (hop["from"], hop["to"], hop["actor"]) == ("staging", "production", "ModelEndpoint/good"), hop
    assert hop["reason"].startswith("rollout on good succeeded: errors="), hop
    assert "Passed" in hop["reason"], hop
    record = mv["status"]["rollouts"][-1]
    assert (record["endpoint"], record["result"]) == ("good", "Succeeded"), record
    ro = _rollout(objs, "good")
    assert ro["step"] == len(GOOD_STEPS) and ro["failures"] == 0, ro
    verdicts = [m["verdict"] for m in ro["measurements"]]
    # the first window may have no canary requests yet (inconclusive, never a pass); nothing failed
    assert "Passed" in verdicts and "Failed" not in verdicts, ro["measurements"]


def _bad_canary(dp: DataPlane, objs: Objects, name: str, env: dict[str, str], metric: dict[str, Any],
                bad: Any, extra_s: float = 0.0) -> list[Any]:  # fmt: skip
    """A canary that misbehaves (`env`) ramps under client traffic and is rolled back by `metric`;
    returns the bad samples (`bad(sample)`). Asserted: every bad response came from the canary, the
    bad window (the canary's first response to the last bad one) is within BAD_WINDOW_S (+ `extra_s`),
    the route went 0 -> 20 -> 0, and no response came from the canary once the route was back."""
    _canary(dp, objs, name, env, strategy=_strategy([metric]))
    with ObjectWatch.route(objs, name) as route, _traffic(dp) as loop:
        t0 = time.monotonic()
        _go(objs, name)
        _wait_phase(objs, name, "Failed")
        t_failed = time.monotonic()
        wait_for(lambda: canary_weights(route)[-1] == 0, 30, "the route back on the baseline")
        t_back = loop.wait_until(
            lambda s: s.status == 200 and s.version == "2.3.8", since=t_failed, settle=40
        )
        time.sleep(2)  # and it stays there
    samples = loop.since(t0)
    from_canary = [s for s in samples if s.version == "2.4.1"]
    bad_ones = [s for s in samples if bad(s)]
    t_route_back = route.changes[-1][0]
    window = max(s.t for s in bad_ones) - min(s.t for s in from_canary) if bad_ones else 0.0
    print(
        f"{name}: {len(samples)} responses, {len(from_canary)} from 2.4.1, {len(bad_ones)} bad; "
        f"Failed {t_failed - t0:.1f}s after the change; bad window {window:.1f}s (bound "
        f"{BAD_WINDOW_S + extra_s:g}s); route back {t_route_back - t0:.1f}s, clients all on 2.3.8 "
        f"{t_back - t0:.1f}s after the change"
    )
    assert bad_ones, "clients saw nothing bad: the canary never took traffic"
    strays = [s for s in bad_ones if s.version != "2.4.1"]
    assert not strays, f"bad responses not from the canary: {strays[:5]}"
    assert window <= BAD_WINDOW_S + extra_s, (window, BAD_WINDOW_S + extra_s)
    assert canary_weights(route) == [0, 20, 0], route.changes
    late = [s for s in from_canary if s.t > t_route_back + ROUTE_S + extra_s]
    assert not late, f"the canary answered after the route was back on the baseline: {late[:5]}"
    ep = objs.mep(name)
    ms = ep["status"]["rollout"]["measurements"]
    print("measurements:", [(m["at"], m["verdict"], m.get("value"), m.get("message", "")[:80]) for m in ms])
    assert cond_is(ep, "Degraded", "True", "RolloutFailed")
    assert f"{metric['name']}=" in ep["status"]["rollout"]["message"], ep["status"]["rollout"]["message"]
    return bad_ones


def test_a_bad_canary_is_rolled_back_automatically_under_load(dp, objs):  # type: ignore[no-untyped-def]
    """Half the canary's answers are 500s: the error-rate analysis rolls it back, no human involved."""
    _bad_canary(dp, objs, "bad", {"MODEL_SERVER_ERROR_RATE": "0.5"}, ERRORS[0],
                bad=lambda s: not 200 <= s.status < 300)  # fmt: skip


LATENCY_MS = 800
SLOW_S = LATENCY_MS / 1000 / 2  # a response this slow is a bad one (the baseline answers in ms)


def test_a_slow_canary_is_rolled_back_automatically_under_load(dp, objs):  # type: ignore[no-untyped-def]
    """Every canary answer takes 800 ms more: the latency analysis (p99 of the model server's
    histogram) rolls it back. A slow response lands up to its latency after the route changed."""
    latency = {"name": "latency", "template": "latency", "quantile": 0.99, "window": f"{WINDOW_S:g}s",
               "max": 0.3}  # fmt: skip
    slow = _bad_canary(dp, objs, "slow", {"MODEL_SERVER_LATENCY_MS": str(LATENCY_MS)}, latency,
                       bad=lambda s: s.elapsed >= SLOW_S, extra_s=LATENCY_MS / 1000)  # fmt: skip
    assert all(200 <= s.status < 300 for s in slow), [s for s in slow if s.status != 200][:5]


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


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _rollout_step_metric(dp: DataPlane, ns: str, name: str) -> float | None:
    """modelversioning_rollout_step of the endpoint on the running operator's /metrics (a fresh
    process has the series only once it reconciled that endpoint)."""
    import re

    try:
        page = dp.operator.metrics()
    except OSError:
        return None
    for line in page.splitlines():
        if line.startswith("modelversioning_rollout_step{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if labels.get("namespace") == ns and labels.get("endpoint") == name:
                return float(line.rsplit(" ", 1)[1])
    return None


RESUME_PAUSE_S = 30
RESUME_STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": f"{RESUME_PAUSE_S}s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
]


def test_operator_restart_mid_rollout_resumes_at_the_same_step(dp, objs):  # type: ignore[no-untyped-def]
    """The operator is restarted in the middle of a 30 s pause (step 1, canary at 20 %). The new
    process's first reconcile of the endpoint keeps step 1 and the time the step started; the route,
    watched throughout, never goes back (to 0) nor forward (to 50) before the pause's original end,
    and the pause ends on its original schedule (not 30 s after the restart)."""
    _canary(dp, objs, "resume", None, strategy=_strategy(ERRORS, steps=RESUME_STEPS))
    with ObjectWatch.route(objs, "resume") as route, _traffic(dp) as loop:
        t0 = time.monotonic()
        _go(objs, "resume")
        wait_for(lambda: _rollout(objs, "resume").get("step") == 1, 120, "step 1 (the pause)")
        before = _rollout(objs, "resume")
        pause_end = _epoch(before["stepStartedAt"]) + RESUME_PAUSE_S
        time.sleep(max(0.0, _epoch(before["stepStartedAt"]) + 8 - time.time()))  # 8 s into the pause
        assert _rollout_step_metric(dp, objs.ns, "resume") == 1  # the old process's view
        t_restart = time.time()
        dp.operator.restart()
        wait_for(lambda: _rollout_step_metric(dp, objs.ns, "resume") is not None, 60,
                 "the new operator's first reconcile of the endpoint")  # fmt: skip
        t_first = time.time()
        step = _rollout_step_metric(dp, objs.ns, "resume")
        after = _rollout(objs, "resume")
        print(f"restart at +{t_restart - pause_end + RESUME_PAUSE_S:.1f}s into the pause; first reconcile "
              f"{t_first - t_restart:.1f}s later: step {step}")  # fmt: skip
        assert t_first < pause_end, "the restart took the whole pause: nothing was tested"
        assert step == 1 and after["step"] == 1, (step, after)
        assert after["stepStartedAt"] == before["stepStartedAt"], (before, after)
        assert after["phase"] == "Progressing" and after["weights"] == before["weights"], (before, after)
        _wait_phase(objs, "resume", "Succeeded")
        wait_for(lambda: canary_weights(route)[-1] == 100, 30, "the route at 100 %")
    print(f"route changes (canary %): {[(round(t - t0, 1), w) for t, _, w in route.changes]}")
    # never backwards, never a step skipped or taken early
    assert canary_weights(route) == [0, 20, 50, 100], route.changes
    t_50 = next(wall for _, wall, w in route.changes if w.get("canary") == 50)
    print(f"50 % written {t_50 - pause_end:+.2f}s from the pause's original end")
    assert t_50 >= pause_end - 0.5, "the pause was cut short"
    # a pause restarted by the restart would end 30 s after it, 8 s or more after the original end
    assert t_50 <= pause_end + 5, "the pause did not end on its original schedule"
    assert not loop.failures(t0), loop.failures(t0)[:5]


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
