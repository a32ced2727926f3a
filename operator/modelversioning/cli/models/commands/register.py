"""``kubectl models register``: hash the artifact, record lineage from git (and DVC), validate, print
the ModelVersion for GitOps or create it. The decisions are :mod:`..register_plan`'s."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelversioning.cli.models import register_plan as plan
from modelversioning.cli.models import register_runtime, terminal
from modelversioning.cli.models.context import Globals, globals_of
from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.gitinfo import git_info
from modelversioning.cli.models.kube import MODELVERSIONS, ClusterError
from modelversioning.cli.models.output import Output
from modelversioning.cli.models.signing import Signing, sign_and_push_oci, sign_and_store, signing_of
from modelversioning.cli.models.views import without_managed_fields
from modelversioning.domain.conditions import now_rfc3339
from modelversioning.domain.oci_ref import is_oci

if TYPE_CHECKING:
    from modelversioning.api.settings import ArtifactPolicy
    from modelversioning.artifacts import Digest
    from modelversioning.cli.models.importers.dvc import DvcInputs

app = typer.Typer()


class StageChoice(StrEnum):
    candidate = "candidate"
    staging = "staging"
    production = "production"
    archived = "archived"


# The options (one alias each, so that the command's signature reads as a list).
Model = Annotated[str, typer.Argument(help="Model name (DNS label).")]
Version = Annotated[str, typer.Argument(help="Semantic version MAJOR.MINOR.PATCH[-prerelease].")]
Artifact = Annotated[
    str | None,
    typer.Option(
        "--artifact",
        help="Local file/directory, or a remote URI (s3://, gs://, https://..., oci://host/repo:tag: "
        "recorded pinned to the tag's manifest digest).",
    ),
]
Sha256 = Annotated[
    str | None, typer.Option("--sha256", help="Digest of the artifact (computed when omitted).")
]
Uri = Annotated[
    str | None,
    typer.Option(
        "--uri",
        help="For a local --artifact: the remote location the "
        "bytes were uploaded to (default: its file:// URI).",
    ),
]
Image = Annotated[
    str | None,
    typer.Option(
        "--image",
        help="Serving container image: an explicit spec.runtime. Not needed with --runtime-ref, "
        "--model-format or --framework (the operator takes the runtime from the catalog).",
    ),
]
Port = Annotated[
    int | None,
    typer.Option("--port", help="With --image: the serving port (default 8080).", min=1, max=65535),
]
RuntimeRefOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime-ref",
        metavar="[KIND/]NAME",
        help="A catalog runtime (spec.runtimeRef): KIND ModelRuntime or ClusterModelRuntime; without "
        "one, a ModelRuntime of that name, else the ClusterModelRuntime. Exclusive with --image.",
    ),
]
ModelFormat = Annotated[
    str | None,
    typer.Option(
        "--model-format",
        metavar="NAME[:VERSION]",
        help="The model's format (spec.format), e.g. sklearn:1: picks a catalog runtime that supports it "
        "(default: --framework), and is checked against --runtime-ref's formats.",
    ),
]
Dataset = Annotated[str | None, typer.Option("--dataset", help="Training dataset name.")]
DatasetVersion = Annotated[str | None, typer.Option("--dataset-version", help="Dataset version.")]
DatasetSha256 = Annotated[str | None, typer.Option("--dataset-sha256", help="Dataset digest.")]
DatasetUri = Annotated[str | None, typer.Option("--dataset-uri", help="Where the dataset lives.")]
MetricsFile = Annotated[Path | None, typer.Option("--metrics", help="JSON object of evaluation metrics.")]
Metric = Annotated[list[str] | None, typer.Option("--metric", help="Metric k=v (repeatable).")]
Hyperparameter = Annotated[
    list[str] | None, typer.Option("--hyperparameter", help="Hyperparameter k=v (repeatable).")
]
HyperparametersFile = Annotated[
    Path | None, typer.Option("--hyperparameters", help="JSON object of hyperparameters.")
]
Environment = Annotated[
    list[str] | None,
    typer.Option("--environment", help="Training environment k=v, e.g. python=3.11.9 (repeatable)."),
]
Author = Annotated[str | None, typer.Option("--author", help="Who trained it.")]
Framework = Annotated[str | None, typer.Option("--framework", help="e.g. xgboost-2.0.3.")]
TrainedAt = Annotated[str | None, typer.Option("--trained-at", help="RFC 3339 time (default: now).")]
CodeRepository = Annotated[
    str | None,
    typer.Option("--code-repository", help="Training code repository (default: git remote 'origin')."),
]
CodeCommit = Annotated[
    str | None, typer.Option("--code-commit", help="Training code commit (default: HEAD of the checkout).")
]
CodeDir = Annotated[Path, typer.Option("--code-dir", help="The training code's git checkout.")]
AllowDirty = Annotated[
    bool,
    typer.Option(
        "--allow-dirty",
        help="Register from a checkout with uncommitted changes (recorded as environment.gitDirty).",
    ),
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Artifact file format (spec.artifact.format), e.g. onnx, safetensors, joblib; the model "
        "format the runtime catalog matches is --model-format.",
    ),
]
Description = Annotated[str | None, typer.Option("--description", help="Free text.")]
Stage = Annotated[StageChoice, typer.Option("--stage", help="Requested stage.")]
Apply = Annotated[
    bool, typer.Option("--apply", help="Create it in the cluster (default: print the YAML for GitOps).")
]
PlainHttp = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Reach the oci:// --artifact's registry over HTTP, not HTTPS (no TLS, e.g. localhost).",
    ),
]
SignKey = Annotated[
    Path | None,
    typer.Option("--sign-key", help="Sign the artifact (OpenSSF Model Signing) with this PEM private key."),
]
SignCert = Annotated[
    Path | None,
    typer.Option("--sign-cert", help="With --sign-key: the PEM signing certificate, then its chain."),
]
SignatureUri = Annotated[
    str | None,
    typer.Option("--signature-uri", help="Where the signature goes (default: beside the artifact, .sig)."),
]
Dvc = Annotated[
    str | None,
    typer.Option(
        "--dvc",
        help="Fill the artifact (md5-checked), --uri (its object in the DVC remote), the dataset, "
        "hyperparameters and metrics from DVC: a .dvc file or dvc.lock[:STAGE[:OUT]] (docs/import.md).",
    ),
]


@app.command(
    epilog="[bold]Example[/bold]\n\n  kubectl models register fraud-detector 2.4.1 --artifact "
    "./out/model.bin --uri s3://models/fraud-detector/2.4.1/model.bin --image "
    "ghcr.io/acme/fraud-server:1.4 --dataset transactions --dataset-version 2024-09-30 --metrics "
    "eval.json --hyperparameters params.json --author jane@acme.com --framework xgboost-2.0.3 > "
    "fraud-detector-2.4.1.yaml\n\n  kubectl models register fraud-detector 2.4.2 --artifact "
    "s3://models/fraud-detector/2.4.2/ --runtime-ref ClusterModelRuntime/xgboost-server --model-format "
    "xgboost:2 --dataset transactions --dataset-version 2024-10-31 --metrics eval.json > "
    "fraud-detector-2.4.2.yaml"
)
def register(
    ctx: typer.Context,
    model: Model,
    version: Version,
    artifact: Artifact = None,
    sha256: Sha256 = None,
    uri: Uri = None,
    image: Image = None,
    port: Port = None,
    runtime_ref: RuntimeRefOpt = None,
    model_format: ModelFormat = None,
    dataset: Dataset = None,
    dataset_version: DatasetVersion = None,
    dataset_sha256: DatasetSha256 = None,
    dataset_uri: DatasetUri = None,
    metrics_file: MetricsFile = None,
    metric: Metric = None,
    hyperparameter: Hyperparameter = None,
    hyperparameters_file: HyperparametersFile = None,
    environment: Environment = None,
    author: Author = None,
    framework: Framework = None,
    trained_at: TrainedAt = None,
    code_repository: CodeRepository = None,
    code_commit: CodeCommit = None,
    code_dir: CodeDir = Path("."),
    allow_dirty: AllowDirty = False,
    fmt_: Format = None,
    description: Description = None,
    stage: Stage = StageChoice.candidate,
    apply: Apply = False,
    dvc: Dvc = None,
    plain_http: PlainHttp = False,
    sign_key: SignKey = None,
    sign_cert: SignCert = None,
    signature_uri: SignatureUri = None,
) -> None:
    """Register a model version: hash the artifact, record lineage from git, validate, print or create."""
    options = {
        k: v for k, v in locals().items() if k not in ("ctx", "sign_key", "sign_cert", "signature_uri")
    }
    args = plan.RegisterArgs(**options)  # the options, by name
    signing = signing_of(sign_key, sign_cert, signature_uri)
    g = globals_of(ctx)
    plan.check_identity(args.model, args.version)  # before any work
    register_runtime.check_runtime(args.image, args.port, args.runtime_ref, args.model_format)
    args, values, dvc_info = _with_dvc(args, plan.read_values(args))
    prepared = plan.prepare(
        args, values, git_info(args.code_dir) if plan.needs_git(args) else None, now_rfc3339()
    )
    for note in plan.check_lineage(prepared, args.allow_dirty):
        terminal.note(note)
    assert args.artifact is not None  # check_lineage refused its absence
    local, uri = plan.artifact_location(args.artifact, args.uri)
    oci = local is None and is_oci(uri)
    if oci and signing is not None and signing.signature_uri is not None:
        raise Refused("--signature-uri: an oci:// artifact's signature is an OCI referrer", EXIT_USAGE)
    # Everything but the digest is checked before hashing (which may take a while).
    inp = prepared.inputs
    sha256 = (args.sha256 or plan.PLACEHOLDER_DIGEST).lower().removeprefix("sha256:")
    plan.validate_manifest(
        plan.build_manifest(inp, uri=plan.oci_pinned(uri, sha256) if oci else uri, sha256=sha256)
    )
    uri, digest = _artifact_digest(args, local, uri, dvc_info, signing, oci=oci)
    cluster = g.cluster if args.apply else None
    user = cluster.current_user() if cluster is not None else None
    namespace = cluster.namespace if cluster is not None else (g.namespace or None)
    doc = plan.manifest(inp, uri, digest, user, namespace)
    if signing is not None and signing.signature_uri is not None:
        doc["spec"]["artifact"]["signatureUri"] = signing.signature_uri
        plan.validate_manifest(doc)
    if cluster is None:
        terminal.out(terminal.dump(doc, Output.json if g.fmt(Output.yaml) is Output.json else Output.yaml))
        return
    _create(g, doc)


def _with_dvc(
    args: plan.RegisterArgs, values: plan.Values
) -> tuple[plan.RegisterArgs, plan.Values, DvcInputs | None]:
    """--dvc (importers/dvc.py): explicit options win, DVC fills the rest; the DVC inputs to hash
    from when the artifact is DVC's own copy (its md5 is checked while hashing), else None."""
    if args.dvc is None:
        return args, values, None
    from modelversioning.cli.models.importers import dvc as dvcmeta

    info = dvcmeta.read(args.dvc, args.dataset)
    filled = dvcmeta.fill(
        info,
        artifact=args.artifact,
        uri=args.uri,
        dataset=args.dataset,
        dataset_version=args.dataset_version,
        dataset_uri=args.dataset_uri,
    )
    for n in [*info.notes, dvcmeta.summary(info, filled)]:
        terminal.note(n)
    args, values = plan.with_dvc(args, values, info, filled)
    return args, values, info if filled.hash_from_dvc else None


