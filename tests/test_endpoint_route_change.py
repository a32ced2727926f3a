"""Why the split as served changed (domain.endpoint_route_change.cause_of), the most specific cause
first, and what is recorded at all (observed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from endpoint_plan_facts import facts, pin, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import rollout as RO
from modelversioning.domain.endpoint_history import Change, RouteHistory, Served
from modelversioning.domain.endpoint_rollout import RolloutDecision
from modelversioning.domain.endpoint_route_change import cause_of, observed

LAST = Change(
    "2026-12-07T10:00:00.000Z", R.ROUTE_CAUSE_INITIAL, "", 1, (Served("stable", "2.3.8", "a" * 64, 100, "s"),)
)
NEW = Change("2026-12-07T10:05:00.000Z", "", "", 1, (Served("stable", "2.3.8", "a" * 64, 90, "s"),))


def _rollout(phase: str, *, failed_now: bool = False, succeeded_now: bool = False) -> RolloutDecision:
    state = RO.State("t", phase, 2, 0.0, 0.0, {}, {}, message="analysis failed: error-rate")
    out = RO.Outcome(state, {"stable": 90, "canary": 10}, failed_now=failed_now, succeeded_now=succeeded_now)
    return RolloutDecision(out, {"stable": 90, "canary": 10}, None, (), None, None)


def _plan(**kw: object) -> P.Plan:
    base = P.decide(facts(variant(desired=slot("s"))))
    return replace(base, **kw)  # type: ignore[arg-type]


WITHDRAWN = P.VariantDecision(
    "canary", False, R.REVOKED, "revoked", None, True, 1, withdrawn=R.UNAVAILABLE_REVOKED
)


@pytest.mark.parametrize(
    ("last", "new", "plan", "gens", "cause"),
    [
        (None, NEW, _plan(), (1, 1), R.ROUTE_CAUSE_INITIAL),
        (
            LAST,
            replace(NEW, split=(), closed="revoked"),
            _plan(closed="revoked"),
            (1, 1),
            R.ROUTE_CAUSE_CLOSED,
        ),
        (replace(LAST, closed="revoked", split=()), NEW, _plan(), (1, 1), R.ROUTE_CAUSE_REOPENED),
        (LAST, NEW, _plan(variants=(WITHDRAWN,)), (2, 1), R.ROUTE_CAUSE_WITHDRAWN),  # before a spec change
        (LAST, NEW, _plan(rollout=_rollout(RO.PROGRESSING, failed_now=True)), (1, 1), R.ROUTE_CAUSE_ROLLBACK),
        (LAST, NEW, _plan(rollout=_rollout(RO.ABORTED)), (1, 1), R.ROUTE_CAUSE_ROLLBACK),
        (LAST, NEW, _plan(rollout=_rollout(RO.PROGRESSING)), (1, 1), R.ROUTE_CAUSE_ROLLOUT_STEP),
        (
            LAST,
            NEW,
            _plan(rollout=_rollout(RO.SUCCEEDED, succeeded_now=True)),
            (1, 1),
            R.ROUTE_CAUSE_ROLLOUT_STEP,
        ),
        (LAST, NEW, _plan(rollout=_rollout(RO.SUCCEEDED)), (2, 1), R.ROUTE_CAUSE_SPEC_CHANGE),  # a later edit
        (LAST, NEW, _plan(), (2, 1), R.ROUTE_CAUSE_SPEC_CHANGE),  # the first reconcile of generation 2
        (LAST, NEW, _plan(), (2, 2), R.ROUTE_CAUSE_ELIGIBILITY),  # generation 2 already seen
    ],
)
def test_cause_of_a_change(
    last: Change | None, new: Change, plan: P.Plan, gens: tuple[int, int], cause: str
) -> None:
    history = RouteHistory((last,) if last else ())
    f = facts(variant(), history=history, generation=gens[0], observed_generation=gens[1])
    got, detail = cause_of(f, plan, new)
    assert got == cause
    assert detail  # always says something


def test_observed_records_live_variants_with_a_share_and_their_slots_only() -> None:
    stable = variant("stable", weight=90, desired=slot("s1"))
    shadow = variant("shadow", "2.4.1", weight=0, mirror=True, desired=slot("s2"))
    f = facts(stable, shadow, generation=3, observed_generation=3)
    plan = P.decide(f)
    serving = {"stable": pin(slot_="s1"), "shadow": pin("2.4.1", slot_="s2"), "gone": None}
    c = observed(f, plan, {"stable": 90, "zero": 0, "gone": 10}, serving, "", 1000.0, mirrored=False)
    assert c is not None
    assert [(s.variant, s.weight, s.slot) for s in c.split] == [("stable", 90, "s1")]
    assert c.at == "1970-01-01T00:16:40.000Z" and c.generation == 3 and c.mirror is None


def test_nothing_is_recorded_without_a_route_or_before_anything_served() -> None:
    f = facts(variant(desired=slot("s")))
    plan = P.decide(f)
    assert (
        observed(replace(f, writes_route=False), plan, {"stable": 100}, {"stable": pin()}, "", 1.0, True)
        is None
    )
    assert observed(f, plan, {}, {}, "", 1.0, True) is None  # new endpoint, nothing eligible yet
    after = replace(f, history=RouteHistory((LAST,)))
    emptied = observed(after, plan, {}, {}, "", 1.0, True)
    assert emptied is not None and emptied.split == ()  # once something served, an empty split is a change
