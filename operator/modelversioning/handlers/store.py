"""In-memory view of the objects the operator watches, fed only by watch events.

Reconcilers read from here instead of calling the API, so an idle operator
makes no requests beyond its watches. Objects are kept per kind and namespace,
with an index of children by owning endpoint, so a reconcile never scans
objects of other namespaces or endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str]  # (namespace, name)
OWNER_KIND = "ModelEndpoint"
OWNER_API_GROUP = "modelversioning.io/"


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


def cacheable(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """What is worth keeping of an object: managedFields only for ModelVersions (they name who set
    spec.stage), no last-applied-configuration copies."""
    md = body.get("metadata")
    if isinstance(md, dict):
        if kind != "ModelVersion":
            md.pop("managedFields", None)
        ann = md.get("annotations")
        if isinstance(ann, dict):
            ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return body


def _older(new: Any, old: Any) -> bool:
    # resourceVersions are opaque by contract; etcd's are integers, and only then do we compare
    if isinstance(new, str) and isinstance(old, str) and new.isdigit() and old.isdigit():
        return int(new) < int(old)
    return False


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}  # kind -> ns -> name -> body
        self._owned: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, endpoint uid) -> names
        self._unobserved: set[tuple[str, str, str]] = set()  # our writes the watch has not shown yet

    @staticmethod
    def _owner(body: dict[str, Any]) -> str | None:
        ctl = controller_of(body)
        return ctl[0] if ctl else None

    def upsert(self, kind: str, body: dict[str, Any], observed: bool = True) -> None:
        """Cache `body`. observed=False: the object as we just wrote it (read-your-writes), which
        is_observed() reports as not yet seen through the watch."""
        body = cacheable(kind, body)
        md = body.get("metadata", {})
        ns, name = md.get("namespace", ""), md["name"]
        with self._lock:
            bucket = self._objs.setdefault(kind, {}).setdefault(ns, {})
            old = bucket.get(name)
            if old is not None:
                if _older(md.get("resourceVersion"), old.get("metadata", {}).get("resourceVersion")):
                    return  # a late watch event must not undo a write we already cached
                self._unindex(kind, ns, name, old)
            same = old is not None and old.get("metadata", {}).get("resourceVersion") == md.get(
                "resourceVersion"
            )
            if observed:
                self._unobserved.discard((kind, ns, name))
            elif not same:  # a write that changed nothing (same resourceVersion) produces no watch event
                self._unobserved.add((kind, ns, name))
            bucket[name] = body
            owner = self._owner(body)
            if owner:
                self._owned.setdefault((kind, ns, owner), set()).add(name)

    def _unindex(self, kind: str, ns: str, name: str, body: dict[str, Any]) -> None:
        owner = self._owner(body)
        if owner:
            names = self._owned.get((kind, ns, owner))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._owned[(kind, ns, owner)]

    def is_observed(self, kind: str, namespace: str, name: str) -> bool:
        """Did the cached version of this object come from the watch (not only from our own write)?"""
        with self._lock:
            return (kind, namespace, name) not in self._unobserved

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._unobserved.discard((kind, namespace, name))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            old = bucket.pop(name, None)
            if old is not None:
                self._unindex(kind, namespace, name, old)
            if not bucket:
                self._objs.get(kind, {}).pop(namespace, None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objs.get(kind, {}).get(namespace, {}).get(name)

    def items(self, kind: str, namespace: str | None = None) -> Iterator[tuple[Key, dict[str, Any]]]:
        with self._lock:
            by_ns = self._objs.get(kind, {})
            if namespace is None:
                snapshot = [((ns, n), b) for ns, objs in by_ns.items() for n, b in objs.items()]
            else:
                snapshot = [((namespace, n), b) for n, b in by_ns.get(namespace, {}).items()]
        yield from snapshot

    def owned(self, kind: str, namespace: str, endpoint_uid: str) -> list[dict[str, Any]]:
        """Children of `kind` whose controller ownerReference is the endpoint with this UID."""
        with self._lock:
            names = sorted(self._owned.get((kind, namespace, endpoint_uid), ()))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            return [bucket[n] for n in names if n in bucket]

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(len(objs) for objs in self._objs.get(kind, {}).values())
