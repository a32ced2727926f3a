"""KServe's ServingRuntime / ClusterServingRuntime -> our ModelRuntime / ClusterModelRuntime (pure).

``convert(doc)`` reads one manifest in KServe's documented format (serving.kserve.io/v1alpha1) and
returns ours with every field it does not carry over named in a warning, never dropped silently:

- kept as is: supportedModelFormats (name, version, autoSelect, priority), protocolVersions (v1, v2,
  grpc-v1, grpc-v2), disabled; of the predictor container: name, image, command, args, env (name and
  value), ports (name, containerPort, protocol), resources (requests, limits), readinessProbe.httpGet.path.
- rewritten, with a warning: KServe's model directory ``/mnt/models`` (its storage initializer's mount)
  becomes ``$(MODEL_PATH)``, where the operator mounts the verified artifact.
- left out, with a warning each: KServe's per-InferenceService templates (``{{.Name}}``,
  ``{{.Labels.x}}``: the operator fills none), env ``valueFrom``, every other container field
  (securityContext: the operator hardens every container itself), every container but the predictor
  (``kserve-container``, else the first), every other spec field (multiModel, grpcEndpoint,
  nodeSelector, volumes, ...).

``rows(objs)`` is what ``kubectl models runtimes list`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelversioning.api.common import validation_message
from modelversioning.api.runtime import ModelRuntimeSpec
from modelversioning.api.wire import API_VERSION, CLUSTERMODELRUNTIME, MODELRUNTIME

KSERVE_GROUP = "serving.kserve.io"
KINDS = {"ServingRuntime": MODELRUNTIME.kind, "ClusterServingRuntime": CLUSTERMODELRUNTIME.kind}
PREDICTOR = "kserve-container"
KSERVE_MODEL_DIR = "/mnt/models"
MODEL_PATH_REF = "$(MODEL_PATH)"
_FORMAT_KEYS = ("name", "version", "autoSelect", "priority")
_PROTOCOLS = ("v1", "v2", "grpc-v1", "grpc-v2")
_CONTAINER_KEYS = ("name", "image", "command", "args", "env", "ports", "resources", "readinessProbe")
_PORT_KEYS = ("name", "containerPort", "protocol")


class NotConvertible(ValueError):
    """The document is not a KServe serving runtime, or what is left of it does not validate."""


@dataclass
class Converted:
    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def convert(doc: Mapping[str, Any], where: str = "") -> Converted:
    """One KServe (Cluster)ServingRuntime as our (Cluster)ModelRuntime, with what it left out."""
    kind, api = str(doc.get("kind") or ""), str(doc.get("apiVersion") or "")
    md = doc.get("metadata") or {}
    name = str(md.get("name") or "")
    label = f"{where}{kind} {name}".strip()
    if kind not in KINDS or not api.startswith(f"{KSERVE_GROUP}/"):
        what = f"{api or 'no apiVersion'} {kind or 'no kind'}"
        raise NotConvertible(
            f"{label or where or 'a document'}: not a {KSERVE_GROUP} ServingRuntime or "
            f"ClusterServingRuntime ({what})"
        )
    if not name:
        raise NotConvertible(f"{label}: metadata.name is missing")
    warn: list[str] = []
    out_md: dict[str, Any] = {"name": name}
    if kind == "ServingRuntime" and md.get("namespace"):
        out_md["namespace"] = str(md["namespace"])
    for key in ("labels", "annotations"):
        if md.get(key):
            out_md[key] = dict(md[key])
    spec = _spec(doc.get("spec") or {}, warn)
    try:
        ModelRuntimeSpec.model_validate(spec)
    except ValidationError as e:
        raise NotConvertible(f"{label}: {validation_message(e)}") from None
    obj = {"apiVersion": API_VERSION, "kind": KINDS[kind], "metadata": out_md, "spec": spec}
    return Converted(obj, [f"{label}: {w}" for w in warn])


def _spec(spec: Mapping[str, Any], warn: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    formats = []
    for i, f in enumerate(spec.get("supportedModelFormats") or []):
        formats.append({k: f[k] for k in _FORMAT_KEYS if k in f})
        warn += [
            f"spec.supportedModelFormats[{i}].{k}: not supported, left out"
            for k in f
            if k not in _FORMAT_KEYS
        ]
    if formats:
        out["supportedModelFormats"] = formats
    protocols = [str(p) for p in spec.get("protocolVersions") or []]
    known = ", ".join(_PROTOCOLS)
    warn += [
        f"spec.protocolVersions: {p!r} is not one of {known}, left out"
        for p in protocols
        if p not in _PROTOCOLS
    ]
    if kept := [p for p in protocols if p in _PROTOCOLS]:
        out["protocolVersions"] = kept
    if "disabled" in spec:
        out["disabled"] = bool(spec["disabled"])
    containers = list(spec.get("containers") or [])
    pick = next((i for i, c in enumerate(containers) if c.get("name") == PREDICTOR), 0)
    for i, c in enumerate(containers):
        if i != pick:
            warn.append(
                f"spec.containers[{i}] ({c.get('name')}): only the predictor container is served, left out"
            )
    out["containers"] = [_container(containers[pick], f"spec.containers[{pick}]", warn)] if containers else []
    handled = ("supportedModelFormats", "protocolVersions", "disabled", "containers")
    warn += [f"spec.{k}: not supported, left out" for k in spec if k not in handled]
    return out


def _container(c: Mapping[str, Any], at: str, warn: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("name", "image", "resources"):
        if key in c:
            out[key] = c[key]
    for key in ("command", "args"):
        kept = [
            _path(str(v), f"{at}.{key}", warn)
            for v in c.get(key) or []
            if not _template(str(v), f"{at}.{key}", warn)
        ]
        if kept:
            out[key] = kept
    env = []
    for e in c.get("env") or []:
        where = f"{at}.env {e.get('name')}"
        if "valueFrom" in e:
            warn.append(f"{where}: valueFrom is not supported, left out")
        elif not _template(str(e.get("value") or ""), where, warn):
            env.append({"name": str(e.get("name")), "value": _path(str(e.get("value") or ""), where, warn)})
    if env:
        out["env"] = env
    if c.get("ports"):
        out["ports"] = [{k: p[k] for k in _PORT_KEYS if k in p} for p in c["ports"]]
        warn += [
            f"{at}.ports[].{k}: not supported, left out" for p in c["ports"] for k in p if k not in _PORT_KEYS
        ]
    probe = c.get("readinessProbe") or {}
    path = (probe.get("httpGet") or {}).get("path")
    if path:
        out["readinessProbe"] = {"httpGet": {"path": path}}
    if set(probe) - {"httpGet"} or set(probe.get("httpGet") or {}) - {"path", "port"}:
        warn.append(f"{at}.readinessProbe: only httpGet.path is used (the operator sets port and timings)")
    warn += [f"{at}.{k}: not supported, left out" for k in c if k not in _CONTAINER_KEYS]
    return out


def _template(value: str, where: str, warn: list[str]) -> bool:
    if "{{" in value:
        warn.append(
            f"{where}: {value!r} is a KServe per-InferenceService template (the operator fills none), "
            "left out"
        )
        return True
    return False


def _path(value: str, where: str, warn: list[str]) -> str:
    if KSERVE_MODEL_DIR not in value:
        return value
    warn.append(f"{where}: {KSERVE_MODEL_DIR} (KServe's model directory) became {MODEL_PATH_REF}")
    return value.replace(KSERVE_MODEL_DIR, MODEL_PATH_REF)


def convert_all(docs: Iterable[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(where, document) of every manifest read (None documents, e.g. a trailing ---, skipped)."""
    objs: list[dict[str, Any]] = []
    warnings: list[str] = []
    for where, doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise NotConvertible(f"{where}not a mapping")
        done = convert(doc, where)
        objs.append(done.obj)
        warnings += done.warnings
    if not objs:
        raise NotConvertible("no ServingRuntime or ClusterServingRuntime found")
    return objs, warnings


