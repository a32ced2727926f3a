"""The whole status of a ModelEndpoint, built purely from (facts, plan, outcome).

``build_status`` is the one place the status is made: status.variants (with each variant's `serving`
slot, which the ModelVersion reconciler turns into servedBy), the effective weights, the traffic
summary, the drains, status.rollout, and every condition: Ready, RoutesReady, Progressing, Degraded,
the rollout's overrides, then kstatus's Reconciling and Stalled. The outcome is what act observed:
per-variant API errors and whether the route was written, each error with a `transient` flag.

Two rules of reporting live here:
- a route that was not written still carries the previous split: the status reports that split and
  each variant's pinned slot, never more traffic than the route carries (``carried``);
- an API error the operator retries (5xx, 429, no answer) is progress, not a failure:
  ``ChildApplyRetrying`` with Progressing=True (kstatus Reconciling, Argo CD Progressing), while a
  refusal (4xx) stays ``ChildRejected``, which stalls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain import endpoint_history as history
from modelversioning.domain import endpoint_route_change as route_change
from modelversioning.domain import kstatus
from modelversioning.domain import rollback_readiness as rollback
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.endpoint_facts import EndpointFacts, Outcome, Pin, VariantFacts, api_error
from modelversioning.domain.endpoint_plan import Plan, VariantDecision
from modelversioning.domain.revocation import reason_of
from modelversioning.domain.rollout_status import status_of
from modelversioning.domain.timestamps import rfc3339_ms

PERMANENT = R.PERMANENT  # a variant with one of these is bad until its spec changes

Event = tuple[str, str, str]  # (type, reason, message)


@dataclass(frozen=True)
class Report:
    conditions: tuple[Cond, ...]
    events: tuple[Event, ...]
    variants: tuple[VariantDecision, ...]  # with API errors folded in; serving: what the route carries


@dataclass(frozen=True)
class EndpointStatus:
    fields: dict[str, Any]  # variants, effectiveWeights, traffic, router, draining, rollout
    conditions: tuple[Cond, ...]  # the endpoint's, the rollout's overrides, Reconciling and Stalled
    events: tuple[Event, ...]
    variants: tuple[VariantDecision, ...]  # as reported (their `serving`: where the route sends them)
    weights: dict[str, int]  # the effective weights the route carries
    # RollbackReady (advisory, in `conditions` too; None: not decided now, the recorded one stays)
    rollback: rollback.Readiness | None = None


def build_status(f: EndpointFacts, plan: Plan, out: Outcome) -> EndpointStatus:
    """The whole status from facts, plan and outcome (status.conditions are merged by the writer)."""
    ro = plan.rollout
    rep = report(f, plan, out, f.previous_conditions)
    rep = finish_report(rep, ro.conditions if ro else (), ro.outcome.events if ro else ())
    weights, serving = carried(f, plan, out)
    fields: dict[str, Any] = {
        "variants": [_variant(v, d, weights) for v, d in zip(plan.aimed, rep.variants, strict=True)],
        "effectiveWeights": dict(weights),
        "traffic": summary(f, plan, rep.variants, weights),
        "router": f.router,
        "draining": [{"name": s, "since": rfc3339_ms(t)} for s, t in sorted(plan.draining.items())],
        "rollout": status_of(ro.outcome.state, ro.promoted) if ro else None,
        "closed": _closed(f, plan, out),
    }
    if f.region:  # once per status: the variants, rollout and routeHistory are all this region's
        fields["region"] = f.region
    route_history = _history(f, plan, out, weights, serving)
    if route_history is not None:  # only with a change: else the recorded history stays as it is
        fields["routeHistory"] = route_history
    ready = rollback.for_endpoint(f)  # advisory: after kstatus, which never reads it
    conds = rep.conditions + ((ready.condition(),) if ready is not None else ())
    return EndpointStatus(fields, conds, rep.events, rep.variants, weights, ready)


def _history(
    f: EndpointFacts, plan: Plan, out: Outcome, weights: Mapping[str, int], serving: Mapping[str, Pin | None]
) -> dict[str, Any] | None:
    """status.routeHistory with the split as served now recorded, when it differs from the last
    recorded one (domain.endpoint_history); at the time the route write returned, else now."""
    closed = (_closed(f, plan, out) or {}).get("reason", "")
    at = out.route_written_at if out.route_written_at is not None else f.now
    change = route_change.observed(f, plan, weights, serving, closed, at, mirrored=_from_plan(f, plan, out))
    recorded = history.record(f.history, change) if change is not None else None
    return history.to_wire(recorded) if recorded is not None else None


def _from_plan(f: EndpointFacts, plan: Plan, out: Outcome) -> bool:
    """The route carries the plan's split: written (or needing no write), not left alone."""
    left_alone = (bool(plan.declared_problems) and not plan.closed) or f.router_problem is not None
    return out.route_error is None and not left_alone


