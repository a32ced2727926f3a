"""ArtifactVerified of a ModelVersion, decided purely: what the status says about its artifact, what
the verifier is told (start a fetch-and-hash, forget its answer, or nothing), and when to look again.

- A verified record stays valid while the digest matches (and, with ``recheck_seconds``, until it
  is that old, or until a slot's pod reads other bytes: ``facts.recheck``, then it is fetched again
  at once); ``DigestMismatch`` is permanent for the generation.
- Other permanent failures (``AccessDenied``, ``URIRefused``) are held for the generation, so a
  status write never triggers another fetch; transient ones (``NotFound``, ``FetchFailed``) are
  retried with exponential backoff: the status keeps the reason and message it shows (and
  lastTransitionTime, since when) while the retries go on, so an idle retry writes nothing; each
  failed attempt is a Warning Event with its latest error and the next attempt's delay.
- A verified version waits for the registry's record of its number and digest (``await_record``).
- The registry's word (a reused version number, an artifact retention deleted) comes before any fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain import conditions as cond
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.stages import Stage
from modelversioning.domain.timestamps import parse_rfc3339, rfc3339
from modelversioning.domain.trust import SIGNATURE_REASONS, Verdict, required_for, verdict
from modelversioning.domain.version_facts import (
    CONTENTS_LIMIT,
    Event,
    VerifyAction,
    VerifyResult,
    VersionFacts,
    VersionPolicy,
)


@dataclass(frozen=True)
class Verification:
    cond: Cond  # ArtifactVerified
    artifact: Mapping[str, Any] | None = None  # status.artifact (None: no verified record)
    action: VerifyAction = VerifyAction.NONE
    requeue_after: float | None = None
    quiet: bool = False  # a first verification still in its grace period: write no status yet
    events: tuple[Event, ...] = ()  # a failed attempt's own Event (verification_events: the changes)


# A new version's first verification writes no "Verifying" status for this long after a worker began
# it: most artifacts that are cached, small or identical verify within it, and the version gets one
# status write (Verified and its stage) instead of two. A slower one shows Verifying once it is over.
# The time a verification waits for a worker (a burst of new versions queued behind the pool's
# workers) does not count: it says nothing of how slow the artifact is. On the cluster, 39 of 1,000
# new versions of the fleet benchmark wrote Verifying first, then Verified (p50 5.9 s apart).
FIRST_VERIFICATION_GRACE = 2.0
# The longest a new version stays quiet (no status at all) by the operator's choice, for each thing it
# waits for: a verification worker (from its first look), the registry's record (from its first look
# after the verifier's answer). Then it says what it waits for. 30 s is `kubectl wait`'s default
# timeout: a person or a pipeline step that looks that long gets an answer that says why the version
# is not Ready yet. It is 2.5x the longest wait for a worker measured on the 1,000-version fleet
# (Verifying to Verified: 11.7 s), so a burst of that size still costs one status write per version.
QUIET_LIMIT = 30.0


def retry_delay(failures: int, policy: VersionPolicy) -> float:
    """Exponential backoff after `failures` consecutive transient failures."""
    if failures <= 0:
        return 0.0
    return float(min(policy.retry_max_seconds, policy.retry_initial_seconds * 2 ** (failures - 1)))


def decide_verification(facts: VersionFacts, policy: VersionPolicy, now: datetime) -> Verification:
    prev_conds = facts.status.get("conditions")
    prev = cond.get(prev_conds, "ArtifactVerified")
    prev_art = facts.status.get("artifact")
    if (
        prev is not None
        # refused by the trust policy or the I/O contract: the digest itself was verified (re-decided)
        and (prev.get("status") == TRUE or prev.get("reason") in SIGNATURE_REASONS | R.CONTRACT_REASONS)
        and prev_art
        and prev_art.get("digest") == facts.digest
        and not _stale(prev_art.get("verifiedAt", ""), policy, now)
        and facts.recheck is None
        and _signature_policy(prev_art) == facts.trust.policy  # checked under the trust policy in force
    ):
        said = prev.get("message", "")
        if prev.get("status") != TRUE:  # refused, but the digest itself was verified
            said = _verified_again(facts, prev_art)
        return Verification(Cond("ArtifactVerified", TRUE, R.VERIFIED, said), prev_art)
    if (
        prev is not None
        and prev.get("reason") in R.DIGEST_MISMATCHES  # a file's, an oci:// manifest's or layer's
        and prev.get("observedGeneration") == facts.generation
    ):
        mismatch = Cond("ArtifactVerified", FALSE, str(prev["reason"]), prev.get("message", ""))
        return Verification(mismatch, action=VerifyAction.FORGET)
    verifying = Verification(
        Cond("ArtifactVerified", UNKNOWN, R.VERIFYING, f"fetching and hashing {facts.shown_uri}"),
        prev_art,  # a recheck keeps the old record meanwhile
    )
    held = _held_failure(facts)
    if held is not None:  # a retry of a transient failure: the status keeps saying what failed
        verifying = Verification(held)
    v = facts.verifier
    first = prev is None and not facts.status.get("stage")  # never had a status of its own
    if v.running:
        if first and v.running_for < FIRST_VERIFICATION_GRACE and v.waited_for < QUIET_LIMIT:
            left = min(FIRST_VERIFICATION_GRACE - v.running_for, QUIET_LIMIT - v.waited_for)
            return Verification(verifying.cond, prev_art, quiet=True, requeue_after=left)
        return verifying
    res = v.result
    if res is not None and res.ok:
        art: dict[str, Any] = {"digest": res.actual or facts.digest, "verifiedAt": rfc3339(now)}
        if res.size_bytes is not None:
            art["sizeBytes"] = res.size_bytes
        if res.files is not None:
            art["files"] = res.files
        art.update(_oci_contents(res))
        if res.signature is not None:
            art["signature"] = dict(res.signature)
        if res.io_signature is not None:
            art["ioSignature"] = dict(res.io_signature)
        return Verification(Cond("ArtifactVerified", TRUE, R.VERIFIED, res.message), art, VerifyAction.FORGET)
    if res is not None and not res.transient and v.result_generation == facts.generation:
        # permanent for this generation: the verifier keeps the answer, so it is not fetched again
        return Verification(Cond("ArtifactVerified", FALSE, res.reason, _with_found(res)))
    if res is not None and res.transient:
        delay = retry_delay(v.failures, policy)
        failed = Cond("ArtifactVerified", FALSE, res.reason, _stable_message(held, res.reason, res.message))
        # each failed attempt is an Event (the sink counts a repeat in one Event): its latest error and
        # the next attempt; the status holds only what changed (reason, message, since when: the
        # condition's lastTransitionTime), so an idle retry writes nothing
        attempt = Event("Warning", res.reason, f"{res.message}; next attempt in {delay:.0f}s")
        said = (attempt,) if v.fresh else ()
        wait = delay - v.age
        if wait > 0:
            return Verification(failed, requeue_after=wait + 0.1, events=said)
        return Verification(failed, action=VerifyAction.START, events=said)
    if first and res is None:
        return Verification(
            verifying.cond, prev_art, VerifyAction.START, requeue_after=FIRST_VERIFICATION_GRACE, quiet=True
        )
    return Verification(verifying.cond, verifying.artifact, VerifyAction.START)


def _oci_contents(res: VerifyResult) -> dict[str, Any]:
    """What an oci:// artifact laid out: its layout, the digest of its files as a directory, and the
    first CONTENTS_LIMIT files (path, sha256, size)."""
    if not res.layout:
        return {}
    out: dict[str, Any] = {"layout": res.layout}
    if res.content_digest:
        out["contentDigest"] = res.content_digest
    out["contents"] = [
        {"path": path, "sha256": sha, "sizeBytes": size} for path, sha, size in res.contents[:CONTENTS_LIMIT]
    ]
    return out


def _verified_again(facts: VersionFacts, art: Mapping[str, Any]) -> str:
    """What a verified record refused only by the trust policy says once the digest counts again."""
    if art.get("layout"):
        layout = art["layout"]
        return f"{facts.shown_uri}: manifest sha256:{facts.digest} and every layer verified ({layout} layout)"
    return f"{facts.shown_uri}: sha256 {facts.digest} verified"


def _signature_policy(art: Mapping[str, Any]) -> str:
    """The digest of the trust policy a verified record's signature was checked under ("": none)."""
    sig = art.get("signature")
    return str(sig.get("policy") or "") if isinstance(sig, Mapping) else ""


