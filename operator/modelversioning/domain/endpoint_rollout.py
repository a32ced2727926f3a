"""A ModelEndpoint's rollout, decided from its facts (pure): the state machine (domain.rollout) run on
what gather collected, and what its result means for the endpoint: the step weights the traffic plan
aims for (capped for a canary one stage below requiredStage), the conditions and Events, when to look
again, and the record to write on the canary's ModelVersion with the stage it earned.

``endpoint_plan.decide`` calls ``decide_rollout`` first and feeds its step weights to the traffic plan,
which still gives a share only to an eligible variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from modelversioning.api import wire as R
from modelversioning.domain import rollout as RO
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.endpoint_facts import RolloutFacts
from modelversioning.domain.runtime_contract import OK, PENDING, RUNTIME_RECHECK_SECONDS, RuntimeCheck, held
from modelversioning.domain.stages import Stage, has_reached, one_below
from modelversioning.domain.timestamps import rfc3339_ms
from modelversioning.domain.version_plan import next_promotion


@dataclass(frozen=True)
class RolloutRecord:
    """What act writes on the canary's ModelVersion when a rollout ends (annotations, as JSON)."""

    version: str  # the canary's ModelVersion
    record: dict[str, str]  # rollout-record
    grant: dict[str, str]  # rollout-promotion: one stage up; empty: none earned


@dataclass(frozen=True)
class RolloutDecision:
    outcome: RO.Outcome  # the next state, its Events, the measurements judged
    weights: dict[str, int]  # step weights: they replace the declared weights in the traffic plan
    below_ok: str | None  # the canary variant may take traffic one stage below requiredStage
    conditions: tuple[Cond, ...]  # override Ready/Progressing/Degraded while a rollout is not done
    promoted: bool | None  # status.rollout.promoted
    record: RolloutRecord | None  # a rollout ended in this reconcile: record it on the canary's version

    @property
    def requeue_after(self) -> float | None:
        return self.outcome.requeue_after


def below_stage(rf: RolloutFacts) -> bool:
    return below_stage_allowed(
        rf.canary_stage, rf.canary_verified, rf.required_stage, rf.plan.max_weight_below_stage
    )


def inputs(rf: RolloutFacts) -> RO.Inputs:
    """The state machine's input (gather also asks ``RO.analysis_due`` with it whether to measure)."""
    return RO.Inputs(
        plan=rf.plan,
        declared=rf.declared,
        target=rf.target,
        effective=rf.effective,
        canary_below_stage=below_stage(rf),
        now=rf.now,
        state=rf.state,
        measurements=rf.measurements,
        action=rf.action,
        strategy=rf.strategy,
        measured_share=rf.measured_share,
        measuring=rf.measuring,
    )


def decide_rollout(rf: RolloutFacts) -> RolloutDecision:
    if rf.runtime is not None and rf.runtime.state != OK and (rf.state is None or rf.state.phase in LIVE):
        return held_rollout(rf, rf.runtime)
    below = below_stage(rf)
    out = RO.advance(inputs(rf))
    weights = dict(out.weights)
    if below:
        weights = cap_below_stage(
            weights, rf.plan.canary, rf.plan.baseline, rf.plan.max_weight_below_stage or 0
        )
    prev = rf.state
    promoted = out.state.promoted if out.state.promoted is not None else (prev.promoted if prev else None)
    return RolloutDecision(
        outcome=out,
        weights=weights,
        below_ok=rf.plan.canary if below else None,
        conditions=conditions_of(out.state),
        promoted=promoted,
        record=rollout_record(rf, out),
    )


LIVE = (RO.PROGRESSING, RO.PAUSED)


def held_rollout(rf: RolloutFacts, check: RuntimeCheck) -> RolloutDecision:
    """The canary's runtime has not shown (or contradicts) its version's signature: the canary takes
    nothing and the rollout waits where it is (a new one starts, then waits at its first step)."""
    out = RO.advance(inputs(rf)) if rf.state is None else RO.Outcome(rf.state, dict(rf.state.weights))
    out = replace(out, weights=held(out.weights, rf.plan.canary, rf.plan.baseline))
    out = replace(out, requeue_after=RUNTIME_RECHECK_SECONDS if check.state == PENDING else None)
    msg = f"rollout step {out.state.step} held: {check.message} (weights {fmt_weights(out.weights)})"
    progressing = TRUE if check.state == PENDING else FALSE
    reason = check.reason
    conditions = (Cond("Ready", FALSE, reason, msg), Cond("Progressing", progressing, reason, msg))
    promoted = rf.state.promoted if rf.state is not None else None
    return RolloutDecision(out, out.weights, None, conditions, promoted, None)


