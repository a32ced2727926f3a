"""Deleting a ModelEndpoint drains (issue #24 item 4): the route goes first; the slots wait until the
route's deletion is observed plus the drain grace; then they go and the finalizer is released.
Table tests of ``domain.endpoint_delete.decide_deletion``, then the reconciler end to end."""

from __future__ import annotations

from typing import Any

import pytest

from modelversioning.api.wire import DRAIN_FINALIZER
from modelversioning.domain import endpoint_delete as D
from test_endpoint_reconciler import NS, World, serving_one

ROUTE = (("HTTPRoute", "ep"),)
SLOTS = frozenset({"ep-a", "ep-b"})


def facts(**kw: Any) -> D.DeletionFacts:
    base: dict[str, Any] = dict(finalizers=("other", DRAIN_FINALIZER), routes=ROUTE, slots=SLOTS,
                                draining={}, now=1000.0, drain_seconds=10.0)  # fmt: skip
    return D.DeletionFacts(**{**base, **kw})


@pytest.mark.parametrize(
    ("f", "phase", "routes", "slots", "draining", "finalizers", "after"),
    [
        pytest.param(facts(), D.ROUTE, ROUTE, (), {}, None, 10.0, id="route-present-only-the-route-goes"),
        pytest.param(
            facts(draining={"ep-a": 500.0}), D.ROUTE, ROUTE, (), {"ep-a": 500.0}, None, 10.0,
            id="route-present-even-a-long-drained-slot-waits",
        ),
        pytest.param(
            facts(routes=()), D.DRAIN, (), (), {"ep-a": 1000.0, "ep-b": 1000.0}, None, 10.0,
            id="route-gone-observed-now-the-grace-starts",
        ),
        pytest.param(
            facts(routes=(), draining={"ep-a": 994.0, "ep-b": 994.0}), D.DRAIN, (), (),
            {"ep-a": 994.0, "ep-b": 994.0}, None, 4.0, id="within-the-grace-requeue-for-the-rest",
        ),
        pytest.param(
            facts(routes=(), draining={"ep-a": 980.0, "ep-b": 995.0}), D.DRAIN, (), ("ep-a",),
            {"ep-b": 995.0}, None, 5.0, id="a-slot-past-its-grace-goes-the-other-waits",
        ),
        pytest.param(
            facts(routes=(), draining={"ep-a": 990.0, "ep-b": 990.0}), D.DONE, (), ("ep-a", "ep-b"), {},
            ("other",), None, id="grace-over-slots-go-finalizer-released",
        ),
        pytest.param(
            facts(routes=(), slots=frozenset()), D.DONE, (), (), {}, ("other",), None,
            id="nothing-left-finalizer-released",
        ),
        pytest.param(
            facts(finalizers=("other",)), D.NOT_HELD, (), (), {}, None, None, id="without-our-finalizer"
        ),
    ],
)  # fmt: skip
def test_deletion_plan(
    f: D.DeletionFacts,
    phase: str,
    routes: tuple[Any, ...],
    slots: tuple[str, ...],
    draining: dict[str, float],
    finalizers: tuple[str, ...] | None,
    after: float | None,
) -> None:
    plan = D.decide_deletion(f)
    assert (plan.phase, plan.delete_routes, plan.delete_slots) == (phase, routes, slots)
    assert (plan.draining, plan.finalizers, plan.requeue_after) == (draining, finalizers, after)


def test_a_live_endpoint_gets_the_finalizer_once() -> None:
    assert D.finalizers_for(("x",)) == ("x", DRAIN_FINALIZER)
    assert D.finalizers_for(("x", DRAIN_FINALIZER)) is None


# ------------------------------------------------------------------------------ the reconciler
def _delete(w: World) -> None:
    """kubectl delete: the API server sets deletionTimestamp (our finalizer holds the object)."""
    body = w.api.objects[("ModelEndpoint", "ep")]
    assert DRAIN_FINALIZER in body["metadata"]["finalizers"]
    body["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    w.watch()


def _children(w: World) -> set[tuple[str, str]]:
    return {k for k in w.api.objects if k[0] in ("Deployment", "Service")}


def test_deleting_an_endpoint_under_traffic_removes_the_route_first_then_drains() -> None:
    w = World(drain_seconds=5.0)
    serving_one(w)
    children = _children(w)
    assert len(children) == 2
    _delete(w)
    writes = len(w.api.writes)
    w.reconcile()  # phase 1: the route only
    assert ("HTTPRoute", "ep") not in w.api.objects and _children(w) == children
    w.reconcile()  # the route's deletion not yet observed by the watch (the API says 404): nothing more
    assert _children(w) == children and ("ModelEndpoint", "ep") in w.api.objects
    w.watch()  # the watch shows the route gone: the grace starts now
    w.reconcile()
    assert _children(w) == children
    assert [d["since"] for d in w.status()["draining"]] == ["1970-01-01T00:16:40.000Z"]
    w.now += 4.0
    w.reconcile()  # within the grace
    assert _children(w) == children and ("ModelEndpoint", "ep") in w.api.objects
    w.now += 1.0
    w.reconcile()  # grace over: the slots go, then the finalizer
    assert _children(w) == set()
    assert ("ModelEndpoint", "ep") not in w.api.objects
    order = [x[:2] for x in w.api.writes[writes:] if x[0] in ("delete", "finalizers")]
    assert order == [
        ("delete", "HTTPRoute"), ("delete", "HTTPRoute"), ("delete", "Deployment"), ("delete", "Service"),
        ("finalizers", "ModelEndpoint"),
    ]  # fmt: skip


def test_a_restart_does_not_restart_the_grace() -> None:
    w = World(drain_seconds=5.0)
    serving_one(w)
    _delete(w)
    w.reconcile()
    w.watch()
    w.reconcile()  # grace starts at 1000
    w.watch()
    from modelversioning.handlers.modelendpoint import ModelEndpointReconciler

    w.rec = ModelEndpointReconciler(w.api, w.store, w.rec.settings, lambda ns, m: None)  # type: ignore[arg-type]
    w.rec.clock = lambda: w.now
    w.now += 5.0
    w.reconcile()
    assert _children(w) == set() and ("ModelEndpoint", "ep") not in w.api.objects
    assert w.store.get("Deployment", NS, "x") is None
