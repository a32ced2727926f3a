"""The `gatewayAPI` router: one HTTPRoute (gateway.networking.k8s.io/v1) named after the endpoint.

One rule matching every path; each backendRef is the Service of the slot serving a variant with its
weight and a ResponseHeaderModifier filter naming the model, version, digest prefix
and variant; a shadow variant gets a rule-level RequestMirror filter with `percent`.
Only standard-channel (v1.6.1) fields are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelversioning.render import naming
from modelversioning.render.inputs import RenderError, RouteInput
from modelversioning.render.routers.base import accumulate, route_manifest, variant_key
from modelversioning.render.routers.policy import check_route_policy
from modelversioning.render.values import VariantTarget

# HTTPRoute spec.hostnames[] pattern of the v1.6.1 CRD (no IPs, no ports, optional leading "*.").
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
BACKEND_WEIGHT_DEFAULT = 1  # the CRD's default for an omitted backendRefs[].weight


class GatewayApiRouter:
    name = "gatewayAPI"
    group = "gateway.networking.k8s.io"
    version = "v1"
    api_version = f"{group}/{version}"
    kind = "HTTPRoute"
    plural = "httproutes"

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
            "filters": [
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {
                        "set": [{"name": k, "value": v} for k, v in naming.response_headers(target)]
                    },
                }
            ],
        }

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
            "traffic by backendRef weight across the per-version Services of the variants and mirrors a "
            "percentage of it to the shadow variant (RequestMirror)"
        )
