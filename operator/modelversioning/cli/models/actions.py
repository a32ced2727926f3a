"""Pure decisions of ``kubectl models promote`` and ``rollback``: the patch to send, where a
requested promotion stands, which variant to roll back to, whether the route moved, and every
message the commands print about it. Objects in (dicts), data, a message or :class:`Refused` out;
no API access here (``commands/lifecycle.py`` talks to the cluster).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelversioning.api.routers import DEFAULT_ROUTER
from modelversioning.api.wire import (
    LAST_APPLIED_ANNOTATION,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
)
from modelversioning.cli.models.errors import EXIT_TIMEOUT, Refused
from modelversioning.cli.models.views import condition, meta_of, spec_of, status_of, version_key
from modelversioning.domain.merge_patch import apply_merge_patch

# ---- promote ----------------------------------------------------------------------------------------
PromoteState = Literal["done", "blocked", "waiting"]


@dataclass(frozen=True)
class PromoteResult:
    state: PromoteState
    stage: str | None  # status.stage now
    reason: str = ""
    message: str = ""
    new_history: tuple[dict[str, Any], ...] = ()


def promote_patch(stage: str, actor: str, reason: str | None) -> dict[str, Any]:
    """JSON merge patch: spec.stage plus who asked for which stage and why (a null reason removes a
    stale one, so the operator records its default)."""
    return {
        "metadata": {
            "annotations": {
                REQUESTED_BY_ANNOTATION: actor,
                REQUESTED_STAGE_ANNOTATION: stage,
                REASON_ANNOTATION: reason or None,
            }
        },
        "spec": {"stage": stage},
    }


def promote_state(mv: Mapping[str, Any], stage: str, generation: int, history_before: int) -> PromoteResult:
    """Where a requested promotion stands, as observed on the ModelVersion.

    done: status.stage == stage (as observed for `generation` or later);
    blocked: StageTransition=False for this generation (reason + message say why not);
    waiting: anything else (not yet reconciled, artifact still being verified...).
    """
    st = status_of(mv)
    observed = int(st.get("observedGeneration") or 0)
    history = [dict(h) for h in st.get("history") or []]
    new = tuple(history[history_before:])
    if st.get("stage") == stage and observed >= generation:
        return PromoteResult("done", stage, new_history=new)
    c = condition(mv, "StageTransition")
    if (
        c
        and c.get("status") == "False"
        and int(c.get("observedGeneration") or 0) >= generation
        and observed >= generation
    ):
        return PromoteResult(
            "blocked", st.get("stage"), str(c.get("reason", "")), str(c.get("message", "")), new
        )
    if c and c.get("status") == "Unknown" and observed >= generation:
        return PromoteResult(
            "waiting", st.get("stage"), str(c.get("reason", "")), str(c.get("message", "")), new
        )
    return PromoteResult(
        "waiting", st.get("stage"), "Pending", "waiting for the operator to observe the request", new
    )


def observe_promotion(
    obj: Mapping[str, Any] | None, name: str, stage: str, generation: int, history_before: int
) -> PromoteResult:
    """promote_state of the ModelVersion as the watch shows it (blocked once it is deleted)."""
    if obj is None:
        return PromoteResult("blocked", None, "Deleted", f"ModelVersion {name} was deleted")
    return promote_state(obj, stage, generation, history_before)


def step_text(h: Mapping[str, Any]) -> str:
    return f"{h.get('from') or '(new)'} -> {h.get('to')}"


def promote_requested(model: str, version: str, stage: str, actor: str) -> dict[str, Any]:
    """What --no-wait prints (-o yaml/json)."""
    return {"model": model, "version": version, "requested": stage, "actor": actor, "result": "requested"}


def promote_requested_text(name: str, stage: str, actor: str) -> str:
    return f"{name}: requested {stage} (by {actor}); the operator moves status.stage when the gates pass"


def promote_waiting_text(name: str, stage: str, r: PromoteResult) -> str:
    return f"waiting for {name} to reach {stage} (stage {r.stage}; {r.reason}: {r.message})"


def promote_timeout(name: str, stage: str, timeout: float, last: PromoteResult | None) -> Refused:
    where = f"; stage is {last.stage} ({last.reason}: {last.message})" if last else ""
    return Refused(
        f"timed out after {timeout:g}s waiting for {name} to reach {stage}{where}", code=EXIT_TIMEOUT
    )


def promote_outcome(model: str, version: str, stage: str, result: PromoteResult) -> dict[str, Any]:
    """What a finished promotion prints (-o yaml/json)."""
    return {
        "model": model,
        "version": version,
        "requested": stage,
        "stage": result.stage,
        "result": "promoted" if result.state == "done" else "blocked",
        "reason": result.reason or None,
        "message": result.message or None,
        "history": list(result.new_history),
    }


def promote_done_text(name: str, stage: str, result: PromoteResult) -> str:
    return f"{name} is now {stage}" if result.new_history else f"{name} is already {stage}"


def promote_blocked(name: str, stage: str, result: PromoteResult) -> Refused:
    moved = ""
    if result.new_history:
        moved = f" (moved {', '.join(step_text(h) for h in result.new_history)})"
    return Refused(
        f"{name} was not promoted to {stage}; it stays {result.stage}{moved}. "
        f"{result.reason}: {result.message}"
    )


# ---- rollback ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackPlan:
    endpoint: str
    target: str  # variant name
    version: str
    rolled_back: str | None  # the variant whose version is being rolled back (None with --to)
    before: dict[str, int]  # live variant -> weight it carries now
    after: dict[str, int]  # live variant -> declared weight after the patch
    patch: dict[str, Any]  # JSON merge patch of the ModelEndpoint
    why: str
    noop: bool = False


def live_variants(ep: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = spec_of(ep)
    mirror = (spec.get("mirror") or {}).get("variant")
    return [dict(v) for v in spec.get("variants") or [] if v.get("name") != mirror]


def current_weights(ep: Mapping[str, Any]) -> dict[str, int]:
    """What each live variant carries now: status.effectiveWeights, or the declared weights before
    the operator has reported any."""
    st = status_of(ep)
    if st.get("effectiveWeights"):
        eff = {k: int(v) for k, v in st["effectiveWeights"].items()}
        return {v["name"]: eff.get(v["name"], 0) for v in live_variants(ep)}
    return {v["name"]: int(v.get("weight", 0)) for v in live_variants(ep)}


def _eligibility(ep: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
    out: dict[str, tuple[bool, str]] = {}
    for vs in status_of(ep).get("variants") or []:
        why = f"{vs.get('reason') or 'NotEligible'}: {vs.get('message') or ''}".rstrip(": ")
        out[str(vs.get("name"))] = (bool(vs.get("eligible")), why)
    return out


def choose_rollback_target(
    ep: Mapping[str, Any], to: str | None = None, force: bool = False
) -> tuple[dict[str, Any], str | None, str]:
    """(target variant, variant rolled back, why).

    Default rule: the rollout being rolled back is the live variant with the highest version that
    carries traffic now or is declared to (spec weight > 0); the target is, among the other live
    variants that are eligible (status.variants[].eligible), the one with the highest version below
    it. E.g. stable 2.3.8 (0%) and canary 2.4.1 (100%, or 10% mid-canary) -> stable. A mirror
    variant is never a target.

    With ``to``: the live variant running that version (or named so); it must be in spec.variants,
    and eligible unless ``force``.
    """
    if to is not None:
        return _chosen_target(ep, to, force), None, f"--to {to}"
    return _default_target(ep)


def _listing(ep: Mapping[str, Any]) -> str:
    return ", ".join(f"{v['name']}={v.get('version')}" for v in spec_of(ep).get("variants") or [])


def _eligible(ep: Mapping[str, Any], v: Mapping[str, Any]) -> tuple[bool, str]:
    return _eligibility(ep).get(str(v["name"]), (False, "the operator has not reported this variant yet"))


def _chosen_target(ep: Mapping[str, Any], to: str, force: bool) -> dict[str, Any]:
    """The live variant running version ``to`` (or named so), eligible unless ``force``."""
    name = meta_of(ep).get("name")
    live = live_variants(ep)
    matches = [v for v in live if v.get("version") == to] or [v for v in live if v.get("name") == to]
    if not matches:
        mirror = (spec_of(ep).get("mirror") or {}).get("variant")
        variants = spec_of(ep).get("variants") or []
        if mirror and to in (
            mirror,
            next((v.get("version") for v in variants if v.get("name") == mirror), None),
        ):
            raise Refused(
                f"{to} is the mirror (shadow) variant of ModelEndpoint {name}; it takes no live "
                "traffic and cannot be a rollback target"
            )
        raise Refused(
            f"ModelEndpoint {name} has no variant running version {to} (variants: {_listing(ep)}); "
            "rollback only moves traffic between variants already in spec.variants: add it "
            "(weight 0) and wait until it is ready first"
        )
    weights = current_weights(ep)
    target = max(matches, key=lambda v: (weights.get(v["name"], 0), str(v["name"])))
    ok, why = _eligible(ep, target)
    if not ok and not force:
        raise Refused(
            f"variant {target['name']} ({target.get('version')}) of ModelEndpoint {name} is not "
            f"eligible for live traffic ({why}); the operator would hold the traffic where it is. "
            "Fix that first, or pass --force to edit the weights anyway"
        )
    return target


def _default_target(ep: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The highest eligible version below the newest one taking (or declared to take) traffic."""
    name = meta_of(ep).get("name")
    live = live_variants(ep)
    weights = current_weights(ep)
    # The rollout to undo: what carries traffic now, or is declared to (a rollout the operator still holds).
    serving = [v for v in live if weights.get(v["name"], 0) > 0 or int(v.get("weight", 0)) > 0]
    if not serving:
        raise Refused(
            f"no live variant of ModelEndpoint {name} carries or is declared to carry traffic; pass --to"
        )
    newest = max(serving, key=lambda v: (version_key(str(v.get("version"))), weights.get(v["name"], 0)))
    below = [
        v
        for v in live
        if v["name"] != newest["name"]
        and version_key(str(v.get("version"))) < version_key(str(newest.get("version")))
    ]
    candidates = [v for v in below if _eligible(ep, v)[0]]
    if not candidates:
        if not below:
            raise Refused(
                f"nothing to roll back to: {newest['name']} ({newest.get('version')}) is the lowest "
                f"version among the live variants of ModelEndpoint {name} ({_listing(ep)}); add the "
                "previous version as a variant (weight 0) or pass --to VERSION"
            )
        reasons = "; ".join(f"{v['name']} ({v.get('version')}): {_eligible(ep, v)[1]}" for v in below)
        raise Refused(
            f"no variant below {newest['name']} ({newest.get('version')}) is eligible for live traffic: "
            f"{reasons}"
        )
    target = max(
        candidates,
        key=lambda v: (version_key(str(v.get("version"))), weights.get(v["name"], 0), str(v["name"])),
    )
    why = (
        f"{newest['name']} ({newest.get('version')}) is the newest version taking traffic; "
        f"{target['name']} ({target.get('version')}) is the highest eligible version below it"
    )
    return target, str(newest["name"]), why


