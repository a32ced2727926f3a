"""PromQL for the built-in metric templates, and variable substitution in user queries.

Variables: {{namespace}}, {{endpoint}}, {{variant}}, {{version}}, {{service}} (the Service of the slot
that serves the variant now), {{window}} (the metric's rate window). Values are label values we
control or validated names; they are escaped for a PromQL double-quoted string anyway. ``{{NAME|re}}``
is the value escaped for a regex matcher too (a literal inside ``=~"..."``).

Built-in templates, per source (what they read). An error rate's numerator is `... or vector(0)`: a
variant without a single 5xx has no 5xx series at all, and that is a rate of 0, not "no data"; no
requests at all is still no data (inconclusive).

- modelServer: error-rate = `modelserver_requests_total{handler="predict"}` with code 5xx / all;
  latency = `modelserver_request_duration_seconds_bucket{handler="predict"}`;
- traefik: `traefik_service_requests_total` of the slot's Service behind the endpoint's own HTTPRoute
  (5xx / all) and `traefik_service_request_duration_seconds_bucket`. Traefik 3.7's Gateway provider
  labels a backend `<router>-svc-<backend namespace>-<Service>-<index>@kubernetesgateway`, the router
  being `httproute-<namespace>-<route>-gw-<gateway namespace>-<gateway>-ep-<entryPoint>-<rule index>-
  <20 hex>` (pkg/provider/kubernetes/gateway: makeRouterName's `%.10x` formats the first 10 bytes of a
  sha256, so 20 hex digits; loadService); the route is named after
  the endpoint (render.naming.route_name). The selector pins both ends (Prometheus anchors regexes):
  the route's namespace and name, and the backend's namespace and Service, escaped. A Service or route
  of another namespace cannot match by embedding `-svc-<namespace>-<Service>` in its name any more.
  What a label cannot tell apart: names joined by hyphens (namespace `team` + route `a-fraud` against
  namespace `team-a` + route `fraud`), only the hash disambiguates, which needs the route's rule text:
  namespaces whose names extend each other with a hyphen should not share a Traefik (or use istio);
- istio: `istio_requests_total` to the slot's Service (response_code 5xx / all) and
  `istio_request_duration_milliseconds_bucket` / 1000.

The model server's series carry `namespace`, `endpoint` and `variant` (pod labels, relabelled by the
scrape config, which must keep `honor_labels: false` so that a pod cannot claim another namespace's
or endpoint's labels: e2e/prometheus.py) and `version` (the server's own label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The slot's Service behind the endpoint's HTTPRoute, as Traefik 3.7 labels it (see the docstring).
TRAEFIK_BACKEND = (
    'service=~"httproute-{{namespace|re}}-{{endpoint|re}}-gw-.+-ep-.+-[0-9]+-[0-9a-f]{20}'
    '-svc-{{namespace|re}}-{{service|re}}-[0-9]+@kubernetesgateway"'
)


@dataclass(frozen=True)
class Vars:
    namespace: str
    endpoint: str
    variant: str
    version: str
    service: str
    window: str


def _q(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


_RE_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _re(v: str) -> str:
    """v as a literal in an RE2 regex (Prometheus' =~)."""
    return _RE_META.sub(r"\\\1", v)


def render_query(template: str, v: Vars) -> str:
    out = template
    for key, value in (
        ("namespace", v.namespace),
        ("endpoint", v.endpoint),
        ("variant", v.variant),
        ("version", v.version),
        ("service", v.service),
        ("window", v.window),
    ):
        out = out.replace("{{" + key + "|re}}", _q(_re(value)))
        out = out.replace("{{" + key + "}}", _q(value)).replace("{{ " + key + " }}", _q(value))
    return out


def _error_rate(counter: str, sel: str, code: str) -> str:
    w = "[{{window}}]"
    errors = f'sum(rate({counter}{{{sel},{code}=~"5.."}}{w}))'
    return f"({errors} or vector(0)) / sum(rate({counter}{{{sel}}}{w}))"


def _latency(histogram: str, sel: str, quantile: float, scale: str = "") -> str:
    return f"histogram_quantile({quantile}, sum by (le) (rate({histogram}{{{sel}}}[{{{{window}}}}]))){scale}"


def builtin(template: str, source: str, quantile: float) -> str:
    """The PromQL template (with {{variables}}) of a built-in metric."""
    if source == "modelServer":
        sel = (
            'namespace="{{namespace}}",endpoint="{{endpoint}}",variant="{{variant}}",'
            'version="{{version}}",handler="predict"'
        )
        if template == "error-rate":
            return _error_rate("modelserver_requests_total", sel, "code")
        return _latency("modelserver_request_duration_seconds_bucket", sel, quantile)
    if source == "traefik":
        sel = TRAEFIK_BACKEND
        if template == "error-rate":
            return _error_rate("traefik_service_requests_total", sel, "code")
        return _latency("traefik_service_request_duration_seconds_bucket", sel, quantile)
    if source == "istio":
        sel = (
            'destination_service_namespace="{{namespace}}",destination_service_name="{{service}}",'
            'reporter="destination"'
        )
        if template == "error-rate":
            return _error_rate("istio_requests_total", sel, "response_code")
        return _latency("istio_request_duration_milliseconds_bucket", sel, quantile, " / 1000")
    raise ValueError(f"unknown metric source {source!r}")
