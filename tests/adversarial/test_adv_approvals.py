"""Issue 23, item 5: approvals were self-service and bound to the wrong thing.

Played as the hostile tenant would, end to end through the version reconciler's gather and decision
(the watch cache as the API server would fill it, ``ModelVersionReconciler.gather`` then
``domain.version_plan.decide``): a Model whose staging -> production hop needs approvals, a version in
staging asking for production. As landed, each attack below promoted the version: the requester or
the author approved it; ServiceAccounts counted as people; with admission off (or its binding deleted)
any string counted; an approval survived the version's re-creation with another image; the
platform's approver groups and pinned images were not looked at.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from admission_fixture import break_glass, enforce
from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.domain.approvals import serving_digest
from modelversioning.domain.version_plan import decide
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store

NS, MODEL, NAME = "team-a", "fraud", "fraud-v2.0.0"
SHA = "c" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)
BY = "modelversioning.io/requested-by"
IMAGE = "ghcr.io/acme/srv@sha256:" + "1" * 64


def _version(
    requester: str = "rick", author: str = "jane", image: str = IMAGE, uid: str = "u1"
) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "namespace": NS,
            "name": NAME,
            "uid": uid,
            "generation": 1,
            "resourceVersion": "1",
            "annotations": {BY: requester},
        },
        "spec": {
            "model": MODEL,
            "version": "2.0.0",
            "artifact": {"uri": "s3://b/fraud/2.0.0", "sha256": SHA},
            "lineage": {
                "codeRepository": "https://git.example.com/fraud",
                "codeCommit": "abc1234",
                "dataset": {"name": "d", "version": "1"},
                "trainedAt": "2025-12-01T00:00:00Z",
                "author": author,
                "framework": "xgboost",
            },
            "metrics": {"auc": 0.9},
            "runtime": {"image": image, "command": ["serve"]},
            "stage": "production",
        },
        "status": {
            "observedGeneration": 1,
            "stage": "staging",
            "history": [{"to": "candidate", "at": "t0", "reason": R.REGISTERED, "actor": "ci"}],
            "artifact": {"digest": SHA, "verifiedAt": "2026-01-01T00:00:00Z"},
            "conditions": [
                {
                    "type": "ArtifactVerified",
                    "status": "True",
                    "reason": R.VERIFIED,
                    "message": "sha256 matches",
                    "observedGeneration": 1,
                }
            ],
        },
    }


def _model(approvals: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "Model",
        "metadata": {"namespace": NS, "name": MODEL, "uid": "m", "generation": 1, "resourceVersion": "1"},
        "spec": {"transitions": [{"from": "staging", "to": "production", "approvals": approvals}]},
    }


def _approval(approver: str, served: str, groups: tuple[str, ...] = (), n: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelApproval",
        "metadata": {"namespace": NS, "name": f"a-{approver.replace(':', '-')}-{n}", "resourceVersion": "1"},
        "spec": {
            "model": MODEL,
            "version": "2.0.0",
            "sha256": SHA,
            "servingDigest": served,
            "stage": "production",
            "approver": approver,
            "approverGroups": list(groups),
        },
    }


def _policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelPlatformPolicy",
        "metadata": {"name": "platform", "resourceVersion": "1"},
        "spec": {"namespaceSelector": {}, **spec},
    }


def _world(version: dict[str, Any], approvals: int = 1, admission: bool = True) -> Store:
    store = Store()
    if admission:
        enforce(store)
    store.upsert("Namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    store.upsert("Model", _model(approvals))
    store.upsert("ModelVersion", version)
    return store


def _served(version: dict[str, Any]) -> str:
    return serving_digest(version["spec"])


def _decide(store: Store) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(stage decided, StageTransition, status) through the reconciler's own gather and decision."""
    r = ModelVersionReconciler(
        None,  # type: ignore[arg-type]  # gather and decide only: nothing is written
        store,
        Settings(),
        lambda *_a: None,  # type: ignore[arg-type,return-value]
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: None,
    )
    got = r.gather(NS, NAME)
    assert got is not None
    plan = decide(got.facts, r.policy, NOW)
    assert plan.status is not None
    st = next(c for c in plan.status["conditions"] if c["type"] == "StageTransition")
    return plan.status["stage"], st, plan.status