def plan_rollback(ep: Mapping[str, Any], to: str | None = None, force: bool = False) -> RollbackPlan:
    """Target 100, every other live variant 0 (kept deployed and warm); the mirror is untouched."""
    target, rolled_back, why = choose_rollback_target(ep, to, force)
    spec = spec_of(ep)
    mirror = (spec.get("mirror") or {}).get("variant")
    variants = []
    after: dict[str, int] = {}
    for v in spec.get("variants") or []:
        nv = dict(v)
        if v.get("name") != mirror:
            nv["weight"] = 100 if v["name"] == target["name"] else 0
            after[str(v["name"])] = nv["weight"]
        variants.append(nv)
    before = current_weights(ep)
    declared = {str(v["name"]): int(v.get("weight", 0)) for v in live_variants(ep)}
    noop = declared == after and before == after
    return RollbackPlan(
        endpoint=str(meta_of(ep).get("name")),
        target=str(target["name"]),
        version=str(target.get("version")),
        rolled_back=rolled_back,
        before=before,
        after=after,
        patch={"spec": {"variants": variants}},
        why=why,
        noop=noop,
    )


def rollback_done(weights: Mapping[str, int] | None, target: str) -> bool:
    """True when the observed split sends 100% of live traffic to `target`."""
    if not weights:
        return False
    return int(weights.get(target, 0)) == 100 and sum(int(w) for k, w in weights.items() if k != target) == 0


