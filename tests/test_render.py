"""Renderers: spec -> desired child manifests. Golden files plus direct assertions.

Golden files live in tests/golden/; regenerate them after an intended change with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

and review the diff. Routes are also checked against the real third-party CRD schemas
(structure, types, patterns, limits, and the Gateway API CEL rules our output could hit)
when those CRDs are available (THIRDPARTY_CRDS, default /work/shared/thirdparty-crds).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, RoutePolicy, Serving
from modelversioning.render import (
    EndpointRef,
    RenderError,
    RouteInput,
    Router,
    UnknownRouter,
    VariantTarget,
    child_name,
    get_router,
    naming,
    render_deployment,
    router_names,
)
from modelversioning.render.deployment import policy_json
from modelversioning.render.service import render_service as render_slot_service

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN_HEADER = (
    "# Golden file for tests/test_render.py; regenerate with UPDATE_GOLDEN=1 and review the diff.\n"
)
CRD_DIR = Path(
    os.environ.get("THIRDPARTY_CRDS", Path(__file__).resolve().parents[2] / "shared" / "thirdparty-crds")
)

MODEL = "fraud-detector"
NAMESPACE = "ml-prod"
ENDPOINT = EndpointRef(name="fraud", namespace=NAMESPACE, uid="0b7c5e0e-4a43-4c1e-9d51-1f1b8f6f2a10")
ROUTERS = ["istio", "gatewayAPI", "none"]
SERVING = Serving()

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --------------------------------------------------------------------------- builders


def target_for(endpoint: EndpointRef, variant: str, version: ModelVersionSpec, weight: int) -> VariantTarget:
    """A destination as the handler builds it: the Service of the slot serving `version`."""
    return VariantTarget(
        variant=variant,
        service=naming.slot_name(endpoint.name, variant, version.artifact.sha256),
        model=version.model,
        version=version.version,
        sha256=version.artifact.sha256,
        weight=weight,
    )


def render_service(
    endpoint: EndpointRef, spec: ModelEndpointSpec, variant: Variant, version: ModelVersionSpec
) -> dict[str, Any]:
    return render_slot_service(render_deployment(endpoint, spec, variant, version, SERVING), spec.port)


def sha(version: str) -> str:
    return hashlib.sha256(f"{MODEL}:{version}".encode()).hexdigest()


def model_version(
    version: str,
    *,
    size_bytes: int | None = None,
    secret: str | None = None,
    health_path: str | None = "/healthz",
    resources: dict[str, Any] | None = None,
    env: list[dict[str, str]] | None = None,
    command: list[str] | None = None,
    args: list[str] | None = None,
) -> ModelVersionSpec:
    artifact: dict[str, Any] = {"uri": f"s3://models/{MODEL}/{version}/", "sha256": sha(version)}
    if size_bytes is not None:
        artifact["sizeBytes"] = size_bytes
    if secret is not None:
        artifact["secretRef"] = {"name": secret}
    runtime: dict[str, Any] = {"image": "ghcr.io/acme/fraud-server:1.4.2", "port": 8080}
    if health_path is not None:
        runtime["healthPath"] = health_path
    if resources is not None:
        runtime["resources"] = resources
    if env is not None:
        runtime["env"] = env
    if command is not None:
        runtime["command"] = command
    if args is not None:
        runtime["args"] = args
    return ModelVersionSpec.model_validate(
        {
            "model": MODEL,
            "version": version,
            "artifact": artifact,
            "lineage": {
                "codeCommit": "a1b2c3d4e5f6",
                "dataset": {"name": "transactions", "version": "2024-05"},
            },
            "metrics": {"auc": 0.93},
            "runtime": runtime,
        }
    )


# The platform lets endpoints bind to the shared ingress gateway (settings routing.allowedGateways).
ROUTE_POLICY = RoutePolicy(allowed_gateways=["istio-ingress/public"])


def routing(router: str) -> dict[str, Any]:
    if router == "istio":
        return {"router": "istio", "hosts": ["fraud.example.com"], "gateways": ["istio-ingress/public"]}
    if router == "gatewayAPI":
        return {
            "router": "gatewayAPI",
            "hosts": ["fraud.example.com"],
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        }
    return {"router": router}


def endpoint_spec(
    router: str,
    variants: list[tuple[str, str, int]],
    mirror: tuple[str, int] | None = None,
    **extra: Any,
) -> ModelEndpointSpec:
    data: dict[str, Any] = {
        "model": MODEL,
        "variants": [{"name": n, "version": v, "weight": w} for n, v, w in variants],
        "routing": routing(router),
        **extra,
    }
    if mirror is not None:
        data["mirror"] = {"variant": mirror[0], "percent": mirror[1]}
    return ModelEndpointSpec.model_validate(data)


@dataclass(frozen=True)
class Scenario:
    spec_variants: list[tuple[str, str, int]]  # as declared in the spec
    destinations: list[tuple[str, str, int]]  # effective weights decided by the handler
    mirror: tuple[str, str, int] | None = None  # variant, version, percent


SCENARIOS: dict[str, Scenario] = {
    "canary-90-10": Scenario(
        [("stable", "2.3.8", 90), ("canary", "2.4.0", 10)],
        [("stable", "2.3.8", 90), ("canary", "2.4.0", 10)],
    ),
    "ab-50-50": Scenario(
        [("a", "2.3.8", 50), ("b", "2.4.0", 50)],
        [("a", "2.3.8", 50), ("b", "2.4.0", 50)],
    ),
    "shadow-25": Scenario(
        [("stable", "2.3.8", 100), ("shadow", "2.4.0-rc.1", 0)],
        [("stable", "2.3.8", 100)],
        mirror=("shadow", "2.4.0-rc.1", 25),
    ),
    "blue-green-100-0": Scenario(
        [("blue", "2.3.8", 100), ("green", "2.4.0", 0)],
        [("blue", "2.3.8", 100), ("green", "2.4.0", 0)],
    ),
    "single-variant": Scenario([("main", "2.3.8", 100)], [("main", "2.3.8", 100)]),
    # The spec switched everything to canary, which is not eligible yet: the warm
    # variant keeps all the traffic; canary stays in the route at weight 0.
    "warm-holds-all": Scenario(
        [("stable", "2.3.8", 0), ("canary", "2.4.0", 100)],
        [("stable", "2.3.8", 100), ("canary", "2.4.0", 0)],
    ),
    # blue was removed from the spec but still carries the traffic until green is ready.
    "removed-still-routed": Scenario(
        [("green", "2.4.0", 100)],
        [("blue", "2.3.8", 100), ("green", "2.4.0", 0)],
    ),
}


def route_input(router: str, scenario: Scenario, endpoint: EndpointRef = ENDPOINT) -> RouteInput:
    mirror: VariantTarget | None = None
    mirror_pct = 0
    if scenario.mirror is not None:
        mirror_name, mirror_version, mirror_pct = scenario.mirror
        mirror = target_for(endpoint, mirror_name, model_version(mirror_version), 0)
    spec = endpoint_spec(router, scenario.spec_variants, (mirror.variant, mirror_pct) if mirror else None)
    return RouteInput(
        endpoint=endpoint,
        spec=spec,
        destinations=[target_for(endpoint, n, model_version(v), w) for n, v, w in scenario.destinations],
        mirror=mirror,
        mirror_percent=mirror_pct,
        policy=ROUTE_POLICY,
    )


def full_deployment_inputs() -> tuple[ModelEndpointSpec, Variant, ModelVersionSpec]:
    """Everything set: secret, known size, HTTP health, variant resource override, env, command."""
    spec = ModelEndpointSpec.model_validate(
        {
            "model": MODEL,
            "port": 8000,
            "variants": [
                {
                    "name": "canary",
                    "version": "2.4.0",
                    "weight": 100,
                    "replicas": 3,
                    "resources": {
                        "requests": {"cpu": 2, "memory": "4Gi"},
                        "limits": {"memory": "4Gi", "nvidia.com/gpu": 1},
                    },
                }
            ],
        }
    )
    version = model_version(
        "2.4.0",
        size_bytes=1_000_000_000,
        secret="fraud-s3-credentials",
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        env=[{"name": "LOG_LEVEL", "value": "info"}, {"name": "MODEL_PATH", "value": "/elsewhere"}],
        command=["python", "-m", "fraud_server"],
        args=["--model-dir", "$(MODEL_PATH)"],
    )
    return spec, spec.variants[0], version


def minimal_deployment_inputs() -> tuple[ModelEndpointSpec, Variant, ModelVersionSpec]:
    """Nothing optional: no secret, unknown size, TCP readiness, runtime resources unset."""
    spec = endpoint_spec("none", [("stable", "2.3.8", 100)])
    return spec, spec.variants[0], model_version("2.3.8", health_path=None)


# --------------------------------------------------------------------------- golden files


def assert_golden(name: str, obj: Any) -> None:
    text = GOLDEN_HEADER + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)
    path = GOLDEN_DIR / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with UPDATE_GOLDEN=1", pytrace=False)
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"tests/golden/{name}.yaml (expected)",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"rendered output differs from tests/golden/{name}.yaml "
            f"(if intended: UPDATE_GOLDEN=1 and review):\n{diff}",
            pytrace=False,
        )


# --------------------------------------------------------------------------- schema checks


@cache
def crd_schema(filename: str, kind: str, version: str) -> dict[str, Any] | None:
    path = CRD_DIR / filename
    if not path.exists():
        return None
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["spec"]["names"]["kind"] == kind:
            for v in doc["spec"]["versions"]:
                if v["name"] == version:
                    return dict(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{kind} {version} not in {path}")


def schema_errors(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Structural OpenAPI v3 check as the API server does it (not CEL): unknown fields,
    types, required, enum, patterns, lengths, item counts, numeric ranges."""
    errors: list[str] = []
    typ = schema.get("type")
    if "enum" in schema and obj not in schema["enum"]:
        errors.append(f"{path}: {obj!r} not in {schema['enum']}")
    if typ == "object":
        if not isinstance(obj, dict):
            return [f"{path}: expected object, got {type(obj).__name__}"]
        props = schema.get("properties")
        for req in schema.get("required", []):
            if req not in obj:
                errors.append(f"{path}: missing required field {req}")
        for key, value in obj.items():
            if not path and key in ("apiVersion", "kind", "metadata"):
                continue  # implicit in every CRD (metadata is validated by the API server itself)
            if props is not None and key in props:
                errors += schema_errors(value, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(value, schema["additionalProperties"], f"{path}.{key}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}: unknown field {key!r}")
    elif typ == "array":
        if not isinstance(obj, list):
            return [f"{path}: expected array, got {type(obj).__name__}"]
        if len(obj) > schema.get("maxItems", len(obj)) or len(obj) < schema.get("minItems", 0):
            errors.append(
                f"{path}: {len(obj)} items outside [{schema.get('minItems', 0)}, {schema.get('maxItems')}]"
            )
        for i, item in enumerate(obj):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{i}]")
    elif typ == "string":
        if not isinstance(obj, str):
            return [f"{path}: expected string, got {obj!r}"]
        if not schema.get("minLength", 0) <= len(obj) <= schema.get("maxLength", len(obj)):
            errors.append(f"{path}: length {len(obj)} out of range")
        if "pattern" in schema and not re.search(schema["pattern"], obj):
            errors.append(f"{path}: {obj!r} does not match {schema['pattern']}")
    elif typ in ("integer", "number"):
        ok = isinstance(obj, int) if typ == "integer" else isinstance(obj, int | float)
        if not ok or isinstance(obj, bool):
            return [f"{path}: expected {typ}, got {obj!r}"]
        if "minimum" in schema and obj < schema["minimum"]:
            errors.append(f"{path}: {obj} < {schema['minimum']}")
        if "maximum" in schema and obj > schema["maximum"]:
            errors.append(f"{path}: {obj} > {schema['maximum']}")
    elif typ == "boolean" and not isinstance(obj, bool):
        errors.append(f"{path}: expected boolean, got {obj!r}")
    return errors


