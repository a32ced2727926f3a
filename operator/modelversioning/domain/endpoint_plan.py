"""What a ModelEndpoint reconcile should do, decided purely from facts (gather -> decide -> act).

The handler gathers an ``EndpointFacts`` from the watch cache; ``decide`` returns a ``Plan``
(slots to apply, the route's destinations or "leave the route alone", slots to delete, drain
bookkeeping); the handler applies it and reports what the API server refused as an
``Outcome``; ``report`` turns facts + plan + outcome into the status, conditions and Events.

Slots. A variant is served by a *slot*: one Deployment + one Service for one pod template
(version, digest, image, resources...). Changing what a variant serves creates a new slot; the
variant's traffic stays on its *pinned* slot (status.variants[].serving) until the new slot is
eligible (ModelVersion verified with the pinned digest, at the required stage, Deployment
Available), then moves in one route write. A slot nothing routes to any more is deleted only once
the routes observed through the watch no longer point at it, plus a grace period.

First promise: a destination in the plan is always a slot that is eligible now, or the pinned
slot that was eligible when it was pinned and still runs the same verified digest; when no
variant is eligible the route is left exactly as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from modelversioning.api import wire as R
from modelversioning.domain import kstatus
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.stages import Stage, has_reached, one_below
from modelversioning.domain.traffic import TOTAL, VariantInput, apportion, effective_split, validate_declared

# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class VersionFacts:
    """The ModelVersion a variant's version resolves to, as the watch cache has it."""

    name: str
    uid: str
    version: str
    digest: str  # spec.artifact.sha256
    verified: bool  # ArtifactVerified=True for exactly this digest
    verify_reason: str  # ArtifactVerified's reason (why not, when not verified)
    stage: str | None  # status.stage


@dataclass(frozen=True)
class SlotFacts:
    """A slot's Deployment as observed (exists=False: not created yet)."""

    name: str
    exists: bool = False
    available: bool = False
    ready_replicas: int = 0
    replicas: int = 0  # spec.replicas of the live Deployment
    why: str = "Deployment not created yet"


@dataclass(frozen=True)
class Pin:
    """The slot a variant's traffic is pinned to, with what its pods verified."""

    version: str
    uid: str
    digest: str
    slot: str


@dataclass(frozen=True)
class VariantFacts:
    name: str
    version: str
    weight: int
    replicas: int
    mirror: bool
    mv: VersionFacts | None  # None: missing or invalid (see problem)
    problem: tuple[str, str] | None = None  # (reason, message) when the version cannot be served
    desired: SlotFacts | None = None  # the slot spec asks for; None when it cannot be rendered
    pin: Pin | None = None  # from status
    pinned: SlotFacts | None = None  # observed state of pin.slot
    pinned_mv: VersionFacts | None = None  # the ModelVersion named by pin.version, now
    accept_replaced: bool = False  # the user accepted a re-created ModelVersion (annotation)
    below_ok: bool = False  # a rollout's canary may take its bounded share one stage below requiredStage
    min_replicas: int | None = None  # set: replicas follow the share (`replicas` is the count at 100 %)


@dataclass(frozen=True)
class EndpointFacts:
    required_stage: str
    variants: tuple[VariantFacts, ...]
    previous_weights: Mapping[str, int]  # status.effectiveWeights
    allow_major_mix: bool
    router: str
    router_problem: tuple[str, str] | None  # (reason, message): unknown or disabled router
    owned_slots: frozenset[str]  # names of every Deployment/Service the endpoint controls
    routed: Mapping[str, int]  # Service -> weight in the routes observed through the watch
    routes_known: bool  # False: a route kind we cannot see, or a route write not yet observed
    draining: Mapping[str, float]  # slot -> since (epoch seconds), from status
    now: float
    drain_seconds: float
    mirror_supported: bool = True  # the router can mirror here (Gateway API: the implementation's)
    writes_route: bool = True  # False: no route object (none); weights and mirror are not applied
    why_no_mirror: str = ""  # with mirror_supported False: why (the router says)


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
    requeue_after: float | None

    def decision(self, name: str) -> VariantDecision:
        return next(d for d in self.variants if d.name == name)


@dataclass(frozen=True)
class Outcome:
    """What the handler could not do: API errors per variant, and a route the router refused."""

    variant_errors: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, msg)
    # (reason, message): the route was not written (RenderError: InvalidSpec; an object of its name
    # that is not ours: ChildConflict; refused by the API server: ChildRejected)
    route_error: tuple[str, str] | None = None
    route_message: str = ""  # router.describe() when the route was written
    deleted: tuple[str, ...] = ()


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
    if not slot.available:
        return False, f"previous slot {pin.slot}: {slot.why}"
    mv = v.pinned_mv
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
    return d is not None and v.pin is not None and v.pin.slot == d.name and d.exists and d.ready_replicas > 0


