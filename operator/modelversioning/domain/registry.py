"""The registry's memory and retention, decided purely (the Model reconciler gathers and acts).

Memory (``Model.status.versions``): every version ever registered under the Model, with the digest
it was first registered with, when it was first seen, its stage, whether its artifact is still
in storage, and the digest of its accepted I/O signature (``domain.io_contract``: the SemVer rule
still compares with it once the version is deleted). A record is never removed and its digest never
changes: a ModelVersion that comes back with the same version number and another digest is refused
(``reused``), forever.

Retention (``select``): with a clock ``now`` (a fake one in tests), which versions to archive and
which archived versions' artifacts to delete. Never touched: what is in production, the ``keep``
most recent previous production versions, anything an endpoint references, an artifact another
kept version still points at, and a version refused as reused.

Deletion protection (``deletion_protection``): a version past candidate is not deleted by users
unless its policy allows it (archived is the normal end state); the ModelVersion reconciler marks it
with an annotation that the chart's admission policy enforces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelversioning.domain.timestamps import parse_rfc3339 as parse_time  # one reader, one writer
from modelversioning.domain.timestamps import rfc3339 as rfc3339

PRODUCTION = "production"
ARCHIVED = "archived"
CANDIDATE = "candidate"
PRESENT, DELETED = "Present", "Deleted"  # a record's artifact
# On a ModelVersion past candidate whose policy refuses its deletion (value: which policy); written by
# the operator only, enforced by the chart's ValidatingAdmissionPolicy deletion.modelversioning.io.

_DURATION = re.compile(r"^(\d+)(d|h|m|s)$")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_PATTERN = r"^\d+(d|h|m|s)$"


def parse_duration(text: str) -> timedelta:
    """'180d', '12h', '30m', '45s'."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"duration {text!r} must be a number and a unit: d, h, m or s (e.g. 180d)")
    return timedelta(seconds=int(m.group(1)) * _UNIT[m.group(2)])


# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class VersionView:
    """One ModelVersion of the model as the watch cache has it."""

    name: str
    version: str
    uid: str
    digest: str  # spec.artifact.sha256
    uri: str
    created: str  # metadata.creationTimestamp
    stage: str  # status.stage ("" before the first reconcile)
    spec_stage: str = "candidate"
    history: tuple[Mapping[str, Any], ...] = ()
    reused: bool = False  # ArtifactVerified=False/VersionReused: refused, never recorded
    artifact_deleted: bool = False
    referenced_by: tuple[str, ...] = ()  # endpoints that name it (spec or status.servedBy)
    signature_digest: str = ""  # its accepted I/O signature's digest (status.ioSignature; "": none)

    def was_production(self) -> bool:
        return self.stage == PRODUCTION or any(h.get("to") == PRODUCTION for h in self.history)

    def out_of_production_since(self) -> datetime | None:
        """When it last left production; never in production: when it was registered; in production: None."""
        if self.stage == PRODUCTION:
            return None
        left = [parse_time(h.get("at")) for h in self.history if h.get("from") == PRODUCTION]
        known = [t for t in left if t is not None]
        if known:
            return max(known)
        first = [parse_time(h.get("at")) for h in self.history[:1]]
        return (first[0] if first and first[0] else None) or parse_time(self.created)


@dataclass(frozen=True)
class Retention:
    """A Model's retention rules (all off by default)."""

    archive_after: timedelta | None = None  # out of production longer than this: archived
    delete_artifacts_after: timedelta | None = None  # archived and out of production this long: deleted
    keep_previous_production: int = 2
    deletion: str = "Disabled"  # Disabled | DryRun | Enabled (and the operator must allow it)


# ---------------------------------------------------------------------------------------- memory


def record(
    old: Sequence[Mapping[str, Any]], views: Sequence[VersionView], now: datetime
) -> list[dict[str, Any]]:
    """The new ``status.versions``: every old record kept (its digest and firstSeen never change),
    updated from the object of the same digest, plus the versions seen for the first time."""
    stamp = rfc3339(now)
    out: dict[str, dict[str, Any]] = {str(r.get("version")): dict(r) for r in old if r.get("version")}
    live = {v.version: v for v in views if not v.reused}
    for version, v in live.items():
        rec = out.get(version)
        if rec is None:
            rec = {"version": version, "digest": v.digest, "firstSeen": v.created or stamp}
            out[version] = rec
        if rec.get("digest") != v.digest:
            continue  # another object under a recorded number: its reconciler refuses it
        rec["uid"] = v.uid
        rec.pop("removedAt", None)
        if v.stage:
            rec["stage"] = v.stage
        rec["artifact"] = DELETED if v.artifact_deleted or rec.get("artifact") == DELETED else PRESENT
        if v.was_production():
            rec["everProduction"] = True
        if v.signature_digest and not rec.get("signatureDigest"):
            rec["signatureDigest"] = v.signature_digest  # the I/O contract's memory: set once
    for version, rec in out.items():
        if version not in live and "removedAt" not in rec:
            rec["removedAt"] = stamp  # the ModelVersion object is gone; its record stays
    return sorted(out.values(), key=lambda r: order_key(str(r["version"])))


