"""kopf wiring: watch events feed the Store and a work queue; one reconcile path serves
create, update, resume (the initial listing), related-object changes and the periodic
drift check. Nothing here decides anything.

Only watch-event handlers are used, so kopf writes no progress annotations onto
user objects: the operator never edits a user's object except its status and
our own finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api.settings import Settings
from modelversioning.api.wire import LABEL_MANAGED_BY, MANAGED_BY, MODEL, MODELAPPROVAL
from modelversioning.handlers import heapreport, platform
from modelversioning.handlers.activity import PauseSignal, install_pause_hook, refill, run_while_active
from modelversioning.handlers.kube import (
    DEPLOYMENT,
    MODELENDPOINT,
    MODELVERSION,
    SERVICE,
    Kube,
    Resource,
    load_api_client,
)
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler
from modelversioning.handlers.modelversion import ModelVersionReconciler, make_verifier
from modelversioning.handlers.store import Store, controller_of
from modelversioning.handlers.workqueue import Key, WorkQueue

log = logging.getLogger("modelversioning")

MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}


class Operator:
    """Everything the handlers share; created at startup."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.store = Store()
        self.activity: asyncio.Task[None] | None = None  # listing, work queue, drift check: while not paused
        self.primed_at: float | None = None  # when startup's listing finished (before kopf's watches)
        self.queue = WorkQueue(self._dispatch, workers=settings.serving.reconcile_workers)
        self.versions = ModelVersionReconciler(
            kube,
            self.store,
            settings,
            make_verifier(settings.artifacts),
            enqueue_endpoints=self._endpoints_of_model_threadsafe,
            requeue=lambda ns, n: self.queue.add_threadsafe(("ModelVersion", ns, n)),
        )
        self.endpoints = ModelEndpointReconciler(
            kube, self.store, settings, enqueue_versions=self._versions_of_model_threadsafe
        )
        self.models = ModelReconciler(kube, self.store, settings, self._versions_of_model_threadsafe)

    def _dispatch(self, key: Key) -> None:
        kind, ns, name = key
        if kind == "ModelVersion":
            self.versions.reconcile(ns, name)
        elif kind == "Model":
            self.models.reconcile(ns, name)
        else:
            self.endpoints.reconcile(ns, name)

    def endpoints_of_model(self, namespace: str, model: str) -> None:
        for ns, name in self.store.model_keys("ModelEndpoint", namespace, model):
            self.queue.add(("ModelEndpoint", ns, name))

    def versions_of_model(self, namespace: str, model: str) -> None:
        for ns, name in self.store.model_keys("ModelVersion", namespace, model):
            self.queue.add(("ModelVersion", ns, name))

    def _endpoints_of_model_threadsafe(self, namespace: str, model: str) -> None:
        assert self.queue._loop is not None
        self.queue._loop.call_soon_threadsafe(self.endpoints_of_model, namespace, model)

    def _versions_of_model_threadsafe(self, namespace: str, model: str) -> None:
        assert self.queue._loop is not None
        self.queue._loop.call_soon_threadsafe(self.versions_of_model, namespace, model)

    def update_version_gauges(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for (ns, _), model, stage in self.store.notes("ModelVersion"):  # 10,000 versions, none unpickled
            k = (ns, model or "", stage or "unknown")
            counts[k] = counts.get(k, 0) + 1
        metrics.VERSIONS.clear()
        for (ns, model, stage), n in counts.items():
            metrics.VERSIONS.labels(ns, model, stage).set(n)


class NoEssence(kopf.DiffBaseStorage):
    """kopf builds every object's "essence" (a deep copy without metadata and status) on every event,
    to find what changed for on.create/on.update/on.field handlers. This operator registers only
    on.event handlers, which never read it; the copies were the biggest share of a restart's CPU
    (22,000 listed objects at 10,000 / 2,000). tests/test_activity.py checks no such handler exists."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


OP: Operator | None = None
PAUSE = PauseSignal()  # kopf's peering pause (HA): our own work runs only while it is off
install_pause_hook(PAUSE)


def _op() -> Operator:
    if OP is None:
        raise kopf.TemporaryError("operator is starting", delay=1)
    return OP


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OP
    limit_malloc_arenas()  # before the work queue's and the verifier's threads exist
    # The event loop thread (kopf's watch events) gives the GIL up at every socket call and waits up to
    # the switch interval to get it back from a reconcile thread: at the default 5 ms, a weight change
    # that arrived during a drift cycle took ~200 ms to reach its route at 2,000 endpoints.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if _watch_gc not in gc.callbacks:
        gc.callbacks.append(_watch_gc)
    heapreport.install()
    cfg = Settings.load()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = int(os.environ.get("MODELVERSIONING_WATCH_TIMEOUT", "600"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    # kopf keeps a worker task per object for this long after its last event (default 5 s). Our
    # handlers only cache and enqueue, so a worker is cheap to start again; after a restart's listing
    # of 22,000 objects every one of them would otherwise be alive at once.
    settings.queueing.idle_timeout = 1.0
    settings.persistence.diffbase_storage = NoEssence()
    # kopf's initial listing is one LIST per kind unless chunked: 10,000 ModelVersions were one
    # ~100 MB response, decoded at once, and a restarted operator stayed 200 MiB bigger after it
    settings.watching.chunk_size = LIST_PAGE
    OP = Operator(cfg, Kube(load_api_client()))
    OP.queue.start(paused=True)
    if settings.peering.standalone:  # with peering a replica may be a standby: it lists once active
        await prime_at_startup(OP)
    # list, then reconcile, only while kopf's peering lets this replica act (always, without peering)
    OP.activity = asyncio.create_task(  # keep a reference: unreferenced tasks may vanish
        run_while_active(
            PAUSE,
            OP.queue,
            partial(prime_unless_fresh, OP),
            partial(enqueue_all, OP),
            partial(_resync_loop, OP),
        )
    )
    port = os.environ.get("MODELVERSIONING_METRICS_PORT")
    if port:
        metrics.serve(int(port))
    log.info("modelversioning operator started (routers: %s)", ", ".join(cfg.serving.enabled_routers))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if OP is not None:
        if OP.activity is not None:
            OP.activity.cancel()
        await OP.queue.stop()
        # the last reconciles' Events (e.g. a rollback's) are posted before the process exits
        await asyncio.to_thread(OP.kube.events.flush, EVENTS_FLUSH_SECONDS)


EVENTS_FLUSH_SECONDS = 5.0
SWITCH_INTERVAL = 0.001  # seconds (CPython's default: 0.005)
FRESH_PRIME_SECONDS = 30.0  # startup's listing stands in for the first activation's within this time


async def prime_at_startup(op: Operator) -> None:
    """List everything while kopf's watches have not started yet (kopf starts them once the startup
    handlers are done): the listing gets the process to itself, and kopf's own listing that follows
    finds every object cached at the same resourceVersion, so it queues nothing. At 10,000 / 2,000 the
    two listings at once, competing for one GIL, were most of a restart's 33 s."""
    try:
        await asyncio.to_thread(prime_store, op)
    except Exception:  # noqa: BLE001 - the first activation lists again
        log.exception("listing at startup failed; listing again when active")
        return
    op.primed_at = time.monotonic()


