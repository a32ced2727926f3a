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

The decisions are :mod:`..importers.mlflow_plan`'s and :mod:`..importers.mapping`'s (pure); MLflow is
read through :mod:`..importers.mlflow_registry` and :mod:`..importers.mlflow_artifacts`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from modelversioning.api.wire import MODELVERSION
from modelversioning.cli.models import terminal
from modelversioning.cli.models.context import Globals, globals_of
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.importers import mlflow_artifacts as arts
from modelversioning.cli.models.importers import mlflow_plan as plan
from modelversioning.cli.models.importers.mapping import VersionRule, model_name, parse_alias_stages
from modelversioning.cli.models.importers.mlflow_client import Tracking, connect
from modelversioning.cli.models.importers.mlflow_registry import select_versions
from modelversioning.cli.models.kube import MODELVERSIONS, Cluster, ClusterError
from modelversioning.cli.models.output import Output
from modelversioning.cli.models.register_plan import PLACEHOLDER_DIGEST, validate_manifest

app = typer.Typer(
    help="Import model versions from where they already live (MLflow), with their lineage.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

# The options (one alias each, so that the command's signature reads as a list).
Name = Annotated[str, typer.Argument(help="The MLflow registered model name.")]
Versions = Annotated[
    list[str] | None, typer.Option("--version", help="MLflow version number to import (repeatable).")
]
Aliases = Annotated[
    list[str] | None,
    typer.Option("--alias", help="Import the version holding this MLflow alias (repeatable)."),
]
All = Annotated[bool, typer.Option("--all", help="Import every version of the model.")]
Image = Annotated[
    str | None, typer.Option("--image", help="Serving container image (MLflow does not record one).")
]
Port = Annotated[int | None, typer.Option("--port", help="Serving port (default 8080).", min=1, max=65535)]
As = Annotated[
    str | None,
    typer.Option("--as", help="ModelVersion model name (default: the MLflow name as a DNS label)."),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI). MLflow's credentials are sent to "
        "it only: artifacts an mlflow-artifacts://HOST URI places on another host are read without "
        "credentials (with a warning).",
    ),
]
VersionFrom = Annotated[
    str,
    typer.Option(
        "--version-from",
        help="'mlflow': MLflow version N -> MAJOR.N.0; 'tag:KEY': the value of that model version "
        "(or run) tag.",
    ),
]
Major = Annotated[int, typer.Option("--major", help="MAJOR for --version-from mlflow.")]
VersionMap = Annotated[
    list[str] | None,
    typer.Option("--version-map", help="MLflow version N -> X.Y.Z, e.g. 7=2.0.0 (repeatable; wins)."),
]
Stage = Annotated[str, typer.Option("--stage", help="Stage requested by versions without a mapped alias.")]
StageFromAlias = Annotated[
    list[str] | None,
    typer.Option(
        "--stage-from-alias", help="ALIAS=STAGE: versions holding ALIAS request STAGE (repeatable)."
    ),
]
ArtifactsDestination = Annotated[
    str | None,
    typer.Option(
        "--artifacts-destination",
        help="The MLflow server's --artifacts-destination (s3://bucket/prefix, or an absolute path): "
        "mlflow-artifacts:/P is recorded as DESTINATION/P.",
    ),
]
SecretRef = Annotated[
    str | None, typer.Option("--secret-ref", help="Secret with the artifact store's credentials.")
]
Dataset = Annotated[
    str | None, typer.Option("--dataset", help="The run's dataset input to record (when it has several).")
]
OutDir = Annotated[
    Path | None,
    typer.Option("--out-dir", help="Write one <name>.yaml per version here (GitOps; idempotent)."),
]
Apply = Annotated[bool, typer.Option("--apply", help="Create them in the cluster (default: print the YAML).")]


@app.command(
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
    "or --version-map N=X.Y.Z per version.\n\n"
    "Credentials (MLFLOW_TRACKING_TOKEN, _USERNAME/_PASSWORD, user info, client certificate) go to the "
    "tracking server only (same scheme, host and port); an mlflow-artifacts://HOST/... artifact on any "
    "other host is read without them, with a warning. See docs/import.md.",
)
def import_mlflow(
    ctx: typer.Context,
    name: Name,
    version: Versions = None,
    alias: Aliases = None,
    all_: All = False,
    image: Image = None,
    port: Port = None,
    as_: As = None,
    tracking_uri: TrackingUri = None,
    version_from: VersionFrom = "mlflow",
    major: Major = 1,
    version_map: VersionMap = None,
    stage: Stage = "candidate",
    stage_from_alias: StageFromAlias = None,
    artifacts_destination: ArtifactsDestination = None,
    secret_ref: SecretRef = None,
    dataset: Dataset = None,
    out_dir: OutDir = None,
    apply: Apply = False,
) -> None:
    """Import MLflow model versions as ModelVersions: version rule, artifact sha256, lineage from the run."""
    g = globals_of(ctx)
    t0 = time.monotonic()
    stage = plan.check_options(version or [], alias or [], all_, apply, out_dir, stage)
    rule = VersionRule.parse(version_from, major, version_map or [])
    alias_stages = parse_alias_stages(stage_from_alias or [])
    destination = arts.normalize_destination(artifacts_destination)
    model = as_ or model_name(name)
    image = plan.check_target(model, image)
    # MLflow's client, with the command's retry defaults until the command ends
    tracking: Tracking = ctx.with_resource(connect(tracking_uri))
    svs = select_versions(tracking, name, versions=version or [], aliases=alias or [], all_=all_)
    shown = f"{len(svs)} version(s) of MLflow model {name} on {tracking.shown}"
    terminal.note(f"{shown}; rule: {rule.describe()}")
    plans = [
        plan.plan_version(
            plan.gather(tracking, sv, destination),
            rule=rule,
            alias_stages=alias_stages,
            default_stage=stage,
            dataset=dataset,
        )
        for sv in svs
    ]
    plan.check_complete(plans)
    plan.check_distinct(plans)
    cluster = g.cluster if apply else None
    namespace = cluster.namespace if cluster is not None else (g.namespace or None)
    user = cluster.current_user() if cluster is not None else None
    _hash_all(tracking, plans, plan.Target(model, image, port, secret_ref, tracking.shown, user, namespace))
    if cluster is not None:
        _apply(g, cluster, plans)
    elif out_dir is not None:
        _write(out_dir, plans)
    else:
        _print(g, plans)
    terminal.note(f"imported {len(plans)} version(s) in {time.monotonic() - t0:.1f}s")


