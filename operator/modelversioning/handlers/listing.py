"""The operator's own LISTs: they fill the watch cache before anything is reconciled (at startup,
and again when a paused replica becomes active), after which every object is queued once."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelversioning.api.wire import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    CLUSTERMODELRUNTIME,
    MODEL,
    MODELAPPROVAL,
    MODELPLATFORMPOLICY,
    MODELRUNTIME,
    NAMESPACE,
)
from modelversioning.handlers import platform
from modelversioning.handlers.activity import refill
from modelversioning.handlers.kube import (
    DEPLOYMENT,
    MODELENDPOINT,
    MODELVERSION,
    POD,
    SERVICE,
    Kube,
    Resource,
)
from modelversioning.handlers.memory import release_memory
from modelversioning.handlers.runtime import MANAGED, Operator

log = logging.getLogger("modelversioning")

FRESH_PRIME_SECONDS = 30.0  # startup's listing stands in for the first activation's within this time
LIST_PAGE = 250  # objects per LIST page, ours (prime_store) and kopf's


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
    follows once the backlog is done (`resync._settle`)."""
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
        (MODELPLATFORMPOLICY, None),  # cluster-scoped: the floors, before anything is decided
        (MODELRUNTIME, None),  # the runtime catalog, before a version resolves from it
        (CLUSTERMODELRUNTIME, None),
        (NAMESPACE, None),
        (ADMISSION_POLICY, None),  # cluster-scoped: whether approvals count, before any is counted
        (ADMISSION_BINDING, None),
        (DEPLOYMENT, selector),
        (SERVICE, selector),
        (POD, selector),  # the slots' pods (the template carries the managed-by label)
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


def _listed(
    kube: Kube, res: Resource, namespace: str | None, selector: str | None
) -> Iterator[dict[str, Any]]:
    for page in kube.list_pages(res, namespace, selector, page=LIST_PAGE):
        yield from page


def enqueue_all(op: Operator) -> None:
    """After a (re)start or a resume: everything once. Endpoints first (they carry traffic: a route
    changed while the operator was down is fixed before 10,000 versions are re-checked), then Models;
    ModelVersions behind watch-driven work (their status survived the restart)."""
    for kind, low in (("ModelEndpoint", False), ("Model", False), ("ModelVersion", True)):
        for ns, name in op.store.keys(kind):
            op.queue.add((kind, ns, name), low=low)