ROUTE_CRDS = {
    "istio": ("istio-1.30.3-networking.yaml", "VirtualService", "v1"),
    "gatewayAPI": ("gateway-api-v1.6.1-httproutes.yaml", "HTTPRoute", "v1"),
}


def gateway_cel_errors(route: dict[str, Any]) -> list[str]:
    """The x-kubernetes-validations of the v1.6.1 HTTPRoute CRD that our output could violate."""
    errors: list[str] = []
    unrepeatable = (
        "CORS",
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    )
    field_of = {
        "RequestHeaderModifier": "requestHeaderModifier",
        "ResponseHeaderModifier": "responseHeaderModifier",
        "RequestMirror": "requestMirror",
        "RequestRedirect": "requestRedirect",
        "URLRewrite": "urlRewrite",
        "ExtensionRef": "extensionRef",
        "CORS": "cors",
    }

    def check_filters(filters: list[dict[str, Any]], where: str) -> None:
        types = [f["type"] for f in filters]
        for t in unrepeatable:
            if types.count(t) > 1:
                errors.append(f"{where}: {t} filter cannot be repeated")
        for f in filters:
            present = {k for k in field_of.values() if k in f}
            if present != {field_of[f["type"]]}:
                errors.append(f"{where}: filter of type {f['type']} carries {sorted(present)}")
            mirror = f.get("requestMirror")
            if mirror is not None:
                if "percent" in mirror and "fraction" in mirror:
                    errors.append(f"{where}: only one of percent or fraction")
                if "port" not in mirror["backendRef"]:
                    errors.append(f"{where}: mirror backendRef must have a port for a Service")
            for part in ("set", "add"):
                names = [h["name"].lower() for h in (f.get("responseHeaderModifier") or {}).get(part, [])]
                if len(names) != len(set(names)):
                    errors.append(f"{where}: duplicate header names in {part}")

    spec = route["spec"]
    refs = spec.get("parentRefs", [])
    keys = [
        (p.get("group"), p.get("kind"), p["name"], p.get("namespace"), p.get("sectionName")) for p in refs
    ]
    if len(keys) != len(set(keys)):
        errors.append("parentRefs: sectionName must be unique per parent")
    for i, rule in enumerate(spec["rules"]):
        check_filters(rule.get("filters", []), f"rules[{i}].filters")
        for j, ref in enumerate(rule.get("backendRefs", [])):
            if "port" not in ref:
                errors.append(f"rules[{i}].backendRefs[{j}]: must have port for Service reference")
            check_filters(ref.get("filters", []), f"rules[{i}].backendRefs[{j}].filters")
    if sum(len(r.get("matches", [])) for r in spec["rules"]) > 128:
        errors.append("more than 128 matches")
    return errors


