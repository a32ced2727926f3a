"""Reading a request body within a limit: ``Content-Length`` or ``Transfer-Encoding: chunked``.

Nothing past the limit is ever read: a declared length over it is refused before reading, and a
chunked body is refused as soon as the declared chunk sizes (and trailers) add up past it. Anything
malformed is refused with 400: a chunk size that is not plain hex digits (no sign, no ``0x``, no
``_``: Python's ``int(s, 16)`` accepts all three, and a negative size read the rest of the connection),
a chunk shorter than declared, a chunk not followed by CRLF, a line with no end. After an error the
connection's framing is lost: the caller answers and closes it.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Protocol

MAX_LINE = 4096  # a chunk-size line (with extensions) or a trailer line
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,19}")


class Reader(Protocol):
    """What is read from: a request's rfile (a buffered socket reader), io.BytesIO."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class BodyError(Exception):
    """The body is refused: HTTP ``code`` (400 malformed, 413 too large) and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def read_body(rfile: Reader, headers: Message, limit: int) -> bytes:
    """The body of a request (chunked when Transfer-Encoding says so, else Content-Length, else
    none); BodyError when it is malformed or larger than ``limit`` bytes."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return _read_chunked(rfile, limit)
    value = (headers.get("Content-Length") or "0").strip()
    if not _DIGITS.fullmatch(value):
        raise BodyError(400, "bad Content-Length")
    length = int(value)
    if length > limit:
        raise BodyError(413, f"body larger than {limit} bytes")
    data = rfile.read(length) if length else b""
    if len(data) != length:
        raise BodyError(400, f"body shorter than its Content-Length ({len(data)} of {length} bytes)")
    return data


def _line(rfile: Reader, what: str) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if not line.endswith(b"\n"):
        raise BodyError(400, f"bad chunked encoding: {what} line too long or cut short")
    return line


def _read_chunked(rfile: Reader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        field = _line(rfile, "chunk-size").split(b";", 1)[0].strip()
        if not _HEX.fullmatch(field):
            raise BodyError(400, f"bad chunked encoding: chunk size {field[:32]!r}")
        size = int(field, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise BodyError(413, f"body larger than {limit} bytes")
        data = rfile.read(size)
        if len(data) != size:
            raise BodyError(400, "bad chunked encoding: a chunk is shorter than its size")
        chunks.append(data)
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BodyError(400, "bad chunked encoding: a chunk is not followed by CRLF")
    while (line := _line(rfile, "trailer")) not in (b"\r\n", b"\n"):  # trailers: read, ignored, counted
        total += len(line)
        if total > limit:
            raise BodyError(413, f"body larger than {limit} bytes")
    return b"".join(chunks)
