"""The production record's queries: one segment of one serving period, measured (docs/design.md, "The
production record").

No query here is written by a tenant. The gateway's figures use the same trusted selectors as the
canary analysis' built-in templates (``analysis.templates``), pinned to this version's slots; a KPI
is a metric name and exact label values from the Model (``api.model.Kpi``), and the PromQL around it
is ours, with ``namespace="<the Model's namespace>"`` always in the selector. A tenant chooses only
a name matching ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and label values we escape; it cannot name the namespace
label (refused by the API), a reserved label, a function, an ``or``, an ``offset`` or a second
selector. A pod cannot put another namespace's name on its own series either: the scrape config
keeps ``honor_labels: false`` (``analysis.templates``), so Prometheus sets ``namespace`` from where
it scraped.

Every query is one instant query at the segment's end with a range of the segment's length
(``increase(...[<seconds>s])``), through the bounded client (a total deadline, a size cap) on the
measurement pool's threads, never on a reconcile worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from modelversioning.analysis.prometheus import Inconclusive
from modelversioning.analysis.templates import _q, _re
from modelversioning.api.model import Kpi, SeriesSelector
from modelversioning.domain.production import KpiFigures, Segment, SegmentFigures

Query = Callable[[str, float], float]
QueryVector = Callable[[str, float], list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Scope:
    """Whose figures: the version (namespace, model, version) and where they come from."""

    namespace: str
    model: str
    version: str
    source: str = "traefik"
    kpis: tuple[Kpi, ...] = ()


def _alternatives(slots: Sequence[str]) -> str:
    return "(" + "|".join(_re(s) for s in slots) + ")"


def gateway_selector(scope: Scope, endpoint: str, variant: str, slots: Sequence[str]) -> str:
    """The label matchers of this version's traffic through one endpoint variant."""
    ns = scope.namespace
    if scope.source == "modelServer":
        return (
            f'namespace="{_q(ns)}",endpoint="{_q(endpoint)}",variant="{_q(variant)}",'
            f'version="{_q(scope.version)}",handler="predict"'
        )
    if not slots:
        raise Inconclusive("no slot recorded for the period: nothing to select the gateway's series by")
    if scope.source == "istio":
        return (
            f'destination_service_namespace="{_q(ns)}",'
            f'destination_service_name=~"{_q(_alternatives(slots))}",reporter="destination"'
        )
    # traefik: the slot's Service behind the endpoint's own HTTPRoute (analysis.templates.TRAEFIK_BACKEND)
    return (
        f'service=~"httproute-{_q(_re(ns))}-{_q(_re(endpoint))}-gw-.+-ep-.+-[0-9]+-[0-9a-f]{{20}}'
        f'-svc-{_q(_re(ns))}-{_q(_alternatives(slots))}-[0-9]+@kubernetesgateway"'
    )


# source -> (request counter, its status code label, latency histogram, its unit per second)
_COUNTERS = {
    "traefik": (
        "traefik_service_requests_total",
        "code",
        "traefik_service_request_duration_seconds_bucket",
        1.0,
    ),
    "istio": ("istio_requests_total", "response_code", "istio_request_duration_milliseconds_bucket", 1000.0),
    "modelServer": ("modelserver_requests_total", "code", "modelserver_request_duration_seconds_bucket", 1.0),
}


LOOKBACK = "10m"  # how far before a segment's start its counters' last value is looked for


def counted(series: str, seconds: int) -> str:
    """How much the counters of ``series`` (a selector) went up in the ``seconds`` before the query's
    time. While no counter reset in the window: the difference of their last values at the end and at
    the start (a series absent at the start counts from 0), exact to the last scrape. ``increase()``
    alone is not: it loses what a series counted before its first scrape (a gateway creates a
    Service's series at its first request) and extrapolates both ends of the window (measured against
    a real Prometheus: 210 for 200 requests over 17 s). After a reset the difference is wrong, and
    ``increase()`` (which handles resets) answers instead."""
    w = f"[{seconds}s]"
    before = f"(sum(last_over_time({series}[{LOOKBACK}] offset {seconds}s)) or vector(0))"
    diff = f"sum(last_over_time({series}{w})) - {before}"
    return f"({diff}) and on() (sum(resets({series}{w})) == 0) or sum(increase({series}{w}))"


def gateway_queries(scope: Scope, seg: Segment, slots: Sequence[str]) -> tuple[str, str, str]:
    """(requests, errors, latency buckets) of one segment, each an instant query at its end."""
    counter, code, histogram, _ = _COUNTERS[scope.source]
    sel = gateway_selector(scope, seg.endpoint, seg.variant, slots)
    return (
        counted(f"{counter}{{{sel}}}", seg.seconds),
        # no 5xx series at all is 0 errors, once the requests query found traffic
        counted(f'{counter}{{{sel},{code}=~"5.."}}', seg.seconds) + " or vector(0)",
        f"sum by (le) (increase({histogram}{{{sel}}}[{seg.seconds}s]))",
    )


def kpi_selector(sel: SeriesSelector, namespace: str, values: Mapping[str, str]) -> str:
    """``metric{namespace="<ns>",label="value",...}``: the namespace always the Model's; values with
    {{endpoint}}, {{variant}}, {{version}}, {{model}} replaced, then escaped."""
    matchers = [f'namespace="{_q(namespace)}"']
    for k in sorted(sel.labels):
        if k == "namespace" or k.startswith("_"):  # the API refuses them; never trust that alone
            raise ValueError(f"KPI label {k!r} is not allowed")
        v = sel.labels[k]
        for name, value in values.items():
            v = v.replace("{{" + name + "}}", value)
        matchers.append(f'{k}="{_q(v)}"')
    return f"{sel.metric}{{{','.join(matchers)}}}"


def kpi_queries(kpi: Kpi, scope: Scope, seg: Segment) -> tuple[str, str | None]:
    values = {
        "endpoint": seg.endpoint,
        "variant": seg.variant,
        "version": scope.version,
        "model": scope.model,
    }
    num = counted(kpi_selector(kpi.numerator, scope.namespace, values), seg.seconds)
    den = None
    if kpi.denominator is not None:
        den = counted(kpi_selector(kpi.denominator, scope.namespace, values), seg.seconds)
    return num, den


def measure_segment(scope: Scope, seg: Segment, query: Query, query_vector: QueryVector) -> SegmentFigures:
    """The figures of one segment. The gateway's three queries succeed together or the segment is an
    error (why); a KPI that fails is marked with why, the others still count."""
    at = seg.end.timestamp()
    try:
        q_req, q_err, q_lat = gateway_queries(scope, seg, seg.slots)
        requests = query(q_req, at)
        errors = query(q_err, at)
        scale = _COUNTERS[scope.source][3]
        buckets = tuple(
            (_scaled(labels["le"], scale), value)
            for labels, value in query_vector(q_lat, at)
            if labels.get("le")
        )
    except Inconclusive as e:
        return SegmentFigures(seg, error=f"{scope.source}: {e}"[:512])
    kpis = []
    for kpi in scope.kpis:
        num_q, den_q = kpi_queries(kpi, scope, seg)
        try:
            num = query(num_q, at)
            den = query(den_q, at) if den_q is not None else None
        except Inconclusive as e:
            kpis.append(KpiFigures(kpi.name, error=str(e)[:300]))
            continue
        kpis.append(KpiFigures(kpi.name, num, den))
    return SegmentFigures(seg, requests, errors, buckets, tuple(kpis))


def _scaled(le: str, scale: float) -> str:
    if le in ("+Inf", "Inf", "inf") or scale == 1.0:
        return le
    return f"{float(le) / scale:g}"