def _digest(
    args: plan.RegisterArgs, local: Path | None, dvc_info: DvcInputs | None
) -> tuple[str, int | None]:
    """(sha256, size): --sha256 as given, else hashed here (DVC's copy with its md5 checked)."""
    assert args.artifact is not None
    if args.sha256:
        return plan.given_digest(args.sha256, local)
    if dvc_info is not None:
        from modelversioning.cli.models.importers.dvc_hash import hash_verified

        with terminal.progress(f"sha256 + md5 {args.artifact}") as cb:
            sha256, size = hash_verified(dvc_info, cb)
        terminal.note(f"sha256 of {args.artifact}: {sha256} ({size} bytes; md5 is the one DVC recorded)")
        return sha256, size
    return _hash_artifact(args.artifact, local)


def _artifact_digest(
    args: plan.RegisterArgs,
    local: Path | None,
    uri: str,
    dvc_info: DvcInputs | None,
    signing: Signing | None,
    *,
    oci: bool,
) -> tuple[str, tuple[str, int | None]]:
    """(the artifact's URI, (sha256, size)): an oci:// tag resolved to its digest, else hashed here (and
    signed, with --sign-key) or as given."""
    if oci:
        pinned, (sha256, size) = _resolve_oci(uri, args)
        if signing is not None:
            _sign_oci(pinned, sha256, args, signing)
        return pinned, (sha256, size)
    if signing is not None:
        return uri, _sign(args, local, uri, signing)
    return uri, _digest(args, local, dvc_info)


