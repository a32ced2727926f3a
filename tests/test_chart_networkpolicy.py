"""The chart's NetworkPolicies select exactly the intended pods: the operator's (its Deployment's pod
template) and the model pods the operator renders (render_deployment), by the labels api/wire.py
declares, and open only the intended ports.

The chart is YAML, so its model-pod selector spells wire's label names and values out: the first test
compares them without helm; the others render the chart with `helm template` (the e2e control
plane's helm, MV_BIN_DIR, or one on PATH) and fail when there is none on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import Serving
from modelversioning.api.wire import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY
from modelversioning.render import EndpointRef, render_deployment
from modelversioning.render.naming import COMPONENT_SERVER, PORT_NAME

CHART = Path(__file__).resolve().parent.parent / "charts" / "modelversioning-operator"
TEMPLATE = CHART / "templates" / "networkpolicy.yaml"
MODEL_POD_LABELS = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: COMPONENT_SERVER}


def _helm() -> str | None:
    if os.environ.get("MV_NO_HELM"):  # ./dev test's first unit run: helm may not be built yet
        return None
    candidates = [os.environ.get("MV_BIN_DIR", "") + "/helm", shutil.which("helm") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".cache/modelversioning/*/bin/helm"))
    return next((c for c in candidates if c and os.access(c, os.X_OK) and Path(c).is_file()), None)


HELM = _helm()


def template(*sets: str) -> list[dict[str, Any]]:
    # never skipped: without helm these tests fail (./dev test builds it with the control plane)
    assert HELM is not None, "no helm binary: run ./dev test (it builds the control plane's helm)"
    args = [HELM, "template", "r", str(CHART), "--namespace", "ops"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector  # matchExpressions would need more than this
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def model_pod() -> dict[str, Any]:
    """A model Deployment as the operator renders it."""
    version = ModelVersionSpec.model_validate(
        {
            "model": "fraud-detector",
            "version": "2.4.1",
            "artifact": {"uri": "s3://models/fraud/model.bin", "sha256": "a" * 64},
            "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "1"}},
            "metrics": {"auc": 0.9},
            "runtime": {"image": "ghcr.io/acme/server:1", "port": 9000},
        }
    )
    spec = ModelEndpointSpec.model_validate(
        {"model": "fraud-detector", "variants": [{"name": "stable", "version": "2.4.1", "weight": 100}]}
    )
    return render_deployment(EndpointRef("fraud", "ml", "uid-1"), spec, spec.variants[0], version, Serving())


# ---------------------------------------------------------------------------------------------- no helm
def test_the_charts_model_pod_selector_spells_wires_labels() -> None:
    text = TEMPLATE.read_text()
    models = text[text.index("-models") :]
    block = re.search(r"podSelector:\n\s+matchLabels:\n((?:\s+[\w./-]+: [\w.-]+\n)+)", models)
    assert block is not None
    labels = dict(line.strip().split(": ", 1) for line in block.group(1).splitlines())
    assert labels == MODEL_POD_LABELS
    assert f"- port: {PORT_NAME}\n" in models


# ---------------------------------------------------------------------------------------------- helm
def test_the_policies_select_exactly_the_intended_pods() -> None:
    docs = template("watch.allNamespaces=false", "watch.namespaces={ml}")
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {"r-modelversioning-operator-operator", "r-modelversioning-operator-models"}
    operator_policy = policies["r-modelversioning-operator-operator"]
    models_policy = policies["r-modelversioning-operator-models"]
    assert (
        operator_policy["metadata"]["namespace"] == "ops" and models_policy["metadata"]["namespace"] == "ml"
    )
    operator = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    model = model_pod()["spec"]["template"]
    op_labels, model_labels = operator["metadata"]["labels"], model["metadata"]["labels"]

    assert selects(operator_policy["spec"]["podSelector"], op_labels)
    assert not selects(operator_policy["spec"]["podSelector"], model_labels)
    assert selects(models_policy["spec"]["podSelector"], model_labels)
    assert not selects(models_policy["spec"]["podSelector"], op_labels)
    # a user's pod that only looks like a model server, or one another tool manages, is not selected
    for k in MODEL_POD_LABELS:
        assert not selects(models_policy["spec"]["podSelector"], {**model_labels, k: "something-else"})

    # ports: the operator's metrics port only (never health); the model container's serving port
    op_ports = {p["name"]: p["containerPort"] for p in operator["spec"]["containers"][0]["ports"]}
    assert [p["port"] for r in operator_policy["spec"]["ingress"] for p in r["ports"]] == ["metrics"]
    assert "metrics" in op_ports and "health" in op_ports
    server = next(c for c in model["spec"]["containers"] if c["name"] == "model-server")
    assert [p["name"] for p in server["ports"]] == [PORT_NAME]
    assert [p["port"] for r in models_policy["spec"]["ingress"] for p in r["ports"]] == [PORT_NAME]
    assert operator_policy["spec"]["policyTypes"] == ["Ingress"]  # egress open by default


def test_values_switch_and_shape_the_policies() -> None:
    kinds = [d["kind"] for d in template("networkPolicy.enabled=false")]
    assert "NetworkPolicy" not in kinds
    # cluster-wide without listed namespaces: the operator's policy only
    for sets in ((), ("watch.namespaces={ignored}",)):
        names = [d["metadata"]["name"] for d in template(*sets) if d["kind"] == "NetworkPolicy"]
        assert names == ["r-modelversioning-operator-operator"]
    docs = template(
        "networkPolicy.models.namespaces={a,b}",
        "networkPolicy.models.metricsPorts={9090}",
        "networkPolicy.operator.metricsFrom=null",
    )
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["a", "b", "ops"]
    op = next(p for p in policies if p["metadata"]["namespace"] == "ops")
    assert op["spec"]["ingress"] == []  # no metricsFrom: nothing may connect
    model = next(p for p in policies if p["metadata"]["namespace"] == "a")
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert model["spec"]["ingress"][1] == {"from": [monitoring], "ports": [{"port": 9090, "protocol": "TCP"}]}
