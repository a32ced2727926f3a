"""The progressive-delivery state machine of a ModelEndpoint with a canary strategy (pure).

The spec's weights are the end state. ``advance`` takes the rollout state from status, what was
measured this reconcile and any manual action, and returns the next state and the *step weights*:
the split the endpoint should aim for now. Those step weights replace the declared weights as input
to the traffic plan (``endpoint_plan.decide``, through ``endpoint_rollout.decide_rollout``), so every
safety rule of the plan still applies: a step never sends traffic to a variant that is not eligible,
it only caps what an eligible canary may take.

State lives in status.rollout, so a restarted operator resumes at the same step with the same
weights; nothing here depends on wall-clock except through ``now``.

Phases: Progressing (walking the steps) -> Succeeded (declared weights reached); Paused (waiting
for a person: a pause step without duration, or too many inconclusive measurements with
onInconclusive: pause); Failed / Aborted (traffic back on start_weights until the spec changes or a
retry).

A rollout is identified by its *target* (the declared live variants) and the strategy it runs under:
a change of either starts a new one (so editing the analysis or the steps of a Failed rollout tries
again, like a retry). A new rollout never starts from a split the previous one had not finished
judging: it starts from (and a failure returns to) the previous rollout's start split, the last split
known good, unless that rollout had succeeded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from modelversioning.api import wire as R

PROGRESSING, PAUSED, SUCCEEDED, FAILED, ABORTED = "Progressing", "Paused", "Succeeded", "Failed", "Aborted"
DONE = frozenset({SUCCEEDED, FAILED, ABORTED})
PASSED, FAILED_M, INCONCLUSIVE = "Passed", "Failed", "Inconclusive"
MAX_MEASUREMENTS = 20


@dataclass(frozen=True)
class StepSpec:
    weight: int | None = None  # setWeight
    pause_seconds: float | None = None  # pause with a duration
    manual: bool = False  # pause until promoted


@dataclass(frozen=True)
class Plan:
    canary: str
    baseline: str
    steps: tuple[StepSpec, ...]
    analysis: bool  # metrics configured
    interval: float = 30.0
    failure_limit: int = 0
    inconclusive_limit: int = 2
    pause_on_inconclusive: bool = False
    max_weight_below_stage: int | None = None


@dataclass(frozen=True)
class Measurement:
    metric: str
    verdict: str  # Passed | Failed | Inconclusive
    value: float | None
    baseline: float | None
    message: str
    at: float


@dataclass(frozen=True)
class LastAction:
    """The last manual action (`kubectl models rollout promote|abort|retry`) the operator handled."""

    kind: str
    actor: str
    at: float
    applied: bool  # False: it did not apply to the rollout's phase (e.g. promote of a failed rollout)
    message: str


@dataclass(frozen=True)
class State:
    target: str
    phase: str
    step: int
    step_started_at: float
    started_at: float
    start_weights: Mapping[str, int]
    weights: Mapping[str, int]
    failures: int = 0
    inconclusive: int = 0
    last_analysis_at: float | None = None
    passed_since_step: bool = False
    measurements: tuple[Measurement, ...] = ()
    handled_action: str | None = None
    message: str = ""
    promoted: bool | None = None
    strategy: str | None = None  # strategy_hash it runs under (None: recorded before it was kept)
    last_action: LastAction | None = None


@dataclass(frozen=True)
class Action:
    kind: str  # promote | abort | retry
    id: str
    actor: str


@dataclass(frozen=True)
class Inputs:
    plan: Plan
    declared: Mapping[str, int]  # spec weights of the live variants (the end state)
    target: str  # target_hash of the declared variants
    effective: Mapping[str, int]  # status.effectiveWeights (what the route carries)
    canary_below_stage: bool  # the canary's version is one stage below requiredStage
    now: float
    state: State | None
    measurements: tuple[Measurement, ...] = ()  # finished for this reconcile (analysis_due said so)
    action: Action | None = None
    strategy: str = ""  # strategy_hash of spec.strategy
    measured_share: int | None = None  # the canary's share the route carried when they were taken
    measuring: bool = False  # a due measurement is still running (no raise before it is judged)


@dataclass(frozen=True)
class Outcome:
    state: State
    weights: dict[str, int]  # the split to aim for now (input to the traffic plan)
    events: tuple[tuple[str, str, str], ...] = ()
    requeue_after: float | None = None
    promote: bool = False  # success with promoteOnSuccess: promote the canary's version one stage
    failed_now: bool = False
    succeeded_now: bool = False  # this reconcile finished the steps
    summary: str = ""  # the analysis in one line (for the promotion's history reason)
    recorded: tuple[str, ...] = field(default_factory=tuple)  # measurement lines for the version's record
    measured: tuple[Measurement, ...] = ()  # the measurements taken this reconcile


def target_hash(variants: Sequence[tuple[str, str, int]]) -> str:
    """What a rollout heads for: the live variants' (name, version, weight), order-independent."""
    raw = json.dumps(sorted(variants), separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def strategy_hash(strategy: Mapping[str, object]) -> str:
    """The strategy a rollout runs under (spec.strategy as JSON, key order ignored)."""
    raw = json.dumps(strategy, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def step_weights(plan: Plan, declared: Mapping[str, int], step: int, below_stage: bool) -> dict[str, int]:
    """The split at `step`: the canary takes min(the last setWeight so far, its declared weight) from
    the baseline; other variants keep their declared weights. Past the last step: declared."""
    weights = {k: int(v) for k, v in declared.items()}
    c, b = plan.canary, plan.baseline
    pool = weights.get(c, 0) + weights.get(b, 0)
    if step >= len(plan.steps):
        share = weights.get(c, 0)
    else:
        share = 0
        for s in plan.steps[: step + 1]:
            if s.weight is not None:
                share = s.weight
        share = min(share, weights.get(c, 0))
    if below_stage:
        share = min(share, plan.max_weight_below_stage or 0)
    share = min(share, pool)
    weights[c], weights[b] = share, pool - share
    return weights


def analysis_due(inp: Inputs) -> bool:
    """Should the handler measure now? Only while the canary takes traffic in a live rollout, and only
    for the rollout that goes on (not one this reconcile replaces: a changed target or strategy)."""
    st = inp.state
    if not inp.plan.analysis or st is None or st.phase not in (PROGRESSING, PAUSED):
        return False
    if st.target != inp.target or (st.strategy is not None and st.strategy != inp.strategy):
        return False
    if int(inp.effective.get(inp.plan.canary, 0)) <= 0:
        return False
    # the first measurement waits one interval after the rollout started: before that, the canary's
    # series hold (almost) nothing but traffic it served before this rollout
    last = st.last_analysis_at if st.last_analysis_at is not None else st.started_at
    return inp.now - last >= inp.plan.interval


def measure_window(window: float, now: float, started_at: float) -> float:
    """The rate window of a measurement: the metric's own, but never reaching back before the rollout
    started. What the canary's version served before (say at 100 % before a rollback to the baseline,
    minutes ago) is not evidence about this rollout; a window that reached back to it judged the new
    rollout on old errors in its first second."""
    return max(1.0, min(window, now - started_at))


def _start(inp: Inputs, prev: State | None, message: str = "rollout started") -> State:
    return State(
        target=inp.target,
        phase=PROGRESSING,
        step=0,
        step_started_at=inp.now,
        started_at=inp.now,
        start_weights=start_split(inp, prev),
        weights=step_weights(inp.plan, inp.declared, 0, inp.canary_below_stage),
        handled_action=prev.handled_action if prev else None,
        message=message,
        strategy=inp.strategy,
        last_action=prev.last_action if prev else None,
    )


def start_split(inp: Inputs, prev: State | None) -> dict[str, int]:
    """Where a new rollout starts, and where its failure returns: the split the route carries now,
    or, when the previous rollout had not succeeded (running, failed, aborted), the split *that* one
    started from: a mid-ramp split was never judged good. One entry per declared live variant (one
    the split does not name had no traffic: 0, never its declared weight); no traffic at all: the
    baseline takes the canary's declared share."""
    base = prev.start_weights if prev is not None and prev.phase != SUCCEEDED and prev.start_weights else None
    source = base if base is not None else inp.effective
    split = {name: int(source.get(name, 0)) for name in inp.declared}
    return split if any(split.values()) else _no_canary(inp)


def _no_canary(inp: Inputs) -> dict[str, int]:
    w = {k: int(v) for k, v in inp.declared.items()}
    c, b = inp.plan.canary, inp.plan.baseline
    w[b] = w.get(b, 0) + w.get(c, 0)
    w[c] = 0
    return w


def advance(inp: Inputs) -> Outcome:
    return replace(_advance(inp), measured=inp.measurements)


def _advance(inp: Inputs) -> Outcome:
    plan, st = inp.plan, inp.state
    events: list[tuple[str, str, str]] = []
    why = _new_rollout(inp, st)
    if why is not None:
        if _no_ramp(inp):
            return Outcome(_applied_at_once(inp, st), dict(inp.declared))
        st = _start(inp, st, f"rollout started ({why})")
        events.append(("Normal", R.ROLLOUT_STARTED, f"canary {plan.canary}: {len(plan.steps)} steps ({why})"))
    assert st is not None  # _new_rollout gives a reason when there is no state
    if st.strategy != inp.strategy:
        st = replace(st, strategy=inp.strategy)  # a finished success (or an old status) adopts it quietly
    st, action_events = _apply_action(inp, st)
    events += action_events
    if st.phase in (FAILED, ABORTED):
        return Outcome(st, dict(st.start_weights), tuple(events))
    if st.phase == SUCCEEDED:
        return Outcome(st, dict(inp.declared), tuple(events))
    st, measured = _record(inp, st)
    verdict = _judge(inp, st)
    if verdict is not None:
        phase, msg = verdict
        if phase == PAUSED:
            st = replace(st, phase=PAUSED, message=msg)
            events.append(("Warning", R.ROLLOUT_PAUSED, msg))
        else:
            st = replace(st, phase=FAILED, message=msg, weights=dict(st.start_weights))
            events.append(("Warning", R.ROLLOUT_FAILED, msg))
            return Outcome(st, dict(st.start_weights), tuple(events), failed_now=True,
                           summary=_summary(st), recorded=measured)  # fmt: skip
    st, step_events, wait = _walk(inp, st)
    events += step_events
    weights = dict(st.weights)
    if st.phase == SUCCEEDED:
        events.append(("Normal", R.ROLLOUT_SUCCEEDED, f"canary {plan.canary} reached its declared weight"))
        return Outcome(st, dict(inp.declared), tuple(events), promote=_earned(inp, st), succeeded_now=True,
                       summary=_summary(st), recorded=measured)  # fmt: skip
    due = [wait] if wait is not None else []
    if plan.analysis and st.phase in (PROGRESSING, PAUSED):
        last = st.last_analysis_at if st.last_analysis_at is not None else inp.now
        due.append(max(0.0, last + plan.interval - inp.now) or plan.interval)
    return Outcome(st, weights, tuple(events), min(due) if due else None, recorded=measured)


def _applied_at_once(inp: Inputs, prev: State | None) -> State:
    return State(
        inp.target,
        SUCCEEDED,
        len(inp.plan.steps),
        inp.now,
        inp.now,
        dict(inp.effective),
        dict(inp.declared),
        message="the canary's share does not grow: applied at once",
        strategy=inp.strategy,
        handled_action=prev.handled_action if prev else None,
        last_action=prev.last_action if prev else None,
    )


def _new_rollout(inp: Inputs, st: State | None) -> str | None:
    """Why this reconcile starts a new rollout (None: it does not). A changed strategy counts as a
    spec change: it ends a Failed/Aborted rollout (the user changed what judges it) and restarts a
    running one under the new steps (never continuing at a step index the new steps may not have);
    after a success there is nothing left to judge, so the new strategy waits for the next change."""
    if st is None:
        return "no rollout before"
    if st.target != inp.target:
        return "variants changed"
    if st.strategy is not None and st.strategy != inp.strategy and st.phase != SUCCEEDED:
        return "spec.strategy changed"
    return None


def _earned(inp: Inputs, st: State) -> bool:
    """A promotion is earned by evidence: with an analysis, a passing measurement of the canary (never
    promoted without one); without, the canary carrying traffic at the end of its steps."""
    if inp.plan.analysis:
        return any(m.verdict == PASSED for m in st.measurements)
    return int(inp.effective.get(inp.plan.canary, 0)) > 0


def _no_ramp(inp: Inputs) -> bool:
    """A change that does not give the canary more than it carries now (a rollback, a weight cut)
    is applied at once: rollback must never wait for steps."""
    c = inp.plan.canary
    if int(inp.declared.get(c, 0)) == 0:
        return True  # nothing to ramp (e.g. a new endpoint whose canary waits warm at 0 %)
    return int(inp.declared.get(c, 0)) <= int(inp.effective.get(c, 0)) and bool(inp.effective)


def _apply_action(inp: Inputs, st: State) -> tuple[State, list[tuple[str, str, str]]]:
    """A manual action, once per id; what it did (or why it did nothing) is kept in last_action,
    which no later step overwrites (unlike the message)."""
    a = inp.action
    if a is None or a.id == st.handled_action:
        return st, []

    def done(msg: str, applied: bool = True) -> LastAction:
        return LastAction(a.kind, a.actor, inp.now, applied, msg)

    st = replace(st, handled_action=a.id)
    if a.kind == "abort" and st.phase not in DONE:
        msg = f"aborted by {a.actor}"
        return replace(
            st, phase=ABORTED, message=msg, weights=dict(st.start_weights), last_action=done(msg)
        ), [("Warning", R.ROLLOUT_ABORTED, msg)]
    if a.kind == "retry" and st.phase in (FAILED, ABORTED):
        msg = f"retried by {a.actor}"
        fresh = replace(_start(inp, st, f"rollout started ({msg})"), last_action=done(msg))
        return fresh, [("Normal", R.ROLLOUT_RETRIED, msg)]
    if a.kind == "promote" and st.phase in (PROGRESSING, PAUSED):
        nxt = st.step + 1 if _is_pause(inp.plan, st.step) else st.step
        msg = f"promoted past step {st.step} by {a.actor}"
        return (
            replace(
                st,
                phase=PROGRESSING,
                step=nxt,
                step_started_at=inp.now,
                passed_since_step=False,
                inconclusive=0,
                message=msg,
                weights=step_weights(inp.plan, inp.declared, nxt, inp.canary_below_stage),
                last_action=done(msg),
            ),  # fmt: skip
            [("Normal", R.ROLLOUT_PROMOTED, msg)],
        )
    want = {"abort": "running", "retry": "Failed or Aborted"}.get(a.kind, "Progressing or Paused")
    msg = f"{a.kind} by {a.actor} not applied: the rollout is {st.phase}, not {want}"
    return replace(st, last_action=done(msg, applied=False)), []


def _is_pause(plan: Plan, step: int) -> bool:
    return step < len(plan.steps) and plan.steps[step].weight is None


def _record(inp: Inputs, st: State) -> tuple[State, tuple[str, ...]]:
    if not inp.measurements:
        return st, ()
    fails = sum(1 for m in inp.measurements if m.verdict == FAILED_M)
    inconc = sum(1 for m in inp.measurements if m.verdict == INCONCLUSIVE)
    # a pass counts for the step only when it measured the step's weight (taken while the route
    # carried it): a pass at 10 % says nothing about 50 %
    share = inp.measured_share if inp.measured_share is not None else inp.effective.get(inp.plan.canary, 0)
    at_step = int(share) == int(st.weights.get(inp.plan.canary, 0))
    passed = not fails and not inconc and at_step
    kept = (st.measurements + inp.measurements)[-MAX_MEASUREMENTS:]
    st = replace(
        st,
        failures=st.failures + (1 if fails else 0),
        inconclusive=st.inconclusive + (1 if inconc and not fails else 0),
        last_analysis_at=inp.now,
        passed_since_step=st.passed_since_step or passed,
        measurements=kept,
    )
    return st, tuple(_line(m) for m in inp.measurements)


def _line(m: Measurement) -> str:
    v = "n/a" if m.value is None else f"{m.value:.4g}"
    base = "" if m.baseline is None else f" (baseline {m.baseline:.4g})"
    return f"{m.metric}={v}{base} {m.verdict}" + (f": {m.message}" if m.message else "")


def _judge(inp: Inputs, st: State) -> tuple[str, str] | None:
    plan = inp.plan
    if st.failures > plan.failure_limit:
        bad = [_line(m) for m in st.measurements if m.verdict == FAILED_M][-3:]
        return FAILED, f"analysis failed {st.failures} time(s) (limit {plan.failure_limit}): " + "; ".join(
            bad
        )
    if st.inconclusive > plan.inconclusive_limit:
        why = [_line(m) for m in st.measurements if m.verdict == INCONCLUSIVE][-2:]
        msg = f"{st.inconclusive} inconclusive measurements (limit {plan.inconclusive_limit}): " + "; ".join(
            why
        )
        if plan.pause_on_inconclusive:
            return (PAUSED, msg) if st.phase != PAUSED else None
        return FAILED, msg
    return None


def _walk(inp: Inputs, st: State) -> tuple[State, list[tuple[str, str, str]], float | None]:
    """Advance through the steps as far as allowed now; (state, events, seconds to wait)."""
    plan = inp.plan
    events: list[tuple[str, str, str]] = []
    if st.phase == PAUSED:
        return st, events, None
    for _ in range(len(plan.steps) + 1):
        if st.step >= len(plan.steps):
            return (
                replace(st, phase=SUCCEEDED, weights=dict(inp.declared), message="all steps done"),
                events,
                None,
            )
        want = step_weights(plan, inp.declared, st.step, inp.canary_below_stage)
        st = replace(st, weights=want)
        s = plan.steps[st.step]
        if s.weight is not None:
            # a setWeight step is done once the route carries it (the canary may not be eligible yet)
            if int(inp.effective.get(plan.canary, 0)) != want[plan.canary]:
                return (
                    replace(st, message=f"step {st.step}: waiting for {plan.canary} at {want[plan.canary]}%"),
                    events,
                    None,
                )
        elif s.manual:
            return replace(st, message=f"step {st.step}: paused until promoted"), events, None
        else:
            left = st.step_started_at + (s.pause_seconds or 0) - inp.now
            if left > 0:
                return replace(st, message=f"step {st.step}: pause, {left:.0f}s left"), events, left
            if plan.analysis and not st.passed_since_step and want[plan.canary] > 0:
                return (
                    replace(st, message=f"step {st.step}: pause over, waiting for a passing analysis"),
                    events,
                    None,
                )
        nxt = st.step + 1
        held = _unjudged_raise(inp, st, want[plan.canary])
        if held is not None:
            return replace(st, message=f"step {st.step}: {held}"), events, None
        events.append(("Normal", R.ROLLOUT_STEP, f"step {st.step} done; step {nxt} of {len(plan.steps)}"))
        st = replace(st, step=nxt, step_started_at=inp.now, passed_since_step=False)
    return st, events, None


def _unjudged_raise(inp: Inputs, st: State, now_share: int) -> str | None:
    """Why the canary may not go past this step yet (None: it may). With an analysis, the canary's
    share is raised only after a measurement passed at the share it has now (since this step began):
    steps of setWeight alone never walk to 100 % unmeasured. Nor while a due measurement is still
    running on the analysis pool: it is judged before the share grows. A share of 0 cannot be measured
    (nothing to judge, nothing at risk) and a step that does not raise the share needs nothing."""
    plan = inp.plan
    if not plan.analysis or now_share <= 0:
        return None
    nxt = step_weights(plan, inp.declared, st.step + 1, inp.canary_below_stage)[plan.canary]
    if nxt <= now_share:
        return None
    if inp.measuring:  # judged first, as if it had been taken in this reconcile
        return f"waiting for the measurement in progress at {now_share}% before {nxt}%"
    if not st.passed_since_step:
        return f"waiting for a passing analysis at {now_share}% before {nxt}%"
    return None


def _summary(st: State) -> str:
    last: dict[str, Measurement] = {}
    for m in st.measurements:
        last[m.metric] = m
    parts = [_line(m) for m in last.values()]
    return "; ".join(parts) or "no measurements"