def reused(records: Sequence[Mapping[str, Any]], version: str, digest: str) -> str | None:
    """Why a ModelVersion with this number and digest must be refused (None: it may be served)."""
    for r in records:
        if r.get("version") == version and r.get("digest") and r.get("digest") != digest:
            return (
                f"version {version} was registered on {r.get('firstSeen', '?')} with sha256 "
                f"{str(r['digest'])[:12]}; this object has sha256 {digest[:12]}. A version number always "
                "means the same weights: register a new version"
            )
    return None


def deletion_policy(model: str, allow_past_candidate: bool | None, protect_without_model: bool) -> str | None:
    """Which policy refuses deleting the model's versions past candidate (None: deletion allowed), as
    the deletion-protected annotation's value (the admission policy's message shows it).
    ``allow_past_candidate`` is the Model's spec.deletionPolicy.allowPastCandidate, None without a
    Model (then the operator setting registry.protectVersionsWithoutModel decides)."""
    if allow_past_candidate is None:
        return "the operator setting registry.protectVersionsWithoutModel" if protect_without_model else None
    if allow_past_candidate:
        return None
    return f"Model {model}: spec.deletionPolicy.allowPastCandidate is false"


def deletion_protection(
    stage: str, history: Sequence[Mapping[str, Any]], policy: str | None, history_limit: int = 50
) -> str | None:
    """The deletion-protected annotation a version should carry (None: none). ``policy`` says which
    policy refuses deleting versions past candidate (None: the policy allows it). Past candidate: any
    stage but candidate, except an archived version that never was anywhere but candidate and archived
    (an experiment retention or a user shelved: deleting it loses no decision, and its record stays).
    A history trimmed to ``history_limit`` entries no longer shows where the version began: protected."""
    if policy is None or stage in ("", CANDIDATE):
        return None
    shelved = all(h.get("to") in (CANDIDATE, ARCHIVED) for h in history)
    if stage == ARCHIVED and len(history) < history_limit and shelved:
        return None
    return policy


def order_key(version: str) -> tuple[Any, ...]:
    core, _, pre = version.partition("-")
    nums = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    return (*nums, 0 if pre else 1, pre)


# -------------------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class RetentionPlan:
    archive: tuple[tuple[str, str], ...] = ()  # (ModelVersion name, why)
    delete: tuple[tuple[str, str], ...] = ()  # (ModelVersion name, why): artifacts to delete
    kept: Mapping[str, str] = field(default_factory=dict)  # name -> why retention leaves it alone
    next_due: datetime | None = None  # the earliest time something becomes due (requeue)


def select(views: Sequence[VersionView], rules: Retention, now: datetime) -> RetentionPlan:
    """Which versions to archive and which artifacts to delete at ``now``."""
    kept: dict[str, str] = {}
    previous = sorted(  # most recently out of production first; within the same second, higher versions
        (v for v in views if v.was_production() and v.stage != PRODUCTION and not v.reused),
        key=lambda v: (v.out_of_production_since() or now, order_key(v.version)),
        reverse=True,
    )
    for i, v in enumerate(previous[: max(0, rules.keep_previous_production)]):
        kept[v.name] = f"previous production version #{i + 1} (kept for rollback)"
    for v in views:
        if v.stage == PRODUCTION:
            kept[v.name] = "in production"
        elif v.referenced_by:
            kept[v.name] = f"referenced by ModelEndpoint {', '.join(v.referenced_by)}"
        elif v.reused:
            kept[v.name] = "refused as a reused version number"
    archive: list[tuple[str, str]] = []
    delete: list[tuple[str, str]] = []
    due: list[datetime] = []
    for v in sorted(views, key=lambda v: order_key(v.version)):
        since = v.out_of_production_since()
        if v.name in kept or since is None:
            continue
        out_for = _days(now - since)
        if rules.archive_after is not None and v.stage not in (ARCHIVED, ""):
            if now - since >= rules.archive_after:
                archive.append(
                    (
                        v.name,
                        f"out of production since {rfc3339(since)} ({out_for}), "
                        f"longer than archiveAfter {_days(rules.archive_after)}",
                    )
                )
            else:
                due.append(since + rules.archive_after)
        if rules.delete_artifacts_after is not None and not v.artifact_deleted:
            shared = [
                o.version
                for o in views
                if o.uri == v.uri
                and o.name != v.name
                and not o.artifact_deleted
                and (o.stage != ARCHIVED or o.name in kept)
            ]
            if v.stage != ARCHIVED or shared:
                if shared:
                    kept[v.name] = f"its artifact is also the artifact of {', '.join(sorted(shared))}"
                continue
            if now - since >= rules.delete_artifacts_after:
                delete.append(
                    (
                        v.name,
                        f"archived, out of production since {rfc3339(since)} ({out_for}), "
                        f"longer than deleteArtifactsAfter {_days(rules.delete_artifacts_after)}",
                    )
                )
            else:
                due.append(since + rules.delete_artifacts_after)
    return RetentionPlan(tuple(archive), tuple(delete), kept, min(due) if due else None)


def _days(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s >= 86400:
        return f"{s // 86400}d"
    if s >= 3600:
        return f"{s // 3600}h"
    return f"{s}s"
