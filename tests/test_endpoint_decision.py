"""Table tests of the one decision of a ModelEndpoint with a canary strategy: ``endpoint_plan.decide``
runs the rollout state machine (domain.endpoint_rollout) on the gathered facts and feeds its step
weights to the traffic plan. The eligibility rules never change: a step weight is only what an
eligible variant may take, and the one allowance below requiredStage is bounded by the rollout.
The rollout record (and the stage it earns) comes out of the same decision, from facts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from endpoint_plan_facts import NEW, facts, mv, pin, slot, variant
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import rollout as RO
from modelversioning.domain.endpoint_facts import RecordTarget, RolloutFacts
from modelversioning.domain.timestamps import rfc3339_ms

BEFORE = {"stable": 100, "canary": 0}
DECLARED = {"stable": 0, "canary": 100}
STEPS = (RO.StepSpec(weight=10), RO.StepSpec(pause_seconds=60), RO.StepSpec(weight=50))
NOW = 1000.0


def state(phase: str = RO.PROGRESSING, step: int = 0, weights: dict[str, int] | None = None) -> RO.State:
    return RO.State("t", phase, step, NOW - 5, NOW - 50, dict(BEFORE), weights or dict(BEFORE), strategy="s")


def rollout(
    stage: str = "production",
    verified: bool = True,
    cap: int | None = None,
    st: RO.State | None = None,
    effective: dict[str, int] | None = None,
    steps: tuple[RO.StepSpec, ...] = STEPS,
    **kw: Any,
) -> RolloutFacts:
    plan = RO.Plan("canary", "stable", steps, analysis=cap is not None, max_weight_below_stage=cap)
    return RolloutFacts(
        "ep", plan, dict(DECLARED), "t", "s", dict(effective or BEFORE), NOW, st,
        canary_stage=stage, canary_verified=verified, required_stage="production", **kw,
    )  # fmt: skip


def endpoint(
    ro: RolloutFacts | None, stage: str = "production", verified: bool = True, **kw: Any
) -> P.EndpointFacts:
    """stable serves 100 % from ep-s; the canary (2.4.1, slot ep-c Available) is declared at 100 %
    (`go canary`); the gathered rollout facts see the canary's version as the variant does."""
    stable = variant(weight=0, desired=slot("ep-s"), pin=pin(slot_="ep-s"), pinned=slot("ep-s"))
    c_mv = mv("2.4.1", digest=NEW, uid="uid-2", stage=stage, verified=verified,
              reason="Verified" if verified else "Verifying")  # fmt: skip
    canary = variant("canary", "2.4.1", 100, mv=c_mv, desired=kw.pop("canary_slot", slot("ep-c")))
    effective = dict(ro.effective) if ro is not None else dict(BEFORE)
    base: dict[str, Any] = {"owned_slots": frozenset({"ep-s", "ep-c"}), "routed": {"ep-s": 100}}
    return facts(stable, canary, previous_weights=effective, rollout=ro, **{**base, **kw})


def routed(plan: P.Plan) -> dict[str, int]:
    return {d.slot: d.weight for d in plan.destinations}


# ------------------------------------------------------------------ the step weights reach the plan
@pytest.mark.parametrize(
    ("ro", "weights"),
    [
        pytest.param(None, {"stable": 0, "canary": 100}, id="no-strategy-declared-weights"),
        pytest.param(rollout(), {"stable": 90, "canary": 10}, id="new-rollout-first-setWeight"),
        pytest.param(
            rollout(
                st=state(step=2, weights={"stable": 90, "canary": 10}), effective={"stable": 90, "canary": 10}
            ),
            {"stable": 50, "canary": 50},
            id="at-the-second-setWeight",
        ),  # fmt: skip
        pytest.param(
            rollout(
                st=state(step=1, weights={"stable": 90, "canary": 10}), effective={"stable": 90, "canary": 10}
            ),
            {"stable": 90, "canary": 10},
            id="pause-keeps-the-step",
        ),  # fmt: skip
        pytest.param(rollout(st=state(RO.FAILED, 2)), BEFORE, id="failed-back-on-start"),
        pytest.param(rollout(st=state(RO.SUCCEEDED, 3)), DECLARED, id="succeeded-declared"),
    ],
)
def test_the_rollouts_step_weights_are_what_the_traffic_plan_aims_for(
    ro: RolloutFacts | None, weights: dict[str, int]
) -> None:
    plan = P.decide(endpoint(ro))
    assert plan.weights == weights
    assert {v.name: v.weight for v in plan.aimed} == weights  # desiredWeight in status: the step's
    assert routed(plan) == {"ep-s": weights["stable"], "ep-c": weights["canary"]}
    assert (plan.rollout is None) is (ro is None)


