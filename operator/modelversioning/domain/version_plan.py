"""What a ModelVersion reconcile should do, decided purely from facts (gather -> decide -> act).

The handler gathers a ``VersionFacts`` from the watch cache and from its verifier's bookkeeping
(``VerifierFacts``); ``decide`` returns a ``VersionPlan``: the whole new status, the Events, the
finalizer list, whether to start or forget a verification, whether endpoints must re-decide, and
when to look again. The handler executes the plan and decides nothing itself.

Rules (README, "What the operator does with a ModelVersion"):

- ArtifactVerified: a verified record stays valid while the digest matches (and, with
  ``recheck_seconds``, until it is that old); ``DigestMismatch`` is permanent for the generation;
  other permanent failures (``AccessDenied``, ``URIRefused``) are held for the generation, so a
  status write never triggers another fetch; transient ones (``NotFound``, ``FetchFailed``) are
  retried with exponential backoff, and the message says when.
- The stage walks one allowed hop at a time toward ``spec.stage`` (shortest path in the graph),
  through the gates of ``domain.stages.decide_transition``; every hop is a history entry with the
  actor and the reason. A blocked hop keeps the stage: ``StageTransition=False`` plus one Warning
  Event per distinct reason, or ``Unknown`` without an Event while the artifact is still verifying.
- The in-use finalizer is held exactly while an endpoint names this version; a deletion waits for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.wire import DELETION_PROTECTED_ANNOTATION, IN_USE_FINALIZER
from modelversioning.domain import conditions as cond
from modelversioning.domain import kstatus
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.gates import CandidateFacts, TransitionRule
from modelversioning.domain.gates import check as check_model_gates
from modelversioning.domain.registry import deletion_protection
from modelversioning.domain.stages import GateFacts, Stage, StageGraph, decide_transition, next_hop

# status.history keeps the latest HISTORY_LIMIT entries; an older entry leaves as an Event (reason
# HistoryTrimmed, with the whole entry), so the audit trail continues wherever Events are shipped.
HISTORY_LIMIT = 50
# The CRD's limits of a history entry (api/modelversion.py HistoryEntry): a longer value would make
# every later status write of the object fail, so it is cut to fit.
HISTORY_REASON_MAX = 1024
HISTORY_ACTOR_MAX = 512

# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class VerifyResult:
    """A finished fetch-and-hash of the artifact."""

    reason: str  # R.VERIFIED or why not
    message: str
    transient: bool  # retrying later may help
    actual: str | None = None  # the digest read
    size_bytes: int | None = None
    files: int | None = None  # a directory/prefix: how many files the manifest covers

    @property
    def ok(self) -> bool:
        return self.reason == R.VERIFIED


@dataclass(frozen=True)
class VerifierFacts:
    """The verifier's bookkeeping for this object (same UID), read at gather time."""

    running: bool = False
    result: VerifyResult | None = None  # the last finished attempt, if not forgotten
    result_generation: int = 0  # the generation that attempt was started for
    failures: int = 0  # consecutive transient failures
    age: float = 0.0  # seconds since the result came in
    running_for: float = 0.0  # seconds since the running attempt started


@dataclass(frozen=True)
class Serving:
    """One endpoint variant that names this version (status.servedBy)."""

    endpoint: str
    variant: str
    weight: int
    mirror: bool = False

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": self.endpoint, "variant": self.variant, "weight": self.weight}
        if self.mirror:
            out["mirror"] = True
        return out


