"""``kubectl models list | get | describe | history | status | which | diff``: read-only views of
ModelVersions and ModelEndpoints. The view data is :mod:`..views`' (pure), the tables
:mod:`..render`'s; these commands only list and get."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group

from modelversioning.api.wire import expected_name
from modelversioning.cli.models import actions, render, terminal, views, which_views
from modelversioning.cli.models.context import Globals, globals_of, show
from modelversioning.cli.models.errors import EXIT_FAILED
from modelversioning.cli.models.fleet import AllContexts, Contexts, FleetFile, RegionTimeout
from modelversioning.cli.models.kube import MODELENDPOINTS, MODELVERSIONS, ClusterError, route_resource
from modelversioning.cli.models.output import Output

app = typer.Typer()

ModelName = Annotated[str, typer.Argument(help="Model name.")]
Version = Annotated[str, typer.Argument(help="Version.")]
Endpoint = Annotated[str, typer.Argument(help="ModelEndpoint name.")]
AllNamespaces = Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces.")]


@app.command("list", epilog="[bold]Example[/bold]\n\n  kubectl models list fraud-detector -n models")
def list_(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    all_namespaces: AllNamespaces = False,
) -> None:
    """List model versions: requested and current stage, verification, who serves them, age."""
    g = globals_of(ctx)
    rows = views.list_rows(g.cluster.list(MODELVERSIONS, all_namespaces=all_namespaces), model)
    if not rows and g.fmt() is Output.table:
        where = "any namespace" if all_namespaces else f"{g.cluster.namespace} namespace"
        terminal.note(f"No model versions{f' of {model}' if model else ''} found in {where}.")
        return
    show(g, rows, lambda: render.list_table(rows, all_namespaces))


def _get_version(g: Globals, model: str, version: str) -> dict[str, Any]:
    return g.cluster.get(MODELVERSIONS, expected_name(model, version))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models get fraud-detector 2.4.1 -o yaml")
def get(ctx: typer.Context, model: ModelName, version: Version) -> None:
    """Show one version: lineage, metrics, artifact + verification, history, conditions, endpoints."""
    g = globals_of(ctx)
    mv = _get_version(g, model, version)
    show(g, views.without_managed_fields(mv), lambda: render.describe_renderable(views.describe_view(mv)))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models describe fraud-detector 2.4.1")
def describe(ctx: typer.Context, model: ModelName, version: Version) -> None:
    """Describe one version (same as get): lineage, metrics, verification, history, conditions, endpoints."""
    get(ctx, model, version)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models history fraud-detector")
def history(ctx: typer.Context, model: ModelName) -> None:
    """Every stage transition and finished rollout of every version of a model, oldest first: who, when,
    why (the audit view)."""
    g = globals_of(ctx)
    mvs = [m for m in g.cluster.list(MODELVERSIONS) if views.spec_of(m).get("model") == model]
    rows = views.history_rows(mvs, model)
    if not mvs and g.fmt() is Output.table:
        terminal.note(f"No versions of model {model} found in {g.cluster.namespace} namespace.")
        return
    show(g, rows, lambda: render.history_table(rows))


def _status(ctx: typer.Context, endpoint: str) -> None:
    g = globals_of(ctx)
    cluster = g.cluster
    ep = cluster.get(MODELENDPOINTS, endpoint)
    model = views.spec_of(ep).get("model")
    mvs = [m for m in cluster.list(MODELVERSIONS) if views.spec_of(m).get("model") == model]
    router_name = actions.router_of(ep)
    route_weights: dict[str, int] | None = None
    try:
        route = route_resource(router_name)
        if route is not None:
            obj = cluster.get_or_none(route, endpoint)
            route_weights = actions.observed_weights(obj, router_name, True) if obj is not None else None
    except (ValueError, ClusterError):
        route_weights = None  # unknown router, or its CRD is not installed: show what the status says
    view = views.status_view(ep, mvs, route_weights)
    show(g, view, lambda: render.status_renderable(view))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models status fraud-detector")
def status(ctx: typer.Context, endpoint: Endpoint) -> None:
    """Variants: desired vs effective weights, readiness, eligibility; version, digest, lineage per share."""
    _status(ctx, endpoint)


@app.command(
    epilog="[bold]Examples[/bold]\n\n  kubectl models which fraud-detector -o json\n\n"
    "  kubectl models which fraud-detector --at 2026-12-07T10:03:00Z\n\n"
    "  kubectl models which fraud-detector --at -15m\n\n"
    "  kubectl models which fraud-detector --contexts us-east,eu-west,ap-south -n models\n\n"
    "  kubectl models which fraud-detector --fleet fleet.yaml --at -1h"
)
def which(
    ctx: typer.Context,
    endpoint: Endpoint,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="A past moment: RFC 3339 with a time zone, or relative such as -15m, -2h, -1h30m. Answers "
            "from the endpoint's status.routeHistory (versions, digests, weights, slots then).",
        ),
    ] = None,
    contexts: Contexts = None,
    all_contexts: AllContexts = False,
    fleet: FleetFile = None,
    region_timeout: RegionTimeout = 10.0,
) -> None:
    """Which exact version (digest, commit, dataset) serves each share of an endpoint's traffic (= status).

    With --at, which versions served at that moment (exit 1 when the record does not reach back that far).
    With --contexts, --all-contexts or --fleet, per region (one cluster each): version, digest, weight,
    readiness, rollout; a region that cannot be read is Unknown, never healthy (exit 1).
    """
    if contexts is not None or all_contexts or fleet is not None:
        _which_fleet(ctx, endpoint, at, contexts, all_contexts, fleet, region_timeout)
        return
    if at is None:
        _status(ctx, endpoint)
        return
    g = globals_of(ctx)
    moment = which_views.parse_at(at, time.time())  # a bad --at is refused before any request
    view = which_views.which_at_view(g.cluster.get(MODELENDPOINTS, endpoint), moment)
    from modelversioning.cli.models import render_which

    show(g, view, lambda: render_which.which_at_renderable(view))


def _which_fleet(
    ctx: typer.Context,
    endpoint: str,
    at: str | None,
    contexts: str | None,
    all_contexts: bool,
    fleet_file: str | None,
    timeout: float,
) -> None:
    from modelversioning.cli.models import fleet, fleet_views, render_fleet

    g = globals_of(ctx)
    moment = which_views.parse_at(at, time.time()) if at is not None else None
    targets = fleet.targets(g, contexts, all_contexts, fleet_file)
    reads = fleet.read_all(targets, lambda t: fleet.read_endpoint(g, t, endpoint), timeout)
    if moment is None:
        view = fleet_views.which_fleet(reads, endpoint)
        show(g, view, lambda: render_fleet.which_fleet_renderable(view))
    else:
        view = fleet_views.which_fleet_at(reads, endpoint, moment)
        show(g, view, lambda: render_fleet.which_fleet_at_renderable(view))
    if view["unknown"]:
        raise typer.Exit(EXIT_FAILED)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models diff fraud-detector 2.3.8 2.4.1 --changed-only")
def diff(
    ctx: typer.Context,
    model: ModelName,
    v1: Annotated[str, typer.Argument(help="Old version.")],
    v2: Annotated[str, typer.Argument(help="New version.")],
    changed_only: Annotated[bool, typer.Option("--changed-only", help="Only rows that differ.")] = False,
) -> None:
    """Lineage, hyperparameters, metrics (with deltas), runtime and artifact of two versions side by side."""
    g = globals_of(ctx)
    a, b = _get_version(g, model, v1), _get_version(g, model, v2)
    view = views.diff_view(a, b)
    if changed_only:
        view = {**view, "rows": [r for r in view["rows"] if r["changed"]]}
    show(g, view, lambda: Group(render.diff_table(view, changed_only)))
