"""The `gatewayAPI` router: one HTTPRoute (gateway.networking.k8s.io/v1) named after the endpoint.

One rule matching every path; each backendRef is the Service of the slot serving a variant with its
weight and a ResponseHeaderModifier filter naming the model, version, digest prefix
and variant; a shadow variant gets a rule-level RequestMirror filter with `percent`.
Only standard-channel (v1.6.1) fields are used.

A closed route (domain.revocation): HTTPRoute has no direct response, so its one rule's only backendRef
is a Service the endpoint controls that selects no pods (`<endpoint>-closed`, a companion written
before the route), with a rule-level ResponseHeaderModifier setting x-model-unavailable. The gateway
answers for a backend without endpoints: the spec says SHOULD 503 (500 for an invalid backendRef).

RequestMirror is an extended feature: an implementation may not support it (Traefik 3.7 answers 500 to
every request of a rule with a filter it does not support). Whether it does is read from the
GatewayClass of each parent Gateway, status.supportedFeatures (GEP-2162), when the implementation
publishes it; else from the operator setting serving.gatewayApiFeatures (``gateway_capabilities``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ParentRef
from modelversioning.api.routers import Capabilities, RouterIdentity, routing_rule
from modelversioning.api.wire import Resource
from modelversioning.render import naming
from modelversioning.render.inputs import RenderError, RouteInput
from modelversioning.render.naming import closed_service_name
from modelversioning.render.routers.base import (
    ParentFeatures,
    Platform,
    RouterBase,
    accumulate,
    route_manifest,
    variant_key,
)
from modelversioning.render.routers.policy import check_route_policy
from modelversioning.render.values import VariantTarget

# HTTPRoute spec.hostnames[] pattern of the v1.6.1 CRD: lowercase DNS names, optionally "*."-prefixed; no
# IPs, no ports. Checked by the ModelEndpoint CRD (CEL, spelled for CEL) and again when rendering.
GATEWAY_HOSTNAME = r"^([*][.])?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HOSTNAME = re.compile(GATEWAY_HOSTNAME)
BACKEND_WEIGHT_DEFAULT = 1  # the CRD's default for an omitted backendRefs[].weight
GROUP = "gateway.networking.k8s.io"
GATEWAY = Resource(GROUP, "v1", "gateways", "Gateway")
GATEWAYCLASS = Resource(GROUP, "v1", "gatewayclasses", "GatewayClass", namespaced=False)
MIRROR_FEATURE = "HTTPRouteRequestMirror"  # GEP-2162 feature name of the RequestMirror filter


class GatewayApiRouter(RouterBase):
    identity = RouterIdentity(
        name="gatewayAPI",
        route=Resource(GROUP, "v1", "httproutes", "HTTPRoute"),
        capabilities=Capabilities(writes_route=True, can_mirror=True, response_headers=True),
        reads=(GATEWAY, GATEWAYCLASS),  # which implementation serves each parent, and what it supports
        spec_rules=(
            routing_rule(
                "gatewayAPI",
                f"self.hosts.all(h, h.matches('{GATEWAY_HOSTNAME}'))",
                "routing.hosts of the gatewayAPI router must be lowercase DNS names, optionally "
                "'*.'-prefixed (no IP addresses, no ports)",
                field_path=".hosts",
            ),
            routing_rule(
                "gatewayAPI",
                "size(self.parentRefs) > 0",
                "routing.parentRefs is required for the gatewayAPI router",
            ),
        ),
    )

    def capabilities(self, platform: Platform) -> Capabilities:
        return gateway_capabilities(platform)

    def render(self, inp: RouteInput) -> dict[str, Any] | None:
        inp.check()
        routing = inp.spec.routing
        if not routing.parent_refs:
            raise RenderError(
                f"ModelEndpoint {inp.endpoint.name}: the gatewayAPI router needs routing.parentRefs"
            )
        bad = [h for h in routing.hosts if len(h) > 253 or not _HOSTNAME.match(h)]
        if bad:
            raise RenderError(
                f"ModelEndpoint {inp.endpoint.name}: not valid HTTPRoute hostnames (lowercase DNS names, "
                f"optionally '*.'-prefixed, no IPs or ports): {', '.join(bad)}"
            )
        check_route_policy(inp)  # hosts; parents of other namespaces need the Gateway's allowedRoutes
        spec: dict[str, Any] = {"parentRefs": [p.to_k8s() for p in routing.parent_refs]}
        if routing.hosts:
            spec["hostnames"] = list(routing.hosts)
        rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
        if inp.closed:
            rule["filters"] = [_set_headers([(R.HEADER_UNAVAILABLE, inp.closed)])]
            rule["backendRefs"] = [{"name": closed_service_name(inp.endpoint.name), "port": inp.spec.port}]
            spec["rules"] = [rule]
            return route_manifest(self, inp, spec)
        if inp.mirror is not None:
            rule["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": inp.mirror.service, "port": inp.spec.port},
                        "percent": inp.mirror_percent,
                    },
                }
            ]
        rule["backendRefs"] = [self._backend(inp, t) for t in inp.destinations]
        spec["rules"] = [rule]
        return route_manifest(self, inp, spec)

    @staticmethod
    def _backend(inp: RouteInput, target: VariantTarget) -> dict[str, Any]:
        return {
            "name": target.service,
            "port": inp.spec.port,
            "weight": target.weight,
            "filters": [_set_headers(naming.response_headers(target))],
        }

    def companions(self, inp: RouteInput) -> list[dict[str, Any]]:
        """A closed route's backend: a Service without a selector, so Kubernetes gives it no endpoints
        (an EndpointSlice someone in the namespace writes by hand for it would be routed to, as would
        any edit of the route itself), controlled by the endpoint."""
        if not inp.closed:
            return []
        labels = naming.endpoint_labels(inp.endpoint.name, inp.spec.model)
        md = naming.metadata(closed_service_name(inp.endpoint.name), inp.endpoint, labels)
        port = {"name": naming.PORT_NAME, "appProtocol": "http", "port": inp.spec.port, "protocol": "TCP"}
        return [{"apiVersion": "v1", "kind": "Service", "metadata": md, "spec": {"ports": [port]}}]

    def weights(self, route: Mapping[str, Any]) -> dict[str, int]:
        """Weights of the backendRefs of the first rule (the one this router writes); an
        omitted weight is the CRD default, 1."""
        rules = (route.get("spec") or {}).get("rules") or []
        if not rules:
            return {}
        out: dict[str, int] = {}
        for ref in rules[0].get("backendRefs") or []:
            headers: dict[str, Any] = {}
            for f in ref.get("filters") or []:
                if f.get("type") == "ResponseHeaderModifier":
                    for h in (f.get("responseHeaderModifier") or {}).get("set") or []:
                        headers[str(h.get("name", ""))] = h.get("value")
            weight = int(ref.get("weight", BACKEND_WEIGHT_DEFAULT))
            accumulate(out, variant_key(headers, str(ref.get("name", ""))), weight)
        return out

    def services(self, route: Mapping[str, Any]) -> dict[str, int]:
        """Service -> weight of every backendRef of every rule; a RequestMirror backend counts
        (weight 0)."""
        out: dict[str, int] = {}
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                accumulate(out, str(ref.get("name", "")), int(ref.get("weight", BACKEND_WEIGHT_DEFAULT)))
            for f in rule.get("filters") or []:
                if f.get("type") == "RequestMirror":
                    name = ((f.get("requestMirror") or {}).get("backendRef") or {}).get("name")
                    if name:
                        accumulate(out, str(name), 0)
        return out

    def describe(self) -> str:
        return (
            "gatewayAPI: an HTTPRoute named after the endpoint, attached to routing.parentRefs, splits live "
            "traffic by backendRef weight across the per-version Services of the variants"
        )


def _set_headers(headers: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": k, "value": v} for k, v in headers]},
    }


# ------------------------------------------------------------------------ implementation features


def parent_gateway(ref: ParentRef, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Gateway a parentRef names; None for another kind of parent (a mesh
    Service, ...), whose implementation the operator cannot look up."""
    if (ref.group or GROUP) != GROUP or (ref.kind or GATEWAY.kind) != GATEWAY.kind:
        return None
    return ref.namespace or namespace, ref.name


