"""What a ModelEndpoint reconcile should do, decided in one pass, purely, from its facts.

The handler gathers an ``EndpointFacts`` (the watch cache; for a rollout also status.rollout, the
action annotations and the measurements due now); ``decide`` returns the whole ``Plan``: the rollout's
next state, its step weights and the record it writes (``endpoint_rollout``), the slots to apply, the
route's destinations or "leave the route alone", slots to delete, drain bookkeeping and when to look
again. The handler executes it and reports what it observed as an ``Outcome``;
``endpoint_status.build_status(facts, plan, outcome)`` gives the whole status, conditions and Events.

Slots. A variant is served by a *slot*: one Deployment + one Service for one pod template
(version, digest, image, resources...). Changing what a variant serves creates a new slot; the
variant's traffic stays on its *pinned* slot (status.variants[].serving) until the new slot is
eligible (ModelVersion verified with the pinned digest, at the required stage, Deployment
Available), then moves in one route write. A slot nothing routes to any more is deleted only once
the routes observed through the watch no longer point at it, plus a grace period.

First promise: a destination in the plan is always a slot that is eligible now, or the pinned
slot that was eligible when it was pinned and still runs the same verified digest; only a slot whose
Deployment and Service both carry this endpoint's controller reference is ever a destination (a
Deployment or Service someone else made with the slot's name is a ChildConflict); when no
variant is eligible the route is left exactly as it is, unless that would keep a withdrawn version's
share (revoked, archived, demoted): then the route is closed (domain.revocation). A rollout's step
weights only replace the declared weights: they never make a variant eligible (the one bounded
exception, a canary one stage below requiredStage under an analysis with maxWeightBelowStage, is
``below_ok``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from modelversioning.api import wire as R
from modelversioning.domain.endpoint_facts import (
    ApiError,
    EndpointFacts,
    Outcome,
    Pin,
    RecordTarget,
    RolloutFacts,
    SlotFacts,
    VariantFacts,
    VersionFacts,
)
from modelversioning.domain.endpoint_rollout import RolloutDecision, decide_rollout
from modelversioning.domain.revocation import (
    Withdrawn,
    closure,
    pulled,
    pulled_message,
    reason_of,
    serving_withdrawal,
)
from modelversioning.domain.stages import Stage, has_reached, one_below
from modelversioning.domain.traffic import (
    TOTAL,
    Split,
    VariantInput,
    apportion,
    effective_split,
    validate_declared,
)

# ---------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Destination:
    variant: str
    slot: str
    version: str
    digest: str
    weight: int


@dataclass(frozen=True)
class VariantDecision:
    name: str
    eligible: bool  # may take its declared share now (through `serving`)
    reason: str
    message: str
    serving: Pin | None  # the slot its traffic goes to now
    apply: bool  # render and apply the desired slot
    replicas: int  # replicas of the desired slot (a scale-down under traffic is held)
    held_scale: bool = False
    split_weight: int | None = None  # the weight the split may give it now (capacity), None: declared
    withdrawn: str = ""  # its serving version lost authority (x-model-unavailable value; domain.revocation)


@dataclass(frozen=True)
class Plan:
    variants: tuple[VariantDecision, ...]
    weights: dict[str, int]  # variant -> effective weight of the live variants
    held: bool  # nothing eligible: the route is left alone
    split_reason: str
    split_message: str
    declared_problems: tuple[tuple[str, str], ...]  # (reason, message)
    write_route: bool
    destinations: tuple[Destination, ...]
    mirror: Destination | None
    delete: tuple[str, ...]  # slots to delete now
    draining: dict[str, float]  # slot -> since, to record
    requeue_after: float | None  # the sooner of a drain's end and the rollout's next look
    # the variants as the plan aimed for them: declared weights replaced by the rollout's step weights
    aimed: tuple[VariantFacts, ...] = ()
    rollout: RolloutDecision | None = None
    closed: str = ""  # the route answers 503 with x-model-unavailable: <closed> (domain.revocation)
    closed_message: str = ""

    def decision(self, name: str) -> VariantDecision:
        return next(d for d in self.variants if d.name == name)


# -------------------------------------------------------------------------------------- decide


def _pin_of(mv: VersionFacts, slot: str) -> Pin:
    return Pin(version=mv.version, uid=mv.uid, digest=mv.digest, slot=slot)


def _replaced(v: VariantFacts) -> bool:
    """The ModelVersion behind the pinned version is another object (or other bytes) now."""
    if v.pin is None or v.mv is None or v.pin.version != v.version:
        return False
    return (v.pin.uid, v.pin.digest) != (v.mv.uid, v.mv.digest) and not v.accept_replaced


# ArtifactVerified=False reasons for which no slot (Deployment + Service) is created: outcomes no pod
# can get past, because the init container enforces the same policy, digest, size, limits and
# credentials (a Deployment would only crash-loop, and for a refused URI fetch it from inside the
# cluster after all), or the registry refused the version for good. A slot already serving it is kept
# (it still runs the bytes verified when it was pinned); only a new one is not created.
#   URIRefused      the policy refuses the URI (or an address, a redirect, credentials for that host)
#   DigestMismatch  the bytes are not the registered ones
#   SizeMismatch    the bytes differ from spec.artifact.sizeBytes
#   LimitExceeded   timeoutSeconds / maxFiles / maxTotalBytes: the pod runs under the same limits
#   AccessDenied    the pod gets the same Secret under the same host binding (a Secret naming no
#                   hosts, a binary value, a 401/403); a Secret that is missing or that the operator
#                   may not read is retried by the operator, and a pod could not start without it
#                   either (envFrom), while an unverified version never takes traffic anyway
#   VersionReused   the version number was registered with another digest: refused for good
#   ArtifactDeleted retention deleted the artifact from storage: a pod would find nothing
# Not listed, so a slot is prepared while the operator retries: Verifying, NotFound (uploaded after
# the ModelVersion was registered), FetchFailed (network, store errors).
NO_SLOT_REASONS = R.NO_SLOT  # verification failed for good: no slot (Deployment) is made


def _refused(v: VariantFacts) -> bool:
    return v.mv is not None and not v.mv.verified and v.mv.verify_reason in NO_SLOT_REASONS


def _pinned_still_good(v: VariantFacts, need: Stage) -> tuple[bool, str]:
    """May the pinned slot keep this variant's traffic while the desired slot is not eligible?"""
    pin, slot = v.pin, v.pinned
    if pin is None or slot is None or not slot.exists:
        return False, "no previous slot"
    if v.desired is not None and slot.name == v.desired.name:
        return False, "the pinned slot is the desired one"
    if not slot.available or not slot.ours:  # a foreign (re-created) child is never routed to
        return False, f"previous slot {pin.slot}: {slot.why}"
    mv = v.pinned_mv
    if mv is not None and pulled(mv):  # revoked or quarantined, whatever object has the name now
        return False, pulled_message(mv)
    if mv is not None and (mv.uid, mv.digest) == (pin.uid, pin.digest):
        if not mv.verified:
            return False, f"{mv.name} is no longer verified ({mv.verify_reason})"
        if mv.stage is None or not has_reached(mv.stage, need):
            return False, f"{mv.name} is {mv.stage or 'unknown'} now; needs {need}"
    # A deleted or re-created ModelVersion: the pods still run the digest verified when pinned.
    return True, ""


