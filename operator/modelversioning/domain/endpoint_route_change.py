"""What a ModelEndpoint reconcile adds to its route history (domain.endpoint_history), purely.

``observed(f, plan, weights, serving, closed, at)`` is the split as served after act (the weights
and slots the status reports: the plan's when the route was written or needed no write, the previous
ones when it was left alone; ``endpoint_status.carried``) as a ``Change`` with its cause;
``endpoint_status.build_status`` records it (``endpoint_history.record``: nothing when the split is
the one recorded last). A router that writes no route (``none``) splits nothing: no history.

Causes, the most specific first (wire.ROUTE_CAUSES): the route closed or reopened; a withdrawn
(revoked, archived, demoted) version lost its share; a rollout's automatic rollback or abort, or its
next step; a change of the spec acted on at once (a weight edit, a new version, ``kubectl models
rollback``: the reconcile is the first to see the endpoint's generation, status.observedGeneration
was older); else a spec already seen served differently because a version or slot became eligible or
stopped being so, or capacity (Eligibility: a new version that takes its variant once verified and
ready is one, at that moment).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelversioning.api import wire as R
from modelversioning.domain import rollout as RO
from modelversioning.domain.endpoint_facts import EndpointFacts, Pin, VariantFacts
from modelversioning.domain.endpoint_history import Change, Mirrored, Served
from modelversioning.domain.endpoint_plan import Plan
from modelversioning.domain.timestamps import rfc3339_ms

DETAIL_MAX = 256


def observed(
    f: EndpointFacts,
    plan: Plan,
    weights: Mapping[str, int],
    serving: Mapping[str, Pin | None],
    closed: str,
    at: float,
    mirrored: bool,
) -> Change | None:
    """The split as served now, with its cause (None: the router writes no route, or nothing has been
    served yet). ``serving``: the slot each variant's traffic goes to; ``mirrored``: the plan's mirror
    is on the route now."""
    if not f.writes_route:
        return None
    variants = {v.name: v for v in plan.aimed or f.variants}
    split = []
    for name in sorted(weights):
        pin, v = serving.get(name), variants.get(name)
        if pin is None or int(weights[name]) <= 0 or (v is not None and v.mirror):
            continue
        sd = _serving_digest(v, pin) if v is not None else ""
        split.append(Served(name, pin.version, pin.digest, int(weights[name]), pin.slot, sd))
    if not split and not closed and f.history.last is None:
        return None  # nothing served yet (a new endpoint waiting for its first eligible variant)
    m = plan.mirror if mirrored and not closed else None
    mirror = Mirrored(m.variant, m.version, m.digest, f.mirror_percent, m.slot) if m else None
    change = Change(rfc3339_ms(at), "", "", f.generation, tuple(split), mirror, closed)
    cause, detail = cause_of(f, plan, change)
    return Change(change.at, cause, detail[:DETAIL_MAX], f.generation, change.split, mirror, closed)


def _serving_digest(v: VariantFacts, pin: Pin) -> str:
    """The servingDigest of the ModelVersion object the pin was verified with, if still that object."""
    for mv in (v.mv, v.pinned_mv):
        if mv is not None and (mv.uid, mv.digest) == (pin.uid, pin.digest):
            return mv.serving_digest
    return ""


def cause_of(f: EndpointFacts, plan: Plan, new: Change) -> tuple[str, str]:
    """(cause, detail) of a change of the split as served from the last recorded one."""
    last = f.history.last
    if last is None:
        return R.ROUTE_CAUSE_INITIAL, "the first split this operator recorded"
    if new.closed and not last.closed:
        return R.ROUTE_CAUSE_CLOSED, f"{R.HEADER_UNAVAILABLE}: {new.closed}: {plan.closed_message}"
    if last.closed and not new.closed:
        return R.ROUTE_CAUSE_REOPENED, f"was closed ({last.closed})"
    withdrawn = [d for d in plan.variants if d.withdrawn]
    if withdrawn:
        return R.ROUTE_CAUSE_WITHDRAWN, "; ".join(f"{d.name}: {d.withdrawn}" for d in withdrawn)
    ro = plan.rollout
    if ro is not None:
        st = ro.outcome.state
        ended_back = st.phase in (RO.FAILED, RO.ABORTED) and f.generation == f.observed_generation
        if ro.outcome.failed_now or ended_back:
            return R.ROUTE_CAUSE_ROLLBACK, f"rollout {st.phase}: {st.message}"
        if ro.outcome.succeeded_now:
            return R.ROUTE_CAUSE_ROLLOUT_STEP, f"rollout succeeded: {_weights(ro.weights)}"
        if st.phase in (RO.PROGRESSING, RO.PAUSED):
            return R.ROUTE_CAUSE_ROLLOUT_STEP, f"step {st.step}: {_weights(ro.weights)}"
    if f.generation != f.observed_generation:  # this reconcile is the first to act on a new spec
        return R.ROUTE_CAUSE_SPEC_CHANGE, f"spec generation {f.observed_generation} -> {f.generation}"
    why = [f"{d.name}: {d.message}" for d in plan.variants if d.reason != R.ELIGIBLE]
    return R.ROUTE_CAUSE_ELIGIBILITY, "; ".join(why) or f"every variant eligible: generation {f.generation}"


def _weights(w: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(w.items()))
