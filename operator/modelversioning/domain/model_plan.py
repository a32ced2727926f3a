"""What a Model reconcile should do, decided purely from facts (gather -> decide -> act).

The handler gathers a ``ModelFacts`` from the watch cache; ``decide`` returns a ``ModelPlan``: the
archive orders (which version, with which annotation), the artifact deletions (which version, which
URI, refused or not and why), the Events, the status and when to look again. The handler executes the
plan; the outcome of each deletion it ran goes through ``deletion_events`` (its Events) and ``settle``
(the status and requeue once the deletions are done). This is the one path that deletes data.

Rules (README, "Retention"; the choice of versions is ``registry.select``):

- Memory: ``status.versions`` is ``registry.record``; ``Ready`` is ``Recorded``, ``InvalidPolicy``
  when the spec does not validate (nothing is archived or deleted then), ``ArtifactDeleteFailed``
  when a deletion failed (retried after 30 s, as retention selects it again).
- Archive: one order per version (the retention-archive annotation ``{specStage, at, by, reason}``
  and an ``ArchiveDue`` Event); none while an order made for the current ``spec.stage`` stands.
- Deletion: only with ``artifactDeletion: Enabled`` and the operator setting
  ``registry.allowArtifactDeletion``; otherwise a due deletion is refused: ``DryRun`` or the switch
  off report it (``status.pendingDeletions``, one ``ArtifactDeleteDue`` Event per version while it
  stays pending, saying which objects would go: the handler asks the worker, ``dry_run_event``),
  ``Disabled`` says nothing. Whatever ``select`` returns, a version that is kept, referenced by an
  endpoint, not archived, refused as reused, already deleted, or whose URI a live (not archived)
  version also points at is never deleted.
- Ownership (``domain.retention_owner``): a deletion that passes all that is still refused unless
  the URI is strictly under the namespace's storage root, the version was verified, and no other
  registered URI of any namespace overlaps it: ``status.refusedDeletions`` and one
  ``ArtifactDeleteRefused`` Warning per version while the same refusal stands. The worker re-checks
  the digest before it deletes exactly the verified objects; its refusal is reported the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain import conditions as cond
from modelversioning.domain import registry
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.platform_policy import Floors
from modelversioning.domain.registry import ARCHIVED, PRODUCTION, Retention, RetentionPlan, VersionView
from modelversioning.domain.retention_owner import Owned, Verified, ownership

# spec.retention.artifactDeletion
DISABLED, DRY_RUN, ENABLED = "Disabled", "DryRun", "Enabled"
NORMAL = "Normal"  # Event types
WARNING = "Warning"
FAILED_RETRY_SECONDS = 30.0  # a failed deletion is tried again after this long

# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class ModelFacts:
    """Everything a Model reconcile decides from, as observed."""

    name: str
    generation: int
    status: Mapping[str, Any]  # as stored (conditions, versions, production, pendingDeletions)
    views: tuple[VersionView, ...]  # every ModelVersion of the model, with the endpoints naming it
    now: datetime  # retention's clock (the test clock where the operator honours it)
    wall: datetime  # real time: condition timestamps
    rules: Retention | None = None  # spec.retention; None when the spec does not validate
    invalid: str | None = None  # the spec does not validate: why
    allow_artifact_deletion: bool = False  # the operator setting registry.allowArtifactDeletion
    check_seconds: float = 3600.0  # registry.retentionCheckSeconds: the longest requeue
    # ModelVersion name -> the spec.stage the retention-archive order standing on it was made for
    archive_orders: Mapping[str, str] = field(default_factory=dict)
    secret_refs: Mapping[str, str] = field(default_factory=dict)  # name -> spec.artifact.secretRef.name
    namespace: str = ""
    floors: Floors = field(default_factory=Floors)  # the namespace's platform floors (storage roots)
    verified: Mapping[str, Verified] = field(default_factory=dict)  # name -> its verified record
    # name -> the other ModelVersions (any namespace, "ns/name") whose artifact URI overlaps its own
    overlaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    on: str = ""  # the ModelVersion it is posted on ("": the Model)


@dataclass(frozen=True)
class ArchiveOrder:
    name: str  # ModelVersion
    annotation: str  # the retention-archive annotation's value (JSON)
    event: Event


@dataclass(frozen=True)
class ArtifactDeletion:
    """A deletion retention found due. Executed only when ``refused`` is None."""

    name: str  # ModelVersion
    version: str
    uri: str
    why: str
    annotation: str  # the artifact-deleted annotation's value (JSON), written once the delete succeeded
    secret_ref: str | None = None
    refused: str | None = None  # why it is not deleted now
    pending: bool = False  # refused but reported (dry run): status.pendingDeletions
    due_event: Event | None = None  # the dry run's ArtifactDeleteDue Event (once per pending version)
    owned: Owned | None = None  # what the version provably owns (None: refused before that was known)
    refused_reason: str = ""  # ArtifactDeleteRefused: refused for ownership (status.refusedDeletions)
    probe: bool = False  # dry run: ask the worker which objects would go (``dry_run_event``)


@dataclass(frozen=True)
class Deleted:
    """The outcome of executing one ArtifactDeletion."""

    ok: bool
    message: str  # safe to show
    refused: bool = False  # the worker refused (digest changed, a limit, not owned): nothing deleted
    objects: tuple[str, ...] = ()  # the first objects deleted (or, in a dry run, that would be)
    count: int = 0  # how many objects in all


@dataclass(frozen=True)
class ModelPlan:
    archive: tuple[ArchiveOrder, ...] = ()
    deletions: tuple[ArtifactDeletion, ...] = ()
    kept: Mapping[str, str] = field(default_factory=dict)  # name -> why retention leaves it alone
    next_due: datetime | None = None  # the earliest time something else becomes due
    status: dict[str, Any] = field(default_factory=dict)
    notify_versions: bool = False  # the versions' gates look at production / the policy again
    requeue: float | None = None  # seconds
    requeue_why: str = ""

    @property
    def to_delete(self) -> tuple[ArtifactDeletion, ...]:
        return tuple(d for d in self.deletions if d.refused is None)

    @property
    def events(self) -> tuple[Event, ...]:
        """The Events known before anything runs, in the order they are posted (a deletion's own
        Events depend on its outcome: ``deletion_events``)."""
        due = tuple(d.due_event for d in self.deletions if d.due_event is not None)
        return tuple(o.event for o in self.archive) + due


# -------------------------------------------------------------------------------------- decide


def decide(f: ModelFacts) -> ModelPlan:
    """What to do now; its status and requeue hold as long as no deletion runs (then: ``settle``)."""
    if f.rules is None:
        return settle(f, ModelPlan(), {})
    chosen = registry.select(f.views, f.rules, f.now)
    plan = ModelPlan(
        archive=_archive_orders(f, chosen),
        deletions=_deletions(f, f.rules.deletion, chosen),
        kept=chosen.kept,
        next_due=chosen.next_due,
    )
    return settle(f, plan, {})


def _actor(f: ModelFacts) -> str:
    return f"{R.RETENTION} (Model {f.name})"


def _archive_orders(f: ModelFacts, chosen: RetentionPlan) -> tuple[ArchiveOrder, ...]:
    views = {v.name: v for v in f.views}
    out = []
    for name, why in chosen.archive:
        stage = views[name].spec_stage
        if f.archive_orders.get(name) == stage:
            continue  # ordered already (the cache holds what we wrote): its reconciler walks it
        value = {
            "specStage": stage,
            "at": registry.rfc3339(f.now),
            "by": _actor(f),
            "reason": f"retention: {why}",
        }
        event = Event(NORMAL, R.ARCHIVE_DUE, f"archiving {name}: {why}")
        out.append(ArchiveOrder(name, json.dumps(value, sort_keys=True), event))
    return tuple(out)


def mode_refusal(mode: str, allow_artifact_deletion: bool) -> str | None:
    """Why no artifact of the model may be deleted now (None: due deletions run)."""
    if mode == DISABLED:
        return "spec.retention.artifactDeletion is Disabled"
    if mode != ENABLED:
        return f"spec.retention.artifactDeletion is {mode}"
    if not allow_artifact_deletion:
        return "the operator setting registry.allowArtifactDeletion is off"
    return None


def unsafe(v: VersionView, views: Sequence[VersionView], kept: Mapping[str, str]) -> str | None:
    """Why this version's artifact must not be deleted whatever retention selected (None: it may)."""
    if v.name in kept:
        return f"kept: {kept[v.name]}"
    if v.referenced_by:
        return f"referenced by ModelEndpoint {', '.join(v.referenced_by)}"
    if v.stage != ARCHIVED:
        return f"at stage {v.stage or '(none yet)'}, not archived"
    if v.reused:
        return "refused as a reused version number"
    if v.artifact_deleted:
        return "its artifact is already deleted"
    live = sorted(
        o.version
        for o in views
        if o.uri == v.uri and o.name != v.name and o.stage != ARCHIVED and not o.artifact_deleted
    )
    if live:
        return f"its artifact is also the artifact of {', '.join(live)}"
    return None


