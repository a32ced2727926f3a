"""``modelversioning verify-artifact``: verify a model artifact's sha256, optionally fetching it.

    modelversioning verify-artifact URI --sha256 HEX [--dest DIR] [--output text|json]
                                    [--policy-file FILE | --policy-json JSON] [--allow-file-root DIR ...]
                                    [--size-bytes N] [--env-credentials ambient|secret]
                                    [--trust-json JSON]
                                    [--node-cache http://NODE_IP:PORT --node-cache-token-file FILE
                                     [--node-cache-content-digest HEX]]

Without ``--dest`` it streams the artifact and compares digests. With ``--dest`` it is the
artifact init container: the bytes are written under DIR while they are hashed (a file
artifact as ``DIR/<basename>``, a directory keeping its relative paths), to temporary names that
are renamed into place only once the digest matched.

Exit codes: 0 verified; 1 DigestMismatch, SizeMismatch, ManifestDigestMismatch or LayerDigestMismatch;
2 URI refused by the policy, an oci:// tag without a digest, an unsupported layout or an unsafe archive,
or a usage error; 3 fetch errors (NotFound, AccessDenied, FetchFailed) and limits (LimitExceeded); 4 the
signature (``--trust-json``) is missing, invalid, by a signer the anchors do not accept, over other
files, or its certificate expired.

``--trust-json`` (what the operator renders for a version whose signature its trust policy accepted):
the trust anchors that accepted it (``status.artifact.signature.anchors``) and where the signature is;
the pod reads the signature again and checks it against the digests it computed while writing the
files, with the same code as the operator (:mod:`modelversioning.artifacts.signature`); nothing is
moved into ``--dest`` unless it is accepted.

Credentials come only from environment variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_ENDPOINT_URL[_S3], AWS_REGION, GOOGLE_APPLICATION_CREDENTIALS_JSON,
HTTP_AUTHORIZATION, MODELVERSIONING_CREDENTIAL_HOSTS, ... (see
``modelversioning.artifacts.credentials``). ``--env-credentials secret`` (what the init container
uses: the Deployment injects the Secret named by ``artifact.secretRef`` with envFrom) treats them
exactly like a Secret's data: bound to the hosts in MODELVERSIONING_CREDENTIAL_HOSTS, and no
credentials means anonymous, never the node's identity. ``ambient`` (the default, on your own
machine) treats them as your own identity (the SDK chain, ``~/.aws``...), sent only to the
policy's ``ambientCredentialHosts`` -- every host when no policy is given.

The policy is ``--policy-json`` (what the operator renders into the init container: its own
effective policy, so the pod enforces exactly what the operator enforced), else ``--policy-file``
(an ArtifactPolicy, or a whole operator config with an ``artifacts:`` key; YAML or JSON), else the
operator config at ``$MODELVERSIONING_CONFIG``, else the defaults; ``--allow-file-root`` adds file
roots. A process that is still running at the policy's deadline (plus a grace period) exits 3 with
LimitExceeded, whatever it was waiting for.

``--node-cache`` (with ``--dest``; rendered when the operator's ``serving.nodeCachePort`` is set): before
fetching, ask the node's cache agent for the pinned digest, showing it the projected token of
``--node-cache-token-file``; what it sends is hashed and checked like the origin's bytes
(:mod:`modelversioning.artifacts.node_cache`). A miss, a refusal, bytes that do not hash or an agent that
does not answer within a few seconds: fetch from the origin, then offer the verified files to the agent.
stderr says ``node-cache: hit|miss|refused|unreachable|corrupt|skipped``. For an ``oci://`` URI the cache
is used only with ``--node-cache-content-digest`` (the version's verified ``status.artifact.contentDigest``,
rendered by the operator): the files read from it, and those offered to it, must hash to exactly that.

The parser is the standard library's ``argparse``, not typer: this is the artifact init container of
every model pod, and a pod waits for its start (typer, click and rich cost ~0.25 s of CPU to import;
``modelversioning verify-artifact`` reaches :func:`main` without importing them, see ``cli/main.py``).
Stand-alone: ``python -m modelversioning.cli.verify URI --sha256 HEX`` or ``main(argv)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts import node_cache as nc
from modelversioning.artifacts.credentials import KNOWN_KEYS
from modelversioning.artifacts.errors import Reason
from modelversioning.artifacts.results import VerifyResult
from modelversioning.artifacts.signature import TrustMaterial
from modelversioning.artifacts.verify import verify_artifact

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_REFUSED = 2
EXIT_FETCH = 3
EXIT_SIGNATURE = 4

EXIT_CODES = {
    Reason.VERIFIED: EXIT_OK,
    Reason.DIGEST_MISMATCH: EXIT_MISMATCH,
    Reason.URI_REFUSED: EXIT_REFUSED,
    Reason.NOT_FOUND: EXIT_FETCH,
    Reason.ACCESS_DENIED: EXIT_FETCH,
    Reason.FETCH_FAILED: EXIT_FETCH,
    Reason.LIMIT_EXCEEDED: EXIT_FETCH,
    Reason.SIZE_MISMATCH: EXIT_MISMATCH,
    Reason.MANIFEST_DIGEST_MISMATCH: EXIT_MISMATCH,
    Reason.LAYER_DIGEST_MISMATCH: EXIT_MISMATCH,
    Reason.TAG_WITHOUT_DIGEST: EXIT_REFUSED,
    Reason.UNSUPPORTED_LAYOUT: EXIT_REFUSED,
    Reason.UNSAFE_ARCHIVE: EXIT_REFUSED,
    Reason.SIGNATURE_MISSING: EXIT_SIGNATURE,
    Reason.SIGNATURE_INVALID: EXIT_SIGNATURE,
    Reason.SIGNER_NOT_TRUSTED: EXIT_SIGNATURE,
    Reason.SIGNATURE_DIGEST_MISMATCH: EXIT_SIGNATURE,
    Reason.CERTIFICATE_EXPIRED: EXIT_SIGNATURE,
}
WATCHDOG_GRACE_SECONDS = 10.0
NODE_CACHE_TIMEOUT = 3.0  # each step with the node's agent: an absent agent never holds a pod up longer


class EnvCredentials(StrEnum):
    ambient = "ambient"
    secret = "secret"


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def _check_sha256(value: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or v.strip("0123456789abcdef"):
        raise argparse.ArgumentTypeError(
            "must be 64 hex characters (the sha256 of the file or of the manifest)"
        )
    return v


def _size(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def load_policy(
    policy_file: Path | None, extra_roots: list[Path] | None = None, policy_json: str | None = None
) -> ArtifactPolicy:
    """The ArtifactPolicy for the CLI (see the module docstring). Raises ValueError."""
    if policy_json is not None:
        try:
            policy = ArtifactPolicy.model_validate_json(policy_json)
        except ValidationError as e:
            raise ValueError(f"invalid --policy-json: {e}") from None
    elif policy_file is not None:
        import yaml

        try:
            data: Any = yaml.safe_load(policy_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read policy file {policy_file}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"policy file {policy_file} must contain a mapping")
        try:
            if "artifacts" in data:
                from modelversioning.api.settings import Settings  # the whole config: not in a pod's path

                policy = Settings.model_validate(data).artifacts
            else:
                policy = ArtifactPolicy.model_validate(data)
        except ValidationError as e:
            raise ValueError(f"invalid policy file {policy_file}: {e}") from None
    else:
        import yaml

        from modelversioning.api.settings import Settings

        try:
            policy = Settings.load().artifacts
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ValueError(f"invalid operator config ($MODELVERSIONING_CONFIG): {e}") from None
        if not os.environ.get("MODELVERSIONING_CONFIG"):
            # no policy at all: your own machine, your own credentials, wherever you point them
            policy = policy.model_copy(update={"ambient_credential_hosts": ["*"]})
    if extra_roots:
        roots = [*policy.file_roots, *(str(r.expanduser().absolute()) for r in extra_roots)]
        policy = policy.model_copy(update={"file_roots": roots})
    return policy


def _run_with_progress(run: Any) -> VerifyResult:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]verifying"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("verify", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result: VerifyResult = run(progress)
        return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelversioning verify-artifact",
        allow_abbrev=False,  # as typer: --sha is not --sha256
        description="Verify a model artifact's sha256 (exit 0 verified, 1 mismatch, 2 refused/usage, 3 fetch "
        "error, 4 the signature); with --dest, fetch it (the init container).",
    )
    p.add_argument(
        "uri", metavar="URI", help="s3://, gs://, http(s)://, file://, oci:// URI (file or directory)."
    )
    p.add_argument(
        "--sha256",
        required=True,
        type=_check_sha256,
        help="Expected sha256 (of the file, or of the manifest for a directory).",
    )
    p.add_argument(
        "--dest", type=Path, help="Write the verified artifact under this directory (init container)."
    )
    p.add_argument(
        "--output",
        "-o",
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.text.value,
        help="text, or json: one JSON object on stdout.",
    )
    p.add_argument("--policy-file", type=Path, help="YAML/JSON ArtifactPolicy (or operator config).")
    p.add_argument(
        "--allow-file-root",
        type=Path,
        action="append",
        help="Allow file:// URIs under this directory (repeatable).",
    )
    p.add_argument("--policy-json", help="The ArtifactPolicy as JSON (rendered by the operator).")
    p.add_argument("--size-bytes", type=_size, help="Expected total size (spec.artifact.sizeBytes).")
    p.add_argument(
        "--env-credentials",
        choices=[e.value for e in EnvCredentials],
        default=EnvCredentials.ambient.value,
        help="secret: the environment holds a Secret's data (init container); ambient: your own.",
    )
    p.add_argument("--trust-json", help="Signature trust anchors as JSON (rendered by the operator).")
    p.add_argument("--node-cache", help="The node agent, http://NODE_IP:PORT: read from it, offer to it.")
    p.add_argument(
        "--node-cache-token-file", type=Path, help="The projected ServiceAccount token to show the agent."
    )
    p.add_argument(
        "--node-cache-content-digest",
        help="oci://: the verified digest of the laid-out files (rendered by the operator); the "
        "cache's entry must hash to it.",
    )
    return p


# The environment of ``--env-credentials secret`` is the tenant's Secret (envFrom): a proxy named there
# would be the tenant's choice, and a proxy is exempt from the address check (it resolves the name).
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                   "NO_PROXY", "no_proxy")  # fmt: skip


def _drop_tenant_proxies() -> None:
    dropped = sorted(k for k in PROXY_VARIABLES if os.environ.pop(k, None) is not None)
    if dropped:
        _err(f"ignored {', '.join(dropped)}: the artifact Secret cannot choose a proxy")


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """The command on parsed arguments; returns the exit code."""
    output = OutputFormat(args.output)
    try:
        policy = load_policy(args.policy_file, args.allow_file_root, args.policy_json)
        trust = _trust(args.trust_json)
    except ValueError as e:
        _err(f"error: {e}")
        return EXIT_REFUSED
    secret_data: dict[str, str] | None = None
    if EnvCredentials(args.env_credentials) is EnvCredentials.secret:
        secret_data = {k: v for k, v in os.environ.items() if k in KNOWN_KEYS}
        _drop_tenant_proxies()
    dest: Path | None = args.dest
    cache = _node_cache(args.node_cache, args.node_cache_token_file) if dest is not None else None
    content = args.node_cache_content_digest or ""
    result = _verify(
        args.uri, args.sha256, dest, policy, output, args.size_bytes, trust, secret_data, cache, content
    )

    if output is OutputFormat.json:
        print(json.dumps(result.to_dict(), sort_keys=True), flush=True)
    elif result.ok:
        where = f" -> {result.written_to}" if result.written_to else ""
        print(f"{result.message}{where}", flush=True)
    else:
        retry = " (transient: may succeed later)" if result.transient else ""
        _err(f"error: {result.message}{retry}")
        if result.reason is Reason.DIGEST_MISMATCH and result.actual:
            _err(f"the bytes read hash to sha256 {result.actual}")
    return EXIT_CODES[result.reason]


def _verify(
    uri: str,
    sha256: str,
    dest: Path | None,
    policy: ArtifactPolicy,
    output: OutputFormat,
    size_bytes: int | None,
    trust: TrustMaterial | None,
    secret_data: dict[str, str] | None,
    cache: nc.NodeCache | None,
    content: str = "",
) -> VerifyResult:
    """The node cache first (with ``cache``), else the origin (then offered to the cache); each under a
    watchdog."""
    watchdog = _watchdog(uri, sha256, policy, output)
    try:  # node cache: a lookup before the fetch (None: fetch from the origin as without one)
        looked, result = nc.lookup(cache, uri, sha256, dest, policy=policy, expected_size=size_bytes,
                                   trust=trust, secret_data=secret_data, content=content)  # fmt: skip
    finally:
        watchdog.cancel()
    if result is not None:
        return result
    watchdog = _watchdog(uri, sha256, policy, output)

    def run(progress: Any) -> VerifyResult:
        return verify_artifact(
            uri, sha256, policy=policy, progress=progress, dest=dest, secret_data=secret_data,
            expected_size=size_bytes, trust=trust,
        )  # fmt: skip

    try:
        result = _run_with_progress(run) if sys.stderr.isatty() else run(None)
        nc.offer_after(cache, looked, result, uri, dest, content)  # node cache: an offer after verification
    finally:
        watchdog.cancel()
    return result


def _node_cache(url: str | None, token_file: Path | None) -> nc.NodeCache | None:
    if not url or token_file is None:
        return None
    return nc.from_environment(url, str(token_file), NODE_CACHE_TIMEOUT, _err)


def _trust(trust_json: str | None) -> TrustMaterial | None:
    """The trust anchors to enforce (None: no signature check). Raises ValueError."""
    if trust_json is None:
        return None
    try:
        material = TrustMaterial.from_dict(json.loads(trust_json))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"invalid --trust-json: {e}") from None
    if not material.entries:
        raise ValueError("invalid --trust-json: no trust anchors")
    return replace(material, enforce=True)


def _watchdog(uri: str, sha256: str, policy: ArtifactPolicy, output: OutputFormat) -> threading.Timer:
    """Exit (3, LimitExceeded) if still running at the deadline plus a grace period, whatever a
    network call is stuck in (an init container must never hang)."""

    def fire() -> None:
        from modelversioning.artifacts.redact import redact_uri

        msg = (
            f"{redact_uri(uri)}: LimitExceeded: not verified within artifacts.timeoutSeconds "
            f"({policy.timeout_seconds:g}s); stopped"
        )
        if output is OutputFormat.json:
            doc = {"ok": False, "reason": Reason.LIMIT_EXCEEDED.value, "uri": redact_uri(uri),
                   "expected": sha256, "transient": False, "message": msg}  # fmt: skip
            sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
        else:
            sys.stderr.write(f"error: {msg}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[Reason.LIMIT_EXCEEDED])

    timer = threading.Timer(policy.timeout_seconds + WATCHDOG_GRACE_SECONDS, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    """Run the command in-process; returns the exit code (never raises SystemExit)."""
    try:
        return run(parser().parse_args(argv))
    except SystemExit as e:  # argparse: --help (0), a usage error (2)
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
