"""Outcomes of a verification, and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum

from modelversioning.api import wire as R


class Reason(StrEnum):
    """Why a verification ended as it did (also the ArtifactVerified condition reason). The names
    and their properties (transient, stalls, no slot) are declared in api.wire; this is their type."""

    VERIFIED = R.VERIFIED
    DIGEST_MISMATCH = R.DIGEST_MISMATCH
    NOT_FOUND = R.NOT_FOUND
    ACCESS_DENIED = R.ACCESS_DENIED
    FETCH_FAILED = R.FETCH_FAILED
    URI_REFUSED = R.URI_REFUSED
    LIMIT_EXCEEDED = R.LIMIT_EXCEEDED  # a configured limit (time, files, bytes, memory) was reached
    SIZE_MISMATCH = R.SIZE_MISMATCH  # the bytes read differ from spec.artifact.sizeBytes
    # oci:// (artifacts.oci_fetch)
    TAG_WITHOUT_DIGEST = R.TAG_WITHOUT_DIGEST
    MANIFEST_DIGEST_MISMATCH = R.MANIFEST_DIGEST_MISMATCH
    LAYER_DIGEST_MISMATCH = R.LAYER_DIGEST_MISMATCH
    UNSUPPORTED_LAYOUT = R.UNSUPPORTED_ARTIFACT_LAYOUT
    UNSAFE_ARCHIVE = R.UNSAFE_ARCHIVE
    # the init container's signature check (--trust-json): the trust anchors the operator accepted
    SIGNATURE_MISSING = R.SIGNATURE_MISSING
    SIGNATURE_INVALID = R.SIGNATURE_INVALID
    SIGNER_NOT_TRUSTED = R.SIGNER_NOT_TRUSTED
    SIGNATURE_DIGEST_MISMATCH = R.SIGNATURE_DIGEST_MISMATCH
    CERTIFICATE_EXPIRED = R.CERTIFICATE_EXPIRED


# Retrying later may help: the network, the store, or a not-yet-uploaded artifact (api.wire: the
# reasons declared transient). DigestMismatch/SizeMismatch (the bytes are wrong), AccessDenied
# (credentials/permissions need fixing), URIRefused (policy) and LimitExceeded need a human.
TRANSIENT_REASONS = frozenset(r for r in Reason if r.value in R.TRANSIENT)


class ArtifactError(Exception):
    """A verification/digest failure with its reason; ``message`` is safe to show (redacted)."""

    def __init__(self, reason: Reason, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = reason in TRANSIENT_REASONS if transient is None else transient


class URIRefusedError(OSError):
    """Raised inside the HTTP client when a request, redirect or resolved address is refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TruncatedReadError(OSError):
    """Fewer (or more) bytes were read than the store reported: never a digest."""


class HTTPStatusError(OSError):
    """An http(s) store answered with a status that is not a file's bytes (after redirects)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status
        self.message = reason
