"""The `istio` router: one VirtualService (networking.istio.io/v1) named after the endpoint.

One HTTP route; each destination is the Service (FQDN) of the slot serving a variant with its weight and
response headers naming the model, version, digest prefix and variant; a shadow
variant gets `mirror` + `mirrorPercentage`. A closed route (domain.revocation) is one HTTP route with a
`directResponse` (503) and the response header x-model-unavailable. Hosts and gateways are checked
against the platform's allow-lists and the VirtualService is exported only to its own namespace (plus
the namespaces of the allowed gateways it binds to): see ``routers.policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.routers import Capabilities, RouterIdentity, routing_rule
from modelversioning.api.wire import Resource
from modelversioning.render import naming
from modelversioning.render.inputs import RenderError, RouteInput
from modelversioning.render.routers.base import (
    RouterBase,
    accumulate,
    closed_body,
    route_manifest,
    variant_key,
)
from modelversioning.render.routers.policy import check_route_policy, istio_export_to
from modelversioning.render.values import VariantTarget


class IstioRouter(RouterBase):
    identity = RouterIdentity(
        name="istio",
        route=Resource("networking.istio.io", "v1", "virtualservices", "VirtualService"),
        capabilities=Capabilities(writes_route=True, can_mirror=True, response_headers=True),
        spec_rules=(
            routing_rule("istio", "size(self.hosts) > 0", "routing.hosts is required for the istio router"),
        ),
    )

    def render(self, inp: RouteInput) -> dict[str, Any] | None:
        inp.check()
        routing = inp.spec.routing
        if not routing.hosts:
            raise RenderError(f"ModelEndpoint {inp.endpoint.name}: the istio router needs routing.hosts")
        check_route_policy(inp, routing.gateways)
        spec: dict[str, Any] = {"hosts": list(routing.hosts)}
        if routing.gateways:
            spec["gateways"] = list(routing.gateways)
        spec["exportTo"] = istio_export_to(inp)
        if inp.closed:  # no destination: Envoy answers itself, with the header that says why
            spec["http"] = [_closed_http(inp)]
            return route_manifest(self, inp, spec)
        http: dict[str, Any] = {"route": [self._destination(inp, t) for t in inp.destinations]}
        if inp.mirror is not None:
            http["mirror"] = self._service(inp, inp.mirror)
            http["mirrorPercentage"] = {"value": float(inp.mirror_percent)}
        spec["http"] = [http]
        return route_manifest(self, inp, spec)

    @staticmethod
    def _service(inp: RouteInput, target: VariantTarget) -> dict[str, Any]:
        return {
            "host": naming.service_host(target.service, inp.endpoint.namespace),
            "port": {"number": inp.spec.port},
        }

    def _destination(self, inp: RouteInput, target: VariantTarget) -> dict[str, Any]:
        return {
            "destination": self._service(inp, target),
            "weight": target.weight,
            "headers": {"response": {"set": dict(naming.response_headers(target))}},
        }

    def weights(self, route: Mapping[str, Any]) -> dict[str, int]:
        """Weights of the first HTTP route (the one this router writes). An omitted weight
        means 100 for a lone destination and 0 otherwise, as in Istio."""
        http = (route.get("spec") or {}).get("http") or []
        if not http:
            return {}
        destinations = http[0].get("route") or []
        out: dict[str, int] = {}
        for d in destinations:
            host = str((d.get("destination") or {}).get("host", ""))
            headers = ((d.get("headers") or {}).get("response") or {}).get("set") or {}
            default = 100 if len(destinations) == 1 else 0
            accumulate(out, variant_key(headers, host.split(".", 1)[0]), int(d.get("weight", default)))
        return out

    def services(self, route: Mapping[str, Any]) -> dict[str, int]:
        """Service -> weight of every destination of every HTTP route; a mirror counts (weight 0)."""
        out: dict[str, int] = {}
        for http in (route.get("spec") or {}).get("http") or []:
            destinations = http.get("route") or []
            for d in destinations:
                default = 100 if len(destinations) == 1 else 0
                svc = _service_name(str((d.get("destination") or {}).get("host", "")))
                accumulate(out, svc, int(d.get("weight", default)))
            if http.get("mirror"):
                accumulate(out, _service_name(str(http["mirror"].get("host", ""))), 0)
        return out

    def describe(self) -> str:
        return (
            "istio: a VirtualService named after the endpoint splits live traffic by weight across the "
            "per-version Services of the variants"
        )


def _closed_http(inp: RouteInput) -> dict[str, Any]:
    return {
        "directResponse": {"status": R.UNAVAILABLE_STATUS, "body": {"string": closed_body(inp)}},
        "headers": {"response": {"set": {R.HEADER_UNAVAILABLE: inp.closed}}},
    }


def _service_name(host: str) -> str:
    """The Service a destination host names (`svc`, `svc.ns` or `svc.ns.svc.<domain>`)."""
    return host.split(".", 1)[0]
