"""Our own work (the work queue, the drift check, the startup listing) runs only while kopf lets this
replica act.

With peering (HA), kopf pauses a replica when a peer of higher priority is alive: it closes that
replica's watch streams and stops its daemons, but it knows nothing of our work queue and resync
loop, which would go on reconciling from a cache that no longer changes and write stale status.
kopf has no public hook for the pause (nolar/kopf#856 points to daemons, which need a finalizer on
some object; we write none on user objects), so we observe kopf's own decision: the ``ToggleSet``
(``operator_paused``) its watchers block on. It is captured from the orchestrator's
``adjust_tasks``, which runs before any watcher starts and after the peering toggles exist (a peering
toggle starts switched on, so a new replica counts as paused until kopf has read the peering
object). ``install_pause_hook`` checks that the installed kopf still has that shape and refuses
to start otherwise; ``tests/test_activity.py`` runs it against the installed kopf.

While paused: no LIST, no reconcile, no requeue, no status write (the queue forgets what it held).
On resume: one LIST per kind refills the cache (objects deleted meanwhile are dropped) before
anything is reconciled, then every object is queued once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import WorkQueue

log = logging.getLogger(__name__)


class Toggles(Protocol):
    """What we use of kopf's ``aiotoggles.ToggleSet``."""

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...


class PauseSignal:
    """kopf's pause, readable from our code: unknown (counted as paused) until kopf binds it."""

    def __init__(self) -> None:
        self._toggles: Toggles | None = None
        self._bound = asyncio.Event()

    def bind(self, toggles: Toggles) -> None:
        self._toggles = toggles
        self._bound.set()

    @property
    def paused(self) -> bool:
        return self._toggles is None or self._toggles.is_on()

    async def wait_active(self) -> None:
        await self._bound.wait()
        assert self._toggles is not None
        await self._toggles.wait_for(False)

    async def wait_paused(self) -> None:
        await self._bound.wait()
        assert self._toggles is not None
        await self._toggles.wait_for(True)


def install_pause_hook(signal: PauseSignal) -> None:
    """Bind `signal` to kopf's operator_paused toggle set once kopf's orchestrator has set up its
    peering toggles. Must run before kopf.run(). Raises if this kopf does not have the expected shape."""
    from kopf._core.reactor import orchestration  # private: checked below, pinned in constraints.txt

    original = orchestration.adjust_tasks
    if getattr(original, "_binds_pause", None) is signal:
        return
    fields = getattr(orchestration.Ensemble, "__dataclass_fields__", {})
    if "ensemble" not in inspect.signature(original).parameters or "operator_paused" not in fields:
        raise RuntimeError(
            "this kopf version does not expose the peering pause where modelversioning expects it "
            "(kopf._core.reactor.orchestration.adjust_tasks(ensemble=...).operator_paused); "
            "an HA standby could not tell that it must stay idle"
        )

    async def adjust_tasks(*args: Any, ensemble: Any, **kwargs: Any) -> None:
        await original(*args, ensemble=ensemble, **kwargs)
        signal.bind(ensemble.operator_paused)

    adjust_tasks._binds_pause = signal  # type: ignore[attr-defined]
    orchestration.adjust_tasks = adjust_tasks


async def run_while_active(
    signal: PauseSignal,
    queue: WorkQueue,
    prime: Callable[[], None],
    enqueue_all: Callable[[], None],
    resync: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """Forever: wait until kopf lets us act, list, reconcile; when kopf pauses us, stop all of it."""
    while True:
        await signal.wait_active()
        await asyncio.to_thread(prime)  # the cache as it is now, before any reconcile
        if signal.paused:
            continue  # paused again while listing
        queue.resume()
        enqueue_all()
        drift = asyncio.create_task(resync())
        log.info("active: cache listed, reconciling")
        try:
            await signal.wait_paused()
        finally:
            drift.cancel()
            await queue.pause()
        log.info("paused by peering: no reconciles until this replica is active again")


def refill(
    store: Store, kind: str, namespace: str | None, list_objects: Callable[[], Iterable[dict[str, Any]]]
) -> None:
    """One LIST into the cache, dropping what the LIST no longer has (deleted while we were paused),
    but only objects nothing touched since the LIST began (a watch event may bring a newer one).
    The LIST may come page by page: each object is cached (projected) as it arrives, so the full
    objects of the whole LIST are never all held at once. A failed page raises: what was cached
    stays (the pages before it are newer observations), and nothing is dropped."""
    before = store.versions(kind, namespace)
    seen: set[tuple[str, str]] = set()
    for obj in list_objects():
        md = obj.get("metadata") or {}
        ns, name = md.get("namespace", ""), md.get("name", "")
        seen.add((ns, name))
        # an object cached at exactly this version stays as it is: projecting it again would put a
        # new entry among the LIST's garbage and free the old one, and the heap, fragmented by both,
        # would stay as big as it got (a restarted operator was ~25 MiB bigger after its second LIST)
        if not store.holds(kind, ns, name, md.get("resourceVersion")):
            store.upsert(kind, obj)
    for key, rv in before.items():
        if key not in seen and rv is not None:
            store.delete(kind, *key, if_version=rv)  # unless a watch event brought a newer one
