"""``kubectl models ui``: the web view on localhost, as you (your kubeconfig). See
:mod:`..ui.server` for what it serves and how it is protected."""

from __future__ import annotations

from typing import Annotated

import typer

from modelversioning.cli.models.context import error, globals_of
from modelversioning.cli.models.fleet import AllContexts, Contexts, FleetFile, RegionTimeout

app = typer.Typer()


@app.command(
    epilog="[bold]Examples[/bold]\n\n  kubectl models ui -n ml-prod\n\n"
    "  kubectl models ui -A --read-only --port 8642\n\n"
    "  kubectl models ui -n models --contexts us-east,eu-west,ap-south"
)
def ui(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)
    ] = 0,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace you may list (default: -n's).")
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show no actions (and refuse them).")
    ] = False,
    contexts: Contexts = None,
    all_contexts: AllContexts = False,
    fleet: FleetFile = None,
    region_timeout: RegionTimeout = 10.0,
) -> None:
    """Serve the web view on 127.0.0.1 with your kubeconfig: fleet, models, endpoints, live rollouts,
    lineage; actions as you behind a confirmation. Prints the URL (with its token); opens nothing.

    With --contexts, --all-contexts or --fleet (as `which`): a regions page, every endpoint per region
    (version, digest, weight, readiness, rollout); a region that cannot be read is Unknown."""
    try:
        from modelversioning.cli.models.ui import run
    except ImportError as e:
        error(f"the web view needs Jinja2: pip install 'modelversioning-operator[ui]' ({e})")
        raise typer.Exit(1) from None
    g = globals_of(ctx)
    namespace = None if all_namespaces else g.cluster.namespace
    regions = run.region_targets(g, contexts, all_contexts, fleet)  # a bad option: refused before serving
    run.serve(g.kubeconfig, g.context, namespace, port, read_only, g=g, regions=regions,
              region_timeout=region_timeout)  # fmt: skip
