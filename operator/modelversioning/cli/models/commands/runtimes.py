"""``kubectl models runtimes convert | list``: bring a KServe runtime catalog over, and show ours.

``convert -f kserve.yaml [-f more.yaml]`` reads KServe ServingRuntime / ClusterServingRuntime
manifests (multi-document YAML, ``-`` for stdin) and prints our ModelRuntime / ClusterModelRuntime
manifests on stdout (pipe them to ``kubectl apply -f -``); every field it leaves out or rewrites is a
warning on stderr. The conversion is :mod:`..runtime_convert`'s (pure).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelversioning.api.wire import CLUSTERMODELRUNTIME, MODELRUNTIME
from modelversioning.cli.models.context import globals_of, show
from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.output import Output

app = typer.Typer(
    help="The runtime catalog (ModelRuntime, ClusterModelRuntime): convert KServe's, list ours.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _read(path: str) -> list[tuple[str, Any]]:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs = list(yaml.safe_load_all(text))
    except OSError as e:
        raise Refused(f"cannot read {path}: {e.strerror or e}", EXIT_USAGE) from None
    except yaml.YAMLError as e:
        raise Refused(f"{path} is not YAML: {e}", EXIT_USAGE) from None
    return [(f"{path}#{i + 1}: ", d) for i, d in enumerate(docs)]


@app.command(
    "convert",
    epilog="[bold]Example[/bold]\n\n  kubectl models runtimes convert -f kserve-mlserver.yaml \\\n"
    "      | kubectl apply -f -",
)
def convert(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Option(
            "--filename", "-f", help="KServe ServingRuntime/ClusterServingRuntime YAML ('-': stdin)."
        ),
    ],
) -> None:
    """Convert KServe ServingRuntime/ClusterServingRuntime manifests to ModelRuntime/ClusterModelRuntime
    (stdout); what is left out or rewritten is a warning on stderr."""
    import yaml
    from rich.text import Text

    from modelversioning.cli.models import runtime_convert as rc  # the API models: loaded when run
    from modelversioning.cli.models import terminal

    docs = [d for f in files for d in _read(f)]
    try:
        objs, warnings = rc.convert_all(docs)
    except rc.NotConvertible as e:
        raise Refused(str(e)) from None
    for w in warnings:
        terminal.console(stderr=True).print(Text(f"warning: {w}", style="yellow"), soft_wrap=True)
    g = globals_of(ctx)
    if g.fmt(Output.yaml) is Output.json:
        terminal.out(terminal.dump({"apiVersion": "v1", "kind": "List", "items": objs}, Output.json))
    else:
        terminal.out("---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs))


@app.command("list", epilog="[bold]Example[/bold]\n\n  kubectl models runtimes list -A")
def list_(
    ctx: typer.Context,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces.")] = False,
) -> None:
    """The catalog a version of this namespace chooses from: its ModelRuntimes, then ClusterModelRuntimes."""
    from modelversioning.cli.models import runtime_convert as rc

    g = globals_of(ctx)
    objs = [
        {**o, "kind": MODELRUNTIME.kind} for o in g.cluster.list(MODELRUNTIME, all_namespaces=all_namespaces)
    ]
    # cluster-scoped: listed without a namespace
    objs += [
        {**o, "kind": CLUSTERMODELRUNTIME.kind}
        for o in g.cluster.list(CLUSTERMODELRUNTIME, all_namespaces=True)
    ]
    rows = rc.rows(objs)
    show(g, rows, lambda: _table(rows))


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in ("KIND", "NAMESPACE", "NAME", "FORMATS", "PROTOCOLS", "IMAGE", "DISABLED"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            *(Text(str(x)) for x in (r["kind"], r["namespace"] or "-", r["name"])),
            Text(", ".join(r["formats"]) or "<none>"),
            Text(",".join(r["protocols"]) or "v1"),
            Text(r["image"]),
            Text("yes" if r["disabled"] else ""),
        )
    return t
