"""Routers: one module per router, registered here by name (spec.routing.router).

Adding a router = one module implementing `Router` + one line in `_ROUTERS`.
"""

from __future__ import annotations

from modelversioning.render.routers.base import Router, UnknownRouter
from modelversioning.render.routers.gatewayapi import GatewayApiRouter
from modelversioning.render.routers.istio import IstioRouter
from modelversioning.render.routers.none import NoneRouter

_ROUTERS: dict[str, Router] = {
    IstioRouter.name: IstioRouter(),
    GatewayApiRouter.name: GatewayApiRouter(),
    NoneRouter.name: NoneRouter(),
}


def get_router(name: str) -> Router:
    """The router called `name` ("istio", "gatewayAPI", "none"); UnknownRouter otherwise."""
    try:
        return _ROUTERS[name]
    except KeyError:
        raise UnknownRouter(name, _ROUTERS) from None


def router_names() -> list[str]:
    return list(_ROUTERS)


__all__ = [
    "GatewayApiRouter",
    "IstioRouter",
    "NoneRouter",
    "Router",
    "UnknownRouter",
    "get_router",
    "router_names",
]
