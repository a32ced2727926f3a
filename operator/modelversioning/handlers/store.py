"""In-memory view of the objects the operator watches, fed only by watch events.

Reconcilers read from here instead of calling the API, so an idle operator
makes no requests beyond its watches. Objects are kept per kind and namespace,
with an index of children by owning endpoint, so a reconcile never scans
objects of other namespaces or endpoints.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from modelversioning.render.routers import get_router, router_names

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


# ---- what the cache keeps of each kind ------------------------------------------------------------
#
# The one table of every field a reconciler reads from a cached object. Anything else the API server
# sends (managedFields, defaults, other controllers' status, other tools' annotations) is dropped on
# the way in, so memory grows with what we use, not with what the objects carry.
#
# A mask says what to keep of a value:
#   ALL          the whole value (a spec we validate, a status we patch on top of, a drift-checked spec)
#   {key: mask}  only these keys of a map; applied to each element of a list of maps
#   Prefixed(p)  only the keys of a map that start with p (our annotations)
#   Only(f, m)   of a list, only the elements f accepts, each projected by m
#
# Who reads what (keep this in step with the readers; tests/test_store_projection.py runs the
# reconcilers over full and projected objects, and fails on a read of a field the mask drops):
#   every kind         metadata.name/namespace/resourceVersion (cache keys, stale-event check),
#                      metadata.ownerReferences (children index, _taken)
#   our own kinds      apiVersion, kind, metadata.uid/resourceVersion (Events' involvedObject),
#                      metadata.generation (observedGeneration), deletionTimestamp, finalizers
#                      (set_finalizers writes the list back: all of it, not only ours),
#                      creationTimestamp (registry view), annotations under modelversioning.io/
#                      (requested-by, reason, requested-stage, rollout-*, retention-archive,
#                      artifact-deleted, test-clock, accept-replaced), spec (validated whole),
#                      status (the base of every status merge patch and of status_changed)
#   ModelVersion       managedFields: only the entries that own spec.stage (stage_actor)
#   ModelApproval      spec (model, version, sha256, approver, stage); its status is not read
#   Deployment         apiVersion, kind, metadata labels/annotations/ownerReferences and the whole
#                      spec (drift.diff against the rendered slot), metadata.generation and
#                      status.{observedGeneration,readyReplicas,updatedReplicas,availableReplicas,
#                      conditions[].type/status} (deployment_state)
#   Service, routes    apiVersion, kind, metadata labels/annotations/ownerReferences, the whole spec
#                      (drift.diff; a router's services() reads the route's backends); status unread


class _All:
    def __repr__(self) -> str:
        return "ALL"


ALL: Any = _All()


@dataclass(frozen=True)
class Prefixed:
    prefix: str


@dataclass(frozen=True)
class Only:
    keep: Callable[[Any], bool]
    mask: Any


def _owns_stage(mf: Any) -> bool:
    return isinstance(mf, dict) and "f:stage" in ((mf.get("fieldsV1") or {}).get("f:spec") or {})


OUR_ANNOTATIONS = "modelversioning.io/"
_KEYS = {"name": ALL, "namespace": ALL, "uid": ALL, "resourceVersion": ALL, "ownerReferences": ALL}
_OWN_META = {
    **_KEYS,
    "generation": ALL,
    "creationTimestamp": ALL,
    "deletionTimestamp": ALL,
    "finalizers": ALL,
    "annotations": Prefixed(OUR_ANNOTATIONS),
}
_CHILD_META = {**_KEYS, "generation": ALL, "deletionTimestamp": ALL, "labels": ALL, "annotations": ALL}
_OWN = {"apiVersion": ALL, "kind": ALL, "metadata": _OWN_META, "spec": ALL, "status": ALL}
_CHILD = {"apiVersion": ALL, "kind": ALL, "metadata": _CHILD_META, "spec": ALL}

PROJECTION: dict[str, dict[str, Any]] = {
    "ModelVersion": {
        **_OWN,
        "metadata": {
            **_OWN_META,
            "managedFields": Only(
                _owns_stage,
                {"manager": ALL, "operation": ALL, "time": ALL, "fieldsV1": {"f:spec": {"f:stage": ALL}}},
            ),
        },
    },
    "ModelEndpoint": _OWN,
    "Model": _OWN,
    "ModelApproval": {"apiVersion": ALL, "kind": ALL, "metadata": _OWN_META, "spec": ALL},
    "Deployment": {
        **_CHILD,
        "status": {
            "observedGeneration": ALL,
            "readyReplicas": ALL,
            "updatedReplicas": ALL,
            "availableReplicas": ALL,
            "conditions": {"type": ALL, "status": ALL},
        },
    },
    "Service": _CHILD,
    # every router's route object (VirtualService, HTTPRoute, ...): each router module names its kind
    **{k: _CHILD for k in sorted({get_router(n).kind for n in router_names()} - {""})},
}
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_INTERN_MAX = 64  # shorter strings are shared between objects (names, uids, labels, reasons, times)


def _shared(value: Any) -> Any:
    """`value` rebuilt with its map keys and short strings interned (one copy per distinct string)."""
    if isinstance(value, dict):
        return {sys.intern(k) if type(k) is str else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if type(value) is str and len(value) <= _INTERN_MAX:
        return sys.intern(value)
    return value


def project(value: Any, mask: Any) -> Any:
    """What `mask` keeps of `value` (a new object; `value` is not changed). A value of another
    shape than the mask expects (a scalar where a map should be) is kept as it is."""
    if mask is ALL:
        return _shared(value)
    if isinstance(mask, Prefixed):
        if not isinstance(value, dict):
            return _shared(value)
        return {sys.intern(k): _shared(v) for k, v in value.items() if k.startswith(mask.prefix)}
    if isinstance(mask, Only):
        if not isinstance(value, list):
            return _shared(value)
        return [project(v, mask.mask) for v in value if mask.keep(v)]
    if isinstance(value, dict):
        return {sys.intern(k): project(value[k], m) for k, m in mask.items() if k in value}
    if isinstance(value, list):
        return [project(v, mask) for v in value]
    return _shared(value)


def cacheable(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of an object of `kind`: its PROJECTION (a new dict). A kind without one
    is kept whole, less managedFields and kubectl's last-applied copy."""
    mask = PROJECTION.get(kind)
    out: dict[str, Any] = _shared(body) if mask is None else project(body, mask)
    md = out.get("metadata")
    if isinstance(md, dict):
        if mask is None:
            md.pop("managedFields", None)
        ann = md.get("annotations")
        if isinstance(ann, dict):
            ann.pop(_LAST_APPLIED, None)  # a second copy of the whole object
    return out