def test_the_plan_looks_again_at_the_sooner_of_a_drain_and_the_rollouts_pause() -> None:
    ten = {"stable": 90, "canary": 10}
    at_pause = rollout(st=state(step=1, weights=ten), effective=ten)
    plan = P.decide(endpoint(at_pause))
    assert plan.rollout is not None and plan.requeue_after == pytest.approx(55.0)  # 60 s pause, 5 s in
    draining = endpoint(at_pause, owned_slots=frozenset({"ep-s", "ep-c", "ep-old"}))
    assert P.decide(draining).requeue_after == pytest.approx(10.0)  # the drain's grace comes first


# ---------------------------------------------------- below requiredStage: only what the rollout allows
@pytest.mark.parametrize(
    ("ro", "stage", "verified", "canary_weight", "eligible"),
    [
        pytest.param(rollout("staging", cap=5), "staging", True, 5, True, id="staging-capped-at-5"),
        pytest.param(rollout("staging", cap=20), "staging", True, 10, True, id="staging-step-below-cap"),
        pytest.param(
            rollout("staging", cap=5, st=state(RO.SUCCEEDED, 3)),
            "staging",
            True,
            5,
            True,
            id="staging-past-the-last-step-still-capped",
        ),  # fmt: skip
        pytest.param(
            rollout("staging", cap=5, st=state(RO.FAILED, 2)),
            "staging",
            True,
            0,
            True,
            id="staging-failed-rollout-gives-nothing",
        ),  # fmt: skip
        pytest.param(rollout("staging"), "staging", True, 0, False, id="staging-without-maxWeightBelowStage"),
        pytest.param(rollout("candidate", cap=5), "candidate", True, 0, False, id="two-stages-below"),
        pytest.param(rollout("staging", False, cap=5), "staging", False, 0, False, id="staging-not-verified"),
        pytest.param(rollout("archived", cap=5), "archived", True, 0, False, id="archived"),
        pytest.param(None, "staging", True, 0, False, id="no-rollout-no-allowance"),
    ],
)
def test_a_canary_below_the_required_stage_takes_only_what_the_rollout_allows(
    ro: RolloutFacts | None, stage: str, verified: bool, canary_weight: int, eligible: bool
) -> None:
    plan = P.decide(endpoint(ro, stage, verified))
    d = plan.decision("canary")
    assert d.eligible is eligible
    assert plan.weights == {"stable": 100 - canary_weight, "canary": canary_weight}
    assert routed(plan).get("ep-c", 0) == canary_weight
    if not eligible:
        assert d.serving is None and d.reason in ("StageNotReached", "ArtifactNotVerified")


@pytest.mark.parametrize(
    "stable_problem",
    [
        pytest.param({"desired": slot("ep-s", available=False), "pinned": slot("ep-s", available=False)},
                     id="baseline-deployment-not-available"),
        pytest.param({"mv": mv(verified=False, reason="FetchFailed")}, id="baseline-no-longer-verified"),
        pytest.param({"mv": mv(stage="staging")}, id="baseline-demoted-below-the-required-stage"),
    ],
)  # fmt: skip
def test_a_canary_below_the_required_stage_never_takes_the_share_of_an_ineligible_baseline(
    stable_problem: dict[str, Any],
) -> None:
    """The cap holds whatever else is eligible: when the variants at the required stage cannot take
    the rest, the route is left as it is (as when nothing is eligible), never given to the canary."""
    f = endpoint(rollout("staging", cap=5), "staging", True)
    f = replace(f, variants=(replace(f.variants[0], **stable_problem), f.variants[1]))
    plan = P.decide(f)
    assert plan.weights.get("canary", 0) <= 5
    assert plan.held and not plan.write_route
    assert {k: w for k, w in plan.weights.items() if w} == {"stable": 100}  # what the route carries
    assert plan.decision("canary").serving is None  # status names the slot the route still sends to
    assert plan.delete == ()