def k8s_type_errors(obj: Any, type_name: str, path: str = "") -> list[str]:
    """Every field exists in the Kubernetes API (per the official client's models) with the right type."""
    import kubernetes.client.models as models

    if type_name.lower().startswith("list["):
        if not isinstance(obj, list):
            return [f"{path}: expected list"]
        return [e for i, x in enumerate(obj) for e in k8s_type_errors(x, type_name[5:-1], f"{path}[{i}]")]
    if type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        if not isinstance(obj, dict):
            return [f"{path}: expected map"]
        return [e for k, v in obj.items() for e in k8s_type_errors(v, inner, f"{path}.{k}")]
    scalars: dict[str, Any] = {"str": str, "int": int, "bool": bool, "float": float, "object": object}
    if type_name in scalars:
        if type_name == "int" and isinstance(obj, bool):
            return [f"{path}: expected int, got bool"]
        return [] if isinstance(obj, scalars[type_name]) else [f"{path}: expected {type_name}, got {obj!r}"]
    cls = getattr(models, type_name)
    by_json = {v: k for k, v in cls.attribute_map.items()}
    if not isinstance(obj, dict):
        return [f"{path}: expected {type_name} object"]
    errors: list[str] = []
    for key, value in obj.items():
        if key not in by_json:
            errors.append(f"{path}: {type_name} has no field {key!r}")
        else:
            errors += k8s_type_errors(value, cls.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def test_schema_checkers_catch_mistakes() -> None:
    # the checkers above must be able to fail, or the tests using them prove nothing
    assert k8s_type_errors({"spec": {"replicas": "3", "bogus": 1}}, "V1Deployment") == [
        ".spec.replicas: expected int, got '3'",
        ".spec: V1DeploymentSpec has no field 'bogus'",
    ]
    schema = crd_schema(*ROUTE_CRDS["gatewayAPI"])
    if schema is None:
        pytest.fail(f"third-party CRDs not found in {CRD_DIR} (set THIRDPARTY_CRDS)")
    route = {
        "spec": {"hostnames": ["10.0.0.1:80"], "rules": [{"backendRefs": [{"name": "x", "weight": "1"}]}]}
    }
    errors = schema_errors(route, schema)
    assert any("hostnames[0]" in e for e in errors) and any("weight" in e for e in errors)
    filters = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": []}}] * 2
    route = {"spec": {"rules": [{"backendRefs": [{"name": "x", "filters": filters}]}]}}
    assert gateway_cel_errors(route) == [
        "rules[0].backendRefs[0]: must have port for Service reference",
        "rules[0].backendRefs[0].filters: ResponseHeaderModifier filter cannot be repeated",
    ]


# --------------------------------------------------------------------------- routes


def response_header_sets(router: str, route: dict[str, Any]) -> list[dict[str, str]]:
    if router == "istio":
        return [d["headers"]["response"]["set"] for d in route["spec"]["http"][0]["route"]]
    out = []
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        (f,) = [f for f in ref["filters"] if f["type"] == "ResponseHeaderModifier"]
        out.append({h["name"]: h["value"] for h in f["responseHeaderModifier"]["set"]})
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("router_name", ROUTERS)
def test_route_golden(router_name: str, scenario: str) -> None:
    inp = route_input(router_name, SCENARIOS[scenario])
    router = get_router(router_name)
    route = router.render(inp)
    assert (route is not None) is router.writes_route  # the capability says whether it writes a route
    if route is None:
        return
    assert_golden(f"route-{router_name}-{scenario}", route)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("router_name", ROUTERS)
def test_weights_read_back_equal_input(router_name: str, scenario: str) -> None:
    router = get_router(router_name)
    inp = route_input(router_name, SCENARIOS[scenario])
    route = router.render(inp)
    if route is None:
        assert not router.writes_route
        assert router.weights({}) == {}
        return
    assert router.weights(route) == {d.variant: d.weight for d in inp.destinations}
    # read back from what the API server would return, too (round trip through YAML)
    assert router.weights(yaml.safe_load(yaml.safe_dump(route))) == {
        d.variant: d.weight for d in inp.destinations
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("router_name", [n for n in ROUTERS if get_router(n).response_headers])
def test_every_destination_sets_the_four_headers(router_name: str, scenario: str) -> None:
    inp = route_input(router_name, SCENARIOS[scenario])
    route = get_router(router_name).render(inp)
    assert route is not None
    sets = response_header_sets(router_name, route)
    assert len(sets) == len(inp.destinations)
    for headers, dest in zip(sets, inp.destinations, strict=True):
        assert headers == {
            "x-model-name": MODEL,
            "x-model-version": dest.version,
            "x-model-sha256": dest.sha256[:12],
            "x-endpoint-variant": dest.variant,
        }
        assert len(headers["x-model-sha256"]) == 12


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_route_matches_third_party_crd(router_name: str, scenario: str) -> None:
    schema = crd_schema(*ROUTE_CRDS[router_name])
    if schema is None:
        pytest.fail(f"third-party CRDs not found in {CRD_DIR} (set THIRDPARTY_CRDS)")
    route = get_router(router_name).render(route_input(router_name, SCENARIOS[scenario]))
    assert route is not None
    assert schema_errors(route, schema) == []
    if router_name == "gatewayAPI":
        assert gateway_cel_errors(route) == []


@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_route_metadata_labels_and_owner(router_name: str) -> None:
    router = get_router(router_name)
    route = router.render(route_input(router_name, SCENARIOS["canary-90-10"]))
    assert route is not None
    assert route["apiVersion"] == router.api_version == f"{router.group}/{router.version}"
    assert route["kind"] == router.kind
    meta = route["metadata"]
    assert meta["name"] == "fraud" and meta["namespace"] == NAMESPACE
    assert meta["labels"] == naming.endpoint_labels("fraud", MODEL)
    assert meta["labels"]["modelversioning.io/endpoint"] == "fraud"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelversioning-operator"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelEndpoint",
            "name": "fraud",
            "uid": ENDPOINT.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_istio_shape() -> None:
    vs = get_router("istio").render(route_input("istio", SCENARIOS["shadow-25"]))
    assert vs is not None
    assert vs["spec"]["hosts"] == ["fraud.example.com"]
    assert vs["spec"]["gateways"] == ["istio-ingress/public"]
    (http,) = vs["spec"]["http"]
    inp = route_input("istio", SCENARIOS["shadow-25"])
    stable, shadow = inp.destinations[0].service, inp.mirror.service  # type: ignore[union-attr]
    assert stable.startswith("fraud-stable-") and shadow.startswith("fraud-shadow-")
    assert [d["destination"] for d in http["route"]] == [
        {"host": f"{stable}.ml-prod.svc.cluster.local", "port": {"number": 80}}
    ]
    assert http["mirror"] == {"host": f"{shadow}.ml-prod.svc.cluster.local", "port": {"number": 80}}
    assert get_router("istio").services(vs) == {stable: 100, shadow: 0}
    assert http["mirrorPercentage"] == {"value": 25.0}
    assert isinstance(http["mirrorPercentage"]["value"], float)
    assert "mirrors" not in http  # Istio refuses mirror together with mirrors


def test_istio_omits_empty_gateways() -> None:
    inp = route_input("istio", SCENARIOS["single-variant"])
    spec = inp.spec.model_copy(update={"routing": inp.spec.routing.model_copy(update={"gateways": []})})
    vs = get_router("istio").render(RouteInput(ENDPOINT, spec, inp.destinations))
    assert vs is not None and "gateways" not in vs["spec"]


def test_gateway_api_shape() -> None:
    route = get_router("gatewayAPI").render(route_input("gatewayAPI", SCENARIOS["shadow-25"]))
    assert route is not None
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert spec["hostnames"] == ["fraud.example.com"]
    (rule,) = spec["rules"]
    inp = route_input("gatewayAPI", SCENARIOS["shadow-25"])
    stable, shadow = inp.destinations[0].service, inp.mirror.service  # type: ignore[union-attr]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": shadow, "port": 80}, "percent": 25},
        }
    ]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [(stable, 80, 100)]
    assert get_router("gatewayAPI").services(route) == {stable: 100, shadow: 0}