def _older(new: Any, old: Any) -> bool:
    # resourceVersions are opaque by contract; etcd's are integers, and only then do we compare
    if isinstance(new, str) and isinstance(old, str) and new.isdigit() and old.isdigit():
        return int(new) < int(old)
    return False


def _discard(index: dict[tuple[str, str, str], set[str]], key: tuple[str, str, str], name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}  # kind -> ns -> name -> body
        self._owned: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, endpoint uid) -> names
        self._models: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, spec.model) -> names
        self._unobserved: set[tuple[str, str, str]] = set()  # our writes the watch has not shown yet

    @staticmethod
    def _owner(body: dict[str, Any]) -> str | None:
        ctl = controller_of(body)
        return ctl[0] if ctl else None

    @staticmethod
    def _model(body: dict[str, Any]) -> str | None:
        model = (body.get("spec") or {}).get("model")
        return model if isinstance(model, str) else None

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
            model = self._model(body)
            if model is not None:
                self._models.setdefault((kind, ns, model), set()).add(name)

    def holds(self, kind: str, namespace: str, name: str, resource_version: Any) -> bool:
        """Is exactly this version of the object cached? Then it is observed (a listing showed it)."""
        if not resource_version:
            return False
        with self._lock:
            old = self._objs.get(kind, {}).get(namespace, {}).get(name)
            if old is None or old.get("metadata", {}).get("resourceVersion") != resource_version:
                return False
            self._unobserved.discard((kind, namespace, name))
            return True

    def _unindex(self, kind: str, ns: str, name: str, body: dict[str, Any]) -> None:
        owner = self._owner(body)
        if owner:
            _discard(self._owned, (kind, ns, owner), name)
        model = self._model(body)
        if model is not None:
            _discard(self._models, (kind, ns, model), name)

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

    def of_model(self, kind: str, namespace: str, model: str) -> list[tuple[Key, dict[str, Any]]]:
        """Objects of `kind` in `namespace` whose spec.model is `model` (an index: a reconcile of one
        model's version or endpoint never scans the other models' objects)."""
        with self._lock:
            names = sorted(self._models.get((kind, namespace, model), ()))
            bucket = self._objs.get(kind, {}).get(namespace, {})
            return [((namespace, n), bucket[n]) for n in names if n in bucket]

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(len(objs) for objs in self._objs.get(kind, {}).values())
