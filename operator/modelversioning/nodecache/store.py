"""The node agent's content-addressed store: ``<root>/entries/<kind>-<sha256>/`` holds the files of one
verified artifact (a file entry: ``data``; a directory entry: its tree under ``files/``), named only by
the digest the agent itself computed while receiving it; ``<root>/incoming/`` holds entries being
written, moved into ``entries/`` in one rename once their digest is the one offered; ``<root>/trash/``
holds entries being removed.

An entry leaves ``entries/`` in one rename under the lock (into ``trash/``, under a name of its own),
and its files are removed after the lock is released: so a fresh entry of the same key, moved into
place in between, is never what gets removed, and never meets an old directory in its way. A reader
that found an entry corrupt drops it only if it is still the entry it read (:meth:`Store.drop`).

Which entries are in use is kept in memory (readers and writers hold a lease); least recently used
entries make room (:func:`modelversioning.domain.node_cache.make_room`), never one with a lease or
being written. A restart starts with no lease, empties ``incoming/`` and takes the last use from each
entry's mtime (touched on every hit).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelversioning.artifacts.cache_stream import KINDS, Sink, SourceFile, files_under
from modelversioning.artifacts.results import Kind
from modelversioning.domain.node_cache import Entry, make_room


def entry_key(kind: Kind, digest: str) -> str:
    return f"{kind}-{digest}"


@dataclass(eq=False)  # compared by identity: a fresh entry of the same key is another object
class _Meta:
    size: int
    last_used: float
    leases: int = 0


@dataclass(frozen=True)
class Lease:
    """A reader's hold on one entry (see :meth:`Store.reading`)."""

    key: str
    files: list[SourceFile]
    meta: _Meta


class Full(Exception):
    """No room for an entry of that size (what would have to go is in use)."""


