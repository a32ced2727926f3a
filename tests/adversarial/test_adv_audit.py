"""Issue 14, finding 6 (the operator's side): the history's actor must be the authenticated user.

The chart's requested-by policy (files/admission/requested-by.yaml; e2e/test_adversarial.py runs it
on the real API server) makes every stage change by anyone but the operator carry
``modelversioning.io/requested-by`` == the user the API server authenticated. With the policy enforced
(observed in the cluster: its binding denies; handlers.admission) the operator records that annotation and
nothing else: as landed, a stage change without it recorded the field manager that last wrote
``spec.stage``, a name the client chooses (``kubectl ... --field-manager=ceo@example.com``, or a
later server-side apply of the same value)."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from admission_fixture import enforce
from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.domain.version_facts import VerifyResult
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store
from modelversioning.handlers.version_annotations import UNATTRIBUTED, stage_actor
from modelversioning.handlers.workqueue import Requeue
from waits import drain

SHA = "c" * 64
NS = "ns"
FORGED = [
    {
        "manager": "ceo@example.com",  # kubectl patch --field-manager=ceo@example.com
        "operation": "Update",
        "apiVersion": "modelversioning.io/v1alpha1",
        "time": "2024-01-02T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:stage": {}}},
    }
]
BY = "modelversioning.io/requested-by"
FOR = "modelversioning.io/requested-stage"


def _mv(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations or {}, "managedFields": copy.deepcopy(FORGED)}}


def test_a_forged_field_manager_is_never_the_actor_when_the_policy_is_enforced() -> None:
    assert stage_actor(_mv(), "production", enforced=True) == UNATTRIBUTED
    assert "ceo" not in UNATTRIBUTED
    # an annotation left from another stage does not name who asked for this one
    assert stage_actor(_mv({BY: "bob", FOR: "staging"}), "production", enforced=True) == UNATTRIBUTED
    assert stage_actor(_mv({BY: "bob", FOR: "production"}), "production", enforced=True) == "bob"
    assert stage_actor(_mv({BY: "bob"}), "staging", enforced=True) == "bob"
    # without the policy the name is still shown, marked for what it is
    assert stage_actor(_mv(), "production") == "ceo@example.com (update; unverified field manager)"


class _Kube:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.statuses: list[dict[str, Any]] = []

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        self.statuses.append(copy.deepcopy(status))
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        body["status"] = status
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        pass


def _version(stage: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "namespace": NS,
            "name": "m-v1.0.0",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": "1",
            "annotations": annotations,
            "managedFields": copy.deepcopy(FORGED),
        },
        "spec": {
            "model": "m",
            "version": "1.0.0",
            "artifact": {"uri": "s3://b/m/1.0.0", "sha256": SHA},
            "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
            "metrics": {"auc": 0.9},
            "runtime": {"image": "img:1", "port": 8080},
            "stage": stage,
        },
    }


def _history(enforced: bool, annotations: dict[str, str]) -> list[dict[str, Any]]:
    store = Store()
    kube = _Kube(store)
    ok = VerifyResult(R.VERIFIED, "sha256 matches", transient=False, actual=SHA, size_bytes=7)
    r = ModelVersionReconciler(
        kube,  # type: ignore[arg-type]
        store,
        Settings(),
        lambda *_a: ok,
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: None,
    )
    if enforced:  # the cluster's bindings, never a setting
        enforce(store)
    store.upsert("ModelVersion", _version("staging", annotations))
    store.upsert(  # the registry's record of the version, as the operator creates it
        "Model",
        {
            "metadata": {
                "namespace": NS,
                "name": "m",
                "uid": "mu",
                "resourceVersion": "1",
                "annotations": {R.CREATED_BY_ANNOTATION: R.CREATED_BY_OPERATOR},  # default policy
            },
            "spec": {},
            "status": {"versions": [{"version": "1.0.0", "digest": SHA}]},
        },
    )
    for _ in range(2):  # the first verification's grace, then the walk
        with contextlib.suppress(Requeue):
            r.reconcile(NS, "m-v1.0.0")
        drain(r.verifications.pool)  # the verification is done and has requeued its object
    assert kube.statuses, "nothing was written"
    return list(kube.statuses[-1]["history"])


def test_the_reconciler_records_the_annotation_or_nobody_when_enforced() -> None:
    hist = _history(True, {})
    assert [(h.get("from"), h["to"], h["actor"]) for h in hist] == [
        (None, "candidate", UNATTRIBUTED),
        ("candidate", "staging", UNATTRIBUTED),
    ]
    hist = _history(True, {BY: "bob@example.com", FOR: "staging"})
    assert {h["actor"] for h in hist} == {"bob@example.com"}
    # the observed bindings are what tell them apart: without them (admission disabled, or a binding
    # deleted as break-glass) the forged name, marked for what it is; requested-by too
    assert _history(False, {})[-1]["actor"] == "ceo@example.com (update; unverified field manager)"
    unverified = _history(False, {BY: "bob@example.com", FOR: "staging"})
    assert {h["actor"] for h in unverified} == {"bob@example.com (unverified requested-by)"}
