"""The ModelVersion reconciler's gather and act around the pure plan: a fake API and a fake verifier,
the real Store. What is written, in which order, how often, and when the verifier is called."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.api.wire import IN_USE_FINALIZER
from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.domain.version_facts import VerifyResult
from modelversioning.domain.version_verify import FIRST_VERIFICATION_GRACE
from modelversioning.handlers.kube import Conflict, status_merge_patch
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue
from waits import PATIENCE, drain

SHA = "c" * 64
NS = "ns"


class FakeKube:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[str, Any]] = []

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        self.calls.append(("status", copy.deepcopy(status)))
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        # what the API server stores: the merge patch the real Kube sends, applied to what it holds
        body["status"] = apply_merge_patch(body.get("status") or {}, status_merge_patch(status, old))
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    def set_finalizers(self, res: Any, ns: str, name: str, finalizers: list[str], rv: str) -> None:
        self.calls.append(("finalizers", list(finalizers)))
        body = self.store.get(res.kind, ns, name)
        body["metadata"]["finalizers"] = finalizers
        self.store.upsert(res.kind, body)  # as the watch would show it

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", (type_, reason)))

    def annotate(self, res: Any, ns: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        self.calls.append(("annotate", dict(annotations)))
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        ann = body["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", obj["kind"]))
        md = obj["metadata"]
        if self.store.get(obj["kind"], md["namespace"], md["name"]) is not None:
            raise Conflict("exists")
        body = copy.deepcopy(obj)
        body["metadata"].update(uid="mu", generation=1, resourceVersion="1")
        self.store.upsert(obj["kind"], copy.deepcopy(body))  # as the watch shows it
        return body

    def read_secret(self, ns: str, name: str) -> dict[str, str]:
        raise AssertionError("no Secret is referenced")

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


class FakeVerifier:
    def __init__(self, *results: VerifyResult) -> None:
        self.results = list(results)
        self.calls = 0
        self.done = threading.Event()

    def __call__(self, uri: str, sha: str, secret: Any, size: int | None = None) -> VerifyResult:
        self.calls += 1
        r = self.results[min(self.calls, len(self.results)) - 1]
        return r


def mv(stage: str = "candidate") -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "namespace": NS,
            "name": "m-v1.0.0",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {
            "model": "m",
            "version": "1.0.0",
            "artifact": {"uri": "s3://b/m/1.0.0", "sha256": SHA},
            "lineage": {
                "codeRepository": "https://git.example.com/m.git",
                "codeCommit": "abc1234",
                "dataset": {"name": "d", "version": "1"},
                "trainedAt": "2024-07-02T10:00:00Z",
                "author": "a@example.com",
                "framework": "xgboost-2.0.3",
            },
            "metrics": {"auc": 0.9},
            "runtime": {"image": "img:1", "port": 8080},
            "stage": stage,
        },
    }


def reconciler(*results: VerifyResult, settings: Settings | None = None):
    store = Store()
    kube = FakeKube(store)
    verifier = FakeVerifier(*results)
    requeued: list[tuple[str, str]] = []
    notified: list[tuple[str, str]] = []
    r = ModelVersionReconciler(
        kube,  # type: ignore[arg-type]
        store,
        settings or Settings(),
        verifier,
        enqueue_endpoints=lambda ns, m: notified.append((ns, m)),
        requeue=lambda ns, n: requeued.append((ns, n)),
    )
    return store, kube, verifier, r, requeued, notified


def run(r: ModelVersionReconciler) -> Requeue | None:
    """One reconcile, then wait for a verification it started (the fake is instant), then the Model's
    reconcile (the registry records the version), as the watch queues it. Returns the Requeue the
    version asked for, if any (a first verification's grace, a transient failure's backoff)."""
    asked: Requeue | None = None
    try:
        r.reconcile(NS, "m-v1.0.0")
    except Requeue as rq:
        asked = rq
    drain(r.verifications.pool)  # the verification it started is done, and has requeued its object
    if r.store.get("Model", NS, "m") is not None:
        ModelReconciler(FakeKube(r.store), r.store, Settings(), lambda ns, m: None).reconcile(NS, "m")  # type: ignore[arg-type]
    return asked


OK = VerifyResult(R.VERIFIED, "sha256 matches", transient=False, actual=SHA, size_bytes=7)


def test_verifies_then_walks_to_production_writing_status_once_per_cycle():
    store, kube, verifier, r, requeued, notified = reconciler(OK)
    store.upsert("ModelVersion", mv("production"))
    grace = run(r)
    # a new version's first verification writes nothing while it may still finish within the grace;
    # its model has no Model: the operator creates one, the registry's record (recorded meanwhile),
    # and posts no Event about it (the Model's created-by annotation says it)
    assert kube.kinds() == ["create"] and verifier.calls == 1
    kube.calls.clear()
    assert grace is not None and grace.delay == pytest.approx(FIRST_VERIFICATION_GRACE, abs=0.5)
    assert requeued == [(NS, "m-v1.0.0")]  # the finished job asks for the next reconcile
    run(r)
    assert kube.kinds() == ["status", "event"]  # one status write: verified and promoted
    st = kube.calls[0][1]
    assert st["stage"] == "production" and st["artifact"]["digest"] == SHA
    assert kube.calls[1][1] == ("Normal", R.STAGE_CHANGED)  # one per walk, the verification said in it
    assert notified == [(NS, "m")]  # verified and promoted
    kube.calls.clear()
    run(r)  # idle: nothing to write, nothing fetched again
    assert kube.calls == [] and verifier.calls == 1


def test_a_permanent_failure_is_fetched_once_even_as_its_status_comes_back():
    refused = VerifyResult(R.URI_REFUSED, "s3 is not allowed", transient=False)
    store, kube, verifier, r, _, _ = reconciler(refused)
    store.upsert("ModelVersion", mv())
    for _ in range(4):
        run(r)
    assert verifier.calls == 1
    assert store.get("ModelVersion", NS, "m-v1.0.0")["status"]["conditions"][1]["reason"] == R.URI_REFUSED


def test_a_transient_failure_requeues_after_the_backoff():
    nf = VerifyResult(R.NOT_FOUND, "not there yet", transient=True)
    store, kube, verifier, r, _, _ = reconciler(nf, OK)
    store.upsert("ModelVersion", mv())
    run(r)
    rq = run(r)
    backoff = Settings().verification.retry_initial_seconds + 0.1
    assert rq is not None and rq.delay == pytest.approx(backoff, abs=0.5)
    st = store.get("ModelVersion", NS, "m-v1.0.0")["status"]
    # the status says what failed, never when the next attempt is (that is in the attempt's Event)
    assert st["conditions"][1]["message"] == "not there yet" and verifier.calls == 1
    assert kube.calls.count(("event", ("Warning", R.NOT_FOUND))) == 1  # the attempt's Event
    kube.calls.clear()
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")  # woken before the backoff is over: nothing new to say or write
    assert kube.calls == []


def test_the_in_use_finalizer_goes_on_before_the_status():
    store, kube, verifier, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv())
    store.upsert(
        "ModelEndpoint",
        {
            "metadata": {"namespace": NS, "name": "ep", "resourceVersion": "1"},
            "spec": {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}]},
        },
    )
    run(r)  # the finalizer at once (the first verification's grace defers only the status)
    run(r)
    assert kube.kinds()[:3] == ["create", "finalizers", "status"]
    assert kube.calls[1][1] == [IN_USE_FINALIZER]
    assert kube.calls[2][1]["servedBy"] == [{"endpoint": "ep", "variant": "a", "weight": 0}]


def test_a_deleted_object_is_forgotten():
    store, kube, verifier, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv())
    run(r)
    store.delete("ModelVersion", NS, "m-v1.0.0")
    run(r)
    assert r.verifications._attempts == {}


def test_a_rollout_grant_promotes_one_step_recorded_with_the_endpoint_as_actor():
    import json

    store, kube, _, r, _, _ = reconciler(OK)
    body = mv("staging")
    store.upsert("ModelVersion", body)
    run(r)
    run(r)  # verified, walked to staging
    assert [c[1] for c in kube.calls if c[0] == "status"][-1]["stage"] == "staging"
    grant = {"to": "production", "from": "staging", "specStage": "staging", "by": "ModelEndpoint/fraud",
             "reason": "rollout on fraud succeeded: errors=0.01 Passed"}  # fmt: skip
    record = {"endpoint": "fraud", "result": "Succeeded", "at": "2026-11-30T16:00:00Z", "message": "ok"}
    body = copy.deepcopy(store.get("ModelVersion", NS, "m-v1.0.0"))
    body["metadata"]["annotations"] = {
        "modelversioning.io/rollout-promotion": json.dumps(grant),
        "modelversioning.io/rollout-record": json.dumps(record),
    }
    body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 10)
    store.upsert("ModelVersion", body)
    kube.calls.clear()
    run(r)
    st = kube.calls[0][1]
    assert st["stage"] == "production"
    last = st["history"][-1]
    assert (last["from"], last["to"], last["actor"]) == ("staging", "production", "ModelEndpoint/fraud")
    assert "errors=0.01" in last["reason"]
    assert st["rollouts"] == [record]


def test_a_slow_first_verification_shows_verifying_once_the_grace_is_over(monkeypatch):
    import time as _time  # the module the reconciler's clock reads (time.monotonic)

    gate, began = threading.Event(), threading.Event()

    def slow(*_a: Any) -> VerifyResult:
        began.set()
        gate.wait(PATIENCE)
        return OK

    # the reconciler's clock stands still (before the attempt started) until the grace is over, so
    # "within the grace" does not depend on how fast this machine runs two reconciles
    real, frozen = _time.monotonic, _time.monotonic()
    monkeypatch.setattr(_time, "monotonic", lambda: frozen)
    store, kube, _, r, _, _ = reconciler(OK)
    r.verifications.verifier = slow
    store.upsert("ModelVersion", mv())
    try:
        with pytest.raises(Requeue):
            r.reconcile(NS, "m-v1.0.0")
        assert kube.kinds() == ["create"]  # the record is created; still within the grace
        kube.calls.clear()
        with pytest.raises(Requeue):  # looked at again while it runs, still within the grace: nothing yet
            r.reconcile(NS, "m-v1.0.0")
        assert kube.kinds() == []
        assert began.wait(PATIENCE)  # the grace counts from when a worker began the hash
        monkeypatch.setattr(_time, "monotonic", lambda: real() + FIRST_VERIFICATION_GRACE)
        r.reconcile(NS, "m-v1.0.0")  # the grace is over and it still runs: say so
        assert kube.kinds() == ["status"] and kube.calls[0][1]["conditions"][1]["reason"] == R.VERIFYING
    finally:
        gate.set()


# ---- deletion protection: the mark goes on before the status shows a stage past candidate -----------

PROTECTED = "modelversioning.io/deletion-protected"


def model(generation: int, **deletion: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"deletionPolicy": deletion} if deletion else {}
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "Model",
        "metadata": {
            "namespace": NS,
            "name": "m",
            "uid": "mu",
            "generation": generation,
            "resourceVersion": str(100 * generation),  # newer than the registry's status writes
        },
        "spec": spec,
    }


def test_a_version_of_a_model_is_marked_before_its_status_leaves_candidate_and_unmarked_when_allowed():
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("Model", model(1))
    store.upsert("ModelVersion", mv("production"))
    run(r)
    run(r)
    assert kube.kinds()[:2] == ["annotate", "status"], kube.calls
    want = "Model m: spec.deletionPolicy.allowPastCandidate is false"
    assert kube.calls[0][1] == {PROTECTED: want} and kube.calls[1][1]["stage"] == "production"
    assert store.get("ModelVersion", NS, "m-v1.0.0")["metadata"]["annotations"][PROTECTED] == want
    kube.calls.clear()
    run(r)
    assert "annotate" not in kube.kinds()  # marked already
    store.upsert("Model", model(2, allowPastCandidate=True))  # the policy allows deleting it now
    run(r)
    assert kube.calls[0] == ("annotate", {PROTECTED: None}), kube.calls
    assert PROTECTED not in store.get("ModelVersion", NS, "m-v1.0.0")["metadata"]["annotations"]


@pytest.mark.parametrize("protect", [False, True])
def test_versions_without_a_model_follow_the_operator_setting(protect: bool):
    settings = Settings.model_validate({"registry": {"protectVersionsWithoutModel": protect}})
    store, kube, _, r, _, _ = reconciler(OK, settings=settings)
    store.upsert("ModelVersion", mv("staging"))
    run(r)
    run(r)
    marks = [c[1] for c in kube.calls if c[0] == "annotate"]
    assert marks == (
        [{PROTECTED: "the operator setting registry.protectVersionsWithoutModel"}] if protect else []
    )


def test_an_invalid_model_keeps_the_mark_it_cannot_read_a_policy_for():
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("Model", model(1))
    store.upsert("ModelVersion", mv("staging"))
    run(r)
    run(r)
    bad = model(2)
    bad["spec"] = {"retention": {"archiveAfter": "soon"}}  # does not validate
    store.upsert("Model", bad)
    kube.calls.clear()
    run(r)
    assert "annotate" not in kube.kinds()


# ---- the registry remembers every version number, Model object or not -------------------------------


def test_a_number_reregistered_with_other_weights_without_a_model_is_refused_and_never_verified():
    store, kube, verifier, r, _, notified = reconciler(OK)
    store.upsert("ModelVersion", mv())
    run(r)
    run(r)
    assert store.get("ModelVersion", NS, "m-v1.0.0")["status"]["conditions"][1]["reason"] == R.VERIFIED
    record = store.get("Model", NS, "m")
    assert record["metadata"]["annotations"] == {R.CREATED_BY_ANNOTATION: R.CREATED_BY_OPERATOR}
    assert record["spec"] == {} and record["status"]["versions"][0]["digest"] == SHA
    store.delete("ModelVersion", NS, "m-v1.0.0")  # deleted, and registered again with other weights
    again = mv()
    again["metadata"].update(uid="u2", resourceVersion="50")
    again["spec"]["artifact"] = {"uri": "s3://b/other", "sha256": "d" * 64}
    store.upsert("ModelVersion", again)
    kube.calls.clear()
    for _ in range(3):
        run(r)
    st = store.get("ModelVersion", NS, "m-v1.0.0")["status"]
    vc = next(c for c in st["conditions"] if c["type"] == "ArtifactVerified")
    assert (vc["status"], vc["reason"]) == ("False", R.VERSION_REUSED)
    assert ("event", ("Warning", R.VERSION_REUSED)) in kube.calls
    assert "create" not in kube.kinds()  # the record exists: it is never created twice
    assert verifier.calls == 1  # the other weights are not even fetched
    # the endpoint's eligibility reads ArtifactVerified: False, and VersionReused gets no slot
    assert R.VERSION_REUSED in R.NO_SLOT


def test_a_record_someone_else_created_meanwhile_is_fine():
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv())

    def taken(obj: dict[str, Any]) -> dict[str, Any]:
        kube.calls.append(("create", obj["kind"]))
        raise Conflict("409")

    kube.create = taken  # type: ignore[method-assign]
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")
    assert kube.kinds() == ["create"]  # no Event, no error: the Model's watch brings it


def test_a_gitops_apply_of_the_model_adopts_the_record_and_the_operator_never_writes_its_spec():
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv("staging"))
    run(r)
    run(r)
    created = store.get("Model", NS, "m")
    # kubectl apply / server-side apply of a Model of that name: spec is the user's, status (the record)
    # is a subresource an apply does not touch
    adopted = copy.deepcopy(created)
    adopted["metadata"].update(generation=2, resourceVersion="500")
    adopted["spec"] = {"description": "ours now", "deletionPolicy": {"allowPastCandidate": False}}
    store.upsert("Model", adopted)
    mkube = FakeKube(store)
    ModelReconciler(mkube, store, Settings(), lambda ns, m: None).reconcile(NS, "m")  # type: ignore[arg-type]
    assert [k for k, _ in mkube.calls] == ["status"]  # its status only, never its spec
    model = store.get("Model", NS, "m")
    assert model["spec"] == adopted["spec"]
    assert [(v["version"], v["digest"]) for v in model["status"]["versions"]] == [("1.0.0", SHA)]
    kube.calls.clear()
    run(r)
    assert "create" not in kube.kinds()
    # the user's policy rules now: the version past candidate is protected by it
    assert ("annotate", {PROTECTED: "Model m: spec.deletionPolicy.allowPastCandidate is false"}) in kube.calls


def test_an_operator_created_model_protects_versions_as_the_operator_setting_says():
    """The default policy of a record nobody has given a spec: as without a Model (the setting)."""
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv("staging"))
    run(r)
    run(r)
    run(r)
    assert store.get("ModelVersion", NS, "m-v1.0.0")["status"]["stage"] == "staging"
    assert "annotate" not in kube.kinds()  # registry.protectVersionsWithoutModel is off by default


def test_every_failed_attempt_is_one_event_and_no_status_write():
    nf = VerifyResult(R.NOT_FOUND, "not there yet", transient=True)
    settings = Settings.model_validate({"verification": {"retryInitialSeconds": 0.0, "retryMaxSeconds": 0.0}})
    store, kube, verifier, r, _, _ = reconciler(nf, settings=settings)
    store.upsert("ModelVersion", mv())
    run(r)  # creates the record, starts the first attempt
    run(r)  # the first failure: the status says so; the next attempt starts at once (no backoff)
    kube.calls.clear()
    for _ in range(3):
        run(r)  # each: one failed attempt harvested, another started
    assert verifier.calls == 5
    assert kube.calls == [("event", ("Warning", R.NOT_FOUND))] * 3  # one Event per attempt, no status


# ---- the production record (handlers.production around domain.production) ----------------------


class FakePrometheus:
    """query / query_vector as analysis.prometheus.PrometheusClient answers them (or fails)."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.asked: list[str] = []

    def query(self, promql: str, at: float | None = None) -> float:
        from modelversioning.analysis.prometheus import Inconclusive

        self.asked.append(promql)
        if self.down:
            raise Inconclusive("Prometheus unreachable: ConnectionRefusedError")
        return 3.0 if "5.." in promql else 200.0

    def query_vector(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        self.asked.append(promql)
        return [({"le": "0.1"}, 150.0), ({"le": "0.3"}, 200.0), ({"le": "+Inf"}, 200.0)]


_RV = iter(range(10, 10_000))


def serving_endpoint(weight: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NS, "name": "ep", "resourceVersion": str(next(_RV))},
        "spec": {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}]},
        "status": {
            "effectiveWeights": {"a": weight},
            "variants": [
                {
                    "name": "a",
                    "version": "1.0.0",
                    "desiredWeight": 100,
                    "effectiveWeight": weight,
                    "serving": {
                        "version": "1.0.0",
                        "modelVersionUid": "u1",
                        "digest": SHA,
                        "slot": "ep-a-0a1b2c3d4e",
                    },
                }
            ],
        },
    }


