"""The node cache on the real node (issue 26, part 3): the chart's node-cache DaemonSet (the operator
image, rendered by helm from charts/, on the node's address with a hostPath), the session operator told its
port, real model pods whose init container asks the agent before fetching.

* A second replica of a version starts from the cache: the artifact server's log shows no second
  download, its init container logs a hit, the agent counts it.
* A cache entry whose bytes are changed on the node's disk is never served: the next replica still
  starts (its model server is Ready only for the pinned digest) with the bytes of the origin (one more
  download), and the agent counts the refusal (EntryCorrupt).
* A pod of another namespace asking for that digest (its namespace has no verified version of it)
  gets 403 NoVersionWithDigest.
"""

from __future__ import annotations

import hashlib
import http.server
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, model_version, wait_for
from images import OPERATOR_IMAGE
from node import NODE_IP
from node_cache_agent import Agent, init_logs, installed
from test_dataplane import endpoint, live_on

pytestmark = pytest.mark.timeout(1800)
AUDIENCE = "modelversioning.io/node-cache"  # wire.NODE_CACHE_AUDIENCE, as a tenant would spell it


class LoggingArtifactServer:
    """An HTTP artifact server on the node's address that records every GET path (its access log)."""

    def __init__(self, root: Path) -> None:
        self.root, self.gets = root, []
        gets = self.gets

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                gets.append(self.path)
                super().do_GET()

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            (NODE_IP, 0), lambda *a: Handler(*a, directory=str(root))
        )
        self.base = f"http://{NODE_IP}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, rel: str, data: bytes) -> tuple[str, str]:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return f"{self.base}/{rel}", hashlib.sha256(data).hexdigest()

    def downloads(self, uri: str) -> int:
        path = uri.removeprefix(self.base)
        return sum(1 for g in self.gets if g == path)


@pytest.fixture(scope="module")
def agent(dataplane: DataPlane, kube: Any) -> Iterator[Agent]:
    with installed(dataplane, kube) as a:
        yield a


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggingArtifactServer]:
    server = LoggingArtifactServer(tmp_path_factory.mktemp("node-cache-origin"))
    yield server
    server.httpd.shutdown()


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


def _register(origin: LoggingArtifactServer, objs: Objects, model: str) -> tuple[str, str, bytes]:
    data = f"{model} weights {secrets.token_hex(8)}\n".encode() * 4096
    uri, sha = origin.put(f"{objs.ns}/{model}/model.bin", data)
    mv = model_version(model, "1.0.0", uri, sha, stage="production")
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"], "port": 8080,
        "healthPath": "/healthz",
    }  # fmt: skip
    objs.create(mv)
    return uri, sha, data


def _ready_pods(objs: Objects, model: str) -> list[Any]:
    pods = objs.core.list_namespaced_pod(objs.ns, label_selector=f"modelversioning.io/model={model}").items
    return [
        p for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]  # fmt: skip


def _init_logs(objs: Objects, pod: Any) -> str:
    return init_logs(objs.core, objs.ns, pod)


def _scale(objs: Objects, model: str, replicas: int) -> list[Any]:
    objs.patch_mep(model, {"spec": {"variants": [
        {"name": "main", "version": "1.0.0", "weight": 100, "replicas": replicas}]}})  # fmt: skip
    wait_for(lambda: len(_ready_pods(objs, model)) == replicas, 300, f"{replicas} Ready replicas")
    return sorted(_ready_pods(objs, model), key=lambda p: p.metadata.creation_timestamp)


def test_a_second_replica_starts_from_the_cache_and_a_changed_entry_is_never_served(  # type: ignore[no-untyped-def]
    dp, objs, agent, origin
):
    uri, sha, data = _register(origin, objs, "cached")
    wait_for(lambda: cond_is(objs.mv("cached-v1.0.0"), "ArtifactVerified", "True"), 120, "verified")
    objs.create(endpoint(dp, "cached", "cached", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("cached"), "Ready", "True"), 300, "1.0.0 Ready on a real pod")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    (first,) = _ready_pods(objs, "cached")
    assert "node-cache: miss" in _init_logs(objs, first) and "node-cache: offered" in _init_logs(objs, first)
    assert agent.entry(sha).read_bytes() == data  # stored under the digest the agent computed
    before, hits = origin.downloads(uri), agent.metric("hits_total")

    # a second replica on the same node: from the cache, no download
    second = _scale(objs, "cached", 2)[-1]
    assert "node-cache: hit" in _init_logs(objs, second), _init_logs(objs, second)
    assert origin.downloads(uri) == before
    assert agent.metric("hits_total") == hits + 1

    # the entry's bytes changed on the node's disk: never served; the third replica fetches the origin
    tampered = bytearray(data)
    tampered[100] ^= 0xFF
    agent.entry(sha).write_bytes(bytes(tampered))
    corrupt = agent.metric('refusals_total{reason="EntryCorrupt"}')
    third = _scale(objs, "cached", 3)[-1]  # Ready: its model server found the pinned digest
    assert "node-cache: corrupt" in _init_logs(objs, third), _init_logs(objs, third)
    assert origin.downloads(uri) == before + 1
    assert agent.metric('refusals_total{reason="EntryCorrupt"}') == corrupt + 1
    assert agent.entry(sha).read_bytes() == data  # the third replica offered the origin's bytes again
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "every replica answers")


def test_a_pod_of_another_namespace_gets_403_for_a_digest_it_has_no_verified_version_of(  # type: ignore[no-untyped-def]
    dp, objs, agent, origin, kube, other_namespace
):
    uri, sha, _ = _register(origin, objs, "victim")
    wait_for(lambda: cond_is(objs.mv("victim-v1.0.0"), "ArtifactVerified", "True"), 120, "verified")
    objs.create(endpoint(dp, "victim", "victim", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: agent.entry(sha).exists(), 300, "the victim's model in the node cache")
    refused = agent.metric('refusals_total{reason="NoVersionWithDigest"}')
    core = client.CoreV1Api(kube)
    pod = {
        "metadata": {"name": "hostile"},
        "spec": {
            **dp.placement,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "reader", "image": OPERATOR_IMAGE, "imagePullPolicy": "Never",
                "args": ["verify-artifact", uri, "--sha256", sha, "--dest", "/tmp/stolen", "--output", "json",
                         "--node-cache", f"http://$(NODE_IP):{agent.port}",
                         "--node-cache-token-file", "/var/run/secrets/node-cache/token"],
                "env": [{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
                "volumeMounts": [{"name": "t", "mountPath": "/var/run/secrets/node-cache"},
                                 {"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": {"runAsUser": 65532, "runAsNonRoot": True, "readOnlyRootFilesystem": True},
            }],
            "volumes": [
                {"name": "t", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": AUDIENCE, "expirationSeconds": 600, "path": "token"}}]}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }  # fmt: skip
    core.create_namespaced_pod(other_namespace, pod)

    def finished() -> bool:
        return core.read_namespaced_pod("hostile", other_namespace).status.phase in ("Succeeded", "Failed")

    wait_for(finished, 240, "the hostile pod ran")
    logs = str(core.read_namespaced_pod_log("hostile", other_namespace))
    assert "node-cache: refused" in logs and "403 NoVersionWithDigest" in logs, logs
    assert "node-cache: hit" not in logs
    assert agent.metric('refusals_total{reason="NoVersionWithDigest"}') == refused + 1
