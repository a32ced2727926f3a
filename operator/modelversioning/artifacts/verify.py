"""Streaming verification of model artifacts (any fsspec URI, and ``oci://``) against their sha256.

``oci://`` artifacts (pinned by their manifest digest) are fetched from the registry and laid out by
:mod:`~modelversioning.artifacts.oci_fetch`; everything else here (the policy, the credentials, the
deadline, the results) is shared.

Bytes are hashed while they are read, ``policy.chunk_size`` at a time; nothing is downloaded
first. While one chunk is read the previous one is hashed (and, with ``dest``, written) by a worker
thread (:mod:`modelversioning.artifacts.pipeline`). The digest of a directory/prefix is the sha256 of
its manifest (see :mod:`modelversioning.artifacts.manifest`); its files are hashed in parallel
(``policy.max_workers`` threads pulling from one list, at most three chunks in memory per thread).

Bounded: every step (connecting, response headers, the listing, ``info``, every read) runs under
one deadline (``policy.timeout_seconds``): the HTTP client's total timeout, and listing/``info`` in a
helper thread that is abandoned at the deadline. An s3 prefix is listed page by page and the
listing stops at ``policy.max_files`` (+1) files or ``policy.max_total_bytes``; no artifact is read
past ``max_total_bytes`` or a declared ``expected_size``. Reaching a limit is ``LimitExceeded``
(permanent, the message names the setting). The operator also runs each verification in a child
process with a memory limit (:mod:`modelversioning.artifacts.runner`), so nothing here can take
the operator down or be left running.

* A read is only ever reported as a digest when it was complete: the byte count is compared
  with the size the store reported (when it reports one), and a stream that ends early (e.g.
  HTTP Content-Length larger than the body) is FetchFailed.
* ``dest`` (the init-container form) writes the bytes while hashing, to a temporary name inside
  ``dest``; files are renamed into place only after the digest matched, and the partial output
  is deleted otherwise. A file artifact lands at ``dest/<basename>``, a directory keeps its
  relative paths under ``dest``.
* Outcomes (:class:`~modelversioning.artifacts.errors.Reason`) and whether retrying may help:

  ==============  =========  ==========================================================
  Verified        --         the digest matched
  DigestMismatch  no         the bytes are not the registered ones
  NotFound        **yes**    nothing at the URI (yet): artifacts are often uploaded after
                             the ModelVersion is registered, so the operator retries with
                             backoff and says so in the message
  AccessDenied    no         credentials missing/wrong (PermissionError, S3 403 /
                             AccessDenied / InvalidAccessKeyId, HTTP 401/403)
  FetchFailed     yes        network/store errors, timeouts, truncated reads
  URIRefused      no         the URI policy refused the URI (or a redirect/address), or the
                             credentials may not be sent to that host
  LimitExceeded   no         timeoutSeconds, maxFiles, maxTotalBytes (or, in the runner, the
                             memory limit) was reached
  SizeMismatch    no         the bytes differ from the declared ``expected_size``
  ==============  =========  ==========================================================

Messages never contain credentials, URI user info or query strings (pre-signed URLs), and a
mismatch never reports what the URI *did* hash to (``VerifyResult.actual`` has it, for the CLI):
the operator must not be an oracle for the content of URLs that are not the expected artifact.

This module checks the URI and binds the credentials, then puts the pieces together and turns
what they raise into results: :mod:`~modelversioning.artifacts.listing` (what to read, per
scheme), :mod:`~modelversioning.artifacts.hashing` (reading and hashing, in parallel),
:mod:`~modelversioning.artifacts.dest_writer` (``dest``), :mod:`~modelversioning.artifacts.limits`
(the deadline and size bounds), :mod:`~modelversioning.artifacts.classify` (exception -> Reason)
and :mod:`~modelversioning.artifacts.results` (Digest, VerifyResult).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from modelversioning.api import wire as R
from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.classify import classified_error, describe
from modelversioning.artifacts.credentials import (
    HOSTS_KEY,
    SETTING_KEYS,
    StoreAccess,
    bind_credentials,
    store_access,
)
from modelversioning.artifacts.dest_writer import DestWriter
from modelversioning.artifacts.errors import TRANSIENT_REASONS, ArtifactError, Reason
from modelversioning.artifacts.hashing import ProgressCallback, hash_plan
from modelversioning.artifacts.limits import deadline_exceeded
from modelversioning.artifacts.listing import plan_reading
from modelversioning.artifacts.policy import check_uri
from modelversioning.artifacts.redact import redact_text, redact_uri
from modelversioning.artifacts.results import Digest, VerifyResult
from modelversioning.artifacts.signature import (
    MAX_BUNDLE_BYTES,
    SignatureCheck,
    TrustMaterial,
    check_signature,
    exempt_path,
    missing,
    signature_location,
)
from modelversioning.domain.oci_ref import is_oci

# Loaded when needed only (the init container pays for what its URI needs): oci:// in
# ``verify_artifact`` and ``_digest`` (artifacts.oci_fetch), the anchors' rules in ``enforced``
# (domain.trust); artifacts.signature loads its libraries only to check a signature.

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------
# public entry points


def verify_artifact(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy | None = None,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    dest: str | os.PathLike[str] | None = None,
    expected_size: int | None = None,
    trust: TrustMaterial | None = None,
) -> VerifyResult:
    """Stream ``uri`` and compare its digest with ``expected_sha256``. Never raises for
    fetch/policy problems (they are results); raises ValueError for a malformed expected digest.
    ``expected_size``: ``spec.artifact.sizeBytes`` (total bytes); no more is read, and a
    different size is SizeMismatch.

    ``secret_data``: decoded data of ``artifact.secretRef`` (None: the process environment, see
    :mod:`~modelversioning.artifacts.credentials`). ``env`` replaces os.environ (tests).
    ``progress(bytes_done, bytes_total_or_None)`` is called from worker threads, serialized.
    ``dest``: also write the verified files under this directory (init-container form).
    ``trust``: also read the signature and check it against these signers and the per-file digests
    just computed (:mod:`~modelversioning.artifacts.signature`); with ``trust.enforce`` a signature
    the anchors do not accept is a failure (nothing is moved into ``dest``).
    """
    expected = expected_sha256.strip().lower()
    if not _SHA256_RE.match(expected):
        raise ValueError("expected sha256 must be 64 hex characters")
    policy = policy or ArtifactPolicy()
    start = time.monotonic()
    deadline = start + policy.timeout_seconds
    report = _Report(redact_uri(uri), expected, start, _secret_values(secret_data))
    writer = DestWriter(Path(dest)) if dest is not None else None
    try:
        if is_oci(uri):
            from modelversioning.artifacts.oci_fetch import check_expected

            check_expected(uri, expected, report.shown)
        access = _access_for(uri, secret_data, env)
        report.secret_values |= access.secret_values
        digest = _digest(
            uri, access, policy, progress=progress, writer=writer, deadline=deadline,
            expected_size=expected_size, env=env,
        )  # fmt: skip
    except Exception as e:
        if writer:
            writer.discard()
        return report.failure(_failure(e, report.shown, policy, deadline))

    mismatch = report.mismatch(digest, expected_size, writer)
    if mismatch is not None:
        return mismatch
    if trust is not None:
        try:
            report.signature = _signature(uri, digest, trust, policy, secret_data, env, deadline)
        except Exception as e:
            if writer:
                writer.discard()
            return report.failure(_failure(e, report.shown, policy, deadline))
        refusal = enforced(report.signature, trust) if trust.enforce else None
        if refusal is not None:
            if writer:
                writer.discard()
            return report.result(refusal[0], refusal[1], digest=digest)
    if writer:
        return _commit(report, digest, writer, dest)
    return report.verified(digest, written_to=None)


def compute_digest(
    uri: str,
    *,
    policy: ArtifactPolicy | None = None,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> Digest:
    """The digest of ``uri`` (file sha256 or manifest digest). Raises :class:`ArtifactError`."""
    policy = policy or ArtifactPolicy()
    shown = redact_uri(uri)
    access: StoreAccess | None = None
    deadline = time.monotonic() + policy.timeout_seconds
    try:
        access = _access_for(uri, secret_data, env)
        return _digest(uri, access, policy, progress=progress, writer=None, deadline=deadline, env=env)
    except ArtifactError:
        raise
    except Exception as e:
        if time.monotonic() >= deadline:
            raise deadline_exceeded(shown, policy) from None
        error = classified_error(e, shown)
        secrets_ = _secret_values(secret_data) | (access.secret_values if access else frozenset())
        raise ArtifactError(
            error.reason, redact_text(error.message, secrets_), transient=error.transient
        ) from None


def digest_local(
    path: str | os.PathLike[str],
    *,
    max_workers: int = 4,
    chunk_size: int = 4 * 1024 * 1024,
    progress: ProgressCallback | None = None,
) -> Digest:
    """The digest of a local file or directory (what ``artifact.sha256`` must be).

    For ``kubectl models register``: no URI policy applies (it runs on the user's machine).
    Raises :class:`ArtifactError` (e.g. NotFound).
    """
    real = Path(os.path.realpath(path))
    policy = ArtifactPolicy(
        allowed_schemes=["file"],
        file_roots=["/"],
        max_workers=max_workers,
        chunk_size=chunk_size,
        timeout_seconds=1e9,
        max_files=1 << 62,
        max_total_bytes=1 << 62,
    )
    uri = real.as_uri() + ("/" if real.is_dir() else "")
    return compute_digest(uri, policy=policy, env={}, progress=progress)


def _secret_values(secret_data: Mapping[str, str] | None) -> frozenset[str]:
    """Every Secret value that is not a known non-secret setting (endpoint, region...)."""
    return frozenset(v for k, v in (secret_data or {}).items() if v and k not in SETTING_KEYS | {HOSTS_KEY})


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class _Report:
    """Makes the VerifyResult of one verification: its messages redacted, its time so far."""

    shown: str  # the redacted URI
    expected: str
    start: float  # time.monotonic()
    secret_values: frozenset[str]  # redacted from every message
    signature: SignatureCheck | None = None  # what the signature check found (with trust material)

    def result(
        self,
        reason: Reason,
        message: str,
        *,
        transient: bool | None = None,
        digest: Digest | None = None,
        written_to: str | None = None,
    ) -> VerifyResult:
        return VerifyResult(
            reason=reason,
            uri=self.shown,
            expected=self.expected,
            actual=digest.sha256 if digest else None,
            size_bytes=digest.size_bytes if digest else None,
            files=digest.files if digest else None,
            duration_seconds=time.monotonic() - self.start,
            message=redact_text(message, self.secret_values),
            transient=reason in TRANSIENT_REASONS if transient is None else transient,
            kind=digest.kind if digest else None,
            written_to=written_to,
            layout=digest.layout if digest else None,
            content_digest=digest.content_digest if digest else None,
            contents=digest.entries if digest and digest.layout else (),
            signature=self.signature,
            io_signature=digest.io_signature if digest else None,
        )

    def failure(self, error: ArtifactError) -> VerifyResult:
        return self.result(error.reason, error.message, transient=error.transient)

    def mismatch(
        self, digest: Digest, expected_size: int | None, writer: DestWriter | None
    ) -> VerifyResult | None:
        """DigestMismatch or SizeMismatch (the partial output discarded), None if both match."""
        if digest.sha256 != self.expected:
            reason = Reason.DIGEST_MISMATCH
            message = (
                f"{self.shown}: DigestMismatch: the bytes read do not hash to the expected sha256 "
                f"{self.expected}; fix the URI or register a new version"
            )
        elif expected_size is not None and digest.size_bytes != expected_size:
            reason = Reason.SIZE_MISMATCH
            message = (
                f"{self.shown}: SizeMismatch: read {digest.size_bytes} bytes, "
                f"spec.artifact.sizeBytes is {expected_size}"
            )
        else:
            return None
        if writer:
            writer.discard()
        return self.result(reason, message, digest=digest)

    def verified(self, digest: Digest, *, written_to: str | None) -> VerifyResult:
        size = _human_size(digest.size_bytes)
        what = f"{digest.files} files, {size}" if digest.kind == "directory" else size
        message = f"{self.shown}: sha256 {digest.sha256} verified ({what})"
        if digest.layout:
            links = f"; {digest.skipped_links} symbolic links not laid out" if digest.skipped_links else ""
            message = (
                f"{self.shown}: manifest sha256:{digest.sha256} and every layer verified ({digest.layout} "
                f"layout: {digest.files} files, {size} fetched{links})"
            )
        return self.result(
            Reason.VERIFIED,
            message,
            digest=digest,
            written_to=written_to,
        )


def _failure(exc: Exception, shown: str, policy: ArtifactPolicy, deadline: float) -> ArtifactError:
    """What a verification that raised ``exc`` reports (the message is redacted by the caller)."""
    if isinstance(exc, ArtifactError):
        return exc
    if time.monotonic() >= deadline:
        return deadline_exceeded(shown, policy)
    return classified_error(exc, shown)


def _commit(
    report: _Report, digest: Digest, writer: DestWriter, dest: str | os.PathLike[str] | None
) -> VerifyResult:
    """Move the verified files into place under ``dest``."""
    try:
        written_to = str(writer.commit())
    except OSError as e:
        writer.discard()
        return report.result(
            Reason.FETCH_FAILED,
            f"{report.shown}: verified, but moving the files into {dest} failed: {e}",
            digest=digest,
            transient=False,
        )
    return report.verified(digest, written_to=written_to)


def _signature(
    uri: str,
    digest: Digest,
    trust: TrustMaterial,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    deadline: float,
) -> SignatureCheck:
    """Read the signature where it lives (the artifact's credentials, the same URI policy, a small
    bound) and check it against ``trust`` and the digests just computed. Raises ArtifactError for a
    read that failed otherwise than "nothing there"."""
    if is_oci(uri):  # OCI referrers of the pinned manifest, read with the artifact's own access
        from modelversioning.artifacts.oci_signature import read_signature

        shown = redact_uri(uri)
        access = _allowed_access(uri, _access_for(uri, secret_data, env), policy, env, shown)
        found = read_signature(uri, access, policy, digest, trust, deadline=deadline, shown=shown)
        return replace(found, policy=trust.policy)
    where = signature_location(uri, trust.signature_uri)
    if where is None:
        why = f"{redact_uri(uri)}: no default signature location for this URI; set spec.artifact.signatureUri"
        return replace(SignatureCheck(R.SIGNATURE_MISSING, why), policy=trust.policy)
    shown = redact_uri(where)
    small = policy.model_copy(update={"max_total_bytes": MAX_BUNDLE_BYTES + 1, "max_files": 1})
    try:
        access = _allowed_access(where, _access_for(where, secret_data, env), policy, env, shown)
        plan = plan_reading(where, access, small, deadline, None)
        if plan.kind != "file":
            raise ArtifactError(Reason.SIGNATURE_INVALID, f"{shown}: a directory, not a signature bundle")
        with plan.fs.open(plan.entries[0].path, "rb", **plan.open_kwargs) as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except Exception as e:
        error = _failure(e, shown, policy, deadline)
        if error.reason is Reason.NOT_FOUND:
            return replace(missing(shown), policy=trust.policy)
        if error.reason in (Reason.SIGNATURE_INVALID, Reason.LIMIT_EXCEEDED) and time.monotonic() < deadline:
            return replace(SignatureCheck(R.SIGNATURE_INVALID, error.message, uri=shown), policy=trust.policy)
        raise error from None
    checked = check_signature(data, digest, trust, shown=shown, exempt=exempt_path(uri, where))
    return replace(checked, policy=trust.policy)


def enforced(check: SignatureCheck, trust: TrustMaterial) -> tuple[Reason, str] | None:
    """The init container's rule: signed, by the anchors the operator accepted (each of their sources
    has one among those that verified it), and no certificate expired. None: accepted."""
    from modelversioning.domain.trust import accepted_by_anchors, seconds_left

    if not check.signed:
        return Reason(check.outcome), check.message
    why = accepted_by_anchors(check.matched, [e.to_dict() for e in trust.entries])
    if why is not None:
        return Reason.SIGNER_NOT_TRUSTED, f"{check.message}; {why}"
    left = seconds_left(check.not_after, datetime.now(UTC))
    if left is not None and left <= 0:
        return Reason.CERTIFICATE_EXPIRED, f"{check.message}; the certificate expired at {check.not_after}"
    return None


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# the work


def _access_for(
    uri: str, secret_data: Mapping[str, str] | None, env: Mapping[str, str] | None
) -> StoreAccess:
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    return store_access(scheme, secret_data, env=env)


def _allowed_access(
    uri: str, access: StoreAccess, policy: ArtifactPolicy, env: Mapping[str, str] | None, shown: str
) -> StoreAccess:
    """``access`` for ``uri`` once the URI policy allows it, its credentials bound to the host
    (or dropped: see :func:`~modelversioning.artifacts.credentials.bind_credentials`)."""
    refusal = check_uri(uri, policy, endpoint_url=access.endpoint_url)
    if refusal:
        if not refusal.startswith(shown):
            refusal = describe(Reason.URI_REFUSED, shown, refusal)
        raise ArtifactError(Reason.URI_REFUSED, refusal)
    try:
        return bind_credentials(uri, access, policy, env)
    except ArtifactError as e:
        raise ArtifactError(e.reason, describe(e.reason, shown, e.message), transient=e.transient) from None


def _digest(
    uri: str,
    access: StoreAccess,
    policy: ArtifactPolicy,
    *,
    progress: ProgressCallback | None,
    writer: DestWriter | None,
    deadline: float,
    expected_size: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Digest:
    shown = redact_uri(uri)
    access = _allowed_access(uri, access, policy, env, shown)
    if access.scheme == "oci":
        from modelversioning.artifacts.oci_fetch import oci_digest

        return oci_digest(
            uri, access, policy, deadline=deadline, shown=shown, writer=writer, expected_size=expected_size,
            progress=progress,
        )  # fmt: skip
    plan = plan_reading(uri, access, policy, deadline, expected_size)
    return hash_plan(
        plan, policy, deadline=deadline, shown=shown, expected_size=expected_size, progress=progress,
        writer=writer,
    )  # fmt: skip