def _desired_status(v: VariantFacts, need: Stage) -> tuple[bool, str, str]:
    """(eligible, reason, message) of the desired slot."""
    if v.problem is not None:
        return False, *v.problem
    mv = v.mv
    assert mv is not None
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
    if not mv.verified:
        reason = R.DIGEST_MISMATCH if mv.verify_reason == "DigestMismatch" else R.ARTIFACT_NOT_VERIFIED
        return False, reason, f"{mv.name}: ArtifactVerified is not True ({mv.verify_reason or 'pending'})"
    if mv.stage is None or not has_reached(mv.stage, need):
        return False, R.STAGE_NOT_REACHED, f"{mv.name} is {mv.stage or 'unknown'}; needs {need}"
    if v.replicas == 0:
        return False, R.SCALED_TO_ZERO, "variant has 0 replicas"
    if not v.desired.available and not _still_serving(v):
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
    return VariantDecision(v.name, False, reason, message, None, apply, replicas, held_scale)


def decide(f: EndpointFacts) -> Plan:
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
    weights = dict(split.weights)
    write_route = not problems and f.router_problem is None and not split.held and f.writes_route
    if problems or f.router_problem is not None:
        weights = {k: int(w) for k, w in f.previous_weights.items()}
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
    )


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
    f: EndpointFacts, decisions: tuple[VariantDecision, ...]
) -> tuple[tuple[str, ...], dict[str, float], float | None]:
    """Slots to delete now, the drain bookkeeping to record, and when to look again."""
    keep: set[str] = set()
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
    delete: list[str] = []
    draining: dict[str, float] = {}
    waits: list[float] = []
    for slot in sorted(f.owned_slots - keep):
        if not f.routes_known or f.routed.get(slot) is not None:
            continue  # an observed route still points at it (or we cannot tell yet)
        since = f.draining.get(slot, f.now)
        left = since + f.drain_seconds - f.now
        if left <= 0:
            delete.append(slot)
        else:
            draining[slot] = since
            waits.append(left)
    return tuple(delete), draining, (min(waits) if waits else None)


# -------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Report:
    conditions: tuple[Cond, ...]
    events: tuple[tuple[str, str, str], ...]  # (type, reason, message)
    variants: tuple[VariantDecision, ...]  # with API errors folded in


PERMANENT = R.PERMANENT  # a variant with one of these is bad until its spec changes


def _with_errors(plan: Plan, out: Outcome) -> tuple[VariantDecision, ...]:
    res = []
    for d in plan.variants:
        err = out.variant_errors.get(d.name)
        if err is None:
            res.append(d)
            continue
        reason, msg = err
        if d.serving is not None and d.eligible:
            msg = f"{msg}; traffic stays on {d.serving.version} (slot {d.serving.slot})"
        res.append(VariantDecision(d.name, d.eligible, reason, msg, d.serving, d.apply, d.replicas))
    return tuple(res)


def route_not_written(f: EndpointFacts, plan: Plan) -> Plan:
    """The plan as it stands when its route could not be written: the route still carries the
    previous split, so status, servedBy and metrics keep reporting that (the previous weights and
    each variant's pinned slot) instead of the traffic the plan had aimed for."""
    pins = {v.name: v.pin for v in f.variants}
    variants = tuple(replace(d, serving=pins.get(d.name)) for d in plan.variants)
    weights = {k: int(w) for k, w in f.previous_weights.items()}
    return replace(plan, variants=variants, weights=weights, write_route=False)


def report(
    f: EndpointFacts,
    plan: Plan,
    out: Outcome,
    previous_conditions: Mapping[str, tuple[str, str]],  # type -> (status, reason)
) -> Report:
    """Conditions (Ready, RoutesReady, Progressing, Degraded) and Events from facts, plan and outcome."""
    variants = _with_errors(plan, out)
    route_ok = not plan.declared_problems and f.router_problem is None and out.route_error is None
    conds = _route_conditions(f, plan, out)
    converged, progressing = _progressing(f, plan, variants, route_ok)
    conds.append(progressing)
    if route_ok:
        conds.append(_degraded(f, plan, variants))
    degraded = next(c for c in conds if c.type == "Degraded")
    ready = route_ok and converged and degraded.status == FALSE
    if ready:
        conds.insert(0, Cond("Ready", TRUE, R.READY, "serving as declared"))
    elif degraded.status == TRUE:
        conds.insert(0, Cond("Ready", FALSE, degraded.reason, degraded.message))
    else:
        conds.insert(0, Cond("Ready", FALSE, R.PROGRESSING, progressing.message))
    events: list[tuple[str, str, str]] = []
    if dict(f.previous_weights) != plan.weights and route_ok and plan.write_route:
        shifted = f"effective weights {_fmt(f.previous_weights)} -> {_fmt(plan.weights)}"
        events.append(("Normal", R.TRAFFIC_SHIFTED, shifted))
    # a new endpoint waiting for its first verified variant is told by its conditions; a Warning is
    # for traffic that has nowhere to go (2,000 of them in a fleet of new endpoints otherwise)
    first_wait = degraded.reason == R.NO_ELIGIBLE_VARIANT and not f.previous_weights
    if (
        degraded.status == TRUE
        and previous_conditions.get("Degraded") != (TRUE, degraded.reason)
        and not first_wait
    ):
        events.append(("Warning", degraded.reason, degraded.message))
    for slot in out.deleted:
        gone = f"deleted slot {slot}: no route has pointed at it for {f.drain_seconds:g}s"
        events.append(("Normal", R.SLOT_DELETED, gone))
    return Report(tuple(conds), tuple(events), variants)


