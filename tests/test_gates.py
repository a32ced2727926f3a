"""A Model's own promotion gates (domain.gates.check), table-tested: metric gates parsed and compared
with the numbers (bounds, against every version in production), lineage fields and distinct
approvals; and which approvals count (domain.approvals): people other than the author and requester,
recorded by an enforced admission, in the approver groups, for this digest and serving digest."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from modelversioning.api import wire as R
from modelversioning.domain.approvals import (
    Approval,
    ApprovalContext,
    admission_enforced,
    count,
    image_pinned,
    pin_required,
    refusal,
    serving_digest,
)
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


# ---- which approvals count (domain.approvals) -------------------------------------------------------

SERVED = "d" * 64
CTX = ApprovalContext(
    SHA,
    SERVED,
    authors=frozenset({"jane"}),
    requesters=frozenset({"rick"}),
    recorded=True,
)


def ap(approver, sha=SHA, served=SERVED, groups=(), stage="production"):
    return Approval(approver, stage, sha, served, tuple(groups))


@pytest.mark.parametrize(
    "approval,ctx,why",
    [
        (ap("alice"), CTX, None),  # a person, neither author nor requester, this digest: counts
        (ap("jane"), CTX, "self-approval by the author"),
        (ap("rick"), CTX, "self-approval by the requester"),
        (ap("system:serviceaccount:team:bot"), CTX, "a ServiceAccount or system identity is not a person"),
        (ap("system:admin"), CTX, "a ServiceAccount or system identity is not a person"),
        (ap("alice"), replace(CTX, recorded=False), "not recorded by the API server"),
        (ap("alice", sha="b" * 64), CTX, "for other weights"),
        (ap("alice", served="e" * 64), CTX, "for another serving digest"),
        (ap("alice", served=""), CTX, "for another serving digest (none)"),  # made before servingDigest
        (ap("alice"), replace(CTX, approver_groups=(frozenset({"ml-leads"}),)), "not in the platform's"),
        (ap("alice", groups=["ml-leads"]), replace(CTX, approver_groups=(frozenset({"ml-leads"}),)), None),
        (  # two policies name groups: one of each
            ap("alice", groups=["ml-leads"]),
            replace(CTX, approver_groups=(frozenset({"ml-leads"}), frozenset({"risk"}))),
            "not in the platform's",
        ),
    ],
)
def test_which_approvals_count(approval, ctx, why):
    got = refusal(approval, ctx)
    assert (got is None) == (why is None), got
    if why is not None:
        assert why in got


def test_counted_approvers_are_distinct_and_refused_ones_say_why_in_the_gate():
    approvals = [
        ap("alice"),
        ap("alice"),  # twice: one person
        ap("rick"),  # the requester
        ap("system:serviceaccount:team:a"),
        ap("system:serviceaccount:team:b"),  # extra ServiceAccounts are not extra people
        ap("bob", served="e" * 64),  # approved the version as it was before it was re-created
        ap("bob", served=SERVED, stage="staging"),
    ]
    counted, refused = count(approvals, CTX)
    assert counted == {"production": ("alice",), "staging": ("bob",)}
    assert refused["production"] == (
        "bob (for another serving digest (eeeeeeeeeeee): image, command or env differ)",
        "rick (self-approval by the requester)",
        "system:serviceaccount:team:a (a ServiceAccount or system identity is not a person)",
        "system:serviceaccount:team:b (a ServiceAccount or system identity is not a person)",
    )
    rule = TransitionRule("production", "staging", approvals=2)
    facts = replace(cand({"auc": 1}), approvals=counted, refused=refused)
    d = check("staging", "production", (rule,), facts)
    assert d is not None and d.reason == R.APPROVAL_REQUIRED
    assert "has 1 (alice); not counted: bob (for another serving digest" in d.message
    assert "rick (self-approval by the requester)" in d.message


def test_serving_digest_binds_what_serves_and_only_that():
    spec = {
        "artifact": {"uri": "s3://b/m/1", "sha256": SHA},
        "runtime": {
            "image": "srv@sha256:" + "1" * 64,
            "command": ["serve"],
            "env": [{"name": "A", "value": "1"}],
        },
        "lineage": {"author": "jane"},
        "stage": "candidate",
    }
    base = serving_digest(spec)
    assert len(base) == 64 and base == serving_digest(json.loads(json.dumps(spec)))  # stable
    # the API's defaults spelled out change nothing
    explicit = {**spec, "runtime": {**spec["runtime"], "port": 8080, "args": [], "resources": {}}}
    assert serving_digest(explicit) == base
    # what does not decide what serves: the stage, lineage, the URI (the digest pins the bytes)
    other = {**spec, "stage": "production", "lineage": {}, "artifact": {**spec["artifact"], "uri": "s3://x"}}
    assert serving_digest(other) == base
    for change in (
        {"image": "srv@sha256:" + "2" * 64},
        {"command": ["serve", "--unsafe"]},
        {"args": ["--x"]},
        {"env": [{"name": "A", "value": "2"}]},
        {"port": 9000},
        {"healthPath": "/ok"},
        {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    ):
        assert serving_digest({**spec, "runtime": {**spec["runtime"], **change}}) != base, change
    assert serving_digest({**spec, "artifact": {"uri": "s3://b/m/1", "sha256": "b" * 64}}) != base


@pytest.mark.parametrize(
    "image,pinned",
    [
        ("ghcr.io/acme/srv@sha256:" + "a" * 64, True),
        ("ghcr.io/acme/srv:1.2@sha256:" + "a" * 64, True),
        ("ghcr.io/acme/srv:1.2", False),
        ("ghcr.io/acme/srv@sha256:" + "a" * 63, False),
        ("ghcr.io/acme/srv@sha256:" + "A" * 64, False),
        ("@sha256:" + "a" * 64, False),
    ],
)
def test_image_pinned_by_digest(image, pinned):
    assert image_pinned(image) is pinned


ORDER = ("candidate", "staging", "production", "archived")


@pytest.mark.parametrize(
    "dst,pinned_from,needs",
    [
        ("staging", ("production",), None),
        ("production", ("production",), "production"),
        ("production", ("staging",), "staging"),
        ("staging", ("staging",), "staging"),
        ("archived", ("staging",), None),  # withdrawing never needs a pin
        ("staging", ("approved",), "approved"),  # a stage this graph lacks: required everywhere
        ("production", (), None),
    ],
)
def test_pin_required_from_the_policy_stage(dst, pinned_from, needs):
    assert pin_required(dst, pinned_from, ORDER) == needs


@pytest.mark.parametrize(
    "binding,policy,enforced",
    [
        ({"policyName": "p", "validationActions": ["Deny"]}, {}, True),
        ({"policyName": "p", "validationActions": ["Deny", "Audit"]}, {"failurePolicy": "Fail"}, True),
        ({"policyName": "p", "validationActions": ["Warn", "Audit"]}, {}, False),  # not denying
        ({"policyName": "p", "validationActions": ["Deny"]}, {"failurePolicy": "Ignore"}, False),
        ({"policyName": "other", "validationActions": ["Deny"]}, {}, False),
        (  # narrowed to some namespaces: not the chart's binding
            {"policyName": "p", "validationActions": ["Deny"], "matchResources": {"namespaceSelector": {}}},
            {},
            False,
        ),
        (None, {}, False),  # deleted (break-glass)
        ({"policyName": "p", "validationActions": ["Deny"]}, None, False),  # the policy deleted
    ],
)
def test_admission_is_enforced_only_when_observed(binding, policy, enforced):
    bindings = {} if binding is None else {"p": {"spec": binding}}
    policies = {} if policy is None else {"p": {"spec": policy}}
    assert admission_enforced("p", bindings, policies) is enforced
