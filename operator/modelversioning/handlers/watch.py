"""What a watch event does (kopf's on.event handlers): cache the object in the Store and queue the
reconciles it concerns. Nothing here decides anything; ``wiring`` registers these with kopf."""

from __future__ import annotations

import time
from typing import Any

import kopf

from modelversioning.api.wire import CLUSTERMODELRUNTIME, LABEL_SLOT
from modelversioning.handlers.instrument import ROUTE_REACTION
from modelversioning.handlers.runtime import Operator, current
from modelversioning.handlers.store import controller_of


def track(kind: str, event: kopf.RawEvent, body: kopf.Body) -> tuple[Operator, str, str, bool] | None:
    """Cache the event's object: (the operator, namespace, name, still exists), or None when the
    event is kopf's listing of an object the cache already holds at the same resourceVersion. Then
    there is nothing new to reconcile: after a (re)start the operator's own listing primed the cache
    and enqueue_all queued everything, endpoints first; enqueuing 22,000 listed objects again, at high
    priority and in listing order (versions before endpoints), put the changed endpoints 44 s behind
    them."""
    op = current()
    md = body.get("metadata", {})
    ns, name = md.get("namespace", ""), md.get("name", "")
    if event.get("type") == "DELETED":
        op.store.delete(kind, ns, name, gone_at=md.get("resourceVersion"))
        return op, ns, name, False
    if event.get("type") is None and op.store.holds(kind, ns, name, md.get("resourceVersion")):
        return None
    # kopf's Body is a mapping over the event's decoded JSON: its values are plain dicts and lists,
    # and the Store keeps a copy of what it caches
    op.store.upsert(kind, dict(body))
    return op, ns, name, True


async def modelversion_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if (seen := track("ModelVersion", event, body)) is None:
        return
    op, ns, name, _alive = seen
    op.queue.add(("ModelVersion", ns, name))
    model = body.get("spec", {}).get("model", "")
    op.endpoints_of_model(ns, model)
    if op.store.has("Model", ns, model):  # the registry records it
        op.queue.add(("Model", ns, model))


async def model_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if (seen := track("Model", event, body)) is None:
        return
    op, ns, name, _alive = seen
    op.queue.add(("Model", ns, name))
    op.versions_of_model(ns, name)  # its graph and gates apply to them (or no longer do)


async def modelapproval_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if (seen := track("ModelApproval", event, body)) is None:
        return
    op, ns, _name, _alive = seen
    spec = body.get("spec", {})
    mv = f"{spec.get('model', '')}-v{spec.get('version', '')}"
    if op.store.has("ModelVersion", ns, mv):
        op.queue.add(("ModelVersion", ns, mv))


async def modelendpoint_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    arrived = time.monotonic()  # the route write this event causes is timed from here
    if (seen := track("ModelEndpoint", event, body)) is None:
        return
    op, ns, name, alive = seen
    ROUTE_REACTION.arrived(ns, name, arrived)
    op.queue.add(("ModelEndpoint", ns, name))
    if not alive:
        op.versions_of_model(ns, body.get("spec", {}).get("model", ""))


def runtime_event(kind: str) -> Any:
    """The handler of a catalog kind: a ModelRuntime's change concerns the versions of its namespace, a
    ClusterModelRuntime's every namespace's (queued low: a resolved version reads no catalog, so it keeps
    what it has; one that could not resolve may now)."""
    cluster = kind == CLUSTERMODELRUNTIME.kind

    async def handler(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if (seen := track(kind, event, body)) is None:
            return
        op, ns, _name, _alive = seen
        for vns, name in op.store.keys("ModelVersion", None if cluster else ns):
            op.queue.add(("ModelVersion", vns, name), low=True)

    handler.__name__ = f"{kind.lower()}_event"
    return handler


def child_event(kind: str) -> Any:
    """The handler of a child kind (Deployment, Service, a router's route): its endpoint re-runs."""

    async def handler(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if (seen := track(kind, event, body)) is None:
            return
        op, ns, _name, _alive = seen
        owner = controller_of(dict(body))  # children are found by their controller ownerReference
        if owner:
            op.queue.add(("ModelEndpoint", ns, owner[1]))

    handler.__name__ = f"{kind.lower()}_event"
    return handler


async def pod_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """A slot's pod changed (its status: the kubelet's): the endpoint of its slot re-runs. Pods are
    owned by ReplicaSets; the slot label names the Deployment, whose controller is the endpoint."""
    if (seen := track("Pod", event, body)) is None:
        return
    op, ns, _name, _alive = seen
    slot = (body.get("metadata", {}).get("labels") or {}).get(LABEL_SLOT)
    dep = op.store.get("Deployment", ns, slot) if slot else None
    owner = controller_of(dep) if dep is not None else None
    if owner:
        op.queue.add(("ModelEndpoint", ns, owner[1]))
