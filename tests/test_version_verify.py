"""ArtifactVerified of a ModelVersion (domain.version_verify), table-tested through the ModelVersion
decision (domain.version_plan.decide) without a cluster: a verified record kept, rechecked or not
trusted, a verification started, left alone or recorded, failures held for the generation or retried
with backoff."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from modelversioning.api import wire as R
from modelversioning.artifacts.errors import Reason
from modelversioning.domain.stages import Stage
from modelversioning.domain.version_facts import RegistryFacts, VerifierFacts, VerifyAction, VerifyResult
from modelversioning.domain.version_plan import decide
from modelversioning.domain.version_verify import (
    FIRST_VERIFICATION_GRACE,
    QUIET_LIMIT,
    RECORD_GRACE,
    retry_delay,
)
from test_version_plan import (
    NOW,
    OK,
    POLICY,
    SHA,
    STAMP,
    _conds,
    c,
    event_reasons,
    facts,
    unverified,
    verified_status,
)


def test_a_verified_record_is_kept_without_fetching():
    plan = decide(facts(), POLICY, NOW)
    assert plan.verify is VerifyAction.NONE
    assert plan.status["artifact"] == verified_status()["artifact"]
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFIED
    assert plan.events == () and plan.requeue_after is None and not plan.notify_endpoints


def test_a_record_for_another_digest_is_not_trusted():
    st = verified_status(artifact={"digest": "b" * 64, "verifiedAt": "2024-07-02T09:00:00Z"})
    plan = decide(facts(status=st), POLICY, NOW)
    assert plan.verify is VerifyAction.START
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFYING


@pytest.mark.parametrize(
    ("status", "reason"),
    [("False", R.ARTIFACT_DELETED), ("Unknown", R.VERIFYING)],
    ids=["deleted-by-retention", "recheck-under-way"],
)
def test_a_kept_record_without_artifact_verified_true_is_no_verdict(status, reason):
    """status.artifact outlives ArtifactVerified=True (retention deleted the artifact; a recheck keeps
    the old record meanwhile): the record alone never makes the version verified, it is fetched again."""
    st = verified_status(conditions=_conds(("ArtifactVerified", status, reason, "m")))
    plan = decide(facts(status=st), POLICY, NOW)
    assert plan.verify is VerifyAction.START
    assert c(plan, "ArtifactVerified")["status"] != "True" and c(plan, "Ready")["status"] != "True"


@pytest.mark.parametrize(("age_h", "action"), [(0.5, VerifyAction.NONE), (2, VerifyAction.START)])
def test_recheck_refetches_an_old_record_and_keeps_it_meanwhile(age_h, action):
    at = (NOW - timedelta(hours=age_h)).isoformat().replace("+00:00", "Z")
    st = verified_status(artifact={"digest": SHA, "verifiedAt": at})
    plan = decide(facts(status=st), replace(POLICY, recheck_seconds=3600), NOW)
    assert plan.verify is action
    assert plan.status["artifact"]["verifiedAt"] == at


def test_recheck_refetches_a_record_without_a_readable_time():
    st = verified_status(artifact={"digest": SHA, "verifiedAt": "yesterday"})
    assert decide(facts(status=st), replace(POLICY, recheck_seconds=3600), NOW).verify is VerifyAction.START


def test_recheck_refetches_a_record_whose_time_has_no_zone():
    """A verifiedAt without a time zone (a hand-edited status) cannot be compared with now: re-verify
    (before, the subtraction raised TypeError and every reconcile of the version failed)."""
    st = verified_status(artifact={"digest": SHA, "verifiedAt": "2024-07-02T09:59:00"})
    assert decide(facts(status=st), replace(POLICY, recheck_seconds=3600), NOW).verify is VerifyAction.START


def test_nothing_known_starts_a_verification():
    plan = decide(facts(status=unverified()), POLICY, NOW)
    assert plan.verify is VerifyAction.START
    vc = c(plan, "ArtifactVerified")
    assert (vc["status"], vc["reason"], vc["message"]) == (
        "Unknown",
        R.VERIFYING,
        "fetching and hashing s3://b/m",
    )
    assert "artifact" not in plan.status and plan.events == ()


def test_a_running_verification_is_left_alone():
    plan = decide(
        facts(status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(running=True)), POLICY, NOW
    )
    assert plan.verify is VerifyAction.NONE and plan.events == () and plan.requeue_after is None


def test_success_records_the_digest_and_tells_the_endpoints():
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(result=OK, result_generation=1)
    )
    plan = decide(f, POLICY, NOW)
    assert plan.status["artifact"] == {"digest": SHA, "verifiedAt": STAMP, "sizeBytes": 42}
    assert plan.verify is VerifyAction.FORGET
    assert event_reasons(plan) == []  # success is no Event (issue #25): the status says it
    assert plan.notify_endpoints
    files = replace(OK, files=3)
    plan = decide(replace(f, verifier=VerifierFacts(result=files)), POLICY, NOW)
    assert plan.status["artifact"]["files"] == 3


def test_a_verification_that_allows_a_walk_is_said_in_its_one_stage_changed_event():
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"),
        verifier=VerifierFacts(result=OK, result_generation=1),
        requested=Stage.PRODUCTION,
    )
    plan = decide(f, POLICY, NOW)
    assert event_reasons(plan) == [("Normal", R.STAGE_CHANGED)]
    assert plan.events[0].message.endswith("; artifact verified: sha256 matches")
    assert "candidate -> staging -> production" in plan.events[0].message
    # verified before: a later walk's Event does not say it again
    later = replace(f, status=plan.status, requested=Stage.ARCHIVED, verifier=VerifierFacts())
    (ev,) = decide(later, POLICY, NOW).events
    assert ev.reason == R.STAGE_CHANGED and "artifact verified" not in ev.message


@pytest.mark.parametrize("mismatch", [R.DIGEST_MISMATCH, R.MANIFEST_DIGEST_MISMATCH, R.LAYER_DIGEST_MISMATCH])
def test_digest_mismatch_warns_and_is_permanent_for_the_generation(mismatch: str):
    bad = VerifyResult(mismatch, "expected a.., got b..", transient=False)
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(result=bad, result_generation=1)
    )
    plan = decide(f, POLICY, NOW)
    vc = c(plan, "ArtifactVerified")
    assert (vc["status"], vc["reason"]) == ("False", mismatch)
    assert event_reasons(plan) == [("Warning", mismatch)]
    assert "artifact" not in plan.status
    # the next reconcile (an operator restart forgot the verifier's answer): held from the status, never
    # fetched again, no second Warning, and the reason kept (an oci:// manifest's or layer's stays so)
    held = decide(replace(f, status=plan.status, verifier=VerifierFacts()), POLICY, NOW)
    assert held.verify is VerifyAction.FORGET
    assert c(held, "ArtifactVerified")["reason"] == mismatch and held.events == ()
    # a new generation (spec.stage or description edited) checks again
    newer = decide(replace(f, status=plan.status, verifier=VerifierFacts(), generation=2), POLICY, NOW)
    assert newer.verify is VerifyAction.START


@pytest.mark.parametrize("reason", [R.URI_REFUSED, R.ACCESS_DENIED, R.FETCH_FAILED])
def test_other_permanent_failures_are_held_for_the_generation_not_refetched(reason):
    bad = VerifyResult(reason, "refused", transient=False)
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(result=bad, result_generation=1)
    )
    plan = decide(f, POLICY, NOW)
    assert plan.verify is VerifyAction.NONE and plan.requeue_after is None
    assert (c(plan, "ArtifactVerified")["status"], c(plan, "ArtifactVerified")["reason"]) == ("False", reason)
    assert event_reasons(plan) == [("Warning", reason)]
    # our own status write comes back as a watch event: no new fetch, no new Event
    again = decide(replace(f, status=plan.status), POLICY, NOW)
    assert again.verify is VerifyAction.NONE and again.events == ()
    assert again.status == plan.status
    # the next generation tries again
    assert decide(replace(f, generation=2), POLICY, NOW).verify is VerifyAction.START


@pytest.mark.parametrize(
    ("failures", "age", "wait"),
    [(1, 0.0, 5.0), (1, 4.0, 1.0), (2, 0.0, 10.0), (3, 2.5, 17.5), (10, 0.0, 300.0)],
)
def test_transient_failures_back_off_and_say_so_in_their_event_not_in_status(failures, age, wait):
    nf = VerifyResult(R.NOT_FOUND, "s3://b/m: NotFound", transient=True)
    v = VerifierFacts(result=nf, result_generation=1, failures=failures, age=age, fresh=True)
    plan = decide(facts(status=unverified(R.VERIFYING, "Unknown"), verifier=v), POLICY, NOW)
    vc = c(plan, "ArtifactVerified")
    assert (vc["status"], vc["reason"], vc["message"]) == ("False", R.NOT_FOUND, "s3://b/m: NotFound")
    assert plan.requeue_after == pytest.approx(wait + 0.1)
    assert plan.verify is VerifyAction.NONE
    delay = retry_delay(failures, POLICY)
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", R.NOT_FOUND, f"s3://b/m: NotFound; next attempt in {delay:.0f}s")
    ]


def test_a_failed_attempt_is_one_event_only_when_its_result_comes_in():
    nf = VerifyResult(R.NOT_FOUND, "s3://b/m: NotFound", transient=True)
    v = VerifierFacts(result=nf, result_generation=1, failures=2, age=3.0)  # harvested before
    plan = decide(
        facts(status=unverified(R.NOT_FOUND, message="s3://b/m: NotFound"), verifier=v), POLICY, NOW
    )
    assert plan.events == ()


def test_transient_failure_is_retried_once_the_backoff_is_over_keeping_what_failed():
    ff = VerifyResult(R.FETCH_FAILED, "timed out", transient=True)
    v = VerifierFacts(result=ff, result_generation=1, failures=2, age=10.5)
    plan = decide(facts(status=unverified(R.FETCH_FAILED), verifier=v), POLICY, NOW)
    assert plan.verify is VerifyAction.START and plan.requeue_after is None
    assert (c(plan, "ArtifactVerified")["reason"], c(plan, "ArtifactVerified")["message"]) == (
        R.FETCH_FAILED,
        "m",
    )


# ---- a retry that changes nothing writes nothing --------------------------------------------------

ERR = "s3://b/m: FetchFailed: connection refused"


def _failing(failures, age, *, running=False, fresh=False, message=ERR):
    if running:
        return VerifierFacts(running=True, failures=failures, running_for=age)
    res = VerifyResult(R.FETCH_FAILED, message, transient=True)
    return VerifierFacts(result=res, result_generation=1, failures=failures, age=age, fresh=fresh)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # waiting for the backoff, later and after more attempts
        (_failing(1, 1.0, fresh=True), _failing(4, 7.0, fresh=True)),
        # a retry running vs. waiting for the next one
        (_failing(2, 0.5, running=True), _failing(3, 2.0, fresh=True)),
        # the backoff is over (a retry starts) vs. waiting
        (_failing(2, 30.0), _failing(6, 0.1)),
        # the latest attempt's error differs in its details: the Event has them, not the status
        (_failing(1, 1.0, fresh=True), _failing(2, 1.0, fresh=True, message=ERR + " (port 9000)")),
    ],
)
def test_two_decisions_for_the_same_failing_facts_make_byte_identical_status(first, second):
    held = {
        "stage": "candidate",
        "history": [{"to": "candidate", "at": "t0", "reason": R.REGISTERED, "actor": "ci"}],
        "conditions": _conds(("ArtifactVerified", "False", R.FETCH_FAILED, ERR)),
    }
    # the status as stored after the first failure (what the next reconciles compare with)
    stored = decide(facts(status=held, verifier=first), POLICY, NOW).status
    a = decide(facts(status=stored, verifier=first), POLICY, NOW + timedelta(seconds=3))
    b = decide(facts(status=stored, verifier=second), POLICY, NOW + timedelta(minutes=9))
    assert (
        json.dumps(a.status, sort_keys=True)
        == json.dumps(b.status, sort_keys=True)
        == json.dumps(stored, sort_keys=True)
    )
    assert not a.notify_endpoints and not b.notify_endpoints  # endpoints are not woken either


def test_the_first_failure_time_is_the_conditions_transition_and_stays():
    """Verifying -> FetchFailed: lastTransitionTime is when it first failed; retries keep it."""
    first = decide(facts(status=unverified(R.VERIFYING, "Unknown"), verifier=_failing(1, 0.0)), POLICY, NOW)
    vc = c(first, "ArtifactVerified")
    assert (vc["status"], vc["lastTransitionTime"]) == ("False", STAMP)
    later = decide(facts(status=first.status, verifier=_failing(5, 0.0)), POLICY, NOW + timedelta(hours=1))
    assert c(later, "ArtifactVerified")["lastTransitionTime"] == STAMP


def test_a_new_generation_is_verifying_again_not_held():
    stored = unverified(R.FETCH_FAILED, message=ERR)
    plan = decide(facts(status=stored, generation=2, verifier=VerifierFacts(running=True)), POLICY, NOW)
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFYING


@pytest.mark.parametrize(("failures", "delay"), [(0, 0), (1, 5), (2, 10), (3, 20), (7, 300), (50, 300)])
def test_retry_delay(failures, delay):
    assert retry_delay(failures, POLICY) == delay


def test_every_verifier_outcome_has_a_documented_reason():
    assert {r.value for r in Reason} <= set(R.REASONS)


# ---- a slot's pod refused the verified digest: re-verify at once -----------------------------------


def test_a_pods_refusal_refetches_a_verified_record_at_once_whatever_its_age():
    plan = decide(facts(recheck="f" * 64), POLICY, NOW)  # no recheck_seconds: never stale by age
    assert plan.verify is VerifyAction.START
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFYING


def test_the_refetch_that_finds_other_bytes_says_which_digest_it_found():
    found = "f" * 64
    res = VerifyResult(R.DIGEST_MISMATCH, "u: DigestMismatch: do not hash to the expected", False, found)
    v = VerifierFacts(result=res, result_generation=1)
    asked = decide(facts(recheck=found), POLICY, NOW)  # the pod's refusal: fetched again
    plan = decide(facts(status=asked.status, verifier=v), POLICY, NOW)
    ac = c(plan, "ArtifactVerified")
    assert (ac["status"], ac["reason"]) == ("False", R.DIGEST_MISMATCH)
    assert found in ac["message"]
    assert ("Warning", R.DIGEST_MISMATCH) in event_reasons(plan)


def test_verifications_ask_once_per_digest_found_and_forget_a_deleted_version():
    from modelversioning.handlers.verification import Verifications

    requeued: list[tuple[str, str]] = []
    v = Verifications(None, lambda *a: None, lambda ns, n: requeued.append((ns, n)))  # type: ignore[arg-type]
    key = ("ml", "m-v1")
    assert v.request_recheck(key, "f" * 64) and requeued == [key]
    assert v.recheck_requested(key) == "f" * 64
    v.recheck_taken(key)
    assert v.recheck_requested(key) is None
    assert not v.request_recheck(key, "f" * 64)  # the same refusal again: no loop on a store that is fine
    assert v.request_recheck(key, "e" * 64)  # other bytes found: asked again
    v.forget(key)  # a verified result forgotten: the request and the memory stay
    assert v.recheck_requested(key) == "e" * 64
    v.forget(key, gone=True)
    assert v.recheck_requested(key) is None and v.request_recheck(key, "e" * 64)


PENDING = RegistryFacts(pending="waiting for Model m to record version 1.0.0 in status.versions")
NO_MODEL = RegistryFacts(pending="waiting for Model m, which the operator creates", create_model=True)
LIMIT = QUIET_LIMIT
HAD = unverified(R.VERIFYING, "Unknown")


@pytest.mark.parametrize(
    ("status", "registry", "age", "waited", "requeue", "reason"),
    [
        # its Model exists: the Model's reconcile (queued by this version's creation) records it; it waits
        # for it up to QUIET_LIMIT after its first look at the verifier's answer (age)
        pytest.param({}, PENDING, 0.0, 0.5, LIMIT, None, id="model-behind:-nothing-written"),
        pytest.param({}, PENDING, RECORD_GRACE, 8.0, LIMIT - RECORD_GRACE, None, id="model-behind-5s:-quiet"),
        pytest.param({}, PENDING, LIMIT - 0.1, 40.0, 0.1, None, id="model-behind-just-within-the-limit"),
        pytest.param({}, PENDING, LIMIT, 40.0, None, R.RECORD_PENDING, id="model-behind-limit:-says-so"),
        # the operator's queue reached it long after its first look: its Model waits in the same queue
        pytest.param({}, PENDING, 0.0, 100.0, LIMIT, None, id="looked-at-late:-its-model-too:-quiet"),
        # no Model yet (the operator creates it): RECORD_GRACE after the verification, then says so
        pytest.param({}, NO_MODEL, 0.0, 1.0, RECORD_GRACE, None, id="no-model:-nothing-written"),
        pytest.param({}, NO_MODEL, RECORD_GRACE - 0.1, 6.0, 0.1, None, id="no-model-just-within"),
        pytest.param({}, NO_MODEL, RECORD_GRACE, 6.0, None, R.RECORD_PENDING, id="no-model-past-the-grace"),
        # never quiet once it had a status; never verified before the record
        pytest.param(HAD, PENDING, 0.0, 0.0, None, R.RECORD_PENDING, id="had-a-status"),
        pytest.param(verified_status(), PENDING, 0.0, 0.0, None, R.VERIFIED, id="verified-before-the-record"),
    ],
)  # fmt: skip
def test_a_new_version_waits_quietly_for_the_record_and_never_looks_verified_early(
    status: dict,
    registry: RegistryFacts,
    age: float,
    waited: float,
    requeue: float | None,
    reason: str | None,
) -> None:
    """Issue #25: one status write per new version (verified, recorded, walked) instead of
    RecordPending first; nothing written says verified before the record holds the version, and a new
    version goes at most QUIET_LIMIT without any status."""
    f = facts(
        status=status,
        requested=Stage.PRODUCTION,
        registry=registry,
        verifier=VerifierFacts(result=OK, result_generation=1, age=age, fresh=age == 0.0, waited_for=waited),
    )
    plan = decide(f, POLICY, NOW)
    assert (plan.status is None) is (reason is None)
    if plan.status is None:
        assert plan.events == () and not plan.notify_endpoints
        assert plan.verify is VerifyAction.NONE  # the verifier keeps its answer for the next look
        assert plan.requeue_after == pytest.approx(requeue)
        return
    assert c(plan, "ArtifactVerified")["reason"] == reason
    if reason == R.RECORD_PENDING:
        assert c(plan, "ArtifactVerified")["status"] == "Unknown" and plan.status["stage"] == "candidate"


G = FIRST_VERIFICATION_GRACE


@pytest.mark.parametrize(
    ("running_for", "waited_for", "quiet", "requeue"),
    [
        pytest.param(0.0, 0.0, True, G, id="just-asked-for"),
        pytest.param(G - 0.5, G - 0.5, True, 0.5, id="hashing-within-the-grace"),
        pytest.param(G, G, False, None, id="hashing-past-the-grace:-says-verifying"),
        # a burst of new versions queued behind the pool's workers: the wait says nothing of the artifact
        pytest.param(0.0, 10.0, True, G, id="queued-for-a-worker:-quiet"),
        pytest.param(0.5, 12.0, True, G - 0.5, id="began-after-a-wait:-its-own-grace"),
        pytest.param(0.0, LIMIT - 1.0, True, 1.0, id="queued-near-the-limit:-looks-again-at-it"),
        pytest.param(0.0, LIMIT, False, None, id="queued-to-the-limit:-says-verifying"),
        pytest.param(G + 1, LIMIT + 1, False, None, id="slow-and-late:-says-verifying"),
    ],
)
def test_a_new_versions_first_verification_is_quiet_while_it_waits_for_a_worker_up_to_a_limit(
    running_for: float, waited_for: float, quiet: bool, requeue: float | None
) -> None:
    """Issue #25 on a cluster: 39 of 1,000 new versions wrote Verifying, then Verified. The grace counts
    from when a worker began the hash; the quiet wait (no status at all) is bounded by QUIET_LIMIT."""
    v = VerifierFacts(running=True, running_for=running_for, waited_for=waited_for)
    plan = decide(facts(status={}, verifier=v), POLICY, NOW)
    assert plan.verify is VerifyAction.NONE and plan.events == ()
    if quiet:
        assert plan.status is None and plan.requeue_after == pytest.approx(requeue)
        return
    assert plan.status is not None and plan.requeue_after is None
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFYING


def test_a_version_that_had_a_status_says_verifying_at_once_however_it_waits() -> None:
    v = VerifierFacts(running=True, running_for=0.0, waited_for=5.0)
    plan = decide(facts(status=unverified(R.FETCH_FAILED), verifier=v), POLICY, NOW)
    assert plan.status is not None