def test_gateway_api_omits_unset_parent_ref_fields_and_empty_hostnames() -> None:
    spec = ModelEndpointSpec.model_validate(
        {
            "model": MODEL,
            "variants": [{"name": "main", "version": "2.3.8", "weight": 100}],
            "routing": {"router": "gatewayAPI", "parentRefs": [{"name": "mesh-gw", "port": 8443}]},
        }
    )
    inp = RouteInput(ENDPOINT, spec, [target_for(ENDPOINT, "main", model_version("2.3.8"), 100)])
    route = get_router("gatewayAPI").render(inp)
    assert route is not None
    assert route["spec"]["parentRefs"] == [{"name": "mesh-gw", "port": 8443}]
    assert "hostnames" not in route["spec"]


def test_gateway_api_refuses_hostnames_the_crd_would_reject() -> None:
    inp = route_input("gatewayAPI", SCENARIOS["single-variant"])
    routing_ = inp.spec.routing.model_copy(update={"hosts": ["10.0.0.1:8080"]})
    spec = inp.spec.model_copy(update={"routing": routing_})
    with pytest.raises(RenderError, match="HTTPRoute hostnames"):
        get_router("gatewayAPI").render(RouteInput(ENDPOINT, spec, inp.destinations))


def test_mirror_is_not_a_weighted_destination() -> None:
    for name in ("istio", "gatewayAPI"):
        router = get_router(name)
        route = router.render(route_input(name, SCENARIOS["shadow-25"]))
        assert route is not None
        assert router.weights(route) == {"stable": 100}


