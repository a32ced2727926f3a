"""The production record's queries (analysis.production), as a hostile tenant would try them: a KPI is
a metric name and exact label values, the PromQL around it is the operator's, and every selector
carries namespace="<the Model's namespace>"; the gateway's selectors pin this version's slots."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelversioning.analysis.production import Scope, counted, gateway_queries, kpi_queries, measure_segment
from modelversioning.analysis.prometheus import Inconclusive
from modelversioning.api.model import Kpi, ModelSpec
from modelversioning.domain.production import Segment

T0 = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
SEG = Segment(
    "fraud", "main", "2026-12-07T10:00:00Z", T0, T0 + timedelta(seconds=600), True, ("fraud-main-0a1b2c3d4e",)
)


def skeleton(promql: str) -> tuple[str, list[str]]:
    """The query with every double-quoted string literal replaced by S, and the literals' values: what
    a tenant's text can change is inside the literals only if the skeleton is what the operator wrote."""
    literals: list[str] = []

    def lit(m: re.Match[str]) -> str:
        literals.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        return "S"

    return re.sub(r'"((?:[^"\\]|\\.)*)"', lit, promql), literals


def kpi(**kw: Any) -> Kpi:
    return Kpi.model_validate({"name": "conversion", **kw})


HOSTILE_VALUES = [
    'x"} or up{namespace="team-b',
    'x",namespace="team-b',
    "x\\",
    '{{version}}"} + on() group_left sum(secret_total{namespace="team-b"})',
    "a\nb",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_a_hostile_label_value_stays_inside_its_literal(value: str) -> None:
    k = kpi(numerator={"metric": "shop_conversions_total", "labels": {"shop": value}})
    num, den = kpi_queries(k, Scope("team-a", "fraud", "1.2.0"), SEG)
    assert den is None
    shape, literals = skeleton(num)
    assert shape == counted("shop_conversions_total{namespace=S,shop=S}", 600)  # the selector, 4 times
    assert literals == ["team-a", value.replace("{{version}}", "1.2.0")] * 4


def test_a_period_variable_is_filled_in_and_escaped_too() -> None:
    k = kpi(
        numerator={
            "metric": "conversions_total",
            "labels": {"model_version": "{{version}}", "ep": "{{endpoint}}"},
        },
        denominator={"metric": "predictions_total", "labels": {"model_version": "{{version}}"}},
    )
    num, den = kpi_queries(k, Scope("team-a", "fraud", '1.2.0"}'), SEG)
    assert skeleton(num) == (
        counted("conversions_total{namespace=S,ep=S,model_version=S}", 600),
        ["team-a", "fraud", '1.2.0"}'] * 4,
    )
    assert den is not None and skeleton(den)[0] == counted(
        "predictions_total{namespace=S,model_version=S}", 600
    )


@pytest.mark.parametrize(
    ("selector", "why"),
    [
        ({"metric": "up", "labels": {"namespace": "team-b"}}, "not namespace"),
        ({"metric": "up", "labels": {"__name__": "secret_total"}}, "label name"),
        ({"metric": "up", "labels": {"_ns": "x"}}, "label name"),
        ({"metric": 'up{namespace="team-b"}'}, "pattern"),
        ({"metric": "sum(up)"}, "pattern"),
        ({"metric": "up or secret_total"}, "pattern"),
        ({"metric": "up", "labels": {"a b": "x"}}, "label name"),
        ({"metric": "up", "labels": {f"l{i}": "x" for i in range(9)}}, "at most 8"),
    ],
)
def test_the_api_refuses_what_could_leave_the_namespace(selector: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        kpi(numerator=selector)


def test_kpi_names_are_unique_and_the_source_is_one_we_know() -> None:
    with pytest.raises(ValidationError, match="unique"):
        ModelSpec.model_validate({"production": {"kpis": [kpi(numerator={"metric": "a"}).model_dump()] * 2}})
    with pytest.raises(ValidationError):
        ModelSpec.model_validate({"production": {"source": "somewhere"}})


def test_the_selector_never_reads_a_label_the_api_would_refuse() -> None:
    # defence in depth: a Kpi built without validation still cannot name the namespace label
    k = Kpi.model_construct(
        name="x",
        numerator=kpi(numerator={"metric": "a"}).numerator.model_copy(
            update={"labels": {"namespace": "team-b"}}
        ),
        denominator=None,
    )
    with pytest.raises(ValueError, match="not allowed"):
        kpi_queries(k, Scope("team-a", "fraud", "1"), SEG)


# ---------------------------------------------------------------------------- the gateway's


def test_traefik_selects_this_versions_slots_behind_the_endpoints_own_route() -> None:
    req, err, lat = gateway_queries(
        Scope("team-a", "fraud", "1.2.0"), SEG, ("fraud-main-0a1b2c3d4e", "fraud-main-ffff")
    )
    sel = (
        'service=~"httproute-team-a-fraud-gw-.+-ep-.+-[0-9]+-[0-9a-f]{20}'
        '-svc-team-a-(fraud-main-0a1b2c3d4e|fraud-main-ffff)-[0-9]+@kubernetesgateway"'
    )
    assert req == counted(f"traefik_service_requests_total{{{sel}}}", 600)
    assert err == counted(f'traefik_service_requests_total{{{sel},code=~"5.."}}', 600) + " or vector(0)"
    assert counted("c{x}", 60) == (  # (what it counts, against a real Prometheus: test_production_prometheus)
        "(sum(last_over_time(c{x}[60s])) - (sum(last_over_time(c{x}[10m] offset 60s)) or vector(0)))"
        " and on() (sum(resets(c{x}[60s])) == 0) or sum(increase(c{x}[60s]))"
    )
    assert lat == f"sum by (le) (increase(traefik_service_request_duration_seconds_bucket{{{sel}}}[600s]))"
    # the regex matches what Traefik names this slot, and no other namespace's or route's Service
    pattern = re.compile(sel.split('"')[1].replace("\\\\", "\\"))
    ok = (
        "httproute-team-a-fraud-gw-gw-traefik-ep-web-0-0123456789abcdef0123"
        "-svc-team-a-fraud-main-0a1b2c3d4e-0@kubernetesgateway"
    )
    assert pattern.fullmatch(ok)
    assert not pattern.fullmatch(ok.replace("-svc-team-a-", "-svc-team-b-"))
    assert not pattern.fullmatch(ok.replace("httproute-team-a-fraud-", "httproute-team-a-other-"))
    assert not pattern.fullmatch(ok.replace("fraud-main-0a1b2c3d4e", "fraud-main-0a1b2c3d4f"))


def test_no_slot_recorded_is_incomplete_not_a_namespace_wide_query() -> None:
    bare = Segment("fraud", "main", "x", T0, T0 + timedelta(seconds=60), True, ())
    got = measure_segment(Scope("team-a", "fraud", "1"), bare, _never, _never_vector)
    assert got.error is not None and "no slot recorded" in got.error


def _never(q: str, at: float) -> float:
    raise AssertionError(f"queried {q}")


def _never_vector(q: str, at: float) -> list[tuple[dict[str, str], float]]:
    raise AssertionError(f"queried {q}")


# ----------------------------------------------------------------------------- measuring


def test_measure_evaluates_at_the_segments_end_and_marks_failures() -> None:
    asked: list[tuple[str, float]] = []

    def query(q: str, at: float) -> float:
        asked.append((q, at))
        if "refunds_total" in q:
            raise Inconclusive("no data (no traffic in the window yet?)")
        return 7.0 if "5.." in q else 100.0

    def vector(q: str, at: float) -> list[tuple[dict[str, str], float]]:
        return [({"le": "0.1"}, 90.0), ({"le": "+Inf"}, 100.0), ({}, 5.0)]

    scope = Scope(
        "team-a",
        "fraud",
        "1.2.0",
        "traefik",
        (
            kpi(numerator={"metric": "conversions_total"}, denominator={"metric": "predictions_total"}),
            Kpi.model_validate({"name": "refunds", "numerator": {"metric": "refunds_total"}}),
        ),
    )
    got = measure_segment(scope, SEG, query, vector)
    assert {a for _, a in asked} == {SEG.end.timestamp()}
    assert (got.requests, got.errors, got.error) == (100.0, 7.0, None)
    assert got.buckets == (("0.1", 90.0), ("+Inf", 100.0))
    assert [(k.name, k.numerator, k.denominator, k.error) for k in got.kpis] == [
        ("conversion", 100.0, 100.0, None),
        ("refunds", None, None, "no data (no traffic in the window yet?)"),
    ]

    def down(q: str, at: float) -> float:
        raise Inconclusive("Prometheus unreachable: ConnectionRefusedError")

    failed = measure_segment(scope, SEG, down, vector)
    assert failed.error == "traefik: Prometheus unreachable: ConnectionRefusedError"
    assert failed.requests is None and failed.kpis == ()


def test_istio_latency_buckets_are_turned_into_seconds() -> None:
    def vector(q: str, at: float) -> list[tuple[dict[str, str], float]]:
        assert (
            "istio_request_duration_milliseconds_bucket" in q
            and 'destination_service_namespace="team-a"' in q
        )
        return [({"le": "100"}, 9.0), ({"le": "+Inf"}, 10.0)]

    got = measure_segment(Scope("team-a", "fraud", "1", "istio"), SEG, lambda q, at: 10.0, vector)
    assert got.buckets == (("0.1", 9.0), ("+Inf", 10.0))
