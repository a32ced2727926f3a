"""The ``kubectl models`` commands (Typer). API access lives in :mod:`.kube`, decisions in
:mod:`.actions`, views in :mod:`.views`, formatting in :mod:`.render`.

Exit codes: 0 ok; 1 the operation failed or was refused (API error, promotion blocked, no rollback
target, dirty git tree...); 2 usage (bad or missing options, incomplete metadata); 3 timed out.
Errors go to stderr; results to stdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Group
from rich.status import Status
from rich.text import Text
from typer.core import TyperGroup

from modelversioning.api.modelversion import expected_name
from modelversioning.api.routers import DEFAULT_ROUTER
from modelversioning.api.wire import (
    MODELVERSION,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
)
from modelversioning.cli.models import actions, render, views
from modelversioning.cli.models.actions import Refused, RegisterInputs
from modelversioning.cli.models.kube import (
    MODELENDPOINTS,
    MODELVERSIONS,
    Cluster,
    ClusterError,
    Resource,
    WaitTimeout,
    route_resource,
)
from modelversioning.cli.models.render import Output

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3

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


class _ModelsGroup(TyperGroup):
    """kubectl-style global options anywhere, and one place that turns errors into exit codes."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_globals(self, list(args)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Refused as e:
            _error(e.message)
            raise typer.Exit(e.code) from None
        except ClusterError as e:
            _error(e.message)
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            _error("interrupted")
            raise typer.Exit(130) from None


def _error(message: str) -> None:
    text = message if message.startswith("Error from server") else f"error: {message}"
    render.console(stderr=True).print(Text(text, style="red"), soft_wrap=True)


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


@dataclass
class Globals:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    output: Output | None = None
    _cluster: Cluster | None = field(default=None, repr=False)

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.kubeconfig, self.context, self.namespace)
        return self._cluster

    def fmt(self, default: Output = Output.table) -> Output:
        return self.output or default


