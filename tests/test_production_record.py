"""The production record, pure (domain.production): when a segment is due, how segments merge into a
period's summary, histogram quantiles over accumulated buckets, a version's figures, and the
served.<figure> gates (domain.gates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelversioning.api import wire as R
from modelversioning.domain import production as P
from modelversioning.domain.gates import CandidateFacts, MetricGate, TransitionRule, check

T0 = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
POLICY = P.ProductionPolicy(interval=600, settle=30, retry=120, give_up=86400)
KEY = ("fraud", "main", "2026-12-07T10:00:00Z")
FIRST = 600 * P.first_share(KEY)  # when the first segment of the period below ends (s after T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


def period(frm: float = 0, to: float | None = None, **production: object) -> dict[str, object]:
    p: dict[str, object] = {
        "endpoint": "fraud",
        "variant": "main",
        "from": stamp(frm),
        "slots": ["fraud-main-abc"],
    }
    if to is not None:
        p["to"] = stamp(to)
    if production:
        p["production"] = dict(production)
    return p


# ------------------------------------------------------------------------------------------ due


@pytest.mark.parametrize(
    ("periods", "now", "failed_ago", "want_segments", "want_after", "want_give_up"),
    [
        # idle: nothing serving, nothing to measure, never look again
        ([], 10_000, None, [], None, 0),
        ([period(0, 100, final=True, source="traefik")], 10_000, None, [], None, 0),
        # open: the first segment once its share of `interval` has passed (after settle), then every interval
        ([period(0)], 100, None, [], FIRST - 70, 0),
        ([period(0)], FIRST + 30, None, [(0, FIRST, False)], 600, 0),
        ([period(0)], FIRST + 29, None, [], 1, 0),
        ([period(0, through=stamp(670), source="traefik")], 900, None, [], 400, 0),
        ([period(0, through=stamp(670), source="traefik")], 1300, None, [(670, 1270, False)], 600, 0),
        # closed: the last segment `settle` after it closed, ending then (the gateway's route lag)
        ([period(0, 100)], 110, None, [], 20, 0),
        ([period(0, 100)], 130, None, [(0, 130, True)], None, 0),
        ([period(0, 100, through=stamp(60), source="traefik")], 200, None, [(60, 130, True)], None, 0),
        # a failed segment: nothing again before `retry`
        ([period(0, 100)], 200, 30, [], 90, 0),
        ([period(0, 100)], 200, 130, [(0, 130, True)], None, 0),
        ([period(0)], FIRST + 30, 10, [], 590, 0),  # open: at the next interval (no data: few queries)
        # a closed period still unsummarised after give_up: final and incomplete, nothing measured
        (
            [period(0, 100, incomplete="Prometheus unreachable", source="traefik")],
            100 + 86400,
            None,
            [],
            None,
            1,
        ),
    ],
)
def test_due(
    periods: list[dict[str, object]],
    now: float,
    failed_ago: float | None,
    want_segments: list[tuple[float, float, bool]],
    want_after: float | None,
    want_give_up: int,
) -> None:
    got = P.due(periods, at(now), POLICY, failed_ago)
    assert [(s.start, s.end, s.final) for s in got.segments] == [
        (at(a), at(b), f) for a, b, f in want_segments
    ]
    assert all(s.slots == ("fraud-main-abc",) for s in got.segments)
    assert got.after == (None if want_after is None else pytest.approx(want_after, abs=1e-3))
    assert len(got.give_up) == want_give_up


@pytest.mark.parametrize(
    ("again", "now", "want_final"),
    [
        (110, 130, None),  # its slot served it again 10 s after the close: nothing before 110 + settle
        (110, 140, (0, 110)),  # then the last segment ends where the new period starts
        (150, 130, (0, 130)),  # served again after `settle`: as before, close + settle
        (100, 135, (0, 100)),  # at once (a rollback undone in the same second)
    ],
)
def test_a_period_served_again_within_settle_ends_where_the_next_one_starts(
    again: float, now: float, want_final: tuple[float, float] | None
) -> None:
    """A review found a version that takes traffic again on the same slot within `settle` of a close
    (a quick rollback and re-promote) had those requests counted in both periods: the closed one's
    last segment ran to close + settle over the slot's counters, the new one's first from its start."""
    got = P.due([period(0, 100), period(again)], at(now), POLICY)
    finals = [(s.start, s.end) for s in got.segments if s.final]
    assert finals == ([] if want_final is None else [(at(want_final[0]), at(want_final[1]))])
    opened = [s for s in got.segments if not s.final]
    assert all(s.start >= at(again) for s in opened)  # the new period's own start: no overlap


@pytest.mark.parametrize(
    ("failures", "failed_ago", "measured", "after"),
    [
        (1, 100, False, 20),
        (1, 130, True, None),
        (3, 400, False, 80),
        (3, 500, True, None),
        (9, 599, False, 1),
    ],
)
def test_a_closed_period_backs_off_doubling_up_to_the_interval(
    failures: int, failed_ago: float, measured: bool, after: float | None
) -> None:
    got = P.due([period(0, 100)], at(10_000), POLICY, failed_ago, failures)
    assert bool(got.segments) == measured
    assert got.after == (None if after is None else pytest.approx(after))


def test_the_first_segment_is_spread_over_half_an_interval() -> None:
    shares = [P.first_share(("ep", f"v{i}", "2026-12-07T10:00:00Z")) for i in range(200)]
    assert all(0.5 <= s < 1.0 for s in shares)
    assert max(shares) - min(shares) > 0.4 and len({round(s, 3) for s in shares}) > 150
    assert P.first_share(KEY) == P.first_share(KEY)  # fixed per period


# ---------------------------------------------------------------------------------------- merge


def seg(start: float, end: float, final: bool = False) -> P.Segment:
    return P.Segment("fraud", "main", stamp(0), at(start), at(end), final, ("fraud-main-abc",))


BUCKETS = (("0.1", 80.0), ("0.3", 95.0), ("1.2", 100.0), ("5", 100.0), ("+Inf", 100.0))


def test_segments_add_up_and_the_last_one_makes_it_final() -> None:
    one = P.merge(None, P.SegmentFigures(seg(0, 600), 100.0, 2.0, BUCKETS), "traefik")
    assert one == {
        "source": "traefik",
        "requests": 100,
        "errors": 2,
        "errorRatio": 0.02,
        "latencyBuckets": [{"le": le, "count": c} for le, c in BUCKETS],
        "latencyP50Seconds": 0.0625,
        "latencyP99Seconds": pytest.approx(1.02),
        "through": stamp(600),
    }
    two = P.merge(one, P.SegmentFigures(seg(600, 700, final=True), 300.0, 0.0, BUCKETS), "traefik")
    assert (two["requests"], two["errors"], two["errorRatio"], two["final"]) == (400, 2, 0.005, True)
    assert two["latencyBuckets"][-1] == {"le": "+Inf", "count": 200.0}
    assert two["through"] == stamp(700)


def test_a_failed_segment_changes_nothing_but_incomplete_and_the_retry_covers_it() -> None:
    one = P.merge(None, P.SegmentFigures(seg(0, 600), 100.0, 2.0, BUCKETS), "traefik")
    down = P.merge(one, P.SegmentFigures(seg(600, 1200), error="traefik: Prometheus unreachable"), "traefik")
    assert down["requests"] == 100 and down["through"] == stamp(600)  # not zero, not advanced
    assert down["incomplete"] == "traefik: Prometheus unreachable"
    again = P.merge(down, P.SegmentFigures(seg(600, 1900), 50.0, 1.0, BUCKETS), "traefik")
    assert again["requests"] == 150 and again["through"] == stamp(1900)
    assert "incomplete" not in again


def test_a_period_with_no_data_at_all_is_incomplete_never_zero() -> None:
    got = P.merge(
        None,
        P.SegmentFigures(seg(0, 600), error="traefik: no data (no traffic in the window yet?)"),
        "traefik",
    )
    assert "requests" not in got and "errorRatio" not in got and "through" not in got
    assert got["incomplete"].startswith("traefik: no data")
    assert P.aggregate([period(0, 100, **got)]).values == {}


def test_a_failing_kpi_is_incomplete_for_the_period_and_never_zero() -> None:
    kpis = (P.KpiFigures("conversion", 30.0, 100.0), P.KpiFigures("refunds", error="no data"))
    one = P.merge(None, P.SegmentFigures(seg(0, 600), 100.0, 0.0, BUCKETS, kpis), "traefik")
    assert one["kpis"] == [
        {"name": "conversion", "numerator": 30.0, "denominator": 100.0, "value": 0.3},
        {"name": "refunds", "incomplete": "no data"},
    ]
    assert one["incomplete"] == "kpi refunds: no data"
    # the next segment measures refunds: its value covers part of the period, and stays incomplete
    kpis2 = (P.KpiFigures("conversion", 10.0, 100.0), P.KpiFigures("refunds", 4.0))
    two = P.merge(one, P.SegmentFigures(seg(600, 1200), 100.0, 0.0, BUCKETS, kpis2), "traefik")
    assert two["kpis"][0]["value"] == 0.2
    assert two["kpis"][1] == {"name": "refunds", "numerator": 4.0, "value": 4.0, "incomplete": "no data"}
    figures = P.aggregate([period(0, 1200, **two)])
    assert figures.values["kpi.conversion"] == 0.2
    assert ("kpi.refunds", f"fraud/main from {stamp(0)}: no data") in figures.incomplete
    assert not [f for f, _ in figures.incomplete if f == "errorRatio"]  # the gateway's figures are whole


def test_a_zero_denominator_is_no_value() -> None:
    got = P.merge(
        None, P.SegmentFigures(seg(0, 600), 1.0, 0.0, BUCKETS, (P.KpiFigures("c", 0.0, 0.0),)), "traefik"
    )
    assert got["kpis"] == [
        {"name": "c", "numerator": 0.0, "denominator": 0.0, "incomplete": got["kpis"][0]["incomplete"]}
    ]
    assert "value" not in got["kpis"][0]


def test_apply_drops_a_result_whose_period_moved_on_and_gives_up() -> None:
    periods = [period(0, 100, through=stamp(60), source="traefik"), period(200)]
    stale = P.SegmentFigures(P.Segment("fraud", "main", stamp(0), at(0), at(130), True), 5.0, 0.0, BUCKETS)
    out = P.apply(periods, [stale], (), stamp(300), "traefik")
    assert out == periods  # starts at 0, the summary is through 60: measured before, not merged twice
    gave = P.apply(periods, [], [("fraud", "main", stamp(0))], stamp(300), "traefik")
    assert gave[0]["production"]["final"] is True
    assert gave[0]["production"]["incomplete"].startswith(f"given up at {stamp(300)}")
    assert gave[1] == periods[1]


# ------------------------------------------------------------------------------------- quantile


@pytest.mark.parametrize(
    ("q", "buckets", "want"),
    [
        (0.5, [("0.1", 50), ("1", 100), ("+Inf", 100)], 0.1),
        (0.5, [("0.1", 0), ("1", 100), ("+Inf", 100)], 0.55),
        (0.99, [("0.1", 50), ("1", 90), ("+Inf", 100)], 1.0),  # in +Inf: the highest finite bound
        (0.5, [("0.1", 0), ("+Inf", 0)], None),  # no observations
        (0.5, [("0.1", 10), ("1", 10)], None),  # no +Inf bucket: not a whole histogram
        (0.5, [], None),
        (0.5, [("0.1", 60), ("1", 55), ("+Inf", 100)], 0.1 * 50 / 60),  # non-monotonic: the running max
    ],
)
def test_quantile_is_histogram_quantile(
    q: float, buckets: list[tuple[str, float]], want: float | None
) -> None:
    got = P.quantile(q, [{"le": le, "count": c} for le, c in buckets])
    assert got == (pytest.approx(want) if want is not None else None)


def test_too_many_buckets_is_unknown_latency_not_a_guess() -> None:
    many = tuple((str(i / 10), float(i)) for i in range(1, 50)) + (("+Inf", 50.0),)
    got = P.merge(None, P.SegmentFigures(seg(0, 600), 50.0, 0.0, many), "traefik")
    assert "latencyP50Seconds" not in got and "latencyBuckets" not in got and got["requests"] == 50


# ------------------------------------------------------------------------------------ aggregate


def test_aggregate_sums_periods_and_takes_quantiles_of_the_summed_buckets() -> None:
    a = P.merge(
        None,
        P.SegmentFigures(seg(0, 600, True), 1000.0, 10.0, (("0.1", 1000.0), ("+Inf", 1000.0))),
        "traefik",
    )
    b = P.merge(
        None, P.SegmentFigures(seg(0, 600, True), 3000.0, 0.0, (("0.1", 0.0), ("+Inf", 3000.0))), "traefik"
    )
    figures = P.aggregate([period(0, 600, **a), period(700, 1300, **b), period(2000)])
    assert figures.values["requests"] == 4000 and figures.values["errors"] == 10
    assert figures.values["errorRatio"] == 0.0025
    assert figures.values["latencyP50Seconds"] == 0.1  # 75 % of requests above 0.1 s: +Inf answers 0.1
    assert figures.periods == 2 and figures.incomplete == ()


def test_an_incomplete_gateway_summary_marks_every_gateway_figure() -> None:
    down = {"source": "traefik", "incomplete": "traefik: Prometheus unreachable"}
    figures = P.aggregate([period(0, 100, **down)])
    assert {f for f, _ in figures.incomplete} == set(P.FIGURES)


# ---------------------------------------------------------------------------------------- gates


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound", "min_requests"),
    [
        ("served.errorRatio <= 0.01 over 1000 requests", "errorRatio", "<=", 0.01, 1000),
        ("served.latencyP99Seconds < 0.5", "latencyP99Seconds", "<", 0.5, 0),
        ("served.kpi.conversion >= 0.12 over 50 requests", "kpi.conversion", ">=", 0.12, 50),
    ],
)
def test_served_gates_parse(text: str, metric: str, op: str, bound: float, min_requests: int) -> None:
    g = MetricGate.parse(text)
    assert (g.served, g.metric, g.op, g.bound, g.min_requests) == (True, metric, op, bound, min_requests)
    assert MetricGate.parse(str(g)) == g


@pytest.mark.parametrize(
    "text",
    [
        "served.errorRatio <= production.errorRatio",  # served figures are bounds, not comparisons
        "served.errorate <= 0.01",  # not a figure
        "served.errorRatio <= 0.01 over requests",
        "served.kpi.Bad <= 1",
    ],
)
def test_served_is_reserved_and_refused_when_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="served.<figure>"):
        MetricGate.parse(text)


def test_the_production_syntax_still_means_the_versions_in_production_now() -> None:
    g = MetricGate.parse("auc >= production.auc - 0.005")
    assert (g.served, g.ref, g.offset) == (False, "auc", -0.005)


RULE = (
    TransitionRule(
        "production", "staging", metrics=(MetricGate.parse("served.errorRatio <= 0.01 over 1000 requests"),)
    ),
)


def facts(served: dict[str, float], incomplete: tuple[tuple[str, str], ...] = ()) -> CandidateFacts:
    return CandidateFacts("1.0.0", "a" * 64, {}, {}, served=served, served_incomplete=incomplete)


@pytest.mark.parametrize(
    ("served", "incomplete", "want_reason", "want_text"),
    [
        ({"requests": 5000, "errorRatio": 0.002}, (), None, None),
        ({"requests": 5000, "errorRatio": 0.05}, (), R.METRIC_GATE_FAILED, "served.errorRatio 0.05 > 0.01"),
        (
            {"requests": 400, "errorRatio": 0.0},
            (),
            R.PRODUCTION_RECORD_INCOMPLETE,
            "served.requests 400 < 1000",
        ),
        ({}, (), R.PRODUCTION_RECORD_INCOMPLETE, "has no such figure yet"),
        (
            {"requests": 5000, "errorRatio": 0.0},
            (("errorRatio", "fraud/main: Prometheus unreachable"),),
            R.PRODUCTION_RECORD_INCOMPLETE,
            "is incomplete: fraud/main: Prometheus unreachable",
        ),
    ],
)
def test_a_served_gate_blocks_the_worse_version_and_an_unknown_record(
    served: dict[str, float],
    incomplete: tuple[tuple[str, str], ...],
    want_reason: str | None,
    want_text: str | None,
) -> None:
    got = check("staging", "production", RULE, facts(served, incomplete))
    if want_reason is None:
        assert got is None
        return
    assert got is not None and not got.allowed
    assert got.reason == want_reason
    assert want_text is not None and want_text in got.message
