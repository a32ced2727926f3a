"""PromQL for the built-in metric templates, and variable substitution in user queries.

Variables: {{namespace}}, {{endpoint}}, {{variant}}, {{version}}, {{service}} (the Service of the slot
that serves the variant now), {{window}} (the metric's rate window). Values are label values we
control or validated names; they are escaped for a PromQL double-quoted string anyway.

Built-in templates, per source (what they read). An error rate's numerator is `... or vector(0)`: a
variant without a single 5xx has no 5xx series at all, and that is a rate of 0, not "no data"; no
requests at all is still no data (inconclusive).

- modelServer: error-rate = `modelserver_requests_total{handler="predict"}` with code 5xx / all;
  latency = `modelserver_request_duration_seconds_bucket{handler="predict"}`;
- traefik: `traefik_service_requests_total` of the slot's Service (its backend is labelled
  `<router>-svc-<namespace>-<Service>-<index>@kubernetesgateway`; 5xx / all) and
  `traefik_service_request_duration_seconds_bucket`;
- istio: `istio_requests_total` to the slot's Service (response_code 5xx / all) and
  `istio_request_duration_milliseconds_bucket` / 1000.

The model server's series carry `namespace`, `endpoint` and `variant` (pod labels, relabelled by the
scrape config shipped in docs) and `version` (the server's own label).
"""

from __future__ import annotations

from dataclasses import dataclass


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
        # Traefik's Gateway provider labels a backend <router>-svc-<ns>-<Service>-<index>@kubernetesgateway
        sel = 'service=~".*-svc-{{namespace}}-{{service}}-[0-9]+@kubernetesgateway"'
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
