"""Outcomes of a verification, and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a verification ended as it did (also the ArtifactVerified condition reason)."""

    VERIFIED = "Verified"
    DIGEST_MISMATCH = "DigestMismatch"
    NOT_FOUND = "NotFound"
    ACCESS_DENIED = "AccessDenied"
    FETCH_FAILED = "FetchFailed"
    URI_REFUSED = "URIRefused"
    LIMIT_EXCEEDED = "LimitExceeded"  # a configured limit (time, files, bytes, memory) was reached
    SIZE_MISMATCH = "SizeMismatch"  # the bytes read differ from spec.artifact.sizeBytes


# Retrying later may help: the network, the store, or a not-yet-uploaded artifact.
# DigestMismatch/SizeMismatch (the bytes are wrong), AccessDenied (credentials/permissions need
# fixing), URIRefused (policy) and LimitExceeded (the artifact is too big or too slow for the
# operator's limits) need a human; retrying the same object would give the same answer.
TRANSIENT_REASONS = frozenset({Reason.FETCH_FAILED, Reason.NOT_FOUND})


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
