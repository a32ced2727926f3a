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
entries make room, never one with a lease or being written. Each entry is charged to the namespace whose
offer stored it (``<entry>/owner``), and a namespace holds at most ``namespace_share`` bytes (entries and
its entries being written): its offers evict its own entries to stay within it, never another
namespace's.

Room is made in two steps, so that an offer that never commits (its bytes do not hash to the digest
offered, its connection drops, it times out) costs no other namespace anything:

* :meth:`Store.begin` (:func:`~modelversioning.domain.node_cache.reserve`): the offer's bytes are staged
  in free space and in room made by evicting the offering namespace's own idle entries. What does not fit
  is staged beyond ``max_bytes`` (all offers together at most ``max_staged_beyond`` bytes, one entry's
  worth by default), and only if other namespaces' idle entries could make room for it at commit.
* :meth:`Incoming.commit`, once the bytes hashed to the digest offered
  (:func:`~modelversioning.domain.node_cache.make_room`): other namespaces' least recently used idle
  entries go if still needed; if even that does not make room (they are being served meanwhile), the
  new entry is dropped (:class:`Full`), never an entry in use.

So the disk holds at most ``max_bytes + max_staged_beyond`` (entries and offers being received), and
``max_bytes`` once no offer is in flight. A restart starts with no lease, empties ``incoming/`` and
takes the last use from each entry's mtime (touched on every hit) and its owner from ``owner``.
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
from modelversioning.domain.node_cache import OVER_SHARE, Entry, make_room, reserve

OWNER_FILE = "owner"


def entry_key(kind: Kind, digest: str) -> str:
    return f"{kind}-{digest}"


@dataclass(eq=False)  # compared by identity: a fresh entry of the same key is another object
class _Meta:
    size: int
    last_used: float
    leases: int = 0
    owner: str = ""  # the namespace charged for it


@dataclass(frozen=True)
class _Writing:
    size: int  # the bytes reserved (the offer's Content-Length)
    owner: str
    beyond: int  # of them, staged beyond max_bytes (room made at commit)


@dataclass(frozen=True)
class Lease:
    """A reader's hold on one entry (see :meth:`Store.reading`)."""

    key: str
    files: list[SourceFile]
    meta: _Meta


class Full(Exception):
    """No room for an entry of that size (what would have to go is in use); ``over_share``: not within
    the offering namespace's share (evicting every idle entry of its own would not do)."""

    def __init__(self, message: str, over_share: bool = False) -> None:
        super().__init__(message)
        self.over_share = over_share