# ---- kubectl models runtimes list


def rows(objs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per catalog runtime: kind, namespace, name, formats, protocols, image, disabled."""
    out = []
    for o in objs:
        md, spec = o.get("metadata") or {}, o.get("spec") or {}
        containers = spec.get("containers") or [{}]
        out.append(
            {
                "kind": str(o.get("kind") or ""),
                "namespace": str(md.get("namespace") or ""),
                "name": str(md.get("name") or ""),
                "formats": [_format_text(f) for f in spec.get("supportedModelFormats") or []],
                "protocols": [str(p) for p in spec.get("protocolVersions") or []],
                "image": str(containers[0].get("image") or ""),
                "disabled": bool(spec.get("disabled")),
            }
        )
    return sorted(out, key=lambda r: (r["kind"] != MODELRUNTIME.kind, r["namespace"], r["name"]))


def _format_text(f: Mapping[str, Any]) -> str:
    """sklearn:1 (auto, priority 2)."""
    text = f"{f.get('name')}:{f['version']}" if f.get("version") else str(f.get("name"))
    extra = [
        x
        for x in (
            "auto" if f.get("autoSelect") else "",
            f"priority {f['priority']}" if f.get("priority") else "",
        )
        if x
    ]
    return f"{text} ({', '.join(extra)})" if extra else text
