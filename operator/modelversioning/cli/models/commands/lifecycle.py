"""``kubectl models promote | revoke | rollback``: request a stage and wait for the operator's answer;
pull a version from every route at once; move all live traffic back to the previous version and wait
for the route. The plans, states and messages
are :mod:`..actions`' (pure); these commands patch, wait and print.

In an incident ``rollback``'s own start is most of the time to restore: nothing here loads what
printing needs (rich, the tables, YAML) before the command has asked the API server; see
tests/test_cli_start.py."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelversioning.api.wire import REVOKED_ANNOTATION, expected_name
from modelversioning.cli.models import actions, operations, revoke_plan
from modelversioning.cli.models.context import globals_of, show, waiting
from modelversioning.cli.models.kube import MODELENDPOINTS, MODELVERSIONS, WaitTimeout
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
    from modelversioning.cli.models import render, terminal

    g = globals_of(ctx)
    p = operations.request_promotion(g.cluster, model, version, to_stage, reason)
    if no_wait:
        text = actions.promote_requested_text(p.name, to_stage, p.actor)
        show(g, actions.promote_requested(model, version, to_stage, p.actor), lambda: _text(text))
        return
    result = operations.wait_promoted(g.cluster, p, timeout, waiting)
    data = actions.promote_outcome(model, version, to_stage, result)
    fmt = g.fmt()
    if fmt is not Output.table:
        terminal.out(terminal.dump(data, fmt))
    if result.state != "done":
        raise actions.promote_blocked(p.name, to_stage, result)
    if fmt is Output.table:
        c = terminal.console()
        if result.new_history:
            c.print(render.history_entries_table(result.new_history))
        c.print(_text(actions.promote_done_text(p.name, to_stage, result), "green"))


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
    from modelversioning.cli.models import (  # (after the first request: see the module's docstring)
        render,
        terminal,
    )

    if print_:
        printed = actions.rollback_printed(ep, plan, manifest=fmt is Output.yaml)
        terminal.out(terminal.dump(printed, Output.yaml if fmt is Output.yaml else Output.json))
        terminal.note(actions.rollback_print_note(plan, cluster.namespace))
        return
    asked = operations.RollbackAsked(reason, to, force)
    done = operations.rollback(cluster, ep, plan, asked, timeout, waiting)
    if done.plan.noop:
        data = actions.rollback_data(done.plan, done.plan.before, 0.0, done.router)
        show(g, data, lambda: _text(actions.rollback_noop_text(done.plan)))
        return
    if fmt is not Output.table:
        data = actions.rollback_data(done.plan, done.after, done.seconds, done.router)
        terminal.out(terminal.dump(data, fmt))
        return
    c = terminal.console()
    c.print(render.rollback_table(done.plan, versions, done.after))
    c.print(_text(actions.rolled_back_text(done.plan, done.seconds), "green"))
