"""The stage of a ModelVersion, decided purely: which stage is requested (spec.stage, or a successful
rollout's promotion grant), the walk toward it, and the history that records every hop.

- The stage walks one allowed hop at a time toward the requested stage (shortest path in the graph),
  through the gates of ``domain.stages.decide_transition``, the platform's pinned images
  (``domain.approvals.pin_required``) and the Model's own (``domain.gates``);
  every hop is a history entry with the actor and the reason.
- A quarantined version (``domain.quarantine``) makes no hop but a loss of authority, whoever asks.
- A blocked hop keeps the stage: ``StageTransition=False`` plus one Warning Event per distinct
  reason, or ``Unknown`` without an Event while the artifact is still verifying.
- status.history keeps the latest ``history_limit`` entries; older ones leave as Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain import conditions as cond
from modelversioning.domain.approvals import image_pinned, pin_required
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.gates import check as check_model_gates
from modelversioning.domain.quarantine import promotion_guard
from modelversioning.domain.revocation import archive_guard
from modelversioning.domain.stages import (
    UNGATED,
    Decision,
    GateFacts,
    Stage,
    StageGraph,
    decide_transition,
    next_hop,
)
from modelversioning.domain.trust import Verdict, required_for
from modelversioning.domain.version_facts import HISTORY_LIMIT, Event, RegistryFacts, Transition, VersionFacts

# The CRD's limits of a history entry (api/modelversion_status.py HistoryEntry): a longer value would make
# every later status write of the object fail, so it is cut to fit.
HISTORY_REASON_MAX = 1024
HISTORY_ACTOR_MAX = 512

# ------------------------------------------------------------------ rollouts: the registry follows

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


# ----------------------------------------------------------------------------------- the walk


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
    facts: VersionFacts,
    verified: Cond,
    graph: StageGraph,
    stamp: str,
    history_limit: int = HISTORY_LIMIT,
    signature: Verdict | None = None,
) -> Walk:
    """Move toward spec.stage one allowed, gated hop at a time; record each hop (the latest
    ``history_limit`` entries stay in status, older ones leave as Events). ``signature``: the trust
    policy's verdict on the version's signature (None: no policy applies)."""
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
        history.append({"to": Stage.CANDIDATE.value, "at": stamp, "reason": R.REGISTERED, "actor": actor})
    requested = facts.requested
    gates = GateFacts(verified.status == TRUE, not facts.missing_lineage, facts.missing_lineage)
    stage_cond = _in_effect(current)
    for _ in range(len(Stage)):  # a shortest path never repeats a stage
        if current == requested:
            break
        step = next_hop(graph, current, requested)
        decision = (
            _archive_guard(facts, step or requested)
            or promotion_guard(current, step or requested, facts.quarantine.text, graph.order)
            or _gated(facts, current, step or requested, gates, graph, signature)
        )
        if not decision.allowed or step is None:
            stage_cond, new_block = _blocked(facts, verified, current, decision)
            if new_block:
                events.append(Event("Warning", R.STAGE_TRANSITION_BLOCKED, stage_cond.message))
                transitions.append(Transition(current, requested, "blocked"))
            break
        hop: dict[str, Any] = {"from": current, "to": step, "at": stamp, "reason": why, "actor": actor}
        if approvers := _approvers(facts.registry, current, step):
            hop["approvedBy"] = list(approvers)
        history.append(hop)
        transitions.append(Transition(current, step, "made"))
        current = step
        stage_cond = _in_effect(current)
    kept, trimmed = _trim(history, history_limit)
    events = [*_changed(transitions, actor, why), *events, *trimmed]
    return Walk(current, kept, stage_cond, tuple(events), tuple(transitions))


def _archive_guard(facts: VersionFacts, dst: str) -> Decision | None:
    """Archived while an endpoint routes traffic to it: refused unless revoked (domain.revocation)."""
    serving = [(s.endpoint, s.weight, s.mirror) for s in facts.serving]
    return archive_guard(dst, facts.revoked is not None, serving)


def _gated(
    facts: VersionFacts, src: str, dst: str, gates: GateFacts, graph: StageGraph, signature: Verdict | None
) -> Decision:
    """The operator-wide gates of src -> dst, the platform's pinned images, the trust policies'
    signatures, then (when those allow it) the Model's own."""
    reg = facts.registry
    decision = decide_transition(src, dst, gates, graph)
    need = required_for(dst, facts.trust, graph.order) if signature is not None else None
    if decision.allowed and signature is not None and need is not None and not signature.accepted:
        return Decision(
            False,
            signature.reason,
            f"{dst} requires a signature accepted by the trust policy (from {need}): {signature.message}",
        )
    rt = facts.runtime.cond
    if decision.allowed and rt is not None and rt.status != TRUE and dst not in UNGATED:
        return Decision(False, rt.reason, f"{dst} requires a resolved runtime: {rt.message}")
    pin = pin_required(dst, facts.pinned_images_from, graph.order)
    if decision.allowed and pin is not None and not image_pinned(facts.image):
        return Decision(
            False,
            R.IMAGE_NOT_PINNED,
            f"the platform's policy requires a runtime image pinned by digest from {pin}: "
            f"{clip(facts.image, 200)!r} has no @sha256:<64 hex>; register a version with one",
        )
    if decision.allowed and reg.candidate is not None:
        decision = check_model_gates(src, dst, reg.rules, reg.candidate) or decision
    return decision


def _blocked(facts: VersionFacts, verified: Cond, current: str, decision: Decision) -> tuple[Cond, bool]:
    """StageTransition for a refused hop, and whether it is a new block (worth an Event): not while
    the artifact is still verifying (or waits for the record), nor when the same block is already in
    the status."""
    # verifying, or verified and waiting for the registry's record: in progress, not a refusal
    in_progress = verified.reason in (R.VERIFYING, R.RECORD_PENDING)
    waiting = in_progress and decision.reason == R.ARTIFACT_NOT_VERIFIED
    stage_cond = Cond(
        "StageTransition",
        UNKNOWN if waiting else FALSE,
        decision.reason,
        f"requested {facts.requested}, staying in {current}: {decision.message}",
    )
    seen = cond.get(facts.status.get("conditions"), "StageTransition")
    new_block = seen is None or seen.get("reason") != decision.reason or seen.get("status") != FALSE
    return stage_cond, not waiting and new_block


def _changed(transitions: list[Transition], actor: str, why: str) -> tuple[Event, ...]:
    """One Event per walk (the history has each hop): fewer writes for a fleet's first walk."""
    made = [t for t in transitions if t.outcome == "made"]
    if not made:
        return ()
    path = " -> ".join([made[0].src, *(t.dst for t in made)])
    return (Event("Normal", R.STAGE_CHANGED, clip(f"{path} by {actor}: {why}", 2048)),)


def _trim(
    history: list[Mapping[str, Any]], limit: int
) -> tuple[tuple[Mapping[str, Any], ...], tuple[Event, ...]]:
    """The latest ``limit`` entries, and an Event for each older one."""
    if len(history) <= limit:
        return tuple(history), ()
    cut = len(history) - limit
    return tuple(history[cut:]), tuple(
        Event("Normal", R.HISTORY_TRIMMED, _trimmed(old, limit)) for old in history[:cut]
    )


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