def _still_serving(v: VariantFacts) -> bool:
    """The desired slot is the one already serving this variant and has ready pods: a scale-up (or one
    pod restarting) is not a reason to take its traffic away. A new slot needs all its replicas."""
    d = v.desired
    return d is not None and v.pin is not None and v.pin.slot == d.name and d.ours and d.ready_replicas > 0


def _desired_status(v: VariantFacts, need: Stage) -> tuple[bool, str, str]:
    """(eligible, reason, message) of the desired slot."""
    if v.problem is not None:
        return False, *v.problem
    mv = v.mv
    assert mv is not None
    if value := pulled(mv):
        return False, reason_of(value), pulled_message(mv)
    if _replaced(v):
        assert v.pin is not None
        return (
            False,
            R.MODEL_VERSION_REPLACED,
            f"{mv.name} was re-created (uid {v.pin.uid[:8]}.. sha256 {v.pin.digest[:12]} -> uid "
            f"{mv.uid[:8]}.. sha256 {mv.digest[:12]}); traffic stays on the pods it has. Accept with the "
            f"annotation {R.ACCEPT_REPLACED_ANNOTATION}={v.name}={mv.digest[:12]} or pin another version",
        )
    if v.desired is None:
        return False, R.INVALID_SPEC, f"{mv.name} cannot be rendered"
    if v.desired.conflict:
        return False, R.CHILD_CONFLICT, v.desired.why
    if not mv.verified:
        reason = R.DIGEST_MISMATCH if mv.verify_reason in R.DIGEST_MISMATCHES else R.ARTIFACT_NOT_VERIFIED
        return False, reason, f"{mv.name}: ArtifactVerified is not True ({mv.verify_reason or 'pending'})"
    if mv.stage is None or not has_reached(mv.stage, need):
        return False, R.STAGE_NOT_REACHED, f"{mv.name} is {mv.stage or 'unknown'}; needs {need}"
    if v.replicas == 0:
        return False, R.SCALED_TO_ZERO, "variant has 0 replicas"
    if not (v.desired.available and v.desired.ours) and not _still_serving(v):
        return False, R.DEPLOYMENT_NOT_AVAILABLE, v.desired.why
    return True, R.ELIGIBLE, f"{mv.name} verified, {mv.stage}, available"


