"""``kubectl models import mlflow``, planned: what is read about each MLflow version (:func:`gather`),
what it becomes (:func:`plan_version`: version rule, stage, lineage, the URI the ModelVersion
records; what is missing, never invented), its manifest (:func:`build_doc`), and what refuses the
whole import before anything is written (:func:`check_options`, :func:`check_distinct`,
:func:`conflicts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelversioning.api.wire import IMPORTED_FROM_ANNOTATION as IMPORTED_FROM
from modelversioning.api.wire import MLFLOW_ARTIFACT_ANNOTATION as MLFLOW_ARTIFACT
from modelversioning.api.wire import MLFLOW_MODEL_ANNOTATION as MLFLOW_MODEL
from modelversioning.api.wire import MLFLOW_RUN_ID_ANNOTATION as MLFLOW_RUN_ID
from modelversioning.api.wire import MLFLOW_TRACKING_URI_ANNOTATION as MLFLOW_TRACKING_URI
from modelversioning.api.wire import MLFLOW_VERSION_ANNOTATION as MLFLOW_VERSION
from modelversioning.api.wire import REQUESTED_BY_ANNOTATION, REQUESTED_STAGE_ANNOTATION
from modelversioning.api.wire import VERSION_RULE_ANNOTATION as VERSION_RULE
from modelversioning.cli.models import register_plan
from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused
from modelversioning.cli.models.importers import mlflow_artifacts as arts
from modelversioning.cli.models.importers import mlflow_registry as reg
from modelversioning.cli.models.importers.mapping import Missing, VersionRule, missing_message, stage_for
from modelversioning.cli.models.importers.mlflow_client import Tracking
from modelversioning.cli.models.importers.mlflow_lineage import Gathered, gather_lineage
from modelversioning.cli.models.importers.mlflow_registry import SourceVersion
from modelversioning.cli.models.register_plan import RegisterInputs


# ---- the options -------------------------------------------------------------------------------------
def check_options(
    versions: list[str], aliases: list[str], all_: bool, apply: bool, out_dir: Any, stage: str
) -> str:
    """Refused (usage) for a selection that is not exactly one of --version/--alias/--all, --apply
    with --out-dir, or an unknown --stage; the stage (lowercase)."""
    given = sum(bool(x) for x in (versions, aliases, all_))
    if given != 1:
        raise Refused(
            "say which MLflow versions to import: --version N (repeatable), --alias NAME (repeatable) "
            "or --all (exactly one of them)",
            EXIT_USAGE,
        )
    if apply and out_dir is not None:
        raise Refused(
            "--apply and --out-dir are exclusive: create in the cluster, or write files", EXIT_USAGE
        )
    stage = stage.lower()
    if stage not in register_plan.STAGES:
        raise Refused(f"--stage {stage!r}: one of {', '.join(register_plan.STAGES)}", EXIT_USAGE)
    return stage


def check_target(model: str, image: str | None) -> str:
    """Refused (usage) for a model name the API would refuse, or no --image; the image."""
    errors = register_plan.identity_errors(model, "0.0.0")
    if errors:
        raise Refused("; ".join(errors) + " (choose one with --as)", EXIT_USAGE)
    if not image:
        raise Refused(
            "missing runtime.image (--image): MLflow does not record which container serves the model",
            EXIT_USAGE,
        )
    return image


# ---- one version ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Everything read from MLflow about one version (before hashing)."""

    sv: SourceVersion
    run: Any | None
    logged: Any | None
    art: arts.ResolvedArtifact
    kind: str | None  # known before hashing for proxied artifacts
    mlmodel: dict[str, Any] | None


def gather(t: Tracking, sv: SourceVersion, destination: str | None) -> Source:
    """Read one version's run, logged model, artifact location and MLmodel from MLflow."""
    run = reg.get_run(t, sv.run_id) if sv.run_id else None
    logged: Any = None
    if sv.source.startswith("models:/m-"):
        logged = reg.get_logged_model(t, sv.source[len("models:/") :].strip("/"))
    uri = arts.download_uri(t, sv)
    art = arts.resolve_artifact(t, sv, uri, destination)
    kind: str | None = None
    if art.proxy_path is not None:
        kind, _ = arts.proxy_kind(t, art)
    mlmodel = arts.read_mlmodel(t, art, kind or "directory")
    return Source(sv, run, logged, art, kind, mlmodel)


@dataclass
class Planned:
    """One MLflow version on its way to a ModelVersion."""

    sv: SourceVersion
    semver: str | None
    version_why: str
    stage: str
    stage_why: str
    art: arts.ResolvedArtifact
    kind: str | None  # known before hashing for proxied artifacts
    lineage: Gathered
    uri: str = ""
    missing: list[Missing] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)
    digest: arts.ArtifactDigest | None = None


