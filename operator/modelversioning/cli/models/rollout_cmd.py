"""`kubectl models rollout status|promote|abort|retry`: follow and steer a ModelEndpoint's strategy.

promote/abort/retry never edit the spec (GitOps-safe): they set two annotations the operator acts on
once (`modelversioning.io/rollout-action` and a fresh `modelversioning.io/rollout-action-id`) plus
`modelversioning.io/requested-by` with the user the API server says you are, then wait until the
operator's status shows the action handled. Exit codes: 0 applied, 1 not applied (the rollout's
phase did not allow it; the reason is printed) or no strategy, 3 not handled within --timeout.
`status -w` exits 0 once the rollout Succeeded, 1 when it Failed or was Aborted, 3 on --timeout.
The last manual action (who, when, what it did) is part of the rollout's status and of `status`.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelversioning.api.wire import (
    REQUESTED_BY_ANNOTATION,
    ROLLOUT_ACTION_ANNOTATION,
    ROLLOUT_ACTION_ID_ANNOTATION,
)
from modelversioning.cli.models import render
from modelversioning.cli.models.kube import MODELENDPOINTS, WaitTimeout

DONE = ("Succeeded", "Failed", "Aborted")

rollout_app = typer.Typer(
    help="Follow and steer an endpoint's progressive rollout (spec.strategy).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def rollout_view(ep: dict[str, Any]) -> dict[str, Any]:
    spec, st = ep.get("spec") or {}, ep.get("status") or {}
    strategy = (spec.get("strategy") or {}).get("canary") or {}
    ro = st.get("rollout") or {}
    declared = {v["name"]: int(v.get("weight", 0)) for v in spec.get("variants") or []}
    effective = {k: int(v) for k, v in (st.get("effectiveWeights") or {}).items()}
    generation = (ep.get("metadata") or {}).get("generation")
    return {
        "endpoint": (ep.get("metadata") or {}).get("name"),
        "canary": strategy.get("variant"),
        "baseline": strategy.get("baseline"),
        "phase": ro.get("phase", "None" if not strategy else "Pending"),
        "step": ro.get("step"),
        "steps": len(strategy.get("steps") or []),
        "message": ro.get("message", ""),
        "declared": declared,
        "stepWeights": ro.get("weights") or {},
        "effective": effective,
        "startWeights": ro.get("startWeights") or {},
        "failures": ro.get("failures", 0),
        "inconclusive": ro.get("inconclusive", 0),
        "measurements": ro.get("measurements") or [],
        "lastAction": ro.get("lastAction"),
        # the operator has seen the current spec: a phase from before `kubectl apply` is not the answer
        "current": generation is None or st.get("observedGeneration") == generation,
    }


def finished(view: dict[str, Any]) -> bool:
    return bool(view["current"]) and view["phase"] in DONE


def last_action_text(a: dict[str, Any] | None) -> str:
    if not a:
        return "last action: none"
    done = "" if a.get("applied", True) else " (not applied)"
    return f"last action: {a.get('kind')} by {a.get('by')} at {a.get('at')}{done}: {a.get('message', '')}"


def rollout_renderable(view: dict[str, Any]) -> Any:
    head = Text.assemble(
        (f"{view['endpoint']}", "bold"),
        f"  canary {view['canary']} vs {view['baseline']}  ",
        (
            view["phase"],
            "green" if view["phase"] == "Succeeded" else "red" if view["phase"] in DONE else "yellow",
        ),
        f"  step {view['step']}/{view['steps']}",
        f"  failures {view['failures']}  inconclusive {view['inconclusive']}",
    )
    weights = Table(box=None, pad_edge=False)
    for col in ("variant", "declared", "step", "effective", "start"):
        weights.add_column(col)
    for name, d in view["declared"].items():
        weights.add_row(
            name,
            f"{d}%",
            f"{view['stepWeights'].get(name, '-')}",
            f"{view['effective'].get(name, 0)}%",
            f"{view['startWeights'].get(name, '-')}",
        )
    runs = Table(title="analysis", box=None, pad_edge=False)
    for col in ("at", "metric", "value", "baseline", "verdict", "why"):
        runs.add_column(col)
    for m in view["measurements"][-10:]:
        value = "-" if m.get("value") is None else f"{m['value']:.4g}"
        base = "-" if m.get("baseline") is None else f"{m['baseline']:.4g}"
        runs.add_row(
            str(m.get("at", "")), m.get("metric", ""), value, base, m.get("verdict", ""), m.get("message", "")
        )
    return Group(
        head,
        Text(view["message"]),
        Text(last_action_text(view.get("lastAction"))),
        weights,
        runs if view["measurements"] else Text("no measurements yet"),
    )


def _g(ctx: typer.Context) -> Any:
    from modelversioning.cli.models.app import _globals  # the app's global options (-n, --context, -o)

    return _globals(ctx)


@rollout_app.command(
    "status", epilog="[bold]Example[/bold]\n\n  kubectl models rollout status fraud-detector -w"
)
def status(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep printing until the rollout is done.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="With -w: give up after this many seconds.")
    ] = 3600,
) -> None:
    """Phase, step, weights (declared / this step / effective / before) and each analysis run."""
    from modelversioning.cli.models.app import _show

    g = _g(ctx)
    view = rollout_view(g.cluster.get(MODELENDPOINTS, endpoint))
    if not watch:
        _show(g, view, lambda: rollout_renderable(view))
        return
    if view["canary"] is None:
        typer.echo(f"error: ModelEndpoint {endpoint} has no spec.strategy: nothing to watch", err=True)
        raise typer.Exit(1)
    from rich.live import Live

    deadline = time.monotonic() + timeout
    with Live(rollout_renderable(view), console=render.console(), refresh_per_second=4) as live:
        while not finished(view) and time.monotonic() < deadline:
            time.sleep(1)
            view = rollout_view(g.cluster.get(MODELENDPOINTS, endpoint))
            live.update(rollout_renderable(view))
    if not finished(view):
        typer.echo(f"error: the rollout of {endpoint} is still {view['phase']} after {timeout:g}s", err=True)
        raise typer.Exit(3)
    raise typer.Exit(0 if view["phase"] == "Succeeded" else 1)


def _act(ctx: typer.Context, endpoint: str, kind: str, timeout: float) -> None:
    g = _g(ctx)
    cluster = g.cluster
    ep = cluster.get(MODELENDPOINTS, endpoint)
    if not (ep.get("spec") or {}).get("strategy"):
        typer.echo(f"error: ModelEndpoint {endpoint} has no spec.strategy", err=True)
        raise typer.Exit(1)
    action_id = uuid.uuid4().hex[:12]
    who = cluster.current_user()
    cluster.merge_patch(
        MODELENDPOINTS,
        endpoint,
        {
            "metadata": {
                "annotations": {
                    ROLLOUT_ACTION_ANNOTATION: kind,
                    ROLLOUT_ACTION_ID_ANNOTATION: action_id,
                    REQUESTED_BY_ANNOTATION: who,
                }
            }
        },
    )

    def handled(obj: dict[str, Any] | None) -> dict[str, Any] | None:
        ro = ((obj or {}).get("status") or {}).get("rollout") or {}
        return obj if ro.get("handledAction") == action_id else None

    try:
        obj = cluster.wait(MODELENDPOINTS, endpoint, handled, timeout)
    except WaitTimeout:
        typer.echo(f"error: the operator did not handle the {kind} within {timeout:g}s", err=True)
        raise typer.Exit(3) from None
    view = rollout_view(obj)
    last = view.get("lastAction") or {}
    typer.echo(f"{kind} by {who}: {endpoint} is {view['phase']} at step {view['step']}/{view['steps']}")
    typer.echo(last.get("message") or view["message"])
    if last.get("applied") is False:
        raise typer.Exit(1)


@rollout_app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout promote fraud-detector")
def promote(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    timeout: Annotated[float, typer.Option("--timeout")] = 30,
) -> None:
    """Skip the current pause (or resume a rollout paused on inconclusive measurements)."""
    _act(ctx, endpoint, "promote", timeout)


@rollout_app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout abort fraud-detector")
def abort(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    timeout: Annotated[float, typer.Option("--timeout")] = 30,
) -> None:
    """Stop the rollout and put live traffic back on the split it started from."""
    _act(ctx, endpoint, "abort", timeout)


@rollout_app.command(epilog="[bold]Example[/bold]\n\n  kubectl models rollout retry fraud-detector")
def retry(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    timeout: Annotated[float, typer.Option("--timeout")] = 30,
) -> None:
    """Start a failed or aborted rollout again from its first step."""
    _act(ctx, endpoint, "retry", timeout)