def _resolve_oci(uri: str, args: plan.RegisterArgs) -> tuple[str, tuple[str, int | None]]:
    """(the pinned URI, (manifest digest, the layers' size)): --sha256 as given, else the tag resolved
    from the registry (your own docker config's credentials; the manifest's digest computed here)."""
    if args.sha256:
        pinned = plan.oci_pinned(uri, args.sha256)
        return pinned, (pinned.rsplit("@sha256:", 1)[1], None)
    from modelversioning.artifacts import ArtifactError, resolve_reference

    policy = _oci_policy(uri, args)
    try:
        r = resolve_reference(uri, policy=policy)
    except ArtifactError as e:
        raise Refused(f"cannot resolve the artifact: {e}") from None
    terminal.note(f"{uri} is sha256:{r.sha256} ({r.layout} layout, {r.layers} layers, {r.size_bytes} bytes)")
    return r.uri, (r.sha256, r.size_bytes)


def _oci_policy(uri: str, args: plan.RegisterArgs) -> ArtifactPolicy:
    """Your machine: no URI policy but the scheme, your own credentials for the artifact's registry."""
    from modelversioning.api.settings import ArtifactPolicy
    from modelversioning.domain import oci_ref

    host = oci_ref.parse(uri).host
    return ArtifactPolicy(
        allowed_schemes=["oci"],
        allow_private_networks=True,
        ambient_credential_hosts=[host],
        plain_http_registries=[host] if args.plain_http else [],
        timeout_seconds=300,
    )


