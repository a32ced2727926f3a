"""What a ModelVersion reconcile should do, decided purely from facts (gather -> decide -> act).

The handler gathers a ``VersionFacts`` from the watch cache and from its verifier's bookkeeping
(``VerifierFacts``); ``decide`` returns a ``VersionPlan``: the whole new status, the Events, the
finalizer list, whether to start or forget a verification, whether endpoints must re-decide, and
when to look again. The handler executes the plan and decides nothing itself.

Rules (README, "What the operator does with a ModelVersion"): ArtifactVerified in
``domain.version_verify``; the stage, its walk and history in ``domain.version_stage``; here the
status they make up, Ready, InUse, the deletion held while in use and the records of where and how
the version served:

- In-use protection: while an endpoint names this version its status.servedBy says so, written in
  the same status write that makes it verified or by the reconcile the endpoint's change queues,
  before the slot can take traffic. With the chart's in-use admission policy enforced (observed), the
  API server refuses the DELETE of a version whose servedBy names an endpoint; otherwise the in-use
  finalizer is held exactly while an endpoint names it and a deletion waits for it (``finalizers_for``).
- status.servingHistory opens and closes a period per serving variant; status.rollouts keeps what
  endpoints recorded about rollouts of this version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.wire import DELETION_PROTECTED_ANNOTATION, IN_USE_FINALIZER
from modelversioning.domain import conditions as cond
from modelversioning.domain import kstatus, production
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.production import Segment
from modelversioning.domain.quarantine import record as record_quarantine
from modelversioning.domain.registry import deletion_protection
from modelversioning.domain.timestamps import rfc3339
from modelversioning.domain.version_contract import apply_contract
from modelversioning.domain.version_facts import Event, Serving, VersionFacts, VersionPlan, VersionPolicy

# handlers/model.py (RegistryFacts) and handlers/modelendpoint.py (next_promotion) import these from here
from modelversioning.domain.version_facts import RegistryFacts as RegistryFacts
from modelversioning.domain.version_stage import Walk, clip, walk_stage
from modelversioning.domain.version_stage import next_promotion as next_promotion
from modelversioning.domain.version_verify import (
    apply_trust,
    await_record,
    decide_verification,
    registry_verdict,
    trust_verdict,
    verification_events,
)

# -------------------------------------------------------------------------------------- decide


def _reported(
    facts: VersionFacts,
    policy: VersionPolicy,
    artifact: Mapping[str, Any] | None,
    io_signature: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The status fields written only when there is something to report."""
    out: dict[str, Any] = {}
    if policy.region:  # once per status: servedBy, rollouts and servingHistory are all this region's
        out["region"] = policy.region
    if artifact is not None:
        out["artifact"] = dict(artifact)
    if io_signature is not None:
        out["ioSignature"] = io_signature
    if facts.runtime.resolved is not None:  # once resolved, for good (domain.runtime_catalog)
        out["resolvedRuntime"] = dict(facts.runtime.resolved)
    if facts.serving_digest:  # what a ModelApproval must name (kubectl models approve reads it here)
        out["servingDigest"] = facts.serving_digest
    if facts.serving:
        out["servedBy"] = [s.to_status() for s in facts.serving]
    return out