def label(sv: SourceVersion) -> str:
    return f"MLflow {sv.name} version {sv.version}"


def plan_version(
    src: Source,
    *,
    rule: VersionRule,
    alias_stages: list[tuple[str, str]],
    default_stage: str,
    dataset: str | None,
) -> Planned:
    """Everything about one version except its digest; missing pieces listed, never invented."""
    sv, art, kind = src.sv, src.art, src.kind
    g = gather_lineage(sv, src.run, src.logged, src.mlmodel, dataset)
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
        for f, have in (("lineage.framework", g.framework), ("lineage.codeRepository", g.code_repository)):
            if not have:
                p.missing.append(Missing(f, "required for stage production"))
    return p


def check_distinct(plans: list[Planned]) -> None:
    """Refused (usage) when two MLflow versions map to the same semantic version."""
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


def check_complete(plans: list[Planned]) -> None:
    """Refused (usage) naming every missing piece of every version: nothing is half imported."""
    incomplete = [missing_message(label(p.sv), p.missing) for p in plans if p.missing]
    if incomplete:
        raise Refused("\n".join(incomplete), EXIT_USAGE)


def with_digest(p: Planned, digest: arts.ArtifactDigest) -> None:
    """Record the digest; a directory read directly from its store is recorded with a trailing /."""
    p.digest = digest
    if p.art.direct is not None and digest.kind == "directory" and not p.uri.endswith("/"):
        p.uri += "/"


# ---- the manifest ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What every imported version shares: the ModelVersion model name, runtime, where it goes."""

    model: str
    image: str
    port: int | None
    secret_ref: str | None
    tracking: str  # the server, as shown (no credentials)
    user: str | None  # with --apply: who the API server says we are
    namespace: str | None


def build_doc(p: Planned, t: Target, sha256: str, size: int | None) -> dict[str, Any]:
    """The manifest of one planned version (with --apply: who asked, for which stage)."""
    g = p.lineage
    assert p.semver is not None and g.dataset is not None
    inp = RegisterInputs(
        model=t.model,
        version=p.semver,
        artifact=p.uri,
        image=t.image,
        port=t.port,
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
        MLFLOW_TRACKING_URI: t.tracking,
        MLFLOW_MODEL: p.sv.name,
        MLFLOW_VERSION: p.sv.version,
        MLFLOW_ARTIFACT: p.art.mlflow_uri,
        VERSION_RULE: p.version_why,
        **({MLFLOW_RUN_ID: p.sv.run_id} if p.sv.run_id else {}),
        **(
            {REQUESTED_BY_ANNOTATION: t.user, REQUESTED_STAGE_ANNOTATION: p.stage}
            if t.user is not None
            else {}
        ),
    }
    doc = register_plan.build_manifest(
        inp, uri=p.uri, sha256=sha256, size_bytes=size, annotations=ann, namespace=t.namespace
    )
    if t.secret_ref:
        doc["spec"]["artifact"]["secretRef"] = {"name": t.secret_ref}
    return doc


def hashed_note(p: Planned, model: str, seconds: float) -> str:
    assert p.digest is not None
    files = f", {p.digest.files} files" if p.digest.kind == "directory" else ""
    return (
        f"{label(p.sv)} -> {model} {p.semver} ({p.version_why}; stage {p.stage}: {p.stage_why}); "
        f"sha256 {p.digest.sha256} ({p.digest.size_bytes} bytes{files}) in {seconds:.1f}s"
    )


# ---- what is already there ----------------------------------------------------------------------------
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
                f"{name}: {have.where} has sha256 {have.sha256}, but {label(p.sv)} now hashes to "
                f"{p.digest.sha256} ({p.art.mlflow_uri})"
            )
    return out


def refuse_conflicts(plans: list[Planned], existing: dict[str, Existing], in_cluster: bool) -> None:
    """Refused (exit 1) when a version already imported (in the cluster, or a file) has another
    digest: nothing is created or written."""
    refused = conflicts(plans, existing)
    if not refused:
        return
    why = (
        "(ModelVersions are immutable; the bytes behind the MLflow version changed, or the version rule maps "
        "it to another version than before). Nothing was created"
        if in_cluster
        else "(ModelVersions are immutable). Nothing was written"
    )
    raise Refused(
        f"refusing to import: a version already imported has another digest {why}:\n  - "
        + "\n  - ".join(refused),
        EXIT_FAILED,
    )


def sha256_of(obj: Any) -> str | None:
    """spec.artifact.sha256 of a ModelVersion (object or parsed file), if any."""
    if not isinstance(obj, dict):
        return None
    sha = ((obj.get("spec") or {}).get("artifact") or {}).get("sha256")
    return str(sha) if sha is not None else None