def carried(f: EndpointFacts, plan: Plan, out: Outcome) -> tuple[dict[str, int], dict[str, Pin | None]]:
    """(effective weights, variant -> serving slot) as the route carries them after act: the plan's
    when the route was written (or needed no write); when it was not written, or was left alone for a
    declared problem or the router's, the previous split and each variant's pinned slot, so status,
    servedBy, the in-use finalizers and the weight metrics keep naming the versions the route still
    sends traffic to, never the split the plan aimed for."""
    if _from_plan(f, plan, out):
        return {k: int(w) for k, w in plan.weights.items()}, {d.name: d.serving for d in plan.variants}
    pins = {v.name: v.pin for v in f.variants}
    return {k: int(w) for k, w in f.previous_weights.items()}, {
        d.name: pins.get(d.name) for d in plan.variants
    }


def _closed(f: EndpointFacts, plan: Plan, out: Outcome) -> dict[str, str] | None:
    """status.closed: the route answers 503 with x-model-unavailable (once written; the next reconcile
    keeps it closed while nothing eligible reopens it). Router none: no route; nothing is routed."""
    if not plan.closed or out.route_error is not None or f.router_problem is not None:
        return None
    return {"reason": plan.closed, "message": plan.closed_message[:1024]}


def _variant(v: VariantFacts, d: VariantDecision, weights: Mapping[str, int]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": v.name,
        "version": v.version,
        "modelVersion": v.mv_name or (v.mv.name if v.mv else ""),
        "desiredWeight": v.weight,
        "effectiveWeight": 0 if v.mirror else int(weights.get(v.name, 0)),
        "replicas": v.replicas,
        "readyReplicas": (v.desired.ready_replicas if v.desired else 0),
        "artifactVerified": bool(v.mv and v.mv.verified),
        "eligible": d.eligible,
        "reason": d.reason,
        "message": d.message[:1024],
    }
    if v.mv is not None:
        entry["stage"] = v.mv.stage
        entry["digest"] = v.mv.digest
    if v.mirror:
        entry["mirror"] = True
    pin = d.serving or (v.pin if v.pinned is not None and v.pinned.exists else None)
    if pin is not None:
        entry["serving"] = {"version": pin.version, "modelVersionUid": pin.uid, "digest": pin.digest,
                            "slot": pin.slot}  # fmt: skip
    return {k: x for k, x in entry.items() if x is not None}


def summary(
    f: EndpointFacts, plan: Plan, variants: tuple[VariantDecision, ...], weights: Mapping[str, int]
) -> str:
    """status.traffic: variant@version=weight of what each variant is served by, and the mirror."""
    parts = []
    for v, d in zip(plan.aimed, variants, strict=True):
        if v.mirror:
            continue
        served = d.serving.version if d.serving else v.version
        parts.append(f"{v.name}@{served}={weights.get(v.name, 0)}")
    names = {v.name for v in plan.aimed}
    parts += [f"{n}={w}" for n, w in weights.items() if n not in names and w > 0]
    if plan.mirror is not None:
        parts.append(f"mirror:{plan.mirror.variant}@{plan.mirror.version}={f.mirror_percent}%")
    if plan.closed:
        parts.append(f"closed:{plan.closed}")
    return ",".join(parts)