class Store:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        max_entry_bytes: int | None = None,
        namespace_share: int | None = None,
        max_staged_beyond: int | None = None,
    ) -> None:
        self.root, self.max_bytes, self.clock = root, max_bytes, clock
        self.namespace_share = min(max_bytes, namespace_share) if namespace_share else None
        self.max_entry_bytes = min(  # the largest offer taken
            max_bytes, max_entry_bytes or max_bytes, self.namespace_share or max_bytes
        )
        # bytes of offers being received that may be staged beyond max_bytes, all offers together
        self.max_staged_beyond = self.max_entry_bytes if max_staged_beyond is None else max_staged_beyond
        self.entries_dir, self.incoming_dir, self.trash_dir = (
            root / "entries",
            root / "incoming",
            root / "trash",
        )
        self._lock = threading.Lock()
        self._meta: dict[str, _Meta] = {}
        self._writing: dict[str, _Writing] = {}  # incoming token -> its reservation
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
            try:
                owner = (d / OWNER_FILE).read_text()[:253].strip()
            except OSError:
                owner = ""
            self._meta[d.name] = _Meta(size, d.stat().st_mtime, owner=owner)

    def _files(self, d: Path, kind: Kind) -> list[SourceFile]:
        if kind == "directory":
            return files_under(d / "files", kind)
        return [SourceFile("data", d / "data", (d / "data").stat().st_size)]

    def used_bytes(self) -> int:
        with self._lock:
            return sum(m.size for m in self._meta.values()) + sum(w.size for w in self._writing.values())

    def held_by(self) -> dict[str, int]:
        """Bytes charged to each namespace (entries and entries being written)."""
        out: dict[str, int] = {}
        with self._lock:
            for m in self._meta.values():
                out[m.owner] = out.get(m.owner, 0) + m.size
            for w in self._writing.values():
                out[w.owner] = out.get(w.owner, 0) + w.size
        return out

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

    def _entries(self, skip: str = "") -> list[Entry]:
        """Entries and offers being received (busy, at their full size) as eviction sees them."""
        entries = [
            Entry(k, m.size, m.last_used, busy=m.leases > 0, owner=m.owner) for k, m in self._meta.items()
        ]
        return entries + [
            Entry(f"incoming-{t}", w.size, 0.0, busy=True, owner=w.owner)
            for t, w in self._writing.items()
            if t != skip
        ]

    def _evict(self, keys: tuple[str, ...]) -> list[Path]:
        """Move ``keys`` out of ``entries/`` (under the lock); their directories, to remove after it."""
        trash = []
        for key in keys:
            del self._meta[key]
            trash.append(self._to_trash(key))
        self.evicted += len(keys)
        return trash

    def begin(self, kind: Kind, size: int, owner: str = "") -> Incoming:
        """Reserve ``size`` bytes charged to ``owner`` (a namespace) for an entry being written, from free
        space and ``owner``'s own idle entries, the rest staged beyond ``max_bytes``
        (:func:`~modelversioning.domain.node_cache.reserve`; no other namespace's entry goes before the
        bytes are verified, see :meth:`Incoming.commit`); raises :class:`Full`."""
        if not 0 < size <= self.max_entry_bytes:  # a negative reservation would undo the size limit
            raise Full(f"an entry of {size} bytes is not taken (1 to {self.max_entry_bytes})")
        token = secrets.token_hex(8)
        with self._lock:
            room = reserve(
                self._entries(),
                self.max_bytes,
                size,
                owner=owner,
                share=self.namespace_share,
                staged_beyond=sum(w.beyond for w in self._writing.values()),
                beyond_limit=self.max_staged_beyond,
            )
            if not room.fits:
                if room.why == OVER_SHARE:
                    raise Full(
                        f"{size} bytes more would put namespace {owner} over its share of "
                        f"{self.namespace_share} bytes (what it holds is in use)",
                        over_share=True,
                    )
                raise Full(f"{size} bytes do not fit in {self.max_bytes} (what would go is in use or "
                           "being received)")  # fmt: skip
            trash = self._evict(room.evict)
            self._writing[token] = _Writing(size, owner, room.beyond)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
        return Incoming(self, kind, token, owner)

    def _finish(self, incoming: Incoming, digest: str | None) -> str:
        """Move a written entry into place under ``digest`` (None: discard it), making room for it by
        :func:`~modelversioning.domain.node_cache.make_room` (others' idle entries may go now, the bytes
        being verified). "" when kept, else why not."""
        key = entry_key(incoming.kind, digest) if digest else ""
        trash: list[Path] = []
        with self._lock:
            mine = self._writing.pop(incoming.token, None)
            why = "" if digest else "discarded"
            if not why and (mine is None or key in self._meta):
                why = "present"
            if not why:
                beyond = sum(w.beyond for w in self._writing.values())
                room = make_room(
                    self._entries(),  # this offer's reservation popped above
                    self.max_bytes + beyond,  # the others' bytes staged beyond the limit count only within
                    incoming.written,
                    owner=incoming.owner,
                    share=self.namespace_share if incoming.owner else None,
                )
                if not room.fits:
                    why = f"{incoming.written} bytes no longer fit (what would have to go is in use)"
                else:
                    try:
                        (incoming.dir / OWNER_FILE).write_text(incoming.owner)
                        os.replace(incoming.dir, self.entries_dir / key)
                    except OSError:  # a stray directory in the way (not an entry): the offer is not kept
                        why = "present"
                    else:
                        trash = self._evict(room.evict)
                        self._meta[key] = _Meta(incoming.written, self.clock(), owner=incoming.owner)
        if why:
            shutil.rmtree(incoming.dir, ignore_errors=True)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
        return why


class Incoming:
    """An entry being written under ``incoming/``; :meth:`commit` or :meth:`abort` it."""

    def __init__(self, store: Store, kind: Kind, token: str, owner: str = "") -> None:
        self.store, self.kind, self.token, self.owner = store, kind, token, owner
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
        """Keep the entry (its bytes hashed to ``digest``): True; False when one of that key is already
        here; raises :class:`Full` (the entry dropped) when evicting every idle entry would not make room."""
        why = self.store._finish(self, digest)
        if why and why != "present":
            raise Full(why)
        return not why

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
