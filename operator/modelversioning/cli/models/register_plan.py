"""What ``kubectl models register`` makes of its options, purely: the checks before anything is
hashed, the lineage filled from git and DVC, the ModelVersion manifest, and why it is refused.

The command (``commands/register.py``) does the I/O in between: it reads DVC's files and the git
checkout, hashes the artifact and talks to the cluster; every decision is a function here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from modelversioning.api.wire import (
    API_VERSION,
    DNS_LABEL,
    LABEL_MODEL,
    MODELVERSION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
    expected_name,
)
from modelversioning.cli.models import register_runtime
from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.inputs import load_mapping, parse_pairs
from modelversioning.domain import oci_ref
from modelversioning.domain.semver import InvalidVersion, SemVer

if TYPE_CHECKING:
    from modelversioning.api.modelversion import ModelVersion
    from modelversioning.cli.models.gitinfo import GitInfo
    from modelversioning.cli.models.importers.dvc import DvcInputs, Filled

STAGES = ("candidate", "staging", "production", "archived")
PLACEHOLDER_DIGEST = "0" * 64  # everything but the digest is validated before hashing


@dataclass
class RegisterInputs:
    """What `kubectl models register` was told (plus what git said)."""

    model: str
    version: str
    artifact: str | None = None
    image: str | None = None
    port: int | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    dataset_sha256: str | None = None
    dataset_uri: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    author: str | None = None
    framework: str | None = None
    trained_at: str | None = None
    code_repository: str | None = None
    code_commit: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    stage: str = "candidate"
    format: str | None = None
    description: str | None = None
    runtime_ref: str | None = None  # [KIND/]NAME
    model_format: str | None = None  # NAME[:VERSION]


@dataclass(frozen=True)
class RegisterArgs:
    """The options of `kubectl models register`, as given (same names as the command's parameters)."""

    model: str
    version: str
    artifact: str | None = None
    sha256: str | None = None
    uri: str | None = None
    image: str | None = None
    port: int | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    dataset_sha256: str | None = None
    dataset_uri: str | None = None
    metrics_file: Path | None = None
    metric: list[str] | None = None
    hyperparameter: list[str] | None = None
    hyperparameters_file: Path | None = None
    environment: list[str] | None = None
    author: str | None = None
    framework: str | None = None
    trained_at: str | None = None
    code_repository: str | None = None
    code_commit: str | None = None
    code_dir: Path = Path(".")
    allow_dirty: bool = False
    fmt_: str | None = None
    description: str | None = None
    stage: str = "candidate"
    apply: bool = False
    dvc: str | None = None
    plain_http: bool = False
    runtime_ref: str | None = None
    model_format: str | None = None


@dataclass(frozen=True)
class Values:
    """Metrics, hyperparameters and environment from --metrics/--metric, --hyperparameters/
    --hyperparameter and --environment (files first, options on top)."""

    metrics: dict[str, Any]
    hyperparameters: dict[str, Any]
    environment: dict[str, str]


# ---- before any work ---------------------------------------------------------------------------
def identity_errors(model: str, version: str) -> list[str]:
    """Cheap checks done before hashing anything."""
    errors = []
    if not re.match(DNS_LABEL, model) or len(model) > 63:
        errors.append(f"model {model!r} must be a DNS label (lowercase letters, digits, '-'; at most 63)")
    try:
        SemVer.parse(version)
    except InvalidVersion as e:
        errors.append(f"version {e}")
    return errors


def check_identity(model: str, version: str) -> None:
    """Refused (usage) for a model name or version the API would refuse."""
    errors = identity_errors(model, version)
    if errors:
        raise Refused("; ".join(errors), code=EXIT_USAGE)


def read_values(args: RegisterArgs) -> Values:
    """The metrics, hyperparameters and environment options (and the JSON files they name)."""
    metrics = load_mapping(args.metrics_file, "--metrics", numeric=True) if args.metrics_file else {}
    metrics.update(parse_pairs(args.metric or [], "--metric", numeric=True))
    hyper = (
        load_mapping(args.hyperparameters_file, "--hyperparameters", numeric=False)
        if args.hyperparameters_file
        else {}
    )
    hyper.update(parse_pairs(args.hyperparameter or [], "--hyperparameter", numeric=False))
    env = {k: str(v) for k, v in parse_pairs(args.environment or [], "--environment", numeric=False).items()}
    return Values(metrics, hyper, env)


def with_dvc(
    args: RegisterArgs, values: Values, info: DvcInputs, filled: Filled
) -> tuple[RegisterArgs, Values]:
    """The options after DVC filled what was not given (explicit options win)."""
    args = replace(
        args,
        artifact=filled.artifact,
        uri=filled.uri,
        dataset=filled.dataset,
        dataset_version=filled.dataset_version,
        dataset_uri=filled.dataset_uri,
    )
    metrics, hyper = {**info.metrics, **values.metrics}, {**info.params, **values.hyperparameters}
    return args, Values(metrics, hyper, values.environment)


# ---- lineage -------------------------------------------------------------------------------------
def needs_git(args: RegisterArgs) -> bool:
    """Whether the checkout is asked for the commit or the repository (not both were given)."""
    return not (args.code_commit and args.code_repository)


@dataclass(frozen=True)
class Prepared:
    """The inputs of the manifest, and the checkout when the recorded commit is its dirty HEAD."""

    inputs: RegisterInputs
    dirty: GitInfo | None = None


def prepare(args: RegisterArgs, values: Values, git: GitInfo | None, now: str) -> Prepared:
    """The manifest's inputs: the options, with the commit and remote of the checkout where they
    were not given (``now``: the default of --trained-at)."""
    commit, repository, derived = args.code_commit, args.code_repository, False
    if not commit and git is not None and git.commit:
        commit, derived = git.commit, True
    if not repository and git is not None and git.remote:
        repository = git.remote
    dirty = git if derived and git is not None and git.is_dirty else None
    environment = dict(values.environment)
    if dirty is not None and args.allow_dirty:
        environment.setdefault("gitDirty", "true")
    inputs = RegisterInputs(
        model=args.model,
        version=args.version,
        artifact=args.artifact,
        image=args.image,
        port=args.port,
        dataset=args.dataset,
        dataset_version=args.dataset_version,
        dataset_sha256=args.dataset_sha256,
        dataset_uri=args.dataset_uri,
        metrics=dict(values.metrics),
        hyperparameters=dict(values.hyperparameters),
        author=args.author,
        framework=args.framework,
        trained_at=args.trained_at or now,
        code_repository=repository,
        code_commit=commit,
        environment=environment,
        stage=str(args.stage),
        format=args.fmt_,
        description=args.description,
        runtime_ref=args.runtime_ref,
        model_format=args.model_format,
    )
    return Prepared(inputs, dirty)


def check_lineage(p: Prepared, allow_dirty: bool) -> list[str]:
    """Refused when metadata is missing (usage) or the commit is not the code that trained the model
    (a dirty checkout, unless allowed); else the notes for the user."""
    missing = missing_metadata(p.inputs)
    if missing:
        raise Refused("incomplete metadata; missing: " + ", ".join(missing), code=EXIT_USAGE)
    notes = []
    if p.dirty is not None:
        info = p.dirty
        if not allow_dirty:
            shown = ", ".join(line[3:] for line in info.dirty[:5]) + (", ..." if len(info.dirty) > 5 else "")
            raise Refused(
                f"the training code checkout {info.root} has uncommitted changes ({len(info.dirty)}: "
                f"{shown}); commit {str(p.inputs.code_commit)[:12]} is not the code that trained this "
                "model. Commit or stash them, or pass --allow-dirty"
            )
        notes.append(
            f"warning: {info.root} has uncommitted changes; recorded lineage.environment.gitDirty=true"
        )
    return notes + [f"note: production will require {m}" for m in missing_for_production(p.inputs)]


def missing_metadata(inp: RegisterInputs) -> list[str]:
    """Each missing piece of metadata, named with the option(s) that provide it."""
    missing: list[str] = []
    if not inp.artifact:
        missing.append("artifact (--artifact URI_OR_PATH)")
    if not inp.image and not register_runtime.from_catalog(inp.runtime_ref, inp.model_format, inp.framework):
        missing.append("runtime.image (--image)")
    if not inp.dataset and not (inp.dataset_version or inp.dataset_sha256):
        missing.append("lineage.dataset (--dataset and --dataset-version/--dataset-sha256)")
    elif not inp.dataset:
        missing.append("lineage.dataset.name (--dataset)")
    elif not (inp.dataset_version or inp.dataset_sha256):
        missing.append(
            "lineage.dataset.version or lineage.dataset.sha256 (--dataset-version/--dataset-sha256)"
        )
    if not inp.metrics:
        missing.append("metrics (--metrics FILE or --metric k=v)")
    if not inp.code_commit:
        missing.append("lineage.codeCommit (--code-commit, or run inside the training code's git checkout)")
    if inp.stage == "production":
        missing.extend(f"{m} (for --stage production)" for m in missing_for_production(inp))
    return missing


_LINEAGE_OPTION = {
    "codeRepository": "lineage.codeRepository (--code-repository, or a git remote 'origin')",
    "codeCommit": "",  # reported by missing_metadata already
    "dataset": "",
    "trainedAt": "lineage.trainedAt (--trained-at)",
    "author": "lineage.author (--author)",
    "framework": "lineage.framework (--framework)",
}


def missing_for_production(inp: RegisterInputs) -> list[str]:
    """Lineage the operator requires before production (PRODUCTION_LINEAGE) that was not given."""
    from modelversioning.api.modelversion_spec import PRODUCTION_LINEAGE

    have = {
        "codeRepository": inp.code_repository,
        "codeCommit": inp.code_commit,
        "dataset": inp.dataset,
        "trainedAt": inp.trained_at,
        "author": inp.author,
        "framework": inp.framework,
    }
    return [_LINEAGE_OPTION[f] for f in PRODUCTION_LINEAGE if not have.get(f) and _LINEAGE_OPTION.get(f)]


# ---- the artifact ------------------------------------------------------------------------------------
def local_path(artifact: str) -> Path | None:
    """The local path behind --artifact (a path or a file:// URI); None for a remote URI."""
    if "://" not in artifact:
        return Path(artifact)
    parts = urlsplit(artifact)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return None


def file_uri(path: Path) -> str:
    real = path.resolve()
    return real.as_uri() + ("/" if real.is_dir() else "")


def artifact_location(artifact: str, uri: str | None) -> tuple[Path | None, str]:
    """(the local path to hash, or None for a remote artifact; the URI the ModelVersion records):
    --uri, else the local file's file:// URI, else the remote --artifact itself."""
    local = local_path(artifact)
    if local is not None and not local.exists():
        raise Refused(f"artifact {local}: no such file or directory")
    if uri is not None and "://" not in uri:
        raise Refused(
            f"--uri {uri!r} must be an absolute URI with a scheme, e.g. s3://bucket/key", code=EXIT_USAGE
        )
    if uri is None:
        uri = file_uri(local) if local is not None else artifact
    return local, uri


def oci_pinned(uri: str, sha256: str | None) -> str:
    """An ``oci://`` --artifact as the ModelVersion records it: pinned to ``sha256`` (--sha256, or the
    placeholder while the tag is not resolved yet), the tag kept for people. Refused when the URI pins
    another digest, or is not an oci:// reference."""
    try:
        ref = oci_ref.parse(uri)
    except oci_ref.ReferenceError as e:
        raise Refused(f"--artifact: {e}", code=EXIT_USAGE) from None
    given = sha256.lower().removeprefix("sha256:") if sha256 else None
    if given and ref.digest_hex and given != ref.digest_hex:
        raise Refused(f"--sha256 {given} is not the manifest digest {uri} pins", code=EXIT_USAGE)
    return ref.pinned(given or ref.digest_hex or PLACEHOLDER_DIGEST)


def given_digest(sha256: str, local: Path | None) -> tuple[str, int | None]:
    """--sha256 as recorded (lowercase, no ``sha256:``), with the local file's size when known."""
    size = local.stat().st_size if local is not None and local.is_file() else None
    return sha256.lower().removeprefix("sha256:"), size


# ---- the manifest ------------------------------------------------------------------------------------
def build_manifest(
    inp: RegisterInputs,
    *,
    uri: str,
    sha256: str,
    size_bytes: int | None = None,
    annotations: Mapping[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The ModelVersion manifest (not yet validated)."""
    lineage = _lineage(inp)
    artifact: dict[str, Any] = {"uri": uri, "sha256": sha256}
    if size_bytes is not None:
        artifact["sizeBytes"] = size_bytes
    if inp.format:
        artifact["format"] = inp.format
    metadata: dict[str, Any] = {"name": expected_name(inp.model, inp.version)}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {LABEL_MODEL: inp.model}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "model": inp.model,
        "version": inp.version,
        "artifact": artifact,
        "lineage": lineage,
        "metrics": dict(inp.metrics),
        **register_runtime.spec_fields(inp.image, inp.port, inp.runtime_ref, inp.model_format),
        "stage": inp.stage,
    }
    if inp.description:
        spec["description"] = inp.description
    return {"apiVersion": API_VERSION, "kind": "ModelVersion", "metadata": metadata, "spec": spec}


def _lineage(inp: RegisterInputs) -> dict[str, Any]:
    dataset: dict[str, Any] = {"name": inp.dataset}
    for key, value in (
        ("version", inp.dataset_version),
        ("sha256", inp.dataset_sha256),
        ("uri", inp.dataset_uri),
    ):
        if value:
            dataset[key] = value
    lineage: dict[str, Any] = {}
    for key, value in (("codeRepository", inp.code_repository), ("codeCommit", inp.code_commit)):
        if value:
            lineage[key] = value
    lineage["dataset"] = dataset
    if inp.hyperparameters:
        lineage["hyperparameters"] = dict(inp.hyperparameters)
    for key, value in (("trainedAt", inp.trained_at), ("author", inp.author), ("framework", inp.framework)):
        if value:
            lineage[key] = value
    if inp.environment:
        lineage["environment"] = dict(inp.environment)
    return lineage


def validate_manifest(doc: Mapping[str, Any]) -> ModelVersion:
    """Validate with the API's pydantic model; Refused (exit 2) listing every problem."""
    from pydantic import ValidationError

    from modelversioning.api.common import validation_message
    from modelversioning.api.modelversion import ModelVersion

    try:
        return ModelVersion.model_validate(dict(doc))
    except ValidationError as e:
        raise Refused("invalid ModelVersion: " + validation_message(e), code=EXIT_USAGE) from None


def manifest(
    inp: RegisterInputs, uri: str, digest: tuple[str, int | None], user: str | None, namespace: str | None
) -> dict[str, Any]:
    """The validated manifest; with ``user`` (--apply) annotated with who asked for which stage."""
    annotations = (
        {REQUESTED_BY_ANNOTATION: user, REQUESTED_STAGE_ANNOTATION: inp.stage} if user is not None else {}
    )
    sha256, size = digest
    doc = build_manifest(
        inp, uri=uri, sha256=sha256, size_bytes=size, annotations=annotations, namespace=namespace
    )
    validate_manifest(doc)
    return doc


def already_exists(doc: Mapping[str, Any], namespace: str) -> Refused:
    return Refused(
        f"ModelVersion {doc['metadata']['name']} already exists in namespace {namespace}; "
        "versions are immutable: register a new version"
    )


def created_line(created: Mapping[str, Any]) -> str:
    return f"{MODELVERSION.singular}.{MODELVERSION.group}/{created['metadata']['name']} created\n"


def created_note(doc: Mapping[str, Any]) -> str:
    spec = doc["spec"]
    return (
        f"the operator now verifies the artifact; see: kubectl models get {spec['model']} {spec['version']}"
    )