def apply_trust(facts: VersionFacts, v: Verification, order: tuple[str, ...], now: datetime) -> Verification:
    """A verified version at or beyond a stage whose trust policy requires a signature, without an
    accepted one, is not verified (domain.trust): the reason says why, and it gets no slot. The
    record keeps what was found, with the policies that accepted it; a certificate's expiry requeues."""
    if not facts.trust.active or v.cond.status != TRUE or not v.artifact:
        return v
    record = v.artifact.get("signature")
    said = verdict(facts.trust, record if isinstance(record, Mapping) else None, now)
    art = dict(v.artifact)
    if isinstance(record, Mapping):  # who accepted it (absent: not accepted; a merge patch drops nulls)
        art["signature"] = {k: v for k, v in record.items() if k != "acceptedBy"}
        if said.accepted_by:
            art["signature"]["acceptedBy"] = said.accepted_by
    stage = str(facts.status.get("stage") or Stage.CANDIDATE)
    required = required_for(stage, facts.trust, order)
    requeue = v.requeue_after
    if said.recheck_after is not None and said.recheck_after > 0:  # look again when it expires
        at = said.recheck_after + 1.0
        requeue = at if requeue is None else min(requeue, at)
    if said.accepted or required is None:
        note = said.message if said.accepted else f"{said.message} (not required at {stage})"
        message = v.cond.message.split(SIGNATURE_NOTE)[0] + SIGNATURE_NOTE + note
        return Verification(Cond("ArtifactVerified", TRUE, v.cond.reason, message), art, v.action, requeue)
    refused = f"{stage} requires a signature accepted by the trust policy (from {required}): {said.message}"
    return Verification(Cond("ArtifactVerified", FALSE, said.reason, refused), art, v.action, requeue)


