"""The route reaction's timestamps (handlers.instrument.RouteReaction): from a ModelEndpoint's watch event
to the route write it causes, observed in modelversioning_endpoint_route_reaction_seconds."""

from __future__ import annotations

import time

from modelversioning import metrics
from modelversioning.handlers.instrument import ROUTE_REACTION, RouteReaction
from test_endpoint_reconciler import NS, World, serving_one


def _observed() -> dict[str, tuple[float, float]]:
    """phase -> (count, sum) so far."""
    out: dict[str, tuple[float, float]] = {}
    for family in metrics.ROUTE_REACTION_SECONDS.collect():
        count = {s.labels["phase"]: s.value for s in family.samples if s.name.endswith("_count")}
        total = {s.labels["phase"]: s.value for s in family.samples if s.name.endswith("_sum")}
        out = {p: (count[p], total.get(p, 0.0)) for p in count}
    return out


def _delta(before: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    after = _observed()
    return {p: (c - before.get(p, (0, 0))[0], s - before.get(p, (0, 0))[1]) for p, (c, s) in after.items()}


def test_the_phases_of_one_reaction_are_observed_once_when_the_reconcile_ends() -> None:
    r = RouteReaction()
    before = _observed()
    r.arrived(NS, "ep", time.monotonic() - 0.010)  # the event reached the handler 10 ms ago
    r.started(NS, "ep")
    r.sending()
    r.sending()  # a second route write (a companion) of the same reconcile: the first one counts
    assert all(c == 0 for c, _ in _delta(before).values())  # not before the reconcile ends
    r.finished()
    d = _delta(before)
    assert {p: c for p, (c, _) in d.items()} == {"queued": 1, "reconcile": 1, "total": 1}
    assert d["queued"][1] >= 0.010 and abs(d["total"][1] - d["queued"][1] - d["reconcile"][1]) < 1e-6
    r.finished()  # nothing more for that reconcile
    assert {p: c for p, (c, _) in _delta(before).items()} == {"queued": 1, "reconcile": 1, "total": 1}


def test_nothing_is_observed_without_an_event_or_without_a_route_write() -> None:
    r = RouteReaction()
    before = _observed()
    r.started(NS, "ep")  # a drift check's reconcile: no event behind it
    r.sending()
    r.finished()
    r.arrived(NS, "ep", time.monotonic())
    r.started(NS, "ep")  # its reconcile takes the event, and writes no route
    r.finished()
    r.started(NS, "ep")  # the next one has no event left to time
    r.sending()
    r.finished()
    assert all(c == 0 for c, _ in _delta(before).values())


def _split(stable: int) -> list[dict[str, object]]:
    return [
        {"name": "stable", "version": "2.3.8", "weight": stable},
        {"name": "canary", "version": "2.4.0", "weight": 100 - stable},
    ]


def test_a_weight_change_observes_its_reaction_and_an_idle_reconcile_does_not() -> None:
    w = World()
    serving_one(w)
    before = _observed()
    ROUTE_REACTION.arrived(NS, "ep", time.monotonic())
    w.reconcile()  # nothing changed: no route write
    assert all(c == 0 for c, _ in _delta(before).values())
    w.version("2.4.0", "c" * 64)
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 100},
            {"name": "canary", "version": "2.4.0", "weight": 0},
        ]
    )
    w.settle()  # the canary's slot is up, routed at 0
    before = _observed()
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 70},
            {"name": "canary", "version": "2.4.0", "weight": 30},
        ]
    )
    ROUTE_REACTION.arrived(NS, "ep", time.monotonic())  # what the watch handler does
    w.api.writes.clear()
    w.reconcile()
    assert ("apply", "HTTPRoute", "ep") in w.api.writes
    assert {p: c for p, (c, _) in _delta(before).items()} == {"queued": 1, "reconcile": 1, "total": 1}
