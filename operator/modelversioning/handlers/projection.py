"""What the watch cache (handlers.store) keeps of each kind: one table of every field a reconciler
reads from a cached object (PROJECTION), and the projection that applies it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api.wire import ANNOTATION_PREFIX, LABEL_SLOT, LAST_APPLIED_ANNOTATION
from modelversioning.render.routers import all_routers

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
#   ModelApproval      spec (model, version, sha256, servingDigest, approver, approverGroups, stage)
#   ValidatingAdmissionPolicy(Binding)  spec.failurePolicy / spec.{policyName,validationActions,
#                      matchResources} (handlers/admission.py: are the chart's policies in force?)
#   Deployment         apiVersion, kind, metadata labels/annotations/ownerReferences and the whole
#                      spec (drift.diff against the rendered slot), metadata.generation and
#                      status.{observedGeneration,readyReplicas,updatedReplicas,availableReplicas,
#                      conditions[].type/status} (deployment_state)
#   Service, routes    apiVersion, kind, metadata labels/annotations/ownerReferences, the whole spec
#                      (drift.diff; a router's services() reads the route's backends); status unread
#   Pod                metadata.labels[slot] (the slot index), deletionTimestamp; status.phase and
#                      the init/container statuses' name, ready, image, restartCount, state.waiting.reason,
#                      state.running.startedAt, state/lastState.terminated.{exitCode,reason,message}
#                      (domain.pod_health); a message of a run that exited 0 is dropped (_trim_pod)
#   (Cluster)ModelRuntime  metadata.generation and the whole spec (handlers.catalog: the version's
#                      status.resolvedRuntime records kind, name, uid and generation)
#   Gateway            spec.gatewayClassName        } what the gatewayAPI router reads of the platform
#   GatewayClass       status.supportedFeatures     } (handlers/platform.py); not ours, never written


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


OUR_ANNOTATIONS = ANNOTATION_PREFIX
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

_TERMINATED = {"exitCode": ALL, "reason": ALL, "message": ALL}
_CONTAINER_STATUS = {
    "name": ALL,
    "ready": ALL,
    "image": ALL,
    "restartCount": ALL,
    "state": {"waiting": {"reason": ALL}, "running": {"startedAt": ALL}, "terminated": _TERMINATED},
    "lastState": {"terminated": _TERMINATED},
}

_PROJECTIONS: dict[str, dict[str, Any]] = {
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
    "Pod": {
        "metadata": {
            "name": ALL,
            "namespace": ALL,
            "resourceVersion": ALL,
            "deletionTimestamp": ALL,
            "labels": {LABEL_SLOT: ALL},
        },
        "status": {
            "phase": ALL,
            "initContainerStatuses": _CONTAINER_STATUS,
            "containerStatuses": _CONTAINER_STATUS,
        },
    },
    "Gateway": {"apiVersion": ALL, "kind": ALL, "metadata": _KEYS, "spec": {"gatewayClassName": ALL}},
    "ModelPlatformPolicy": {"apiVersion": ALL, "kind": ALL, "metadata": _KEYS, "spec": ALL},
    # the runtime catalog (handlers.catalog): spec validated whole; uid and generation are the source a
    # resolved version records
    "ModelRuntime": {"apiVersion": ALL, "kind": ALL, "metadata": {**_KEYS, "generation": ALL}, "spec": ALL},
    "ClusterModelRuntime": {
        "apiVersion": ALL,
        "kind": ALL,
        "metadata": {**_KEYS, "generation": ALL},
        "spec": ALL,
    },
    "Namespace": {"apiVersion": ALL, "kind": ALL, "metadata": {**_KEYS, "labels": ALL}},
    "ValidatingAdmissionPolicy": {
        "apiVersion": ALL,
        "kind": ALL,
        "metadata": _KEYS,
        "spec": {"failurePolicy": ALL},
    },
    "ValidatingAdmissionPolicyBinding": {
        "apiVersion": ALL,
        "kind": ALL,
        "metadata": _KEYS,
        "spec": {"policyName": ALL, "validationActions": ALL, "matchResources": ALL},
    },
    "GatewayClass": {"apiVersion": ALL, "kind": ALL, "metadata": _KEYS, "status": {"supportedFeatures": ALL}},
}


class _Projection(Mapping[str, dict[str, Any]]):
    """The table above, plus every registered router's route object (VirtualService, HTTPRoute, ...),
    kept as a child. Each router module names its own kind, and a router registered after this module
    was imported (a test's) is projected like the others."""

    def _routes(self) -> dict[str, dict[str, Any]]:
        return {r.kind: _CHILD for r in all_routers() if r.writes_route}

    def __getitem__(self, kind: str) -> dict[str, Any]:
        mask = _PROJECTIONS.get(kind)
        return mask if mask is not None else self._routes()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter({**_PROJECTIONS, **self._routes()})

    def __len__(self) -> int:
        return len({**_PROJECTIONS, **self._routes()})


PROJECTION: Mapping[str, dict[str, Any]] = _Projection()


def _copied(value: Any) -> Any:
    """`value` with its maps and lists copied (the caller's object is never changed)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def _shared(value: Any) -> Any:
    return value


def project(value: Any, mask: Any, copy: bool = True) -> Any:
    """What `mask` keeps of `value` (a new object; `value` is not changed). A value of another
    shape than the mask expects (a scalar where a map should be) is kept as it is. copy=False: what
    the mask keeps whole (ALL, a Prefixed map's values, a value of another shape) is the caller's
    own, not a copy; the maps and lists the mask walks through are still new."""
    keep = _copied if copy else _shared
    if mask is ALL:
        return keep(value)
    if isinstance(mask, Prefixed):
        if not isinstance(value, dict):
            return keep(value)
        return {k: keep(v) for k, v in value.items() if k.startswith(mask.prefix)}
    if isinstance(mask, Only):
        if not isinstance(value, list):
            return keep(value)
        return [project(v, mask.mask, copy) for v in value if mask.keep(v)]
    if isinstance(value, dict):
        return {k: project(value[k], m, copy) for k, m in mask.items() if k in value}
    if isinstance(value, list):
        return [project(v, mask, copy) for v in value]
    return keep(value)


def _trim_pod(pod: dict[str, Any]) -> None:
    """A run that exited 0 says nothing pod_health reads: its message (the verifier's success report,
    ~400 bytes on every pod) is not kept."""
    st = pod.get("status")
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in (st.get(key) if isinstance(st, dict) else None) or []:
            for state in ("state", "lastState"):
                term = ((cs.get(state) if isinstance(cs, dict) else None) or {}).get("terminated")
                if isinstance(term, dict) and not term.get("exitCode"):
                    term.pop("message", None)


_TRIM: dict[str, Callable[[dict[str, Any]], None]] = {"Pod": _trim_pod}


def cacheable(kind: str, body: dict[str, Any], shared: bool = False) -> dict[str, Any]:
    """What the cache keeps of an object of `kind`: its PROJECTION (a new dict). A kind without one
    is kept whole, less managedFields and kubectl's last-applied copy. shared=True: for a caller that
    serializes the result at once (the Store pickles it) and changes nothing of it; what the
    projection keeps whole is `body`'s own (not copied), and `body` is still never changed."""
    mask = PROJECTION.get(kind)
    copy = not shared or mask is None or kind in _TRIM  # those change what they keep: a copy
    out: dict[str, Any] = _copied(body) if mask is None else project(body, mask, copy)
    if (trim := _TRIM.get(kind)) is not None:
        trim(out)
    md = out.get("metadata")
    if isinstance(md, dict):
        if id(md) == id(body.get("metadata")):  # kept whole by a mask: ours to change as a copy only
            md = out["metadata"] = dict(md)
        if mask is None:
            md.pop("managedFields", None)
        ann = md.get("annotations")
        if isinstance(ann, dict) and LAST_APPLIED_ANNOTATION in ann:  # a second copy of the whole object
            md["annotations"] = {k: v for k, v in ann.items() if k != LAST_APPLIED_ANNOTATION}
    return out