def decide(facts: VersionFacts, policy: VersionPolicy, now: datetime) -> VersionPlan:
    """The one entry point: what to write, post and schedule for this ModelVersion."""
    stamp = rfc3339(now)
    if facts.deleting:
        return decide_deletion(facts, stamp)
    if facts.invalid is not None:
        return decide_invalid(facts, stamp)
    graph = facts.registry.graph or policy.graph
    checked = apply_trust(facts, decide_verification(facts, policy, now), graph.order, now)
    checked, io_signature = apply_contract(facts, checked)  # the I/O contract (domain.version_contract)
    verification = await_record(facts, registry_verdict(facts) or checked)
    create = facts.model if facts.registry.create_model else None  # the record, before anything else
    if verification.quiet:  # the verifier's answer (or the grace's end) requeues it
        return VersionPlan(
            finalizers=protection(facts),
            verify=verification.action,
            requeue_after=verification.requeue_after,
            create_model=create,
        )
    walk = walk_stage(
        facts, verification.cond, graph, stamp, policy.history_limit, trust_verdict(facts, verification, now)
    )
    prev = facts.status
    rt = facts.runtime.cond  # RuntimeResolved (None: an explicit spec.runtime)
    conditions = [ready(facts, verification.cond, walk), verification.cond, walk.cond, in_use(facts.serving)]
    conditions += [rt] if rt is not None else []
    conditions += kstatus.for_version(conditions)
    status: dict[str, Any] = {
        "observedGeneration": facts.generation,
        "conditions": cond.merge_conditions(prev.get("conditions"), conditions, facts.generation, stamp),
        "stage": str(walk.stage),
        "history": list(walk.history),
    }
    status.update(_reported(facts, policy, verification.artifact, io_signature))
    quarantine, quarantine_events = record_quarantine(prev.get("quarantine"), facts.quarantine, stamp)
    if quarantine is not None:
        status["quarantine"] = quarantine
    rollouts = merge_rollouts(prev.get("rollouts"), facts.rollouts)
    if rollouts:
        status["rollouts"] = rollouts
    periods = serving_periods(prev.get("servingHistory"), facts.serving, stamp)
    record = production_record(periods, facts, policy, now)
    if record.periods:
        status["servingHistory"] = record.periods
    protect = deletion_protection(
        walk.stage, walk.history, facts.registry.deletion_policy, policy.history_limit
    )
    prev_verified = cond.get(prev.get("conditions"), "ArtifactVerified")
    was_verified = (prev_verified or {}).get("reason") == R.VERIFIED
    verified_now = verification.cond.reason == R.VERIFIED and not was_verified
    return VersionPlan(
        status=status,
        # a failed attempt's own Event says what the change Event would (once, not twice)
        events=(verification.events or verification_events(prev_verified, verification.cond))
        + runtime_events(prev.get("conditions"), rt)
        + (with_verification(walk.events, verification.cond.message) if verified_now else walk.events)
        + tuple(Event(*e) for e in quarantine_events)
        + record.events,
        finalizers=protection(facts),
        annotations={} if protect == facts.protected else {DELETION_PROTECTED_ANNOTATION: protect},
        verify=verification.action,
        requeue_after=_sooner(verification.requeue_after, record.after),
        measure=record.measure,
        notify_endpoints=(
            prev.get("stage") != walk.stage
            or (prev_verified or {}).get("status") != verification.cond.status
            or facts.revoked is not None  # the endpoints drop it at once, whatever its stage walk does
            or prev.get("quarantine") != status.get("quarantine")  # dropped from (or back on) every route
            or prev.get("resolvedRuntime") != status.get("resolvedRuntime")  # now it can be rendered
        ),
        transitions=walk.transitions,
        create_model=create,
    )


def with_verification(events: tuple[Event, ...], verified: str) -> tuple[Event, ...]:
    """The walk's StageChanged Event also says that the artifact was verified (``verified``: the
    condition's message), when both came in the same write: one Event where there were two."""
    return tuple(
        Event(e.type, e.reason, clip(f"{e.message}; artifact verified: {verified}", 2048))
        if e.reason == R.STAGE_CHANGED
        else e
        for e in events
    )


# ------------------------------------------------------------------- deletion, invalid spec


def decide_deletion(facts: VersionFacts, stamp: str) -> VersionPlan:
    """Hold the deletion while an endpoint names this version; release the finalizer when none does.
    InUse, servedBy and the hold's message name only the endpoints that serve it now."""
    if not facts.serving:
        release = finalizers_for(facts.finalizers, in_use=False)
        return VersionPlan(finalizers=release, status=_released(facts, release, stamp))
    users = ", ".join(sorted({s.endpoint for s in facts.serving}))
    msg = f"deletion is held: still served by ModelEndpoint {users}; remove it from those endpoints first"
    prev = facts.status
    held = [Cond("Deleting", FALSE, R.IN_USE, msg), in_use(facts.serving)]
    status = {
        **prev,
        "observedGeneration": facts.generation,
        "servedBy": [s.to_status() for s in facts.serving],
        "conditions": cond.merge_conditions(prev.get("conditions"), held, facts.generation, stamp),
    }
    seen = cond.get(prev.get("conditions"), "Deleting")
    events = () if seen and seen.get("message") == msg else (Event("Warning", R.DELETION_HELD, msg),)
    raced = IN_USE_FINALIZER not in facts.finalizers  # deleted before the finalizer was added
    return VersionPlan(
        status=status,
        events=events,
        warning=f"{facts.name} is being deleted while in use by {users}" if raced else None,
    )


