"""What the routers read of the platform, and what an endpoint's router can do on it.

gather: ``capabilities`` answers with the endpoint's router's capabilities here. For Gateway API they
        depend on the implementation behind each parent Gateway: Gateway spec.gatewayClassName ->
        GatewayClass status.supportedFeatures (GEP-2162), read from the watch cache, with the operator
        setting serving.gatewayApiFeatures for implementations that publish none. The decision is
        pure (render.routers.gatewayapi.gateway_capabilities).
watch:  the platform objects each enabled router reads (RouterIdentity.reads) are listed at startup
        and watched (handlers/wiring.py). When what the cache keeps of one changes (a Gateway's class,
        a class's features), every endpoint is queued at the drift check's priority: those that read
        it run (their recorded reads changed), the others are skipped without being read. Gateways
        of namespaces the operator does not watch are not seen: their parents fall back to the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from modelversioning.api.modelendpoint import ModelEndpointSpec, ParentRef
from modelversioning.api.routers import Capabilities
from modelversioning.api.settings import Settings
from modelversioning.api.wire import Resource
from modelversioning.handlers.store import Store, cacheable
from modelversioning.render.routers import (
    ParentFeatures,
    Platform,
    Router,
    UnknownRouter,
    all_routers,
    get_router,
)
from modelversioning.render.routers.gatewayapi import (
    GATEWAY,
    GATEWAYCLASS,
    parent_gateway,
    published_features,
)

# an unknown router: the endpoint's router problem says why, and nothing is written
UNKNOWN = Capabilities(writes_route=False, can_mirror=False, response_headers=False)


def capabilities(store: Store, spec: ModelEndpointSpec, namespace: str, settings: Settings) -> Capabilities:
    """The capabilities of the endpoint's router on this platform (gather)."""
    try:
        router = get_router(spec.routing.router)
    except UnknownRouter:
        return UNKNOWN
    declared = frozenset(settings.serving.gateway_api_features)
    if GATEWAYCLASS not in router.identity.reads:
        return router.capabilities(Platform(declared=declared))
    return router.capabilities(Platform(gateway_parents(store, spec, namespace), declared))


def gateway_parents(store: Store, spec: ModelEndpointSpec, namespace: str) -> tuple[ParentFeatures, ...]:
    """Per parentRef, the features its Gateway's GatewayClass publishes (None: none, or not seen)."""
    out = []
    for ref in spec.routing.parent_refs:
        at = parent_gateway(ref, namespace)
        if at is None:  # not a Gateway: its implementation cannot be looked up
            out.append(ParentFeatures(f"{ref.namespace or namespace}/{ref.name}", "", None))
            continue
        gateway = store.get(GATEWAY.kind, *at)
        name = str(((gateway or {}).get("spec") or {}).get("gatewayClassName") or "")
        cls = store.get(GATEWAYCLASS.kind, "", name) if name else None
        features = published_features(cls) if cls is not None else None
        # another namespace's Gateway: its class is not named in this endpoint's status (a tenant
        # learns no more of another namespace's objects than whether mirroring works there)
        shown = f"GatewayClass {name}" if at[0] == namespace else ""
        out.append(ParentFeatures(f"{at[0]}/{at[1]}", shown, features))
    return tuple(out)


def _enabled(settings: Settings) -> list[Router]:
    return [r for r in all_routers() if r.name in settings.serving.enabled_routers]


def route_resources(settings: Settings) -> list[Resource]:
    """The route resources of the enabled routers (watched with our label selector, and written)."""
    return [r.identity.route for r in _enabled(settings) if r.identity.route is not None]


def read_resources(settings: Settings) -> list[Resource]:
    """The platform objects the enabled routers read (watched whole: they are not ours), once each."""
    return list(dict.fromkeys(res for r in _enabled(settings) for res in r.identity.reads))


def _kept(kind: str, obj: dict[str, Any] | None) -> Any:
    """What the cache keeps of a platform object (its projection), less its resourceVersion: a change of
    anything else (a Gateway's status as routes attach) changes nothing we read."""
    if obj is None:
        return None
    kept = cacheable(kind, obj)
    kept.get("metadata", {}).pop("resourceVersion", None)
    return kept


def affected_endpoints(store: Store, kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
    """The endpoints a change of this platform object can concern. A Gateway: only the endpoints whose
    parentRefs name it (a tenant who may create Gateways must not make the whole fleet re-run). A
    GatewayClass (cluster-scoped, the platform's): every endpoint."""
    if kind != GATEWAY.kind:
        return list(store.keys("ModelEndpoint"))
    out = []
    for key in store.keys("ModelEndpoint"):
        body = store.get("ModelEndpoint", *key) or {}
        refs = ((body.get("spec") or {}).get("routing") or {}).get("parentRefs") or []
        for raw in refs:
            try:
                ref = ParentRef.model_validate(raw)
            except ValidationError:
                continue
            if parent_gateway(ref, key[0]) == (namespace, name):
                out.append(key)
                break
    return out


def read_event(kind: str, operator: Callable[[], Any], track: Callable[..., Any]) -> Any:
    """The watch handler of a platform object of `kind`: cache it (`track`, as for our own kinds); when
    what the cache keeps of it changed, queue every endpoint at low priority (see the docstring)."""

    async def handler(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        op = operator()
        md = body.get("metadata", {})
        before = op.store.get(kind, md.get("namespace", ""), md.get("name", ""))
        if (seen := track(kind, event, body)) is None:
            return
        _, ns, name, alive = seen
        if _kept(kind, before) != _kept(kind, op.store.get(kind, ns, name) if alive else None):
            for key in affected_endpoints(op.store, kind, ns, name):
                op.queue.add(("ModelEndpoint", *key), low=True)

    handler.__name__ = f"{kind.lower()}_read"
    return handler
