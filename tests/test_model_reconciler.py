"""The Model reconciler's act around the pure retention plan: a fake API, the real Store. A reconcile
that runs again before the watch shows its own writes must not order the same thing twice."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.api.wire import ARCHIVE_ANNOTATION, ARTIFACT_DELETED_ANNOTATION
from modelversioning.artifacts.delete import DeleteResult
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.model_delete import DeletionJobs
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue

NS = "ns"


class FakeKube:
    """Writes land in the API (`objects`), never in the Store: the watch is late."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[str, str]] = []

    def annotate(self, res: Any, ns: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        self.calls.append(("annotate", name))
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        body["metadata"].setdefault("annotations", {}).update(annotations)
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        self.calls.append(("status", name))
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        body["status"] = status
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))


def world() -> tuple[Store, FakeKube, ModelReconciler]:
    store = Store()
    store.upsert(
        "Model",
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "m", "namespace": NS, "uid": "mu", "generation": 1, "resourceVersion": "10"},
            "spec": {"retention": {"archiveAfter": "30d", "keepPreviousProduction": 0}},
        },
    )
    store.upsert(
        "ModelVersion",
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {
                "name": "m-v1.0.0",
                "namespace": NS,
                "uid": "u1",
                "generation": 1,
                "resourceVersion": "20",
                "creationTimestamp": "2020-01-01T00:00:00Z",
            },
            "spec": {
                "model": "m",
                "version": "1.0.0",
                "stage": "staging",
                "artifact": {"uri": "s3://b/m/1.0.0", "sha256": "c" * 64},
            },
            "status": {"stage": "staging"},
        },
    )
    kube = FakeKube(store)
    r = ModelReconciler(kube, store, Settings(), enqueue_versions=lambda ns, m: None)  # type: ignore[arg-type]
    return store, kube, r


def test_a_second_reconcile_before_the_watch_does_not_order_the_archive_again() -> None:
    store, kube, r = world()
    r.reconcile(NS, "m")
    r.reconcile(NS, "m")  # e.g. woken by another version's status, before the watch shows the annotation
    assert kube.calls.count(("annotate", "m-v1.0.0")) == 1, kube.calls
    assert kube.calls.count(("event", R.ARCHIVE_DUE)) == 1, kube.calls
    ann = store.get("ModelVersion", NS, "m-v1.0.0")["metadata"]["annotations"]
    assert ARCHIVE_ANNOTATION in ann
    assert not store.is_observed("ModelVersion", NS, "m-v1.0.0")  # cached as written, not yet watched


# ---- artifact deletion: dry run, and the operator-wide switch off ---------------------------------


POLICY = {
    "apiVersion": "modelversioning.io/v1alpha1",
    "kind": "ModelPlatformPolicy",
    "metadata": {"name": "platform", "uid": "pu", "resourceVersion": "1"},
    "spec": {"retention": {"storageRoots": ["s3://b/"]}},
}