def _released(facts: VersionFacts, release: tuple[str, ...] | None, stamp: str) -> dict[str, Any] | None:
    """The status of a deleted version no endpoint serves any more, while someone else's finalizer
    keeps it: no servedBy, InUse=False, and no hold naming endpoints that are gone. None when the
    object goes with our finalizer (nothing to write on it) or the status names no endpoint."""
    prev = facts.status
    named = prev.get("servedBy") or any(
        c.get("type") == "Deleting" or (c.get("type") == "InUse" and c.get("status") == TRUE)
        for c in prev.get("conditions") or []
    )
    if not named or not (facts.finalizers if release is None else release):
        return None
    kept = [c for c in prev.get("conditions") or [] if c.get("type") != "Deleting"]
    conditions = cond.merge_conditions(kept, [in_use(())], facts.generation, stamp)
    status = {**{k: v for k, v in prev.items() if k != "servedBy"}, "conditions": conditions}
    return None if status == dict(prev) else status


def decide_invalid(facts: VersionFacts, stamp: str) -> VersionPlan:
    """A spec that does not validate: Ready=False/InvalidSpec, one Warning Event per message."""
    msg = facts.invalid or ""
    prev = facts.status
    invalid = Cond("Ready", FALSE, R.INVALID_SPEC, msg)
    status = {
        **prev,
        "observedGeneration": facts.generation,
        "conditions": cond.merge_conditions(
            prev.get("conditions"), [invalid, *kstatus.for_version([invalid])], facts.generation, stamp
        ),
    }
    seen = cond.get(prev.get("conditions"), "Ready")
    again = seen is not None and seen.get("reason") == R.INVALID_SPEC and seen.get("message") == msg
    return VersionPlan(status=status, events=() if again else (Event("Warning", R.INVALID_SPEC, msg),))


# ------------------------------------------------------------ records of rollouts and serving

MAX_ROLLOUTS = 10


def merge_rollouts(
    old: Any, new: tuple[Mapping[str, Any], ...], limit: int = MAX_ROLLOUTS
) -> list[dict[str, Any]]:
    """status.rollouts: what endpoints recorded about rollouts of this version, newest last, deduplicated
    by (endpoint, at), at most `limit`."""
    out: list[dict[str, Any]] = [dict(r) for r in (old or []) if isinstance(r, Mapping)]
    seen = {(r.get("endpoint"), r.get("at")) for r in out}
    for r in new:
        if (r.get("endpoint"), r.get("at")) not in seen:
            out.append({k: r[k] for k in ("endpoint", "result", "at", "message") if k in r})
            seen.add((r.get("endpoint"), r.get("at")))
    return out[-limit:]


MAX_SERVING_PERIODS = 20
MAX_PERIOD_SLOTS = 8


def serving_periods(
    old: Any, serving: tuple[Serving, ...], stamp: str, limit: int = MAX_SERVING_PERIODS
) -> list[dict[str, Any]]:
    """status.servingHistory: one period per endpoint variant routing traffic to this version (weight
    > 0, or its mirror), ``{endpoint, variant, from, to, slots}`` (no ``to``: still serving; ``slots``:
    the slots that carried it, which the production record's queries select), opened and closed as
    ``serving`` (status.servedBy) changes; oldest first, at most ``limit`` (the oldest closed ones
    go first; an open one is always kept)."""
    out: list[dict[str, Any]] = [dict(p) for p in (old or []) if isinstance(p, Mapping)]
    live = {(s.endpoint, s.variant): s for s in serving if s.weight > 0 or s.mirror}
    open_ = set()
    for p in out:
        key = (p.get("endpoint"), p.get("variant"))
        if p.get("to"):
            continue
        if key in live:
            open_.add(key)
            slot = live[key].slot
            if slot and slot not in (p.get("slots") or []):  # a new slot of the same version
                p["slots"] = [*(p.get("slots") or []), slot][-MAX_PERIOD_SLOTS:]
        else:
            p["to"] = stamp
    for key, s in sorted(live.items()):
        if key not in open_:
            out.append(
                {
                    "endpoint": s.endpoint,
                    "variant": s.variant,
                    "from": stamp,
                    **({"mirror": True} if s.mirror else {}),
                    **({"slots": [s.slot]} if s.slot else {}),
                }
            )
    while len(out) > limit:
        closed = next((i for i, p in enumerate(out) if p.get("to")), None)
        if closed is None:
            break
        del out[closed]
    return out