def _deletions(f: ModelFacts, mode: str, chosen: RetentionPlan) -> tuple[ArtifactDeletion, ...]:
    views = {v.name: v for v in f.views}
    refused = mode_refusal(mode, f.allow_artifact_deletion)
    before = set(f.status.get("pendingDeletions") or [])
    said = refusals_of(f.status)
    out = []
    for name, why in chosen.delete:
        v = views[name]
        value = {"at": registry.rfc3339(f.now), "by": _actor(f), "reason": why, "uri": v.uri}
        d = ArtifactDeletion(
            name, v.version, v.uri, why, json.dumps(value, sort_keys=True), f.secret_refs.get(name)
        )
        bad = unsafe(v, f.views, chosen.kept)
        if bad is not None or mode == DISABLED:
            out.append(replace(d, refused=bad or refused))
            continue
        own = ownership(
            v.uri, v.digest, f.verified.get(name), f.floors, f.overlaps.get(name, ()), f.namespace
        )
        if isinstance(own, str):
            d = replace(d, refused=own, refused_reason=R.ARTIFACT_DELETE_REFUSED)
            if said.get(v.version) != own:  # said once while the same refusal stands
                msg = f"retention will not delete the artifact of {name}: {own}"
                d = replace(d, due_event=Event(WARNING, R.ARTIFACT_DELETE_REFUSED, msg, on=name))
            out.append(d)
            continue
        d = replace(d, owned=own)
        if refused is not None:
            d = replace(d, refused=refused, pending=True)
            if v.version not in before:  # reported once while it stays pending
                d = replace(d, due_event=dry_run_event(d, None), probe=True)
        out.append(d)
    return tuple(out)


