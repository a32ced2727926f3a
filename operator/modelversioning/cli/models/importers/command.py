"""``kubectl models import mlflow``: MLflow model versions -> ModelVersions (YAML, files, or --apply).

Order of work, so that nothing half-done is ever printed or created:

1. read every selected MLflow version, its run, logged model and MLmodel (MLflow's client);
2. map versions and stages, gather lineage; if anything is missing for ANY version: exit 2 naming
   each missing field and where it would come from (nothing printed, nothing created);
3. validate each manifest with the API's pydantic model (with a placeholder digest);
4. stream and hash every artifact;
5. compare with what already exists (the cluster with --apply, the files with --out-dir): the same
   digest is "unchanged" (re-running is idempotent); another digest refuses the whole import
   (exit 1) before anything is written;
6. print / write / create.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from modelversioning.api.wire import IMPORTED_FROM_ANNOTATION as IMPORTED_FROM
from modelversioning.api.wire import MLFLOW_ARTIFACT_ANNOTATION as MLFLOW_ARTIFACT
from modelversioning.api.wire import MLFLOW_MODEL_ANNOTATION as MLFLOW_MODEL
from modelversioning.api.wire import MLFLOW_RUN_ID_ANNOTATION as MLFLOW_RUN_ID
from modelversioning.api.wire import MLFLOW_TRACKING_URI_ANNOTATION as MLFLOW_TRACKING_URI
from modelversioning.api.wire import MLFLOW_VERSION_ANNOTATION as MLFLOW_VERSION
from modelversioning.api.wire import MODELVERSION, REQUESTED_BY_ANNOTATION, REQUESTED_STAGE_ANNOTATION
from modelversioning.api.wire import VERSION_RULE_ANNOTATION as VERSION_RULE
from modelversioning.cli.models import actions, render
from modelversioning.cli.models.actions import Refused, RegisterInputs
from modelversioning.cli.models.importers import mlflow as ml
from modelversioning.cli.models.importers.mapping import (
    Missing,
    VersionRule,
    missing_message,
    model_name,
    parse_alias_stages,
    stage_for,
)
from modelversioning.cli.models.render import Output

EXIT_FAILED, EXIT_USAGE = 1, 2


import_app = typer.Typer(
    help="Import model versions from where they already live (MLflow), with their lineage.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@dataclass
class Planned:
    """One MLflow version on its way to a ModelVersion."""

    sv: ml.SourceVersion
    semver: str | None
    version_why: str
    stage: str
    stage_why: str
    art: ml.ResolvedArtifact
    kind: str | None  # known before hashing for proxied artifacts
    lineage: ml.Gathered
    uri: str = ""
    missing: list[Missing] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)
    digest: ml.ArtifactDigest | None = None


def _label(sv: ml.SourceVersion) -> str:
    return f"MLflow {sv.name} version {sv.version}"


def plan_version(
    t: ml.Tracking,
    sv: ml.SourceVersion,
    *,
    rule: VersionRule,
    alias_stages: list[tuple[str, str]],
    default_stage: str,
    destination: str | None,
    dataset: str | None,
) -> Planned:
    """Everything about one version except its digest; missing pieces listed, never invented."""
    run = ml.get_run(t, sv.run_id) if sv.run_id else None
    logged: Any = None
    if sv.source.startswith("models:/m-"):
        logged = ml.get_logged_model(t, sv.source[len("models:/") :].strip("/"))
    uri = ml.download_uri(t, sv)
    art = ml.resolve_artifact(t, sv, uri, destination)
    kind: str | None = None
    if art.proxy_path is not None:
        kind, _ = ml.proxy_kind(t, art)
    mlmodel = ml.read_mlmodel(t, art, kind or "directory")
    g = ml.gather_lineage(sv, run, logged, mlmodel, dataset)
    semver, version_why = rule.map(sv.version, sv.tags, g.run_tags)
    stage, stage_why = stage_for(sv.aliases, alias_stages, default_stage)
    p = Planned(sv, semver, version_why, stage, stage_why, art, kind, g)
    if semver is None:
        p.missing.append(Missing("spec.version", version_why))
    p.missing += g.missing
    # The URI the ModelVersion records (the operator fetches it with its own credentials).
    if art.direct is not None:
        p.uri = art.direct
    elif art.destination is not None:
        p.uri = art.destination + ("/" if kind == "directory" else "")
    elif kind == "file" and art.proxy_url is not None:
        p.uri = art.proxy_url
    else:
        p.missing.append(
            Missing(
                "spec.artifact.uri",
                f"{art.mlflow_uri} is a directory served through the MLflow server's artifact proxy: "
                "pass --artifacts-destination URI, the server's own --artifacts-destination (e.g. "
                "s3://mlflow-artifacts), so the ModelVersion names the store the operator verifies",
            )
        )
    if stage == "production" and not p.missing:
        lin = g
        for f, have in (
            ("lineage.framework", lin.framework),
            ("lineage.codeRepository", lin.code_repository),
        ):
            if not have:
                p.missing.append(Missing(f, "required for stage production"))
    return p


def build_doc(
    p: Planned,
    *,
    model: str,
    image: str,
    port: int | None,
    secret_ref: str | None,
    sha256: str,
    size: int | None,
    tracking: str,
    annotations: dict[str, str],
    namespace: str | None,
) -> dict[str, Any]:
    g = p.lineage
    assert p.semver is not None and g.dataset is not None
    inp = RegisterInputs(
        model=model,
        version=p.semver,
        artifact=p.uri,
        image=image,
        port=port,
        dataset=g.dataset["name"],
        dataset_version=g.dataset.get("version"),
        dataset_sha256=g.dataset.get("sha256"),
        dataset_uri=g.dataset.get("uri"),
        metrics=dict(g.metrics),
        hyperparameters=dict(g.hyperparameters),
        author=g.author,
        framework=g.framework,
        trained_at=g.trained_at,
        code_repository=g.code_repository,
        code_commit=g.code_commit,
        environment=dict(g.environment),
        stage=p.stage,
        format="mlflow" if g.framework and p.kind != "file" else None,
        description=(p.sv.description or None) and p.sv.description[:4096],
    )
    ann = {
        IMPORTED_FROM: "mlflow",
        MLFLOW_TRACKING_URI: tracking,
        MLFLOW_MODEL: p.sv.name,
        MLFLOW_VERSION: p.sv.version,
        MLFLOW_ARTIFACT: p.art.mlflow_uri,
        VERSION_RULE: p.version_why,
        **({MLFLOW_RUN_ID: p.sv.run_id} if p.sv.run_id else {}),
        **annotations,
    }
    doc = actions.build_manifest(
        inp, uri=p.uri, sha256=sha256, size_bytes=size, annotations=ann, namespace=namespace
    )
    if secret_ref:
        doc["spec"]["artifact"]["secretRef"] = {"name": secret_ref}
    return doc


@dataclass
class Existing:
    """What is already there for one ModelVersion name (cluster object or file)."""

    where: str
    sha256: str | None


def conflicts(plans: list[Planned], existing: dict[str, Existing]) -> list[str]:
    out = []
    for p in plans:
        name = p.doc["metadata"]["name"]
        have = existing.get(name)
        if have is not None and p.digest is not None and have.sha256 != p.digest.sha256:
            out.append(
                f"{name}: {have.where} has sha256 {have.sha256}, but {_label(p.sv)} now hashes to "
                f"{p.digest.sha256} ({p.art.mlflow_uri})"
            )
    return out


def _selection(versions: list[str], aliases: list[str], all_: bool) -> None:
    given = sum(bool(x) for x in (versions, aliases, all_))
    if given != 1:
        raise Refused(
            "say which MLflow versions to import: --version N (repeatable), --alias NAME (repeatable) "
            "or --all (exactly one of them)",
            EXIT_USAGE,
        )


@import_app.command(
    "mlflow",
    epilog="[bold]Examples[/bold]\n\n"
    "  MLFLOW_TRACKING_URI=http://mlflow:5000 kubectl models import mlflow fraud-detector --all \\\n"
    "      --image ghcr.io/acme/fraud-server:1.4 --artifacts-destination s3://mlflow-artifacts "
    "> fraud-detector.yaml\n\n"
    "  kubectl models import mlflow fraud-detector --alias champion --stage-from-alias "
    "champion=production \\\n      --image ghcr.io/acme/fraud-server:1.4 --artifacts-destination "
    "s3://mlflow-artifacts --apply\n\n"
    "  kubectl models import mlflow fraud-detector --version 7 --version-map 7=2.0.0 --image ... "
    "--out-dir deploy/models/\n\n"
    "Version rule: MLflow version N -> MAJOR.N.0 (--major, default 1), or --version-from tag:KEY, "
    "or --version-map N=X.Y.Z per version. See docs/import.md.",
)
def import_mlflow(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The MLflow registered model name.")],
    version: Annotated[
        list[str] | None, typer.Option("--version", help="MLflow version number to import (repeatable).")
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", help="Import the version holding this MLflow alias (repeatable)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Import every version of the model.")] = False,
    image: Annotated[
        str | None, typer.Option("--image", help="Serving container image (MLflow does not record one).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Serving port (default 8080).", min=1, max=65535)
    ] = None,
    as_: Annotated[
        str | None,
        typer.Option("--as", help="ModelVersion model name (default: the MLflow name as a DNS label)."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="MLflow tracking server (default: $MLFLOW_TRACKING_URI)."),
    ] = None,
    version_from: Annotated[
        str,
        typer.Option(
            "--version-from",
            help="'mlflow': MLflow version N -> MAJOR.N.0; 'tag:KEY': the value of that model version "
            "(or run) tag.",
        ),
    ] = "mlflow",
    major: Annotated[int, typer.Option("--major", help="MAJOR for --version-from mlflow.")] = 1,
    version_map: Annotated[
        list[str] | None,
        typer.Option("--version-map", help="MLflow version N -> X.Y.Z, e.g. 7=2.0.0 (repeatable; wins)."),
    ] = None,
    stage: Annotated[
        str, typer.Option("--stage", help="Stage requested by versions without a mapped alias.")
    ] = "candidate",
    stage_from_alias: Annotated[
        list[str] | None,
        typer.Option(
            "--stage-from-alias", help="ALIAS=STAGE: versions holding ALIAS request STAGE (repeatable)."
        ),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            "--artifacts-destination",
            help="The MLflow server's --artifacts-destination (s3://bucket/prefix, or an absolute path): "
            "mlflow-artifacts:/P is recorded as DESTINATION/P.",
        ),
    ] = None,
    secret_ref: Annotated[
        str | None, typer.Option("--secret-ref", help="Secret with the artifact store's credentials.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="The run's dataset input to record (when it has several).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Write one <name>.yaml per version here (GitOps; idempotent)."),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Create them in the cluster (default: print the YAML).")
    ] = False,
) -> None:
    """Import MLflow model versions as ModelVersions: version rule, artifact sha256, lineage from the run."""
    g = ctx.obj
    t0 = time.monotonic()
    _selection(version or [], alias or [], all_)
    if apply and out_dir is not None:
        raise Refused(
            "--apply and --out-dir are exclusive: create in the cluster, or write files", EXIT_USAGE
        )
    stage = stage.lower()
    if stage not in actions.STAGES:
        raise Refused(f"--stage {stage!r}: one of {', '.join(actions.STAGES)}", EXIT_USAGE)
    rule = VersionRule.parse(version_from, major, version_map or [])
    alias_stages = parse_alias_stages(stage_from_alias or [])
    destination = ml.normalize_destination(artifacts_destination)
    model = as_ or model_name(name)
    errors = actions.identity_errors(model, "0.0.0")
    if errors:
        raise Refused("; ".join(errors) + " (choose one with --as)", EXIT_USAGE)
    if not image:
        raise Refused(
            "missing runtime.image (--image): MLflow does not record which container serves the model",
            EXIT_USAGE,
        )
    # MLflow's client, with the command's retry defaults until the command ends
    tracking: ml.Tracking = ctx.with_resource(ml.connect(tracking_uri))
    svs = ml.select_versions(tracking, name, versions=version or [], aliases=alias or [], all_=all_)
    render.note(f"{len(svs)} version(s) of MLflow model {name} on {tracking.shown}; rule: {rule.describe()}")

    plans = [
        plan_version(
            tracking,
            sv,
            rule=rule,
            alias_stages=alias_stages,
            default_stage=stage,
            destination=destination,
            dataset=dataset,
        )
        for sv in svs
    ]
    incomplete = [missing_message(_label(p.sv), p.missing) for p in plans if p.missing]
    if incomplete:
        raise Refused("\n".join(incomplete), EXIT_USAGE)
    seen: dict[str, str] = {}
    for p in plans:
        assert p.semver is not None
        if p.semver in seen:
            raise Refused(
                f"MLflow versions {seen[p.semver]} and {p.sv.version} both map to {p.semver}; give one "
                f"its own with --version-map {p.sv.version}=X.Y.Z",
                EXIT_USAGE,
            )
        seen[p.semver] = p.sv.version

    cluster = g.cluster if apply else None
    namespace = cluster.namespace if cluster is not None else (getattr(g, "namespace", None) or None)
    annotations: dict[str, str] = {}
    if cluster is not None:
        annotations = {REQUESTED_BY_ANNOTATION: cluster.current_user()}

    def doc_for(p: Planned, sha: str, size: int | None) -> dict[str, Any]:
        extra = dict(annotations)
        if cluster is not None:
            extra[REQUESTED_STAGE_ANNOTATION] = p.stage
        return build_doc(
            p,
            model=model,
            image=image,
            port=port,
            secret_ref=secret_ref,
            sha256=sha,
            size=size,
            tracking=tracking.shown,
            annotations=extra,
            namespace=namespace,
        )

    for p in plans:  # everything but the digest is valid before anything is hashed
        actions.validate_manifest(doc_for(p, "0" * 64, None))
    for p in plans:
        started = time.monotonic()
        with render.progress(f"sha256 {p.art.mlflow_uri}", eta=False) as cb:
            if p.art.proxy_path is not None:
                p.digest = ml.hash_proxied(tracking, p.art, cb)
            else:
                assert p.art.direct is not None
                p.digest = ml.hash_direct(p.art.direct, cb)
        if p.art.direct is not None and p.digest.kind == "directory" and not p.uri.endswith("/"):
            p.uri += "/"
        p.doc = doc_for(p, p.digest.sha256, p.digest.size_bytes)
        actions.validate_manifest(p.doc)
        files = f", {p.digest.files} files" if p.digest.kind == "directory" else ""
        render.note(
            f"{_label(p.sv)} -> {model} {p.semver} ({p.version_why}; stage {p.stage}: {p.stage_why}); "
            f"sha256 {p.digest.sha256} ({p.digest.size_bytes} bytes{files}) in "
            f"{time.monotonic() - started:.1f}s"
        )
        for n in p.lineage.notes:
            render.note(f"{_label(p.sv)}: note: {n}")

    if cluster is not None:
        _apply(g, cluster, plans)
    elif out_dir is not None:
        _write(out_dir, plans)
    else:
        docs = [p.doc for p in plans]
        if g.fmt(Output.yaml) is Output.json:
            render.out(render.dump({"apiVersion": "v1", "kind": "List", "items": docs}, Output.json))
        else:
            text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, allow_unicode=True)
            render.out(text)
    render.note(f"imported {len(plans)} version(s) in {time.monotonic() - t0:.1f}s")


def _apply(g: Any, cluster: Any, plans: list[Planned]) -> None:
    from modelversioning.cli.models.kube import MODELVERSIONS, ClusterError

    existing: dict[str, Existing] = {}
    for p in plans:
        name = p.doc["metadata"]["name"]
        obj = cluster.get_or_none(MODELVERSIONS, name)
        if obj is not None:
            sha = ((obj.get("spec") or {}).get("artifact") or {}).get("sha256")
            existing[name] = Existing(f"ModelVersion {name} in namespace {cluster.namespace}", sha)
    refused = conflicts(plans, existing)
    if refused:
        raise Refused(
            "refusing to import: a version already imported has another digest (ModelVersions are "
            "immutable; the bytes behind the MLflow version changed, or the version rule maps it to "
            "another version than before). Nothing was created:\n  - " + "\n  - ".join(refused),
            EXIT_FAILED,
        )
    results = []
    for p in plans:
        name = p.doc["metadata"]["name"]
        if name in existing:
            results.append(
                {"name": name, "result": "unchanged", "sha256": p.digest.sha256 if p.digest else None}
            )
            continue
        try:
            cluster.create(MODELVERSIONS, p.doc)
            results.append(
                {"name": name, "result": "created", "sha256": p.digest.sha256 if p.digest else None}
            )
        except ClusterError as e:
            if e.status != 409:
                raise
            obj = cluster.get(MODELVERSIONS, name)  # created meanwhile: same check as above
            sha = ((obj.get("spec") or {}).get("artifact") or {}).get("sha256")
            if p.digest is None or sha != p.digest.sha256:
                raise Refused(
                    f"{name} was created meanwhile with sha256 {sha}; nothing more imported"
                ) from None
            results.append({"name": name, "result": "unchanged", "sha256": sha})
    if g.fmt() is Output.table:
        for r in results:
            render.out(f"{MODELVERSION.singular}.{MODELVERSION.group}/{r['name']} {r['result']}\n")
    else:
        render.out(render.dump(results, g.fmt()))


def _write(out_dir: Path, plans: list[Planned]) -> None:
    existing: dict[str, Existing] = {}
    for p in plans:
        name = p.doc["metadata"]["name"]
        path = out_dir / f"{name}.yaml"
        if path.exists():
            try:
                old = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise Refused(f"{path}: cannot read it ({e}); nothing written") from None
            sha = (
                ((old.get("spec") or {}).get("artifact") or {}).get("sha256")
                if isinstance(old, dict)
                else None
            )
            existing[name] = Existing(str(path), sha)
    refused = conflicts(plans, existing)
    if refused:
        raise Refused(
            "refusing to import: a version already imported has another digest (ModelVersions are "
            "immutable). Nothing was written:\n  - " + "\n  - ".join(refused),
            EXIT_FAILED,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in plans:
        name = p.doc["metadata"]["name"]
        path = out_dir / f"{name}.yaml"
        if name in existing:
            render.out(f"{path} unchanged\n")
            continue
        path.write_text(yaml.safe_dump(p.doc, sort_keys=False, default_flow_style=False, allow_unicode=True))
        render.out(f"{path} written\n")
