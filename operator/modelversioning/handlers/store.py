"""In-memory view of the objects the operator watches, fed only by watch events.

Reconcilers read from here instead of calling the API, so an idle operator
makes no requests beyond its watches. Objects are kept per kind and namespace,
projected (PROJECTION, handlers.projection) and pickled, with indexes of children by owning endpoint
of objects by spec.model and of pods by slot, so a reconcile never scans objects of other
namespaces, endpoints or models. Every read returns a fresh copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import pickle
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from modelversioning.api.wire import ANNOTATION_PREFIX, LABEL_SLOT, MODELENDPOINT

# the projection (what is kept of each kind) lives in handlers.projection; its names are re-exported
from modelversioning.handlers.projection import ALL, PROJECTION, Only, Prefixed, cacheable, project

__all__ = ["ALL", "PROJECTION", "Only", "Prefixed", "Store", "cacheable", "controller_of", "kept", "project"]

Key = tuple[str, str]  # (namespace, name)
OWNER_KIND = MODELENDPOINT.kind
OWNER_API_GROUP = ANNOTATION_PREFIX  # "<group>/": an apiVersion of ours


def controller_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """(uid, name) of the ModelEndpoint that controls `body` (its controller ownerReference)."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == OWNER_KIND
            and str(ref.get("apiVersion", "")).startswith(OWNER_API_GROUP)
        ):
            return str(ref.get("uid", "")), str(ref.get("name", ""))
    return None


def _older(new: Any, old: Any) -> bool:
    # resourceVersions are opaque by contract; etcd's are integers, and only then do we compare
    if isinstance(new, str) and isinstance(old, str) and new.isdigit() and old.isdigit():
        return int(new) < int(old)
    return False


def _not_newer(new: Any, old: Any) -> bool:
    """``new`` is at most ``old`` (both etcd integers); unknown otherwise (False)."""
    if isinstance(new, str) and isinstance(old, str) and new.isdigit() and old.isdigit():
        return int(new) <= int(old)
    return False


# How many deletions of each kind the Store remembers (a late copy of a deleted object is refused, see
# Store.delete): what is in flight at once (a reconcile's write, a late event) is far fewer.
TOMBSTONES = 4096


def _discard(index: dict[tuple[str, str, str], set[str]], key: tuple[str, str, str], name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]


def _stage(body: dict[str, Any]) -> str | None:
    stage = (body.get("status") or {}).get("stage")
    return stage if isinstance(stage, str) else None


# kinds indexed by the slot label (Store.of_slot): a slot's pods, owned by a ReplicaSet, not by us
SLOTTED = frozenset({"Pod"})

# a field kept unpickled beside an object of a kind, for readers of the whole fleet (notes())
NOTES: dict[str, Callable[[dict[str, Any]], str | None]] = {"ModelVersion": _stage}


class _Entry:
    """One cached object: its projection, pickled (a ModelVersion's ~5 KB of Python dicts and strings
    is ~1.4 KB pickled, a Deployment's ~10 KB ~2.7 KB; at 10,000 / 2,000 the dicts were most of the
    operator's memory), with what the indexes and the staleness checks need kept beside it."""

    __slots__ = ("blob", "model", "note", "owner", "rv", "slot")

    def __init__(self, kind: str, body: dict[str, Any]) -> None:
        self.blob = pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
        note = NOTES.get(kind)
        self.note: str | None = note(body) if note is not None else None
        rv = (body.get("metadata") or {}).get("resourceVersion")
        self.rv: str | None = str(rv) if rv is not None else None
        ctl = controller_of(body)
        self.owner: str | None = ctl[0] if ctl else None
        model = (body.get("spec") or {}).get("model")
        self.model: str | None = model if isinstance(model, str) else None
        slot = ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_SLOT) if kind in SLOTTED else None
        self.slot: str | None = slot if isinstance(slot, str) else None

    def body(self) -> dict[str, Any]:
        """A fresh copy: a reader may keep or change it without touching the cache."""
        out: dict[str, Any] = pickle.loads(self.blob)  # noqa: S301 - our own bytes, never input
        return out


