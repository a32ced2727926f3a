"""``kubectl models promote | revoke | rollback``: request a stage and wait for the operator's answer;
pull a version from every route at once; move all live traffic back to the previous version and wait
for the route. The plans, states and messages
are :mod:`..actions`' (pure); these commands patch, wait and print.

In an incident ``rollback``'s own start is most of the time to restore: nothing here loads what
printing needs (rich, the tables, YAML) before the command has asked the API server; see
tests/test_cli_start.py."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from modelversioning.api.wire import REVOKED_ANNOTATION, expected_name
from modelversioning.cli.models import actions, revoke_plan, views
from modelversioning.cli.models.actions import PromoteResult, RollbackPlan
from modelversioning.cli.models.context import globals_of, show, waiting
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.kube import (
    MODELENDPOINTS,
    MODELVERSIONS,
    Cluster,
    ClusterError,
    Resource,
    WaitTimeout,
    route_resource,
)
from modelversioning.cli.models.output import Output

app = typer.Typer()


def _text(text: str, style: str = "") -> Any:
    """A rich Text (rich loads when something is printed)."""
    from rich.text import Text

    return Text(text, style=style)


# ---- promote ----------------------------------------------------------------------------------------
@app.command(
    epilog="[bold]Example[/bold]\n\n  kubectl models promote fraud-detector 2.4.1 --to production "
    '--reason "canary SLOs green for 24h"'
)
def promote(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    to_stage: Annotated[
        str,
        typer.Option("--to", help="Target stage: candidate, staging, production, archived, or its Model's."),
    ],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded in the stage history).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the operator.", min=0)
    ] = 60,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Request the stage and return.")] = False,
) -> None:
    """Request a stage; wait until the operator makes it (exit 0) or says which gate blocked it, with the
    numbers (exit 1)."""
    from modelversioning.cli.models import render

    g = globals_of(ctx)
    cluster = g.cluster
    name = expected_name(model, version)
    history_before = len(views.status_of(cluster.get(MODELVERSIONS, name)).get("history") or [])
    actor = cluster.current_user()
    patched = cluster.merge_patch(MODELVERSIONS, name, actions.promote_patch(to_stage, actor, reason))
    generation = int(views.meta_of(patched).get("generation") or 0)
    if no_wait:
        text = actions.promote_requested_text(name, to_stage, actor)
        show(g, actions.promote_requested(model, version, to_stage, actor), lambda: _text(text))
        return
    result = _wait_promoted(cluster, name, to_stage, generation, history_before, timeout)
    data = actions.promote_outcome(model, version, to_stage, result)
    fmt = g.fmt()
    if fmt is not Output.table:
        render.out(render.dump(data, fmt))
    if result.state != "done":
        raise actions.promote_blocked(name, to_stage, result)
    if fmt is Output.table:
        c = render.console()
        if result.new_history:
            c.print(render.history_entries_table(result.new_history))
        c.print(_text(actions.promote_done_text(name, to_stage, result), "green"))


def _wait_promoted(
    cluster: Cluster, name: str, to_stage: str, generation: int, history_before: int, timeout: float
) -> PromoteResult:
    """Until the promotion is done or blocked; Refused (exit 3) on timeout, saying where it stands."""
    state: list[PromoteResult] = []
    try:
        with waiting(f"waiting for {name} to reach {to_stage}") as say:

            def check(obj: dict[str, Any] | None) -> PromoteResult | None:
                r = actions.observe_promotion(obj, name, to_stage, generation, history_before)
                state[:] = [r]
                if r.state == "waiting":
                    say(actions.promote_waiting_text(name, to_stage, r))
                return r if r.state != "waiting" else None

            return cluster.wait(MODELVERSIONS, name, check, timeout)
    except WaitTimeout:
        raise actions.promote_timeout(name, to_stage, timeout, state[0] if state else None) from None


# ---- revoke -----------------------------------------------------------------------------------------
@app.command(
    help=f"Pull a version from every route at once: the annotation {REVOKED_ANNOTATION} (the reason) "
    "with spec.stage archived. Every endpoint drops it in its next route update; an endpoint with nothing "
    "else eligible answers 503 with x-model-unavailable: revoked, never the revoked model. Never gated "
    "(it only removes authority). Waits until no route sends it traffic and its stage is archived.",
    epilog='[bold]Example[/bold]\n\n  kubectl models revoke fraud-detector 2.4.1 --reason "CVE-2025-1234"',
)
def revoke(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required; recorded in status).")] = "",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the routes.", min=0)] = 60,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Request the revocation and return.")] = False,
) -> None:
    """Pull a version from every route at once (see --help)."""
    g = globals_of(ctx)
    cluster, why = g.cluster, revoke_plan.revoke_reason(reason)
    name = expected_name(model, version)
    before = revoke_plan.routing(cluster.get(MODELVERSIONS, name))
    cluster.merge_patch(MODELVERSIONS, name, revoke_plan.revoke_patch(cluster.current_user(), why))
    state: list[revoke_plan.RevokeState] = []
    if not no_wait:

        def check(obj: dict[str, Any] | None) -> revoke_plan.RevokeState | None:
            state[:] = [revoke_plan.revoke_state(obj)]
            return state[0] if state[0].done else None

        try:
            with waiting(f"waiting for every route to drop {name}"):
                cluster.wait(MODELVERSIONS, name, check, timeout)
        except WaitTimeout:
            raise revoke_plan.revoke_timeout(name, timeout, state[0] if state else None) from None
    last = state[0] if state else None
    text = revoke_plan.revoke_text(name, why, before, last)
    show(g, revoke_plan.revoke_data(name, why, before, last), lambda: _text(text, "green"))


# ---- rollback ---------------------------------------------------------------------------------------
@app.command(
    help="Move all live traffic back to the previous version: the target gets 100%, the other live variants "
    "0% (they stay deployed and warm).\n\n"
    "Default target: among the live variants that are eligible (verified, promoted, available: "
    "status.variants[].eligible), the one with the highest version below the newest version that takes "
    "traffic now or is declared to (spec weight > 0). E.g. stable 2.3.8 at 0% and canary 2.4.1 at 100% "
    "(or at 10%, mid-canary) -> stable. "
    "A mirror variant is never a target. With --to: that version (or variant), which must already be in "
    "spec.variants.\n\n"
    "Waits until the generated route (VirtualService or HTTPRoute; status.effectiveWeights for router "
    "none) sends 100% to it, then prints the weights before/after and the time it took.",
    epilog="[bold]Examples[/bold]\n\n  kubectl models rollback fraud-detector\n\n"
    "  kubectl models rollback fraud-detector --to 2.3.8 --print -o yaml > endpoint.yaml",
)
def rollback(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Version (or variant name) to move all live traffic "
            "to; it must already be a variant of the endpoint.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the route.", min=0)] = 30,
    print_: Annotated[
        bool,
        typer.Option(
            "--print",
            help="GitOps: print the JSON merge patch (or, with -o yaml, "
            "the modified ModelEndpoint) instead of applying it.",
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (annotated on the endpoint).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="With --to: even if that variant is not eligible.")
    ] = False,
) -> None:
    """Move all live traffic back to the previous version (see --help for how the target is chosen)."""
    g = globals_of(ctx)
    cluster, fmt = g.cluster, g.fmt()
    ep = cluster.get(MODELENDPOINTS, endpoint)
    plan = actions.plan_rollback(ep, to, force)
    versions = actions.variant_versions(ep)
    from modelversioning.cli.models import render  # (after the first request: see the module's docstring)

    if print_:
        printed = actions.rollback_printed(ep, plan, manifest=fmt is Output.yaml)
        render.out(render.dump(printed, Output.yaml if fmt is Output.yaml else Output.json))
        render.note(actions.rollback_print_note(plan, cluster.namespace))
        return
    router_name = actions.router_of(ep)
    try:
        route = route_resource(router_name)
    except ValueError as e:
        raise Refused(str(e)) from None
    if plan.noop:
        data = actions.rollback_data(plan, plan.before, 0.0, router_name)
        show(g, data, lambda: _text(actions.rollback_noop_text(plan)))
        return
    req = actions.RollbackRequest(cluster.current_user(), actions.rollback_reason(plan, reason), to, force)
    t0 = time.monotonic()
    plan = _patch(cluster, ep, plan, req)
    after = _wait_routed(cluster, plan, route, router_name, timeout)
    elapsed = time.monotonic() - t0
    if fmt is not Output.table:
        render.out(render.dump(actions.rollback_data(plan, after, elapsed, router_name), fmt))
        return
    c = render.console()
    c.print(render.rollback_table(plan, versions, after))
    c.print(_text(actions.rolled_back_text(plan, elapsed), "green"))


def _patch(
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
    cluster: Cluster, plan: RollbackPlan, route: Resource | None, router_name: str, timeout: float
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