def test_an_honest_approval_promotes_and_the_serving_digest_is_recorded() -> None:
    mv = _version()
    store = _world(mv)
    store.upsert("ModelApproval", _approval("alice", _served(mv)))
    stage, _st, status = _decide(store)
    assert stage == "production" and status["servingDigest"] == _served(mv)


def test_the_requester_cannot_approve_their_own_stage_change() -> None:
    mv = _version(requester="mallory")
    store = _world(mv)
    store.upsert("ModelApproval", _approval("mallory", _served(mv)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and st["reason"] == R.APPROVAL_REQUIRED
    assert "mallory (self-approval by the requester)" in st["message"]


def test_the_author_cannot_approve_their_own_version() -> None:
    mv = _version(requester="rick", author="mallory")
    store = _world(mv)
    store.upsert("ModelApproval", _approval("mallory", _served(mv)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and "mallory (self-approval by the author)" in st["message"]


def test_service_accounts_are_not_people() -> None:
    mv = _version()
    store = _world(mv, approvals=2)
    for n in range(3):  # three ServiceAccounts the tenant made for the purpose
        store.upsert("ModelApproval", _approval(f"system:serviceaccount:{NS}:bot{n}", _served(mv), n=n))
    store.upsert("ModelApproval", _approval("alice", _served(mv)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and "has 1 (alice)" in st["message"]
    assert "is not a person" in st["message"]


def test_without_admission_observed_no_string_counts_and_break_glass_stops_them_at_once() -> None:
    mv = _version()
    store = _world(mv, admission=False)  # the chart value may say enforced; the cluster has no binding
    store.upsert("ModelApproval", _approval("alice", _served(mv)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and "not recorded by the API server" in st["message"]
    enforce(store)
    assert _decide(store)[0] == "production"
    break_glass(store, R.APPROVALS_POLICY)  # an admin deletes one binding: the next decision counts none
    assert _decide(store)[0] == "staging"
    enforce(store)
    break_glass(store, R.REQUESTED_BY_POLICY)  # requested-by untrusted: the requester is unknown
    stage, st, _ = _decide(store)
    assert stage == "staging" and "not recorded by the API server" in st["message"]


def test_an_approval_does_not_survive_re_creation_with_another_image() -> None:
    before = _version()
    store = _world(before)
    store.upsert("ModelApproval", _approval("alice", _served(before)))
    assert _decide(store)[0] == "production"
    # deleted and re-created under the same name, digest and version, serving another image
    after = _version(image="ghcr.io/mallory/backdoor@sha256:" + "6" * 64, uid="u2")
    store.upsert("ModelVersion", copy.deepcopy(after))
    stage, st, status = _decide(store)
    assert stage == "staging" and "for another serving digest" in st["message"]
    assert status["servingDigest"] == _served(after) != _served(before)


def test_the_platforms_approver_groups_are_required() -> None:
    mv = _version()
    store = _world(mv)
    store.upsert("ModelPlatformPolicy", _policy(approvals={"approverGroups": ["ml-leads"]}))
    store.upsert("ModelApproval", _approval("alice", _served(mv), groups=("devs",)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and "alice (not in the platform's approver groups)" in st["message"]
    store.upsert("ModelApproval", _approval("bob", _served(mv), groups=("devs", "ml-leads")))
    assert _decide(store)[0] == "production"


def test_an_unpinned_image_is_refused_past_the_platforms_stage() -> None:
    mv = _version(image="ghcr.io/acme/srv:latest")
    store = _world(mv)
    store.upsert("ModelPlatformPolicy", _policy(serving={"pinnedImagesFrom": "production"}))
    store.upsert("ModelApproval", _approval("alice", _served(mv)))
    stage, st, _ = _decide(store)
    assert stage == "staging" and (st["status"], st["reason"]) == ("False", R.IMAGE_NOT_PINNED)
    assert "ghcr.io/acme/srv:latest" in st["message"]
