"""A Model's own promotion gates (domain.gates.check), table-tested: metric gates parsed and compared
with the numbers (bounds, against every version in production), lineage fields and distinct
approvals."""

from __future__ import annotations

import pytest

from modelversioning.api import wire as R
from modelversioning.domain.gates import CandidateFacts, MetricGate, TransitionRule, check

SHA = "a" * 64


@pytest.mark.parametrize(
    "text,parsed",
    [
        ("auc >= production.auc - 0.005", MetricGate("auc", ">=", ref="auc", offset=-0.005)),
        ("latency_p99_ms <= 20", MetricGate("latency_p99_ms", "<=", bound=20.0)),
        ("f1>production.f1", MetricGate("f1", ">", ref="f1")),
        ("auc >= production.auc + 0.01", MetricGate("auc", ">=", ref="auc", offset=0.01)),
        ("loss < 1e-3", MetricGate("loss", "<", bound=0.001)),
    ],
)
def test_metric_gate_parses(text, parsed):
    assert MetricGate.parse(text) == parsed


@pytest.mark.parametrize("bad", ["auc", "auc >= best.auc", "auc => 0.9", "auc >= production.auc * 2", ">= 1"])
def test_metric_gate_refuses_what_it_cannot_read(bad):
    with pytest.raises(ValueError, match="metric gate"):
        MetricGate.parse(bad)


def cand(metrics, production=(), approvals=None, lineage=None):
    return CandidateFacts(
        "2.4.1",
        SHA,
        lineage if lineage is not None else {"codeCommit": "abc1234", "author": "jane"},
        metrics,
        production,
        approvals or {},
    )


AUC_GATE = TransitionRule(
    "production", "staging", metrics=(MetricGate.parse("auc >= production.auc - 0.005"),)
)


@pytest.mark.parametrize(
    "auc,production,blocked",
    [
        (0.941, (("2.3.8", {"auc": 0.947}),), "auc 0.941 < production 0.947 - 0.005 (2.3.8)"),
        (0.942, (("2.3.8", {"auc": 0.947}),), None),  # exactly at the margin passes
        (0.95, (("2.3.8", {"auc": 0.947}), ("2.3.9", {"auc": 0.96})), "auc 0.95 < production 0.96 - 0.005"),
        (0.5, (), None),  # nothing in production: nothing to be worse than
    ],
)
def test_metric_gate_against_production_says_the_numbers(auc, production, blocked):
    d = check("staging", "production", (AUC_GATE,), cand({"auc": auc}, production))
    if blocked is None:
        assert d is None
    else:
        assert d is not None and not d.allowed and d.reason == R.METRIC_GATE_FAILED
        assert blocked in d.message


def test_metric_gate_bound_and_missing_metric():
    rule = TransitionRule("production", None, metrics=(MetricGate.parse("latency_p99_ms <= 20"),))
    d = check("staging", "production", (rule,), cand({"latency_p99_ms": 23.5}))
    assert d is not None and "latency_p99_ms 23.5 > 20" in d.message
    d = check("staging", "production", (rule,), cand({"auc": 0.9}))
    assert d is not None and "latency_p99_ms is not among the version's metrics" in d.message
    assert check("staging", "production", (rule,), cand({"latency_p99_ms": 20})) is None
    assert check("candidate", "staging", (rule,), cand({"latency_p99_ms": 99})) is None  # other hop
    strict = TransitionRule("production", None, metrics=(MetricGate.parse("auc > 0.9"),))
    d = check("staging", "production", (strict,), cand({"auc": 0.9}))  # at the bound: a strict gate blocks
    assert d is not None and "auc 0.9 <= 0.9" in d.message
    assert check("staging", "production", (strict,), cand({"auc": 0.91})) is None


def test_lineage_and_approval_gates():
    rule = TransitionRule("approved", "staging", lineage=("author", "framework"), approvals=2)
    d = check("staging", "approved", (rule,), cand({"auc": 1}))
    assert d is not None and d.reason == R.LINEAGE_INCOMPLETE and "lineage.framework" in d.message
    blank = {"author": "a", "framework": ""}  # an empty field is not lineage
    d = check("staging", "approved", (rule,), cand({"auc": 1}, lineage=blank))
    assert d is not None and d.reason == R.LINEAGE_INCOMPLETE and "requires lineage.framework (" in d.message
    full = {"author": "a", "framework": "xgb"}
    d = check(
        "staging", "approved", (rule,), cand({"auc": 1}, approvals={"approved": ("alice",)}, lineage=full)
    )
    assert d is not None and d.reason == R.APPROVAL_REQUIRED
    assert "needs 2 distinct approvals" in d.message and "has 1 (alice)" in d.message
    approvals = {"approved": ("alice", "bob"), "production": ("carol",)}
    assert check("staging", "approved", (rule,), cand({"auc": 1}, approvals=approvals, lineage=full)) is None
