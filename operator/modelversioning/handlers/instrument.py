"""Timing and error accounting shared by the reconcilers, and the route reaction's timestamps."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelversioning import metrics
from modelversioning.handlers.workqueue import Requeue


def instrumented(kind: str, reconcile: Callable[[str, str], None], namespace: str, name: str) -> None:
    t0 = time.monotonic()
    try:
        reconcile(namespace, name)
    except Requeue:
        raise  # waiting, not failing
    except Exception as e:
        metrics.RECONCILE_ERRORS.labels(kind, type(e).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - t0)


@dataclass(slots=True)
class _Timing:  # of the reconcile running in this context, monotonic
    arrived: float  # its endpoint's watch event reached the handler
    started: float  # the reconcile started
    sent: float | None = None  # its first route write's request went out


_TRIGGER: contextvars.ContextVar[_Timing | None] = contextvars.ContextVar("route_trigger", default=None)


class RouteReaction:
    """How long a ModelEndpoint's change takes from its watch event to the route write it causes
    (modelversioning_endpoint_route_reaction_seconds). The event handler (loop thread) stamps the
    endpoint's first event not yet taken by a reconcile; the next reconcile of that endpoint (a
    worker thread) takes it; its first route write stamps the moment its request goes out; the phases
    are observed when the reconcile ends (not before the request). Reconciles that write no route
    observe nothing. One entry per endpoint at most."""

    def __init__(self) -> None:
        self._arrived: dict[tuple[str, str], float] = {}

    def arrived(self, namespace: str, name: str, at: float) -> None:
        self._arrived.setdefault((namespace, name), at)  # atomic: the GIL

    def started(self, namespace: str, name: str) -> None:
        at = self._arrived.pop((namespace, name), None)
        _TRIGGER.set(None if at is None else _Timing(at, time.monotonic()))

    def sending(self) -> None:
        """The route write's request goes out now (its first route write counts)."""
        trigger = _TRIGGER.get()
        if trigger is not None and trigger.sent is None:
            trigger.sent = time.monotonic()

    def finished(self) -> None:
        """The reconcile ended: observe its phases if it wrote the route."""
        t = _TRIGGER.get()
        _TRIGGER.set(None)
        if t is None or t.sent is None:
            return
        _QUEUED.observe(t.started - t.arrived)
        _RECONCILE.observe(t.sent - t.started)
        _TOTAL.observe(t.sent - t.arrived)


_QUEUED, _RECONCILE, _TOTAL = (
    metrics.ROUTE_REACTION_SECONDS.labels(phase) for phase in ("queued", "reconcile", "total")
)
ROUTE_REACTION = RouteReaction()
