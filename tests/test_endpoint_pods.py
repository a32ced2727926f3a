"""The endpoint reconciler with its slots' pods in the cache: a failing new slot is reported within
one reconcile (Degraded with the pod's reason, one Warning Event) while traffic stays where it was;
a pod's DigestMismatch asks for the version's re-verification; RoutesReady names a mirror only when
there is one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.handlers.workqueue import Requeue
from test_endpoint_reconciler import NEW, NS, World, _rv, serving_one

FOUND = "f" * 64


def add_pod(w: World, slot: str, name: str, status: dict[str, Any]) -> None:
    """The kubelet's view of one pod of `slot`, delivered by the pod watch."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": str(next(_rv)),
                     "labels": {R.LABEL_SLOT: slot, R.LABEL_MANAGED_BY: R.MANAGED_BY}},
        "status": status,
    }  # fmt: skip
    w.store.upsert("Pod", body)


def refused(expected: str = NEW) -> dict[str, Any]:
    doc = {"ok": False, "reason": "DigestMismatch", "expected": expected, "actual": FOUND, "message": "x"}
    term = {"terminated": {"exitCode": 1, "reason": "Error", "message": json.dumps(doc)}}
    return {
        "phase": "Pending",
        "initContainerStatuses": [{"name": "verify-artifact", "ready": False, "state": term}],
    }


def new_slot(w: World, old_slot: str) -> str:
    (slot,) = [n for n in w.deployments() if n != old_slot]
    return slot


def test_a_new_slot_whose_pods_refuse_the_digest_is_degraded_while_the_old_slot_keeps_serving() -> None:
    w = World()
    old = serving_one(w)
    w.version("2.4.0", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.0", "weight": 100}])
    w.reconcile()  # the new slot's Deployment is created; it never becomes available
    w.watch()
    slot = new_slot(w, old)
    events_before = len(w.api.events)
    add_pod(w, slot, f"{slot}-abc", refused())
    w.reconcile()  # one reconcile after the kubelet's report
    status, reason, msg = w.cond("Degraded")
    assert (status, reason) == ("True", R.DIGEST_MISMATCH)
    assert "variant stable" in msg and slot in msg and FOUND in msg
    assert w.cond("Ready")[:2] == ("False", R.DIGEST_MISMATCH)
    assert w.routed() == {old: ("2.3.8", 100)}  # traffic never moves to the failing slot
    assert [e for e in w.api.events[events_before:] if e[0] == "Warning"] == [
        ("Warning", R.DIGEST_MISMATCH, msg)
    ]
    w.reconcile()
    w.reconcile()
    assert (
        len([e for e in w.api.events if e[1] == R.DIGEST_MISMATCH]) == 1
    )  # one Event, not one per reconcile


def test_a_scaled_up_serving_slot_with_a_failing_new_pod_keeps_its_traffic_and_says_why() -> None:
    w = World()
    slot = serving_one(w)
    ready = {
        "phase": "Running",
        "containerStatuses": [{"name": "model-server", "ready": True, "restartCount": 0}],
    }
    add_pod(w, slot, f"{slot}-ok", ready)
    waiting = {"waiting": {"reason": "ErrImagePull"}}
    server = {"name": "model-server", "image": "example/server:1", "ready": False, "state": waiting}
    pull = {"phase": "Pending", "containerStatuses": [server]}
    add_pod(w, slot, f"{slot}-new", pull)
    w.reconcile()
    status, reason, msg = w.cond("Degraded")
    assert (status, reason) == ("True", R.IMAGE_PULL_FAILED) and f"{slot}-new" in msg
    assert w.routed() == {slot: ("2.3.8", 100)}
    w.store.delete("Pod", NS, f"{slot}-new")  # the failing pod went away
    w.reconcile()
    assert w.cond("Degraded")[:2] == ("False", R.AS_EXPECTED)
    assert w.cond("Ready")[0] == "True"


def test_a_pods_digest_mismatch_asks_for_the_versions_re_verification() -> None:
    w = World()
    asked: list[tuple[str, str, str]] = []
    w.rec.reverify = lambda ns, mv, found: asked.append((ns, mv, found))
    old = serving_one(w)
    w.version("2.4.0", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.0", "weight": 100}])
    w.reconcile()
    w.watch()
    w.reconcile()
    assert asked == []  # no pod reported anything
    add_pod(w, new_slot(w, old), "p", refused())
    w.reconcile()
    assert asked == [(NS, "m-v2.4.0", FOUND)]


def test_a_not_ready_runtime_is_reported_once_the_bound_has_passed_and_requeued_until_then() -> None:
    w = World(not_ready_seconds=30.0)
    old = serving_one(w)
    w.version("2.4.0", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.0", "weight": 100}])
    w.reconcile()
    w.watch()
    slot = new_slot(w, old)
    started = "1970-01-01T00:16:40Z"  # 1000 s: World's clock
    server = {
        "name": "model-server",
        "ready": False,
        "restartCount": 0,
        "state": {"running": {"startedAt": started}},
    }
    running = {"phase": "Running", "containerStatuses": [server]}
    add_pod(w, slot, "p", running)
    with pytest.raises(
        Requeue
    ) as due:  # nothing more comes from the kubelet: the reconcile asks to look again
        w.rec.reconcile(NS, "ep")
    assert due.value.delay == pytest.approx(30.0)
    assert w.cond("Degraded")[0] == "False"
    w.now += 31
    w.reconcile()
    status, reason, msg = w.cond("Degraded")
    assert (status, reason) == ("True", R.RUNTIME_NOT_READY) and "GET" not in msg and "TCP port" in msg
    assert w.routed() == {old: ("2.3.8", 100)}


def test_routes_ready_names_a_mirror_only_when_the_route_has_one() -> None:
    w = World(gateway_api_features=["HTTPRouteRequestMirror"])
    serving_one(w)  # no mirror
    assert w.cond("RoutesReady")[:2] == ("True", R.ROUTE_APPLIED)
    assert "mirror" not in w.cond("RoutesReady")[2].lower()
    w.version("2.4.0", NEW, stage="production")
    stable = {"name": "stable", "version": "2.3.8", "weight": 100}
    shadow = {"name": "shadow", "version": "2.4.0", "weight": 0}
    w.endpoint([stable, shadow], mirror={"variant": "shadow", "percent": 25})
    w.settle()
    assert "mirrors 25% of it to variant shadow (2.4.0)" in w.cond("RoutesReady")[2]