def recording(prom: FakePrometheus):
    from modelversioning.analysis.pool import AnalysisPool

    settings = Settings.model_validate(
        {"analysis": {"prometheusUrl": "http://prometheus.invalid:9090"}, "production": {"settleSeconds": 0}}
    )
    store, kube, verifier, r, requeued, _ = reconciler(OK, settings=settings)
    r.production.pool = AnalysisPool(workers=0)  # jobs run in this thread, on run_queued
    r.production.client = prom  # type: ignore[assignment]
    store.upsert("ModelVersion", mv("production"))
    store.upsert("ModelEndpoint", serving_endpoint(100))
    run(r)
    run(r)  # verified, serving: a period opens, nothing measured before the interval
    return store, kube, r, requeued


def period_of(store: Store) -> dict[str, Any]:
    (p,) = store.get("ModelVersion", NS, "m-v1.0.0")["status"]["servingHistory"]
    return p


def reconcile_quietly(r: ModelVersionReconciler) -> Requeue | None:
    try:
        r.reconcile(NS, "m-v1.0.0")
    except Requeue as rq:
        return rq
    return None


def test_a_closed_period_is_summarised_once_from_the_pool_then_nothing_more_is_written():
    prom = FakePrometheus()
    store, kube, r, requeued = recording(prom)
    p = period_of(store)
    assert p["slots"] == ["ep-a-0a1b2c3d4e"] and "to" not in p and "production" not in p
    assert r.production.pool.queued() == 0 and prom.asked == []  # open, younger than the interval
    store.upsert("ModelEndpoint", serving_endpoint(0))  # the route moved away: the period closes
    kube.calls.clear()
    reconcile_quietly(r)  # closes the period and submits its last segment (never queries here)
    assert prom.asked == [] and r.production.pool.queued() == 1
    assert kube.kinds() == ["status"] and "production" not in period_of(store)
    requeued.clear()
    assert r.production.pool.run_queued() == 1
    assert requeued == [(NS, "m-v1.0.0")]  # the finished job re-queues the version
    assert all('namespace="ns"' in q or "svc-ns-(ep-a-0a1b2c3d4e)" in q for q in prom.asked)
    kube.calls.clear()
    assert reconcile_quietly(r) is None  # final: nothing to look at again
    assert kube.kinds() == ["status"]
    summary = period_of(store)["production"]
    assert (summary["requests"], summary["errors"], summary["errorRatio"], summary["final"]) == (
        200,
        3,
        0.015,
        True,
    )
    assert summary["latencyP50Seconds"] == pytest.approx(0.0667, abs=1e-3) and summary["source"] == "traefik"
    kube.calls.clear()
    asked = len(prom.asked)
    for _ in range(3):  # idle: nothing serving, every period final: no query, no write, no requeue
        assert reconcile_quietly(r) is None
    assert kube.calls == [] and len(prom.asked) == asked and r.production.pool.queued() == 0


