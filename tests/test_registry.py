"""The registry's pure decisions: a Model's stage graph and the version decision under its gates
(the gates themselves: test_gates.py), the memory (records never forget a digest; a reused number is
refused for good) and retention selection at a given time (a fake clock): what is archived, which
artifacts are deleted, and what is never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from modelversioning.api import wire as R
from modelversioning.api.model import ModelApprovalSpec, ModelSpec
from modelversioning.domain import registry
from modelversioning.domain.registry import Retention, VersionView, parse_duration, select
from modelversioning.domain.stages import StageGraph, has_reached, next_hop
from modelversioning.domain.version_facts import RegistryFacts, Serving, VersionFacts, VersionPolicy
from modelversioning.domain.version_plan import decide, serving_periods
from test_gates import cand

NOW = datetime(2024, 7, 2, 10, 0, 0, tzinfo=UTC)
SHA = "a" * 64


def verified_status(stage="candidate"):
    return {
        "observedGeneration": 1,
        "stage": stage,
        "history": [{"to": "candidate", "at": "t0", "reason": R.REGISTERED, "actor": "ci"}],
        "artifact": {"digest": SHA, "verifiedAt": "2024-07-02T09:00:00Z"},
        "conditions": [
            {
                "type": "ArtifactVerified",
                "status": "True",
                "reason": R.VERIFIED,
                "message": "ok",
                "observedGeneration": 1,
            }
        ],
    }


def facts(**kw):
    base = dict(
        name="m-v1.0.0", generation=1, status=verified_status(), model="m", version="1.0.0",
        requested="candidate", digest=SHA, shown_uri="s3://b/m", actor="alice", why="looks good",
    )  # fmt: skip
    base.update(kw)
    return VersionFacts(**base)


# ---- timestamps ---------------------------------------------------------------------------------


def test_parse_time_never_guesses_a_zone():
    """The one timestamp parser (the operator's and kubectl models'): without a zone it is unknown
    (None), never taken as UTC; Z or an offset give the same instant."""
    assert registry.parse_time("2024-07-02T10:00:00") is None
    assert registry.parse_time("2024-07-02T10:00:00Z") == NOW
    assert registry.parse_time("2024-07-02T12:00:00+02:00") == NOW
    assert registry.parse_time("") is None and registry.parse_time("yesterday") is None


# ---- a Model's stage graph ------------------------------------------------------------------------

FIVE = {
    "stages": ["candidate", "validated", "staging", "approved", "production"],
    "transitions": [
        {"from": "candidate", "to": "validated", "lineage": ["author"]},
        {"from": "validated", "to": "staging"},
        {"from": "staging", "to": "approved", "approvals": 2},
        {"from": "approved", "to": "production", "metrics": ["auc >= production.auc - 0.005"]},
        {"from": "production", "to": "staging"},
    ],
}


def test_five_stage_graph_walks_in_order_and_always_allows_archived():
    spec = ModelSpec.model_validate(FIVE)
    g = spec.graph(StageGraph())
    assert g.order[:6] == ("candidate", "validated", "staging", "approved", "production", "archived")
    assert next_hop(g, "candidate", "production") == "validated"
    assert next_hop(g, "staging", "production") == "approved"
    assert g.allows("validated", "archived") and g.allows("production", "archived")
    assert not g.allows("candidate", "staging")  # no shortcut around the gates
    assert [r.approvals for r in spec.rules()] == [0, 2, 0]


def test_model_spec_validation():
    with pytest.raises(ValidationError, match="stage 'reviewd' is not in stages"):
        ModelSpec.model_validate({**FIVE, "transitions": [{"from": "staging", "to": "reviewd"}]})
    with pytest.raises(ValidationError, match="metric gate"):
        ModelSpec.model_validate(
            {"transitions": [{"from": "staging", "to": "production", "metrics": ["auc"]}]}
        )
    with pytest.raises(ValidationError):
        ModelSpec.model_validate({"retention": {"archiveAfter": "6 months"}})
    with pytest.raises(ValidationError):
        ModelApprovalSpec.model_validate(
            {"model": "m", "version": "1.0.0", "sha256": "x", "stage": "s", "approver": "a"}
        )


def test_custom_stages_carry_no_serving_rights():
    from modelversioning.domain.stages import Stage

    assert not has_reached("approved", Stage.STAGING)
    assert has_reached("approved", Stage.CANDIDATE)
    assert has_reached("production", Stage.STAGING) and not has_reached("archived", Stage.CANDIDATE)


# ---- the ModelVersion decision with a Model -------------------------------------------------------


def registry_for(spec: dict, **kw) -> RegistryFacts:
    m = ModelSpec.model_validate(spec)
    return RegistryFacts(graph=m.graph(StageGraph()), rules=m.rules(), **kw)


def test_a_worse_candidate_is_refused_with_the_numbers():
    reg = registry_for(
        {
            "transitions": [
                {"from": "staging", "to": "production", "metrics": ["auc >= production.auc - 0.005"]}
            ]
        },
        candidate=cand({"auc": 0.941}, (("2.3.8", {"auc": 0.947}),), lineage={}),
    )
    plan = decide(
        facts(status=verified_status("staging"), requested="production", registry=reg), VersionPolicy(), NOW
    )
    st = plan.status
    assert st is not None and st["stage"] == "staging"
    tr = next(c for c in st["conditions"] if c["type"] == "StageTransition")
    assert tr["status"] == "False" and tr["reason"] == R.METRIC_GATE_FAILED
    assert "auc 0.941 < production 0.947 - 0.005 (2.3.8)" in tr["message"]
    assert any(e.reason == R.STAGE_TRANSITION_BLOCKED and "0.941" in e.message for e in plan.events)


def test_a_five_stage_walk_stops_at_the_approval_gate_and_records_approvers():
    reg = registry_for(FIVE, candidate=cand({"auc": 0.95}, approvals={"approved": ("alice",)}))
    plan = decide(facts(requested="production", registry=reg), VersionPolicy(), NOW)
    assert plan.status is not None and plan.status["stage"] == "staging"
    assert [h["to"] for h in plan.status["history"]] == ["candidate", "validated", "staging"]
    tr = next(c for c in plan.status["conditions"] if c["type"] == "StageTransition")
    assert tr["reason"] == R.APPROVAL_REQUIRED and "has 1 (alice)" in tr["message"]
    reg2 = registry_for(FIVE, candidate=cand({"auc": 0.95}, approvals={"approved": ("alice", "bob")}))
    plan2 = decide(facts(status=plan.status, requested="production", registry=reg2), VersionPolicy(), NOW)
    assert plan2.status is not None and plan2.status["stage"] == "production"
    hop = next(h for h in plan2.status["history"] if h["to"] == "approved")
    assert hop["approvedBy"] == ["alice", "bob"]


def test_a_reused_version_number_is_never_verified_nor_promoted_and_stays_refused():
    why = "version 1.0.0 was registered on t0 with sha256 bbbbbbbbbbbb; this object has sha256 aaaaaaaaaaaa"
    fresh = facts(status={}, requested="production", registry=RegistryFacts(reused=why))
    plan = decide(fresh, VersionPolicy(), NOW)
    assert plan.status is not None and plan.verify.value == "forget"
    v = next(c for c in plan.status["conditions"] if c["type"] == "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("False", R.VERSION_REUSED)
    assert plan.status["stage"] == "candidate" and "artifact" not in plan.status
    assert [e.type for e in plan.events if e.reason == R.VERSION_REUSED] == ["Warning"]
    # the Model's memory gone: the status still holds the refusal
    again = decide(facts(status=plan.status, requested="production"), VersionPolicy(), NOW)
    assert again.status is not None and again.status["stage"] == "candidate"
    assert (
        next(c for c in again.status["conditions"] if c["type"] == "ArtifactVerified")["reason"]
        == R.VERSION_REUSED
    )
    assert not again.events


def test_a_deleted_artifact_keeps_the_record_and_is_not_fetched():
    reg = RegistryFacts(artifact_deleted="deleted at t by retention")
    plan = decide(
        facts(status=verified_status("archived"), requested="archived", registry=reg), VersionPolicy(), NOW
    )
    assert plan.status is not None and plan.status["artifact"]["digest"] == SHA
    v = next(c for c in plan.status["conditions"] if c["type"] == "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("False", R.ARTIFACT_DELETED)
    assert plan.verify.value == "forget" and not plan.events  # the Model posted the Event


# ---- memory ---------------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def view(version, stage="candidate", history=(), digest=SHA, **kw):
    return VersionView(
        name=f"m-v{version}",
        version=version,
        uid=kw.pop("uid", f"uid-{version}"),
        digest=digest,
        uri=kw.pop("uri", f"s3://b/m/{version}"),
        created="2024-01-01T00:00:00Z",
        stage=stage,
        history=tuple(history),
        **kw,
    )


def test_records_never_forget_a_digest_and_refuse_its_reuse():
    recs = registry.record([], [view("1.0.0"), view("1.1.0")], T0)
    assert [(r["version"], r["digest"], r["artifact"]) for r in recs] == [
        ("1.0.0", SHA, "Present"),
        ("1.1.0", SHA, "Present"),
    ]
    recs = registry.record(recs, [view("1.1.0")], T0 + timedelta(days=1))  # 1.0.0 deleted
    gone = next(r for r in recs if r["version"] == "1.0.0")
    assert gone["removedAt"] == "2024-01-02T00:00:00Z" and gone["digest"] == SHA
    other = "b" * 64
    recs2 = registry.record(
        recs, [view("1.0.0", digest=other, uid="x"), view("1.1.0")], T0 + timedelta(days=2)
    )
    assert next(r for r in recs2 if r["version"] == "1.0.0")["digest"] == SHA  # never overwritten
    msg = registry.reused(recs2, "1.0.0", other)
    assert msg is not None and "registered on 2024-01-01T00:00:00Z with sha256 aaaaaaaaaaaa" in msg
    assert registry.reused(recs2, "1.0.0", SHA) is None  # the same weights again: fine
    assert registry.reused(recs2, "9.9.9", other) is None


# ---- retention with a fake clock ---------------------------------------------------------------


def prod_history(start: datetime, days_in_prod: int) -> list[dict]:
    def at(t: datetime) -> str:
        return registry.rfc3339(t)

    return [
        {"to": "candidate", "at": at(start)},
        {"from": "candidate", "to": "staging", "at": at(start)},
        {"from": "staging", "to": "production", "at": at(start)},
        {"from": "production", "to": "staging", "at": at(start + timedelta(days=days_in_prod))},
    ]


RULES = Retention(parse_duration("180d"), parse_duration("730d"), keep_previous_production=2)


def fleet():
    """1.0 .. 1.4 each in production for 30 days in turn; 1.5 in production now; 0.9 a stale candidate."""
    vs = [view(f"1.{i}.0", "staging", prod_history(T0 + timedelta(days=30 * i), 30)) for i in range(5)]
    vs.append(view("1.5.0", "production", prod_history(T0 + timedelta(days=150), 0)[:3]))
    vs.append(view("0.9.0", "candidate", [{"to": "candidate", "at": "2024-01-01T00:00:00Z"}]))
    return vs


@pytest.mark.parametrize(
    "days,archived",
    [
        (100, []),  # nothing is out of production for 180 days yet
        (215, ["m-v0.9.0", "m-v1.0.0"]),  # 0.9 registered 215 d ago; 1.0 left production 185 d ago
        (400, ["m-v0.9.0", "m-v1.0.0", "m-v1.1.0", "m-v1.2.0"]),  # 1.3, 1.4 kept: the two previous
    ],
)
def test_retention_archives_what_is_out_of_production_longer_than_the_period(days, archived):
    plan = select(fleet(), RULES, T0 + timedelta(days=days))
    assert [n for n, _ in plan.archive] == archived
    assert plan.kept["m-v1.4.0"].startswith("previous production version #1")
    assert plan.kept["m-v1.3.0"].startswith("previous production version #2")
    assert plan.kept["m-v1.5.0"] == "in production"
    assert not plan.delete  # nothing archived yet


def test_retention_deletes_artifacts_of_archived_versions_only_when_due_and_never_what_is_kept():
    vs = [
        v
        if v.stage in ("production",) or v.version in ("1.3.0", "1.4.0")
        else VersionView(**{**v.__dict__, "stage": "archived"})
        for v in fleet()
    ]
    vs = [
        VersionView(**{**v.__dict__, "referenced_by": ("fraud",)}) if v.version == "1.1.0" else v for v in vs
    ]
    # 1.2.0 shares its artifact with 1.4.0 (a patch release of the same weights): kept
    vs = [
        VersionView(**{**v.__dict__, "uri": "s3://b/m/shared"}) if v.version in ("1.2.0", "1.4.0") else v
        for v in vs
    ]
    early = select(vs, RULES, T0 + timedelta(days=700))
    assert early.delete == ()
    assert early.next_due == T0 + timedelta(days=730)  # 0.9.0: registered at T0
    plan = select(vs, RULES, T0 + timedelta(days=1000))
    assert [n for n, _ in plan.delete] == ["m-v0.9.0", "m-v1.0.0"]
    assert "longer than deleteArtifactsAfter 730d" in dict(plan.delete)["m-v1.0.0"]
    assert plan.kept["m-v1.1.0"] == "referenced by ModelEndpoint fraud"
    assert plan.kept["m-v1.2.0"] == "its artifact is also the artifact of 1.4.0"
    # deleted once: not again
    done = [
        VersionView(**{**v.__dict__, "artifact_deleted": True}) if v.version == "1.0.0" else v for v in vs
    ]
    assert [n for n, _ in select(done, RULES, T0 + timedelta(days=1000)).delete] == ["m-v0.9.0"]


def test_retention_keep_count_and_reused_versions():
    keep_one = Retention(parse_duration("1d"), None, keep_previous_production=1)
    plan = select(fleet(), keep_one, T0 + timedelta(days=400))
    assert "m-v1.3.0" in [n for n, _ in plan.archive] and "m-v1.4.0" not in [n for n, _ in plan.archive]
    reused = [VersionView(**{**v.__dict__, "reused": True}) if v.version == "0.9.0" else v for v in fleet()]
    assert "m-v0.9.0" not in [n for n, _ in select(reused, keep_one, T0 + timedelta(days=400)).archive]
    assert select(fleet(), Retention(), T0 + timedelta(days=4000)) == registry.RetentionPlan(
        kept=select(fleet(), Retention(), T0).kept
    )  # no rules: nothing happens, ever


def test_retention_keeps_the_higher_versions_when_they_left_production_in_the_same_second():
    same = prod_history(T0, 0)  # every one promoted and demoted at T0
    vs = [view(v, "staging", same) for v in ("1.4.0", "1.10.0", "1.3.0", "1.9.0")]
    plan = select(vs, Retention(parse_duration("1d"), None, 2), T0 + timedelta(days=2))
    assert sorted(n for n, _ in plan.archive) == ["m-v1.3.0", "m-v1.4.0"]


def test_only_archived_versions_lose_their_artifact():
    """Deleting needs the version archived first: with archiving off, nothing is ever deleted."""
    no_archive = Retention(None, parse_duration("730d"), keep_previous_production=0)
    plan = select(fleet(), no_archive, T0 + timedelta(days=4000))
    assert plan.archive == () and plan.delete == ()


# ---- deletion protection ------------------------------------------------------------------------

POLICY = "Model m: spec.deletionPolicy.allowPastCandidate is false"
C, A = {"to": "candidate", "at": "t0"}, {"from": "candidate", "to": "archived", "at": "t1"}


@pytest.mark.parametrize(
    "stage,history,protected",
    [
        ("candidate", [C], False),  # never past candidate: may go
        ("", [], False),  # not reconciled yet
        ("staging", [C, {"from": "candidate", "to": "staging"}], True),
        ("production", [C, {"to": "staging"}, {"to": "production"}], True),
        ("validated", [C, {"to": "validated"}], True),  # a Model's own stage is past candidate too
        ("archived", [C, A], False),  # an experiment shelved straight from candidate
        ("archived", [C, {"to": "staging"}, {"from": "staging", "to": "archived"}], True),
        ("archived", [{"to": "archived"}] * 50, True),  # trimmed: where it began is not known
    ],
)
def test_which_versions_are_deletion_protected(stage, history, protected):
    got = registry.deletion_protection(stage, history, POLICY, history_limit=50)
    assert got == (POLICY if protected else None)
    assert registry.deletion_protection(stage, history, None) is None  # the policy allows it: never


def test_decide_marks_a_version_leaving_candidate_and_unmarks_it_when_the_policy_allows():
    reg = RegistryFacts(deletion_policy=POLICY)
    plan = decide(facts(requested="staging", registry=reg), VersionPolicy(), NOW)
    assert plan.status is not None and plan.status["stage"] == "staging"
    assert plan.annotations == {R.DELETION_PROTECTED_ANNOTATION: POLICY}  # same reconcile
    marked = facts(status=plan.status, requested="staging", registry=reg, protected=POLICY)
    assert decide(marked, VersionPolicy(), NOW).annotations == {}  # already there: no write
    allowed = facts(status=plan.status, requested="staging", registry=RegistryFacts(), protected=POLICY)
    assert decide(allowed, VersionPolicy(), NOW).annotations == {R.DELETION_PROTECTED_ANNOTATION: None}
    stays = decide(facts(registry=reg), VersionPolicy(), NOW)  # a candidate: nothing to mark
    assert stays.status is not None and stays.annotations == {}


# ---- serving periods ------------------------------------------------------------------------------


def test_serving_periods_open_and_close_with_served_by_and_are_capped():
    stable = Serving("fraud", "stable", 100)
    p1 = serving_periods(None, (stable, Serving("fraud", "canary", 0)), "t1")
    assert p1 == [{"endpoint": "fraud", "variant": "stable", "from": "t1"}]  # weight 0 serves nothing
    assert serving_periods(p1, (Serving("fraud", "stable", 40),), "t2") == p1  # still serving
    p3 = serving_periods(p1, (Serving("shadow", "m", 0, mirror=True),), "t3")  # swapped out; mirrored
    assert p3 == [
        {"endpoint": "fraud", "variant": "stable", "from": "t1", "to": "t3"},
        {"endpoint": "shadow", "variant": "m", "from": "t3", "mirror": True},
    ]
    p4 = serving_periods(p3, (stable,), "t4")  # served again: a new period
    assert [(p["variant"], p["from"], p.get("to")) for p in p4] == [
        ("stable", "t1", "t3"),
        ("m", "t3", "t4"),
        ("stable", "t4", None),
    ]
    many = p4
    for i in range(5, 61):
        many = serving_periods(many, () if i % 2 else (stable,), f"t{i:02}")
    assert len(many) == 20 and many[-1]["from"] == "t60" and "to" not in many[-1]
    assert many[0]["from"] == "t22"  # the oldest closed periods went first
    # a period still open is never dropped, however old
    long = serving_periods(None, (stable,), "t00")
    for i in range(1, 60):
        long = serving_periods(long, (stable, Serving("other", "x", 5)) if i % 2 else (stable,), f"t{i:02}")
    assert len(long) == 20 and long[0] == {"endpoint": "fraud", "variant": "stable", "from": "t00"}


def test_decide_records_serving_periods_in_status():
    plan = decide(
        facts(
            status=verified_status("production"), requested="production", serving=(Serving("ep", "a", 100),)
        ),
        VersionPolicy(),
        NOW,
    )
    assert plan.status is not None
    assert plan.status["servingHistory"] == [
        {"endpoint": "ep", "variant": "a", "from": "2024-07-02T10:00:00Z"}
    ]


@pytest.mark.parametrize(
    ("allow", "without_model", "expected"),
    [
        (None, False, None),  # no Model, operator default: deletable
        (None, True, "the operator setting registry.protectVersionsWithoutModel"),
        (False, False, "Model m: spec.deletionPolicy.allowPastCandidate is false"),
        (False, True, "Model m: spec.deletionPolicy.allowPastCandidate is false"),
        (True, True, None),  # the Model allows it, whatever the operator default
    ],
)
def test_which_policy_refuses_deleting_versions_past_candidate(allow, without_model, expected) -> None:
    from modelversioning.domain.registry import deletion_policy

    assert deletion_policy("m", allow, without_model) == expected
