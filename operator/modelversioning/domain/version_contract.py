"""The I/O contract step of a ModelVersion's decision: ``domain.io_contract``'s SemVer rule applied to a
verified artifact, with the record it leaves in status.ioSignature (one step of ``version_plan.decide``,
after the trust policy: ``apply_contract``).

- The signature used: the artifact's (an MLflow MLmodel file's, ``status.artifact.ioSignature``) when it
  carries a readable one, else ``spec.signature``; a spec.signature the artifact contradicts is noted.
- A refused version (``R.IO_SIGNATURE_CHANGED``, ``R.IO_SIGNATURE_MISSING``) is not verified: Ready
  False, a Warning Event (``verification_events``), no slot, no traffic. Its bytes were verified, so
  ``decide_verification`` keeps the record and never fetches them again for it.
- A verdict on a signature is decided once (kept from status.ioSignature while its digest is the
  same): checked, not checked (no baseline when it was decided) or refused. A version accepted and
  served is never held nor refused later because another version was registered (the gather step also
  offers as baselines only versions registered no later than this one: ``handlers.contract``). A
  verdict without a signature follows the policy in force (requireSignature).
- While the baseline's contract is being decided, ArtifactVerified is Unknown (``R.IO_CONTRACT_PENDING``)
  and the version is looked at again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.io_contract import ContractVerdict, IOSignature, decide_contract, describe, diff
from modelversioning.domain.timestamps import parse_rfc3339
from modelversioning.domain.version_facts import VersionFacts
from modelversioning.domain.version_verify import Verification

CONTRACT_NOTE = "; I/O contract: "  # what a verified version's message says of it follows this
CONTRACT_RECHECK_SECONDS = 10.0  # a version waiting for its baseline's contract looks again after this
_ACCEPTED = frozenset({R.IO_SIGNATURE_CHECKED, R.IO_SIGNATURE_NOT_CHECKED})
# kept for good per signature digest: an accepted verdict (checked, or not checked for want of a
# baseline) and a refusal; a pending one and a verdict without a signature are decided again
_STICKY = _ACCEPTED | {R.IO_SIGNATURE_CHANGED}


def signature_in_use(
    facts: VersionFacts, art: Mapping[str, Any] | None
) -> tuple[IOSignature | None, str, str]:
    """(signature, its source, a note) for this version: the artifact's, else spec.signature."""
    found = (art or {}).get("ioSignature")
    declared = facts.contract.declared
    if (
        isinstance(found, Mapping)
        and not found.get("error")
        and (found.get("inputs") or found.get("outputs"))
    ):
        sig = IOSignature.of(found)
        changes = diff(IOSignature.of(declared), sig) if declared else ()
        note = f" (spec.signature differs: {describe(changes)}; the artifact's is used)" if changes else ""
        return sig, str(found.get("source") or "artifact"), note
    unread = (
        f" ({found.get('source')}: {found['error']})"
        if isinstance(found, Mapping) and found.get("error")
        else ""
    )
    if declared:
        return IOSignature.of(declared), "spec.signature", unread
    return None, "", unread


def apply_contract(facts: VersionFacts, v: Verification) -> tuple[Verification, dict[str, Any] | None]:
    """The verification with the I/O contract applied, and the new status.ioSignature (the old one
    is kept while the artifact is not verified)."""
    prev = facts.status.get("ioSignature")
    if v.cond.status != TRUE:
        return v, dict(prev) if isinstance(prev, Mapping) else None
    sig, source, note = signature_in_use(facts, v.artifact)
    digest = sig.digest() if sig is not None else ""
    verdict = _kept(prev, digest) or decide_contract(
        facts.version, sig, facts.contract.known, require=facts.contract.require
    )
    said = verdict.message + note
    if verdict.reason == R.IO_SIGNATURE_MISSING and facts.contract.required_by:
        said = f"{said} ({facts.contract.required_by})"
    record: dict[str, Any] = {"source": source or "none", "digest": digest}
    if sig is not None:
        record.update(sig.to_status())
    record["contract"] = {"reason": verdict.reason, "message": said[:2048]}
    if verdict.baseline:
        record["contract"]["baseline"] = verdict.baseline
    if verdict.accepted:  # a version without any signature: status.ioSignature alone says so
        message = v.cond.message.split(CONTRACT_NOTE)[0] + (CONTRACT_NOTE + said if sig is not None else "")
        return Verification(Cond("ArtifactVerified", TRUE, v.cond.reason, message), v.artifact, v.action,
                            v.requeue_after), record  # fmt: skip
    if verdict.reason == R.IO_CONTRACT_PENDING:
        wait = (
            CONTRACT_RECHECK_SECONDS
            if v.requeue_after is None
            else min(v.requeue_after, CONTRACT_RECHECK_SECONDS)
        )
        cond = Cond("ArtifactVerified", UNKNOWN, verdict.reason, said)
        return Verification(cond, v.artifact, v.action, wait), record
    return Verification(Cond("ArtifactVerified", FALSE, verdict.reason, said), v.artifact, v.action,
                        v.requeue_after), record  # fmt: skip


def _kept(prev: Any, digest: str) -> ContractVerdict | None:
    """The verdict this very signature already has, accepted or refused (None: decide it now)."""
    if not isinstance(prev, Mapping) or not digest or prev.get("digest") != digest:
        return None
    c = prev.get("contract")
    if not isinstance(c, Mapping) or c.get("reason") not in _STICKY:
        return None
    message = str(c.get("message", "")).split(" (spec.signature differs:")[0]
    base = c.get("baseline")
    return ContractVerdict(c["reason"] in _ACCEPTED, str(c["reason"]), message, str(base) if base else None)


def registered_before(theirs: Any, mine: Any) -> bool:
    """Whether a version registered at ``theirs`` may be the baseline of one registered at ``mine``
    (RFC 3339): registered no later (the same second: applied together, compared); an unknown time on
    either side offers it (compared, as before the registry remembered)."""
    a, b = parse_rfc3339(theirs), parse_rfc3339(mine)
    return a is None or b is None or a <= b
