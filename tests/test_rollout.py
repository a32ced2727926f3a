"""Table tests of the progressive-delivery state machine (domain.rollout) and the analysis judge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelversioning.analysis import Inconclusive
from modelversioning.analysis.measure import QueryVars, measure
from modelversioning.analysis.templates import Vars, builtin, render_query
from modelversioning.api.strategy import MetricCheck, Strategy, seconds
from modelversioning.domain import endpoint_rollout as ER
from modelversioning.domain import rollout as RO

STEPS = (
    RO.StepSpec(weight=5),
    RO.StepSpec(pause_seconds=60),
    RO.StepSpec(weight=50),
    RO.StepSpec(manual=True),
)
PLAN = RO.Plan("canary", "stable", STEPS, analysis=True, interval=30, failure_limit=0, inconclusive_limit=1)
DECLARED = {"stable": 0, "canary": 100}
BEFORE = {"stable": 100, "canary": 0}


def m(verdict: str, metric: str = "errors", value: float | None = 0.01, at: float = 0) -> RO.Measurement:
    return RO.Measurement(metric, verdict, value, None, "" if verdict == RO.PASSED else "bad", at)


def inputs(state: RO.State | None, effective=BEFORE, now=0.0, **kw) -> RO.Inputs:  # type: ignore[no-untyped-def]
    return RO.Inputs(PLAN, DECLARED, "t1", effective, False, now, state, **kw)


def test_step_weights_follow_the_steps_and_cap_at_the_declared_weight() -> None:
    assert RO.step_weights(PLAN, DECLARED, 0, False) == {"stable": 95, "canary": 5}
    assert RO.step_weights(PLAN, DECLARED, 1, False) == {"stable": 95, "canary": 5}  # a pause keeps it
    assert RO.step_weights(PLAN, DECLARED, 2, False) == {"stable": 50, "canary": 50}
    assert RO.step_weights(PLAN, DECLARED, 4, False) == DECLARED
    assert RO.step_weights(PLAN, {"stable": 70, "canary": 30}, 2, False) == {"stable": 70, "canary": 30}
    bounded = replace(PLAN, max_weight_below_stage=10)
    assert RO.step_weights(bounded, DECLARED, 2, True) == {"stable": 90, "canary": 10}
    assert RO.step_weights(PLAN, DECLARED, 2, True) == {"stable": 100, "canary": 0}  # no allowance: none


def test_a_good_version_walks_every_step_to_success() -> None:
    out = RO.advance(inputs(None))
    assert out.state.phase == RO.PROGRESSING and out.weights == {"stable": 95, "canary": 5}
    assert ("Normal", "RolloutStarted") in {e[:2] for e in out.events}
    # the route carries 5 %: the setWeight step is done, the 60 s pause starts
    out = RO.advance(inputs(out.state, {"stable": 95, "canary": 5}, now=1))
    assert out.state.step == 1 and out.requeue_after is not None
    # pause elapsed but no passing analysis yet: it waits (never promotes without a measurement)
    out = RO.advance(inputs(out.state, {"stable": 95, "canary": 5}, now=62))
    assert out.state.step == 1 and "waiting for a passing analysis" in out.state.message
    out = RO.advance(
        inputs(out.state, {"stable": 95, "canary": 5}, now=63, measurements=(m(RO.PASSED, at=63),))
    )
    assert out.state.step == 2 and out.weights == {"stable": 50, "canary": 50}
    out = RO.advance(inputs(out.state, {"stable": 50, "canary": 50}, now=64))
    assert out.state.step == 3 and "paused until promoted" in out.state.message
    out = RO.advance(
        inputs(out.state, {"stable": 50, "canary": 50}, now=65, action=RO.Action("promote", "a1", "jane"))
    )
    assert out.state.phase == RO.SUCCEEDED and out.weights == DECLARED and out.promote
    assert ("Normal", "RolloutPromoted") in {e[:2] for e in out.events}
    again = RO.advance(inputs(out.state, DECLARED, now=66, action=RO.Action("promote", "a1", "jane")))
    assert again.state.phase == RO.SUCCEEDED and not again.promote  # promoted once, not on every reconcile


def test_a_failed_measurement_returns_traffic_to_the_start_split() -> None:
    st = RO.advance(inputs(None)).state
    st = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=1)).state
    out = RO.advance(
        inputs(st, {"stable": 95, "canary": 5}, now=31, measurements=(m(RO.FAILED_M, value=0.3, at=31),))
    )
    assert out.state.phase == RO.FAILED and out.failed_now and out.weights == BEFORE
    assert ("Warning", "RolloutFailed") in {e[:2] for e in out.events}
    assert "errors=0.3" in out.state.message
    # stays failed: nothing moves forward on later reconciles
    later = RO.advance(inputs(out.state, BEFORE, now=1000, measurements=(m(RO.PASSED),)))
    assert later.state.phase == RO.FAILED and later.weights == BEFORE and not later.failed_now
    # an explicit retry starts over from step 0
    retry = RO.advance(inputs(out.state, BEFORE, now=1001, action=RO.Action("retry", "r1", "jane")))
    assert retry.state.phase == RO.PROGRESSING and retry.state.step == 0 and retry.weights["canary"] == 5


def test_failure_limit_tolerates_that_many_failures() -> None:
    plan = replace(PLAN, failure_limit=1)
    st = RO.advance(replace(inputs(None), plan=plan)).state
    for i, expect in ((1, RO.PROGRESSING), (2, RO.FAILED)):
        st = RO.advance(
            replace(
                inputs(st, {"stable": 95, "canary": 5}, now=i * 30, measurements=(m(RO.FAILED_M),)), plan=plan
            )
        ).state
        assert st.phase == expect


def test_inconclusive_is_never_a_pass_and_has_its_own_limit() -> None:
    st = RO.advance(inputs(None)).state
    st = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=1)).state
    st = RO.advance(
        inputs(st, {"stable": 95, "canary": 5}, now=61, measurements=(m(RO.INCONCLUSIVE, value=None),))
    ).state
    assert st.phase == RO.PROGRESSING and st.step == 1  # the pause is over, but nothing passed
    st = RO.advance(
        inputs(st, {"stable": 95, "canary": 5}, now=91, measurements=(m(RO.INCONCLUSIVE, value=None),))
    ).state
    assert st.phase == RO.FAILED and "inconclusive" in st.message
    pausing = replace(PLAN, pause_on_inconclusive=True)
    st2 = RO.advance(replace(inputs(None), plan=pausing)).state
    for now in (31, 61):
        st2 = RO.advance(
            replace(
                inputs(st2, {"stable": 95, "canary": 5}, now=now, measurements=(m(RO.INCONCLUSIVE),)),
                plan=pausing,
            )
        ).state
    assert st2.phase == RO.PAUSED


def test_abort_and_rollback_edits_are_immediate() -> None:
    st = RO.advance(inputs(None)).state
    out = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=5, action=RO.Action("abort", "x", "ops")))
    assert out.state.phase == RO.ABORTED and out.weights == BEFORE
    # a spec edit that gives the canary less than it has (a rollback) does not ramp
    st = RO.advance(inputs(None)).state
    back = RO.Inputs(PLAN, {"stable": 100, "canary": 0}, "t2", {"stable": 95, "canary": 5}, False, 9, st)
    out = RO.advance(back)
    assert out.state.phase == RO.SUCCEEDED and out.weights == {"stable": 100, "canary": 0}


def test_restart_resumes_at_the_same_step_with_the_same_weights() -> None:
    st = RO.advance(inputs(None)).state
    st = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=1)).state
    # a restarted operator reads the same state back: the same weights, no move
    out = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=20))
    assert out.state.step == st.step and out.weights == {"stable": 95, "canary": 5}


def test_analysis_due_only_while_the_canary_takes_traffic() -> None:
    st = RO.advance(inputs(None)).state
    assert not RO.analysis_due(inputs(st, BEFORE, now=100))  # canary at 0: nothing to measure
    assert RO.analysis_due(inputs(st, {"stable": 95, "canary": 5}, now=100))
    measured = replace(st, last_analysis_at=90)
    assert not RO.analysis_due(inputs(measured, {"stable": 95, "canary": 5}, now=100))
    assert RO.analysis_due(inputs(measured, {"stable": 95, "canary": 5}, now=120))


def test_first_analysis_waits_one_interval_after_the_rollout_started() -> None:
    st = RO.advance(inputs(None, now=50)).state
    assert st.started_at == 50 and st.last_analysis_at is None
    live = {"stable": 95, "canary": 5}
    assert not RO.analysis_due(inputs(st, live, now=50 + PLAN.interval - 1))
    assert RO.analysis_due(inputs(st, live, now=50 + PLAN.interval))


def test_rate_windows_never_reach_back_before_the_rollout() -> None:
    checks = [
        MetricCheck.model_validate({"name": "errors", "template": "error-rate", "window": "2m", "max": 0.05})
    ]
    seen: list[str] = []

    def query(q: str) -> float:
        seen.append(q)
        return 0.0

    measure(checks, QV, query, now=1030, started_at=1000)  # 30 s into the rollout
    assert "[30s]" in seen[-1] and "[2m]" not in seen[-1]
    measure(checks, QV, query, now=1500, started_at=1000)  # older than the window: the metric's own
    assert "[120s]" in seen[-1]
    measure(checks, QV, query, now=1000.2, started_at=1000)  # never an empty window
    assert "[1s]" in seen[-1]
    measure(checks, QV, query, now=5)  # no rollout start known: the window as written
    assert "[2m]" in seen[-1]


def test_target_hash_is_order_independent() -> None:
    a = RO.target_hash([("a", "1.0.0", 50), ("b", "1.1.0", 50)])
    assert a == RO.target_hash([("b", "1.1.0", 50), ("a", "1.0.0", 50)])
    assert a != RO.target_hash([("a", "1.0.0", 40), ("b", "1.1.0", 60)])


# ----------------------------------------------------------------------------------------- analysis

QV = QueryVars("ns", "ep", "canary", "2.4.1", "ep-canary-x", "stable", "2.3.8", "ep-stable-y")


def test_measure_judges_thresholds_and_baseline() -> None:
    checks = [
        MetricCheck.model_validate({"name": "errors", "template": "error-rate", "max": 0.05}),
        MetricCheck.model_validate(
            {"name": "lat", "template": "latency", "quantile": 0.9, "maxIncreaseOverBaseline": 0.1}
        ),
    ]
    answers = {"canary": {"errors": 0.2, "lat": 0.35}, "stable": {"lat": 0.2}}

    def query(q: str) -> float:
        who = "canary" if 'variant="canary"' in q else "stable"
        kind = "lat" if "histogram_quantile" in q else "errors"
        return answers[who][kind]

    out = measure(checks, QV, query, now=5)
    assert [(x.metric, x.verdict) for x in out] == [("errors", RO.FAILED_M), ("lat", RO.FAILED_M)]
    assert "0.2 > max 0.05" in out[0].message and out[1].baseline == 0.2
    answers["canary"] = {"errors": 0.01, "lat": 0.25}
    assert [x.verdict for x in measure(checks, QV, query, now=6)] == [RO.PASSED, RO.PASSED]


def test_measure_unreachable_prometheus_is_inconclusive() -> None:
    checks = [MetricCheck.model_validate({"name": "errors", "template": "error-rate", "max": 0.05})]

    def down(q: str) -> float:
        raise Inconclusive("Prometheus unreachable: connection refused")

    (x,) = measure(checks, QV, down, now=1)
    assert x.verdict == RO.INCONCLUSIVE and "unreachable" in x.message


def test_templates_select_the_variant_and_its_slot() -> None:
    v = Vars("ns", "ep", "canary", "2.4.1", "ep-canary-x", "2m")
    q = render_query(builtin("error-rate", "modelServer", 0.99), v)
    assert 'variant="canary"' in q and 'version="2.4.1"' in q and "[2m]" in q and 'code=~"5.."' in q
    assert "-svc-ns-ep-canary-x-[0-9]+@kubernetesgateway" in render_query(
        builtin("latency", "traefik", 0.5), v
    )
    assert 'destination_service_name="ep-canary-x"' in render_query(builtin("error-rate", "istio", 0.5), v)
    assert render_query('x{a="{{variant}}"}', Vars("n", "e", 'a"b', "1", "s", "1m")) == 'x{a="a\\"b"}'


def test_strategy_api_rules() -> None:
    ok = Strategy.model_validate(
        {
            "canary": {
                "variant": "c",
                "baseline": "s",
                "steps": [{"setWeight": 5}, {"pause": {"duration": "1m"}}],
            }
        }
    )
    assert ok.canary.steps[1].pause is not None and seconds("1m30s") == 90
    with pytest.raises(ValueError):
        Strategy.model_validate({"canary": {"variant": "c", "baseline": "c", "steps": [{"setWeight": 5}]}})
    with pytest.raises(ValueError):
        Strategy.model_validate(
            {"canary": {"variant": "c", "baseline": "s", "steps": [{"setWeight": 5, "pause": {}}]}}
        )
    with pytest.raises(ValueError):
        Strategy.model_validate(
            {
                "canary": {
                    "variant": "c",
                    "baseline": "s",
                    "steps": [{"setWeight": 5}],
                    "maxWeightBelowStage": 5,
                }
            }
        )


def test_a_canary_declared_at_zero_needs_no_rollout() -> None:
    # a new endpoint with the canary warm at 0 %: nothing to ramp, nothing to wait for
    out = RO.advance(RO.Inputs(PLAN, BEFORE, "t0", {}, False, 0, None))
    assert out.state.phase == RO.SUCCEEDED and out.weights == BEFORE
    # a pause whose step gives the canary nothing cannot wait for an analysis that never runs
    timed = replace(PLAN, steps=STEPS[:3])  # no manual pause
    capped = RO.Inputs(timed, DECLARED, "t1", {"stable": 100, "canary": 0}, True, 0, None)  # no allowance
    st = RO.advance(capped).state
    outs = []
    for now in (1, 70, 200, 300):
        outs.append(RO.advance(replace(capped, state=st, now=now)))
        st = outs[-1].state
    assert st.phase == RO.SUCCEEDED
    # ... but a canary that never took traffic and was never measured earns no promotion
    assert not any(o.promote for o in outs)


def test_cap_below_stage_gives_the_rest_to_the_baseline() -> None:
    assert ER.cap_below_stage({"stable": 0, "canary": 100}, "canary", "stable", 10) == {
        "stable": 90,
        "canary": 10,
    }
    assert ER.cap_below_stage({"stable": 95, "canary": 5}, "canary", "stable", 10) == {
        "stable": 95,
        "canary": 5,
    }


@pytest.mark.parametrize(
    "stage, verified, required, cap, allowed",
    [
        ("staging", True, "production", 10, True),  # one stage below, verified, capped: may take the cap
        ("staging", True, "production", None, False),  # no cap declared: never below the stage
        ("staging", False, "production", 10, False),  # not verified: never
        (None, True, "production", 10, False),  # no ModelVersion
        ("candidate", True, "production", 10, False),  # two stages below
        ("archived", True, "production", 10, False),
        ("production", True, "production", 10, False),  # at the stage: no need to be capped
        ("candidate", True, "staging", 10, True),
        ("candidate", True, "candidate", 10, False),  # nothing is below candidate
        ("custom-review", True, "staging", 10, True),  # a Model's own stage counts as a candidate
    ],
)
def test_below_stage_allowed(stage, verified, required, cap, allowed) -> None:  # type: ignore[no-untyped-def]
    assert ER.below_stage_allowed(stage, verified, required, cap) is allowed


@pytest.mark.parametrize(
    "phase, reasons",
    [
        (RO.PROGRESSING, {"Ready": ("False", "RollingOut"), "Progressing": ("True", "RollingOut")}),
        (RO.PAUSED, {"Ready": ("False", "RolloutPaused"), "Progressing": ("True", "RolloutPaused")}),
        (RO.FAILED, {"Ready": ("False", "RolloutFailed"), "Degraded": ("True", "RolloutFailed"),
                     "Progressing": ("False", "RolloutFailed")}),
        (RO.ABORTED, {"Ready": ("False", "RolloutAborted"), "Degraded": ("True", "RolloutAborted"),
                      "Progressing": ("False", "RolloutAborted")}),
        (RO.SUCCEEDED, {}),
    ],
)  # fmt: skip
def test_conditions_of_a_rollout(phase, reasons) -> None:  # type: ignore[no-untyped-def]
    st = RO.State("t", phase, 2, 0, 0, BEFORE, DECLARED, message="errors=0.4 > 0.05")
    got = {c.type: (c.status, c.reason) for c in ER.conditions_of(st)}
    assert got == reasons
    if phase in (RO.FAILED, RO.ABORTED):  # says where traffic went back to, and why
        msg = ER.conditions_of(st)[0].message
        assert "errors=0.4 > 0.05" in msg and ER.fmt_weights(BEFORE) in msg


def test_registry_update_records_finished_rollouts_and_grants_earned_promotions() -> None:
    st = RO.State("t", RO.SUCCEEDED, 4, 0, 0, BEFORE, DECLARED)
    won = RO.Outcome(st, dict(DECLARED), promote=True, succeeded_now=True, summary="errors=0.01 Passed")
    kw = {
        "endpoint": "ep",
        "at": "T",
        "stage": "staging",
        "spec_stage": "staging",
        "next_stage": "production",
    }
    record, grant = ER.registry_update(won, promote_on_success=True, **kw)  # type: ignore[misc]
    assert (
        record["result"] == RO.SUCCEEDED and grant["to"] == "production" and grant["by"] == "ModelEndpoint/ep"
    )
    assert ER.registry_update(won, promote_on_success=False, **kw)[1] == {}  # type: ignore[index]
    lost = RO.Outcome(replace(st, phase=RO.FAILED, message="errors=0.4"), dict(BEFORE), failed_now=True)
    record, grant = ER.registry_update(lost, promote_on_success=True, **kw)  # type: ignore[misc]
    assert record["result"] == RO.FAILED and grant == {}
    idle = RO.Outcome(st, dict(DECLARED))  # a later reconcile of a finished rollout writes nothing
    assert ER.registry_update(idle, promote_on_success=True, **kw) is None  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ manual actions


def _at_manual_pause() -> RO.State:
    """A rollout waiting at its `pause: {}` (step 3), the route carrying 50/50."""
    st = RO.advance(inputs(None)).state
    st = RO.advance(inputs(st, {"stable": 95, "canary": 5}, now=1)).state
    st = RO.advance(
        inputs(st, {"stable": 95, "canary": 5}, now=62, measurements=(m(RO.PASSED, at=62),))
    ).state
    st = RO.advance(inputs(st, {"stable": 50, "canary": 50}, now=63)).state
    assert (st.phase, st.step) == (RO.PROGRESSING, 3)
    return st


HALF = {"stable": 50, "canary": 50}


@pytest.mark.parametrize(
    "setup, kind, applied, phase, message",
    [
        ("paused", "promote", True, RO.SUCCEEDED, "promoted past step 3 by jane"),
        ("paused", "abort", True, RO.ABORTED, "aborted by jane"),
        ("paused", "retry", False, RO.PROGRESSING,
         "retry by jane not applied: the rollout is Progressing, not Failed or Aborted"),
        ("failed", "retry", True, RO.PROGRESSING, "retried by jane"),
        ("failed", "promote", False, RO.FAILED,
         "promote by jane not applied: the rollout is Failed, not Progressing or Paused"),
        ("failed", "abort", False, RO.FAILED,
         "abort by jane not applied: the rollout is Failed, not running"),
        ("succeeded", "abort", False, RO.SUCCEEDED, "not applied: the rollout is Succeeded"),
    ],
)  # fmt: skip
def test_the_last_manual_action_is_kept_with_who_when_and_what_it_did(
    setup: str, kind: str, applied: bool, phase: str, message: str
) -> None:
    st = _at_manual_pause()
    eff = HALF
    if setup == "failed":
        st = RO.advance(inputs(st, HALF, now=90, measurements=(m(RO.FAILED_M, at=90),))).state
        eff = BEFORE
    elif setup == "succeeded":
        st = RO.advance(inputs(st, HALF, now=90, action=RO.Action("promote", "p0", "bob"))).state
        eff = DECLARED
    out = RO.advance(inputs(st, eff, now=100, action=RO.Action(kind, "a1", "jane")))
    assert out.state.phase == phase and out.state.handled_action == "a1"
    last = out.state.last_action
    assert last is not None and (last.kind, last.actor, last.at, last.applied) == (kind, "jane", 100, applied)
    assert message in last.message
    # later reconciles (the steps walk on and rewrite the message) keep it; the same id is not re-applied
    eff2 = dict(out.weights)
    for now in (101, 200):
        later = RO.advance(inputs(out.state, eff2, now=now, action=RO.Action(kind, "a1", "jane")))
        assert later.state.last_action == last
        assert not {"RolloutPromoted", "RolloutAborted", "RolloutRetried"} & {e[1] for e in later.events}
        out, eff2 = later, dict(later.weights)


def test_the_last_action_survives_a_new_rollout() -> None:
    st = RO.advance(inputs(_at_manual_pause(), HALF, now=70, action=RO.Action("abort", "a1", "ops"))).state
    assert st.phase == RO.ABORTED and st.last_action is not None
    fresh = RO.advance(RO.Inputs(PLAN, {"stable": 0, "canary": 100}, "t2", BEFORE, False, 80, st)).state
    assert fresh.phase == RO.PROGRESSING and fresh.last_action == st.last_action
    assert fresh.handled_action == "a1"  # the annotation still there is not applied again
    cut = RO.advance(RO.Inputs(PLAN, BEFORE, "t3", BEFORE, False, 90, st)).state  # applied at once
    assert cut.phase == RO.SUCCEEDED and cut.last_action == st.last_action and cut.handled_action == "a1"


# ------------------------------------------------------------------- a changed strategy (spec.strategy)


def test_a_strategy_edit_ends_a_failed_rollout_and_starts_again_from_the_last_good_split() -> None:
    st = RO.advance(replace(inputs(None), strategy="s1")).state
    st = RO.advance(replace(inputs(st, {"stable": 95, "canary": 5}, now=1), strategy="s1")).state
    st = RO.advance(
        replace(
            inputs(st, {"stable": 95, "canary": 5}, now=31, measurements=(m(RO.FAILED_M),)), strategy="s1"
        )
    ).state
    assert st.phase == RO.FAILED and st.strategy == "s1"
    same = RO.advance(replace(inputs(st, BEFORE, now=40), strategy="s1"))
    assert same.state.phase == RO.FAILED and same.weights == BEFORE  # nothing changed: stays failed
    edited = RO.advance(replace(inputs(st, BEFORE, now=50), strategy="s2"))  # e.g. a looser threshold
    assert edited.state.phase == RO.PROGRESSING and edited.state.step == 0 and edited.state.strategy == "s2"
    assert edited.weights == {"stable": 95, "canary": 5} and edited.state.start_weights == BEFORE
    assert ("Normal", "RolloutStarted") in {e[:2] for e in edited.events}
    assert any("spec.strategy changed" in e[2] for e in edited.events)


def test_a_strategy_edit_mid_rollout_restarts_from_the_split_before_the_rollout() -> None:
    st = replace(_at_manual_pause(), strategy="s1")  # at 50/50, started from 100/0
    out = RO.advance(replace(inputs(st, HALF, now=70), strategy="s2"))
    assert out.state.step == 0 and out.weights == {"stable": 95, "canary": 5}  # back to the first step
    assert out.state.start_weights == BEFORE  # a failure returns to 100/0, not to the unjudged 50/50
    failed = RO.advance(
        replace(inputs(out.state, {"stable": 95, "canary": 5}, now=101, measurements=(m(RO.FAILED_M),)),
                strategy="s2")
    )  # fmt: skip
    assert failed.state.phase == RO.FAILED and failed.weights == BEFORE


def test_a_strategy_edit_after_success_changes_nothing_and_an_old_status_adopts_it() -> None:
    done = RO.advance(inputs(_at_manual_pause(), HALF, now=70, action=RO.Action("promote", "p", "x"))).state
    done = replace(done, strategy="s1")
    out = RO.advance(replace(inputs(done, DECLARED, now=80), strategy="s2"))
    assert out.state.phase == RO.SUCCEEDED and out.weights == DECLARED and out.events == ()
    assert out.state.strategy == "s2"
    assert (out.state.message, out.state.measurements) == (done.message, done.measurements)  # record stays
    old = replace(_at_manual_pause(), strategy=None)  # written before the strategy was kept
    out = RO.advance(replace(inputs(old, HALF, now=70), strategy="s2"))
    assert out.state.step == 3 and out.state.strategy == "s2" and not out.events


def test_strategy_hash_ignores_key_order() -> None:
    a = RO.strategy_hash({"canary": {"variant": "c", "baseline": "s"}})
    assert a == RO.strategy_hash({"canary": {"baseline": "s", "variant": "c"}})
    assert a != RO.strategy_hash({"canary": {"variant": "c", "baseline": "t"}})


def test_a_new_canary_variant_starts_and_falls_back_at_zero() -> None:
    """The route has never carried the canary: the start split names it at 0, never leaving a failure
    to fall back to its declared weight."""
    out = RO.advance(RO.Inputs(PLAN, DECLARED, "t1", {"stable": 100}, False, 0, None))
    assert out.state.start_weights == BEFORE
    st = RO.advance(RO.Inputs(PLAN, DECLARED, "t1", {"stable": 95, "canary": 5}, False, 1, out.state)).state
    failed = RO.advance(
        RO.Inputs(PLAN, DECLARED, "t1", {"stable": 95, "canary": 5}, False, 31, st, (m(RO.FAILED_M),))
    )
    assert failed.weights == BEFORE


def test_a_rollout_that_succeeds_without_a_promotion_is_recorded() -> None:
    kw = {
        "endpoint": "ep",
        "at": "T",
        "stage": "staging",
        "spec_stage": "staging",
        "next_stage": "production",
    }
    # a canary one stage below requiredStage with no allowance: every step gives it 0 %, so nothing can
    # be measured and the steps walk to the end. A success, but no evidence: no promotion is earned;
    # the rollout is recorded all the same
    quick = replace(PLAN, steps=(RO.StepSpec(weight=5), RO.StepSpec(weight=50)))
    won = RO.advance(RO.Inputs(quick, DECLARED, "t", BEFORE, True, 0, None))
    assert won.succeeded_now and not won.promote and won.state.phase == RO.SUCCEEDED
    update = ER.registry_update(won, promote_on_success=True, **kw)  # type: ignore[arg-type]
    assert update is not None
    record, grant = update
    assert (record["endpoint"], record["result"], record["message"]) == (
        "ep",
        RO.SUCCEEDED,
        "no measurements",
    )
    assert grant == {}  # never promoted on nothing
    # an earned success without promoteOnSuccess: recorded, no grant
    out = RO.advance(inputs(_at_manual_pause(), HALF, now=70, action=RO.Action("promote", "p", "jane")))
    assert out.succeeded_now and out.promote
    got = ER.registry_update(out, promote_on_success=False, **kw)  # type: ignore[arg-type]
    assert got is not None and got[0]["result"] == RO.SUCCEEDED and "errors=0.01 Passed" in got[0]["message"]
    assert got[1] == {}
    # a change applied at once (no steps ran) is not a rollout: nothing recorded
    at_once = RO.advance(RO.Inputs(PLAN, BEFORE, "t9", HALF, False, 0, None))
    assert at_once.state.phase == RO.SUCCEEDED
    assert ER.registry_update(at_once, promote_on_success=True, **kw) is None  # type: ignore[arg-type]


def test_the_handler_keeps_the_last_action_and_the_strategy_in_status() -> None:
    from modelversioning.domain.rollout_status import state_from, status_of

    st = replace(
        _at_manual_pause(),
        strategy="abc",
        last_action=RO.LastAction("promote", "jane@example.com", 1_700_000_000.5, False, "not applied: x"),
    )
    raw = status_of(st, None)
    assert raw["lastAction"] == {
        "kind": "promote",
        "by": "jane@example.com",
        "at": "2023-11-14T22:13:20.500Z",
        "applied": False,
        "message": "not applied: x",
    }
    assert raw["strategy"] == "abc"
    back = state_from(raw)
    assert back is not None and back.last_action == st.last_action and back.strategy == "abc"
    from modelversioning.api.strategy import RolloutStatus

    RolloutStatus.model_validate(raw)  # the status schema accepts what the handler writes
    assert "lastAction" not in status_of(replace(st, last_action=None), None)
