"""The ModelVersion decisions (domain.version_plan), table-tested without a cluster: the stage walk,
blocked gates, deletion hold, invalid specs, the history's actor and reason, and idle silence
(verification, domain.version_verify: test_version_verify.py, with this file's helpers)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from modelversioning.api import wire as R
from modelversioning.api.wire import IN_USE_FINALIZER
from modelversioning.domain import conditions as cond
from modelversioning.domain.stages import Stage, StageGraph, next_hop
from modelversioning.domain.version_facts import (
    RegistryFacts,
    Serving,
    VerifierFacts,
    VerifyAction,
    VerifyResult,
    VersionFacts,
    VersionPolicy,
)
from modelversioning.domain.version_plan import decide

NOW = datetime(2024, 7, 2, 10, 0, 0, tzinfo=UTC)
STAMP = "2024-07-02T10:00:00Z"
SHA = "a" * 64
POLICY = VersionPolicy(retry_initial_seconds=5, retry_max_seconds=300)
OK = VerifyResult(R.VERIFIED, "sha256 matches", transient=False, actual=SHA, size_bytes=42)


def _conds(*triples):
    return [
        {"type": t, "status": s, "reason": r, "message": m, "observedGeneration": 1} for t, s, r, m in triples
    ]


def verified_status(stage="candidate", **extra):
    """A status as the operator writes it once the artifact is verified."""
    return {
        "observedGeneration": 1,
        "stage": stage,
        "history": [{"to": "candidate", "at": "t0", "reason": R.REGISTERED, "actor": "ci"}],
        "artifact": {"digest": SHA, "verifiedAt": "2024-07-02T09:00:00Z"},
        "conditions": _conds(("ArtifactVerified", "True", R.VERIFIED, "sha256 matches")),
        **extra,
    }


def unverified(reason=None, status="False", gen=1, message="m"):
    st = {"stage": "candidate", "history": [{"to": "candidate"}]}
    if reason:
        st["conditions"] = [
            {
                "type": "ArtifactVerified",
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": gen,
            }
        ]
    return st


def facts(**kw):
    base = dict(
        name="m-v1.0.0",
        generation=1,
        status=verified_status(),
        model="m",
        version="1.0.0",
        requested=Stage.CANDIDATE,
        digest=SHA,
        shown_uri="s3://b/m",
        actor="alice",
        why="canary looked good",
    )
    base.update(kw)
    return VersionFacts(**base)


def c(plan, type_):
    return cond.get(plan.status["conditions"], type_)


def event_reasons(plan):
    return [(e.type, e.reason) for e in plan.events]


# ---- the stage walk ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "requested", "hops"),
    [
        ("candidate", "staging", ["staging"]),
        ("candidate", "production", ["staging", "production"]),
        ("staging", "production", ["production"]),
        ("production", "archived", ["archived"]),
        ("production", "staging", ["staging"]),
        ("archived", "production", ["staging", "production"]),
        ("candidate", "archived", ["archived"]),
        ("staging", "staging", []),
    ],
)
def test_walks_one_allowed_hop_at_a_time_and_records_each(stage, requested, hops):
    plan = decide(facts(status=verified_status(stage), requested=Stage(requested)), POLICY, NOW)
    assert plan.status["stage"] == requested
    added = plan.status["history"][1:]
    path = [stage, *hops]
    assert [(h["from"], h["to"]) for h in added] == list(zip(path, path[1:], strict=False))
    assert all(
        h["actor"] == "alice" and h["reason"] == "canary looked good" and h["at"] == STAMP for h in added
    )
    # one Event for the walk, naming every hop, however many hops
    assert event_reasons(plan) == ([("Normal", R.STAGE_CHANGED)] if hops else [])
    if hops:
        assert plan.events[0].message == f"{' -> '.join(path)} by alice: canary looked good"
    assert [(t.src, t.dst, t.outcome) for t in plan.transitions] == [
        (a, b, "made") for a, b in zip(path, path[1:], strict=False)
    ]
    assert c(plan, "StageTransition")["reason"] == R.IN_EFFECT
    assert c(plan, "Ready")["status"] == "True"
    assert plan.notify_endpoints == bool(hops)


def test_first_reconcile_registers_as_candidate_with_the_actor():
    st = {"conditions": _conds(("ArtifactVerified", "True", R.VERIFIED, "ok")), "artifact": {"digest": SHA}}
    plan = decide(facts(status=st, requested=Stage.STAGING, actor="bob (apply)"), POLICY, NOW)
    first, hop = plan.status["history"]
    assert first == {"to": "candidate", "at": STAMP, "reason": R.REGISTERED, "actor": "bob (apply)"}
    assert (hop["from"], hop["to"], hop["actor"]) == ("candidate", "staging", "bob (apply)")
    assert plan.status["stage"] == "staging"


def test_stage_changed_event_names_actor_and_reason():
    plan = decide(facts(requested=Stage.STAGING, actor="jane", why="ready for QA"), POLICY, NOW)
    assert plan.events[0].message == "candidate -> staging by jane: ready for QA"


@pytest.mark.parametrize(
    ("verified", "requested", "missing", "reason", "stays"),
    [
        # no path in the graph
        ("True", "candidate", (), R.TRANSITION_NOT_ALLOWED, "staging"),
        # staging and production need ArtifactVerified=True
        ("False", "staging", (), R.ARTIFACT_NOT_VERIFIED, "candidate"),
        ("False", "production", (), R.ARTIFACT_NOT_VERIFIED, "candidate"),
        # production needs complete lineage: the walk stops in staging
        ("True", "production", ("lineage.author",), R.LINEAGE_INCOMPLETE, "staging"),
    ],
)
def test_a_blocked_gate_keeps_the_stage_says_why_and_warns_once(verified, requested, missing, reason, stays):
    start = "staging" if requested == "candidate" else "candidate"
    st = verified_status(start)
    if verified == "False":
        st = {
            **st,
            "artifact": None,
            "conditions": _conds(("ArtifactVerified", "False", R.DIGEST_MISMATCH, "x")),
        }
    f = facts(status=st, requested=Stage(requested), missing_lineage=missing)
    plan = decide(f, POLICY, NOW)
    assert plan.status["stage"] == stays
    sc = c(plan, "StageTransition")
    assert (sc["status"], sc["reason"]) == ("False", reason)
    assert sc["message"].startswith(f"requested {requested}, staying in {stays}: ")
    assert ("Warning", R.STAGE_TRANSITION_BLOCKED) in event_reasons(plan)
    assert plan.transitions[-1].outcome == "blocked" and plan.transitions[-1].dst == requested
    assert c(plan, "Ready")["status"] == "False"
    if missing:
        assert "lineage.author" in sc["message"]
    # the next reconcile (same block, status as written) is silent
    again = decide(replace(f, status=plan.status), POLICY, NOW)
    assert R.STAGE_TRANSITION_BLOCKED not in [r for _, r in event_reasons(again)]
    assert again.transitions == ()
    assert again.status == plan.status


def test_waiting_for_verification_is_unknown_not_a_warning():
    st = {"stage": "candidate", "history": [{"to": "candidate"}]}
    plan = decide(
        facts(status=st, requested=Stage.PRODUCTION, verifier=VerifierFacts(running=True)), POLICY, NOW
    )
    sc = c(plan, "StageTransition")
    assert (sc["status"], sc["reason"]) == ("Unknown", R.ARTIFACT_NOT_VERIFIED)
    assert plan.events == () and plan.transitions == ()
    assert (c(plan, "Ready")["status"], c(plan, "Ready")["reason"]) == ("Unknown", R.VERIFYING)


def test_waiting_for_the_registrys_record_is_unknown_not_a_warning():
    """Verified, the Model's record of the version not written yet: in progress (it was a Warning
    StageTransitionBlocked "the artifact has not been verified" on the happy path of every new model)."""
    st = {"stage": "candidate", "history": [{"to": "candidate"}]}
    pending = RegistryFacts(pending="waiting for Model m to record version 1.0.0")
    f = facts(status=st, requested=Stage.PRODUCTION, registry=pending, verifier=VerifierFacts(result=OK))
    plan = decide(f, POLICY, NOW)
    assert (c(plan, "ArtifactVerified")["status"], c(plan, "ArtifactVerified")["reason"]) == (
        "Unknown",
        R.RECORD_PENDING,
    )
    sc = c(plan, "StageTransition")
    assert (sc["status"], sc["reason"]) == ("Unknown", R.ARTIFACT_NOT_VERIFIED)
    assert plan.events == () and plan.transitions == () and plan.status["stage"] == "candidate"


def test_configured_graph_shortens_the_walk():
    strict = replace(
        POLICY, graph=StageGraph.from_config({"candidate": ["staging"], "staging": ["production"]})
    )
    plan = decide(facts(status=verified_status("production"), requested=Stage.ARCHIVED), strict, NOW)
    assert plan.status["stage"] == "production"
    assert c(plan, "StageTransition")["reason"] == R.TRANSITION_NOT_ALLOWED


def test_next_hop_walks_the_allowed_graph():
    g = StageGraph()
    assert next_hop(g, Stage.CANDIDATE, Stage.PRODUCTION) is Stage.STAGING
    assert next_hop(g, Stage.ARCHIVED, Stage.PRODUCTION) is Stage.STAGING
    assert next_hop(g, Stage.STAGING, Stage.CANDIDATE) is None
    strict = StageGraph.from_config({"candidate": ["staging"], "staging": ["production"]})
    assert next_hop(strict, Stage.PRODUCTION, Stage.ARCHIVED) is None


# ---- in use, finalizer, deletion ---------------------------------------------------------------

SERVING = (Serving("ep", "canary", 10), Serving("ep", "shadow", 0, mirror=True), Serving("other", "a", 90))


def test_served_version_lists_endpoints_and_holds_the_finalizer():
    plan = decide(facts(serving=SERVING, finalizers=("x/other",)), POLICY, NOW)
    assert plan.status["servedBy"] == [
        {"endpoint": "ep", "variant": "canary", "weight": 10},
        {"endpoint": "ep", "variant": "shadow", "weight": 0, "mirror": True},
        {"endpoint": "other", "variant": "a", "weight": 90},
    ]
    iu = c(plan, "InUse")
    assert (iu["status"], iu["reason"], iu["message"]) == (
        "True",
        R.SERVED,
        "ep/canary=10, ep/shadow=0, other/a=90",
    )
    assert plan.finalizers == ("x/other", IN_USE_FINALIZER)
    assert decide(facts(serving=SERVING, finalizers=(IN_USE_FINALIZER,)), POLICY, NOW).finalizers is None


def test_the_region_is_written_once_per_status_only_when_set():
    served = facts(serving=SERVING, finalizers=(IN_USE_FINALIZER,))
    plan = decide(served, replace(POLICY, region="eu-west"), NOW)
    assert plan.status["region"] == "eu-west" and plan.status["servedBy"] and plan.status["servingHistory"]
    assert "region" not in (decide(served, POLICY, NOW).status or {})
    # a region set before and unset now: the status built again has none
    again = decide(replace(served, status=plan.status), POLICY, NOW)
    assert "region" not in again.status
    idle = decide(replace(served, status=plan.status), replace(POLICY, region="eu-west"), NOW)
    assert idle.status == plan.status


def test_unused_version_releases_the_finalizer():
    plan = decide(facts(finalizers=("x/other", IN_USE_FINALIZER)), POLICY, NOW)
    assert plan.finalizers == ("x/other",)
    assert "servedBy" not in plan.status
    assert (c(plan, "InUse")["status"], c(plan, "InUse")["reason"]) == ("False", R.NOT_SERVED)
    assert decide(facts(), POLICY, NOW).finalizers is None


OTHER = "x/other"


@pytest.mark.parametrize(
    ("served", "policy", "current", "want"),
    [
        # without the in-use admission policy: the finalizer exactly while served
        pytest.param(True, False, (OTHER,), (OTHER, IN_USE_FINALIZER), id="served:-added"),
        pytest.param(True, False, (IN_USE_FINALIZER,), None, id="served:-already-there"),
        pytest.param(False, False, (OTHER, IN_USE_FINALIZER), (OTHER,), id="unused:-released"),
        pytest.param(False, False, (OTHER,), None, id="unused:-nothing-to-do"),
        # with it enforced: status.servedBy is the record the API server checks, no finalizer write
        pytest.param(True, True, (OTHER,), None, id="policy-served:-none-added"),
        pytest.param(True, True, (IN_USE_FINALIZER,), None, id="policy-served:-an-old-one-is-kept"),
        pytest.param(False, True, (IN_USE_FINALIZER, OTHER), (OTHER,), id="policy-unused:-an-old-one-goes"),
        pytest.param(False, True, (), None, id="policy-unused:-nothing-to-do"),
    ],
)
def test_in_use_protection_is_the_finalizer_or_the_servedby_record(served, policy, current, want):
    """Issue #25: with the in-use admission policy enforced (observed), a served version costs no
    finalizer writes; its status.servedBy (in the same status write) is what the API server checks."""
    f = facts(serving=SERVING if served else (), finalizers=current, in_use_policy=policy)
    plan = decide(f, POLICY, NOW)
    assert plan.finalizers == want
    recorded = [s["endpoint"] for s in plan.status.get("servedBy", [])]
    assert recorded == (["ep", "ep", "other"] if served else [])
    assert c(plan, "InUse")["status"] == ("True" if served else "False")


def test_the_record_goes_with_the_verification_in_one_write_when_an_endpoint_names_a_new_version():
    """A new version an endpoint names before it is verified: servedBy is in the status write that makes
    it verified, so no route can send it traffic before the record is there (admission mode)."""
    f = facts(
        status={},
        serving=(Serving("ep", "canary", 0),),
        in_use_policy=True,
        requested=Stage.PRODUCTION,
        verifier=VerifierFacts(result=OK, result_generation=1, age=10.0),
    )
    plan = decide(f, POLICY, NOW)
    assert c(plan, "ArtifactVerified")["status"] == "True" and plan.status["stage"] == "production"
    assert plan.status["servedBy"] == [{"endpoint": "ep", "variant": "canary", "weight": 0}]
    assert plan.finalizers is None
    quiet = decide(replace(f, verifier=VerifierFacts(running=True)), POLICY, NOW)
    assert quiet.status is None and quiet.finalizers is None  # nothing verified, nothing to route to


def test_deletion_is_held_while_served_and_warned_once():
    f = facts(deleting=True, serving=SERVING, finalizers=(IN_USE_FINALIZER,))
    plan = decide(f, POLICY, NOW)
    d = c(plan, "Deleting")
    assert (d["status"], d["reason"]) == ("False", R.IN_USE)
    assert "ModelEndpoint ep, other" in d["message"]
    assert event_reasons(plan) == [("Warning", R.DELETION_HELD)]
    assert plan.finalizers is None and plan.verify is VerifyAction.NONE and plan.warning is None
    assert plan.status["stage"] == "candidate"  # the rest of the status is kept
    again = decide(replace(f, status=plan.status), POLICY, NOW)
    assert again.events == () and again.status == plan.status


def test_deletion_racing_a_new_use_is_logged():
    plan = decide(facts(deleting=True, serving=SERVING), POLICY, NOW)
    assert plan.warning and "in use by ep, other" in plan.warning


@pytest.mark.parametrize(
    ("fins", "expected"), [((IN_USE_FINALIZER, "x/y"), ("x/y",)), (("x/y",), None), ((), None)]
)
def test_deletion_of_an_unused_version_releases_the_finalizer_and_writes_nothing(fins, expected):
    plan = decide(facts(deleting=True, finalizers=fins), POLICY, NOW)
    assert plan.finalizers == expected
    assert plan.status is None and plan.events == ()


# ---- invalid spec ------------------------------------------------------------------------------


def test_invalid_spec_is_reported_once():
    f = facts(invalid="spec.version: not SemVer")
    plan = decide(f, POLICY, NOW)
    rd = c(plan, "Ready")
    assert (rd["status"], rd["reason"], rd["message"]) == (
        "False",
        R.INVALID_SPEC,
        "spec.version: not SemVer",
    )
    assert event_reasons(plan) == [("Warning", R.INVALID_SPEC)]
    assert plan.verify is VerifyAction.NONE and plan.finalizers is None
    assert decide(replace(f, status=plan.status), POLICY, NOW).events == ()


def test_an_invalid_version_can_still_be_deleted():
    plan = decide(facts(invalid="bad", deleting=True, finalizers=(IN_USE_FINALIZER,)), POLICY, NOW)
    assert plan.finalizers == ()


# ---- idle --------------------------------------------------------------------------------------


def test_a_converged_version_decides_the_same_status_and_does_nothing():
    f = facts(status=unverified(), requested=Stage.PRODUCTION, serving=SERVING[:1])
    first = decide(replace(f, verifier=VerifierFacts(result=OK)), POLICY, NOW)
    later = NOW + timedelta(hours=1)
    idle = decide(replace(f, status=first.status, finalizers=(IN_USE_FINALIZER,)), POLICY, later)
    assert idle.status == first.status
    assert idle.events == () and idle.transitions == () and idle.finalizers is None
    assert idle.verify is VerifyAction.NONE and idle.requeue_after is None and not idle.notify_endpoints


def test_rollout_grant_promotes_one_step_while_spec_stage_is_unchanged():
    from modelversioning.domain.stages import StageGraph
    from modelversioning.domain.version_plan import merge_rollouts
    from modelversioning.domain.version_stage import Grant, effective_request

    g = StageGraph()
    grant = Grant(Stage.PRODUCTION, Stage.STAGING, Stage.STAGING, "ModelEndpoint/fraud", "errors=0.01 Passed")
    assert effective_request(Stage.STAGING, "jane", "ok", grant, g) == (
        Stage.PRODUCTION,
        "ModelEndpoint/fraud",
        "errors=0.01 Passed",
    )
    # the user changed spec.stage since: their word wins
    assert effective_request(Stage.ARCHIVED, "jane", "retire", grant, g)[0] is Stage.ARCHIVED
    # a grant that skips a stage, or goes down, is ignored
    skip = Grant(Stage.PRODUCTION, Stage.CANDIDATE, Stage.CANDIDATE, "x", "y")
    assert effective_request(Stage.CANDIDATE, "jane", "ok", skip, g)[0] is Stage.CANDIDATE
    assert effective_request(Stage.STAGING, "jane", "ok", None, g) == (Stage.STAGING, "jane", "ok")
    # a Model whose graph has no staging -> production hop (an approval stage between): no shortcut
    gated = StageGraph.from_config({"staging": ["approved"], "approved": ["production"]})
    grant_up = Grant(Stage.PRODUCTION, Stage.STAGING, Stage.STAGING, "ModelEndpoint/fraud", "Passed")
    assert effective_request(Stage.STAGING, "jane", "ok", grant_up, gated) == (Stage.STAGING, "jane", "ok")
    recs = merge_rollouts([{"endpoint": "a", "at": "1", "result": "Failed"}], ({"endpoint": "a", "at": "1"},))
    assert len(recs) == 1
    many = tuple({"endpoint": "e", "at": str(i), "result": "Failed"} for i in range(15))
    assert [r["at"] for r in merge_rollouts([], many)] == [str(i) for i in range(5, 15)]


# ---- the audit trail fits the CRD (issue 14, finding 6) -----------------------------------------


def test_history_is_capped_and_older_entries_leave_as_events():
    """200 stage edits made 201 entries; status.history now keeps the latest HISTORY_LIMIT."""
    from modelversioning.domain.version_facts import HISTORY_LIMIT

    full = [{"from": "staging", "to": "production", "at": f"t{i}", "reason": f"r{i}", "actor": "bob"}
            for i in range(HISTORY_LIMIT)]  # fmt: skip
    f = facts(status=verified_status("staging", history=full), requested=Stage.PRODUCTION)
    plan = decide(f, POLICY, NOW)
    history = plan.status["history"]
    assert len(history) == HISTORY_LIMIT
    assert history[0]["at"] == "t1" and history[-1]["to"] == "production" and history[-1]["actor"] == "alice"
    trimmed = [e for e in plan.events if e.reason == R.HISTORY_TRIMMED]
    assert len(trimmed) == 1 and "staging -> production at t0 by bob: r0" in trimmed[0].message


def test_long_reasons_and_actors_are_cut_to_the_crd_limits():
    """A 2,000-character reason made every later status write of the object fail."""
    from modelversioning.api.modelversion_status import HistoryEntry

    f = facts(requested=Stage.STAGING, why="x" * 2000, actor="a" * 900)
    plan = decide(f, POLICY, NOW)
    entry = plan.status["history"][-1]
    assert len(entry["reason"]) == 1024 and entry["reason"].endswith("...")
    assert len(entry["actor"]) == 512
    HistoryEntry.model_validate(entry)  # what the API server checks (maxLength)
    assert all(len(e.message) <= 2048 for e in plan.events)


# ---- the platform's pinned images and the serving digest ------------------------------------------

PINNED = "ghcr.io/acme/srv@sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("image", "pinned_from", "start", "requested", "stays"),
    [
        ("ghcr.io/acme/srv:1.2", ("production",), "staging", "production", "staging"),
        ("ghcr.io/acme/srv:1.2", ("production",), "candidate", "production", "staging"),  # up to it
        ("ghcr.io/acme/srv:1.2", ("staging",), "candidate", "staging", "candidate"),
        ("ghcr.io/acme/srv:1.2", ("production",), "candidate", "staging", "staging"),  # below it: fine
        ("ghcr.io/acme/srv:1.2", ("staging",), "staging", "archived", "archived"),  # withdrawing: fine
        ("ghcr.io/acme/srv:1.2", (), "staging", "production", "production"),  # no policy
        (PINNED, ("staging", "production"), "candidate", "production", "production"),
    ],
)
def test_an_unpinned_image_is_refused_past_the_policy_stage(image, pinned_from, start, requested, stays):
    f = facts(
        status=verified_status(start), requested=Stage(requested), image=image, pinned_images_from=pinned_from
    )
    plan = decide(f, POLICY, NOW)
    assert plan.status["stage"] == stays
    sc = c(plan, "StageTransition")
    if stays == requested:
        assert sc["reason"] == R.IN_EFFECT
        return
    assert (sc["status"], sc["reason"]) == ("False", R.IMAGE_NOT_PINNED)
    assert "pinned by digest from" in sc["message"] and image in sc["message"]
    assert any(e.reason == R.STAGE_TRANSITION_BLOCKED and "@sha256" in e.message for e in plan.events)
    assert c(plan, "Ready")["status"] == "False"


def test_the_serving_digest_is_recorded_in_the_status():
    plan = decide(facts(serving_digest="d" * 64), POLICY, NOW)
    assert plan.status["servingDigest"] == "d" * 64
    assert "servingDigest" not in decide(facts(), POLICY, NOW).status


def test_a_held_deletion_names_only_the_endpoints_that_serve_it_now():
    f = facts(deleting=True, serving=SERVING, finalizers=(IN_USE_FINALIZER,))
    held = decide(f, POLICY, NOW)
    now = decide(replace(f, status=held.status, serving=SERVING[2:]), POLICY, NOW)  # ep was deleted
    assert "ModelEndpoint other;" in c(now, "Deleting")["message"]
    assert c(now, "InUse")["message"] == "other/a=90"
    assert now.status["servedBy"] == [{"endpoint": "other", "variant": "a", "weight": 90}]


def test_a_deleted_version_no_longer_served_drops_the_stale_hold_while_another_finalizer_keeps_it():
    f = facts(deleting=True, serving=SERVING, finalizers=(IN_USE_FINALIZER, "x/y"))
    held = decide(f, POLICY, NOW)
    gone = decide(replace(f, status=held.status, serving=()), POLICY, NOW)
    assert gone.finalizers == ("x/y",)
    assert "servedBy" not in gone.status and "Deleting" not in _types(gone.status)
    assert (c(gone, "InUse")["status"], c(gone, "InUse")["reason"]) == ("False", R.NOT_SERVED)
    # our finalizer was the last: the object goes, nothing is written on it
    assert (
        decide(replace(f, status=held.status, serving=(), finalizers=(IN_USE_FINALIZER,)), POLICY, NOW).status
        is None
    )


def _types(status):
    return {x["type"] for x in status.get("conditions") or []}
