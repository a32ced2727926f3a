"""A ModelEndpoint's deletion, route first, decided purely from its facts.

Without an order, garbage collection deletes the route and the slots (Deployments + Services) at
once, and the gateway, still routing for a while, answers 500s before it answers 404s. With the
endpoint's finalizer (``wire.DRAIN_FINALIZER``) the deletion goes in phases, each decided here from
what the watch cache shows and the handler executes (no sleeping in a worker: it requeues):

1. ``route``  a route object the endpoint controls is still in the cache: delete it; nothing else.
2. ``drain``  no route of the endpoint is left in the cache (its deletion was observed through the
              watch): every slot waits the drain grace a removed variant's slot waits
              (``serving.drainSeconds``), counted from the first reconcile that saw no route and
              recorded in status.draining (a restart does not restart the clock; a slot already
              draining keeps its earlier start, nothing has routed to it since).
3. ``done``   every slot's grace has passed: delete the slots and release the finalizer.

Without our finalizer (an endpoint deleted before the operator added it) nothing is held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelversioning.api.wire import DRAIN_FINALIZER
from modelversioning.domain.endpoint_plan import drain_due

ROUTE, DRAIN, DONE, NOT_HELD = "route", "drain", "done", "not-held"


@dataclass(frozen=True)
class DeletionFacts:
    finalizers: tuple[str, ...]  # metadata.finalizers of the endpoint
    routes: tuple[tuple[str, str], ...]  # (kind, name) of the route objects it controls, in the cache
    slots: frozenset[str]  # slots with a Deployment or Service it controls, in the cache
    draining: Mapping[str, float]  # slot -> since (epoch seconds), from status.draining
    now: float
    drain_seconds: float


@dataclass(frozen=True)
class DeletionPlan:
    phase: str  # ROUTE, DRAIN, DONE, NOT_HELD
    delete_routes: tuple[tuple[str, str], ...]
    delete_slots: tuple[str, ...]
    draining: dict[str, float]  # slot -> since, to record in status.draining
    finalizers: tuple[str, ...] | None  # the new list once every slot is deleted; None: unchanged
    requeue_after: float | None  # when the next grace ends (or, for the route, a fallback look)
    message: str


def finalizers_for(current: tuple[str, ...]) -> tuple[str, ...] | None:
    """The finalizer list of a live endpoint: ours added (None: already there)."""
    return None if DRAIN_FINALIZER in current else (*current, DRAIN_FINALIZER)


def decide_deletion(f: DeletionFacts) -> DeletionPlan:
    if DRAIN_FINALIZER not in f.finalizers:
        return DeletionPlan(NOT_HELD, (), (), {}, None, None, "not held: garbage collection deletes the rest")
    kept = {s: t for s, t in f.draining.items() if s in f.slots}
    if f.routes:
        names = ", ".join(f"{k} {n}" for k, n in f.routes)
        msg = f"deleting: route first ({names}); the slots wait until its deletion is observed"
        # the watch's DELETED event brings the next reconcile; the requeue is only a fallback
        return DeletionPlan(ROUTE, f.routes, (), kept, None, f.drain_seconds or None, msg)
    delete, draining, wait = drain_due(f.slots, f.draining, f.now, f.drain_seconds)
    if draining and wait is not None:
        msg = f"deleting: no route left; slots {', '.join(sorted(draining))} drain for {wait:g}s more"
        return DeletionPlan(DRAIN, (), delete, draining, None, wait, msg)
    rest = tuple(x for x in f.finalizers if x != DRAIN_FINALIZER)
    return DeletionPlan(DONE, (), tuple(delete), {}, rest, None, "deleting: drained; finalizer released")


__all__ = ["DeletionFacts", "DeletionPlan", "decide_deletion", "finalizers_for"]