@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_weight_zero_destinations_are_kept(router_name: str) -> None:
    router = get_router(router_name)
    route = router.render(route_input(router_name, SCENARIOS["blue-green-100-0"]))
    assert route is not None
    assert router.weights(route) == {"blue": 100, "green": 0}


@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_removed_variant_keeps_its_own_identity(router_name: str) -> None:
    route = get_router(router_name).render(route_input(router_name, SCENARIOS["removed-still-routed"]))
    assert route is not None
    blue, green = response_header_sets(router_name, route)
    assert (blue["x-endpoint-variant"], blue["x-model-version"]) == ("blue", "2.3.8")
    assert blue["x-model-sha256"] == sha("2.3.8")[:12]
    assert (green["x-endpoint-variant"], green["x-model-version"]) == ("green", "2.4.0")


def test_istio_weights_fallbacks() -> None:
    router = get_router("istio")
    lone: dict[str, Any] = {
        "spec": {"http": [{"route": [{"destination": {"host": "fraud-main.ml-prod.svc.cluster.local"}}]}]}
    }
    assert router.weights(lone) == {"fraud-main": 100}  # no header: keyed by Service; lone: 100
    edited = copy.deepcopy(lone)
    edited["spec"]["http"][0]["route"][0]["headers"] = {"response": {"set": {"X-Endpoint-Variant": "main"}}}
    assert router.weights(edited) == {"main": 100}
    assert router.weights({"spec": {}}) == {}


def test_gateway_api_weights_fallbacks() -> None:
    router = get_router("gatewayAPI")
    route = {
        "spec": {
            "rules": [{"backendRefs": [{"name": "fraud-a", "port": 80}, {"name": "fraud-b", "port": 80}]}]
        }
    }
    assert router.weights(route) == {"fraud-a": 1, "fraud-b": 1}  # CRD default weight 1
    assert router.weights({"spec": {"rules": []}}) == {}


@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_invalid_route_inputs_are_refused(router_name: str) -> None:
    router = get_router(router_name)
    good = route_input(router_name, SCENARIOS["canary-90-10"])
    stable, canary = good.destinations
    bad_weights = RouteInput(
        ENDPOINT, good.spec, [stable, VariantTarget(**{**canary.__dict__, "weight": 20})]
    )
    with pytest.raises(RenderError, match="add up to 110"):
        router.render(bad_weights)
    with pytest.raises(RenderError, match="no destinations"):
        router.render(RouteInput(ENDPOINT, good.spec, []))
    with pytest.raises(RenderError, match="duplicate"):
        router.render(
            RouteInput(ENDPOINT, good.spec, [VariantTarget(**{**stable.__dict__, "weight": 50})] * 2)
        )
    with pytest.raises(RenderError, match="mirror percent"):
        router.render(RouteInput(ENDPOINT, good.spec, good.destinations, mirror=canary, mirror_percent=101))


def test_router_factory() -> None:
    assert router_names() == ["istio", "gatewayAPI", "none"]
    for name in router_names():
        router = get_router(name)
        assert isinstance(router, Router)
        assert router.name == name
        assert router.describe().startswith(f"{name}: ")
    assert (get_router("istio").kind, get_router("istio").plural) == ("VirtualService", "virtualservices")
    assert (get_router("gatewayAPI").kind, get_router("gatewayAPI").plural) == ("HTTPRoute", "httproutes")
    assert "not split" in get_router("none").describe()
    routers = {n: get_router(n) for n in router_names()}
    caps = {n: (r.writes_route, r.can_mirror, r.response_headers) for n, r in routers.items()}
    assert caps == {
        "istio": (True, True, True),
        "gatewayAPI": (True, True, True),
        "none": (False, False, False),
    }
    with pytest.raises(UnknownRouter, match="unknown router 'linkerd'.*istio") as exc:
        get_router("linkerd")
    assert isinstance(exc.value, ValueError)
    assert exc.value.known == ["gatewayAPI", "istio", "none"]