@dataclass(frozen=True)
class RegistryFacts:
    """What the version's Model says (domain.registry, domain.gates): its graph and gates, and the
    registry's verdicts. No Model: the operator's graph and gates, no verdicts."""

    graph: StageGraph | None = None  # the Model's stage graph (None: the operator's)
    rules: tuple[TransitionRule, ...] = ()
    candidate: CandidateFacts | None = None  # what the Model's gates look at
    reused: str | None = None  # this version number was registered with another digest: why (permanent)
    artifact_deleted: str | None = None  # retention deleted the artifact from storage: when, by whom
    # the policy that refuses deleting this version once past candidate (the deletion-protected
    # annotation's value); None: its policy allows the deletion
    deletion_policy: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """Everything a decision about one ModelVersion needs, as observed."""

    name: str
    generation: int
    status: Mapping[str, Any]  # status as stored (conditions, stage, history, artifact)
    invalid: str | None = None  # the spec does not validate: why (nothing else is decided)
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    model: str = ""
    version: str = ""
    requested: str = Stage.CANDIDATE  # spec.stage (a built-in stage or one of the Model's)
    digest: str = ""  # spec.artifact.sha256
    shown_uri: str = ""  # spec.artifact.uri, redacted for messages
    missing_lineage: tuple[str, ...] = ()  # lineage fields production needs and the spec lacks
    actor: str = "unknown"  # who requested spec.stage
    why: str = ""  # the reason given for the request
    serving: tuple[Serving, ...] = ()
    verifier: VerifierFacts = field(default_factory=VerifierFacts)
    rollouts: tuple[Mapping[str, Any], ...] = ()  # outcomes endpoints recorded (annotation), newest last
    protected: str | None = None  # the deletion-protected annotation as stored
    registry: RegistryFacts = field(default_factory=RegistryFacts)


@dataclass(frozen=True)
class VersionPolicy:
    """The operator's settings the decisions use."""

    graph: StageGraph = field(default_factory=StageGraph)
    recheck_seconds: float = 0.0  # 0: a verified digest is never re-fetched
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    history_limit: int = HISTORY_LIMIT


# ---------------------------------------------------------------------------------------- plan


class VerifyAction(StrEnum):
    NONE = "none"  # leave the verifier alone (running, held, or not needed)
    START = "start"  # start a fetch-and-hash now
    FORGET = "forget"  # drop the bookkeeping (the answer is in the status now)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A stage hop made or refused (for the transitions counter)."""

    src: str
    dst: str
    outcome: str  # made | blocked


@dataclass(frozen=True)
class VersionPlan:
    status: dict[str, Any] | None = None  # the whole new status; None: leave it alone
    events: tuple[Event, ...] = ()
    finalizers: tuple[str, ...] | None = None  # the new list; None: unchanged
    annotations: Mapping[str, str | None] = field(default_factory=dict)  # to change (None: remove)
    verify: VerifyAction = VerifyAction.NONE
    requeue_after: float | None = None  # look again (a transient failure's backoff)
    notify_endpoints: bool = False  # stage or verification changed: endpoints re-decide eligibility
    transitions: tuple[Transition, ...] = ()
    warning: str | None = None  # worth a log line, nothing to write


# -------------------------------------------------------------------------------------- decide


def decide(facts: VersionFacts, policy: VersionPolicy, now: datetime) -> VersionPlan:
    """The one entry point: what to write, post and schedule for this ModelVersion."""
    stamp = _rfc3339(now)
    if facts.deleting:
        return decide_deletion(facts, stamp)
    if facts.invalid is not None:
        return decide_invalid(facts, stamp)
    verification = registry_verdict(facts) or decide_verification(facts, policy, now)
    if verification.quiet:  # the verifier's answer (or the grace's end) requeues it
        return VersionPlan(
            finalizers=finalizers_for(facts.finalizers, in_use=bool(facts.serving)),
            verify=verification.action,
            requeue_after=verification.requeue_after,
        )
    graph = facts.registry.graph or policy.graph
    walk = walk_stage(facts, verification.cond, graph, stamp, policy.history_limit)
    prev = facts.status
    conditions = [ready(facts, verification.cond, walk), verification.cond, walk.cond, in_use(facts.serving)]
    conditions += kstatus.for_version(conditions)
    status: dict[str, Any] = {
        "observedGeneration": facts.generation,
        "conditions": cond.merge_conditions(prev.get("conditions"), conditions, facts.generation, stamp),
        "stage": str(walk.stage),
        "history": list(walk.history),
    }
    if verification.artifact is not None:
        status["artifact"] = dict(verification.artifact)
    if facts.serving:
        status["servedBy"] = [s.to_status() for s in facts.serving]
    rollouts = merge_rollouts(prev.get("rollouts"), facts.rollouts)
    if rollouts:
        status["rollouts"] = rollouts
    periods = serving_periods(prev.get("servingHistory"), facts.serving, stamp)
    if periods:
        status["servingHistory"] = periods
    protect = deletion_protection(
        walk.stage, walk.history, facts.registry.deletion_policy, policy.history_limit
    )
    prev_verified = cond.get(prev.get("conditions"), "ArtifactVerified")
    return VersionPlan(
        status=status,
        events=verification_events(prev_verified, verification.cond) + walk.events,
        finalizers=finalizers_for(facts.finalizers, in_use=bool(facts.serving)),
        annotations={} if protect == facts.protected else {DELETION_PROTECTED_ANNOTATION: protect},
        verify=verification.action,
        requeue_after=verification.requeue_after,
        notify_endpoints=(
            prev.get("stage") != walk.stage or (prev_verified or {}).get("status") != verification.cond.status
        ),
        transitions=walk.transitions,
    )