def test_prometheus_down_is_incomplete_never_zero_and_retried_later():
    prom = FakePrometheus(down=True)
    store, kube, r, _ = recording(prom)
    store.upsert("ModelEndpoint", serving_endpoint(0))
    reconcile_quietly(r)
    r.production.pool.run_queued()
    kube.calls.clear()
    rq = reconcile_quietly(r)
    summary = period_of(store)["production"]
    assert summary["incomplete"] == "traefik: Prometheus unreachable: ConnectionRefusedError"
    assert "requests" not in summary and "errorRatio" not in summary and not summary.get("final")
    assert rq is not None and 0 < rq.delay <= Settings().production.retry_seconds  # retried later
    assert r.production.pool.queued() == 0  # not before the retry delay
    kube.calls.clear()
    assert reconcile_quietly(r) is not None and kube.calls == []  # the same answer: no second write
    prom.down = False
    r.production.clock = lambda: 1e12  # the retry delay has passed
    reconcile_quietly(r)
    r.production.pool.run_queued()
    reconcile_quietly(r)
    summary = period_of(store)["production"]
    assert (summary["requests"], summary.get("incomplete"), summary["final"]) == (200, None, True)


def test_without_prometheus_the_record_is_off_and_costs_nothing():
    store, kube, _, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", mv("production"))
    store.upsert("ModelEndpoint", serving_endpoint(100))
    run(r)
    run(r)
    store.upsert("ModelEndpoint", serving_endpoint(0))
    reconcile_quietly(r)
    assert r.production.pool is None and "production" not in period_of(store)
    kube.calls.clear()
    assert reconcile_quietly(r) is None and kube.calls == []