def router_of(ep: Mapping[str, Any]) -> str:
    """spec.routing.router (the API's default router when not set)."""
    return str((spec_of(ep).get("routing") or {}).get("router") or DEFAULT_ROUTER)


def variant_versions(ep: Mapping[str, Any]) -> dict[str, str]:
    return {str(v.get("name")): str(v.get("version")) for v in spec_of(ep).get("variants") or []}


def rollback_printed(ep: Mapping[str, Any], plan: RollbackPlan, manifest: bool) -> dict[str, Any]:
    """What --print prints: the JSON merge patch, or (-o yaml) the modified ModelEndpoint for Git."""
    return clean_manifest(apply_merge_patch(ep, plan.patch)) if manifest else plan.patch


def rollback_print_note(plan: RollbackPlan, namespace: str) -> str:
    return (
        f"# rollback of {plan.endpoint} to {plan.target} ({plan.version}): not applied (--print); apply "
        f"with kubectl patch modelendpoint {plan.endpoint} -n {namespace} --type merge -p '<the patch>'"
    )


def rollback_noop_text(plan: RollbackPlan) -> str:
    return f"{plan.endpoint}: all live traffic is already on {plan.target} ({plan.version})"


@dataclass(frozen=True)
class RollbackRequest:
    """Who asks for the rollback and how (--reason, --to, --force)."""

    actor: str
    reason: str  # annotated on the endpoint (rollback_reason)
    to: str | None = None
    force: bool = False


