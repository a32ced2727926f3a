"""``kubectl models search | lineage | approve``: find versions by their metadata, show where one came
from and where it went, and approve one for a stage as yourself. The views are
:mod:`..registry_views`' (pure); the commands only list, get and create."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from modelversioning.api.wire import MODEL, MODELAPPROVAL, expected_name
from modelversioning.cli.models import operations
from modelversioning.cli.models import registry_views as rv
from modelversioning.cli.models.context import globals_of, show
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.kube import MODELVERSIONS
from modelversioning.cli.models.render_registry import compare_table, lineage_renderable, search_table

app = typer.Typer()

ModelName = Annotated[str, typer.Argument(help="Model name.")]
Version = Annotated[str, typer.Argument(help="Version.")]


def parse_where(text: str) -> tuple[str, str, float]:
    """--where METRIC OP NUMBER (a usage error when it is not)."""
    try:
        return rv.parse_where(text)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command(
    epilog="[bold]Example[/bold]\n\n  kubectl models search -A --stage production --where 'auc>=0.94'"
)
def search(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Current stage (status.stage).")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help=f"Has the label {rv.TAG_PREFIX}TAG (repeatable).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="Label selector, as kubectl's -l.")
    ] = None,
    author: Annotated[str | None, typer.Option("--author", help="lineage.author contains this.")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="NAME, NAME@VERSION or NAME@SHA256 (8+ hex digits).")
    ] = None,
    commit: Annotated[
        str | None, typer.Option("--commit", help="lineage.codeCommit starts with this.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Metric threshold, e.g. 'auc>=0.94', or on the production record: "
            "'served.errorRatio<=0.01', 'served.requests>=1000', 'served.kpi.NAME>=X' (repeatable).",
        ),
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces.")] = False,
) -> None:
    """Find versions by metadata: stage, tags/labels, author, dataset, code commit, metric thresholds."""
    f = rv.Filters(
        model, stage, tuple(tag or ()), author, dataset, commit, tuple(parse_where(w) for w in where or ())
    )
    g = globals_of(ctx)
    rows = rv.search_rows(
        g.cluster.list(MODELVERSIONS, all_namespaces=all_namespaces, label_selector=label), f
    )
    show(g, rows, lambda: search_table(rows, [w[0] for w in f.where]))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models compare fraud-detector 2.3.8 2.4.1 -o json")
def compare(
    ctx: typer.Context,
    model: ModelName,
    versions: Annotated[list[str] | None, typer.Argument(help="Versions (default: all).")] = None,
) -> None:
    """Versions side by side: offline metrics and production figures (requests, error ratio, latency
    p50/p99, KPIs) from the record of their serving periods."""
    g = globals_of(ctx)
    try:
        view = rv.compare_view(model, g.cluster.list(MODELVERSIONS), tuple(versions or ()))
    except ValueError as e:
        raise Refused(str(e)) from None
    show(g, view, lambda: compare_table(view))


@app.command(
    epilog="[bold]Examples[/bold]\n\n  kubectl models lineage fraud-detector 2.4.1 -o yaml\n\n"
    "  kubectl models lineage fraud-detector 2.4.1 --contexts us-east,eu-west"
)
def lineage(
    ctx: typer.Context,
    model: ModelName,
    version: Version,
    contexts: Annotated[
        str | None, typer.Option("--contexts", help="Per region: kubeconfig contexts, comma-separated.")
    ] = None,
    all_contexts: Annotated[
        bool, typer.Option("--all-contexts", help="Every context of the kubeconfig.")
    ] = False,
    fleet_file: Annotated[
        str | None, typer.Option("--fleet", help="A Fleet or WavePlan file naming the regions.")
    ] = None,
    region_timeout: Annotated[
        float, typer.Option("--region-timeout", min=0.1, help="Seconds per region.")
    ] = 10.0,
) -> None:
    """What produced a version, its stages and approvals, the endpoints and rollouts it served in.

    With --contexts, --all-contexts or --fleet: its stage and serving periods in each region (exit 1 when
    a region cannot be read).
    """
    g = globals_of(ctx)
    if contexts is not None or all_contexts or fleet_file is not None:
        from modelversioning.cli.models import fleet, fleet_views, render_fleet

        targets = fleet.targets(g, contexts, all_contexts, fleet_file)
        name = expected_name(model, version)
        reads = fleet.read_all(
            targets, lambda t: fleet.cluster_of(g, t).get_or_none(MODELVERSIONS, name), region_timeout
        )
        view = fleet_views.lineage_fleet(reads, model, version)
        show(g, view, lambda: render_fleet.lineage_fleet_renderable(view))
        if view["unknown"]:
            raise typer.Exit(1)
        return
    mv = g.cluster.get(MODELVERSIONS, expected_name(model, version))
    approvals = [
        a
        for a in g.cluster.list(MODELAPPROVAL)
        if (a.get("spec") or {}).get("model") == model and (a.get("spec") or {}).get("version") == version
    ]
    view = rv.lineage_view(mv, approvals, g.cluster.get_or_none(MODEL, model))
    show(g, view, lambda: lineage_renderable(view))


@app.command(
    epilog="[bold]Example[/bold]\n\n  kubectl models approve fraud-detector 2.4.1 --stage production"
)
def approve(
    ctx: typer.Context,
    model: ModelName,
    version: Version,
    stage: Annotated[str, typer.Option("--stage", help="The stage you approve it for (the hop's target).")],
    comment: Annotated[str | None, typer.Option("--comment", help="Why (recorded).")] = None,
) -> None:
    """Approve a version (its current digest and serving digest: image, command, env, ...) for a stage,
    as the user and groups the API server says you are."""
    g = globals_of(ctx)
    data = operations.approve(g.cluster, model, version, stage, comment)
    show(g, data, lambda: Text(rv.approval_text(data)))
