"""Which :class:`~modelversioning.artifacts.errors.Reason` an exception raised while fetching an
artifact stands for (:func:`classify_exception`), and how a failure is described in a message.

The http(s) reader raises :class:`~modelversioning.artifacts.errors.HTTPStatusError` (with the status);
fsspec and the stores' SDKs wrap their errors (botocore raises ClientError with an error code), so the
whole cause chain is inspected, botocore is duck-typed (an optional dependency) and aiohttp's errors
are looked for only when the process loaded it (``oci://``, ``s3://``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from modelversioning.artifacts.credentials import CredentialsError
from modelversioning.artifacts.errors import (
    ArtifactError,
    HTTPStatusError,
    Reason,
    TruncatedReadError,
    URIRefusedError,
)

NOT_FOUND_HINT = "the artifact may not have been uploaded yet; verification is retried"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "os_error", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


_S3_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "Forbidden",
    "InvalidAccessKeyId",
    "InvalidToken",
    "InvalidSecurity",
    "NotSignedUp",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
    "XAdminUserNotFound",  # versitygw (with HTTP 404!) for an unknown access key
    "401",
    "403",
}
_S3_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion", "404"}


def _client_error(e: BaseException) -> tuple[str, int | None] | None:
    """(error code, HTTP status) of a botocore ClientError (duck-typed: botocore is optional)."""
    response = getattr(e, "response", None)
    if type(e).__name__ == "ClientError" and isinstance(response, dict):
        error = response.get("Error") or {}
        code = error.get("Code") if isinstance(error, dict) else None
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return str(code or status or ""), status if isinstance(status, int) else None
    return None


def _aiohttp() -> Any:
    """aiohttp if this process loaded it (s3://, oci://), else None: none of its errors can be in a
    chain then, and the http(s) reader of the init container never pays for its import."""
    return sys.modules.get("aiohttp")


def _is_connection_problem(e: BaseException) -> bool:
    aiohttp = _aiohttp()
    if isinstance(e, (TimeoutError, ConnectionError, http_client_errors())):
        return True
    if aiohttp is not None and isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    name = type(e).__name__
    return name in {
        "FSTimeoutError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "gaierror",
    }


def http_client_errors() -> tuple[type[BaseException], ...]:
    """The standard library HTTP client's errors of a connection (a malformed or cut answer)."""
    import http.client

    return (http.client.HTTPException,)


def classify_exception(exc: BaseException) -> tuple[Reason, bool, str]:
    """(reason, transient, detail) for an exception raised while fetching.

    FileNotFoundError -> NotFound, PermissionError / S3 403 / HTTP 401,403 -> AccessDenied,
    anything else -> FetchFailed. The whole cause chain is inspected, because fsspec wraps
    errors (e.g. HTTP turns every failed GET into FileNotFoundError).
    """
    aiohttp = _aiohttp()
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, MemoryError):
            return Reason.LIMIT_EXCEEDED, False, "ran out of memory (artifacts.memoryLimitBytes)"
        if isinstance(e, URIRefusedError):
            return Reason.URI_REFUSED, False, e.message
        if isinstance(e, ArtifactError):
            return e.reason, e.transient, e.message
        if isinstance(e, CredentialsError):
            return Reason.ACCESS_DENIED, False, str(e)
    for e in chain:
        response_error = aiohttp is not None and isinstance(e, aiohttp.ClientResponseError)
        if isinstance(e, HTTPStatusError) or response_error:
            http_status: int = getattr(e, "status", 0)
            detail = f"HTTP {http_status} {getattr(e, 'message', '')}".strip()
            if http_status in (401, 403):
                return Reason.ACCESS_DENIED, False, detail
            if http_status in (404, 410):
                return Reason.NOT_FOUND, True, f"{detail}; {NOT_FOUND_HINT}"
            return Reason.FETCH_FAILED, True, detail
        client_error = _client_error(e)
        if client_error is not None:
            code, status = client_error
            denied = code in _S3_DENIED or code.endswith("UserNotFound") or "AccessKey" in code
            if denied or status in (401, 403):
                return Reason.ACCESS_DENIED, False, _short(e)
            if code in _S3_NOT_FOUND:
                return Reason.NOT_FOUND, True, f"{_short(e)}; {NOT_FOUND_HINT}"
            return Reason.FETCH_FAILED, True, _short(e)
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return Reason.ACCESS_DENIED, False, "no usable credentials were found"
    for e in chain:
        if isinstance(e, TruncatedReadError):
            return Reason.FETCH_FAILED, True, str(e)
        if _is_connection_problem(e):
            return Reason.FETCH_FAILED, True, _short(e) or "timed out"
    for e in chain:
        if isinstance(e, PermissionError):
            return Reason.ACCESS_DENIED, False, _short(e)
        if isinstance(e, FileNotFoundError):
            return Reason.NOT_FOUND, True, f"not found; {NOT_FOUND_HINT}"
    return Reason.FETCH_FAILED, True, _short(exc)


def _short(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.strerror and e.filename is None:
        text = e.strerror
    text = " ".join(text.split())  # one line, for conditions and logs
    return text if len(text) <= 500 else text[:497] + "..."


def describe(reason: Reason, shown_uri: str, detail: str) -> str:
    """``<uri>: <Reason>: <detail>``."""
    return f"{shown_uri}: {reason.value}: {detail}"


def classified_error(exc: BaseException, shown_uri: str) -> ArtifactError:
    """``exc`` as the ArtifactError :func:`classify_exception` makes of it (message not redacted)."""
    reason, transient, detail = classify_exception(exc)
    return ArtifactError(reason, describe(reason, shown_uri, detail), transient=transient)