def rollout_record(rf: RolloutFacts, out: RO.Outcome) -> RolloutRecord | None:
    """The record (and, when earned, the grant of the next stage) for the canary's ModelVersion, from
    the stage it had when gathered."""
    target = rf.record_on
    if target is None:
        return None
    nxt = next_promotion(Stage(target.stage)) if target.stage in {s.value for s in Stage} else None
    update = registry_update(
        out,
        endpoint=rf.endpoint,
        at=rfc3339_ms(rf.now),
        stage=target.stage,
        spec_stage=target.spec_stage,
        promote_on_success=rf.promote_on_success,
        next_stage=nxt.value if nxt else None,
        refused=rf.promotion_refused,
    )
    if update is None:
        return None
    return RolloutRecord(target.name, *update)


def below_stage_allowed(stage: str | None, verified: bool, required: str, cap: int | None) -> bool:
    """May the canary take traffic (at most `cap`) while its version is one stage below the endpoint's
    requiredStage? Only when the strategy sets a cap, the artifact is verified, and the version has not
    reached the required stage but has reached the stage right below it (never two stages below, never
    archived)."""
    if cap is None or not verified or stage is None:
        return False
    req = Stage(required)
    return not has_reached(stage, req) and has_reached(stage, one_below(req))


def conditions_of(st: RO.State) -> tuple[Cond, ...]:
    """Ready/Progressing/Degraded while a rollout is not done (they override the endpoint's own);
    nothing once it succeeded."""
    if st.phase in (RO.FAILED, RO.ABORTED):
        reason = R.ROLLOUT_FAILED if st.phase == RO.FAILED else R.ROLLOUT_ABORTED
        msg = f"rollout {st.phase.lower()}: {st.message}; traffic is back on {fmt_weights(st.start_weights)}"
        return (
            Cond("Ready", FALSE, reason, msg),
            Cond("Degraded", TRUE, reason, msg),
            Cond("Progressing", FALSE, reason, "retry, or change the spec, to start again"),
        )
    if st.phase in (RO.PROGRESSING, RO.PAUSED):
        msg = f"rollout step {st.step}: {st.message} (weights {fmt_weights(st.weights)})"
        reason = R.ROLLOUT_PAUSED if st.phase == RO.PAUSED else R.ROLLING_OUT
        return (Cond("Ready", FALSE, reason, msg), Cond("Progressing", TRUE, reason, msg))
    return ()


def fmt_weights(w: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(dict(w).items())) or "none"


def cap_below_stage(weights: Mapping[str, int], canary: str, baseline: str, cap: int) -> dict[str, int]:
    """A canary whose version is one stage below requiredStage never takes more than `cap`, whatever
    the phase; what it may not take goes to the baseline."""
    out = {k: int(v) for k, v in weights.items()}
    share = min(out.get(canary, 0), cap)
    out[baseline] = out.get(baseline, 0) + out.get(canary, 0) - share
    out[canary] = share
    return out


def registry_update(
    out: RO.Outcome,
    *,
    endpoint: str,
    at: str,
    stage: str,
    spec_stage: str,
    promote_on_success: bool,
    next_stage: str | None,
    refused: str | None = None,
) -> tuple[dict[str, str], dict[str, str]] | None:
    """What a finished rollout writes on its canary's ModelVersion: (record, grant); None when this
    reconcile did not finish a rollout (a change applied at once, with no steps, is not a rollout).
    Every rollout that ends is recorded: Succeeded (promoted or not), Failed, Aborted. The grant (one
    step up, to `next_stage`) only on an earned success with promoteOnSuccess, and only when the
    platform's policy lets this analysis earn one (`refused` says why not: the record says it too)."""
    aborted_now = any(e[1] == R.ROLLOUT_ABORTED for e in out.events)
    if not (out.succeeded_now or out.failed_now or aborted_now):
        return None
    record = {"endpoint": endpoint, "result": out.state.phase, "at": at,
              "message": (out.summary or out.state.message)[:1024]}  # fmt: skip
    grant: dict[str, str] = {}
    if out.promote and promote_on_success and next_stage is not None and refused is not None:
        record["message"] = f"{record['message']}; not promoted: {refused}"[:1024]
    elif out.promote and promote_on_success and next_stage is not None:
        grant = {"to": next_stage, "from": stage, "specStage": spec_stage, "by": f"ModelEndpoint/{endpoint}",
                 "reason": f"rollout on {endpoint} succeeded: {out.summary}"[:1024]}  # fmt: skip
    return record, grant
