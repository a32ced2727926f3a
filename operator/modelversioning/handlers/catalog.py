"""The runtime catalog as the ModelVersion reconciler gathers it: the version's runtime request and
the ModelRuntimes of its namespace and every ClusterModelRuntime, from the watch cache, into
``domain.runtime_catalog.RuntimeFacts`` (validated, in wire form). Nothing here decides anything
(the watch handler, ``watch.runtime_event``, only caches and queues the versions it may concern)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelversioning.api.common import validation_message
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.runtime import ModelRuntimeSpec
from modelversioning.api.wire import CLUSTERMODELRUNTIME, MODELRUNTIME
from modelversioning.domain.runtime_catalog import CatalogRuntime, Format, RuntimeFacts, framework_format
from modelversioning.handlers.store import Store


def runtime_facts(
    store: Store, namespace: str, spec: ModelVersionSpec, status: Mapping[str, Any]
) -> RuntimeFacts:
    """What ``resolve_runtime`` needs of one version: the catalog is read only while there is something to
    resolve (no spec.runtime, nothing resolved yet)."""
    if spec.runtime is not None:
        return RuntimeFacts(namespace, explicit=True)
    resolved = status.get("resolvedRuntime")
    if isinstance(resolved, Mapping) and resolved:
        return RuntimeFacts(namespace, resolved=resolved)
    fmt = (
        Format(spec.format.name, spec.format.version)
        if spec.format is not None
        else framework_format(spec.lineage.framework)
    )
    ref = (spec.runtime_ref.kind or "", spec.runtime_ref.name) if spec.runtime_ref is not None else None
    return RuntimeFacts(namespace, ref=ref, format=fmt, catalog=catalog(store, namespace))


def catalog(store: Store, namespace: str) -> tuple[CatalogRuntime, ...]:
    """The ModelRuntimes of `namespace` (never another's: tenancy) and every ClusterModelRuntime."""
    out = [_entry(MODELRUNTIME.kind, body) for _key, body in store.items(MODELRUNTIME.kind, namespace)]
    out += [
        _entry(CLUSTERMODELRUNTIME.kind, body)
        for _name, body in store.cluster_scoped(CLUSTERMODELRUNTIME.kind)
    ]
    return tuple(out)


def _entry(kind: str, body: Mapping[str, Any]) -> CatalogRuntime:
    md = body.get("metadata") or {}
    common: dict[str, Any] = {
        "kind": kind,
        "name": str(md.get("name", "")),
        "namespace": str(md.get("namespace") or ""),
        "uid": str(md.get("uid", "")),
        "generation": int(md.get("generation") or 0),
    }
    try:
        spec = ModelRuntimeSpec.model_validate(body.get("spec") or {})
    except ValidationError as e:
        return CatalogRuntime(**common, invalid=validation_message(e))
    return CatalogRuntime(**common, spec=spec.to_k8s())
