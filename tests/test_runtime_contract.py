"""The canary's runtime checked against its version's recorded signature (issue 27, part 4): the OIP
metadata reader (analysis.oip) against a fake Open Inference Protocol server on loopback (bounded: the
cluster IP of the variant's own ClusterIP Service only, a deadline, a size cap, no redirect followed,
remote text only as a sanitized summary), the pure verdict and
hold (domain.runtime_contract) through the rollout decision, and the probes' gather (handlers)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelversioning.analysis.oip import (
    RuntimeUnanswered,
    model_metadata,
    served_signature,
    service_address,
    service_host,
    summary,
)
from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.domain.endpoint_facts import SlotFacts, VariantFacts
from modelversioning.domain.endpoint_rollout import decide_rollout
from modelversioning.domain.io_contract import IOSignature, diff
from modelversioning.domain.rollout_status import status_of
from modelversioning.domain.runtime_contract import MISMATCH, OK, PENDING, RuntimeCheck, held, runtime_verdict
from modelversioning.handlers.rollout import rollout_facts
from modelversioning.handlers.runtime_contract import RuntimeProbes, recorded_signature, runtime_check
from modelversioning.handlers.store import Store

SIG = {
    "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "FP32"}],
}
RECORDED = IOSignature.of(SIG)


def oip(shape: list[int], datatype: str = "FP32") -> dict[str, Any]:
    return {
        "name": "iris", "versions": ["1"], "platform": "sklearn",
        "inputs": [{"name": "x", "datatype": datatype, "shape": shape}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }  # fmt: skip


# ---- the reader, against a fake OIP server on loopback ------------------------------------------


class FakeOIP(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append((self.path, self.headers.get("Host", "")))
        status, headers, body = self.answers.get(self.path, (404, {}, b'{"error": "no such model"}'))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "X-Unbounded" not in headers:  # else: the body ends when the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    FakeOIP.answers, FakeOIP.seen = {}, []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeOIP)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


HOST = "iris-canary-abc.team-a.svc"
LOOPBACK = "127.0.0.1"  # the fake runtime's address (a cluster IP in the cluster; never resolved)


def test_the_metadata_is_read_from_the_variants_own_service(server):
    FakeOIP.answers["/v2/models/iris"] = (200, {}, json.dumps(oip([-1, 4])).encode())
    meta = model_metadata(HOST, server, "iris", address=LOOPBACK)
    assert diff(RECORDED, served_signature(meta)) == ()
    assert FakeOIP.seen == [("/v2/models/iris", f"{HOST}:{server}")]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((302, {"Location": "http://evil.example/v2/models/iris"}, b""), "answered 302"),  # never followed
        ((404, {}, b"{}"), "answered 404"),
        ((200, {}, b"not json"), "not JSON"),
        ((200, {}, b"[1, 2]"), "not a JSON object"),
        ((200, {}, b"{" + b" " * 300_000 + b"}"), "over the cap"),
        ((200, {"X-Unbounded": "1"}, b"{" + b" " * 300_000 + b"}"), "over the cap"),  # counted while read
    ],
    ids=["redirect", "not-oip", "not-json", "not-an-object", "too-big", "too-big-undeclared"],
)
def test_anything_but_clean_metadata_is_unanswered(server, answer, why):
    FakeOIP.answers["/v2/models/iris"] = answer
    with pytest.raises(RuntimeUnanswered, match=why):
        model_metadata(HOST, server, "iris", address=LOOPBACK)
    assert [p for p, _ in FakeOIP.seen] == ["/v2/models/iris"]  # one request: no redirect followed


def test_a_runtime_that_never_answers_is_cut_at_the_deadline():
    with socket.socket() as listener:  # accepts (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(RuntimeUnanswered, match="within 0.3s"):
            model_metadata(HOST, port, "iris", timeout=0.3, address=LOOPBACK)


@pytest.mark.parametrize(
    "host", ["evil.example.com", "127.0.0.1", "a.b.svc.cluster.local", "A.b.svc", "a.svc"]
)
def test_no_host_but_a_service_name_is_ever_asked(host):
    with pytest.raises(RuntimeUnanswered, match="only a variant's own Service"):
        model_metadata(host, 80, "iris", address=LOOPBACK)
    with pytest.raises(RuntimeUnanswered):
        service_host("Bad_Slot", "ns")
    assert service_host("iris-canary-abc", "team-a") == HOST


def test_the_model_name_cannot_leave_the_path(server):
    with pytest.raises(RuntimeUnanswered):
        model_metadata(HOST, server, "../../admin?x=1", address=LOOPBACK)
    assert FakeOIP.seen[0][0] == "/v2/models/..%2F..%2Fadmin%3Fx%3D1"


# ---- the verdict and the hold -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "state", "said"),
    [
        (oip([-1, 4]), OK, "matches"),
        (oip([8, 4]), OK, "matches"),  # a fixed batch within "any"
        (oip([-1, 5]), MISMATCH, "input 'x' shape [-1, 4] -> [-1, 5]"),
        (oip([-1, 4], "FP64"), MISMATCH, "input 'x' dtype FP32 -> FP64"),
        ({**oip([-1, 4]), "outputs": []}, MISMATCH, "output 'y' removed"),
    ],
    ids=["same", "fixed-batch", "shape", "dtype", "output-missing"],
)
def test_the_runtime_verdict(served, state, said):
    got = runtime_verdict("1.1.0", RECORDED, served_signature(served))
    assert got.state == state and said in got.message


def test_held_gives_the_canarys_share_to_the_baseline():
    assert held({"stable": 90, "canary": 10, "other": 0}, "canary", "stable") == {
        "stable": 100, "canary": 0, "other": 0,
    }  # fmt: skip


STRATEGY = {
    "canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}, {"setWeight": 50}]}
}


def endpoint() -> dict[str, Any]:
    spec = {
        "model": "iris",
        "variants": [
            {"name": "stable", "version": "1.0.0", "weight": 0},
            {"name": "canary", "version": "1.1.0", "weight": 100},
        ],
        "routing": {"router": "istio", "hosts": ["iris.example.com"]},
        "strategy": STRATEGY,
    }  # fmt: skip
    return {
        "metadata": {"name": "iris", "namespace": "team-a", "generation": 2, "uid": "u"},
        "spec": spec,
        "status": {"observedGeneration": 1, "effectiveWeights": {"stable": 100, "canary": 0}},
    }


def rollout(ep: dict[str, Any], check: RuntimeCheck | None, now: float = 1000.0):
    spec = ModelEndpointSpec.model_validate(ep["spec"])
    both = {"stable": ("production", True), "canary": ("production", True)}
    rf = rollout_facts(ep, spec, both, {}, Settings(), now=now)
    assert rf is not None
    return decide_rollout(replace(rf, runtime=check))


@pytest.mark.parametrize(
    ("check", "reason", "progressing"),
    [
        (RuntimeCheck(PENDING, "asking"), R.RUNTIME_CONTRACT_PENDING, "True"),
        (RuntimeCheck(MISMATCH, "input 'x' shape [-1, 4] -> [-1, 5]"), R.RUNTIME_SIGNATURE_MISMATCH, "False"),
    ],
    ids=["pending", "mismatch"],
)
def test_a_canary_is_held_at_zero_until_its_runtime_matches(check, reason, progressing):
    ep = endpoint()
    out = rollout(ep, check)
    assert out.weights == {"stable": 100, "canary": 0}
    conds = {c.type: c for c in out.conditions}
    assert conds["Ready"].reason == reason and conds["Ready"].status == "False"
    assert conds["Progressing"].status == progressing and check.message in conds["Ready"].message
    assert out.record is None
    # the rollout waits where it is: a later reconcile, still held, keeps its step and its clock (even
    # with the route carrying the step's weights, as it did before an operator restart lost the answer)
    ep["status"]["rollout"] = status_of(out.outcome.state, out.promoted)
    ep["status"]["effectiveWeights"] = dict(out.outcome.state.weights)
    later = rollout(ep, check, now=5000.0)
    assert later.outcome.state == out.outcome.state and later.weights["canary"] == 0
    # once the runtime matches, the rollout goes on from there
    assert rollout(ep, RuntimeCheck(OK, "matches"), now=5001.0).weights["canary"] > 0


def test_without_a_check_the_rollout_is_unchanged():
    assert rollout(endpoint(), None).weights == {"stable": 90, "canary": 10}


# ---- the gather: policy, recorded signature, slot, probes ---------------------------------------


def recorded_mv(reason: str = R.IO_SIGNATURE_CHECKED, **extra: Any) -> dict[str, Any]:
    rec = {
        "source": "spec.signature",
        "digest": RECORDED.digest(),
        **SIG,
        "contract": {"reason": reason},
        **extra,
    }
    md = {"name": "iris-v1.1.0", "namespace": "team-a", "resourceVersion": "1"}
    return {
        "kind": "ModelVersion",
        "metadata": md,
        "spec": {"model": "iris", "version": "1.1.0"},
        "status": {"ioSignature": rec},
    }


def test_only_an_accepted_whole_signature_is_checked_against_the_runtime():
    assert recorded_signature(recorded_mv()) == RECORDED
    assert recorded_signature(recorded_mv(R.IO_SIGNATURE_CHANGED)) is None
    assert recorded_signature(recorded_mv(truncated=True)) is None
    assert recorded_signature(None) is None


class Probes(RuntimeProbes):
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.done = threading.Event()
        self.now = 0.0
        self.asked: list[tuple[str, int, str]] = []
        self.addresses: list[str] = []

        def read(host: str, port: int, model: str, *, address: str) -> dict[str, Any]:
            self.asked.append((host, port, model))
            self.addresses.append(address)
            if isinstance(answer, Exception):
                raise answer
            return answer

        super().__init__(requeue=lambda ns, name: self.done.set(), read=read, clock=lambda: self.now)


def gather(store: Store, probes: RuntimeProbes | None, available: bool = True) -> RuntimeCheck | None:
    ep = endpoint()
    spec = ModelEndpointSpec.model_validate(ep["spec"])
    slot = SlotFacts("iris-canary-abc", exists=True, available=available, ours=True)
    canary = VariantFacts("canary", "1.1.0", 100, 1, False, None, desired=slot)
    return runtime_check(store, probes, "team-a", "iris", spec, [canary], "u")


def slot_service(**spec: Any) -> dict[str, Any]:
    """The canary slot's Service as the operator renders it (controlled by the endpoint "u")."""
    owner = {
        "apiVersion": R.API_VERSION,
        "kind": "ModelEndpoint",
        "name": "iris",
        "uid": "u",
        "controller": True,
    }
    md = {
        "name": "iris-canary-abc",
        "namespace": "team-a",
        "resourceVersion": "1",
        "ownerReferences": [owner],
    }
    body = {"type": "ClusterIP", "clusterIP": "10.96.0.17", "ports": [{"port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": md, "spec": body}


def cluster(check_runtime: bool = True, service: dict[str, Any] | None = None) -> Store:
    store = Store()
    store.upsert("Service", service or slot_service())
    store.upsert("ModelVersion", recorded_mv())
    spec = {"ioContract": {"checkRuntimeMetadata": check_runtime}}
    store.upsert(
        "Model",
        {
            "kind": "Model",
            "metadata": {"name": "iris", "namespace": "team-a", "resourceVersion": "1"},
            "spec": spec,
        },
    )
    return store


@pytest.mark.parametrize(
    ("answer", "state"),
    [(oip([-1, 4]), OK), (oip([-1, 5]), MISMATCH), (RuntimeUnanswered("answered 404"), PENDING)],
    ids=["match", "mismatch", "unanswered"],
)
def test_the_probe_asks_once_off_the_reconcile_and_keeps_the_answer(answer, state):
    store, probes = cluster(), Probes(answer)
    assert gather(store, probes).state == PENDING  # asked; the reconcile never waits
    assert probes.done.wait(5), "the finished read re-queues the endpoint"
    got = gather(store, probes)
    assert got.state == state
    assert probes.asked == [(HOST, 80, "iris")]  # the canary's own Service (spec.port), once
    assert probes.addresses == ["10.96.0.17"]  # at its cluster IP from the cache, never through DNS


@pytest.mark.parametrize(
    ("answer", "asked_again"),
    [(oip([-1, 4]), False), (RuntimeUnanswered("timeout"), True)],
    ids=["kept", "retried"],
)
def test_an_answer_is_kept_and_only_an_unanswered_one_is_asked_again(answer, asked_again):
    store, probes = cluster(), Probes(answer)
    gather(store, probes)
    assert probes.done.wait(5)
    probes.done.clear()
    probes.now += 11.0  # past RUNTIME_RECHECK_SECONDS
    got = gather(store, probes)
    if asked_again:  # asked again, meanwhile still held, saying what failed last
        assert got.state == PENDING and "timeout" in got.message and probes.done.wait(5)
        assert len(probes.asked) == 2
    else:  # a match is kept for the same slot and signature, never asked again
        assert got.state == OK and len(probes.asked) == 1


def test_nothing_is_asked_without_the_policy_or_before_the_slot_is_available():
    probes = Probes(oip([-1, 4]))
    assert gather(cluster(check_runtime=False), probes) is None
    assert gather(cluster(), None) is None
    waiting = gather(cluster(), probes, available=False)
    assert waiting is not None and waiting.state == PENDING and "slot" in waiting.message
    assert probes.asked == []


def _owned_by(uid: str, kind: str = "ModelEndpoint", controller: bool = True) -> dict[str, Any]:
    svc = slot_service()
    svc["metadata"]["ownerReferences"][0].update(uid=uid, kind=kind, controller=controller)
    return svc


@pytest.mark.parametrize(
    ("service", "why"),
    [
        (slot_service(type="ExternalName", externalName="evil.example.com", clusterIP=None), "not ClusterIP"),
        (slot_service(type="NodePort"), "not ClusterIP"),
        (slot_service(clusterIP="None"), "no cluster IP"),
        (slot_service(clusterIP="evil.example.com"), "no cluster IP"),
        (slot_service(clusterIP="127.0.0.1"), "not a unicast address"),
        (slot_service(clusterIP="169.254.169.254"), "not a unicast address"),
        (_owned_by("other"), "not controlled by this endpoint"),
        (_owned_by("u", kind="Deployment"), "not controlled by this endpoint"),
        (_owned_by("u", controller=False), "not controlled by this endpoint"),
    ],
    ids=["external-name", "node-port", "headless", "a-name", "loopback", "link-local", "other-owner",
         "other-kind", "not-controller"],
)  # fmt: skip
def test_only_the_cluster_ip_of_the_endpoints_own_clusterip_service_is_asked(service, why):
    probes = Probes(oip([-1, 4]))
    got = gather(cluster(service=service), probes)
    assert got is not None and got.state == PENDING and why in got.message
    assert probes.asked == []  # refused: nothing is asked
    with pytest.raises(RuntimeUnanswered, match=why):
        service_address(service, "iris-canary-abc", "team-a", "u")


def test_a_service_not_in_the_cache_or_another_object_is_refused():
    with pytest.raises(RuntimeUnanswered, match="not in the cache"):
        service_address(None, "iris-canary-abc", "team-a", "u")
    with pytest.raises(RuntimeUnanswered, match="another one"):
        service_address(slot_service(), "iris-canary-xyz", "team-a", "u")
    with pytest.raises(RuntimeUnanswered, match="not controlled"):
        service_address(slot_service(), "iris-canary-abc", "team-a", "")
    assert service_address(slot_service(), "iris-canary-abc", "team-a", "u") == "10.96.0.17"


def test_the_reader_connects_only_to_an_ip_address():
    with pytest.raises(RuntimeUnanswered, match="not an IP address"):
        model_metadata(HOST, 80, "iris", address="evil.example.com")


def test_remote_error_text_is_never_put_in_a_condition_beyond_a_sanitized_summary():
    evil = b"EVIL <script>\x1b[31m" + b"A" * 500 + b"\r\n\r\n"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(evil)

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        with pytest.raises(RuntimeUnanswered) as e:
            model_metadata(HOST, listener.getsockname()[1], "iris", address=LOOPBACK)
        t.join(5)
    assert "EVIL" not in str(e.value) and "AAAA" not in str(e.value)
    said = summary("a\nb\x1b[31m <x>" + "y" * 300)
    assert said.startswith("a b??31m ?x?") and len(said) == 120 and said.endswith("...")


def test_a_probe_never_keeps_more_than_a_summary_of_what_failed():
    store, probes = cluster(), Probes(RuntimeUnanswered("line one\nline two " + "z" * 1000))
    gather(store, probes)
    assert probes.done.wait(5)
    got = gather(store, probes)
    assert got is not None and "line one line two" in got.message and "\n" not in got.message
    assert len(got.message) < 320