def due_world(
    mode: str, allow: bool, policy: bool = True
) -> tuple[Store, FakeKube, ModelReconciler, list[str]]:
    """Two archived, verified versions whose artifacts are due for deletion (out of production since
    2020), under the storage root s3://b/ a ModelPlatformPolicy names (``policy``)."""
    store = Store()
    if policy:
        store.upsert("ModelPlatformPolicy", copy.deepcopy(POLICY))
    store.upsert(
        "Model",
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "m", "namespace": NS, "uid": "mu", "generation": 1, "resourceVersion": "10"},
            "spec": {
                "retention": {
                    "deleteArtifactsAfter": "30d",
                    "keepPreviousProduction": 0,
                    "artifactDeletion": mode,
                }
            },
        },
    )
    for i, v in enumerate(("1.0.0", "1.1.0")):
        store.upsert(
            "ModelVersion",
            {
                "apiVersion": "modelversioning.io/v1alpha1",
                "kind": "ModelVersion",
                "metadata": {
                    "name": f"m-v{v}",
                    "namespace": NS,
                    "uid": f"u{i}",
                    "generation": 1,
                    "resourceVersion": str(20 + i),
                    "creationTimestamp": "2020-01-01T00:00:00Z",
                },
                "spec": {
                    "model": "m",
                    "version": v,
                    "stage": "archived",
                    "artifact": {"uri": f"s3://b/m/{v}", "sha256": str(i) * 64},
                },
                "status": {
                    "stage": "archived",
                    "artifact": {
                        "digest": str(i) * 64,
                        "sizeBytes": 3,
                        "files": 1,
                        "verifiedAt": "2020-01-01T00:00:00Z",
                    },
                    "conditions": [{"type": "ArtifactVerified", "status": "True", "reason": "Verified"}],
                    "history": [
                        {"to": "candidate", "at": "2020-01-01T00:00:00Z"},
                        {"from": "candidate", "to": "archived", "at": "2020-01-02T00:00:00Z"},
                    ],
                },
            },
        )
    kube = FakeKube(store)
    deleted: list[str] = []

    def deleter(uri: str, sha256: str, *, dry_run: bool, **kw: Any) -> Any:
        if not dry_run:
            deleted.append(uri)
        return DeleteResult(True, "hashes to the verified sha256", objects=("w.bin",), count=1)

    settings = Settings.model_validate({"registry": {"allowArtifactDeletion": allow}})
    r = ModelReconciler(kube, store, settings, enqueue_versions=lambda ns, m: None, deleter=deleter)  # type: ignore[arg-type]
    return store, kube, r, deleted


def events_of(kube: FakeKube) -> list[str]:
    return [reason for call, reason in kube.calls if call == "event"]


@pytest.mark.parametrize(
    "mode,allow,says",
    [
        ("DryRun", True, "dry run: would delete the artifact of m-v"),
        ("DryRun", True, "under s3://b/, 1 objects: w.bin"),
        ("Enabled", False, "dry run (the operator setting registry.allowArtifactDeletion is off)"),
    ],
)
def test_a_dry_run_reports_each_due_deletion_once_and_deletes_nothing(
    mode: str, allow: bool, says: str
) -> None:
    store, kube, r, deleted = due_world(mode, allow)
    posted: list[tuple[str, str]] = []
    kube.event = lambda body, t, reason, msg: posted.append((reason, msg))  # type: ignore[method-assign]
    r.reconcile(NS, "m")
    assert deleted == []
    assert [reason for reason, _ in posted] == [R.ARTIFACT_DELETE_DUE, R.ARTIFACT_DELETE_DUE], posted
    assert all(says in msg for _, msg in posted), posted
    assert sorted(n for _, msg in posted for n in ("m-v1.0.0", "m-v1.1.0") if n in msg) == [
        "m-v1.0.0",
        "m-v1.1.0",
    ]
    status = store.get("Model", NS, "m")["status"]
    assert status["pendingDeletions"] == ["1.0.0", "1.1.0"]
    assert [rec["artifact"] for rec in status["versions"]] == ["Present", "Present"]
    ann = [
        store.get("ModelVersion", NS, f"m-v{v}")["metadata"].get("annotations") or {}
        for v in ("1.0.0", "1.1.0")
    ]
    assert all(ARTIFACT_DELETED_ANNOTATION not in a for a in ann)
    r.reconcile(NS, "m")  # due again: no second Event, still pending
    assert len(posted) == 2 and deleted == []
    assert store.get("Model", NS, "m")["status"]["pendingDeletions"] == ["1.0.0", "1.1.0"]


def test_deletion_disabled_reports_nothing_pending() -> None:
    store, kube, r, deleted = due_world("Disabled", True)
    r.reconcile(NS, "m")
    assert deleted == [] and R.ARTIFACT_DELETE_DUE not in events_of(kube)
    assert "pendingDeletions" not in store.get("Model", NS, "m")["status"]


# ---- artifact deletion allowed: what act executes -------------------------------------------------