def trust_verdict(facts: VersionFacts, v: Verification, now: datetime) -> Verdict | None:
    """The signature's verdict for the stage walk's gate (None: no trust policy applies)."""
    if not facts.trust.active:
        return None
    record = (v.artifact or {}).get("signature")
    return verdict(facts.trust, record if isinstance(record, Mapping) else None, now)


# What a verified version's message says of its signature follows this (replaced, never appended twice).
SIGNATURE_NOTE = "; signature: "


def _with_found(res: VerifyResult) -> str:
    """A failure's message; a digest mismatch's with the digest the bytes hash to now."""
    if res.reason == R.DIGEST_MISMATCH and res.actual and res.actual not in res.message:
        return f"{res.message}; the bytes read hash to sha256 {res.actual}"
    return str(res.message)


def _held_failure(facts: VersionFacts) -> Cond | None:
    """The transient failure the status shows for this generation (None: none): a retry keeps it."""
    prev = cond.get(facts.status.get("conditions"), "ArtifactVerified")
    if (
        prev is None
        or prev.get("status") != FALSE
        or prev.get("reason") not in R.TRANSIENT
        or prev.get("observedGeneration") != facts.generation
    ):
        return None
    return Cond("ArtifactVerified", FALSE, str(prev["reason"]), str(prev.get("message", "")))


def _stable_message(held: Cond | None, reason: str, message: str) -> str:
    """The status message of a transient failure: the one already shown for the same reason (a retry's
    details, which may differ by attempt, go to its Event), else the new one."""
    return held.message if held is not None and held.reason == reason else message


