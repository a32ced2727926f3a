"""The chart's install / upgrade / uninstall on the real control plane (split from test_chart.py).

It runs last in the session on purpose (files run in name order): its `helm uninstall` deletes the
admission policies and bindings the chart adopted, and e2e/admission.py installs the harness's again.
After that, on kube-apiserver v1.34.4 here, the API server at random kept evaluating the policies
against the old parameter ConfigMap: a later change of the operators list (admission.allow_operator:
the chart's RBAC tests, the HA test, the chart on the real node) was not seen for minutes, while the
ConfigMap named the new operator (3 failures in 1 of 2 runs; re-creating the bindings did not help).
"""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from kubernetes import client

import admission
from controlplane import ControlPlane
from helmchart import CHART, Helm
from helpers import Objects, model_version, wait_for
from test_chart import OUR_CRDS, crd_uids, deployment_available, gone


@pytest.fixture(scope="module")
def helm(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm.find(cluster, tmp_path_factory.mktemp("helm"))


def test_install_upgrade_uninstall_keeps_crds_and_models(
    helm: Helm, cluster: ControlPlane, kube: client.ApiClient, namespace: str
) -> None:
    release = f"mvo-{secrets.token_hex(3)}"
    fullname = f"{release}-modelversioning-operator"
    apps = client.AppsV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    objs = Objects(kube, namespace)
    uids_before = crd_uids(kube)
    installed = False
    try:
        # The test cluster applied our CRDs with kubectl before: --take-ownership adopts them (the
        # documented migration path from `kubectl apply -f crds/` to the chart). Likewise the admission
        # policies (e2e/admission.py installed the chart's files); the harness user stays "the
        # operator" for them, so the session's operator keeps working meanwhile.
        extra = json.dumps([admission.current_user(cluster)])
        helm("install", release, str(CHART), "--namespace", namespace, "--take-ownership",
             "--set-json", f"admission.extraOperatorUsernames={extra}")  # fmt: skip
        installed = True
        dep = wait_for(
            lambda: deployment_available(apps, namespace, fullname), 90, "operator Deployment Available"
        )
        checksum = dep.spec.template.metadata.annotations["checksum/config"]
        ext = client.ApiextensionsV1Api(kube)
        for name in OUR_CRDS:
            crd = ext.read_custom_resource_definition(name)
            assert crd.metadata.annotations["meta.helm.sh/release-name"] == release
            assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
        assert crd_uids(kube) == uids_before  # adopted, not recreated
        for part in ("framework", "controller"):
            rbac.read_cluster_role(f"{fullname}-{part}")

        mv = objs.create(model_version("chart", "1.0.0", "s3://models/chart/1.0.0/model.bin", "a" * 64))

        # A changed value: new config -> new checksum -> a new operator pod (Recreate).
        helm(
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--set",
            "config.serving.driftCheckSeconds=30",
            "--set",
            "verbose=true",
        )
        dep = wait_for(
            lambda: (
                (d := deployment_available(apps, namespace, fullname))
                and d.spec.template.metadata.annotations["checksum/config"] != checksum
                and d
            ),
            90,
            "upgraded operator Deployment Available",
        )
        assert "--verbose" in dep.spec.template.spec.containers[0].args
        cm = client.CoreV1Api(kube).read_namespaced_config_map(f"{fullname}-config", namespace)
        assert yaml.safe_load(cm.data["config.yaml"])["serving"]["driftCheckSeconds"] == 30
        assert crd_uids(kube) == uids_before
        assert objs.mv(mv["metadata"]["name"])["metadata"]["uid"] == mv["metadata"]["uid"]

        # the chart's admission policies were live: its binding's parameter names its ServiceAccount
        params = client.CoreV1Api(kube).read_namespaced_config_map(f"{fullname}-admission", namespace)
        assert params.data["operators"].split(",")[0] == f"system:serviceaccount:{namespace}:{fullname}"
        vapb = ("get", "validatingadmissionpolicybinding", "status-writers.modelversioning.io", "-o", "json")
        binding = json.loads(cluster.kubectl(*vapb).stdout)
        assert binding["spec"]["paramRef"]["name"] == f"{fullname}-admission"

        helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "90s")
        installed = False
        wait_for(
            lambda: gone(lambda: apps.read_namespaced_deployment(fullname, namespace)),
            60,
            "Deployment deleted",
        )
        assert gone(lambda: rbac.read_cluster_role(f"{fullname}-controller"))
        # crds.keep=true: the CRDs, and with them every ModelVersion, survive the uninstall.
        assert crd_uids(kube) == uids_before
        assert objs.mv(mv["metadata"]["name"])["metadata"]["uid"] == mv["metadata"]["uid"]
    finally:
        if installed:
            helm("uninstall", release, "--namespace", namespace, check=False)
        admission.install(cluster)  # the uninstall took the (adopted) policies: the harness's again