def rollback_reason(plan: RollbackPlan, reason: str | None) -> str:
    """--reason, else which version it rolls back to (as first planned)."""
    return reason or f"rollback to {plan.target} ({plan.version}) with kubectl models"


def rollback_patch(plan: RollbackPlan, ep: Mapping[str, Any], req: RollbackRequest) -> dict[str, Any]:
    """The merge patch sent: the plan's weights, guarded by the resourceVersion they were planned
    on (a 409 means: plan again), with who asked and why."""
    return {
        **plan.patch,
        "metadata": {
            "resourceVersion": meta_of(ep).get("resourceVersion"),
            "annotations": {REQUESTED_BY_ANNOTATION: req.actor, REASON_ANNOTATION: req.reason},
        },
    }


def observed_weights(obj: Mapping[str, Any] | None, router_name: str, routed: bool) -> dict[str, int]:
    """The split as observed: on the generated route (``routed``), else status.effectiveWeights."""
    if obj is None:
        return {}
    if not routed:
        return {k: int(v) for k, v in (status_of(obj).get("effectiveWeights") or {}).items()}
    from modelversioning.render.routers import get_router

    return get_router(router_name).weights(obj)


def rollback_data(
    plan: RollbackPlan, after: Mapping[str, int], seconds: float, router: str
) -> dict[str, Any]:
    """What rollback prints (-o yaml/json)."""
    return {
        "endpoint": plan.endpoint,
        "target": plan.target,
        "version": plan.version,
        "rolledBack": plan.rolled_back,
        "why": plan.why,
        "router": router,
        "before": plan.before,
        "after": after,  # (the noop's is plan.before itself: YAML prints it as an alias, as it always did)
        "seconds": round(seconds, 3),
    }


def rollback_timeout(
    plan: RollbackPlan, kind: str, timeout: float, ep_now: Mapping[str, Any], seen: str
) -> Refused:
    """Timed out (exit 3): what the route still does, and what the operator says about the target."""
    vs: dict[str, Any] = next(
        (v for v in status_of(ep_now).get("variants") or [] if v.get("name") == plan.target), {}
    )
    return Refused(
        f"timed out after {timeout:g}s: the {kind} {plan.endpoint} still routes {seen}; "
        f"{plan.target}: {vs.get('reason')}: {vs.get('message')} (the new weights are applied; the "
        "operator moves traffic once the variant is eligible)",
        code=EXIT_TIMEOUT,
    )


def rolled_back_text(plan: RollbackPlan, elapsed: float) -> str:
    return f"rolled back {plan.endpoint} to {plan.target} ({plan.version}) in {elapsed:.2f}s"


_VOLATILE_METADATA = (
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)


def clean_manifest(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as it would be committed to Git: no status, no server-populated metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    md = dict(out.get("metadata") or {})
    for k in _VOLATILE_METADATA:
        md.pop(k, None)
    ann = {
        k: v
        for k, v in (md.get("annotations") or {}).items()
        if k != LAST_APPLIED_ANNOTATION
    }
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    out["metadata"] = md
    return out


def names_of(objs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(meta_of(o).get("name")) for o in objs]
