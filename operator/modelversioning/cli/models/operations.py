"""What ``kubectl models`` does to the cluster when it acts: request a stage and wait for the operator's
answer, roll an endpoint back and wait for the route, approve a version as yourself, ask the operator
for a rollout action and wait until it handled it. One code path for every front end: the commands
(``commands/lifecycle.py``, ``registry.py``, ``rollout.py``) print what these return, the web view
(``ui/``) shows it; both act with the cluster's credentials (the user's kubeconfig), so the API server
records the same actor and its RBAC refuses the same requests.

The decisions (patches, plans, states, messages) are :mod:`.actions`', :mod:`.registry_views`' and
:mod:`.rollout_views`' (pure). No printing here: a caller that wants a spinner passes ``waiting``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from modelversioning.api.wire import MODELAPPROVAL, expected_name
from modelversioning.cli.models import actions, registry_views, rollout_views, views
from modelversioning.cli.models.actions import PromoteResult, RollbackPlan
from modelversioning.cli.models.errors import EXIT_TIMEOUT, Refused
from modelversioning.cli.models.kube import (
    MODELENDPOINTS,
    MODELVERSIONS,
    Cluster,
    ClusterError,
    Resource,
    WaitTimeout,
    route_resource,
)

Say = Callable[[str], None]
Waiting = Callable[[str], AbstractContextManager[Say]]


@contextmanager
def quiet(_label: str) -> Iterator[Say]:
    """The default ``waiting``: says nothing."""
    yield lambda _text: None


# ---- promote ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promotion:
    """A stage requested on a ModelVersion: by whom, and where its history stood before."""

    name: str
    stage: str
    actor: str
    generation: int
    history_before: int


def request_promotion(
    cluster: Cluster, model: str, version: str, stage: str, reason: str | None
) -> Promotion:
    """spec.stage with who asks and why (actions.promote_patch), as the user the API server says we are."""
    name = expected_name(model, version)
    history_before = len(views.status_of(cluster.get(MODELVERSIONS, name)).get("history") or [])
    actor = cluster.current_user()
    patched = cluster.merge_patch(MODELVERSIONS, name, actions.promote_patch(stage, actor, reason))
    generation = int(views.meta_of(patched).get("generation") or 0)
    return Promotion(name, stage, actor, generation, history_before)


def wait_promoted(cluster: Cluster, p: Promotion, timeout: float, waiting: Waiting = quiet) -> PromoteResult:
    """Until the promotion is done or blocked; Refused (exit 3) on timeout, saying where it stands."""
    state: list[PromoteResult] = []
    try:
        with waiting(f"waiting for {p.name} to reach {p.stage}") as say:

            def check(obj: dict[str, Any] | None) -> PromoteResult | None:
                r = actions.observe_promotion(obj, p.name, p.stage, p.generation, p.history_before)
                state[:] = [r]
                if r.state == "waiting":
                    say(actions.promote_waiting_text(p.name, p.stage, r))
                return r if r.state != "waiting" else None

            return cluster.wait(MODELVERSIONS, p.name, check, timeout)
    except WaitTimeout:
        raise actions.promote_timeout(p.name, p.stage, timeout, state[0] if state else None) from None


def promote(
    cluster: Cluster, model: str, version: str, stage: str, reason: str | None, timeout: float
) -> str:
    """Request and wait: the line to show when it is done; Refused when a gate blocks it or time is up."""
    p = request_promotion(cluster, model, version, stage, reason)
    result = wait_promoted(cluster, p, timeout)
    if result.state != "done":
        raise actions.promote_blocked(p.name, stage, result)
    return f"{actions.promote_done_text(p.name, stage, result)} (requested by {p.actor})"


# ---- rollback ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackAsked:
    """What the user gave: --reason, --to, --force."""

    reason: str | None = None
    to: str | None = None
    force: bool = False


@dataclass(frozen=True)
class RolledBack:
    plan: RollbackPlan
    after: dict[str, int]
    seconds: float
    router: str


def rollback(
    cluster: Cluster,
    ep: dict[str, Any],
    plan: RollbackPlan,
    req: RollbackAsked,
    timeout: float,
    waiting: Waiting = quiet,
) -> RolledBack:
    """Apply ``plan`` (planned on ``ep`` with ``req.to``/``req.force``) as the user, with ``req.reason``,
    and wait until the route sends 100% to its target (re-planned on a conflict); a no-op plan returns
    at once with the weights as they are."""
    router_name = actions.router_of(ep)
    try:
        route = route_resource(router_name)
    except ValueError as e:
        raise Refused(str(e)) from None
    if plan.noop:
        return RolledBack(plan, plan.before, 0.0, router_name)
    request = actions.RollbackRequest(
        cluster.current_user(), actions.rollback_reason(plan, req.reason), req.to, req.force
    )
    t0 = time.monotonic()
    plan = _patch_rollback(cluster, ep, plan, request)
    after = _wait_routed(cluster, plan, route, router_name, timeout, waiting)
    return RolledBack(plan, after, time.monotonic() - t0, router_name)


def _patch_rollback(
    cluster: Cluster, ep: dict[str, Any], plan: RollbackPlan, req: actions.RollbackRequest
) -> RollbackPlan:
    """Send the plan's patch (guarded by resourceVersion); on a conflict plan again on the new state
    (three attempts). The plan that was applied."""
    for attempt in range(3):
        try:
            cluster.merge_patch(MODELENDPOINTS, plan.endpoint, actions.rollback_patch(plan, ep, req))
            break
        except ClusterError as e:
            if e.status != 409 or attempt == 2:
                raise
            ep = cluster.get(MODELENDPOINTS, plan.endpoint)  # changed meanwhile: plan again on the new state
            plan = actions.plan_rollback(ep, req.to, req.force)
    return plan


def _wait_routed(
    cluster: Cluster,
    plan: RollbackPlan,
    route: Resource | None,
    router_name: str,
    timeout: float,
    waiting: Waiting,
) -> dict[str, int]:
    """Until the route (or status.effectiveWeights for router none) sends 100% to the target; Refused
    (exit 3) on timeout with what it still routes and why."""
    routed = route is not None

    def check(obj: dict[str, Any] | None) -> dict[str, int] | None:
        if obj is None:
            return None
        weights = actions.observed_weights(obj, router_name, routed)
        return weights if actions.rollback_done(weights, plan.target) else None

    watched: Resource = route or MODELENDPOINTS
    try:
        with waiting(f"waiting for the {watched.kind} {plan.endpoint} to send 100% to {plan.target}"):
            return cluster.wait(watched, plan.endpoint, check, timeout)
    except WaitTimeout as e:
        from modelversioning.cli.models import render

        now = cluster.get_or_none(MODELENDPOINTS, plan.endpoint) or {}
        seen = render.weights_text(actions.observed_weights(e.last, router_name, routed))
        raise actions.rollback_timeout(plan, watched.kind, timeout, now, seen) from None


# ---- approve ----------------------------------------------------------------------------------------
def approve(cluster: Cluster, model: str, version: str, stage: str, comment: str | None) -> dict[str, Any]:
    """A ModelApproval of the version's current digest and serving digest, as the user and groups the
    API server says we are (admission checks both); what ``approve`` prints (-o json)."""
    mv = cluster.get(MODELVERSIONS, expected_name(model, version))
    sha = str(((mv.get("spec") or {}).get("artifact") or {}).get("sha256", ""))
    serving = str((mv.get("status") or {}).get("servingDigest") or "")
    if not serving:
        raise Refused(
            f"{model} {version} has no status.servingDigest yet (the operator records it): nothing to "
            "approve until it has looked at the version"
        )
    user, groups = cluster.current_identity()
    body = registry_views.approval_body(model, version, sha, stage, user, comment, serving, groups)
    try:
        cluster.create(MODELAPPROVAL, body)
        result = "approved"
    except ClusterError as e:
        if e.status != 409:
            raise Refused(f"approval refused: {e}") from None
        result = "already approved"
    return registry_views.approval_outcome(body, result)


# ---- rollout promote / abort / retry ------------------------------------------------------------------
ROLLOUT_ACTIONS = ("promote", "abort", "retry")


def rollout_action(cluster: Cluster, endpoint: str, kind: str, timeout: float) -> tuple[list[str], bool]:
    """Ask the operator for ``kind`` once (a fresh action id, the user as requested-by) and wait until
    its status says it handled it: (the lines to show, whether it was applied). Refused: no strategy
    (exit 1), not handled in time (exit 3)."""
    if kind not in ROLLOUT_ACTIONS:
        raise Refused(f"unknown rollout action {kind!r} (one of {', '.join(ROLLOUT_ACTIONS)})")
    ep = cluster.get(MODELENDPOINTS, endpoint)
    if not (ep.get("spec") or {}).get("strategy"):
        raise Refused(f"ModelEndpoint {endpoint} has no spec.strategy")
    action_id = uuid.uuid4().hex[:12]
    who = cluster.current_user()
    cluster.merge_patch(MODELENDPOINTS, endpoint, rollout_views.action_patch(kind, action_id, who))

    def check(obj: dict[str, Any] | None) -> dict[str, Any] | None:
        return obj if rollout_views.handled(obj, action_id) else None

    try:
        obj = cluster.wait(MODELENDPOINTS, endpoint, check, timeout)
    except WaitTimeout:
        raise Refused(
            f"the operator did not handle the {kind} within {timeout:g}s", code=EXIT_TIMEOUT
        ) from None
    return rollout_views.action_outcome(kind, who, endpoint, rollout_views.rollout_view(obj))