def allowed_world() -> tuple[
    Store, FakeKube, ModelReconciler, list[tuple[str, Any]], list[tuple[str, str, str]]
]:
    store, kube, r, _ = due_world("Enabled", True)
    calls: list[tuple[str, Any]] = []
    posted: list[tuple[str, str, str]] = []  # (object, type, reason)

    def deleter(uri: str, sha256: str, *, secret_data: Any, dry_run: bool, **kw: Any) -> DeleteResult:
        assert (
            not dry_run
            and sha256 == ("0" if uri.endswith("1.0.0") else "1") * 64
            and kw["expected_files"] == 1
        )
        calls.append((uri, secret_data))
        return DeleteResult(True, f"{uri} deleted", objects=("w.bin",), count=1)

    r.deleter = deleter
    kube.event = lambda body, t, reason, msg: posted.append((body["metadata"]["name"], t, reason))  # type: ignore[method-assign]
    return store, kube, r, calls, posted


def test_an_allowed_deletion_runs_once_records_it_and_reads_its_own_write() -> None:
    store, kube, r, calls, posted = allowed_world()
    r.reconcile(NS, "m")
    assert calls == [("s3://b/m/1.0.0", None), ("s3://b/m/1.1.0", None)]
    assert posted == [
        (obj, "Normal", R.ARTIFACT_DELETED) for v in ("1.0.0", "1.1.0") for obj in ("m", f"m-v{v}")
    ]
    for v in ("1.0.0", "1.1.0"):
        mv = store.get("ModelVersion", NS, f"m-v{v}")
        value = json.loads(mv["metadata"]["annotations"][ARTIFACT_DELETED_ANNOTATION])
        assert value["by"] == "Retention (Model m)" and value["uri"] == f"s3://b/m/{v}"
        assert not store.is_observed("ModelVersion", NS, f"m-v{v}")  # cached as written
    status = store.get("Model", NS, "m")["status"]
    assert [rec["artifact"] for rec in status["versions"]] == ["Deleted", "Deleted"]
    assert "pendingDeletions" not in status
    r.reconcile(NS, "m")  # before the watch shows the annotations: nothing is deleted twice
    assert len(calls) == 2 and len(posted) == 4


def test_an_unreadable_credentials_secret_fails_that_deletion_without_touching_storage() -> None:
    store, kube, r, calls, posted = allowed_world()
    mv = store.get("ModelVersion", NS, "m-v1.0.0")
    mv["spec"]["artifact"]["secretRef"] = {"name": "s3"}
    store.upsert("ModelVersion", mv)

    def read_secret(ns: str, name: str) -> dict[str, str]:
        raise ApiException(status=403, reason="Forbidden")

    kube.read_secret = read_secret  # type: ignore[attr-defined]
    with pytest.raises(Requeue) as retry:
        r.reconcile(NS, "m")
    assert retry.value.delay == 30
    assert calls == [("s3://b/m/1.1.0", None)]  # the other one goes
    assert ("m-v1.0.0", "Warning", R.ARTIFACT_DELETE_FAILED) in posted
    assert ARTIFACT_DELETED_ANNOTATION not in (
        store.get("ModelVersion", NS, "m-v1.0.0")["metadata"].get("annotations") or {}
    )
    status = store.get("Model", NS, "m")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", R.ARTIFACT_DELETE_FAILED)
    assert ready["message"] == "1.0.0: credentials Secret 's3' cannot be read (403 Forbidden)"
    assert [rec["artifact"] for rec in status["versions"]] == ["Present", "Deleted"]


# ---- ownership: the gather sees every namespace and the platform's roots ---------------------------


def other_namespace_version(uri: str, name: str = "prod-v1", deleted: bool = False) -> dict[str, Any]:
    ann = {ARTIFACT_DELETED_ANNOTATION: "{}"} if deleted else {}
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": "team-b", "uid": f"b-{name}", "resourceVersion": "5",
                     "annotations": ann},
        "spec": {"model": "prod", "version": "1.0.0", "artifact": {"uri": uri, "sha256": "f" * 64}},
        "status": {"stage": "production"},
    }  # fmt: skip


