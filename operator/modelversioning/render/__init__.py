"""Pure rendering: ModelEndpoint/ModelVersion specs -> desired child manifests (plain dicts).

Nothing here talks to Kubernetes; the handlers apply what these functions return.
"""

from modelversioning.render.deployment import render_deployment, with_resolved_runtime
from modelversioning.render.inputs import RenderError, RouteInput, check_pin
from modelversioning.render.naming import child_name, route_name, selector_labels, service_host, slot_name
from modelversioning.render.routers import Router, UnknownRouter, get_router, router_names
from modelversioning.render.service import render_service
from modelversioning.render.values import EndpointRef, VariantTarget

__all__ = [
    "EndpointRef",
    "RenderError",
    "RouteInput",
    "Router",
    "UnknownRouter",
    "VariantTarget",
    "check_pin",
    "child_name",
    "get_router",
    "render_deployment",
    "render_service",
    "route_name",
    "router_names",
    "selector_labels",
    "service_host",
    "slot_name",
    "with_resolved_runtime",
]
