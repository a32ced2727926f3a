"""The pydantic models refuse what the CRDs refuse, and the checked-in CRDs are fresh."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from modelversioning.api import crdgen
from modelversioning.api.modelendpoint import ModelEndpoint, ModelEndpointSpec
from modelversioning.api.modelversion import ModelVersion
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.platform import ModelPlatformPolicy

ROOT = Path(__file__).resolve().parents[1]

MV = {
    "model": "fraud-detector",
    "version": "2.3.8",
    "artifact": {"uri": "s3://models/fraud/2.3.8/model.onnx", "sha256": "a" * 64},
    "lineage": {"codeCommit": "3f9c2a1", "dataset": {"name": "tx", "version": "2024-06-30"}},
    "metrics": {"auc": 0.94},
    "runtime": {"image": "ghcr.io/x/server:1"},
}
EP = {
    "model": "fraud-detector",
    "variants": [
        {"name": "stable", "version": "2.3.8", "weight": 90},
        {"name": "canary", "version": "2.4.1", "weight": 10},
    ],
}


def mv(**patch):
    d = copy.deepcopy(MV)
    for path, value in patch.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is ...:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return d


def test_valid_modelversion_defaults():
    spec = ModelVersionSpec.model_validate(MV)
    assert spec.stage == "candidate"
    assert spec.runtime.port == 8080
    assert spec.semver.minor == 3


@pytest.mark.parametrize(
    "bad,needle",
    [
        (mv(version="2.3"), "semantic version"),
        (mv(version="latest"), "semantic version"),
        (mv(version="2.3.8+build1"), "build metadata"),
        (mv(artifact__sha256=...), "sha256"),
        (mv(artifact__sha256="ABC"), "64 lowercase hex"),
        (mv(artifact__sha256="A" * 64), "64 lowercase hex"),
        (mv(artifact__uri=...), "uri"),
        (mv(lineage__codeCommit=...), "codeCommit"),
        (mv(lineage__codeCommit="not-a-sha"), "hex git commit"),
        (mv(lineage__dataset=...), "dataset"),
        (mv(lineage__dataset={"name": "tx"}), "version and/or a sha256"),
        (mv(lineage__trainedAt="yesterday"), "RFC 3339"),
        (mv(metrics={}), "metrics"),
        (mv(model="Fraud_Detector"), "model"),
        (mv(stage="Live!"), "stage"),  # a Model may name its own stages: DNS-label-like
        (mv(runtime=...), "runtime"),
    ],
)
def test_invalid_modelversion(bad, needle):
    with pytest.raises(ValidationError) as e:
        ModelVersionSpec.model_validate(bad)
    assert needle in str(e.value)


def test_name_must_be_model_v_version():
    with pytest.raises(ValidationError, match="fraud-detector-v2.3.8"):
        ModelVersion.model_validate({"metadata": {"name": "fraud"}, "spec": MV})
    ModelVersion.model_validate({"metadata": {"name": "fraud-detector-v2.3.8"}, "spec": MV})


def test_missing_lineage_for_production():
    spec = ModelVersionSpec.model_validate(MV)
    assert "lineage.author" in spec.lineage.missing_for_production()
    assert "lineage.codeCommit" not in spec.lineage.missing_for_production()


def ep(**changes):
    d = copy.deepcopy(EP)
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "bad,needle",
    [
        (ep(variants=[{"name": "a", "version": "2.3.8", "weight": 90}]), "add up to 90"),
        (
            ep(
                variants=[
                    {"name": "a", "version": "2.3.8", "weight": 50},
                    {"name": "a", "version": "2.4.1", "weight": 50},
                ]
            ),
            "unique",
        ),
        (ep(mirror={"variant": "nope"}), "unknown variant"),
        (ep(mirror={"variant": "canary"}), "weight must be 0"),
        (
            ep(
                variants=[
                    {"name": "a", "version": "2.3.8", "weight": 100},
                    {"name": "m", "version": "2.4.1"},
                ],
                mirror={"variant": "m", "percent": 101},
            ),
            "less than or equal to 100",
        ),
        (ep(variants=[{"name": "a", "version": "latest", "weight": 100}]), "semantic version"),
        (ep(variants=[{"name": "a", "version": "2.3.8", "weight": 101}]), "less than or equal to 100"),
        (ep(variants=[]), "at least 1"),
        (ep(routing={"router": "linkerd"}), "router"),
    ],
)
def test_invalid_modelendpoint(bad, needle):
    with pytest.raises(ValidationError) as e:
        ModelEndpointSpec.model_validate(bad)
    assert needle in str(e.value)


def test_mirror_not_counted_in_live_weights():
    spec = ModelEndpointSpec.model_validate(
        ep(
            variants=[
                {"name": "live", "version": "2.3.8", "weight": 100},
                {"name": "shadow", "version": "3.0.0"},
            ],
            mirror={"variant": "shadow", "percent": 25},
        )
    )
    assert spec.mirror is not None and spec.mirror.percent == 25


def test_examples_are_valid():
    files = sorted((ROOT / "examples").rglob("*.yaml"))
    assert len(files) >= 7
    kinds = set()
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            kinds.add(doc["kind"])
            model = {"ModelVersion": ModelVersion, "ModelPlatformPolicy": ModelPlatformPolicy}
            model.get(doc["kind"], ModelEndpoint).model_validate(doc)
    assert kinds == {"ModelVersion", "ModelEndpoint", "ModelPlatformPolicy"}


def test_checked_in_crds_are_fresh():
    """Fails when crds/ (or the chart's copy) differs from what the API models generate.
    Regenerate with: modelversioning gen-crds ."""
    expected = crdgen.render_files()
    for d in crdgen.default_dirs(ROOT):
        for name, text in expected.items():
            path = d / name
            assert path.exists(), f"{path} is missing; run `modelversioning gen-crds .`"
            assert path.read_text() == text, f"{path} is stale; run `modelversioning gen-crds .`"


def _walk(node, found):
    if isinstance(node, dict):
        for r in node.get("x-kubernetes-validations", []):
            found.append(r)
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def test_crds_carry_cel_rules_and_names():
    crds = crdgen.all_crds()
    mvc = crds["modelversioning.io_modelversions.yaml"]
    names = mvc["spec"]["names"]
    assert names["shortNames"] == ["mv"] and names["categories"] == ["models"]
    rules = []
    _walk(mvc, rules)
    text = " ".join(r["rule"] for r in rules)
    assert "self.metadata.name == self.spec.model + '-v' + self.spec.version" in text
    for f in ("artifact", "lineage", "metrics", "runtime", "model", "version"):
        assert f"self.{f} == oldSelf.{f}" in text
    assert "stage == oldSelf.stage" not in text and "description == oldSelf" not in text
    schema = mvc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(schema["required"]) >= {"model", "version", "artifact", "lineage", "metrics"}
    assert "runtime" not in schema["required"]  # optional: a catalog runtime by reference or format
    assert schema["properties"]["metrics"]["minProperties"] == 1
    assert "sha256" in schema["properties"]["artifact"]["required"]
    assert schema["properties"]["stage"]["default"] == "candidate"

    mec = crds["modelversioning.io_modelendpoints.yaml"]
    assert mec["spec"]["names"]["shortNames"] == ["mep"]
    rules = []
    _walk(mec, rules)
    text = " ".join(r["rule"] for r in rules)
    assert ".sum() == 100" in text and "exists(v, v.name == self.mirror.variant)" in text
    variants = mec["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "variants"
    ]
    assert variants["x-kubernetes-list-type"] == "map"


def test_structural_schema_has_no_unsupported_keywords():
    bad = {"$ref", "anyOf", "oneOf", "title", "const", "$defs"}

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "properties":
                    for pk, pv in v.items():
                        walk(pv, f"{path}.{pk}")
                    continue
                assert k not in bad, f"{path}: {k}"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for crd in crdgen.all_crds().values():
        walk(crd["spec"]["versions"][0]["schema"], "schema")


def test_chart_router_list_is_fresh_and_every_router_has_a_value():
    """The chart derives RBAC (route objects, platform reads) and serving.enabledRouters from
    files/routers.yaml, generated from the router registry: a new router is one module + one
    registration line + `gen-crds`, and, when it writes a route, a `routers.<name>.enabled` value (this
    test names what is missing)."""
    from modelversioning.render.routers import CHART_FILE, chart_routers, get_router, router_names

    chart = ROOT / "charts" / "modelversioning-operator"
    path = chart / CHART_FILE
    assert path.read_text() == chart_routers(), f"{path} is stale; run `modelversioning gen-crds .`"
    listed = yaml.safe_load(path.read_text())
    assert list(listed) == router_names()
    for name, entry in listed.items():
        route = get_router(name).identity.route
        assert (entry.get("kind"), entry.get("plural")) == (
            (route.kind, route.plural) if route else (None, None)
        )
    switched = {n for n in router_names() if get_router(n).writes_route}
    values = yaml.safe_load((chart / "values.yaml").read_text())["routers"]
    assert set(values) == switched, "add routers.<name>.enabled to the chart's values.yaml"
    schema = json.loads((chart / "values.schema.json").read_text())
    assert set(schema["properties"]["routers"]["properties"]) == switched, "and to values.schema.json"