# What a reconcile read from the cache (Store.recording): each read with what it returned, as
# resourceVersions and names only, so that Store.unchanged() can tell without reading any object whether
# the same reads would return the same now. ("whole", ...) marks a read of a whole kind: never unchanged.
Read = tuple[Any, ...]
_READS: contextvars.ContextVar[list[Read] | None] = contextvars.ContextVar("store_reads", default=None)


def _note(read: Read) -> None:
    reads = _READS.get()
    if reads is not None:
        reads.append(read)


def kept(reads: Iterable[Read]) -> tuple[Read, ...]:
    """Recorded reads to keep (per endpoint, until its inputs change): each read once, its names
    interned, so that what is kept holds no copies of them. (Interned here, not at every read: most
    reconciles' reads are dropped.)"""
    return tuple(dict.fromkeys(tuple(sys.intern(x) if type(x) is str else x for x in r) for r in reads))


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[str, dict[str, _Entry]]] = {}  # kind -> ns -> name -> entry
        self._owned: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, endpoint uid) -> names
        self._models: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, spec.model) -> names
        self._slots: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, slot label) -> names
        self._unobserved: set[tuple[str, str, str]] = set()  # our writes the watch has not shown yet
        # kind -> (ns, name) -> the resourceVersion of its deletion, the latest TOMBSTONES of each kind
        self._gone: dict[str, dict[tuple[str, str], str]] = {}

    def upsert(self, kind: str, body: dict[str, Any], observed: bool = True) -> None:
        """Cache `body`. observed=False: the object as we just wrote it (read-your-writes), which
        is_observed() reports as not yet seen through the watch."""
        entry = _Entry(kind, cacheable(kind, body, shared=True))  # pickled at once: no copy first
        ns, name = body.get("metadata", {}).get("namespace", ""), body["metadata"]["name"]
        with self._lock:
            tombs = self._gone.get(kind)
            gone = tombs.get((ns, name)) if tombs else None
            if tombs and gone is not None:
                if _not_newer(entry.rv, gone):
                    return  # a copy from before its deletion (our write's answer, read after the event)
                del tombs[(ns, name)]  # created again
            bucket = self._objs.setdefault(kind, {}).setdefault(ns, {})
            old = bucket.get(name)
            if old is not None:
                if _older(entry.rv, old.rv):
                    return  # a late watch event must not undo a write we already cached
                self._unindex(kind, ns, name, old)
            same = old is not None and old.rv == entry.rv
            if observed:
                self._unobserved.discard((kind, ns, name))
            elif not same:  # a write that changed nothing (same resourceVersion) produces no watch event
                self._unobserved.add((kind, ns, name))
            bucket[name] = entry
            if entry.owner:
                self._owned.setdefault((kind, ns, entry.owner), set()).add(name)
            if entry.model is not None:
                self._models.setdefault((kind, ns, entry.model), set()).add(name)
            if entry.slot is not None:
                self._slots.setdefault((kind, ns, entry.slot), set()).add(name)

    def holds(self, kind: str, namespace: str, name: str, resource_version: Any) -> bool:
        """Is exactly this version of the object cached? Then it is observed (a listing showed it)."""
        if not resource_version:
            return False
        with self._lock:
            old = self._objs.get(kind, {}).get(namespace, {}).get(name)
            if old is None or old.rv != str(resource_version):
                return False
            self._unobserved.discard((kind, namespace, name))
            return True

    def _unindex(self, kind: str, ns: str, name: str, entry: _Entry) -> None:
        if entry.owner:
            _discard(self._owned, (kind, ns, entry.owner), name)
        if entry.model is not None:
            _discard(self._models, (kind, ns, entry.model), name)
        if entry.slot is not None:
            _discard(self._slots, (kind, ns, entry.slot), name)

    def is_observed(self, kind: str, namespace: str, name: str) -> bool:
        """Did the cached version of this object come from the watch (not only from our own write)?"""
        with self._lock:
            seen = (kind, namespace, name) not in self._unobserved
        _note(("observed", kind, namespace, name, seen))
        return seen

    def delete(
        self, kind: str, namespace: str, name: str, if_version: str | None = None, gone_at: str | None = None
    ) -> None:
        """Forget the object (with `if_version`: only if the cached one is still that version).
        `gone_at`: the resourceVersion of its deletion (a watch's DELETED event): a copy of the object
        from before it, cached later, is refused. A reconcile that wrote the object just before it was
        deleted caches its write's answer when it gets to it, which under load can be after the
        DELETED event: without this, the deleted object came back to the cache for good (until a
        restart) and, e.g., its Model's registry never recorded it as removed."""
        with self._lock:
            if gone_at:
                cached = self._objs.get(kind, {}).get(namespace, {}).get(name)
                if cached is not None and _older(str(gone_at), cached.rv):
                    return  # created again already (our create's answer came first): that one stays
                gone = self._gone.setdefault(kind, {})  # bounded per kind: Pods' deletions are many
                gone.pop((namespace, name), None)
                gone[(namespace, name)] = str(gone_at)
                if len(gone) > TOMBSTONES:
                    del gone[next(iter(gone))]  # the oldest deletion
            bucket = self._objs.get(kind, {}).get(namespace, {})
            old = bucket.get(name)
            if old is None or (if_version is not None and old.rv != if_version):
                return
            self._unobserved.discard((kind, namespace, name))
            del bucket[name]
            self._unindex(kind, namespace, name, old)
            if not bucket:
                self._objs.get(kind, {}).pop(namespace, None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._objs.get(kind, {}).get(namespace, {}).get(name)
        _note(("get", kind, namespace, name, entry.rv if entry is not None else None))
        return entry.body() if entry is not None else None

    def rv(self, kind: str, namespace: str, name: str) -> str | None:
        """The cached object's resourceVersion (None: not cached), without reading it; recorded as
        a read of the object (a reader that already holds a copy of that version needs no other)."""
        with self._lock:
            entry = self._objs.get(kind, {}).get(namespace, {}).get(name)
        at = entry.rv if entry is not None else None
        _note(("get", kind, namespace, name, at))
        return at

    def blob(self, kind: str, namespace: str, name: str) -> bytes | None:
        """The cached object's pickled bytes (None: not cached), without reading it: equal bytes are
        the same object. Recorded as a read of the object."""
        with self._lock:
            entry = self._objs.get(kind, {}).get(namespace, {}).get(name)
        _note(("get", kind, namespace, name, entry.rv if entry is not None else None))
        return entry.blob if entry is not None else None

    def has(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            entry = self._objs.get(kind, {}).get(namespace, {}).get(name)
        _note(("get", kind, namespace, name, entry.rv if entry is not None else None))
        return entry is not None

    def keys(self, kind: str, namespace: str | None = None) -> list[Key]:
        """The cached objects of `kind` (in `namespace`), without reading them."""
        _note(("whole", kind))
        with self._lock:
            by_ns = self._objs.get(kind, {})
            if namespace is None:
                return [(ns, n) for ns, objs in by_ns.items() for n in objs]
            return [(namespace, n) for n in by_ns.get(namespace, {})]

    def versions(self, kind: str, namespace: str | None = None) -> dict[Key, str | None]:
        """resourceVersion of every cached object of `kind` (in `namespace`)."""
        _note(("whole", kind))
        with self._lock:
            by_ns = self._objs.get(kind, {})
            spaces = by_ns.items() if namespace is None else [(namespace, by_ns.get(namespace, {}))]
            return {(ns, n): e.rv for ns, objs in spaces for n, e in objs.items()}

    def notes(self, kind: str) -> list[tuple[Key, str | None, str | None]]:
        """(key, spec.model, note) of every cached object of `kind`, without reading them (NOTES)."""
        _note(("whole", kind))
        with self._lock:
            return [
                ((ns, n), e.model, e.note)
                for ns, objs in self._objs.get(kind, {}).items()
                for n, e in objs.items()
            ]

    def cluster_scoped(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(name, body) of every cached cluster-scoped object of `kind` (e.g. the platform's policies),
        recorded so that a settled reconcile stays settled until one of them changes."""
        with self._lock:
            entries = sorted(self._objs.get(kind, {}).get("", {}).items())
        _note(("cluster", kind, "", "", tuple((n, e.rv) for n, e in entries)))
        return [(n, e.body()) for n, e in entries]

    def items(self, kind: str, namespace: str | None = None) -> Iterator[tuple[Key, dict[str, Any]]]:
        _note(("whole", kind))
        with self._lock:
            by_ns = self._objs.get(kind, {})
            if namespace is None:
                snapshot = [((ns, n), e) for ns, objs in by_ns.items() for n, e in objs.items()]
            else:
                snapshot = [((namespace, n), e) for n, e in by_ns.get(namespace, {}).items()]
        for key, entry in snapshot:
            yield key, entry.body()

    def owned(self, kind: str, namespace: str, endpoint_uid: str) -> list[dict[str, Any]]:
        """Children of `kind` whose controller ownerReference is the endpoint with this UID."""
        with self._lock:
            names = sorted(self._owned.get((kind, namespace, endpoint_uid), ()))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            entries = [(n, bucket[n]) for n in names if n in bucket]
        _note(("owned", kind, namespace, endpoint_uid, tuple((n, e.rv) for n, e in entries)))
        return [e.body() for _, e in entries]

    def owned_names(self, kind: str, namespace: str, endpoint_uid: str) -> list[str]:
        """Names of the children owned() would return, without reading them."""
        with self._lock:
            names = self._owned.get((kind, namespace, endpoint_uid), ())
            bucket = self._objs.get(kind, {}).get(namespace, {})
            out = sorted(n for n in names if n in bucket)
        _note(("owned_names", kind, namespace, endpoint_uid, tuple(out)))
        return out

    def model_keys(self, kind: str, namespace: str, model: str) -> list[Key]:
        """Keys of the objects of `kind` in `namespace` whose spec.model is `model`, not read."""
        with self._lock:
            names = sorted(self._models.get((kind, namespace, model), ()))
        _note(("model_keys", kind, namespace, model, tuple(names)))
        return [(namespace, n) for n in names]

    def of_model(self, kind: str, namespace: str, model: str) -> list[tuple[Key, dict[str, Any]]]:
        """Objects of `kind` in `namespace` whose spec.model is `model` (an index: a reconcile of one
        model's version or endpoint never scans the other models' objects)."""
        with self._lock:
            names = sorted(self._models.get((kind, namespace, model), ()))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            entries = [(n, bucket[n]) for n in names if n in bucket]
        _note(("of_model", kind, namespace, model, tuple((n, e.rv) for n, e in entries)))
        return [((namespace, n), e.body()) for n, e in entries]

    def of_slot(self, kind: str, namespace: str, slot: str) -> list[dict[str, Any]]:
        """Objects of `kind` (SLOTTED: pods) in `namespace` labelled with this slot, by name."""
        with self._lock:
            names = sorted(self._slots.get((kind, namespace, slot), ()))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            entries = [(n, bucket[n]) for n in names if n in bucket]
        _note(("of_slot", kind, namespace, slot, tuple((n, e.rv) for n, e in entries)))
        return [e.body() for _, e in entries]

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Read]]:
        """Record this thread's (context's) reads of the cache until the block ends."""
        reads: list[Read] = []
        token = _READS.set(reads)
        try:
            yield reads
        finally:
            _READS.reset(token)

    def unchanged(self, reads: Iterable[Read]) -> bool:
        """Would every recorded read return the same now (same objects at the same resourceVersions,
        the same observed flags)? Reads no object."""
        with self._lock:
            return all(self._same(r) for r in reads)

    def _same(self, read: Read) -> bool:  # with the lock held
        what, kind = str(read[0]), str(read[1])
        if what == "whole":
            return False
        ns, key, was = str(read[2]), str(read[3]), read[4]
        bucket = self._objs.get(kind, {}).get(ns, {})
        now: Any
        if what == "get":
            entry = bucket.get(key)
            now = entry.rv if entry is not None else None
        elif what == "observed":
            now = (kind, ns, key) not in self._unobserved
        elif what == "cluster":
            now = tuple(sorted((n, e.rv) for n, e in bucket.items()))
        elif what == "model_keys":
            now = tuple(sorted(self._models.get((kind, ns, key), ())))
        else:
            index = (
                self._owned
                if what in ("owned", "owned_names")
                else self._slots
                if what == "of_slot"
                else self._models
            )
            names = sorted(n for n in index.get((kind, ns, key), ()) if n in bucket)
            now = tuple(names) if what == "owned_names" else tuple((n, bucket[n].rv) for n in names)
        return bool(now == was)

    def count(self, kind: str) -> int:
        _note(("whole", kind))
        with self._lock:
            return sum(len(objs) for objs in self._objs.get(kind, {}).values())