def published_features(gateway_class: Mapping[str, Any]) -> frozenset[str] | None:
    """The features a GatewayClass publishes (status.supportedFeatures: objects with `name` since
    v1.1, plain strings before); None when it publishes none (absent or empty: the implementation
    does not implement GEP-2162, or has not reported yet)."""
    raw = (gateway_class.get("status") or {}).get("supportedFeatures") or []
    names = {str(f.get("name", "")) if isinstance(f, Mapping) else str(f) for f in raw}
    names.discard("")
    return frozenset(names) or None


def gateway_capabilities(platform: Platform) -> Capabilities:
    """Gateway API capabilities on this platform. Per parent Gateway, its features are those its
    GatewayClass publishes, else (nothing published, or the Gateway or class not visible to the
    operator) those declared by the operator setting serving.gatewayApiFeatures. The route may carry
    a mirror only if every parent supports HTTPRouteRequestMirror; without parents, the setting says."""
    parents = platform.parents or (ParentFeatures("", "", None),)
    lacking = [
        p for p in parents if MIRROR_FEATURE not in (platform.declared if p.features is None else p.features)
    ]
    if not lacking:
        return Capabilities(writes_route=True, can_mirror=True, response_headers=True)
    published = [p for p in lacking if p.features is not None]
    first = published[0] if published else None
    why = (
        f"{first.source + ' of ' if first.source else 'the GatewayClass of '}Gateway {first.parent} "
        f"does not list {MIRROR_FEATURE} in status.supportedFeatures"
        if first is not None
        else f"the platform has not declared {MIRROR_FEATURE} support, operator setting "
        "serving.gatewayApiFeatures"
    )
    return Capabilities(writes_route=True, can_mirror=False, response_headers=True, why_no_mirror=why)