def _with_errors(plan: Plan, out: Outcome, serving: Mapping[str, Pin | None]) -> tuple[VariantDecision, ...]:
    res = []
    for d in plan.variants:
        d = replace(d, serving=serving.get(d.name))
        raw = out.variant_errors.get(d.name)
        if raw is None:
            res.append(d)
            continue
        reason, msg, transient = api_error(raw)
        if transient:  # the API server did not refuse it: the operator writes it again with backoff
            reason, msg = R.CHILD_APPLY_RETRYING, f"{msg}; retrying"
        if d.serving is not None and d.eligible:
            msg = f"{msg}; traffic stays on {d.serving.version} (slot {d.serving.slot})"
        res.append(VariantDecision(d.name, d.eligible, reason, msg, d.serving, d.apply, d.replicas))
    return tuple(res)


def report(
    f: EndpointFacts,
    plan: Plan,
    out: Outcome,
    previous_conditions: Mapping[str, tuple[str, str]],  # type -> (status, reason)
) -> Report:
    """Conditions (Ready, RoutesReady, Progressing, Degraded) and Events from facts, plan and outcome."""
    f = replace(f, variants=plan.aimed or f.variants)  # the variants as the plan aimed for them
    variants = _with_errors(plan, out, carried(f, plan, out)[1])
    route_error = api_error(out.route_error) if out.route_error is not None else None
    declared_ok = not plan.declared_problems or bool(plan.closed)  # a closed route is written regardless
    route_ok = declared_ok and f.router_problem is None and route_error is None
    route_retried = route_error is not None and route_error.transient
    conds = _route_conditions(f, plan, out)
    converged, progressing = _progressing(f, plan, variants, route_ok)
    retrying = _retrying(variants, route_error.message if route_error is not None and route_retried else None)
    if retrying is not None:
        converged, progressing = False, retrying
    conds.append(progressing)
    if route_ok or route_retried:
        conds.append(_degraded(f, plan, variants))
    degraded = next(c for c in conds if c.type == "Degraded")
    ready = route_ok and converged and degraded.status == FALSE
    if ready:
        conds.insert(0, Cond("Ready", TRUE, R.READY, "serving as declared"))
    elif degraded.status == TRUE:
        conds.insert(0, Cond("Ready", FALSE, degraded.reason, degraded.message))
    elif retrying is not None:
        conds.insert(0, Cond("Ready", FALSE, R.CHILD_APPLY_RETRYING, retrying.message))
    else:
        conds.insert(0, Cond("Ready", FALSE, R.PROGRESSING, progressing.message))
    events = _events(f, plan, out, route_ok, degraded, retrying, previous_conditions)
    return Report(tuple(conds), events, variants)


def _events(
    f: EndpointFacts,
    plan: Plan,
    out: Outcome,
    route_ok: bool,
    degraded: Cond,
    retrying: Cond | None,
    previous_conditions: Mapping[str, tuple[str, str]],
) -> tuple[Event, ...]:
    events: list[Event] = []
    # a shift of live traffic; an endpoint's first split (no traffic before, no closed route) is no
    # shift: its Ready condition says that it serves (one Event less per new endpoint)
    live = bool(f.previous_weights) or bool(f.previous_closed)
    if dict(f.previous_weights) != plan.weights and route_ok and plan.write_route and live:
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
    if retrying is not None and previous_conditions.get("Ready") != (FALSE, R.CHILD_APPLY_RETRYING):
        events.append(("Warning", R.CHILD_APPLY_RETRYING, retrying.message))
    for slot in out.deleted:
        gone = f"deleted slot {slot}: no route has pointed at it for {f.drain_seconds:g}s"
        events.append(("Normal", R.SLOT_DELETED, gone))
    return tuple(events)


def _retrying(variants: tuple[VariantDecision, ...], route_message: str | None) -> Cond | None:
    """Progressing=True while a write the API server failed (not refused) waits for its retry."""
    parts = [f"{d.name}: {d.message}" for d in variants if d.reason == R.CHILD_APPLY_RETRYING]
    if route_message is not None:
        parts.append(f"route: {route_message}")
    if not parts:
        return None
    return Cond("Progressing", TRUE, R.CHILD_APPLY_RETRYING, "; ".join(parts) + " (retried with backoff)")


