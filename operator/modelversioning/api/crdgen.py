"""Generate CustomResourceDefinitions from the pydantic models.

pydantic's JSON Schema is turned into a Kubernetes *structural* OpenAPI v3
schema: $refs inlined, Optional collapsed, titles dropped, int|str mapped to
int-or-string, free scalars to preserve-unknown-fields, and the CEL rules
declared next to each field kept as x-kubernetes-validations.

Run: `modelversioning gen-crds`. The ModelEndpoint schema lists the registered routers (api.routers):
whoever calls this module imports modelversioning.render.routers first (the CLI command does).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelversioning.api import model, modelendpoint, modelversion, platform, runtime
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.modelversion_status import ModelVersionStatus
from modelversioning.api.wire import CATEGORY, GROUP, VERSION

_DROP = {"title", "examples"}
_SCALARS = {"string", "integer", "number", "boolean"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        merged = _resolve(target, defs)
        for k, v in node.items():  # siblings of $ref (description, default) win
            merged[k] = _resolve(v, defs)
        return merged
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            rest = {
                k: v
                for k, v in node.items()
                if k not in (key, "default") or (k == "default" and v is not None)
            }
            types = {o.get("type") for o in options}
            if len(options) == 1:
                merged = {**options[0], **{k: v for k, v in rest.items() if k != key}}
                return _structural(merged)
            if types == {"integer", "string"}:
                base = {k: v for k, v in rest.items() if k != key}
                return _structural({**base, "x-kubernetes-int-or-string": True})
            if types <= _SCALARS:
                base = {k: v for k, v in rest.items() if k != key}
                return _structural({**base, "x-kubernetes-preserve-unknown-fields": True})
            raise ValueError(f"cannot express a union of {types} in a structural schema")
    for k, v in node.items():
        if k in _DROP:
            continue
        if k == "default" and v is None:
            continue
        if k == "const":
            out["enum"] = [v]
            continue
        if k == "additionalProperties" and v is False:
            continue
        if k == "properties":
            out[k] = {name: _structural(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = _structural(v)
        else:
            out[k] = _structural(v) if isinstance(v, dict | list) and k != "x-kubernetes-validations" else v
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("default") in ({}, []):
        # Kubernetes treats an empty default as "set the field"; GitOps diffs prefer absent fields.
        del out["default"]
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return dict(_structural(_resolve(raw, defs)))


def _root_schema(
    spec: type[BaseModel], status: type[BaseModel], root_rules: list[dict[str, str]], spec_description: str
) -> dict[str, Any]:
    spec_schema = openapi_schema(spec)
    spec_schema["description"] = spec_description
    status_schema = openapi_schema(status)
    status_schema["description"] = "Observed state, written by the operator."
    root: dict[str, Any] = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return root


def crd(
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    namespaced: bool = True,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelversioning-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if namespaced else "Cluster",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    mv = modelversion
    me = modelendpoint
    return {
        f"{GROUP}_{mv.PLURAL}.yaml": crd(
            mv.KIND,
            mv.PLURAL,
            mv.SINGULAR,
            mv.SHORT_NAMES,
            _root_schema(
                ModelVersionSpec,
                ModelVersionStatus,
                mv.ROOT_VALIDATIONS,
                "One pinned, immutable version of one model. Only stage and description may change.",
            ),
            mv.PRINTER_COLUMNS,
        ),
        f"{GROUP}_{me.PLURAL}.yaml": crd(
            me.KIND,
            me.PLURAL,
            me.SINGULAR,
            me.SHORT_NAMES,
            _root_schema(
                me.ModelEndpointSpec,
                me.ModelEndpointStatus,
                me.ROOT_VALIDATIONS,
                "Serves pinned ModelVersions as weighted variants.",
            ),
            me.PRINTER_COLUMNS,
        ),
        f"{GROUP}_{model.PLURAL}.yaml": crd(
            model.KIND,
            model.PLURAL,
            model.SINGULAR,
            model.SHORT_NAMES,
            _root_schema(
                model.ModelSpec,
                model.ModelStatus,
                model.ROOT_VALIDATIONS,
                "One model's policy (stages, gates, retention); its status remembers every version ever "
                "registered.",
            ),
            model.PRINTER_COLUMNS,
        ),
        f"{GROUP}_{model.APPROVAL_PLURAL}.yaml": crd(
            model.APPROVAL_KIND,
            model.APPROVAL_PLURAL,
            model.APPROVAL_SINGULAR,
            model.APPROVAL_SHORT_NAMES,
            _root_schema(
                model.ModelApprovalSpec,
                model.ModelApprovalStatus,
                [],
                "One user's approval of one ModelVersion (by digest) for one stage; immutable.",
            ),
            model.APPROVAL_PRINTER_COLUMNS,
        ),
        f"{GROUP}_{platform.PLURAL}.yaml": crd(
            platform.KIND,
            platform.PLURAL,
            platform.SINGULAR,
            platform.SHORT_NAMES,
            _root_schema(
                platform.ModelPlatformPolicySpec,
                platform.ModelPlatformPolicyStatus,
                platform.ROOT_VALIDATIONS,
                "The platform's floors for the namespaces it selects; a tenant's spec can be stricter, never "
                "looser. Cluster-scoped: only platform admins write it.",
            ),
            platform.PRINTER_COLUMNS,
            namespaced=False,
        ),
        **_runtime_crds(),
    }


def _runtime_crds() -> dict[str, dict[str, Any]]:
    """The runtime catalog: one spec (KServe's ServingRuntime fields we use), namespaced and cluster-wide."""
    rt = runtime
    schema = _root_schema(
        rt.ModelRuntimeSpec,
        rt.ModelRuntimeStatus,
        [],
        "A model server for the model formats it lists (KServe ServingRuntime-compatible fields).",
    )
    cluster = copy.deepcopy(schema)
    cluster["properties"]["spec"]["description"] = (
        "A model server for every namespace's versions (KServe ClusterServingRuntime-compatible fields)."
    )
    return {
        f"{GROUP}_{rt.PLURAL}.yaml": crd(
            rt.KIND, rt.PLURAL, rt.SINGULAR, rt.SHORT_NAMES, schema, rt.PRINTER_COLUMNS
        ),
        f"{GROUP}_{rt.CLUSTER_PLURAL}.yaml": crd(
            rt.CLUSTER_KIND,
            rt.CLUSTER_PLURAL,
            rt.CLUSTER_SINGULAR,
            rt.CLUSTER_SHORT_NAMES,
            cluster,
            rt.PRINTER_COLUMNS,
            namespaced=False,
        ),
    }


HEADER = "# Generated by `modelversioning gen-crds` from operator/modelversioning/api. DO NOT EDIT.\n"


def render_files() -> dict[str, str]:
    return {
        name: HEADER + yaml.safe_dump(obj, sort_keys=False, width=120) for name, obj in all_crds().items()
    }


def write(dirs: list[Path]) -> list[Path]:
    written = []
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for name, text in render_files().items():
            p = d / name
            p.write_text(text)
            written.append(p)
    return written


def default_dirs(repo_root: Path) -> list[Path]:
    """crds/ (kubectl apply -f crds/) and the chart's files/crds/.

    The chart renders its copy from templates (crds.enabled, kept on uninstall with
    crds.keep), not from Helm's install-only crds/ directory, so that upgrades update them.
    """
    dirs = [repo_root / "crds"]
    chart = repo_root / "charts" / "modelversioning-operator"
    if chart.is_dir():
        dirs.append(chart / "files" / "crds")
    return dirs
