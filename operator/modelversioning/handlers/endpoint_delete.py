"""A ModelEndpoint's deletion, route first: gather -> ``domain.endpoint_delete.decide_deletion`` -> act.

The endpoint carries ``wire.DRAIN_FINALIZER`` (added by its first reconcile), so a deletion leaves it
in place with a deletionTimestamp; each reconcile of it then deletes the route, waits (requeue, never a
sleep) for the route's deletion to be observed plus the drain grace, deletes the slots and releases
the finalizer. Every delete names the UID of the object we observed as ours.
"""

from __future__ import annotations

import logging
from typing import Any

from modelversioning.api.settings import Settings
from modelversioning.domain import endpoint_delete as D
from modelversioning.domain.timestamps import epoch, rfc3339_ms
from modelversioning.handlers.endpoint_parse import taken
from modelversioning.handlers.kube import (
    DEPLOYMENT,
    MODELENDPOINT,
    ROUTE_RESOURCES,
    SERVICE,
    Kube,
    PreconditionFailed,
    resource_of,
)
from modelversioning.handlers.store import Store
from modelversioning.render import EndpointRef

log = logging.getLogger(__name__)
KIND = "ModelEndpoint"


def ensure_finalizer(kube: Kube, store: Store, body: dict[str, Any]) -> None:
    """Add our finalizer to a live endpoint (checked against the resourceVersion we read)."""
    md = body["metadata"]
    new = D.finalizers_for(tuple(md.get("finalizers") or ()))
    if new is None:
        return
    written = kube.set_finalizers(
        MODELENDPOINT, md["namespace"], md["name"], list(new), md["resourceVersion"]
    )
    if written:  # read-your-writes: the next reconcile does not add it again
        store.upsert(KIND, written, observed=False)


def gather(store: Store, settings: Settings, body: dict[str, Any], now: float) -> D.DeletionFacts:
    md = body["metadata"]
    ns, uid = md["namespace"], md.get("uid", "")
    enabled = settings.serving.enabled_routers
    routes = tuple(
        (res.kind, str(r["metadata"]["name"]))
        for rname, res in ROUTE_RESOURCES.items()
        if rname in enabled
        for r in store.owned(res.kind, ns, uid)
    )
    slots = frozenset(n for k in (DEPLOYMENT.kind, SERVICE.kind) for n in store.owned_names(k, ns, uid))
    status = body.get("status") or {}
    draining = {str(d.get("name")): epoch(str(d.get("since", "")), now) for d in status.get("draining") or []}
    return D.DeletionFacts(
        finalizers=tuple(md.get("finalizers") or ()),
        routes=routes,
        slots=slots,
        draining=draining,
        now=now,
        drain_seconds=settings.serving.drain_seconds,
    )


def act(
    kube: Kube,
    store: Store,
    body: dict[str, Any],
    plan: D.DeletionPlan,
) -> float | None:
    """Execute the deletion plan; returns when to look again (None: done, or nothing held)."""
    md = body["metadata"]
    ns, name = md["namespace"], md["name"]
    ref = EndpointRef(name=name, namespace=ns, uid=md.get("uid", ""))
    if plan.phase == D.NOT_HELD:
        return None
    log.info("ModelEndpoint %s/%s %s", ns, name, plan.message)
    for kind, rname in plan.delete_routes:
        route = store.get(kind, ns, rname)
        uid = str((route or {}).get("metadata", {}).get("uid") or "") or None
        try:
            if not kube.delete(resource_of(kind), ns, rname, uid):
                store.delete(kind, ns, rname)  # already gone: nothing to wait for
        except PreconditionFailed as e:  # another object of the name now: not ours to delete
            log.warning("%s; not deleted", e)
            store.delete(kind, ns, rname)
    done = all([delete_slot(kube, store, ref, slot) for slot in plan.delete_slots])
    rv = _write_draining(kube, store, body, plan.draining) or md["resourceVersion"]
    if plan.finalizers is not None and done:
        kube.set_finalizers(MODELENDPOINT, ns, name, list(plan.finalizers), rv)
        return None
    return plan.requeue_after if done else (plan.requeue_after or 1.0)


def _write_draining(kube: Kube, store: Store, body: dict[str, Any], draining: dict[str, float]) -> str:
    """status.draining as the plan records it (the grace survives a restart); the resourceVersion
    written ("" when nothing changed), which the finalizer patch that may follow is checked against."""
    md = body["metadata"]
    old = dict(body.get("status") or {})
    entries = [{"name": s, "since": rfc3339_ms(t)} for s, t in sorted(draining.items())]
    if (old.get("draining") or []) == entries:
        return ""
    new = {k: v for k, v in old.items() if k != "draining"}
    if entries:
        new["draining"] = entries
    stored = kube.patch_status(MODELENDPOINT, md["namespace"], md["name"], new, old)
    store.upsert(KIND, stored)
    return str((stored.get("metadata") or {}).get("resourceVersion") or "")


def delete_slot(kube: Kube, store: Store, ref: EndpointRef, slot: str) -> bool:
    """Delete a slot's Deployment and Service: only the objects we control, by UID (a Service of
    the slot's name that someone else made is left alone). False: one of them changed hands."""
    log.info("deleting slot %s/%s", ref.namespace, slot)
    done = True
    for res in (DEPLOYMENT, SERVICE):
        obj = store.get(res.kind, ref.namespace, slot)
        if obj is None or taken(ref.uid, obj):
            continue  # gone already, or not ours
        try:
            kube.delete(res, ref.namespace, slot, str(obj["metadata"].get("uid") or "") or None)
        except PreconditionFailed as e:
            log.warning("%s; not deleted", e)
            done = False
            continue
        store.delete(res.kind, ref.namespace, slot)
    return done