@dataclass(frozen=True)
class Record:
    periods: list[dict[str, Any]]
    measure: tuple[Segment, ...] = ()
    after: float | None = None
    events: tuple[Event, ...] = ()


def production_record(
    periods: list[dict[str, Any]], facts: VersionFacts, policy: VersionPolicy, now: datetime
) -> Record:
    """The serving periods with the production record (domain.production): the finished segments
    merged, the segments due now to measure, closed periods given up on (a Warning Event each), and
    when to look again. Off (no Prometheus): the periods as they are, nothing to measure."""
    pp = policy.production
    if pp is None or not periods:
        return Record(periods)
    got = facts.production
    merged = production.apply(periods, got.results, (), rfc3339(now), got.source)
    due = production.due(merged, now, pp, got.failed_ago, got.failures)
    if due.give_up:
        merged = production.apply(merged, (), due.give_up, rfc3339(now), got.source)
    events = tuple(
        Event(
            "Warning",
            R.PRODUCTION_RECORD_INCOMPLETE,
            f"serving period {ep}/{variant} from {start}: production summary given up incomplete "
            f"({(p.get('production') or {}).get('incomplete', '')})"[:1024],
        )
        for p in merged
        for (ep, variant, start) in due.give_up
        if (p.get("endpoint"), p.get("variant"), p.get("from")) == (ep, variant, start)
    )
    return Record(merged, due.segments, due.after, events)


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


# ---------------------------------------------------------------------- Ready, InUse, finalizer


def runtime_events(prev_conditions: Any, now: Cond | None) -> tuple[Event, ...]:
    """A Warning Event when RuntimeResolved changes to a failure (or to another one)."""
    if now is None or now.status != FALSE:
        return ()
    seen = cond.get(prev_conditions, now.type)
    if seen is not None and seen.get("reason") == now.reason and seen.get("status") == FALSE:
        return ()
    return (Event("Warning", now.reason, now.message),)


def ready(facts: VersionFacts, verified: Cond, walk: Walk) -> Cond:
    """Ready: the runtime resolved, verified and the requested stage in effect (else the first reason
    why not)."""
    rt = facts.runtime.cond
    if rt is not None and rt.status != TRUE:
        return Cond("Ready", rt.status, rt.reason, rt.message)
    if verified.status != TRUE:
        status = FALSE if verified.status == FALSE else UNKNOWN
        return Cond("Ready", status, verified.reason, verified.message)
    if walk.cond.status == FALSE:
        return Cond("Ready", FALSE, walk.cond.reason, walk.cond.message)
    return Cond("Ready", TRUE, R.READY, f"{facts.model} {facts.version} is verified and {walk.stage}")


def in_use(serving: tuple[Serving, ...]) -> Cond:
    if not serving:
        return Cond("InUse", FALSE, R.NOT_SERVED, "no endpoint serves this version")
    return Cond("InUse", TRUE, R.SERVED, ", ".join(f"{s.endpoint}/{s.variant}={s.weight}" for s in serving))


def protection(facts: VersionFacts) -> tuple[str, ...] | None:
    """The finalizer list of a live version (None: no change)."""
    return finalizers_for(facts.finalizers, in_use=bool(facts.serving), policy=facts.in_use_policy)


def finalizers_for(current: tuple[str, ...], *, in_use: bool, policy: bool = False) -> tuple[str, ...] | None:
    """The finalizer list with the in-use hold (None: no change): added while in use unless the in-use
    admission policy is enforced (``policy``: status.servedBy is the record the API server checks, no
    write per version); released when not in use, also one added before the policy was (it is kept
    while in use: removing it would be a write for nothing)."""
    if in_use and IN_USE_FINALIZER not in current and not policy:
        return (*current, IN_USE_FINALIZER)
    if not in_use and IN_USE_FINALIZER in current:
        return tuple(f for f in current if f != IN_USE_FINALIZER)
    return None
