"""The real node (node.py): real pods of the locally built operator image, on this host.

These tests need the whole real data plane (kubelet, containerd, CNI, kube-proxy and the images of
images.py); when any part is missing the ``real_node`` fixture fails with the reason (never skips).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controlplane import ControlPlane
from images import OPERATOR_IMAGE
from node import NODE_IP, NODE_NAME, REAL_NODE_LABEL, REAL_NODE_TAINT, RealNode

# The first test of a cold session builds the kubelet and the images (minutes, see docs/harness.md).
pytestmark = pytest.mark.timeout(1800)


def _wait_for(what: str, check: Callable[[], Any], timeout: float, diagnose: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnose()}")
        time.sleep(0.25)


def _last_json(logs: str) -> dict[str, Any]:
    lines = [ln for ln in logs.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON report in the init container's log:\n{logs}"
    return dict(json.loads(lines[-1]))


def _pod(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    res = cluster.kubectl("get", "pod", "-n", namespace, name, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else {}


def _diagnose(cluster: ControlPlane, node: RealNode, namespace: str, name: str) -> Callable[[], str]:
    def text() -> str:
        pod = _pod(cluster, namespace, name)
        events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
        return (
            f"pod status: {json.dumps(pod.get('status'), indent=1)}\n"
            f"events:\n{events}\n"
            f"crictl ps -a:\n{node.crictl('ps', '-a', check=False)}\n"
            f"kubelet log (tail):\n{node.logs('kubelet', 30)}"
        )

    return text


def _pod_manifest(node: RealNode, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"automountServiceAccountToken": False, **node.pod_placement(), **spec},
    }


def _container(name: str, args: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": OPERATOR_IMAGE,
        "imagePullPolicy": "Never",  # built here, imported into the node's containerd; never pulled
        "args": args,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        **extra,
    }


@pytest.fixture
def artifact_server() -> Iterator[tuple[str, str]]:
    """An HTTP server on the node address (reachable from pods); yields (url, sha256)."""
    data = secrets.token_bytes(256 * 1024)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/model.bin":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer((NODE_IP, 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://{NODE_IP}:{srv.server_address[1]}/model.bin", hashlib.sha256(data).hexdigest()
    finally:
        srv.shutdown()
        srv.server_close()


def test_real_node_is_registered_ready_labelled_and_tainted(
    cluster: ControlPlane, real_node: RealNode
) -> None:
    node = json.loads(cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    key, value = REAL_NODE_LABEL
    assert node["metadata"]["labels"][key] == value
    assert REAL_NODE_TAINT in [{k: t[k] for k in ("key", "value", "effect")} for t in node["spec"]["taints"]]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_IP
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    # The kwok nodes are still there, and only pods that tolerate the taint land on the real node.
    assert cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.strip()


def test_pod_on_real_node_runs_the_operator_image(
    cluster: ControlPlane, real_node: RealNode, namespace: str
) -> None:
    cluster.apply(
        _pod_manifest(
            real_node,
            "version",
            {"restartPolicy": "Never", "containers": [_container("version", ["version"])]},
        ),
        "-n",
        namespace,
    )
    diagnose = _diagnose(cluster, real_node, namespace, "version")
    pod = _wait_for(
        "pod version Succeeded",
        lambda: (
            (p := _pod(cluster, namespace, "version")).get("status", {}).get("phase") == "Succeeded" and p
        ),
        timeout=120,
        diagnose=diagnose,
    )
    assert pod["spec"]["nodeName"] == NODE_NAME
    # kubectl logs goes API server -> kubelet (InternalIP, client certificate): the real log.
    out = cluster.kubectl("logs", "-n", namespace, "version").stdout.strip()
    from modelversioning import __version__

    assert out == __version__


def test_verify_artifact_init_container_gates_the_pod(
    cluster: ControlPlane, real_node: RealNode, namespace: str, artifact_server: tuple[str, str]
) -> None:
    url, sha256 = artifact_server
    tampered = hashlib.sha256(b"not the artifact").hexdigest()

    def pod(name: str, digest: str) -> dict[str, Any]:
        return _pod_manifest(
            real_node,
            name,
            {
                "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
                "initContainers": [
                    _container(
                        "verify-artifact",
                        [
                            "verify-artifact",
                            url,
                            "--sha256",
                            digest,
                            "--dest",
                            "/models",
                            "--output",
                            "json",
                            "--policy-file",
                            "/etc/modelversioning/policy.yaml",
                        ],
                        terminationMessagePolicy="FallbackToLogsOnError",
                        volumeMounts=[
                            {"name": "models", "mountPath": "/models"},
                            {"name": "policy", "mountPath": "/etc/modelversioning", "readOnly": True},
                        ],
                    )
                ],
                "containers": [
                    {
                        **_container(
                            "server",
                            [],
                            # The image's python serving the verified model directory.
                            command=["python", "-m", "http.server", "8080", "--directory", "/models"],
                            volumeMounts=[{"name": "models", "mountPath": "/models", "readOnly": True}],
                            ports=[{"name": "http", "containerPort": 8080}],
                        ),
                        "readinessProbe": {
                            "httpGet": {"path": "/model.bin", "port": "http"},
                            "periodSeconds": 1,
                        },
                    }
                ],
                "volumes": [
                    {"name": "models", "emptyDir": {}},
                    {"name": "policy", "configMap": {"name": "artifact-policy"}},
                ],
            },
        )

    # The artifact server is on the node's private address: the policy must allow private networks.
    policy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "artifact-policy"},
        "data": {"policy.yaml": json.dumps({"artifacts": {"allowPrivateNetworks": True}})},
    }
    cluster.apply([policy, pod("good", sha256), pod("tampered", tampered)], "-n", namespace)

    # The good pod: verified, then Ready, and the host reaches it on its pod IP over the CNI bridge.
    good = _wait_for(
        "pod good Ready",
        lambda: (
            (p := _pod(cluster, namespace, "good"))
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            and p
        ),
        timeout=120,
        diagnose=_diagnose(cluster, real_node, namespace, "good"),
    )
    init = good["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0
    report = _last_json(cluster.kubectl("logs", "-n", namespace, "good", "-c", "verify-artifact").stdout)
    assert (report["ok"], report["reason"], report["actual"]) == (True, "Verified", sha256), report
    pod_ip = good["status"]["podIP"]
    with urllib.request.urlopen(f"http://{pod_ip}:8080/model.bin", timeout=10) as r:
        assert hashlib.sha256(r.read()).hexdigest() == sha256

    # The tampered pod: the init container exits 1 (DigestMismatch) and is retried; the server never
    # starts, the pod is never Ready.
    def failed_twice() -> dict[str, Any] | None:
        p = _pod(cluster, namespace, "tampered")
        statuses = p.get("status", {}).get("initContainerStatuses") or []
        if not statuses:
            return None
        s = statuses[0]
        terminated = (s.get("lastState") or {}).get("terminated") or (s.get("state") or {}).get("terminated")
        return p if s.get("restartCount", 0) >= 1 and terminated and terminated["exitCode"] == 1 else None

    tampered_pod = _wait_for(
        "the tampered pod's init container to fail (and be retried)",
        failed_twice,
        timeout=120,
        diagnose=_diagnose(cluster, real_node, namespace, "tampered"),
    )
    conditions = {c["type"]: c["status"] for c in tampered_pod["status"]["conditions"]}
    assert conditions["Ready"] == "False"
    assert conditions["Initialized"] == "False"
    server = tampered_pod["status"]["containerStatuses"][0]
    assert server["ready"] is False and "running" not in server["state"], server
    # The failed attempt's report, from its termination message (FallbackToLogsOnError): the kubelet
    # removes dead init containers as it retries, so `kubectl logs --previous` may find none.
    init = tampered_pod["status"]["initContainerStatuses"][0]
    terminated = (init.get("lastState") or {}).get("terminated") or init["state"]["terminated"]
    report = _last_json(terminated.get("message") or "")
    assert (report["ok"], report["reason"], report["actual"]) == (False, "DigestMismatch", sha256), report


def test_pod_reaches_the_api_server_through_the_kubernetes_service(
    cluster: ControlPlane, real_node: RealNode, namespace: str
) -> None:
    """In-cluster config (KUBERNETES_SERVICE_HOST=10.96.0.1) works: kube-proxy + the API server on the
    node address. This is what the in-cluster operator (Helm chart) relies on."""
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "req = urllib.request.Request(f'https://{host}:{port}/version')\n"
        "req.add_header('Authorization', 'Bearer ' + open(sa + '/token').read())\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "print(host, json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['gitVersion'])\n"
    )
    manifest = _pod_manifest(
        real_node,
        "in-cluster",
        {
            "restartPolicy": "Never",
            "containers": [_container("client", [], command=["python", "-c", script])],
        },
    )
    manifest["spec"]["automountServiceAccountToken"] = True
    cluster.apply(manifest, "-n", namespace)
    _wait_for(
        "pod in-cluster Succeeded",
        lambda: _pod(cluster, namespace, "in-cluster").get("status", {}).get("phase") == "Succeeded",
        timeout=120,
        diagnose=_diagnose(cluster, real_node, namespace, "in-cluster"),
    )
    out = cluster.kubectl("logs", "-n", namespace, "in-cluster").stdout.split()
    assert out[0] == "10.96.0.1" and out[1].startswith("v1."), out


def test_kubectl_exec_into_a_real_pod(cluster: ControlPlane, real_node: RealNode, namespace: str) -> None:
    manifest = _pod_manifest(
        real_node,
        "sleeper",
        {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                _container("main", [], command=["python", "-c", "import time\nwhile True: time.sleep(60)"])
            ],
        },
    )
    cluster.apply(manifest, "-n", namespace)
    _wait_for(
        "pod sleeper Running",
        lambda: _pod(cluster, namespace, "sleeper").get("status", {}).get("phase") == "Running",
        timeout=120,
        diagnose=_diagnose(cluster, real_node, namespace, "sleeper"),
    )
    out = cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "modelversioning", "version").stdout
    from modelversioning import __version__

    assert out.strip() == __version__
    # The image's allocator (Dockerfile: LD_PRELOAD of jemalloc) is the one its Python runs on.
    heap = "from modelversioning.handlers.heapreport import heap_summary; print(heap_summary())"
    out = cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "python", "-c", heap).stdout
    assert out.startswith("jemalloc allocated"), out
    # The container runs as the image's non-root user, in its own network namespace.
    ids = cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "id", "-u").stdout.strip()
    assert ids == "65532"
    assert (
        socket.gethostname()
        != cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "hostname").stdout.strip()
    )