def _route_conditions(f: EndpointFacts, plan: Plan, out: Outcome) -> list[Cond]:
    """RoutesReady, and Degraded when the routes are left alone for a reason of the spec or platform."""
    if plan.declared_problems:
        msg = "; ".join(m for _, m in plan.declared_problems)
        reasons = {r for r, _ in plan.declared_problems}
        reason = R.MAJOR_VERSION_MIX if R.MAJOR_VERSION_MIX in reasons else R.INVALID_SPLIT
        return [
            Cond("Degraded", TRUE, reason, f"{msg}; existing routes are left unchanged"),
            Cond("RoutesReady", FALSE, R.ROUTE_NOT_APPLIED, msg),
        ]
    if f.router_problem is not None:
        reason, msg = f.router_problem
        return [
            Cond("Degraded", TRUE, reason, f"{msg}; existing routes are left unchanged"),
            Cond("RoutesReady", FALSE, R.ROUTE_NOT_APPLIED, msg),
        ]
    if out.route_error is not None:
        reason, msg = out.route_error
        return [
            Cond("Degraded", TRUE, reason, f"{msg}; existing routes are left unchanged"),
            Cond("RoutesReady", FALSE, reason, msg),
        ]
    if not f.writes_route:
        msg = (
            f"router {f.router}: traffic is not split; each variant is reachable on the Service in "
            "status.variants[].serving.slot"
        )
        return [Cond("RoutesReady", TRUE, R.NO_ROUTER, msg)]
    if plan.held or not plan.destinations:
        return [Cond("RoutesReady", FALSE, R.NO_ELIGIBLE_VARIANT, plan.split_message)]
    return [Cond("RoutesReady", TRUE, R.ROUTE_APPLIED, out.route_message)]


def _progressing(
    f: EndpointFacts, plan: Plan, variants: tuple[VariantDecision, ...], route_ok: bool
) -> tuple[bool, Cond]:
    """(converged, Progressing): converged = every weighted variant served by its desired slot and
    the effective weights equal the declared ones."""
    weighted = [(v, d) for v, d in zip(f.variants, variants, strict=True) if v.weight > 0 or v.mirror]
    converged = all(
        d.eligible and d.serving is not None and v.desired is not None and d.serving.slot == v.desired.name
        for v, d in weighted
    ) and all(plan.weights.get(v.name, 0) == v.weight for v in f.variants if not v.mirror)
    if converged and route_ok:
        return True, Cond("Progressing", FALSE, R.CONVERGED, "effective weights match the declared weights")
    waiting = [f"{d.name}: {d.message}" for v, d in weighted if d.reason != R.ELIGIBLE]
    why = R.BLOCKED if not route_ok else plan.split_reason
    if why == R.AS_DECLARED and waiting:
        why = R.ROLLING_OUT
    return converged, Cond("Progressing", TRUE, why, "; ".join(waiting) or plan.split_message)


def _degraded(f: EndpointFacts, plan: Plan, variants: tuple[VariantDecision, ...]) -> Cond:
    mirror = next((v for v in f.variants if v.mirror), None)
    if mirror is not None and f.writes_route and not f.mirror_supported:
        why = f" ({f.why_no_mirror})" if f.why_no_mirror else ""
        msg = f"router {f.router} cannot mirror here{why}: variant {mirror.name} gets no copies"
        return Cond("Degraded", TRUE, R.MIRROR_UNSUPPORTED, msg)
    bad = [d for d in variants if d.reason in PERMANENT or d.held_scale]
    if bad:
        first = bad[0]
        reason = R.SCALE_DOWN_HELD if first.held_scale and first.reason not in PERMANENT else first.reason
        return Cond("Degraded", TRUE, reason, "; ".join(f"{d.name}: {_held(d)}" for d in bad))
    if plan.held or not plan.weights:
        return Cond("Degraded", TRUE, R.NO_ELIGIBLE_VARIANT, plan.split_message)
    return Cond("Degraded", FALSE, R.AS_EXPECTED, "no problems detected")


def _held(d: VariantDecision) -> str:
    if d.held_scale and d.reason not in PERMANENT:
        return (
            f"replicas 0 is held at {d.replicas} while the variant's slot still carries traffic; "
            "it scales down once the routes no longer point at it"
        )
    return d.message


def _fmt(w: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(w.items())) or "none"


def finish_report(
    rep: Report, rollout_conditions: tuple[Cond, ...], rollout_events: tuple[tuple[str, str, str], ...]
) -> Report:
    """A rollout that is not done overrides Ready/Progressing (and Degraded when it failed); then the
    kstatus conditions (Reconciling, Stalled) follow from the result."""
    override = {c.type: c for c in rollout_conditions}
    conds = tuple(override.pop(c.type, c) for c in rep.conditions) + tuple(override.values())
    return Report(conds + kstatus.for_endpoint(conds), rep.events + rollout_events, rep.variants)
