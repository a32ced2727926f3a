"""The Model reconciler's act around the pure retention plan: a fake API, the real Store. A reconcile
that runs again before the watch shows its own writes must not order the same thing twice."""

from __future__ import annotations

import copy
from typing import Any

from modelversioning.api.settings import Settings
from modelversioning.domain import reasons as R
from modelversioning.handlers.model import ARCHIVE_ANNOTATION, ModelReconciler
from modelversioning.handlers.store import Store

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
