"""The node cache agent of the chart (templates/nodecache.yaml, rendered by helm) on the real node, for
e2e/test_node_cache_e2e.py and the ttfa benchmark's node cache part (bench/ttfa_cache.py)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from dataplane_harness import DataPlane
from helmchart import CHART
from helpers import wait_for
from images import OPERATOR_IMAGE
from node import NODE_IP


class Agent:
    """The node cache DaemonSet as the chart renders it, installed for this module."""

    def __init__(self, port: int, host_path: Path, namespace: str) -> None:
        self.port, self.host_path, self.namespace = port, host_path, namespace
        self.url = f"http://{NODE_IP}:{port}"

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("modelversioning_node_cache_"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("modelversioning_node_cache_")] = float(value)
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def entry(self, sha: str) -> Path:
        return self.host_path / "entries" / f"file-{sha}" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((NODE_IP, 0))
        return int(s.getsockname()[1])


def _chart_objects(dataplane: DataPlane, agent: Agent, max_bytes: int) -> list[dict[str, Any]]:
    repo, tag = OPERATOR_IMAGE.rsplit(":", 1)
    values = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "nodeCache": {
            "enabled": True, "port": agent.port, "hostPath": str(agent.host_path), "maxBytes": max_bytes,
            **dataplane.placement,
        },
    }  # fmt: skip
    assert dataplane.cluster.bin_dir is not None
    out = subprocess.run(
        [str(dataplane.cluster.bin_dir / "helm"), "template", agent.namespace, str(CHART),
         "--namespace", agent.namespace, "--show-only", "templates/nodecache.yaml", "--values", "/dev/stdin"],
        input=yaml.safe_dump(values), capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def _apply(kube: Any, objs: list[dict[str, Any]], ns: str) -> None:
    core, rbac, apps = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube), client.AppsV1Api(kube)
    for o in objs:
        {
            "ServiceAccount": lambda o: core.create_namespaced_service_account(ns, o),
            "ClusterRole": rbac.create_cluster_role,
            "ClusterRoleBinding": rbac.create_cluster_role_binding,
            "DaemonSet": lambda o: apps.create_namespaced_daemon_set(ns, o),
        }[o["kind"]](o)


def _agent_ready(kube: Any, ns: str) -> bool:
    pods = client.CoreV1Api(kube).list_namespaced_pod(ns).items
    return any(
        any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])) for p in pods
    )


@contextlib.contextmanager
def installed(dataplane: DataPlane, kube: Any, max_bytes: int = 64 << 20) -> Iterator[Agent]:
    """The chart's node cache on the real node, the session operator told its port (restored after)."""
    ns = f"mv-node-cache-{secrets.token_hex(3)}"
    host_path = Path(f"/tmp/mv-node-cache-{secrets.token_hex(4)}")  # traversable by the agent's user
    a = Agent(_free_port(), host_path, ns)
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": ns}})
    objs = _chart_objects(dataplane, a, max_bytes)
    op = dataplane.operator
    original = op.config.read_text()
    try:
        _apply(kube, objs, ns)
        wait_for(lambda: _agent_ready(kube, ns), 240, "the node cache agent Ready on the real node")
        cfg = yaml.safe_load(original) or {}
        cfg.setdefault("serving", {})["nodeCachePort"] = a.port
        op.config.write_text(yaml.safe_dump(cfg))
        op.restart()
        yield a
    finally:
        op.config.write_text(original)
        op.restart()
        rbac = client.RbacAuthorizationV1Api(kube)
        for o in objs:
            if o["kind"] == "ClusterRole":
                rbac.delete_cluster_role(o["metadata"]["name"])
            elif o["kind"] == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(o["metadata"]["name"])
        core.delete_namespace(ns)
        # the agent pod's grace is the default 30 s, all of which its stop took (measured: the namespace
        # gone 42 s after its deletion); a cache the test is done with needs none: 1 s, after which the
        # kubelet kills it, and the namespace is still gone only once the agent is (before the rmtree)
        core.delete_collection_namespaced_pod(ns, grace_period_seconds=1)
        wait_for(lambda: not _namespace_exists(core, ns), 180, "the agent's namespace gone")
        shutil.rmtree(host_path, ignore_errors=True)


def _namespace_exists(core: Any, ns: str) -> bool:
    return any(n.metadata.name == ns for n in core.list_namespace().items)


def init_logs(core: Any, namespace: str, pod: Any) -> str:
    """The verify-artifact init container's log (stderr says node-cache: hit|miss|...)."""
    return str(core.read_namespaced_pod_log(pod.metadata.name, namespace, container="verify-artifact"))
