"""``kubectl models ui``: the web view on localhost, as you (your kubeconfig). See
:mod:`..ui.server` for what it serves and how it is protected."""

from __future__ import annotations

from typing import Annotated

import typer

from modelversioning.cli.models.context import error, globals_of

app = typer.Typer()


@app.command(
    epilog="[bold]Examples[/bold]\n\n  kubectl models ui -n ml-prod\n\n"
    "  kubectl models ui -A --read-only --port 8642"
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
) -> None:
    """Serve the web view on 127.0.0.1 with your kubeconfig: fleet, models, endpoints, live rollouts,
    lineage; actions as you behind a confirmation. Prints the URL (with its token); opens nothing."""
    try:
        from modelversioning.cli.models.ui.run import serve
    except ImportError as e:
        error(f"the web view needs Jinja2: pip install 'modelversioning-operator[ui]' ({e})")
        raise typer.Exit(1) from None
    g = globals_of(ctx)
    namespace = None if all_namespaces else g.cluster.namespace
    serve(g.kubeconfig, g.context, namespace, port, read_only)
