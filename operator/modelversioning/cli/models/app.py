"""The ``kubectl models`` Typer app, assembled from the command modules (:mod:`.commands`): the global
options (accepted before or after the command, like kubectl's), and one place that turns refusals
and API errors into exit codes (see :mod:`.errors`). Errors go to stderr; results to stdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelversioning.cli.models.commands import imports, inspect, lifecycle, register, registry, rollout
from modelversioning.cli.models.context import Globals, error
from modelversioning.cli.models.errors import EXIT_FAILED, Refused
from modelversioning.cli.models.kube import ClusterError
from modelversioning.cli.models.render import Output

# Global options, accepted before or after the command name (`kubectl models -n x list` and
# `kubectl models list -n x`), like kubectl's global flags.
_GLOBAL_VALUE_OPTIONS = ("--kubeconfig", "--context", "--namespace", "-n", "--output", "-o")


def _hoist_globals(group: Any, args: list[str]) -> list[str]:
    """Move global options that follow the command name in front of it."""
    i = 0
    while i < len(args):  # skip global options given before the command
        tok = args[i]
        if tok in _GLOBAL_VALUE_OPTIONS:
            i += 2
        elif tok.startswith("-"):
            i += 1
        else:
            break
    if i >= len(args):
        return args
    cmd = getattr(group, "commands", {}).get(args[i])
    if cmd is None:
        return args
    own_value_opts = {
        o
        for p in cmd.params
        if getattr(p, "param_type_name", "") == "option"
        and not getattr(p, "is_flag", False)
        and not getattr(p, "count", False)
        for o in p.opts
    }
    own = {o for p in cmd.params for o in getattr(p, "opts", [])}
    hoisted: list[str] = []
    rest: list[str] = []
    j = i + 1
    while j < len(args):
        tok = args[j]
        if tok == "--":
            rest += args[j:]
            break
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok
        short_attached = len(tok) > 2 and tok[:2] in ("-n", "-o") and not tok.startswith("--")
        if name in _GLOBAL_VALUE_OPTIONS and name not in own:
            take = 1 if "=" in tok else 2
            hoisted += args[j : j + take]
            j += take
            continue
        if short_attached and tok[:2] not in own:
            hoisted.append(tok)
            j += 1
            continue
        if tok in own_value_opts:
            rest += args[j : j + 2]
            j += 2
            continue
        rest.append(tok)
        j += 1
    return args[:i] + hoisted + [args[i]] + rest


# How `kubectl models --help` lists the commands: the workflow, not the module they live in.
COMMANDS = (
    "register",
    "list",
    "get",
    "describe",
    "history",
    "promote",
    "rollback",
    "status",
    "which",
    "diff",
    "search",
    "lineage",
    "approve",
    "import",
    "rollout",
)


class _ModelsGroup(TyperGroup):
    """kubectl-style global options anywhere, and one place that turns errors into exit codes."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_globals(self, list(args)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Refused as e:
            error(e.message)
            raise typer.Exit(e.code) from None
        except ClusterError as e:
            error(e.message)
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None

    def list_commands(self, ctx: Any) -> list[str]:
        """In the order of COMMANDS (the command modules group them otherwise)."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMANDS.index(n) if n in COMMANDS else len(COMMANDS))


HELP = (
    "Model versions and endpoints on Kubernetes, the kubectl way.\n\n"
    "Register versions with their lineage, see what serves which traffic, promote through the stage gates, "
    "and roll back in one command. Works as `kubectl models ...` when `kubectl-models` is on PATH."
)

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  kubectl models register fraud-detector 2.4.1 --artifact ./model.bin \\\n"
    "      --image acme/fraud:1.4 --dataset tx --dataset-version 2024-09-30 \\\n"
    "      --metric auc=0.951 --author jane --framework xgboost-2.0 --apply\n\n"
    "  kubectl models list fraud-detector\n\n"
    "  kubectl models promote fraud-detector 2.4.1 --to production --reason ok\n\n"
    "  kubectl models rollback fraud-detector\n\n"
    "  kubectl models which fraud-detector -o json\n\n"
    "Exit codes: 0 ok, 1 failed or refused, 2 usage, 3 timed out."
)

app = typer.Typer(
    cls=_ModelsGroup,
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main(
    ctx: typer.Context,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig", help="Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)."
        ),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Namespace (default: the context's namespace, else 'default')."
        ),
    ] = None,
    output: Annotated[Output | None, typer.Option("--output", "-o", help="Output format.")] = None,
) -> None:
    ctx.obj = Globals(kubeconfig, context, namespace, output)


app.add_typer(register.app)  # register
app.add_typer(inspect.app)  # list, get, describe, history, status, which, diff
app.add_typer(lifecycle.app)  # promote, revoke, rollback
app.add_typer(registry.app)  # search, lineage, approve
app.add_typer(imports.app, name="import")  # import mlflow
app.add_typer(rollout.app, name="rollout")  # rollout status|promote|abort|retry


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point (``kubectl-models``)."""
    app(args=list(argv) if argv is not None else None, prog_name="kubectl models")