# ------------------------------------------------- the first promise: eligibility is not loosened
@pytest.mark.parametrize(
    "ro", [None, rollout(), rollout(st=state(RO.SUCCEEDED, 3))], ids=["no-rollout", "new", "succeeded"]
)
@pytest.mark.parametrize(
    ("stage", "verified", "available"),
    [("production", False, True), ("candidate", True, True), ("production", True, False)],
    ids=["not-verified", "not-at-its-stage", "not-available"],
)
def test_an_ineligible_canary_never_gets_weight_rollout_or_not(
    ro: RolloutFacts | None, stage: str, verified: bool, available: bool
) -> None:
    ro = replace(ro, canary_stage=stage, canary_verified=verified) if ro is not None else None
    plan = P.decide(endpoint(ro, stage, verified, canary_slot=slot("ep-c", available=available)))
    assert not plan.decision("canary").eligible
    assert plan.weights["canary"] == 0 and routed(plan) == {"ep-s": 100}


# ------------------------------------------------------------- the rollout record, from the facts
def AT(stage: str, spec_stage: str) -> RecordTarget:  # noqa: N802
    return RecordTarget("m-v2.4.1", stage, spec_stage)


FINISHING = {"steps": (RO.StepSpec(weight=50),), "effective": {"stable": 50, "canary": 50}}


def finishing(target: RecordTarget | None, promote: bool = True, **kw: Any) -> RolloutFacts:
    """At its only setWeight step, which the route carries: this reconcile succeeds. `target` is the
    canary's ModelVersion as gather read it (its stage decides the grant; act reads nothing)."""
    st = state(step=0, weights={"stable": 50, "canary": 50})
    return rollout(st=st, record_on=target, promote_on_success=promote, **{**FINISHING, **kw})


@pytest.mark.parametrize(
    ("target", "promote", "grant_to"),
    [
        pytest.param(AT("staging", "staging"), True, "production", id="staging-earns-production"),
        pytest.param(AT("candidate", "candidate"), True, "staging", id="candidate-earns-staging"),
        pytest.param(AT("production", "production"), True, None, id="production-is-the-top"),
        pytest.param(AT("staging", "staging"), False, None, id="no-promoteOnSuccess"),
    ],
)
def test_the_rollout_record_and_the_stage_it_earns_are_decided_from_facts(
    target: RecordTarget, promote: bool, grant_to: str | None
) -> None:
    plan = P.decide(endpoint(finishing(target, promote)))
    assert plan.rollout is not None and plan.rollout.outcome.succeeded_now
    rec = plan.rollout.record
    assert rec is not None and rec.version == "m-v2.4.1"
    record, grant = rec.record, rec.grant
    assert (record["endpoint"], record["result"], record["at"]) == ("ep", RO.SUCCEEDED, rfc3339_ms(NOW))
    if grant_to is None:
        assert grant == {}
    else:
        assert (grant["from"], grant["to"], grant["specStage"]) == (target.stage, grant_to, target.spec_stage)
        assert grant["by"] == "ModelEndpoint/ep"


@pytest.mark.parametrize(
    ("ro", "result"),
    [
        pytest.param(finishing(None), None, id="version-not-in-the-cache"),
        pytest.param(rollout(record_on=AT("staging", "staging")), None, id="not-finished"),
        pytest.param(
            rollout(
                st=state(),
                action=RO.Action("abort", "a1", "jane"),
                record_on=AT("staging", "staging"),
                promote_on_success=True,
            ),
            RO.ABORTED,
            id="aborted-recorded-no-grant",
        ),  # fmt: skip
    ],
)
def test_only_a_rollout_that_ends_is_recorded(ro: RolloutFacts, result: str | None) -> None:
    rec = P.decide(endpoint(ro)).rollout
    assert rec is not None
    if result is None:
        assert rec.record is None
    else:
        assert rec.record is not None and rec.record.record["result"] == result and rec.record.grant == {}