def _hash_all(tracking: Tracking, plans: list[plan.Planned], target: plan.Target) -> None:
    """Validate every manifest but the digest first, then stream and hash each artifact."""
    for p in plans:  # everything but the digest is valid before anything is hashed
        validate_manifest(plan.build_doc(p, target, PLACEHOLDER_DIGEST, None))
    for p in plans:
        started = time.monotonic()
        with terminal.progress(f"sha256 {p.art.mlflow_uri}", eta=False) as cb:
            if p.art.proxy_path is not None:
                digest = arts.hash_proxied(tracking, p.art, cb)
            else:
                assert p.art.direct is not None
                digest = arts.hash_direct(p.art.direct, cb)
        plan.with_digest(p, digest)
        p.doc = plan.build_doc(p, target, digest.sha256, digest.size_bytes)
        validate_manifest(p.doc)
        terminal.note(plan.hashed_note(p, target.model, time.monotonic() - started))
        for n in p.lineage.notes:
            terminal.note(f"{plan.label(p.sv)}: note: {n}")


def _print(g: Globals, plans: list[plan.Planned]) -> None:
    docs = [p.doc for p in plans]
    if g.fmt(Output.yaml) is Output.json:
        terminal.out(terminal.dump({"apiVersion": "v1", "kind": "List", "items": docs}, Output.json))
    else:
        terminal.out(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, allow_unicode=True))


def _apply(g: Globals, cluster: Cluster, plans: list[plan.Planned]) -> None:
    existing: dict[str, plan.Existing] = {}
    for p in plans:
        name = p.doc["metadata"]["name"]
        obj = cluster.get_or_none(MODELVERSIONS, name)
        if obj is not None:
            where = f"ModelVersion {name} in namespace {cluster.namespace}"
            existing[name] = plan.Existing(where, plan.sha256_of(obj))
    plan.refuse_conflicts(plans, existing, in_cluster=True)
    results = [_create(cluster, p, p.doc["metadata"]["name"] in existing) for p in plans]
    if g.fmt() is Output.table:
        for r in results:
            terminal.out(f"{MODELVERSION.singular}.{MODELVERSION.group}/{r['name']} {r['result']}\n")
    else:
        terminal.out(terminal.dump(results, g.fmt()))


def _create(cluster: Cluster, p: plan.Planned, exists: bool) -> dict[str, Any]:
    name = p.doc["metadata"]["name"]
    mine = p.digest.sha256 if p.digest else None
    if exists:
        return {"name": name, "result": "unchanged", "sha256": mine}
    try:
        cluster.create(MODELVERSIONS, p.doc)
        return {"name": name, "result": "created", "sha256": mine}
    except ClusterError as e:
        if e.status != 409:
            raise
    sha = plan.sha256_of(cluster.get(MODELVERSIONS, name))  # created meanwhile: same check as above
    if p.digest is None or sha != p.digest.sha256:
        raise Refused(f"{name} was created meanwhile with sha256 {sha}; nothing more imported")
    return {"name": name, "result": "unchanged", "sha256": sha}


def _write(out_dir: Path, plans: list[plan.Planned]) -> None:
    existing: dict[str, plan.Existing] = {}
    for p in plans:
        path = out_dir / f"{p.doc['metadata']['name']}.yaml"
        if path.exists():
            try:
                old = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise Refused(f"{path}: cannot read it ({e}); nothing written") from None
            existing[p.doc["metadata"]["name"]] = plan.Existing(str(path), plan.sha256_of(old))
    plan.refuse_conflicts(plans, existing, in_cluster=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in plans:
        name = p.doc["metadata"]["name"]
        path = out_dir / f"{name}.yaml"
        if name in existing:
            terminal.out(f"{path} unchanged\n")
            continue
        path.write_text(yaml.safe_dump(p.doc, sort_keys=False, default_flow_style=False, allow_unicode=True))
        terminal.out(f"{path} written\n")