def _sign_oci(pinned: str, sha256: str, args: plan.RegisterArgs, signing: Signing) -> None:
    """Fetch and hash the files the manifest lays out (what the pod will hash: the per-file digests are
    what is signed), sign them, push the signature as a referrer of the manifest."""
    from modelversioning.artifacts import ArtifactError, compute_digest

    policy = _oci_policy(pinned, args)
    t0 = time.monotonic()
    try:
        with terminal.progress(f"sha256 {pinned}") as cb:
            d = compute_digest(pinned, policy=policy, progress=cb)
    except ArtifactError as e:
        raise Refused(f"cannot fetch the artifact to sign it: {e}") from None
    if d.sha256 != sha256:  # pragma: no cover - compute_digest verified the manifest by this digest
        raise Refused(f"{pinned}: the manifest fetched is not sha256:{sha256}: nothing signed")
    took = time.monotonic() - t0
    terminal.note(f"{pinned}: {d.files} files, {d.size_bytes} bytes fetched and hashed in {took:.1f}s")
    signed = sign_and_push_oci(signing, d, pinned, policy)
    terminal.note(f"signed ({signed.method}, OpenSSF Model Signing): {signed.written}")


def _sign(args: plan.RegisterArgs, local: Path | None, uri: str, signing: Signing) -> tuple[str, int | None]:
    """Hash the artifact (the per-file digests are what is signed: hashed once), sign, store the
    signature beside it; --sha256, when given, must be what was hashed."""
    assert args.artifact is not None
    d = _hashed(args.artifact, local)
    if args.sha256 and args.sha256.lower().removeprefix("sha256:") != d.sha256:
        raise Refused(f"--sha256 {args.sha256} is not the artifact's sha256 {d.sha256}: nothing signed")
    signed = sign_and_store(signing, d, uri, local)
    terminal.note(f"signed ({signed.method}, OpenSSF Model Signing): {signed.written}")
    if signed.note:
        terminal.note(signed.note)
    return str(d.sha256), int(d.size_bytes)


def _hash_artifact(artifact: str, local: Path | None) -> tuple[str, int]:
    d = _hashed(artifact, local)
    return str(d.sha256), int(d.size_bytes)


def _hashed(artifact: str, local: Path | None) -> Digest:
    from modelversioning.artifacts import ArtifactError, compute_digest, digest_local

    t0 = time.monotonic()
    shown = str(local) if local is not None else artifact
    try:
        with terminal.progress(f"sha256 {shown}") as cb:
            d = (
                digest_local(local, progress=cb)
                if local is not None
                else compute_digest(artifact, progress=cb)
            )
    except ArtifactError as e:
        raise Refused(f"cannot hash the artifact: {e}") from None
    files = f", {d.files} files" if d.kind == "directory" else ""
    took = time.monotonic() - t0
    terminal.note(f"sha256 of {shown}: {d.sha256} ({d.size_bytes} bytes{files}) in {took:.1f}s")
    return d


def _create(g: Globals, doc: dict[str, Any]) -> None:
    cluster = g.cluster
    try:
        created = cluster.create(MODELVERSIONS, doc)
    except ClusterError as e:
        if e.status == 409:
            raise plan.already_exists(doc, cluster.namespace) from None
        raise
    fmt = g.fmt()
    if fmt is Output.table:
        terminal.out(plan.created_line(created))
        terminal.note(plan.created_note(doc))
    else:
        terminal.out(terminal.dump(without_managed_fields(created), fmt))
