"""Keep credentials out of messages, logs and results.

* :func:`redact_uri` drops the user info and the query string (pre-signed URLs carry their
  signature there) and the fragment: ``https://u:p@host/m.onnx?X-Amz-Signature=..`` becomes
  ``https://REDACTED@host/m.onnx?REDACTED``.
* :func:`redact_text` applies that to every URL found in free text (exception messages often
  embed the request URL) and replaces any known secret value with ``REDACTED``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Secret values shorter than this are not searched for (they would redact ordinary words).
_MIN_SECRET_LEN = 4


def redact_uri(uri: str) -> str:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _fallback(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _fallback(uri: str) -> str:
    head = uri.split("?", 1)[0].split("#", 1)[0]
    if "://" in head:
        scheme, rest = head.split("://", 1)
        if "@" in rest.split("/", 1)[0]:
            rest = REDACTED + "@" + rest.split("@", 1)[1]
        head = f"{scheme}://{rest}"
    return head + ("?" + REDACTED if "?" in uri else "")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    out = _URL_RE.sub(lambda m: redact_uri(m.group(0)), text)
    for value in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        out = out.replace(value, REDACTED)
    return out
