"""The route history as the real ModelEndpoint reconciler keeps it (status.routeHistory): one change
per change of the split as served, with the time the route write returned and its cause, in the same
status write as the route change (never a write of its own), and nothing when nothing changes."""

from __future__ import annotations

from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.endpoint_history import RouteHistory, from_wire, resolve
from modelversioning.domain.timestamps import parse_epoch, rfc3339_ms
from test_endpoint_reconciler import NEW, OLD, World, serving_one


def history(w: World) -> RouteHistory:
    return from_wire(w.status().get("routeHistory"))


def split(c: Any) -> dict[str, tuple[str, int]]:
    return {s.variant: (s.version, s.weight) for s in c.split}


def two_versions(w: World) -> None:
    serving_one(w)
    w.version("2.4.1", NEW)


def test_the_first_split_is_recorded_with_the_time_its_route_write_returned() -> None:
    w = World()
    serving_one(w)
    h = history(w)
    assert len(h.changes) == 1
    first = h.changes[0]
    assert first.cause == R.ROUTE_CAUSE_INITIAL
    assert split(first) == {"stable": ("2.3.8", 100)}
    (svc,) = w.routed()
    assert first.split[0].slot == svc and first.split[0].digest == OLD  # what the access log names
    assert parse_epoch(first.at) == 1000.0  # the reconciler's clock when the route write returned


def test_a_weight_edit_is_one_change_in_the_status_write_of_the_route_change_and_idle_adds_nothing() -> None:
    w = World()
    two_versions(w)
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 100},
            {"name": "canary", "version": "2.4.1", "weight": 0},
        ]
    )
    w.settle()
    w.api.writes.clear()
    w.now = 1500.0
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 80},
            {"name": "canary", "version": "2.4.1", "weight": 20},
        ]
    )
    w.settle()
    status_writes = [x for x in w.api.writes if x[0] == "status"]
    route_writes = [x for x in w.api.writes if x[1] == "HTTPRoute"]
    assert len(route_writes) == 1 and len(status_writes) == 1  # the record rode on the one status write
    h = history(w)
    last = h.changes[-1]
    assert split(last) == {"stable": ("2.3.8", 80), "canary": ("2.4.1", 20)}
    assert last.cause == R.ROUTE_CAUSE_SPEC_CHANGE and last.at == rfc3339_ms(1500.0)
    # answers: before the edit the old split, at and after it the new one
    assert split(resolve(h, 1499.999).change) == {"stable": ("2.3.8", 100)}
    assert resolve(h, 1500.0).change == last
    w.api.writes.clear()
    w.now = 2000.0
    w.settle()
    assert w.api.writes == [] and history(w) == h  # idle: no write, nothing recorded


def test_a_version_that_becomes_eligible_under_the_same_spec_is_an_eligibility_change() -> None:
    w = World()
    serving_one(w)
    w.version("2.4.1", NEW, verified=False)
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 50},
            {"name": "canary", "version": "2.4.1", "weight": 50},
        ]
    )
    w.settle()
    assert split(history(w).last) == {"stable": ("2.3.8", 100)}  # the canary is not eligible yet
    changes_before = len(history(w).changes)
    w.now = 3000.0
    w.version("2.4.1", NEW, verified=True)
    w.settle()
    h = history(w)
    assert len(h.changes) == changes_before + 1
    assert h.last is not None and split(h.last) == {"stable": ("2.3.8", 50), "canary": ("2.4.1", 50)}
    assert h.last.cause == R.ROUTE_CAUSE_ELIGIBILITY and h.last.at == rfc3339_ms(3000.0)


def test_a_new_version_taking_its_variant_once_verified_is_an_eligibility_change_of_that_spec() -> None:
    w = World()
    serving_one(w)
    w.version("2.4.1", NEW, verified=False)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.settle()
    assert split(history(w).last) == {"stable": ("2.3.8", 100)}  # traffic stays on the pinned slot
    w.version("2.4.1", NEW, verified=True)
    w.settle()
    last = history(w).last
    assert last is not None and split(last) == {"stable": ("2.4.1", 100)}
    assert last.cause == R.ROUTE_CAUSE_ELIGIBILITY and last.generation == 2


def test_a_revoked_version_closes_the_route_and_the_record_says_why() -> None:
    w = World()
    serving_one(w)
    mv = w.store.get("ModelVersion", "ml", "m-v2.3.8")
    assert mv is not None
    mv["metadata"]["annotations"] = {R.REVOKED_ANNOTATION: "leaked labels"}
    mv["metadata"]["resourceVersion"] = "r-revoked"
    w.store.upsert("ModelVersion", mv)
    w.now = 4000.0
    w.settle()
    last = history(w).last
    assert last is not None and last.closed == R.UNAVAILABLE_REVOKED and last.split == ()
    assert last.cause == R.ROUTE_CAUSE_CLOSED


def test_the_time_is_when_the_route_write_returned_not_when_the_reconcile_began() -> None:
    w = World()
    two_versions(w)
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 100},
            {"name": "canary", "version": "2.4.1", "weight": 0},
        ]
    )
    w.settle()
    apply = w.api.apply

    def slow_route_write(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "HTTPRoute":
            w.now += 7.5  # the API server took 7.5 s to accept the route
        return apply(obj)

    w.api.apply = slow_route_write  # type: ignore[method-assign]
    w.now = 5000.0
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 50},
            {"name": "canary", "version": "2.4.1", "weight": 50},
        ]
    )
    w.settle()
    last = history(w).last
    assert last is not None and split(last) == {"stable": ("2.3.8", 50), "canary": ("2.4.1", 50)}
    assert last.at == rfc3339_ms(5007.5)
