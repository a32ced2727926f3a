"""The ``kubectl models`` Typer app: the global options (accepted before or after the command, like
kubectl's), one place that turns refusals and API errors into exit codes (see :mod:`.errors`), and the
commands, loaded lazily from :data:`COMMANDS`: a run imports the module of the command it runs and
nothing else (``kubectl models rollback`` starts without the other commands, their API models,
MLflow's client or the tables' code), and ``kubectl models --help`` lists every command from the
one-line help kept in the table (tests/test_cli_start.py checks it against each command's own help).
Errors go to stderr; results to stdout.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from modelversioning.api.wire import REVOKED_ANNOTATION
from modelversioning.cli.models.coercion import plain_values
from modelversioning.cli.models.context import Globals, error
from modelversioning.cli.models.errors import EXIT_FAILED, Refused
from modelversioning.cli.models.kube import ClusterError
from modelversioning.cli.models.output import Output

# Global options, accepted before or after the command name (`kubectl models -n x list` and
# `kubectl models list -n x`), like kubectl's global flags.
_GLOBAL_VALUE_OPTIONS = ("--kubeconfig", "--context", "--namespace", "-n", "--output", "-o")


def _hoist_globals(group: _ModelsGroup, args: list[str]) -> list[str]:
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
    cmd = group.load(args[i])
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


@dataclass(frozen=True)
class Command:
    """Where a command lives and what ``kubectl models --help`` says about it."""

    module: str  # under modelversioning.cli.models.commands
    help: str  # the first paragraph of the command's help (test_cli_start.py keeps them equal)
    group: bool = False  # a command group (its module's whole app, under this name)


# The commands, in the order `kubectl models --help` lists them: the workflow, not the module they live
# in (revoke and ui, added last, are listed last).
COMMANDS: dict[str, Command] = {
    "register": Command(
        "register",
        "Register a model version: hash the artifact, record lineage from git, validate, print or create.",
    ),
    "list": Command(
        "inspect", "List model versions: requested and current stage, verification, who serves them, age."
    ),
    "get": Command(
        "inspect",
        "Show one version: lineage, metrics, artifact + verification, history, conditions, endpoints.",
    ),
    "describe": Command(
        "inspect",
        "Describe one version (same as get): lineage, metrics, verification, history, conditions, endpoints.",
    ),
    "history": Command(
        "inspect",
        "Every stage transition and finished rollout of every version of a model, oldest first: who, when,\n"
        "why (the audit view).",
    ),
    "promote": Command(
        "lifecycle",
        "Request a stage; wait until the operator makes it (exit 0) or says which gate blocked it, with the\n"
        "numbers (exit 1).",
    ),
    "rollback": Command(
        "lifecycle",
        "Move all live traffic back to the previous version: the target gets 100%, the other live variants "
        "0% (they stay deployed and warm).",
    ),
    "drill": Command(
        "drill",
        "Roll back to the fallback and forward again under real traffic; report the time to restore.",
    ),
    "status": Command(
        "inspect",
        "Variants: desired vs effective weights, readiness, eligibility; version, digest, lineage per share.",
    ),
    "which": Command(
        "inspect",
        "Which exact version (digest, commit, dataset) serves each share of an endpoint's traffic "
        "(= status).",
    ),
    "diff": Command(
        "inspect",
        "Lineage, hyperparameters, metrics (with deltas), runtime and artifact of two versions side by side.",
    ),
    "search": Command(
        "registry",
        "Find versions by metadata: stage, tags/labels, author, dataset, code commit, metric thresholds.",
    ),
    "compare": Command(
        "registry",
        "Versions side by side: offline metrics and production figures (requests, error ratio, latency\n"
        "p50/p99, KPIs) from the record of their serving periods.",
    ),
    "lineage": Command(
        "registry",
        "What produced a version, its stages and approvals, the endpoints and rollouts it served in.",
    ),
    "approve": Command(
        "registry",
        "Approve a version (its current digest and serving digest: image, command, env, ...) for a stage,\n"
        "as the user and groups the API server says you are.",
    ),
    "import": Command(
        "imports", "Import model versions from where they already live (MLflow), with their lineage.", True
    ),
    "rollout": Command(
        "rollout", "Follow and steer an endpoint's progressive rollout (spec.strategy).", True
    ),
    "runtimes": Command(
        "runtimes",
        "The runtime catalog (ModelRuntime, ClusterModelRuntime): convert KServe's, list ours.",
        True,
    ),
    "wave": Command(
        "wave", "Regional waves as Git changes: a plan's regions, promoted one after another.", True
    ),
    "revoke": Command(
        "lifecycle",
        f"Pull a version from every route at once: the annotation {REVOKED_ANNOTATION} (the reason) with "
        "spec.stage archived. Every endpoint drops it in its next route update; an endpoint with nothing "
        "else eligible answers 503 with x-model-unavailable: revoked, never the revoked model. Never gated "
        "(it only removes authority). Waits until no route sends it traffic and its stage is archived.",
    ),
    "ui": Command(
        "ui",
        "Serve the web view on 127.0.0.1 with your kubeconfig: fleet, models, endpoints, live rollouts,\n"
        "lineage; actions as you behind a confirmation. Prints the URL (with its token); opens nothing.",
    ),
    "quarantine": Command(
        "quarantine",
        "Quarantine every version built from a bad dataset or code commit (or one version), where you may\n"
        "change endpoints: withdrawn from every route, never promoted, no spec written; --dry-run first.",
    ),
    "unquarantine": Command(
        "quarantine",
        "Lift a quarantine (the same selector) where you may change endpoints; recorded with you and why.",
    ),
}
COMMANDS_PACKAGE = "modelversioning.cli.models.commands"
_LISTING = "kubectl-models.listing"  # ctx.meta key: help is listing the commands (their one-line help)


class _ModelsGroup(TyperGroup):
    """kubectl-style global options anywhere, the commands loaded when run (listed from
    :data:`COMMANDS` without loading them), and one place that turns errors into exit codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Any] = {}
        # what `--help` lists and typos are matched against; never run (get_command loads the real one)
        for name, cmd in COMMANDS.items():
            self.commands[name] = TyperCommand(
                name=name, help=cmd.help, rich_markup_mode=self.rich_markup_mode
            )
        plain_values(self)  # the global options' values, without pydantic (see .coercion)

    def load(self, name: str) -> Any:
        """The command `name` (None if there is none), built from its module on first use."""
        if name not in self._loaded:
            spec = COMMANDS.get(name)
            if spec is None:
                return None
            self._loaded[name] = _build(name, spec, self.rich_markup_mode)
        return self._loaded[name]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if ctx is not None and ctx.meta.get(_LISTING):
            return self.commands.get(cmd_name)
        return self.load(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta.pop(_LISTING, None)

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


def _build(name: str, spec: Command, markup: Any) -> Any:
    """The click command of `name`, as `app.add_typer(module.app)` would have made it (a group: the
    module's app under that name); only that command's parameters are built, their plain values
    coerced without pydantic (see .coercion)."""
    sub: typer.Typer = importlib.import_module(f"{COMMANDS_PACKAGE}.{spec.module}").app
    if spec.group:
        holder = typer.Typer(rich_markup_mode=markup)
        holder.add_typer(sub, name=name)
        return plain_values(typer.main.get_group(holder).commands[name])
    for info in sub.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:  # type: ignore[union-attr]
            cmd = typer.main.get_command_from_info(
                info, pretty_exceptions_short=True, rich_markup_mode=markup
            )
            return plain_values(cmd)
    raise LookupError(f"{spec.module} has no command {name!r}")


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
    "Exit codes: 0 ok, 1 failed or refused, 2 usage, 3 timed out, 4 not yet (wave next: the gate waits)."
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


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point (``kubectl-models``)."""
    app(args=list(argv) if argv is not None else None, prog_name="kubectl models")