def replicas_for(v: VariantFacts, share: int) -> int:
    """Replicas of a variant's slot for a share of live traffic: all of them, or, with minReplicas,
    ceil(replicas * share / 100) but at least minReplicas."""
    if v.min_replicas is None:
        return v.replicas
    return max(v.min_replicas, -(-v.replicas * share // 100))


def decide_variant(
    v: VariantFacts, required: Stage, routed: Mapping[str, int], previous: int = 0
) -> VariantDecision:
    need = one_below(required) if v.mirror or v.below_ok else required
    ok, reason, message = _desired_status(v, need)
    apply = v.desired is not None and v.problem is None and not _replaced(v) and not _refused(v)
    # scale up before the share grows, down only once it has shrunk
    replicas, held_scale = replicas_for(v, max(v.weight, previous)), False
    if apply and replicas == 0 and v.desired is not None and routed.get(v.desired.name, 0) > 0:
        replicas, held_scale = max(1, v.desired.replicas), True  # never 0 replicas under traffic
    if ok:
        assert v.mv is not None and v.desired is not None
        split_weight = None
        if (
            v.min_replicas is not None
            and v.weight > previous
            and v.desired.ready_replicas < replicas_for(v, v.weight)
        ):
            split_weight = previous  # the share waits for the pods that will carry it
            message = f"scaling to {replicas_for(v, v.weight)} replicas before taking {v.weight}%"
            reason = R.SCALING_UP
        pin = _pin_of(v.mv, v.desired.name)
        return VariantDecision(v.name, True, reason, message, pin, apply, replicas, False, split_weight)
    good, why = _pinned_still_good(v, need)
    if good:
        assert v.pin is not None
        message = f"{message}; traffic stays on {v.pin.version} (slot {v.pin.slot})"
        return VariantDecision(v.name, True, reason, message, v.pin, apply, replicas, held_scale)
    if why not in ("no previous slot", "the pinned slot is the desired one"):
        message = f"{message}; {why}"
    withdrawn = serving_withdrawal(v, need)
    if withdrawn:  # authority is gone: its traffic never stays (domain.revocation)
        reason = reason_of(withdrawn)
    return VariantDecision(v.name, False, reason, message, None, apply, replicas, held_scale, None, withdrawn)


def decide(f: EndpointFacts) -> Plan:
    """The whole decision: with a strategy, the rollout first (its next state, step weights, conditions,
    Events, record); its step weights then replace the declared weights as the traffic plan's input,
    and the traffic plan decides eligibility exactly as without a rollout."""
    if f.rollout is None:
        return _traffic(f)
    ro = decide_rollout(f.rollout)
    aimed = tuple(
        replace(v, weight=ro.weights.get(v.name, v.weight), below_ok=v.name == ro.below_ok)
        for v in f.variants
    )
    plan = _traffic(replace(f, variants=aimed))
    waits = [t for t in (plan.requeue_after, ro.requeue_after) if t]
    return replace(plan, rollout=ro, requeue_after=min(waits) if waits else None)


def _traffic(f: EndpointFacts) -> Plan:
    """The traffic plan for the variants as aimed (one pass of the eligibility rules)."""
    required = Stage(f.required_stage)
    decisions = tuple(
        decide_variant(v, required, f.routed, int(f.previous_weights.get(v.name, 0))) for v in f.variants
    )
    by_name = {d.name: d for d in decisions}
    mirror = next((v for v in f.variants if v.mirror), None)
    live = [v for v in f.variants if not v.mirror]
    problems = tuple(
        validate_declared(
            [(v.name, v.version, v.weight) for v in f.variants],
            mirror.name if mirror else None,
            f.allow_major_mix,
        )
    )
    wanted = _capped(live, by_name)
    split = effective_split(
        [VariantInput(v.name, v.version, wanted[v.name], by_name[v.name].eligible) for v in live],
        f.previous_weights,
    )
    split, decisions = _within_below_stage_cap(f, split, decisions)
    by_name = {d.name: d for d in decisions}
    weights = dict(split.weights)
    write_route = not problems and f.router_problem is None and not split.held and f.writes_route
    if problems or f.router_problem is not None:
        weights = {k: int(w) for k, w in f.previous_weights.items()}
    closed = closure(
        [Withdrawn(d.name, d.withdrawn, d.message) for d in decisions if d.withdrawn],
        f.previous_weights,
        split.held or bool(problems),
        f.previous_closed,
    )
    if closed is not None:
        return _closed(f, decisions, problems, closed)
    destinations: list[Destination] = []
    for v in live:
        pin = by_name[v.name].serving
        if pin is not None and v.name in weights:
            destinations.append(Destination(v.name, pin.slot, pin.version, pin.digest, weights[v.name]))
    mirror_dest = None
    if mirror is not None and (f.mirror_supported or not f.writes_route):  # no route: kept for status
        pin = by_name[mirror.name].serving
        if by_name[mirror.name].eligible and pin is not None:
            mirror_dest = Destination(mirror.name, pin.slot, pin.version, pin.digest, 0)
    delete, draining, requeue = _drain(f, decisions)
    return Plan(
        variants=decisions,
        weights=weights,
        held=split.held,
        split_reason=split.reason,
        split_message=split.message,
        declared_problems=problems,
        write_route=write_route and bool(destinations),
        destinations=tuple(destinations),
        mirror=mirror_dest,
        delete=delete,
        draining=draining,
        requeue_after=requeue,
        aimed=f.variants,
    )


def _closed(
    f: EndpointFacts,
    decisions: tuple[VariantDecision, ...],
    problems: tuple[tuple[str, str], ...],
    closed: tuple[str, str],
) -> Plan:
    """The route that would keep a withdrawn variant's share closes: no destination, no mirror, no
    weights; written whatever the declared split (only a router problem leaves it alone)."""
    no_traffic = tuple(replace(d, serving=None) for d in decisions)  # a closed route carries nothing
    delete, draining, requeue = _drain(f, no_traffic, also=frozenset({f.closed_service} - {""}))
    return Plan(
        variants=no_traffic,
        weights={},
        held=False,
        split_reason=reason_of(closed[0]),
        split_message=closed[1],
        declared_problems=problems,
        write_route=f.writes_route and f.router_problem is None,
        destinations=(),
        mirror=None,
        delete=delete,
        draining=draining,
        requeue_after=requeue,
        aimed=f.variants,
        closed=closed[0],
        closed_message=closed[1],
    )


def _within_below_stage_cap(
    f: EndpointFacts, split: Split, decisions: tuple[VariantDecision, ...]
) -> tuple[Split, tuple[VariantDecision, ...]]:
    """A split that gives a canary one stage below requiredStage more than the rollout's
    maxWeightBelowStage (the variants at the required stage cannot take the rest: not eligible, or
    their share waits for capacity) is not routed: the route is left as it is, as when nothing is
    eligible, and each variant is reported on the slot the route still sends it to."""
    cap = (f.rollout.plan.max_weight_below_stage or 0) if f.rollout is not None else 0
    over = [v.name for v in f.variants if v.below_ok and not v.mirror and split.weights.get(v.name, 0) > cap]
    if split.held or not over:
        return split, decisions
    why = (
        f"variant {', '.join(over)} is one stage below requiredStage {f.required_stage} and may take at most "
        f"{cap}%, and no variant at the required stage can take the rest; keeping the last effective weights"
    )
    previous = {k: int(w) for k, w in f.previous_weights.items() if int(w) > 0}
    pinned = tuple(replace(d, serving=v.pin) for v, d in zip(f.variants, decisions, strict=True))
    return Split(previous, True, R.NO_ELIGIBLE_VARIANT, why), pinned


def _capped(live: list[VariantFacts], by_name: Mapping[str, VariantDecision]) -> dict[str, int]:
    """Declared weights, except variants whose share waits for capacity keep what they have; the rest
    of the 100 goes to the others in proportion to their declared weights."""
    caps: dict[str, int] = {}
    for v in live:
        cap = by_name[v.name].split_weight
        if cap is not None:
            caps[v.name] = cap
    if not caps:
        return {v.name: v.weight for v in live}
    rest = {v.name: v.weight for v in live if v.name not in caps}
    room = max(0, TOTAL - sum(caps.values()))
    scaled = apportion(rest, [v.name for v in live], room) if sum(rest.values()) else {}
    return {v.name: caps[v.name] if v.name in caps else scaled.get(v.name, 0) for v in live}


def _drain(
    f: EndpointFacts, decisions: tuple[VariantDecision, ...], also: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], dict[str, float], float | None]:
    """Slots to delete now, the drain bookkeeping to record, and when to look again (``also``: other
    owned Services the route needs, e.g. a closed route's)."""
    keep: set[str] = set(also)
    for v, d in zip(f.variants, decisions, strict=True):
        if d.apply and v.desired is not None:
            keep.add(v.desired.name)
        if d.serving is not None:
            keep.add(d.serving.slot)
        if v.pin is not None and v.pinned is not None and v.pinned.exists:
            keep.add(v.pin.slot)  # a previous slot stays until another one carries the variant
    for v, d in zip(f.variants, decisions, strict=True):
        if v.pin is not None and d.serving is not None and d.serving.slot != v.pin.slot and d.eligible:
            keep.discard(v.pin.slot)  # the variant moved on: its old slot may drain
    unrouted = [
        slot
        for slot in f.owned_slots - keep
        # not while an observed route still points at it (or we cannot tell yet)
        if f.routes_known and f.routed.get(slot) is None
    ]
    return drain_due(unrouted, f.draining, f.now, f.drain_seconds)


def drain_due(
    slots: Iterable[str], since: Mapping[str, float], now: float, grace: float
) -> tuple[tuple[str, ...], dict[str, float], float | None]:
    """Of slots no route points at any more: those whose drain grace is over (delete them now), the
    others with the time their drain began (to record), and the seconds until the next is due."""
    delete: list[str] = []
    draining: dict[str, float] = {}
    waits: list[float] = []
    for slot in sorted(slots):
        began = since.get(slot, now)
        left = began + grace - now
        if left <= 0:
            delete.append(slot)
        else:
            draining[slot] = began
            waits.append(left)
    return tuple(delete), draining, (min(waits) if waits else None)


__all__ = [
    "NO_SLOT_REASONS",
    "ApiError",
    "Destination",
    "EndpointFacts",
    "Outcome",
    "Pin",
    "Plan",
    "RecordTarget",
    "RolloutFacts",
    "SlotFacts",
    "VariantDecision",
    "VariantFacts",
    "VersionFacts",
    "decide",
    "decide_variant",
    "replicas_for",
]
