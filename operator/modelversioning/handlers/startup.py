"""The operator's start and end (kopf's startup and cleanup handlers): kopf's settings, the one
``Operator``, the listing before kopf's watches, our own work while kopf lets this replica act, and
the metrics server."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from functools import partial
from typing import Any

import kopf

from modelversioning import metrics
from modelversioning.api.settings import Settings
from modelversioning.handlers import heapreport, listing, resync, runtime
from modelversioning.handlers.activity import run_while_active
from modelversioning.handlers.kube import Kube, load_api_client
from modelversioning.handlers.memory import limit_malloc_arenas, watch_gc
from modelversioning.handlers.runtime import PAUSE, Operator

log = logging.getLogger("modelversioning")

EVENTS_FLUSH_SECONDS = 5.0
SWITCH_INTERVAL = 0.001  # seconds (CPython's default: 0.005)


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


async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    limit_malloc_arenas()  # before the work queue's and the verifier's threads exist
    # The event loop thread (kopf's watch events) gives the GIL up at every socket call and waits up to
    # the switch interval to get it back from a reconcile thread: at the default 5 ms, a weight change
    # that arrived during a drift cycle took ~200 ms to reach its route at 2,000 endpoints.
    sys.setswitchinterval(SWITCH_INTERVAL)
    watch_gc()
    heapreport.install()
    cfg = Settings.load()
    configure_kopf(settings)
    op = runtime.OP = Operator(cfg, Kube(load_api_client()))
    op.queue.start(paused=True)
    if settings.peering.standalone:  # with peering a replica may be a standby: it lists once active
        await listing.prime_at_startup(op)
    # list, then reconcile, only while kopf's peering lets this replica act (always, without peering)
    op.activity = asyncio.create_task(  # keep a reference: unreferenced tasks may vanish
        run_while_active(
            PAUSE,
            op.queue,
            partial(listing.prime_unless_fresh, op),
            partial(listing.enqueue_all, op),
            partial(resync.run, op),
        )
    )
    port = os.environ.get("MODELVERSIONING_METRICS_PORT")
    if cfg.region:  # unset: no info series (the exposition is as without regions)
        metrics.OPERATOR_INFO.labels(cfg.region).set(1)
    if port:
        metrics.serve(int(port))
    log.info(
        "modelversioning operator started (routers: %s%s)",
        ", ".join(cfg.serving.enabled_routers),
        f"; region {cfg.region}" if cfg.region else "",
    )


def configure_kopf(settings: kopf.OperatorSettings) -> None:
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
    settings.watching.chunk_size = listing.LIST_PAGE


async def cleanup(**_: Any) -> None:
    op = runtime.OP
    if op is not None:
        if op.activity is not None:
            op.activity.cancel()
        await op.queue.stop()
        # the last reconciles' Events (e.g. a rollback's) are posted before the process exits
        await asyncio.to_thread(op.kube.events.flush, EVENTS_FLUSH_SECONDS)