def _globals(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    return obj if obj is not None else Globals()


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


def _show(g: Globals, data: Any, table: Callable[[], Any], default: Output = Output.table) -> None:
    fmt = g.fmt(default)
    if fmt is Output.table:
        render.console().print(table())
    else:
        render.out(render.dump(data, fmt))


# ---- register ---------------------------------------------------------------------------------------
class StageChoice(StrEnum):
    candidate = "candidate"
    staging = "staging"
    production = "production"
    archived = "archived"


def _file_uri(path: Path) -> str:
    real = path.resolve()
    return real.as_uri() + ("/" if real.is_dir() else "")


def _local_path(artifact: str) -> Path | None:
    """The local path behind --artifact (a path or a file:// URI); None for a remote URI."""
    if "://" not in artifact:
        return Path(artifact)
    parts = urlsplit(artifact)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return None


def _digest_local(path: Path, progress: Callable[[int, int | None], None] | None) -> Any:
    from modelversioning.artifacts import digest_local

    return digest_local(path, progress=progress)


def _hash_artifact(artifact: str, local: Path | None) -> tuple[str, int]:
    from modelversioning.artifacts import ArtifactError, compute_digest

    t0 = time.monotonic()
    shown = str(local) if local is not None else artifact
    try:
        with render.progress(f"sha256 {shown}") as cb:
            d = _digest_local(local, cb) if local is not None else compute_digest(artifact, progress=cb)
    except ArtifactError as e:
        raise Refused(f"cannot hash the artifact: {e}") from None
    files = f", {d.files} files" if d.kind == "directory" else ""
    took = time.monotonic() - t0
    render.note(f"sha256 of {shown}: {d.sha256} ({d.size_bytes} bytes{files}) in {took:.1f}s")
    return str(d.sha256), int(d.size_bytes)


@app.command(
    epilog="[bold]Example[/bold]\n\n  kubectl models register fraud-detector 2.4.1 --artifact "
    "./out/model.bin --uri s3://models/fraud-detector/2.4.1/model.bin --image "
    "ghcr.io/acme/fraud-server:1.4 --dataset transactions --dataset-version 2024-09-30 --metrics "
    "eval.json --hyperparameters params.json --author jane@acme.com --framework xgboost-2.0.3 > "
    "fraud-detector-2.4.1.yaml"
)
def register(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name (DNS label).")],
    version: Annotated[str, typer.Argument(help="Semantic version MAJOR.MINOR.PATCH[-prerelease].")],
    artifact: Annotated[
        str | None,
        typer.Option("--artifact", help="Local file/directory, or a remote URI (s3://, gs://, https://...)."),
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Digest of the artifact (computed when omitted).")
    ] = None,
    uri: Annotated[
        str | None,
        typer.Option(
            "--uri",
            help="For a local --artifact: the remote location the "
            "bytes were uploaded to (default: its file:// URI).",
        ),
    ] = None,
    image: Annotated[str | None, typer.Option("--image", help="Serving container image.")] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Serving port (default 8080).", min=1, max=65535)
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Training dataset name.")] = None,
    dataset_version: Annotated[str | None, typer.Option("--dataset-version", help="Dataset version.")] = None,
    dataset_sha256: Annotated[str | None, typer.Option("--dataset-sha256", help="Dataset digest.")] = None,
    dataset_uri: Annotated[str | None, typer.Option("--dataset-uri", help="Where the dataset lives.")] = None,
    metrics_file: Annotated[
        Path | None, typer.Option("--metrics", help="JSON object of evaluation metrics.")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Metric k=v (repeatable).")] = None,
    hyperparameter: Annotated[
        list[str] | None, typer.Option("--hyperparameter", help="Hyperparameter k=v (repeatable).")
    ] = None,
    hyperparameters_file: Annotated[
        Path | None, typer.Option("--hyperparameters", help="JSON object of hyperparameters.")
    ] = None,
    environment: Annotated[
        list[str] | None,
        typer.Option("--environment", help="Training environment k=v, e.g. python=3.11.9 (repeatable)."),
    ] = None,
    author: Annotated[str | None, typer.Option("--author", help="Who trained it.")] = None,
    framework: Annotated[str | None, typer.Option("--framework", help="e.g. xgboost-2.0.3.")] = None,
    trained_at: Annotated[
        str | None, typer.Option("--trained-at", help="RFC 3339 time (default: now).")
    ] = None,
    code_repository: Annotated[
        str | None,
        typer.Option("--code-repository", help="Training code repository (default: git remote 'origin')."),
    ] = None,
    code_commit: Annotated[
        str | None,
        typer.Option("--code-commit", help="Training code commit (default: HEAD of the checkout)."),
    ] = None,
    code_dir: Annotated[Path, typer.Option("--code-dir", help="The training code's git checkout.")] = Path(
        "."
    ),
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Register from a checkout with uncommitted changes (recorded as environment.gitDirty).",
        ),
    ] = False,
    fmt_: Annotated[
        str | None, typer.Option("--format", help="Artifact format, e.g. onnx, safetensors.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="Free text.")] = None,
    stage: Annotated[StageChoice, typer.Option("--stage", help="Requested stage.")] = StageChoice.candidate,
    apply: Annotated[
        bool, typer.Option("--apply", help="Create it in the cluster (default: print the YAML for GitOps).")
    ] = False,
    dvc: Annotated[
        str | None,
        typer.Option(
            "--dvc",
            help="Fill the artifact (md5-checked), --uri (its object in the DVC remote), the dataset, "
            "hyperparameters and metrics from DVC: a .dvc file or dvc.lock[:STAGE[:OUT]] (docs/import.md).",
        ),
    ] = None,
) -> None:
    """Register a model version: hash the artifact, record lineage from git, validate, print or create."""
    g = _globals(ctx)
    errors = actions.identity_errors(model, version)
    if errors:
        raise Refused("; ".join(errors), code=EXIT_USAGE)
    metrics = actions.load_mapping(metrics_file, "--metrics", numeric=True) if metrics_file else {}
    metrics.update(actions.parse_pairs(metric or [], "--metric", numeric=True))
    hyper = (
        actions.load_mapping(hyperparameters_file, "--hyperparameters", numeric=False)
        if hyperparameters_file
        else {}
    )
    hyper.update(actions.parse_pairs(hyperparameter or [], "--hyperparameter", numeric=False))
    env = {
        k: str(v) for k, v in actions.parse_pairs(environment or [], "--environment", numeric=False).items()
    }
    dvc_info = None
    if dvc is not None:  # importers/dvc.py: explicit options win, DVC fills the rest
        from modelversioning.cli.models.importers import dvc as dvcmeta

        dvc_info = dvcmeta.read(dvc, dataset)
        filled = dvcmeta.fill(
            dvc_info,
            artifact=artifact,
            uri=uri,
            dataset=dataset,
            dataset_version=dataset_version,
            dataset_uri=dataset_uri,
        )
        artifact, uri, dataset = filled.artifact, filled.uri, filled.dataset
        dataset_version, dataset_uri = filled.dataset_version, filled.dataset_uri
        metrics, hyper = {**dvc_info.metrics, **metrics}, {**dvc_info.params, **hyper}
        for n in [*dvc_info.notes, dvcmeta.summary(dvc_info, filled)]:
            render.note(n)
        if not filled.hash_from_dvc:
            dvc_info = None

    from modelversioning.cli.models.gitinfo import git_info

    info = git_info(code_dir) if not (code_commit and code_repository) else None
    derived_commit = False
    if not code_commit and info is not None and info.commit:
        code_commit, derived_commit = info.commit, True
    if not code_repository and info is not None and info.remote:
        code_repository = info.remote
    inp = RegisterInputs(
        model=model,
        version=version,
        artifact=artifact,
        image=image,
        port=port,
        dataset=dataset,
        dataset_version=dataset_version,
        dataset_sha256=dataset_sha256,
        dataset_uri=dataset_uri,
        metrics=metrics,
        hyperparameters=hyper,
        author=author,
        framework=framework,
        trained_at=trained_at or actions.now_rfc3339(),
        code_repository=code_repository,
        code_commit=code_commit,
        environment=env,
        stage=stage.value,
        format=fmt_,
        description=description,
    )
    missing = actions.missing_metadata(inp)
    if missing:
        raise Refused("incomplete metadata; missing: " + ", ".join(missing), code=EXIT_USAGE)
    if derived_commit and info is not None and info.is_dirty:
        if not allow_dirty:
            shown = ", ".join(line[3:] for line in info.dirty[:5]) + (", ..." if len(info.dirty) > 5 else "")
            raise Refused(
                f"the training code checkout {info.root} has uncommitted changes ({len(info.dirty)}: "
                f"{shown}); commit {str(code_commit)[:12]} is not the code that trained this model. "
                "Commit or stash them, or pass --allow-dirty"
            )
        inp.environment.setdefault("gitDirty", "true")
        render.note(
            f"warning: {info.root} has uncommitted changes; recorded lineage.environment.gitDirty=true"
        )
    for m in actions.missing_for_production(inp):
        render.note(f"note: production will require {m}")

    assert artifact is not None
    local = _local_path(artifact)
    if local is not None and not local.exists():
        raise Refused(f"artifact {local}: no such file or directory")
    if uri is not None and "://" not in uri:
        raise Refused(
            f"--uri {uri!r} must be an absolute URI with a scheme, e.g. s3://bucket/key", code=EXIT_USAGE
        )
    if uri is None:
        uri = _file_uri(local) if local is not None else artifact
    # Everything but the digest is checked before hashing (which may take a while).
    actions.validate_manifest(actions.build_manifest(inp, uri=uri, sha256=(sha256 or "0" * 64).lower()))
    size: int | None = None
    if sha256:
        sha256 = sha256.lower().removeprefix("sha256:")
        if local is not None and local.is_file():
            size = local.stat().st_size
    elif dvc_info is not None:
        from modelversioning.cli.models.importers.dvc import hash_verified

        with render.progress(f"sha256 + md5 {artifact}") as cb:
            sha256, size = hash_verified(dvc_info, cb)
        render.note(f"sha256 of {artifact}: {sha256} ({size} bytes; md5 is the one DVC recorded)")
    else:
        sha256, size = _hash_artifact(artifact, local)
    annotations: dict[str, str] = {}
    cluster = g.cluster if apply else None
    if cluster is not None:
        annotations = {
            REQUESTED_BY_ANNOTATION: cluster.current_user(),
            REQUESTED_STAGE_ANNOTATION: inp.stage,
        }
    namespace = cluster.namespace if cluster is not None else (g.namespace or None)
    doc = actions.build_manifest(
        inp, uri=uri, sha256=sha256, size_bytes=size, annotations=annotations, namespace=namespace
    )
    actions.validate_manifest(doc)
    if cluster is None:
        render.out(render.dump(doc, Output.json if g.fmt(Output.yaml) is Output.json else Output.yaml))
        return
    try:
        created = cluster.create(MODELVERSIONS, doc)
    except ClusterError as e:
        if e.status == 409:
            raise Refused(
                f"ModelVersion {doc['metadata']['name']} already exists in namespace {cluster.namespace}; "
                "versions are immutable: register a new version"
            ) from None
        raise
    fmt = g.fmt()
    if fmt is Output.table:
        render.out(f"{MODELVERSION.singular}.{MODELVERSION.group}/{created['metadata']['name']} created\n")
        render.note(f"the operator now verifies the artifact; see: kubectl models get {model} {version}")
    else:
        render.out(render.dump(_strip(created), fmt))


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    md = dict(obj.get("metadata") or {})
    md.pop("managedFields", None)
    return {**obj, "metadata": md}


# ---- list / get / describe / history ----------------------------------------------------------------
@app.command("list", epilog="[bold]Example[/bold]\n\n  kubectl models list fraud-detector -n models")
def list_(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces.")] = False,
) -> None:
    """List model versions: requested and current stage, verification, who serves them, age."""
    g = _globals(ctx)
    rows = views.list_rows(g.cluster.list(MODELVERSIONS, all_namespaces=all_namespaces), model)
    if not rows and g.fmt() is Output.table:
        where = "any namespace" if all_namespaces else f"{g.cluster.namespace} namespace"
        render.note(f"No model versions{f' of {model}' if model else ''} found in {where}.")
        return
    _show(g, rows, lambda: render.list_table(rows, all_namespaces))


def _get_version(g: Globals, model: str, version: str) -> dict[str, Any]:
    return g.cluster.get(MODELVERSIONS, expected_name(model, version))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models get fraud-detector 2.4.1 -o yaml")
def get(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
) -> None:
    """Show one version: lineage, metrics, artifact + verification, history, conditions, endpoints."""
    g = _globals(ctx)
    mv = _get_version(g, model, version)
    _show(g, _strip(mv), lambda: render.describe_renderable(views.describe_view(mv)))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models describe fraud-detector 2.4.1")
def describe(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
) -> None:
    """Describe one version (same as get): lineage, metrics, verification, history, conditions, endpoints."""
    get(ctx, model, version)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models history fraud-detector")
def history(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
) -> None:
    """Every stage transition and finished rollout of every version of a model, oldest first: who, when,
    why (the audit view)."""
    g = _globals(ctx)
    mvs = [m for m in g.cluster.list(MODELVERSIONS) if views.spec_of(m).get("model") == model]
    rows = views.history_rows(mvs, model)
    if not mvs and g.fmt() is Output.table:
        render.note(f"No versions of model {model} found in {g.cluster.namespace} namespace.")
        return
    _show(g, rows, lambda: render.history_table(rows))


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
    g = _globals(ctx)
    cluster = g.cluster
    name = expected_name(model, version)
    mv = cluster.get(MODELVERSIONS, name)
    history_before = len(views.status_of(mv).get("history") or [])
    actor = cluster.current_user()
    patched = cluster.merge_patch(MODELVERSIONS, name, actions.promote_patch(to_stage, actor, reason))
    generation = int(views.meta_of(patched).get("generation") or 0)
    fmt = g.fmt()
    if no_wait:
        requested: dict[str, Any] = {
            "model": model,
            "version": version,
            "requested": to_stage,
            "actor": actor,
            "result": "requested",
        }
        _show(
            g,
            requested,
            lambda: Text(
                f"{name}: requested {to_stage} (by {actor}); the operator moves status.stage "
                "when the gates pass"
            ),
        )
        return
    err = render.console(stderr=True)
    state: list[actions.PromoteResult] = []
    spinner: Status | None = None

    def check(obj: dict[str, Any] | None) -> actions.PromoteResult | None:
        if obj is None:
            return actions.PromoteResult("blocked", None, "Deleted", f"ModelVersion {name} was deleted")
        r = actions.promote_state(obj, to_stage, generation, history_before)
        state[:] = [r]
        if r.state == "waiting" and spinner is not None:
            spinner.update(
                f"waiting for {name} to reach {to_stage} (stage {r.stage}; {r.reason}: {r.message})"
            )
        return r if r.state != "waiting" else None

    try:
        if err.is_terminal:
            with err.status(f"waiting for {name} to reach {to_stage}") as spinner:
                result = cluster.wait(MODELVERSIONS, name, check, timeout)
        else:
            result = cluster.wait(MODELVERSIONS, name, check, timeout)
    except WaitTimeout:
        last = state[0] if state else None
        where = f"; stage is {last.stage} ({last.reason}: {last.message})" if last else ""
        raise Refused(
            f"timed out after {timeout:g}s waiting for {name} to reach {to_stage}{where}", code=EXIT_TIMEOUT
        ) from None
    data: dict[str, Any] = {
        "model": model,
        "version": version,
        "requested": to_stage,
        "stage": result.stage,
        "result": "promoted" if result.state == "done" else "blocked",
        "reason": result.reason or None,
        "message": result.message or None,
        "history": list(result.new_history),
    }
    if result.state == "done":
        if fmt is Output.table:
            c = render.console()
            if result.new_history:
                c.print(render.history_entries_table(result.new_history))
                c.print(Text(f"{name} is now {to_stage}", style="green"))
            else:
                c.print(Text(f"{name} is already {to_stage}", style="green"))
        else:
            render.out(render.dump(data, fmt))
        return
    if fmt is not Output.table:
        render.out(render.dump(data, fmt))
    moved = ""
    if result.new_history:
        moved = f" (moved {', '.join(views_step(h) for h in result.new_history)})"
    raise Refused(
        f"{name} was not promoted to {to_stage}; it stays {result.stage}{moved}. "
        f"{result.reason}: {result.message}"
    )


def views_step(h: dict[str, Any]) -> str:
    return f"{h.get('from') or '(new)'} -> {h.get('to')}"


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
    g = _globals(ctx)
    cluster = g.cluster
    fmt = g.fmt()
    ep = cluster.get(MODELENDPOINTS, endpoint)
    plan = actions.plan_rollback(ep, to, force)
    versions = {str(v.get("name")): str(v.get("version")) for v in views.spec_of(ep).get("variants") or []}
    if print_:
        if fmt is Output.yaml:
            patched = actions.clean_manifest(actions.apply_merge_patch(ep, plan.patch))
            render.out(render.dump(patched, Output.yaml))
        else:
            render.out(render.dump(plan.patch, Output.json))
        render.note(
            f"# rollback of {endpoint} to {plan.target} ({plan.version}): not applied (--print); apply with "
            f"kubectl patch modelendpoint {endpoint} -n {cluster.namespace} --type merge -p '<the patch>'"
        )
        return
    router_name = str((views.spec_of(ep).get("routing") or {}).get("router") or DEFAULT_ROUTER)
    try:
        route = route_resource(router_name)
    except ValueError as e:
        raise Refused(str(e)) from None
    if plan.noop:
        _show(
            g,
            _rollback_data(plan, plan.before, 0.0, router_name),
            lambda: Text(f"{endpoint}: all live traffic is already on {plan.target} ({plan.version})"),
        )
        return
    actor = cluster.current_user()
    why = reason or f"rollback to {plan.target} ({plan.version}) with kubectl models"
    t0 = time.monotonic()
    for attempt in range(3):
        patch = {
            **plan.patch,
            "metadata": {
                "resourceVersion": views.meta_of(ep).get("resourceVersion"),
                "annotations": {REQUESTED_BY_ANNOTATION: actor, REASON_ANNOTATION: why},
            },
        }
        try:
            cluster.merge_patch(MODELENDPOINTS, endpoint, patch)
            break
        except ClusterError as e:
            if e.status != 409 or attempt == 2:
                raise
            ep = cluster.get(MODELENDPOINTS, endpoint)  # changed meanwhile: plan again on the new state
            plan = actions.plan_rollback(ep, to, force)
    target = plan.target

    def check(obj: dict[str, Any] | None) -> dict[str, int] | None:
        if obj is None:
            return None
        if route is None:
            weights = {k: int(v) for k, v in (views.status_of(obj).get("effectiveWeights") or {}).items()}
        else:
            from modelversioning.render.routers import get_router

            weights = get_router(router_name).weights(obj)
        return weights if actions.rollback_done(weights, target) else None

    watched: Resource = route or MODELENDPOINTS
    err = render.console(stderr=True)
    try:
        if err.is_terminal:
            with err.status(f"waiting for the {watched.kind} {endpoint} to send 100% to {target}"):
                after = cluster.wait(watched, endpoint, check, timeout)
        else:
            after = cluster.wait(watched, endpoint, check, timeout)
    except WaitTimeout as e:
        now = cluster.get_or_none(MODELENDPOINTS, endpoint) or {}
        vs: dict[str, Any] = next(
            (v for v in views.status_of(now).get("variants") or [] if v.get("name") == target), {}
        )
        seen = render.weights_text(_weights_of(e.last, route, router_name))
        raise Refused(
            f"timed out after {timeout:g}s: the {watched.kind} {endpoint} still routes {seen}; "
            f"{target}: {vs.get('reason')}: {vs.get('message')} (the new weights are applied; the "
            "operator moves traffic once the variant is eligible)",
            code=EXIT_TIMEOUT,
        ) from None
    elapsed = time.monotonic() - t0
    data = _rollback_data(plan, after, elapsed, router_name)
    if fmt is Output.table:
        c = render.console()
        c.print(render.rollback_table(plan, versions, after))
        c.print(Text(f"rolled back {endpoint} to {target} ({plan.version}) in {elapsed:.2f}s", style="green"))
    else:
        render.out(render.dump(data, fmt))


def _weights_of(obj: dict[str, Any] | None, route: Resource | None, router_name: str) -> dict[str, int]:
    if obj is None:
        return {}
    if route is None:
        return {k: int(v) for k, v in (views.status_of(obj).get("effectiveWeights") or {}).items()}
    from modelversioning.render.routers import get_router

    return get_router(router_name).weights(obj)


def _rollback_data(
    plan: actions.RollbackPlan, after: dict[str, int], seconds: float, router: str
) -> dict[str, Any]:
    return {
        "endpoint": plan.endpoint,
        "target": plan.target,
        "version": plan.version,
        "rolledBack": plan.rolled_back,
        "why": plan.why,
        "router": router,
        "before": plan.before,
        "after": after,
        "seconds": round(seconds, 3),
    }


# ---- status / which ---------------------------------------------------------------------------------
def _status(ctx: typer.Context, endpoint: str) -> None:
    g = _globals(ctx)
    cluster = g.cluster
    ep = cluster.get(MODELENDPOINTS, endpoint)
    model = views.spec_of(ep).get("model")
    mvs = [m for m in cluster.list(MODELVERSIONS) if views.spec_of(m).get("model") == model]
    router_name = str((views.spec_of(ep).get("routing") or {}).get("router") or DEFAULT_ROUTER)
    route_weights: dict[str, int] | None = None
    try:
        route = route_resource(router_name)
        if route is not None:
            obj = cluster.get_or_none(route, endpoint)
            route_weights = _weights_of(obj, route, router_name) if obj is not None else None
    except (ValueError, ClusterError):
        route_weights = None  # unknown router, or its CRD is not installed: show what the status says
    view = views.status_view(ep, mvs, route_weights)
    _show(g, view, lambda: render.status_renderable(view))


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models status fraud-detector")
def status(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
) -> None:
    """Variants: desired vs effective weights, readiness, eligibility; version, digest, lineage per share."""
    _status(ctx, endpoint)


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models which fraud-detector -o json")
def which(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
) -> None:
    """Which exact version (digest, commit, dataset) serves each share of an endpoint's traffic (= status)."""
    _status(ctx, endpoint)


# ---- diff -------------------------------------------------------------------------------------------
@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models diff fraud-detector 2.3.8 2.4.1 --changed-only")
def diff(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    v1: Annotated[str, typer.Argument(help="Old version.")],
    v2: Annotated[str, typer.Argument(help="New version.")],
    changed_only: Annotated[bool, typer.Option("--changed-only", help="Only rows that differ.")] = False,
) -> None:
    """Lineage, hyperparameters, metrics (with deltas), runtime and artifact of two versions side by side."""
    g = _globals(ctx)
    a, b = _get_version(g, model, v1), _get_version(g, model, v2)
    view = views.diff_view(a, b)
    if changed_only:
        view = {**view, "rows": [r for r in view["rows"] if r["changed"]]}
    _show(g, view, lambda: Group(render.diff_table(view, changed_only)))


# ---- import (importers/: MLflow over its REST API) --------------------------------------------------
def _add_import() -> None:
    from modelversioning.cli.models.importers.command import import_app

    app.add_typer(import_app, name="import")


_add_import()


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point (``kubectl-models``)."""
    app(args=list(argv) if argv is not None else None, prog_name="kubectl models")


# ---- rollout (spec.strategy) ------------------------------------------------------------------------
from modelversioning.cli.models.rollout_cmd import rollout_app  # noqa: E402  (uses _globals/_show above)

app.add_typer(rollout_app, name="rollout")


# ---- the registry: search, lineage, approve ---------------------------------------------------------
from modelversioning.cli.models import registry_cmd  # noqa: E402  (uses _globals/_show above)

registry_cmd.register(app)