@pytest.mark.parametrize(
    "uri",
    ["s3a://b/m/1.0.0/", "s3://b/m/1.0.0/", "s3://b/m/", "s3://b/m/1.0.0/weights.bin", "S3://b/m/1.0.0"],
)
def test_a_uri_another_namespace_registered_is_never_deleted_in_any_spelling(uri: str) -> None:
    store, kube, r, calls, posted = allowed_world()
    store.upsert("ModelVersion", other_namespace_version(uri))
    r.reconcile(NS, "m")
    assert calls == [("s3://b/m/1.1.0", None)] if uri != "s3://b/m/" else calls == []
    assert ("m-v1.0.0", "Warning", R.ARTIFACT_DELETE_REFUSED) in posted
    refused = store.get("Model", NS, "m")["status"]["refusedDeletions"]
    assert refused[0]["version"] == "1.0.0" and "team-b/prod-v1" in refused[0]["message"]


def test_a_version_whose_artifact_is_recorded_deleted_claims_nothing() -> None:
    store, kube, r, calls, posted = allowed_world()
    store.upsert("ModelVersion", other_namespace_version("s3://b/m/1.0.0", deleted=True))
    r.reconcile(NS, "m")
    assert [u for u, _ in calls] == ["s3://b/m/1.0.0", "s3://b/m/1.1.0"]


def test_without_a_platform_policy_retention_deletes_nothing_and_says_why_once() -> None:
    store, kube, _, _ = due_world("Enabled", True, policy=False)
    _, _, r, calls, posted = allowed_world()
    r.store = store
    r.kube = kube
    seen: list[tuple[str, str]] = []
    kube.event = lambda body, t, reason, msg: seen.append((reason, msg))  # type: ignore[method-assign]
    r.reconcile(NS, "m")
    assert calls == []
    assert [reason for reason, _ in seen] == [R.ARTIFACT_DELETE_REFUSED] * 2
    assert all("no ModelPlatformPolicy names a retention.storageRoots for namespace ns" in m for _, m in seen)
    r.reconcile(NS, "m")
    assert len(seen) == 2 and calls == []  # said once while it stands


def test_a_verified_record_without_a_true_condition_is_not_proof() -> None:
    store, kube, r, calls, posted = allowed_world()
    mv = store.get("ModelVersion", NS, "m-v1.0.0")
    mv["status"]["conditions"] = [{"type": "ArtifactVerified", "status": "Unknown", "reason": "Verifying"}]
    store.upsert("ModelVersion", mv)
    r.reconcile(NS, "m")
    assert calls == [("s3://b/m/1.1.0", None)]
    refused = store.get("Model", NS, "m")["status"]["refusedDeletions"]
    assert [x["version"] for x in refused] == ["1.0.0"] and "ArtifactVerified is not True" in refused[0][
        "message"
    ]


def test_a_deletion_runs_on_the_retention_pool_and_never_holds_the_reconcile() -> None:
    """The worker may take two artifacts.timeoutSeconds to list and re-hash: the reconcile submits the
    job and returns at once; the finished job queues the Model, whose next reconcile takes the outcome."""
    import threading

    store, kube, r, calls, posted = allowed_world()
    release = threading.Event()
    requeued: list[threading.Event] = [threading.Event(), threading.Event()]
    blocking = r.deleter

    def slow(uri: str, sha256: str, **kw: Any) -> Any:
        assert release.wait(10), "the test never released the worker"
        return blocking(uri, sha256, **kw)

    def requeue(ns: str, model: str) -> None:
        assert (ns, model) == (NS, "m")
        next(e for e in requeued if not e.is_set()).set()

    r.deleter = slow
    r.jobs = DeletionJobs(requeue)
    r.reconcile(NS, "m")  # returns while both deletions wait on the pool (one per namespace at a time)
    assert calls == [] and posted == []
    versions = (store.get("Model", NS, "m") or {}).get("status", {}).get("versions", [])
    assert all(rec.get("artifact") != "Deleted" for rec in versions)
    release.set()
    assert requeued[0].wait(10) and requeued[1].wait(10)  # each finished job asks for a reconcile
    r.reconcile(NS, "m")  # takes both outcomes, once
    assert sorted(u for u, _ in calls) == ["s3://b/m/1.0.0", "s3://b/m/1.1.0"]
    status = store.get("Model", NS, "m")["status"]
    assert [rec["artifact"] for rec in status["versions"]] == ["Deleted", "Deleted"]
    assert len(posted) == 4
