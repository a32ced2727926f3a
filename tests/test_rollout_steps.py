"""Steps under an analysis (domain.rollout): the canary's share is raised only after a pass at the
share it has now and never while a measurement runs; no measurement for a replaced rollout; the
interval's floor (pydantic and the CRD)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelversioning.api.strategy import Strategy
from modelversioning.domain import rollout as RO
from test_rollout import BEFORE, DECLARED, m

# ------------------------------------------------ steps without a pause still wait for the analysis

RAMP = RO.Plan(
    "canary", "stable", (RO.StepSpec(weight=10), RO.StepSpec(weight=50), RO.StepSpec(weight=100)),
    analysis=True, interval=30, inconclusive_limit=5,
)  # fmt: skip


def at(step: int, share: int, passed: bool = False) -> RO.State:
    """A rollout of RAMP at `step`, the route carrying `share` for the canary."""
    weights = {"stable": 100 - share, "canary": share}
    return RO.State("t1", RO.PROGRESSING, step, 0, 0, BEFORE, weights, last_analysis_at=100,
                    passed_since_step=passed, strategy="s")  # fmt: skip


def split(share: int) -> dict[str, int]:
    return {"stable": 100 - share, "canary": share}


@pytest.mark.parametrize(
    "why, state, carried, kw, step, share, phase, message",
    [
        ("carried, never measured: no raise", at(0, 10), 10, {}, 0, 10, RO.PROGRESSING,
         "waiting for a passing analysis at 10% before 50%"),
        ("a pass at the step's share: raised", at(0, 10), 10,
         {"measurements": (m(RO.PASSED),), "measured_share": 10}, 1, 50, RO.PROGRESSING, ""),
        ("a pass at another share does not count", at(0, 10), 10,
         {"measurements": (m(RO.PASSED),), "measured_share": 5}, 0, 10, RO.PROGRESSING,
         "waiting for a passing analysis at 10%"),
        ("a pass, then a measurement still running: judged first", at(0, 10, passed=True), 10,
         {"measuring": True}, 0, 10, RO.PROGRESSING, "measurement in progress at 10% before 50%"),
        ("an inconclusive one is not a pass", at(0, 10), 10,
         {"measurements": (m(RO.INCONCLUSIVE, value=None),), "measured_share": 10}, 0, 10, RO.PROGRESSING,
         "waiting for a passing analysis"),
        ("a failure at an older share still fails", at(1, 50), 50,
         {"measurements": (m(RO.FAILED_M),), "measured_share": 10}, 1, 0, RO.FAILED, "analysis failed"),
        ("not carried yet: waits for the route first", at(1, 50), 10, {}, 1, 50, RO.PROGRESSING,
         "waiting for canary at 50%"),
        ("a pass at 50: raised to 100", at(1, 50), 50,
         {"measurements": (m(RO.PASSED),), "measured_share": 50}, 2, 100, RO.PROGRESSING, ""),
        ("at the declared share: nothing more to raise", at(2, 100), 100, {}, 3, 100, RO.SUCCEEDED,
         "all steps done"),
    ],
)  # fmt: skip
def test_setweight_steps_raise_only_after_a_pass_at_the_current_share(
    why: str,
    state: RO.State,
    carried: int,
    kw: dict[str, Any],
    step: int,
    share: int,
    phase: str,
    message: str,
) -> None:
    inp = RO.Inputs(RAMP, DECLARED, "t1", split(carried), False, 200, state, strategy="s", **kw)
    out = RO.advance(inp)
    assert (out.state.step, out.weights["canary"], out.state.phase) == (step, share, phase), why
    assert message in out.state.message, why


def test_a_setweight_only_strategy_never_reaches_100_unmeasured() -> None:
    """The route follows every step at once and time passes, but no measurement ever finishes: the
    canary stays at its first share (as landed: 100 % in three reconciles, no measurement)."""
    out = RO.advance(RO.Inputs(RAMP, DECLARED, "t1", BEFORE, False, 0, None, strategy="s"))
    seen = []
    for now in range(1, 600, 7):
        inp = RO.Inputs(RAMP, DECLARED, "t1", dict(out.weights), False, now, out.state, strategy="s",
                        measuring=now % 2 == 0)  # fmt: skip
        out = RO.advance(inp)
        seen.append(out.weights["canary"])
    assert max(seen) == 10 and out.state.phase == RO.PROGRESSING
    # without an analysis, the same steps walk to the end at once (unchanged)
    bare = replace(RAMP, analysis=False)
    st = RO.advance(RO.Inputs(bare, DECLARED, "t1", BEFORE, False, 0, None)).state
    for share in (10, 50, 100):
        st = RO.advance(RO.Inputs(bare, DECLARED, "t1", split(share), False, 1, st)).state
    assert st.phase == RO.SUCCEEDED


def test_no_measurement_is_due_for_a_rollout_this_reconcile_replaces() -> None:
    st = replace(at(0, 10), last_analysis_at=None)
    live = split(10)
    due = RO.Inputs(RAMP, DECLARED, "t1", live, False, 100, st, strategy="s")
    assert RO.analysis_due(due)
    assert not RO.analysis_due(replace(due, target="t2"))  # the variants changed: a new rollout
    assert not RO.analysis_due(replace(due, strategy="s2"))  # the strategy changed: a new rollout
    assert RO.analysis_due(replace(due, state=replace(st, strategy=None)))  # an old status: adopted


@pytest.mark.parametrize(
    "interval, ok",
    [("1ms", False), ("999ms", False), ("1s", False), ("1.9s", False),
     ("2s", True), ("2000ms", True), ("30s", True), ("1m", True)],
)  # fmt: skip
def test_the_analysis_interval_has_a_floor(interval: str, ok: bool) -> None:
    raw = {"canary": {"variant": "c", "baseline": "s", "steps": [{"setWeight": 5}],
                      "analysis": {"interval": interval, "metrics": [
                          {"name": "errors", "template": "error-rate", "max": 0.05}]}}}  # fmt: skip
    if ok:
        Strategy.model_validate(raw)
    else:
        with pytest.raises(ValueError, match="analysis.interval must be at least 2s"):
            Strategy.model_validate(raw)


def test_the_crd_refuses_a_short_interval_too() -> None:
    from modelversioning.api import crdgen

    crd = crdgen.all_crds()["modelversioning.io_modelendpoints.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    analysis = spec["strategy"]["properties"]["canary"]["properties"]["analysis"]
    (rule,) = analysis["x-kubernetes-validations"]
    assert rule["rule"] == "!has(self.interval) || duration(self.interval) >= duration('2s')"
    assert "at least 2s" in rule["message"]