# --------------------------------------------------------------------------- Deployment and Service


def test_deployment_golden_full() -> None:
    spec, variant, version = full_deployment_inputs()
    assert_golden("deployment-full", render_deployment(ENDPOINT, spec, variant, version, SERVING))


def test_deployment_golden_minimal() -> None:
    spec, variant, version = minimal_deployment_inputs()
    assert_golden("deployment-minimal", render_deployment(ENDPOINT, spec, variant, version, SERVING))


def test_service_golden() -> None:
    spec, variant, version = full_deployment_inputs()
    assert_golden("service", render_service(ENDPOINT, spec, variant, version))


@pytest.mark.parametrize("inputs", [full_deployment_inputs, minimal_deployment_inputs])
def test_children_are_valid_kubernetes_objects(inputs: Any) -> None:
    spec, variant, version = inputs()
    assert k8s_type_errors(render_deployment(ENDPOINT, spec, variant, version, SERVING), "V1Deployment") == []
    assert k8s_type_errors(render_service(ENDPOINT, spec, variant, version), "V1Service") == []


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


@pytest.mark.parametrize("inputs", [full_deployment_inputs, minimal_deployment_inputs])
def test_hardened_security_context(inputs: Any) -> None:
    spec, variant, version = inputs()
    pod = pod_spec(render_deployment(ENDPOINT, spec, variant, version, SERVING))
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = pod["initContainers"] + pod["containers"]
    assert [c["name"] for c in containers] == ["verify-artifact", "model-server"]
    tmp_volumes = set()
    for c in containers:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        tmp_volumes.add(tmp["name"])
    assert len(tmp_volumes) == 2  # one /tmp emptyDir per container
    emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert tmp_volumes <= emptydirs


def test_model_volume_written_by_init_read_only_in_server() -> None:
    spec, variant, version = full_deployment_inputs()
    pod = pod_spec(render_deployment(ENDPOINT, spec, variant, version, SERVING))
    (init,), (server,) = pod["initContainers"], pod["containers"]
    (init_mount,) = [m for m in init["volumeMounts"] if m["name"] == "model"]
    (server_mount,) = [m for m in server["volumeMounts"] if m["name"] == "model"]
    assert init_mount == {"name": "model", "mountPath": "/models"}  # read-write
    assert server_mount == {"name": "model", "mountPath": "/models", "readOnly": True}
    (model_volume,) = [v for v in pod["volumes"] if v["name"] == "model"]
    assert model_volume == {"name": "model", "emptyDir": {"sizeLimit": "1232M"}}  # 1e9 bytes + 20 % + 32 MB


@pytest.mark.parametrize(
    ("size_bytes", "limit"),
    [
        (None, None),
        (0, None),
        (1, "32000002"),  # a tiny file still takes disk blocks: never a limit of a few bytes
        (1000, "32001200"),
        (123_456_789, "180148147"),
        (5 * 10**12, "6000032M"),
    ],
)
def test_model_volume_size_limit(size_bytes: int | None, limit: str | None) -> None:
    from modelversioning.render.deployment import model_volume_size_limit

    assert model_volume_size_limit(size_bytes) == limit


def test_init_container_verifies_the_pinned_digest() -> None:
    spec, variant, version = full_deployment_inputs()
    serving = Serving(
        init_image="registry.local/mvo:9.9.9", init_image_pull_policy="Always", model_mount_path="/m"
    )
    pod = pod_spec(render_deployment(ENDPOINT, spec, variant, version, serving))
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.local/mvo:9.9.9" and init["imagePullPolicy"] == "Always"
    assert init["args"] == [
        "verify-artifact",
        "s3://models/fraud-detector/2.4.0/",
        "--sha256",
        sha("2.4.0"),
        "--dest",
        "/m",
        "--output",
        "json",
        "--env-credentials",
        "secret",  # the Secret's data, bound to its hosts; no Secret: anonymous, never the node's
        "--policy-json",
        policy_json(ArtifactPolicy()),  # the operator's policy (here the default), enforced in the pod
        *(["--size-bytes", str(version.artifact.size_bytes)] if version.artifact.size_bytes else []),
    ]
    strict = ArtifactPolicy(allowed_hosts=["models.example.com"], max_files=7)
    dep = render_deployment(ENDPOINT, spec, variant, version, serving, policy=strict)
    args = pod_spec(dep)["initContainers"][0]["args"]
    assert ArtifactPolicy.model_validate_json(args[args.index("--policy-json") + 1]) == strict
    assert init["envFrom"] == [{"secretRef": {"name": "fraud-s3-credentials"}}]
    server = pod["containers"][0]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["MODEL_PATH"] == "/m" and env["MODEL_SHA256"] == sha("2.4.0")
    assert env["MODEL_NAME"] == MODEL and env["MODEL_VERSION"] == "2.4.0"
    assert [e["name"] for e in server["env"]].count("MODEL_PATH") == 1  # runtime.env cannot override
    assert env["LOG_LEVEL"] == "info"
    assert env["MODEL_PORT"] == "8080" and env["MODEL_VARIANT"] == variant.name  # the server listens there


