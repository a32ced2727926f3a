"""The local control plane is a real Kubernetes: versioned API, scheduling onto kwok nodes, real CRDs."""

from __future__ import annotations

import time

from kubernetes import client


def test_api_server_version(kube: client.ApiClient) -> None:
    info = client.VersionApi(kube).get_code()
    assert info.git_version.startswith("v1.34."), info.git_version


def test_deployment_becomes_available_on_kwok_nodes(kube: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube)
    core = client.CoreV1Api(kube)
    labels = {"app": "pause"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="pause"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="pause", image="registry.k8s.io/pause:3.10")]
                    ),
                ),
            ),
        ),
    )

    deadline = time.monotonic() + 60
    while True:
        dep = apps.read_namespaced_deployment("pause", namespace)
        conditions = {c.type: c.status for c in (dep.status.conditions or [])}
        if conditions.get("Available") == "True" and (dep.status.available_replicas or 0) == 2:
            break
        assert time.monotonic() < deadline, f"Deployment not Available in 60s: {dep.status}"
        time.sleep(0.2)

    kwok_nodes = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    assert len(kwok_nodes) >= 1
    pods = core.list_namespaced_pod(namespace, label_selector="app=pause").items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 2
    assert {p.spec.node_name for p in running} <= kwok_nodes


def _established(kube: client.ApiClient, name: str) -> bool:
    crd = client.ApiextensionsV1Api(kube).read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))


def test_third_party_route_crds_installed(kube: client.ApiClient) -> None:
    assert _established(kube, "virtualservices.networking.istio.io")
    assert _established(kube, "httproutes.gateway.networking.k8s.io")


def test_our_crds_installed(kube: client.ApiClient) -> None:
    assert _established(kube, "modelversions.modelversioning.io")
    assert _established(kube, "modelendpoints.modelversioning.io")
