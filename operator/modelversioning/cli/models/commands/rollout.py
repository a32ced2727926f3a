"""``kubectl models rollout status|promote|abort|retry``: follow and steer a ModelEndpoint's strategy.

promote/abort/retry never edit the spec (GitOps-safe): they set two annotations the operator acts on
once (`modelversioning.io/rollout-action` and a fresh `modelversioning.io/rollout-action-id`) plus
`modelversioning.io/requested-by` with the user the API server says you are, then wait until the
operator's status shows the action handled. Exit codes: 0 applied, 1 not applied (the rollout's
phase did not allow it; the reason is printed) or no strategy, 3 not handled within --timeout.
`status -w` exits 0 once the rollout Succeeded, 1 when it Failed or was Aborted, 3 on --timeout.
The last manual action (who, when, what it did) is part of the rollout's status and of `status`.
The views and requests are :mod:`..rollout_views`' (pure).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from modelversioning.cli.models import operations, terminal
from modelversioning.cli.models import rollout_views as views
from modelversioning.cli.models.context import globals_of, show
from modelversioning.cli.models.kube import MODELENDPOINTS
from modelversioning.cli.models.render_rollout import rollout_renderable

app = typer.Typer(
    help="Follow and steer an endpoint's progressive rollout (spec.strategy).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Endpoint = Annotated[str, typer.Argument(help="ModelEndpoint name.")]
Timeout = Annotated[float, typer.Option("--timeout")]


pause = time.sleep  # between two reads of the endpoint (tests replace this name, not time.sleep)


@app.command("status", epilog="[bold]Example[/bold]\n\n  kubectl models rollout status fraud-detector -w")
def status(
    ctx: typer.Context,
    endpoint: Endpoint,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep printing until the rollout is done.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="With -w: give up after this many seconds.")
    ] = 3600,
) -> None:
    """Phase, step, weights (declared / this step / effective / before) and each analysis run."""
    g = globals_of(ctx)
    view = views.rollout_view(g.cluster.get(MODELENDPOINTS, endpoint))
    if not watch:
        show(g, view, lambda: rollout_renderable(view))
        return
    if view["canary"] is None:
        typer.echo(f"error: ModelEndpoint {endpoint} has no spec.strategy: nothing to watch", err=True)
        raise typer.Exit(1)
    from rich.live import Live

    deadline = time.monotonic() + timeout
    with Live(rollout_renderable(view), console=terminal.console(), refresh_per_second=4) as live:
        while not views.finished(view) and time.monotonic() < deadline:
            pause(1)
            view = views.rollout_view(g.cluster.get(MODELENDPOINTS, endpoint))
            live.update(rollout_renderable(view))
    code, message = views.watch_exit(view, endpoint, timeout)
    if message:
        typer.echo(message, err=True)
    raise typer.Exit(code)


def _act(ctx: typer.Context, endpoint: str, kind: str, timeout: float) -> None:
    lines, applied = operations.rollout_action(globals_of(ctx).cluster, endpoint, kind, timeout)
    for line in lines:
        typer.echo(line)
    if not applied:
        raise typer.Exit(1)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout promote fraud-detector")
def promote(ctx: typer.Context, endpoint: Endpoint, timeout: Timeout = 30) -> None:
    """Skip the current pause (or resume a rollout paused on inconclusive measurements)."""
    _act(ctx, endpoint, "promote", timeout)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout abort fraud-detector")
def abort(ctx: typer.Context, endpoint: Endpoint, timeout: Timeout = 30) -> None:
    """Stop the rollout and put live traffic back on the split it started from."""
    _act(ctx, endpoint, "abort", timeout)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout retry fraud-detector")
def retry(ctx: typer.Context, endpoint: Endpoint, timeout: Timeout = 30) -> None:
    """Start a failed or aborted rollout again from its first step."""
    _act(ctx, endpoint, "retry", timeout)
