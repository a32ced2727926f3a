"""The ModelVersion reconciler's writes that issue #25 cut, with the fakes of
test_modelversion_reconciler.py: a new version's one status write once verified and recorded, and the
in-use protection by the status.servedBy record while the chart's in-use admission policy is enforced."""

from __future__ import annotations

import pytest

from admission_fixture import break_glass, enforce
from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.api.wire import IN_USE_FINALIZER
from modelversioning.domain.version_verify import QUIET_LIMIT, RECORD_GRACE
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.workqueue import Requeue
from test_modelversion_reconciler import NS, OK, FakeKube, mv, reconciler, run
from waits import drain


def test_a_verified_version_waits_for_the_record_and_then_writes_its_status_once():
    store, kube, _, r, _, notified = reconciler(OK)
    store.upsert("ModelVersion", mv("production"))
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")  # creates the record; the Model reconcile has not run yet
    drain(r.verifications.pool)
    with pytest.raises(Requeue) as rq:
        r.reconcile(NS, "m-v1.0.0")  # verified, but not recorded: nothing says it is verified yet
    assert "status" not in kube.kinds() and "status" not in store.get("ModelVersion", NS, "m-v1.0.0")
    assert 0 < rq.value.delay <= QUIET_LIMIT  # its Model exists (created above): its reconcile is due
    ModelReconciler(FakeKube(store), store, Settings(), lambda ns, m: None).reconcile(NS, "m")  # type: ignore[arg-type]
    r.reconcile(NS, "m-v1.0.0")  # the Model's status change wakes it: one write, verified and walked
    assert kube.kinds().count("status") == 1
    st = store.get("ModelVersion", NS, "m-v1.0.0")["status"]
    vc = st["conditions"][1]
    assert (vc["status"], vc["reason"], st["stage"]) == ("True", R.VERIFIED, "production")
    assert notified == [(NS, "m")]


def test_a_record_that_does_not_come_within_the_quiet_limit_is_waited_for_in_the_status(monkeypatch):
    import time as _time  # the module the verifier's bookkeeping reads (time.monotonic)

    store, kube, _, r, _, notified = reconciler(OK)
    store.upsert("ModelVersion", mv("production"))
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")
    drain(r.verifications.pool)
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")  # verified, not recorded, within the grace: nothing written
    assert "status" not in kube.kinds()
    real = _time.monotonic
    monkeypatch.setattr(_time, "monotonic", lambda: real() + RECORD_GRACE)  # its Model's reconcile is late
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")  # the Model exists: its reconcile is queued, still nothing written
    assert "status" not in kube.kinds()
    monkeypatch.setattr(_time, "monotonic", lambda: real() + QUIET_LIMIT)  # the limit is reached
    with pytest.raises(Requeue):
        r.reconcile(NS, "m-v1.0.0")  # still not recorded: it says so, and is not verified yet
    st = store.get("ModelVersion", NS, "m-v1.0.0")["status"]
    vc = st["conditions"][1]
    assert (vc["status"], vc["reason"], st["stage"]) == ("Unknown", R.RECORD_PENDING, "candidate")
    notified.clear()
    ModelReconciler(FakeKube(store), store, Settings(), lambda ns, m: None).reconcile(NS, "m")  # type: ignore[arg-type]
    r.reconcile(NS, "m-v1.0.0")  # the Model's status change wakes it
    vc = store.get("ModelVersion", NS, "m-v1.0.0")["status"]["conditions"][1]
    assert (vc["status"], vc["reason"]) == ("True", R.VERIFIED) and notified == [(NS, "m")]


def test_with_the_in_use_policy_enforced_the_servedby_record_is_the_protection():
    """Issue #25: while the operator observes the chart's in-use policy bound and denying, a served
    version gets no finalizer (its status.servedBy is what the API server checks); break-glass (the
    binding deleted) brings the finalizer back at the next reconcile."""
    store, kube, verifier, r, _, _ = reconciler(OK)
    enforce(store, (R.IN_USE_POLICY,))
    store.upsert("ModelVersion", mv())
    store.upsert(
        "ModelEndpoint",
        {
            "metadata": {"namespace": NS, "name": "ep", "resourceVersion": "1"},
            "spec": {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}]},
        },
    )
    run(r)
    run(r)
    assert "finalizers" not in kube.kinds()
    (status,) = [c[1] for c in kube.calls if c[0] == "status"]  # verified with its record, in one write
    assert status["servedBy"] == [{"endpoint": "ep", "variant": "a", "weight": 0}]
    break_glass(store, R.IN_USE_POLICY)
    kube.calls.clear()
    run(r)
    assert kube.calls == [("finalizers", [IN_USE_FINALIZER])]