@pytest.mark.parametrize(
    ("production", "stage", "reason", "says"),
    [
        (
            {"requests": 1000, "errors": 50, "errorRatio": 0.05},
            "staging",
            R.METRIC_GATE_FAILED,
            "0.05 > 0.01",
        ),
        (
            {"requests": 40, "errors": 0, "errorRatio": 0.0},
            "staging",
            R.PRODUCTION_RECORD_INCOMPLETE,
            "40 < 100",
        ),
        (
            {"incomplete": "traefik: Prometheus unreachable"},
            "staging",
            R.PRODUCTION_RECORD_INCOMPLETE,
            "unreachable",
        ),
        ({"requests": 1000, "errors": 2, "errorRatio": 0.002}, "production", R.IN_EFFECT, ""),
    ],
)
def test_a_served_gate_reads_the_versions_own_production_record(production, stage, reason, says):
    store, kube, _, r, _, _ = reconciler(OK)
    body = mv("production")
    period = {"endpoint": "ep", "variant": "a", "from": "2026-12-01T10:00:00Z", "to": "2026-12-01T11:00:00Z"}
    body["status"] = {
        "servingHistory": [{**period, "production": {"source": "traefik", "final": True, **production}}]
    }
    store.upsert("ModelVersion", body)
    gate = "served.errorRatio <= 0.01 over 100 requests"
    transitions = [
        {"from": "candidate", "to": "staging"},
        {"from": "staging", "to": "production", "metrics": [gate]},
    ]
    store.upsert(
        "Model",
        {
            "metadata": {"namespace": NS, "name": "m", "resourceVersion": "1"},
            "spec": {"transitions": transitions},
        },
    )
    run(r)
    run(r)
    run(r)
    st = store.get("ModelVersion", NS, "m-v1.0.0")["status"]
    cond = next(c for c in st["conditions"] if c["type"] == "StageTransition")
    assert (st["stage"], cond["reason"]) == (stage, reason)
    assert says in cond["message"]


