"""The single-object benchmark's aggregation (bench/single.py) reports numbers: the audit log's pairs of
a user's PATCH and our route write, the operator's histogram read back as quantiles, and the summary
the benchmark prints every run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO / "e2e")]

import single  # noqa: E402

OP = "system:serviceaccount:mv-system:mv-operator"


def _req(user: str, verb: str, resource: str, received: float, completed: float) -> dict[str, object]:
    return {"user": user, "verb": verb, "resource": resource, "received": received, "completed": completed}


def test_each_patch_pairs_with_the_first_route_write_after_it() -> None:
    reqs = [
        _req("admin", "patch", "modelendpoints", 10.000, 10.004),
        _req(OP, "patch", "virtualservices", 10.007, 10.012),  # reaction 3 ms, the API server 5 ms
        _req(OP, "patch", "modelendpoints/status", 10.013, 10.015),
        _req(OP, "patch", "virtualservices", 10.020, 10.021),  # a second write: not the reaction
        _req("admin", "patch", "modelendpoints", 11.000, 11.002),
        _req("admin", "patch", "modelendpoints", 12.000, 12.003),  # no route write before the next one
        _req("admin", "get", "modelendpoints", 12.500, 12.501),
        _req("admin", "patch", "modelendpoints", 13.000, 13.002),
        _req(OP, "patch", "virtualservices", 13.0065, 13.009),
    ]
    reqs.insert(6, _req(OP, "patch", "virtualservices", 11.004, 11.006))  # after the 2nd: 2 ms
    # the 5th PATCH's route write arrives before its response completed (the event left at the commit)
    reqs += [
        _req("admin", "patch", "modelendpoints", 14.000, 14.005),
        _req(OP, "patch", "virtualservices", 14.004, 14.006),
    ]
    out = single.pair_reactions(reqs[::-1], OP, "virtualservices")  # any order
    assert out["reaction"] == pytest.approx([3.0, 2.0, 4.5, -1.0])
    assert out["route_write"] == pytest.approx([5.0, 2.0, 2.5, 2.0])
    assert out["spec_patch"] == pytest.approx([4.0, 2.0, 2.0, 5.0])


def test_summary_reports_quantiles_and_nan_without_samples() -> None:
    s = single.summary([float(x) for x in range(1, 101)])
    assert (s["n"], s["p50_ms"], s["p99_ms"], s["max_ms"], s["mean_ms"]) == (100, 50.5, 99.01, 100.0, 50.5)
    empty = single.summary([])
    assert empty["n"] == 0 and math.isnan(empty["p50_ms"]) and math.isnan(empty["p99_ms"])


PAGE = """# HELP modelversioning_endpoint_route_reaction_seconds ...
# TYPE modelversioning_endpoint_route_reaction_seconds histogram
modelversioning_endpoint_route_reaction_seconds_bucket{{le="0.001",phase="total"}} {a}
modelversioning_endpoint_route_reaction_seconds_bucket{{le="0.002",phase="total"}} {b}
modelversioning_endpoint_route_reaction_seconds_bucket{{le="0.004",phase="total"}} {c}
modelversioning_endpoint_route_reaction_seconds_bucket{{le="+Inf",phase="total"}} {d}
modelversioning_endpoint_route_reaction_seconds_count{{phase="total"}} {d}
modelversioning_endpoint_route_reaction_seconds_bucket{{le="0.001",phase="queued"}} 4.0
modelversioning_endpoint_route_reaction_seconds_bucket{{le="+Inf",phase="queued"}} 4.0
modelversioning_reconcile_duration_seconds_bucket{{kind="ModelEndpoint",le="0.001"}} 7.0
"""


def test_the_operators_histogram_is_read_back_as_quantiles_of_what_was_observed_meanwhile() -> None:
    before = PAGE.format(a=5, b=5, c=5, d=5)  # earlier observations, all under 1 ms
    after = PAGE.format(a=5, b=15, c=25, d=25)  # 10 in (1, 2] ms, 10 in (2, 4] ms
    phases = single.operator_phases(before, after)
    assert phases["total"]["n"] == 20
    assert phases["total"]["p50_ms"] == pytest.approx(2.0)  # the 10th of 20: the top of (1, 2]
    assert phases["total"]["p99_ms"] == pytest.approx(2 + 2 * 9.8 / 10)  # 19.8th: inside (2, 4]
    assert phases["queued"]["n"] == 0 and math.isnan(phases["queued"]["p50_ms"])  # nothing meanwhile
    assert phases["reconcile"]["n"] == 0  # not on the page at all


def test_a_quantile_in_the_last_bucket_is_its_lower_bound() -> None:
    b0 = {0.001: 0.0, 0.002: 0.0, math.inf: 0.0}
    b1 = {0.001: 0.0, 0.002: 1.0, math.inf: 3.0}
    assert single.bucket_quantile(b0, b1, 0.9) == pytest.approx(2.0)
    assert single.bucket_quantile(b0, b1, 0.1) == pytest.approx(1.3, abs=0.01)


def test_the_figure_is_a_line_of_the_results_table_with_its_targets() -> None:
    rows: list[tuple[object, ...]] = []
    section = {
        "reaction": single.summary([2.0, 2.5, 4.0]),
        "route": single.summary([9.0, 11.0, 12.0]),
        "operator": {"total": {"p50_ms": 1.7}, "queued": {"p50_ms": 0.3}, "reconcile": {"p50_ms": 1.3}},
        "timeouts": 0,
        "route_write_apiserver": {"p50_ms": 5.0},
    }
    single.table_rows(section, lambda *r: rows.append(r), lambda x: isinstance(x, float), 3.0, 10.0)
    (react, route) = rows
    assert react[0] == "single" and react[2] == "2.5 / 3.97" and react[3] == "p50 <= 3" and react[4] is True
    assert "event -> write sent p50 1.7 ms (queued 0.3, reconcile 1.3)" in str(react[5])
    assert route[2] == "11.0 / 11.98" and route[3] == "p50 <= 10" and route[4] is False
    rows.clear()
    single.table_rows({"error": "x"}, lambda *r: rows.append(r), lambda x: isinstance(x, float), 3.0, 10.0)
    assert rows == []  # a failed section: no line (run.py prints its ERROR)
