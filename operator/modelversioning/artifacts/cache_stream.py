"""The byte stream of one node-cache entry (``mvcache/1``): what an init container offers the node agent
and what the agent serves back. Both sides hash what they read with :func:`decode`; neither trusts
what the other says the digest is.

::

    mvcache/1 <file|directory> <number of files>\\n
    <size> <relative/posix/path>\\n  <size bytes>      (once per file, paths strictly ascending)
    end <sha256 hex>\\n

The digest is the artifact digest of :mod:`~modelversioning.artifacts.manifest`: the file's sha256 for
``file`` (one file; its path is only a name, the reader lays it out under its own URI's basename), the
manifest's for ``directory``. The kind is part of the entry's name on the node, so the bytes of a file
that happens to hash like a directory's manifest are never laid out as that directory.
The trailer comes last, so a writer that finds at the end that what it sent does not hash to what it
meant (the agent serving an entry whose bytes changed on disk) stops before it: a reader refuses a stream
without one, and whatever it reads it hashes itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelversioning.artifacts.manifest import check_relative_path, manifest_digest
from modelversioning.artifacts.results import FileDigest, Kind

KINDS: tuple[Kind, ...] = ("file", "directory")
MAGIC = "mvcache/1"
CHUNK = 1024 * 1024
_HEADER = re.compile(r"^mvcache/1 (file|directory) ([1-9][0-9]{0,8})\n$")
_FILE = re.compile(r"^(0|[1-9][0-9]{0,18}) (.+)\n$")
_TRAILER = re.compile(r"^end ([0-9a-f]{64})\n$")
_LINE_MAX = 4200  # a header or file line: a path of at most 4096 bytes and its size


class StreamError(ValueError):
    """The stream is not a well-formed entry within the limits (or ended early)."""


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def close(self) -> None: ...


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def readline(self, limit: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class SourceFile:
    rel: str
    path: Path
    size: int


@dataclass(frozen=True)
class Decoded:
    kind: Kind
    sha256: str
    size_bytes: int
    files: tuple[FileDigest, ...]


class Limited:
    """At most ``length`` bytes of ``stream`` (an HTTP body read from a kept-alive connection)."""

    def __init__(self, stream: Readable, length: int) -> None:
        self.stream, self.left = stream, max(length, 0)  # a negative length would read without bound

    def read(self, n: int = -1, /) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(n) if n else b""
        self.left -= len(data)
        return data

    def readline(self, limit: int = -1, /) -> bytes:
        limit = self.left if limit < 0 else min(limit, self.left)
        data = self.stream.readline(limit) if limit else b""
        self.left -= len(data)
        return data


def stream_length(kind: Kind, files: Sequence[SourceFile]) -> int:
    """The exact length of the stream :class:`Encoder` writes (the HTTP Content-Length)."""
    head = len(f"{MAGIC} {kind} {len(files)}\n".encode())
    body = sum(len(f"{f.size} {f.rel}\n".encode()) + f.size for f in files)
    return head + body + len("end \n") + 64


def entry_digest(kind: Kind, files: Sequence[FileDigest]) -> str:
    if kind == "file":
        return files[0].sha256
    return manifest_digest((f.path, f.sha256) for f in files)


class Encoder:
    """Writes ``files`` as a stream, hashing them as they are read; :attr:`digest` is set once
    :meth:`body` is exhausted, :meth:`trailer` comes after (the caller decides whether to send it)."""

    def __init__(self, kind: Kind, files: Sequence[SourceFile], chunk_size: int = CHUNK) -> None:
        if not files or (kind == "file" and len(files) != 1):
            raise StreamError(f"a {kind} entry of {len(files)} files")
        self.kind, self.files, self.chunk_size = kind, sorted(files, key=lambda f: f.rel), chunk_size
        self.digest: str | None = None

    def body(self) -> Iterator[bytes]:
        yield f"{MAGIC} {self.kind} {len(self.files)}\n".encode()
        done: list[FileDigest] = []
        for f in self.files:
            yield f"{f.size} {f.rel}\n".encode()
            h, left = hashlib.sha256(), f.size
            with open(f.path, "rb") as fh:
                while left:
                    chunk = fh.read(min(self.chunk_size, left))
                    if not chunk:
                        raise StreamError(f"{f.rel}: shorter than {f.size} bytes")
                    h.update(chunk)
                    left -= len(chunk)
                    yield chunk
            done.append(FileDigest(f.rel, h.hexdigest(), f.size))
        self.digest = entry_digest(self.kind, done)

    def trailer(self) -> bytes:
        assert self.digest is not None, "body() first"
        return f"end {self.digest}\n".encode()


def _line(stream: Readable, pattern: re.Pattern[str], what: str) -> re.Match[str]:
    raw = stream.readline(_LINE_MAX)
    try:
        m = pattern.match(raw.decode("utf-8"))
    except UnicodeDecodeError:
        m = None
    if m is None:
        raise StreamError(f"expected {what}, read {raw[:80]!r}")
    return m


def decode(
    stream: Readable,
    open_sink: Callable[[Kind, str], Sink],
    *,
    max_bytes: int,
    max_files: int,
    check: Callable[[], None] = lambda: None,
    chunk_size: int = CHUNK,
) -> Decoded:
    """Read one entry from ``stream``, writing each file to ``open_sink(kind, rel)`` while hashing it.
    Raises StreamError if it is malformed, larger than ``max_bytes`` / ``max_files``, or ends early;
    ``check()`` is called between chunks (a deadline) and may raise."""
    head = _line(stream, _HEADER, "an mvcache/1 header")
    kind: Kind = "file" if head.group(1) == "file" else "directory"
    count = int(head.group(2))
    if count > max_files or (kind == "file" and count != 1):
        raise StreamError(f"a {kind} entry of {count} files (at most {max_files})")
    total, previous, files = 0, "", []
    for _ in range(count):
        m = _line(stream, _FILE, "a file line")
        size, rel = int(m.group(1)), m.group(2)
        problem = check_relative_path(rel)
        if problem or rel <= previous:
            raise StreamError(problem or f"path {rel!r} out of order")
        total += size
        if total > max_bytes:
            raise StreamError(f"more than {max_bytes} bytes")
        files.append(_copy(stream, open_sink(kind, rel), rel, size, check, chunk_size))
        previous = rel
    digest = entry_digest(kind, files)
    claimed = _line(stream, _TRAILER, "the trailer").group(1)
    if claimed != digest or stream.read(1):
        raise StreamError("the trailer does not match what was read, or the stream goes on after it")
    return Decoded(kind, digest, total, tuple(files))


def _copy(
    stream: Readable, sink: Sink, rel: str, size: int, check: Callable[[], None], chunk_size: int
) -> FileDigest:
    h, left = hashlib.sha256(), size
    try:
        while left:
            check()
            chunk = stream.read(min(chunk_size, left))
            if not chunk:
                raise StreamError(f"{rel}: the stream ended {left} bytes early")
            h.update(chunk)
            sink.write(chunk)
            left -= len(chunk)
    finally:
        sink.close()
    return FileDigest(rel, h.hexdigest(), size)


def files_under(root: Path, kind: Kind) -> list[SourceFile]:
    """The regular files of an entry laid out under ``root`` (symbolic links are not followed: what is
    not a regular file is not part of it), as :class:`Encoder` sources."""
    if kind == "file":
        (only,) = [p for p in root.iterdir() if p.is_file() and not p.is_symlink()]
        return [SourceFile(only.name, only, only.stat().st_size)]
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out.append(SourceFile(p.relative_to(root).as_posix(), p, p.stat().st_size))
    return out