def test_minimal_deployment_defaults() -> None:
    spec, variant, version = minimal_deployment_inputs()
    pod = pod_spec(render_deployment(ENDPOINT, spec, variant, version, SERVING))
    init, server = pod["initContainers"][0], pod["containers"][0]
    assert "envFrom" not in init
    assert server["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "resources" not in server and "command" not in server and "args" not in server
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]


def test_resources_variant_overrides_runtime() -> None:
    spec, variant, version = full_deployment_inputs()
    server = pod_spec(render_deployment(ENDPOINT, spec, variant, version, SERVING))["containers"][0]
    assert server["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    no_override = variant.model_copy(update={"resources": None})
    server = pod_spec(render_deployment(ENDPOINT, spec, no_override, version, SERVING))["containers"][0]
    assert server["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert server["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_slot_selector_and_labels() -> None:
    spec, variant, version = full_deployment_inputs()
    deployment = render_deployment(ENDPOINT, spec, variant, version, SERVING)
    service = render_service(ENDPOINT, spec, variant, version)
    slot = deployment["metadata"]["name"]
    selector = {"modelversioning.io/slot": slot}
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    assert service["spec"]["selector"] == selector
    assert service["metadata"]["name"] == slot
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert template_labels == deployment["metadata"]["labels"] == service["metadata"]["labels"]
    assert template_labels["modelversioning.io/version"] == "2.4.0"
    assert template_labels["modelversioning.io/endpoint"] == "fraud"
    assert template_labels["modelversioning.io/variant"] == "canary"
    assert template_labels["app.kubernetes.io/instance"] == "fraud-canary"


def test_a_new_version_or_template_is_a_new_slot_never_a_rolling_update() -> None:
    spec, variant, version = full_deployment_inputs()
    base = render_deployment(ENDPOINT, spec, variant, version, SERVING)["metadata"]["name"]
    assert base.startswith("fraud-canary-") and len(base) == len("fraud-canary-") + naming.SLOT_HASH_LEN
    newer = render_deployment(
        ENDPOINT, spec, variant.model_copy(update={"version": "2.5.0"}), model_version("2.5.0"), SERVING
    )
    bigger = render_deployment(
        ENDPOINT, spec, variant.model_copy(update={"resources": None}), version, SERVING
    )
    other_init = render_deployment(ENDPOINT, spec, variant, version, Serving(init_image="x/y:2"))
    names = {base, newer["metadata"]["name"], bigger["metadata"]["name"], other_init["metadata"]["name"]}
    assert len(names) == 4
    # replicas are not part of the pod template: scaling keeps the slot
    again = render_deployment(ENDPOINT, spec, variant, version, SERVING, replicas=7)
    assert again["metadata"]["name"] == base and again["spec"]["replicas"] == 7


def test_slot_names_never_collide_across_endpoints() -> None:
    # the old naming made chat/bot-blue and chat-bot/blue share one Deployment and Service
    version = model_version("2.3.8")
    a_ref = EndpointRef(name="chat", namespace=NAMESPACE, uid="a")
    b_ref = EndpointRef(name="chat-bot", namespace=NAMESPACE, uid="b")
    a_spec = endpoint_spec("none", [("bot-blue", "2.3.8", 100)])
    b_spec = endpoint_spec("none", [("blue", "2.3.8", 100)])
    a = render_deployment(a_ref, a_spec, a_spec.variants[0], version, SERVING)
    b = render_deployment(b_ref, b_spec, b_spec.variants[0], version, SERVING)
    assert child_name("chat", "bot-blue") == child_name("chat-bot", "blue")  # the prefix alone collides
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert a["spec"]["selector"] != b["spec"]["selector"]


def test_placement_is_copied_into_the_pod_template() -> None:
    spec = endpoint_spec(
        "none",
        [("main", "2.3.8", 100)],
        placement={
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    )
    pod = pod_spec(render_deployment(ENDPOINT, spec, spec.variants[0], model_version("2.3.8"), SERVING))
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    plain = endpoint_spec("none", [("main", "2.3.8", 100)])
    bare = pod_spec(render_deployment(ENDPOINT, plain, plain.variants[0], model_version("2.3.8"), SERVING))
    assert "nodeSelector" not in bare and "tolerations" not in bare


def test_artifact_annotation_and_owner() -> None:
    spec, variant, version = full_deployment_inputs()
    deployment = render_deployment(ENDPOINT, spec, variant, version, SERVING)
    want = {"modelversioning.io/artifact-sha256": sha("2.4.0")}
    assert deployment["metadata"]["annotations"] == want
    assert deployment["spec"]["template"]["metadata"]["annotations"] == want
    for obj in (deployment, render_service(ENDPOINT, spec, variant, version)):
        assert obj["metadata"]["ownerReferences"] == naming.owner_references(ENDPOINT)
        assert obj["metadata"]["name"] == deployment["metadata"]["name"]
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_rolling_update_strategy_and_service_ports() -> None:
    spec, variant, version = full_deployment_inputs()
    deployment = render_deployment(ENDPOINT, spec, variant, version, SERVING)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    service = render_service(ENDPOINT, spec, variant, version)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "appProtocol": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]


def test_version_mismatch_is_refused() -> None:
    spec, variant, _ = full_deployment_inputs()
    with pytest.raises(RenderError, match="pins fraud-detector 2.4.0"):
        render_deployment(ENDPOINT, spec, variant, model_version("2.3.8"), SERVING)


def test_rendering_is_deterministic() -> None:
    spec, variant, version = full_deployment_inputs()
    first = yaml.safe_dump(render_deployment(ENDPOINT, spec, variant, version, SERVING), sort_keys=False)
    again = yaml.safe_dump(render_deployment(ENDPOINT, spec, variant, version, SERVING), sort_keys=False)
    assert first == again
    for name in ("istio", "gatewayAPI"):
        a = get_router(name).render(route_input(name, SCENARIOS["shadow-25"]))
        b = get_router(name).render(route_input(name, SCENARIOS["shadow-25"]))
        assert yaml.safe_dump(a, sort_keys=False) == yaml.safe_dump(b, sort_keys=False)


# --------------------------------------------------------------------------- names


def test_long_names_are_truncated_deterministically() -> None:
    endpoint = "a-very-long-model-endpoint-name-for-the-fraud-detection-team-eu"  # 63 chars
    variant = "canary-with-an-unreasonably-long-name-xx"  # 40 chars: the API maximum
    assert len(endpoint) == 63 and len(variant) == 40
    name = child_name(endpoint, variant)
    assert len(name) <= 63 and DNS_1035.match(name)
    assert name == child_name(endpoint, variant)
    # pinned: changing the algorithm would rename (recreate) the children of existing endpoints
    digest = hashlib.sha256(f"{endpoint}-{variant}".encode()).hexdigest()[:8]
    assert name == f"a-very-long-model-endpoint-name-for-the-fraud-detectio-{digest}"
    other = child_name(endpoint, variant[:-1] + "y")
    assert other != name and len(other) <= 63
    assert child_name("fraud", "blue") == "fraud-blue"  # short names unchanged

    ref = EndpointRef(name=endpoint, namespace=NAMESPACE, uid="u")
    spec = endpoint_spec("istio", [(variant, "2.3.8", 100)])
    version = model_version("2.3.8")
    deployment = render_deployment(ref, spec, spec.variants[0], version, SERVING)
    service = render_service(ref, spec, spec.variants[0], version)
    slot = deployment["metadata"]["name"]
    assert service["metadata"]["name"] == slot and len(slot) <= 63 and DNS_1035.match(slot)
    assert slot.startswith(name[: 63 - naming.SLOT_HASH_LEN - 1].rstrip("-"))
    name = target_for(ref, variant, version, 100).service
    for labels in (deployment["metadata"]["labels"], service["spec"]["selector"]):
        for value in labels.values():
            assert len(value) <= 63 and LABEL_VALUE.match(value)
    vs = get_router("istio").render(
        RouteInput(ref, spec, [target_for(ref, variant, version, 100)], policy=ROUTE_POLICY)
    )
    assert vs is not None
    assert vs["spec"]["http"][0]["route"][0]["destination"]["host"].startswith(name + ".")
    assert get_router("istio").weights(vs) == {variant: 100}


def test_names_that_are_not_dns_labels() -> None:
    # ModelEndpoint names are DNS subdomains: dots and a leading digit are allowed there,
    # not in Service names.
    for endpoint in ("fraud.eu", "1fraud"):
        name = child_name(endpoint, "blue")
        assert DNS_1035.match(name) and len(name) <= 63
        assert name == child_name(endpoint, "blue")
    assert child_name("fraud.eu", "blue") != child_name("fraud-eu", "blue")
    long_endpoint = "x" * 200
    assert len(naming.label_value(long_endpoint)) <= 63
    assert LABEL_VALUE.match(naming.label_value(long_endpoint))
    labels = naming.variant_labels(long_endpoint, "blue", MODEL, "1.0.0")
    assert labels["modelversioning.io/endpoint"] == naming.label_value(long_endpoint)


def test_no_stale_golden_files() -> None:
    expected = {f"route-{r}-{s}.yaml" for r in ("istio", "gatewayAPI") for s in SCENARIOS}
    expected |= {"deployment-full.yaml", "deployment-minimal.yaml", "service.yaml"}
    expected |= {"route-istio-closed-revoked.yaml", "route-gatewayAPI-closed-revoked.yaml"}  # test_revocation
    expected |= {"service-gatewayAPI-closed.yaml"}
    expected |= {"deployment-resolved-runtime.yaml"}  # test_runtime_resolution
    assert {p.name for p in GOLDEN_DIR.glob("*.yaml")} == expected


def test_a_versions_signature_reaches_the_server_as_model_signature() -> None:
    """spec.signature as MODEL_SIGNATURE (the reference server's OIP metadata); nothing without one,
    and runtime.env cannot set it."""
    from modelversioning.api.modelversion_spec import EnvVar, Signature, TensorSpec
    from modelversioning.modelserver.oip import parse_signature

    spec, variant, version = minimal_deployment_inputs()
    server = pod_spec(render_deployment(ENDPOINT, spec, variant, version, SERVING))["containers"][0]
    assert "MODEL_SIGNATURE" not in {e["name"] for e in server["env"]}
    sig = Signature(
        inputs=[TensorSpec(name="features", dtype="float64", shape=[-1, 4])],
        outputs=[TensorSpec(name="predict", dtype="int64", shape=[-1])],
    )
    runtime = version.runtime.model_copy(update={"env": [EnvVar(name="MODEL_SIGNATURE", value="{}")]})
    signed = version.model_copy(update={"signature": sig, "runtime": runtime})
    server = pod_spec(render_deployment(ENDPOINT, spec, variant, signed, SERVING))["containers"][0]
    values = [e["value"] for e in server["env"] if e["name"] == "MODEL_SIGNATURE"]
    assert len(values) == 1
    parsed = parse_signature(values[0])
    assert [(t.name, t.datatype, t.shape) for t in (*parsed.inputs, *parsed.outputs)] == [
        ("features", "FP64", (-1, 4)),
        ("predict", "INT64", (-1,)),
    ]