def prime_unless_fresh(op: Operator) -> None:
    """An activation's listing, unless startup's is only seconds old (the usual single replica,
    active at once); a replica that waited as a standby lists again. Either way one more listing
    follows once the backlog is done (`_settle`)."""
    fresh = op.primed_at is not None and time.monotonic() - op.primed_at < FRESH_PRIME_SECONDS
    op.primed_at = None
    if not fresh:
        prime_store(op)


def prime_store(op: Operator) -> None:
    """Fill the cache with one LIST per watched kind before any reconcile runs, so that after a
    restart no endpoint is reconciled against a half-listed world (e.g. a version that seems missing
    and loses its traffic for a moment)."""
    namespaces: list[str | None] = [
        n for n in os.environ.get("MODELVERSIONING_NAMESPACES", "").split(",") if n
    ]
    if not namespaces:
        namespaces = [None]
    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())
    kinds: list[tuple[Resource, str | None]] = [
        (MODELVERSION, None),
        (MODELENDPOINT, None),
        (MODEL, None),
        (MODELAPPROVAL, None),
        (DEPLOYMENT, selector),
        (SERVICE, selector),
    ]
    kinds += [(res, selector) for res in platform.route_resources(op.settings)]
    kinds += [(res, None) for res in platform.read_resources(op.settings)]  # the platform's, not ours
    for res, sel in kinds:
        for ns in namespaces if res.namespaced else [None]:
            try:  # objects deleted while this replica was paused leave the cache here
                refill(op.store, res.kind, ns, partial(_listed, op.kube, res, ns, sel))
            except ApiException as e:
                log.warning("could not list %s (%s %s); relying on the watch", res.plural, e.status, e.reason)
    release_memory()  # a restarted operator holds no more than one that ran all along