def refusals_of(status: Mapping[str, Any]) -> dict[str, str]:
    """status.refusedDeletions as version -> message."""
    return {str(r.get("version")): str(r.get("message")) for r in status.get("refusedDeletions") or []}


# ----------------------------------------------------------------------- after the deletions ran

SHOWN_OBJECTS = 10  # objects named in an Event; the rest are counted


def _objects(done: Deleted) -> str:
    if not done.count:
        return "no objects"
    more = f" and {done.count - len(done.objects)} more" if done.count > len(done.objects) else ""
    return f"{done.count} objects: {', '.join(done.objects[:SHOWN_OBJECTS])}{more}"


def dry_run_event(d: ArtifactDeletion, probe: Deleted | None) -> Event:
    """The dry run's ArtifactDeleteDue Event: which objects under which root would go (``probe``: the
    worker's answer; None: not asked), or that the worker would refuse and why."""
    mode = "" if d.refused is None or "artifactDeletion is DryRun" in d.refused else f" ({d.refused})"
    root = d.owned.root if d.owned is not None else "?"
    head = f"dry run{mode}: would delete the artifact of {d.name}"
    if probe is None:
        return Event(NORMAL, R.ARTIFACT_DELETE_DUE, f"{head} under {root}: {d.why}")
    if not probe.ok:
        what = "refuse" if probe.refused else "fail"
        msg = f"dry run{mode}: would {what} to delete the artifact of {d.name}: {probe.message}"
        return Event(WARNING if probe.refused else NORMAL, R.ARTIFACT_DELETE_DUE, msg)
    return Event(NORMAL, R.ARTIFACT_DELETE_DUE, f"{head} under {root}, {_objects(probe)}: {d.why}")