# ------------------------------------------------------------------ rollouts: the registry follows

MAX_ROLLOUTS = 10
PROMOTION_ORDER = (Stage.CANDIDATE, Stage.STAGING, Stage.PRODUCTION)


@dataclass(frozen=True)
class Grant:
    """An endpoint's successful rollout asks for this version to be promoted (annotation, set by the
    operator, never by a user: an admission policy keeps it that way)."""

    to: Stage
    from_: Stage
    spec_stage: Stage  # spec.stage when the grant was made: a later edit of spec.stage overrides it
    by: str
    reason: str


def next_promotion(stage: Stage) -> Stage | None:
    """The stage a successful rollout promotes to: one step up candidate -> staging -> production."""
    if stage not in PROMOTION_ORDER or stage == PROMOTION_ORDER[-1]:
        return None
    return PROMOTION_ORDER[PROMOTION_ORDER.index(stage) + 1]


def effective_request(
    spec_stage: str, actor: str, why: str, grant: Grant | None, graph: StageGraph
) -> tuple[str, str, str]:
    """(stage to walk toward, actor, reason): spec.stage, unless a rollout's grant made while spec.stage
    was what it is now asks for one allowed step up from where the grant was made."""
    if (
        grant is None
        or grant.spec_stage != spec_stage
        or spec_stage not in PROMOTION_ORDER  # e.g. archived: the user's word wins
        or next_promotion(grant.from_) != grant.to
        or not graph.allows(grant.from_, grant.to)
        or PROMOTION_ORDER.index(grant.to) <= PROMOTION_ORDER.index(Stage(spec_stage))
    ):
        return spec_stage, actor, why
    return grant.to, grant.by, grant.reason


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