class Store:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        max_entry_bytes: int | None = None,
    ) -> None:
        self.root, self.max_bytes, self.clock = root, max_bytes, clock
        self.max_entry_bytes = min(max_bytes, max_entry_bytes or max_bytes)  # the largest offer taken
        self.entries_dir, self.incoming_dir, self.trash_dir = (
            root / "entries",
            root / "incoming",
            root / "trash",
        )
        self._lock = threading.Lock()
        self._meta: dict[str, _Meta] = {}
        self._writing: dict[str, int] = {}  # incoming token -> reserved bytes
        self.evicted = 0  # entries evicted so far (metrics read it)
        self._scan()

    # ------------------------------------------------------------------------------ state

    def _scan(self) -> None:
        for d in (self.incoming_dir, self.trash_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        for d in self.entries_dir.iterdir():
            kind = d.name.split("-", 1)[0]
            if kind not in KINDS or not d.is_dir() or d.is_symlink():
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() and not d.is_symlink() else d.unlink()
                continue
            size = sum(f.size for f in self._files(d, kind))  # type: ignore[arg-type]  # kind checked above
            self._meta[d.name] = _Meta(size, d.stat().st_mtime)

    def _files(self, d: Path, kind: Kind) -> list[SourceFile]:
        if kind == "directory":
            return files_under(d / "files", kind)
        return [SourceFile("data", d / "data", (d / "data").stat().st_size)]

    def used_bytes(self) -> int:
        with self._lock:
            return sum(m.size for m in self._meta.values()) + sum(self._writing.values())

    def count(self) -> int:
        with self._lock:
            return len(self._meta)

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._meta

    # ------------------------------------------------------------------------------ reading

    @contextlib.contextmanager
    def reading(self, kind: Kind, digest: str) -> Iterator[Lease | None]:
        """The entry's files under a lease (None: not here); its last use is now."""
        key = entry_key(kind, digest)
        with self._lock:
            meta = self._meta.get(key)
            if meta is not None:
                meta.leases += 1
                meta.last_used = self.clock()
        if meta is None:
            yield None
            return
        try:
            d = self.entries_dir / key
            with contextlib.suppress(OSError):
                os.utime(d)
            try:
                files = self._files(d, kind)
            except OSError:
                files = []  # gone or broken on disk: the digest check refuses it
            yield Lease(key, files, meta)
        finally:
            with self._lock:
                meta.leases -= 1  # this entry's (a dropped one's no longer counts anywhere)

    def drop(self, lease: Lease) -> None:
        """Remove the entry read under ``lease`` at once (its bytes do not hash to its name); a reader
        still sending it finds the same (its own digest check fails), and nothing new gets it. A fresh
        entry of the same key that took its place meanwhile stays."""
        with self._lock:
            if self._meta.get(lease.key) is not lease.meta:
                return
            del self._meta[lease.key]
            trash = self._to_trash(lease.key)
        shutil.rmtree(trash, ignore_errors=True)

    def _to_trash(self, key: str) -> Path:
        """Move an entry's directory out of ``entries/`` (under the lock); its files are removed later."""
        trash = self.trash_dir / f"{key}.{secrets.token_hex(8)}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.entries_dir / key, trash)
        return trash

    # ------------------------------------------------------------------------------ writing

    def begin(self, kind: Kind, size: int) -> Incoming:
        """Reserve ``size`` bytes for an entry being written (evicting least recently used idle entries);
        raises :class:`Full`."""
        if not 0 < size <= self.max_entry_bytes:  # a negative reservation would undo the size limit
            raise Full(f"an entry of {size} bytes is not taken (1 to {self.max_entry_bytes})")
        token = secrets.token_hex(8)
        with self._lock:
            entries = [Entry(k, m.size, m.last_used, busy=m.leases > 0) for k, m in self._meta.items()]
            entries += [Entry(f"incoming-{t}", s, 0.0, busy=True) for t, s in self._writing.items()]
            room = make_room(entries, self.max_bytes, size)
            if not room.fits:
                raise Full(f"{size} bytes do not fit in {self.max_bytes}")
            trash = []
            for key in room.evict:
                del self._meta[key]
                trash.append(self._to_trash(key))
            self._writing[token] = size
            self.evicted += len(room.evict)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
        return Incoming(self, kind, token)

    def _finish(self, incoming: Incoming, digest: str | None) -> bool:
        """Move a written entry into place under ``digest`` (None: discard it). False: discarded."""
        key = entry_key(incoming.kind, digest) if digest else ""
        with self._lock:
            self._writing.pop(incoming.token, None)
            keep = bool(digest) and key not in self._meta
            if keep:
                try:
                    os.replace(incoming.dir, self.entries_dir / key)
                except OSError:  # a stray directory in the way (not an entry): the offer is not kept
                    keep = False
                else:
                    self._meta[key] = _Meta(incoming.written, self.clock())
        if not keep:
            shutil.rmtree(incoming.dir, ignore_errors=True)
        return keep


class Incoming:
    """An entry being written under ``incoming/``; :meth:`commit` or :meth:`abort` it."""

    def __init__(self, store: Store, kind: Kind, token: str) -> None:
        self.store, self.kind, self.token = store, kind, token
        self.dir = store.incoming_dir / token
        (self.dir / ("files" if kind == "directory" else "")).mkdir(parents=True, exist_ok=True)
        self.written = 0

    def open_sink(self, kind: Kind, rel: str) -> Sink:
        if kind != self.kind:
            raise ValueError(f"a {kind} stream offered as a {self.kind} entry")
        path = self.dir / "data" if kind == "file" else self.dir / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return _Counting(open(path, "xb"), self)  # noqa: SIM115 (closed by decode)

    def commit(self, digest: str) -> bool:
        return self.store._finish(self, digest)

    def abort(self) -> None:
        self.store._finish(self, None)


class _Counting:
    """A file that adds what is written to its entry's size."""

    def __init__(self, fh: Any, incoming: Incoming) -> None:
        self.fh, self.incoming = fh, incoming

    def write(self, data: bytes) -> int:
        self.incoming.written += len(data)
        return int(self.fh.write(data))

    def close(self) -> None:
        self.fh.close()
