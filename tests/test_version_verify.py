"""ArtifactVerified of a ModelVersion (domain.version_verify), table-tested through the ModelVersion
decision (domain.version_plan.decide) without a cluster: a verified record kept, rechecked or not
trusted, a verification started, left alone or recorded, failures held for the generation or retried
with backoff."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from modelversioning.api import wire as R
from modelversioning.artifacts.errors import Reason
from modelversioning.domain.version_facts import VerifierFacts, VerifyAction, VerifyResult
from modelversioning.domain.version_plan import decide
from modelversioning.domain.version_verify import retry_delay
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
    assert event_reasons(plan) == [("Normal", R.ARTIFACT_VERIFIED)]
    assert plan.notify_endpoints
    files = replace(OK, files=3)
    plan = decide(replace(f, verifier=VerifierFacts(result=files)), POLICY, NOW)
    assert plan.status["artifact"]["files"] == 3


def test_digest_mismatch_warns_and_is_permanent_for_the_generation():
    bad = VerifyResult(R.DIGEST_MISMATCH, "expected a.., got b..", transient=False)
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(result=bad, result_generation=1)
    )
    plan = decide(f, POLICY, NOW)
    vc = c(plan, "ArtifactVerified")
    assert (vc["status"], vc["reason"]) == ("False", R.DIGEST_MISMATCH)
    assert event_reasons(plan) == [("Warning", R.DIGEST_MISMATCH)]
    assert "artifact" not in plan.status
    # the next reconcile: held from the status, never fetched again, no second Warning
    held = decide(replace(f, status=plan.status, verifier=VerifierFacts()), POLICY, NOW)
    assert held.verify is VerifyAction.FORGET
    assert c(held, "ArtifactVerified")["reason"] == R.DIGEST_MISMATCH and held.events == ()
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
def test_transient_failures_back_off_and_say_so(failures, age, wait):
    nf = VerifyResult(R.NOT_FOUND, "s3://b/m: NotFound", transient=True)
    v = VerifierFacts(result=nf, result_generation=1, failures=failures, age=age)
    plan = decide(facts(status=unverified(R.VERIFYING, "Unknown"), verifier=v), POLICY, NOW)
    vc = c(plan, "ArtifactVerified")
    assert (vc["status"], vc["reason"]) == ("False", R.NOT_FOUND)
    assert vc["message"] == f"s3://b/m: NotFound; retrying in {wait:.0f}s (attempt {failures})"
    assert plan.requeue_after == pytest.approx(wait + 0.1)
    assert plan.verify is VerifyAction.NONE
    assert event_reasons(plan) == [("Warning", R.NOT_FOUND)]


def test_transient_failure_is_retried_once_the_backoff_is_over():
    ff = VerifyResult(R.FETCH_FAILED, "timed out", transient=True)
    v = VerifierFacts(result=ff, result_generation=1, failures=2, age=10.5)
    plan = decide(facts(status=unverified(R.FETCH_FAILED), verifier=v), POLICY, NOW)
    assert plan.verify is VerifyAction.START and plan.requeue_after is None
    assert c(plan, "ArtifactVerified")["reason"] == R.VERIFYING


@pytest.mark.parametrize(("failures", "delay"), [(0, 0), (1, 5), (2, 10), (3, 20), (7, 300), (50, 300)])
def test_retry_delay(failures, delay):
    assert retry_delay(failures, POLICY) == delay


def test_every_verifier_outcome_has_a_documented_reason():
    assert {r.value for r in Reason} <= set(R.REASONS)