def serving_periods(
    old: Any, serving: tuple[Serving, ...], stamp: str, limit: int = MAX_SERVING_PERIODS
) -> list[dict[str, Any]]:
    """status.servingHistory: one period per endpoint variant routing traffic to this version (weight
    > 0, or its mirror), ``{endpoint, variant, from, to}`` (no ``to``: still serving), opened and closed
    as ``serving`` (status.servedBy) changes; oldest first, at most ``limit`` (the oldest closed ones
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
                }
            )
    while len(out) > limit:
        closed = next((i for i, p in enumerate(out) if p.get("to")), None)
        if closed is None:
            break
        del out[closed]
    return out


def decide_deletion(facts: VersionFacts, stamp: str) -> VersionPlan:
    """Hold the deletion while an endpoint names this version; release the finalizer when none does."""
    if not facts.serving:
        return VersionPlan(finalizers=finalizers_for(facts.finalizers, in_use=False))
    users = ", ".join(sorted({s.endpoint for s in facts.serving}))
    msg = f"deletion is held: still served by ModelEndpoint {users}; remove it from those endpoints first"
    prev = facts.status
    status = {
        **prev,
        "observedGeneration": facts.generation,
        "servedBy": [s.to_status() for s in facts.serving],
        "conditions": cond.merge_conditions(
            prev.get("conditions"), [Cond("Deleting", FALSE, R.IN_USE, msg)], facts.generation, stamp
        ),
    }
    seen = cond.get(prev.get("conditions"), "Deleting")
    events = () if seen and seen.get("message") == msg else (Event("Warning", R.DELETION_HELD, msg),)
    raced = IN_USE_FINALIZER not in facts.finalizers  # deleted before the finalizer was added
    return VersionPlan(
        status=status,
        events=events,
        warning=f"{facts.name} is being deleted while in use by {users}" if raced else None,
    )


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


# ------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class Verification:
    cond: Cond  # ArtifactVerified
    artifact: Mapping[str, Any] | None = None  # status.artifact (None: no verified record)
    action: VerifyAction = VerifyAction.NONE
    requeue_after: float | None = None
    quiet: bool = False  # a first verification still in its grace period: write no status yet


# A new version's first verification writes no "Verifying" status for this long: most artifacts that
# are cached, small or identical verify within it, and the version gets one status write (Verified and
# its stage) instead of two. A slower one shows Verifying once the grace is over.
FIRST_VERIFICATION_GRACE = 2.0


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
        and prev.get("status") == TRUE
        and prev_art
        and prev_art.get("digest") == facts.digest
        and not _stale(prev_art.get("verifiedAt", ""), policy, now)
    ):
        return Verification(Cond("ArtifactVerified", TRUE, R.VERIFIED, prev.get("message", "")), prev_art)
    if (
        prev is not None
        and prev.get("reason") == R.DIGEST_MISMATCH
        and prev.get("observedGeneration") == facts.generation
    ):
        held = Cond("ArtifactVerified", FALSE, R.DIGEST_MISMATCH, prev.get("message", ""))
        return Verification(held, action=VerifyAction.FORGET)
    verifying = Verification(
        Cond("ArtifactVerified", UNKNOWN, R.VERIFYING, f"fetching and hashing {facts.shown_uri}"),
        prev_art,  # a recheck keeps the old record meanwhile
    )
    v = facts.verifier
    first = prev is None and not facts.status.get("stage")  # never had a status of its own
    if v.running:
        if first and v.running_for < FIRST_VERIFICATION_GRACE:
            left = FIRST_VERIFICATION_GRACE - v.running_for
            return Verification(verifying.cond, prev_art, quiet=True, requeue_after=left)
        return verifying
    res = v.result
    if res is not None and res.ok:
        art: dict[str, Any] = {"digest": res.actual or facts.digest, "verifiedAt": _rfc3339(now)}
        if res.size_bytes is not None:
            art["sizeBytes"] = res.size_bytes
        if res.files is not None:
            art["files"] = res.files
        return Verification(Cond("ArtifactVerified", TRUE, R.VERIFIED, res.message), art, VerifyAction.FORGET)
    if res is not None and not res.transient and v.result_generation == facts.generation:
        # permanent for this generation: the verifier keeps the answer, so it is not fetched again
        return Verification(Cond("ArtifactVerified", FALSE, res.reason, res.message))
    if res is not None and res.transient:
        wait = retry_delay(v.failures, policy) - v.age
        if wait > 0:
            msg = f"{res.message}; retrying in {wait:.0f}s (attempt {v.failures})"
            return Verification(Cond("ArtifactVerified", FALSE, res.reason, msg), requeue_after=wait + 0.1)
    if first and res is None:
        return Verification(
            verifying.cond, prev_art, VerifyAction.START, requeue_after=FIRST_VERIFICATION_GRACE, quiet=True
        )
    return Verification(verifying.cond, verifying.artifact, VerifyAction.START)


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
    """An Event when ArtifactVerified's reason changes: Normal when verified, Warning on a failure."""
    if prev is not None and prev.get("reason") == now.reason:
        return ()
    if now.reason == R.VERIFIED:
        return (Event("Normal", R.ARTIFACT_VERIFIED, now.message),)
    if now.reason == R.ARTIFACT_DELETED:  # retention did it on purpose (the Model posted the Event)
        return ()
    if now.status == FALSE:
        return (Event("Warning", now.reason, now.message),)
    return ()


