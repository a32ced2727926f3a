"""Rollback readiness (issue #28, part 4): which variant is the fallback, and whether it could take all
live traffic now (domain.rollback_readiness). Table tests, no cluster."""

from __future__ import annotations

from dataclasses import replace

import pytest

from endpoint_plan_facts import facts, mv, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_history as H
from modelversioning.domain import rollback_readiness as RR
from modelversioning.domain.pod_health import PodProblem
from modelversioning.domain.stages import Stage

PRESENT = RR.ArtifactCheck(R.PROBE_PRESENT)
PROD = Stage.PRODUCTION


def stable(**kw: object):  # type: ignore[no-untyped-def]
    """2.3.8 at weight 0, deployed and ready: the usual fallback after a rollout."""
    base = variant("stable", "2.3.8", 0, desired=slot("ep-stable-a"))
    return replace(base, **kw)  # type: ignore[arg-type]


def canary(**kw: object):  # type: ignore[no-untyped-def]
    base = variant("canary", "2.4.1", 100, mv=mv("2.4.1", digest="b" * 64), desired=slot("ep-canary-b"))
    return replace(base, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ choose
@pytest.mark.parametrize(
    ("variants", "weights", "primary", "fallback"),
    [
        # after a rollout: canary 100 %, stable kept at 0 -> stable
        ([stable(), canary()], {"canary": 100}, "canary", "stable"),
        # mid-canary 90/10: the canary is what a rollback undoes
        ([stable(weight=90), canary(weight=10)], {"stable": 90, "canary": 10}, "canary", "stable"),
        # a canary declared but not yet taking traffic still counts (a rollout the operator holds)
        ([stable(weight=100), canary(weight=0)], {"stable": 100}, "stable", None),
        ([stable(weight=0), canary(weight=100)], {"stable": 100}, "canary", "stable"),
        # the highest version below the primary, never one above it
        (
            [variant("old", "2.1.0", 0), stable(), canary(), variant("next", "2.5.0-rc.1", 0)],
            {"canary": 100},
            "canary",
            "stable",
        ),
        # only one variant: nothing to fall back to
        ([canary()], {"canary": 100}, "canary", None),
        # the mirror is never a fallback
        ([stable(mirror=True), canary()], {"canary": 100}, "canary", None),
        # nothing takes or is declared to take traffic
        ([stable(), canary(weight=0)], {}, None, None),
    ],
    ids=[
        "after-rollout",
        "mid-canary",
        "held-canary",
        "declared-not-yet",
        "highest-below",
        "single",
        "mirror",
        "nothing-serving",
    ],  # fmt: skip
)
def test_the_fallback_is_the_highest_live_version_below_the_newest_serving(
    variants: list, weights: dict, primary: str | None, fallback: str | None
) -> None:
    c = RR.choose(variants, weights)
    assert (c.primary.name if c.primary else None, c.fallback.name if c.fallback else None) == (
        primary,
        fallback,
    )


def test_no_fallback_names_the_version_that_served_before() -> None:
    served = H.Served("stable", "2.3.8", "a" * 64, 100, "ep-stable-a")
    history = H.RouteHistory(
        changes=(H.Change("2026-12-07T10:00:00.000Z", R.ROUTE_CAUSE_INITIAL, split=(served,)),)
    )
    f = facts(canary(), previous_weights={"canary": 100}, history=history)
    r = RR.decide(RR.choose_for(f), PROD, PRESENT)
    assert r is not None and (r.status, r.reason) == ("False", R.NO_FALLBACK)
    assert "2.3.8 served before" in r.message


# ------------------------------------------------------------------------------------------ decide
def _slot_problem(reason: str) -> object:
    return replace(slot("ep-stable-a"), pod_problem=PodProblem(reason, f"pod p: {reason}"))


@pytest.mark.parametrize(
    ("fallback", "artifact", "status", "reason"),
    [
        (stable(), PRESENT, "True", R.FALLBACK_READY),
        (stable(version="1.9.0", mv=mv("1.9.0")), PRESENT, "False", R.FALLBACK_MAJOR_MISMATCH),
        (stable(mv=replace(mv("2.3.8"), revoked="leaked labels")), PRESENT, "False", R.FALLBACK_WITHDRAWN),
        (stable(mv=mv("2.3.8", stage="archived")), PRESENT, "False", R.FALLBACK_WITHDRAWN),
        (stable(mv=mv("2.3.8", stage="staging")), PRESENT, "False", R.FALLBACK_WITHDRAWN),
        (stable(mv=mv("2.3.8", stage=None)), PRESENT, "False", R.FALLBACK_WITHDRAWN),
        (
            stable(mv=mv("2.3.8", verified=False, reason="Verifying")),
            PRESENT,
            "False",
            R.FALLBACK_NOT_VERIFIED,
        ),
        (
            stable(mv=None, problem=(R.MISSING_VERSION, "no ModelVersion m-v2.3.8")),
            PRESENT,
            "False",
            R.FALLBACK_NOT_VERIFIED,
        ),  # fmt: skip
        (stable(), RR.ArtifactCheck(R.PROBE_MISSING, "gone"), "False", R.FALLBACK_ARTIFACT_MISSING),
        (stable(), RR.ArtifactCheck(R.PROBE_CHANGED, "size"), "False", R.FALLBACK_ARTIFACT_MISSING),
        (stable(), RR.ArtifactCheck(R.PROBE_UNREACHABLE, "503"), "False", R.FALLBACK_ARTIFACT_UNCHECKED),
        (stable(desired=_slot_problem(R.IMAGE_PULL_FAILED)), PRESENT, "False", R.FALLBACK_IMAGE_UNRESOLVABLE),
        (stable(desired=slot("ep-stable-a", available=False)), PRESENT, "False", R.FALLBACK_NOT_WARM),
        (
            stable(desired=replace(slot("ep-stable-a"), replicas=0, ready_replicas=0)),
            PRESENT,
            "False",
            R.FALLBACK_NOT_WARM,
        ),  # fmt: skip
        (
            stable(desired=replace(slot("ep-stable-a"), ours=False, conflict="Service of someone else")),
            PRESENT,
            "False",
            R.FALLBACK_NOT_WARM,
        ),  # fmt: skip
        (stable(desired=None), PRESENT, "False", R.FALLBACK_NOT_WARM),
        # a crash-looping fallback that still has a ready pod is warm; its pods are Degraded's business
        (stable(desired=_slot_problem(R.CRASH_LOOP)), PRESENT, "True", R.FALLBACK_READY),
    ],
    ids=[
        "ready",
        "other-major",
        "revoked",
        "archived",
        "below-stage",
        "no-stage",
        "not-verified",
        "missing-version",
        "artifact-gone",
        "artifact-changed",
        "store-down",
        "image",
        "not-available",
        "scaled-to-0",
        "not-ours",
        "no-slot",
        "crashloop-but-ready",
    ],  # fmt: skip
)
def test_readiness_table(fallback: object, artifact: RR.ArtifactCheck, status: str, reason: str) -> None:
    r = RR.decide(RR.choose([fallback, canary()], {"canary": 100}), PROD, artifact)  # type: ignore[list-item]
    assert r is not None
    assert (r.status, r.reason) == (status, reason), r.message
    if status == "True":
        assert r.fallback == "stable" and r.fallback_version == "2.3.8"


def test_every_failing_check_is_named_and_the_first_is_the_reason() -> None:
    fb = stable(mv=mv("2.3.8", stage="archived"), desired=slot("ep-stable-a", available=False))
    r = RR.decide(RR.choose([fb, canary()], {"canary": 100}), PROD, RR.ArtifactCheck(R.PROBE_MISSING, "gone"))
    assert r is not None and r.reason == R.FALLBACK_WITHDRAWN
    for named in (R.FALLBACK_WITHDRAWN, R.FALLBACK_ARTIFACT_MISSING, R.FALLBACK_NOT_WARM):
        assert named in r.message


def test_a_fallback_needs_the_stage_for_the_whole_share_not_the_canary_exception() -> None:
    # a bounded canary may serve one stage below; a fallback takes 100 %: it needs requiredStage
    fb = stable(mv=mv("2.3.8", stage="staging"), below_ok=True)
    r = RR.decide(RR.choose([fb, canary()], {"canary": 100}), PROD, PRESENT)
    assert r is not None and r.reason == R.FALLBACK_WITHDRAWN
    r = RR.decide(RR.choose([fb, canary()], {"canary": 100}), Stage.STAGING, PRESENT)
    assert r is not None and r.reason == R.FALLBACK_READY


@pytest.mark.parametrize(
    ("recorded", "want"),
    [
        # a condition the probe decided stays while the probe is re-asked (a restarted operator: no write)
        (R.FALLBACK_READY, None),
        (R.FALLBACK_ARTIFACT_MISSING, None),
        (R.FALLBACK_ARTIFACT_UNCHECKED, None),
        # anything else (none yet, or the fallback was not warm) says "not probed yet", never True
        (None, ("Unknown", R.FALLBACK_ARTIFACT_UNCHECKED)),
        (R.FALLBACK_NOT_WARM, ("Unknown", R.FALLBACK_ARTIFACT_UNCHECKED)),
    ],
)
def test_an_unanswered_probe_never_claims_ready(recorded: str | None, want: tuple[str, str] | None) -> None:
    r = RR.decide(RR.choose([stable(), canary()], {"canary": 100}), PROD, RR.PENDING, recorded)
    assert (None if r is None else (r.status, r.reason)) == want


def test_an_unanswered_probe_does_not_hide_another_failure() -> None:
    r = RR.decide(RR.choose([stable(mv=mv("2.3.8", stage="archived")), canary()], {"canary": 100}), PROD,
                  RR.PENDING, R.FALLBACK_READY)  # fmt: skip
    assert r is not None and r.reason == R.FALLBACK_WITHDRAWN


def test_nothing_serving_is_unknown() -> None:
    r = RR.decide(RR.choose([stable(), canary(weight=0)], {}), PROD, PRESENT)
    assert r is not None and (r.status, r.reason) == ("Unknown", R.NOTHING_SERVING)


def test_the_condition_message_is_bounded() -> None:
    r = RR.decide(
        RR.choose([stable(), canary()], {"canary": 100}), PROD, RR.ArtifactCheck(R.PROBE_MISSING, "x" * 5000)
    )
    assert r is not None and len(r.condition().message) == 1024