# A verified version waits (ArtifactVerified Unknown) until the registry's record holds its number and
# digest; the Model's status change wakes it, and this is the longest it waits before it looks again.
RECORD_RECHECK_SECONDS = 10.0
# A new version (no status yet) verified before the record holds it writes nothing while the record
# is on its way, and then gets one status write (verified, with its stage walk) instead of
# RecordPending first. Its Model exists: the Model's reconcile, which this version's creation queued,
# records it; it waits for it up to QUIET_LIMIT from its first look after the verifier's answer. No
# Model yet (the operator creates one for a new model): RECORD_GRACE, then it says that it waits for
# the Model (a create the API server refuses is worth saying soon). Counted from that look, not from
# the version's first: on the cluster the operator's own queue often reaches a version 30 s and more
# after its first look (the fleet benchmark: 209 of 1,000 versions), and its Model's reconcile waits
# in the same queue; counting from the first look wrote RecordPending first for all of them.
RECORD_GRACE = 5.0


def await_record(facts: VersionFacts, v: Verification) -> Verification:
    """A version becomes verified only once the record (its Model's status.versions) holds its number
    with its digest: a number reused with other weights is then refused (``registry.reused``) however
    fast the versions come and go. One verified before the record existed (an upgrade) stays so. A
    new version waits quietly (no status: nothing says it is verified): for its Model's reconcile up to
    ``QUIET_LIMIT``, for a Model not created yet ``RECORD_GRACE``, after the verifier's answer."""
    pending = facts.registry.pending
    if pending is None or v.cond.status != TRUE:
        return v
    prev = cond.get(facts.status.get("conditions"), "ArtifactVerified")
    prev_art = facts.status.get("artifact") or {}
    if prev is not None and prev.get("status") == TRUE and prev_art.get("digest") == facts.digest:
        return v
    waiting = Cond("ArtifactVerified", UNKNOWN, R.RECORD_PENDING, f"{v.cond.message}; {pending}")
    keep = VerifyAction.NONE if v.action is VerifyAction.FORGET else v.action  # the answer is kept
    first = prev is None and not facts.status.get("stage")  # never had a status of its own
    if first:
        # from its first look after the answer (age): a version the operator's queue reached late
        # (waited_for) still gives its Model's reconcile, queued behind the same backlog, its time
        left = (RECORD_GRACE if facts.registry.create_model else QUIET_LIMIT) - facts.verifier.age
        if left > 0:
            return Verification(waiting, None, keep, left, quiet=True)
    return Verification(waiting, facts.status.get("artifact"), keep, RECORD_RECHECK_SECONDS)


def registry_verdict(facts: VersionFacts) -> Verification | None:
    """The registry's word comes before any fetch: a reused version number is refused for good (kept
    from the status, so it holds even if the Model's memory were lost); an artifact retention deleted
    is not verified again (the verified record stays). Both keep the version off every endpoint."""
    prev = cond.get(facts.status.get("conditions"), "ArtifactVerified") or {}
    reused = facts.registry.reused
    if reused is None and prev.get("reason") == R.VERSION_REUSED:
        reused = str(prev.get("message", ""))
    if reused is not None:
        return Verification(
            Cond("ArtifactVerified", FALSE, R.VERSION_REUSED, reused), action=VerifyAction.FORGET
        )
    if facts.registry.artifact_deleted is not None:
        msg = facts.registry.artifact_deleted
        return Verification(
            Cond("ArtifactVerified", FALSE, R.ARTIFACT_DELETED, msg),
            facts.status.get("artifact"),  # the verified record of what it was stays
            VerifyAction.FORGET,
        )
    return None


def verification_events(prev: Mapping[str, Any] | None, now: Cond) -> tuple[Event, ...]:
    """A Warning Event when ArtifactVerified changes to a failure. Success is no Event (nobody acts on
    it; the condition and status.artifact say it, and the StageChanged Event of a walk it allowed)."""
    if prev is not None and prev.get("reason") == now.reason:
        return ()
    if now.reason == R.ARTIFACT_DELETED:  # retention did it on purpose (the Model posted the Event)
        return ()
    if now.status == FALSE:
        return (Event("Warning", now.reason, now.message),)
    return ()


def _stale(ts: str, policy: VersionPolicy, now: datetime) -> bool:
    """Is a verified record due for a re-fetch (only with recheck_seconds set)? One whose verifiedAt
    is not a timestamp with a time zone is."""
    if not policy.recheck_seconds:
        return False
    t = parse_rfc3339(ts)
    if t is None:
        return True
    return (now - t).total_seconds() > policy.recheck_seconds