def deletion_events(
    d: ArtifactDeletion, done: Deleted, said: Mapping[str, str] | None = None
) -> tuple[Event, ...]:
    """The Events of an executed deletion: on the Model and the version, or a Warning on the version
    (a refusal once while the same one stands: ``said`` is ``refusals_of`` the old status)."""
    if done.refused:
        if (said or {}).get(d.version) == done.message:
            return ()
        return (Event(WARNING, R.ARTIFACT_DELETE_REFUSED, done.message, on=d.name),)
    if not done.ok:
        return (Event(WARNING, R.ARTIFACT_DELETE_FAILED, done.message, on=d.name),)
    root = d.owned.root if d.owned is not None else "?"
    msg = (
        f"deleted the artifact of {d.name} ({done.message}; under {root}, {_objects(done)}): {d.why}; "
        "the ModelVersion and its record are kept"
    )
    return (Event(NORMAL, R.ARTIFACT_DELETED, msg), Event(NORMAL, R.ARTIFACT_DELETED, msg, on=d.name))


def settle(f: ModelFacts, plan: ModelPlan, outcomes: Mapping[str, Deleted]) -> ModelPlan:
    """The plan's status, requeue and notification once the deletions in ``outcomes`` ran
    (ModelVersion name -> outcome; a deletion without an outcome did not run)."""
    records = registry.record(f.status.get("versions") or [], f.views, f.now)
    problems = []
    refusals = {d.version: d.refused or "" for d in plan.deletions if d.refused_reason}
    for d in plan.to_delete:
        done = outcomes.get(d.name)
        if done is None:
            continue
        if done.refused:
            refusals[d.version] = done.message
            continue
        if not done.ok:
            problems.append(f"{d.version}: {done.message}")
            continue
        for r in records:
            if r.get("version") == d.version:
                r["artifact"] = registry.DELETED
    production = sorted((v.version for v in f.views if v.stage == PRODUCTION), key=registry.order_key)
    ready = (
        Cond("Ready", FALSE, R.INVALID_POLICY, f.invalid)
        if f.invalid
        else Cond("Ready", FALSE, R.ARTIFACT_DELETE_FAILED, "; ".join(problems))
        if problems
        else Cond("Ready", TRUE, R.MODEL_RECORDED, f"{len(records)} versions recorded")
    )
    stamp = registry.rfc3339(f.wall)
    status: dict[str, Any] = {
        "observedGeneration": f.generation,
        "conditions": cond.merge_conditions(f.status.get("conditions"), [ready], f.generation, stamp),
        "versions": records,
        "production": production,
    }
    pending = [d.version for d in plan.deletions if d.pending]
    if pending:
        status["pendingDeletions"] = pending
    if refusals:
        status["refusedDeletions"] = [
            {"version": k, "reason": R.ARTIFACT_DELETE_REFUSED, "message": m[:1024]}
            for k, m in sorted(refusals.items(), key=lambda kv: registry.order_key(kv[0]))
        ]
    notify = (
        f.status.get("production", []) != production or f.status.get("observedGeneration") != f.generation
    )
    requeue, why = _requeue(f, plan.next_due, bool(problems))
    return replace(plan, status=status, notify_versions=notify, requeue=requeue, requeue_why=why)


def _requeue(f: ModelFacts, next_due: datetime | None, failed: bool) -> tuple[float | None, str]:
    if failed:
        return FAILED_RETRY_SECONDS, "artifact deletion failed"
    if next_due is None:
        return None, ""
    return min(f.check_seconds, max(1.0, (next_due - f.now).total_seconds())), ""
