"""While this replica is active: the periodic drift checks, and once the startup backlog is done, one
more listing and the memory handed back."""

from __future__ import annotations

import asyncio
import logging

from modelversioning.handlers.listing import prime_store
from modelversioning.handlers.memory import freeze_heap, release_memory
from modelversioning.handlers.runtime import Operator

log = logging.getLogger("modelversioning")


async def run(op: Operator) -> None:
    """The drift checks, and beside them the settling after the startup backlog."""
    await asyncio.gather(_drift_checks(op), _release_when_settled(op))


async def _release_when_settled(op: Operator, poll: float = 0.5) -> None:
    """After a (re)start every object is listed and reconciled at once. Once that backlog is done:
    list once more (`_settle`), then hand the memory back to the system, so a restarted operator is
    no bigger than one that saw the fleet appear."""
    idle = 0
    while idle < 3:
        await asyncio.sleep(poll)
        idle = idle + 1 if op.queue.pending() == 0 else 0
    try:
        await asyncio.to_thread(_settle, op)
    except Exception:  # noqa: BLE001 - the drift check beside it must go on
        log.exception("the listing after the startup backlog failed; the cache keeps what the watches said")
    release_memory()
    await asyncio.sleep(poll * 20)  # kopf's per-object workers of the listing end after their idle timeout
    release_memory()


def _settle(op: Operator) -> None:
    """Our listing and kopf's are two LISTs at two moments: an object deleted between them is in the
    cache but in neither kopf's listing nor its watch (which starts after its own LIST), and would stay
    cached for good. Listing again once kopf's watches run drops it (refill keeps anything a watch
    event brought meanwhile), and the next drift check acts on its absence."""
    if op.queue.paused:
        return
    prime_store(op)


VERSIONS_EVERY = 10  # drift checks per re-run of every ModelVersion when nothing time-based needs it


def drift_kinds(cycle: int, recheck_seconds: float) -> tuple[str, ...]:
    """What drift check number `cycle` (1, 2, ...) re-runs. Endpoints (children and routes can drift
    under us) and Models (retention is time-based) every time; ModelVersions have no children and
    every change that concerns them arrives as a watch event, so only every VERSIONS_EVERY-th check
    (a safety net), unless periodic re-verification (`verification.recheckSeconds`) needs them each
    time. At 10,000 versions their re-run was a third of the idle operator's CPU."""
    versions = recheck_seconds > 0 or cycle % VERSIONS_EVERY == 0
    return ("ModelEndpoint", "ModelVersion", "Model") if versions else ("ModelEndpoint", "Model")


async def _drift_checks(op: Operator) -> None:
    """Periodic drift check: re-run reconciles from the watch cache (no API reads)."""
    cycle = 0
    while True:
        await asyncio.sleep(op.settings.serving.drift_check_seconds)
        cycle += 1
        for kind in drift_kinds(cycle, op.settings.verification.recheck_seconds):
            for ns, name in op.store.keys(kind):
                op.queue.add((kind, ns, name), low=True)
        op.update_version_gauges()
        freeze_heap(cycle)