LIST_PAGE = 250  # objects per LIST page, ours (prime_store) and kopf's


def _listed(
    kube: Kube, res: Resource, namespace: str | None, selector: str | None
) -> Iterator[dict[str, Any]]:
    for page in kube.list_pages(res, namespace, selector, page=LIST_PAGE):
        yield from page


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own heap (up to 8 per core), and a burst of work
    spread over the reconcile and verification threads leaves each of them holding freed pages; the
    GIL serialises our allocations anyway, so a couple of heaps are enough."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to limit
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX


def release_memory() -> None:
    """Hand the memory freed by the startup LIST (full objects, decoded pages) back to the system:
    glibc keeps freed heap pages otherwise, and the process would stay as big as its peak. Then move
    what is alive now (kopf's per-object state of the whole fleet, the cache) out of the collector's
    reach: a full collection walks every tracked object while holding the GIL, and at 10,000 / 2,000
    the occasional one stalled everything, a weight change included. Those objects are still freed
    when their last reference goes; only a reference cycle among them would stay."""
    gc.collect()
    hand_back_freed_pages()
    gc.freeze()


def hand_back_freed_pages() -> None:
    """jemalloc (the image's allocator, LD_PRELOAD): purge every arena's unused pages now rather than
    after its decay time; glibc's malloc: malloc_trim. Neither (musl, macOS): nothing to do."""
    mallctl = heapreport.jemalloc_mallctl()
    if mallctl is not None:
        mallctl(b"arena.4096.purge", None, None, None, 0)  # 4096: MALLCTL_ARENAS_ALL
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


SLOW_GC_SECONDS = 0.1
_gc_started: list[float] = []


def _watch_gc(phase: str, info: dict[str, Any]) -> None:
    """After each full collection, freeze what survived it: the next one walks only what was
    allocated since (a restart's listing of 22,000 objects made 74 full collections of 0.1-0.5 s each,
    every one walking everything listed so far). And log a collection that held the GIL for long (a
    pause every reconcile and watch event waited for)."""
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
        return
    took = time.perf_counter() - _gc_started[0] if _gc_started else 0.0  # the collection, not the freeze
    if info.get("generation") == 2:
        gc.freeze()
    if took >= SLOW_GC_SECONDS:
        log.warning(
            "garbage collection of generation %s took %.2fs (%d objects frozen)",
            info.get("generation"), took, gc.get_freeze_count(),
        )  # fmt: skip


UNFREEZE_EVERY = 60  # drift checks between full collections of the frozen heap (an hour by default)


def freeze_heap(cycle: int) -> None:
    """Each drift check: collect the young generations (cheap) and freeze what survives, so a full
    collection never walks the fleet's long-lived state at a random moment. Every UNFREEZE_EVERY-th
    check, one full collection of everything instead (reference cycles among frozen objects that
    became garbage are freed there, at a time of our choosing)."""
    if cycle % UNFREEZE_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


def enqueue_all(op: Operator) -> None:
    """After a (re)start or a resume: everything once. Endpoints first (they carry traffic: a route
    changed while the operator was down is fixed before 10,000 versions are re-checked), then Models;
    ModelVersions behind watch-driven work (their status survived the restart)."""
    for kind, low in (("ModelEndpoint", False), ("Model", False), ("ModelVersion", True)):
        for ns, name in op.store.keys(kind):
            op.queue.add((kind, ns, name), low=low)


async def _resync_loop(op: Operator) -> None:
    """While active: the drift checks, and once the startup backlog is done, one more listing and the
    memory handed back."""
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