def _route_conditions(f: EndpointFacts, plan: Plan, out: Outcome) -> list[Cond]:
    """RoutesReady, and Degraded when the routes are left alone for a reason of the spec or platform."""
    if plan.closed and f.writes_route and f.router_problem is None and out.route_error is None:
        msg = f"closed: answers {R.UNAVAILABLE_STATUS} with {R.HEADER_UNAVAILABLE}: {plan.closed}"
        msg += "".join(f"; {m}" for _, m in plan.declared_problems)
        return [Cond("RoutesReady", TRUE, R.ROUTE_CLOSED, msg)]
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
        reason, msg, transient = api_error(out.route_error)
        if transient:  # retried with backoff: not a refusal (Degraded follows from the variants)
            return [Cond("RoutesReady", FALSE, R.CHILD_APPLY_RETRYING, f"{msg}; the route keeps what it has")]
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
    return [Cond("RoutesReady", TRUE, R.ROUTE_APPLIED, out.route_message + _mirrored(f, plan))]


def _mirrored(f: EndpointFacts, plan: Plan) -> str:
    """The mirror the written route carries (only when it has one: spec.mirror, eligible, supported)."""
    if plan.mirror is None:
        return ""
    return f", and mirrors {f.mirror_percent}% of it to variant {plan.mirror.variant} ({plan.mirror.version})"


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
    if plan.closed:
        return Cond("Degraded", TRUE, reason_of(plan.closed), plan.closed_message)
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
    if failing := pod_problems(f):
        return Cond("Degraded", TRUE, failing[0][0], "; ".join(m for _, m in failing))
    return Cond("Degraded", FALSE, R.AS_EXPECTED, "no problems detected")


def pod_problems(f: EndpointFacts) -> list[tuple[str, str]]:
    """(reason, message) of every slot a variant asks for or is served by whose pods fail (the pods'
    own words: domain.pod_health). Reported only: the variant's eligibility and the route do not
    change, so traffic stays on the verified ready pods it has."""
    out: list[tuple[str, str]] = []
    for v in f.variants:
        seen = set()
        for slot in (v.desired, v.pinned):
            if slot is None or slot.pod_problem is None or slot.name in seen:
                continue
            seen.add(slot.name)
            out.append(
                (slot.pod_problem.reason, f"variant {v.name} slot {slot.name}: {slot.pod_problem.message}")
            )
    return out


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


def invalid_status(status: Mapping[str, Any], msg: str, reason: str = R.INVALID_SPEC) -> EndpointStatus:
    """A spec that does not validate (or that a platform policy refuses: PolicyViolation):
    Ready=False/<reason> (one Warning Event per message); the effective weights stay what they were
    and nothing else is decided."""
    c = Cond("Ready", FALSE, reason, msg)
    prev = next((x for x in status.get("conditions") or [] if x.get("type") == "Ready"), None) or {}
    events: tuple[Event, ...] = (
        () if (prev.get("reason"), prev.get("message")) == (reason, msg) else (("Warning", reason, msg),)
    )
    fields = {"effectiveWeights": status.get("effectiveWeights") or {}}
    return EndpointStatus(fields, (c,), events, (), {})


def previous_conditions(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """type -> (status, reason) of the conditions in an endpoint's status."""
    return {
        str(c.get("type")): (str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions") or []
    }


def progress_only(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Does ``new`` differ from the stored status only in the messages of an endpoint still on its way
    (Ready was not True; observedGeneration, every condition's status and reason, every variant's other
    fields, the weights: all the same)? Then it is not worth a write (issue #25): a new endpoint's
    status said "Deployment not created yet", then "Deployment update not yet observed", then "0/1
    replicas available", one PATCH each, while nothing a reader acts on changed. The next change of
    state writes the messages of then."""
    return not _ready(old) and _without_messages(old) == _without_messages(new)


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == TRUE for c in status.get("conditions") or [])


def _without_messages(status: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if v not in (None, [], {}) and k not in ("conditions", "variants")}
    out["conditions"] = sorted(
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions") or []
    )
    out["variants"] = [
        {k: v for k, v in var.items() if k != "message"} for var in status.get("variants") or []
    ]
    return out


def serving_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Did the weights or the versions the variants are served by change (their ModelVersions'
    servedBy and in-use finalizers follow)?"""
    return old.get("effectiveWeights") != new.get("effectiveWeights") or _served(old) != _served(new)


def _served(status: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (str(v.get("name")), str(v.get("version")), str((v.get("serving") or {}).get("version")))
        for v in status.get("variants") or []
    }
