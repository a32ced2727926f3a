"""Signed models: whether a version's signature is accepted, decided purely (docs/security.md).

A trust policy comes from the version's Model (``spec.trust``) and from every ModelPlatformPolicy that
selects its namespace (``spec.trust``); each is a ``TrustSource``. The strictest wins, as with the other
floors:

- A signature is required at the earliest ``requiredFrom`` of any source, and beyond it (archived never
  needs one: it withdraws; a stage the Model does not have requires it everywhere, failing closed).
- A signature is accepted only when it verified (the verifier's record says ``Signed``: a valid
  signature over exactly the files whose digests the verifier computed), and every source that lists
  signers has one of its own entries among those that verified it, and no certificate of its chain
  has expired.

The verifier (artifacts.signature) does the cryptography against every entry of every source and
records which entries verified the signature (``matched``); here the record meets the policy as it is
now, so removing a key from a policy withdraws its versions at the next reconcile without a fetch, and
a certificate expiring is seen when its time comes (``recheck_after``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.approvals import pin_required
from modelversioning.domain.timestamps import parse_rfc3339

# ArtifactVerified reasons of a verified digest whose signature is not accepted where it is required
SIGNATURE_REASONS = frozenset(
    {
        R.SIGNATURE_MISSING,
        R.SIGNATURE_INVALID,
        R.SIGNER_NOT_TRUSTED,
        R.SIGNATURE_DIGEST_MISMATCH,
        R.CERTIFICATE_EXPIRED,
    }
)


@dataclass(frozen=True)
class TrustSource:
    """One trust policy: a Model's or a platform policy's."""

    name: str  # "Model fraud", "ModelPlatformPolicy corp"
    required_from: str | None = None
    entries: tuple[str, ...] = ()  # the ids of the signers it trusts (keys, certificates, sigstore)


@dataclass(frozen=True)
class TrustFacts:
    """The trust policies that apply to one version, and the digest of what they name (a verified
    record checked under another digest is verified again)."""

    sources: tuple[TrustSource, ...] = ()
    policy: str = ""  # digest of the sources' entries and references; "" without any source

    @property
    def active(self) -> bool:
        return bool(self.sources)

    def required_from(self) -> tuple[str, ...]:
        return tuple(s.required_from for s in self.sources if s.required_from)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # R.SIGNED, or why not (an ArtifactVerified / StageTransition reason)
    message: str
    accepted_by: str | None = None  # the sources that accepted it
    recheck_after: float | None = None  # seconds until a certificate of its chain expires


def required_for(stage: str, trust: TrustFacts, order: tuple[str, ...]) -> str | None:
    """The requiredFrom stage that makes ``stage`` need an accepted signature (None: none does)."""
    return pin_required(stage, trust.required_from(), order)


def verdict(trust: TrustFacts, record: Mapping[str, Any] | None, now: datetime) -> Verdict:
    """Is the signature the verifier recorded accepted by every applicable policy now?"""
    if not record:
        return Verdict(False, R.SIGNATURE_MISSING, "the signature has not been read yet")
    outcome = str(record.get("outcome") or R.SIGNATURE_INVALID)
    message = str(record.get("message") or outcome)
    if outcome != R.SIGNED:
        return Verdict(False, outcome, message)
    signer = describe_signer(record)
    listing = [s for s in trust.sources if s.entries]
    if not listing:
        return Verdict(
            False, R.SIGNER_NOT_TRUSTED, f"{signer}: no trust policy names a key, certificate or identity"
        )
    matched = set(record.get("matched") or ())
    for s in listing:
        if not matched & set(s.entries):
            trusted = ", ".join(s.entries)
            return Verdict(False, R.SIGNER_NOT_TRUSTED, f"{signer} is not trusted by {s.name} ({trusted})")
    expired = seconds_left(record.get("notAfter"), now)
    if expired is not None and expired <= 0:
        return Verdict(
            False, R.CERTIFICATE_EXPIRED, f"{signer}: the certificate expired at {record.get('notAfter')}"
        )
    by = " and ".join(s.name for s in listing)
    return Verdict(True, R.SIGNED, f"signed by {signer}, accepted by {by}", by, expired)


def accepted_by_anchors(matched: Iterable[str], anchors: Iterable[Mapping[str, Any]]) -> str | None:
    """The init container's rule, against the trust anchors the operator accepted (status): every
    source among them must have one of its anchors among those that verified the signature. Returns
    why not (None: accepted)."""
    matched_ids = set(matched)
    sources: dict[str, set[str]] = {}
    for a in anchors:
        sources.setdefault(str(a.get("source")), set()).add(str(a.get("id")))
    if not sources:
        return "no trust anchors"
    for name, ids in sorted(sources.items()):
        if not matched_ids & ids:
            return f"not signed by a signer {name} trusts ({', '.join(sorted(ids))})"
    return None


def describe_signer(record: Mapping[str, Any]) -> str:
    """'key sha256:ab12..' / 'certificate jane@acme.com (issuer CN=Acme CA)' for messages."""
    method = record.get("method") or "unknown method"
    signer = record.get("signer") or "unknown signer"
    issuer = f" (issuer {record['issuer']})" if record.get("issuer") else ""
    return f"{method} {signer}{issuer}"


def seconds_left(raw: object, now: datetime) -> float | None:
    """Seconds until the chain's first certificate expires (its notAfter, RFC 3339; None: no
    certificate); an unreadable notAfter counts as expired."""
    if not raw:
        return None
    t = parse_rfc3339(str(raw))
    if t is None:
        return 0.0
    return (t - now).total_seconds()