# ---------------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class Walk:
    stage: str
    history: tuple[Mapping[str, Any], ...]
    cond: Cond  # StageTransition
    events: tuple[Event, ...] = ()
    transitions: tuple[Transition, ...] = ()


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (marked with "...")."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def walk_stage(
    facts: VersionFacts, verified: Cond, graph: StageGraph, stamp: str, history_limit: int = HISTORY_LIMIT
) -> Walk:
    """Move toward spec.stage one allowed, gated hop at a time; record each hop (the latest
    ``history_limit`` entries stay in status, older ones leave as Events)."""
    prev = facts.status
    history: list[Mapping[str, Any]] = list(prev.get("history") or [])
    events: list[Event] = []
    transitions: list[Transition] = []
    actor, why = clip(facts.actor, HISTORY_ACTOR_MAX), clip(facts.why, HISTORY_REASON_MAX)
    current: str
    if prev.get("stage"):
        current = str(prev["stage"])
    else:
        current = Stage.CANDIDATE
        history.append({"to": current.value, "at": stamp, "reason": R.REGISTERED, "actor": actor})
    requested = facts.requested
    gates = GateFacts(verified.status == TRUE, not facts.missing_lineage, facts.missing_lineage)
    stage_cond = _in_effect(current)
    for _ in range(len(Stage)):  # a shortest path never repeats a stage
        if current == requested:
            break
        step = next_hop(graph, current, requested)
        decision = decide_transition(current, step or requested, gates, graph)
        approvers = _approvers(facts.registry, current, step or requested)
        if decision.allowed and facts.registry.candidate is not None:
            decision = (
                check_model_gates(current, step or requested, facts.registry.rules, facts.registry.candidate)
                or decision
            )
        if not decision.allowed or step is None:
            waiting = verified.reason == R.VERIFYING and decision.reason == R.ARTIFACT_NOT_VERIFIED
            stage_cond = Cond(
                "StageTransition",
                UNKNOWN if waiting else FALSE,
                decision.reason,
                f"requested {requested}, staying in {current}: {decision.message}",
            )
            seen = cond.get(prev.get("conditions"), "StageTransition")
            new_block = seen is None or seen.get("reason") != decision.reason or seen.get("status") != FALSE
            if not waiting and new_block:
                events.append(Event("Warning", R.STAGE_TRANSITION_BLOCKED, stage_cond.message))
                transitions.append(Transition(current, requested, "blocked"))
            break
        hop: dict[str, Any] = {"from": current, "to": step, "at": stamp, "reason": why, "actor": actor}
        if approvers:
            hop["approvedBy"] = list(approvers)
        history.append(hop)
        transitions.append(Transition(current, step, "made"))
        current = step
        stage_cond = _in_effect(current)
    made = [t for t in transitions if t.outcome == "made"]
    if made:  # one Event per walk (the history has each hop): fewer writes for a fleet's first walk
        path = " -> ".join([made[0].src, *(t.dst for t in made)])
        events.insert(0, Event("Normal", R.STAGE_CHANGED, clip(f"{path} by {actor}: {why}", 2048)))
    if len(history) > history_limit:
        for old in history[: len(history) - history_limit]:
            events.append(Event("Normal", R.HISTORY_TRIMMED, _trimmed(old, history_limit)))
        history = history[len(history) - history_limit :]
    return Walk(current, tuple(history), stage_cond, tuple(events), tuple(transitions))


def _approvers(reg: RegistryFacts, src: str, dst: str) -> tuple[str, ...]:
    """The approvals a hop needed, to record in its history entry."""
    if reg.candidate is None or not any(r.approvals and r.applies(src, dst) for r in reg.rules):
        return ()
    return tuple(reg.candidate.approvals.get(dst, ()))


def _trimmed(entry: Mapping[str, Any], limit: int) -> str:
    hop = f"{entry.get('from')} -> {entry.get('to')}" if entry.get("from") else f"-> {entry.get('to')}"
    return clip(
        f"status.history keeps the latest {limit} entries; this one moved here: {hop} at {entry.get('at')} "
        f"by {entry.get('actor')}: {entry.get('reason')}",
        2048,
    )


def _in_effect(stage: str) -> Cond:
    return Cond("StageTransition", TRUE, R.IN_EFFECT, f"stage {stage} is in effect")


# --------------------------------------------------------------------------- the other parts


def ready(facts: VersionFacts, verified: Cond, walk: Walk) -> Cond:
    """Ready: verified and the requested stage in effect (else the first reason why not)."""
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


def finalizers_for(current: tuple[str, ...], *, in_use: bool) -> tuple[str, ...] | None:
    """The finalizer list with the in-use hold exactly when in use (None: no change)."""
    if in_use and IN_USE_FINALIZER not in current:
        return (*current, IN_USE_FINALIZER)
    if not in_use and IN_USE_FINALIZER in current:
        return tuple(f for f in current if f != IN_USE_FINALIZER)
    return None


def _rfc3339(now: datetime) -> str:
    return now.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _stale(ts: str, policy: VersionPolicy, now: datetime) -> bool:
    """Is a verified record due for a re-fetch (only with recheck_seconds set)?"""
    if not policy.recheck_seconds:
        return False
    try:
        t = datetime.fromisoformat(ts)
    except ValueError:
        return True
    return (now - t).total_seconds() > policy.recheck_seconds