def _track(kind: str, event: kopf.RawEvent, body: kopf.Body) -> tuple[str, str, bool] | None:
    """Cache the event's object: (namespace, name, still exists), or None when the event is kopf's
    listing of an object the cache already holds at the same resourceVersion. Then there is nothing
    new to reconcile: after a (re)start the operator's own listing primed the cache and enqueue_all
    queued everything, endpoints first; enqueuing 22,000 listed objects again, at high priority and
    in listing order (versions before endpoints), put the changed endpoints 44 s behind them."""
    op = _op()
    md = body.get("metadata", {})
    ns, name = md.get("namespace", ""), md.get("name", "")
    if event.get("type") == "DELETED":
        op.store.delete(kind, ns, name)
        return ns, name, False
    if event.get("type") is None and op.store.holds(kind, ns, name, md.get("resourceVersion")):
        return None
    op.store.upsert(kind, dict(_plain(body)))
    return ns, name, True


def _plain(body: Any) -> Any:
    if isinstance(body, dict) or hasattr(body, "items"):
        return {k: _plain(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_plain(v) for v in body]
    return body


@kopf.on.event(MODELVERSION.group, MODELVERSION.version, MODELVERSION.plural)
async def modelversion_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    op = _op()
    if (seen := _track("ModelVersion", event, body)) is None:
        return
    ns, name, _alive = seen
    op.queue.add(("ModelVersion", ns, name))
    model = body.get("spec", {}).get("model", "")
    op.endpoints_of_model(ns, model)
    if op.store.has("Model", ns, model):  # the registry records it
        op.queue.add(("Model", ns, model))


@kopf.on.event(MODEL.group, MODEL.version, MODEL.plural)
async def model_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    op = _op()
    if (seen := _track("Model", event, body)) is None:
        return
    ns, name, _alive = seen
    op.queue.add(("Model", ns, name))
    op.versions_of_model(ns, name)  # its graph and gates apply to them (or no longer do)


@kopf.on.event(MODELAPPROVAL.group, MODELAPPROVAL.version, MODELAPPROVAL.plural)
async def modelapproval_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    op = _op()
    if (seen := _track("ModelApproval", event, body)) is None:
        return
    ns = seen[0]
    spec = body.get("spec", {})
    mv = f"{spec.get('model', '')}-v{spec.get('version', '')}"
    if op.store.has("ModelVersion", ns, mv):
        op.queue.add(("ModelVersion", ns, mv))


@kopf.on.event(MODELENDPOINT.group, MODELENDPOINT.version, MODELENDPOINT.plural)
async def modelendpoint_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    op = _op()
    if (seen := _track("ModelEndpoint", event, body)) is None:
        return
    ns, name, alive = seen
    op.queue.add(("ModelEndpoint", ns, name))
    if not alive:
        op.versions_of_model(ns, body.get("spec", {}).get("model", ""))


def _child_event(kind: str) -> Any:
    async def handler(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        op = _op()
        if (seen := _track(kind, event, body)) is None:
            return
        ns = seen[0]
        owner = controller_of(dict(body))  # children are found by their controller ownerReference
        if owner:
            op.queue.add(("ModelEndpoint", ns, owner[1]))

    handler.__name__ = f"{kind.lower()}_event"
    return handler


def register_children(settings: Settings) -> None:
    """Watch our own children (label selector), the enabled routers' route kinds and what they read."""
    kopf.on.event(
        DEPLOYMENT.group, DEPLOYMENT.version, DEPLOYMENT.plural, labels=MANAGED, id="deployment_event"
    )(_child_event("Deployment"))
    kopf.on.event(SERVICE.group, SERVICE.version, SERVICE.plural, labels=MANAGED, id="service_event")(
        _child_event("Service")
    )
    for res in platform.route_resources(settings):  # each router module names its own route resource
        kopf.on.event(res.group, res.version, res.plural, labels=MANAGED, id=f"{res.kind.lower()}_event")(
            _child_event(res.kind)
        )
    for res in platform.read_resources(settings):  # what the routers read of the platform: not ours
        kopf.on.event(res.group, res.version, res.plural, id=f"{res.kind.lower()}_read")(
            platform.read_event(res.kind, _op, _track)
        )


@kopf.on.probe(id="queue")
def queue_depth(**_: Any) -> int:
    return OP.queue.pending() if OP else -1