def test_versions_of_one_model_reconciled_at_once_create_its_model_once():
    """The fleet benchmark's five versions per model, reconciled at once by several workers, made
    5,342 creates for 2,000 Models (3,342 answered 409, each a write through admission)."""
    import threading

    store, kube, _, r, _, _ = reconciler(OK)
    release, entered = threading.Event(), threading.Event()
    creates: list[str] = []
    plain_create = kube.create

    def slow_create(obj: dict[str, Any]) -> dict[str, Any]:
        creates.append(obj["metadata"]["name"])
        entered.set()
        assert release.wait(10)
        return plain_create(obj)

    kube.create = slow_create  # type: ignore[method-assign]
    first = threading.Thread(target=r._create_model, args=(mv(), "m"))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=r._create_model, args=(mv(), "m")) for _ in range(4)]
    for t in others:
        t.start()
    for t in others:
        t.join(10)  # they return at once: the Model is being created
    assert all(not t.is_alive() for t in others) and creates == ["m"]
    release.set()
    first.join(10)
    assert store.get("Model", NS, "m") is not None
    r._create_model(mv(), "m")  # cached now: no create either
    assert creates == ["m"]


def test_a_verification_waiting_for_a_worker_is_not_running_yet() -> None:
    """The grace of a first verification counts from when a worker began it (issue #25: a burst of
    new versions of one namespace queues behind its one worker): the bookkeeping tells the two apart."""
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.api.settings import Verification
    from modelversioning.handlers.verification import Verifications

    release, began = threading.Event(), threading.Event()

    def verifier(uri: str, sha: str, secret: Any, size: int | None = None) -> VerifyResult:
        began.set()
        release.wait(PATIENCE)
        return VerifyResult(R.VERIFIED, "ok", transient=False, actual=sha)

    v = Verifications(None, verifier, lambda ns, n: None, Verification(workers=2, per_namespace=1))  # type: ignore[arg-type]
    spec = ModelVersionSpec.model_validate(mv()["spec"])
    try:
        v.start((NS, "a"), "ua", 1, "m", spec)
        assert began.wait(PATIENCE)
        v.start((NS, "b"), "ub", 1, "m", spec)  # the namespace's one worker is busy: b waits
        threading.Event().wait(0.05)
        a, b = v.facts((NS, "a"), "ua"), v.facts((NS, "b"), "ub")
        assert a.running and a.running_for > 0 and a.waited_for >= a.running_for
        assert b.running and b.running_for == 0.0 and b.waited_for >= 0.05
    finally:
        release.set()
        drain(v.pool)
