"""The chart's node cache (nodeCache.*): off by default; on, a DaemonSet in the release's namespace that
alone mounts the cache directory, with exactly the RBAC the agent needs, and the operator told the port."""

from __future__ import annotations

from typing import Any

import yaml

from test_chart_networkpolicy import template


def _kinds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs if d["metadata"]["name"].endswith("-node-cache")}


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def test_off_by_default() -> None:
    docs = template()
    assert _kinds(docs) == {}
    assert "nodeCachePort" not in _config(docs)["serving"]


def test_on_the_agent_alone_mounts_the_cache_and_may_only_review_tokens_and_read_versions() -> None:
    docs = template("nodeCache.enabled=true", "nodeCache.port=7171", "nodeCache.maxBytes=1000000")
    objs = _kinds(docs)
    assert set(objs) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}
    assert objs["DaemonSet"]["metadata"]["namespace"] == "ops"
    rules = sorted(
        (r["apiGroups"][0], r["resources"][0], sorted(r["verbs"])) for r in objs["ClusterRole"]["rules"]
    )
    assert rules == [
        ("authentication.k8s.io", "tokenreviews", ["create"]),
        ("modelversioning.io", "modelversions", ["get", "list", "watch"]),
    ]
    pod = objs["DaemonSet"]["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    assert agent["args"][:1] == ["node-cache"] and "$(NODE_IP):7171" in agent["args"]
    assert agent["securityContext"]["runAsNonRoot"] is True and agent["ports"][0]["hostPort"] == 7171
    assert [v["name"] for v in pod["volumes"] if "hostPath" in v] == ["cache"]
    assert _config(docs)["serving"]["nodeCachePort"] == 7171
    others = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet") and d is not objs["DaemonSet"]]
    assert others and not any(
        "hostPath" in v for d in others for v in d["spec"]["template"]["spec"].get("volumes", [])
    )


def _agent_args(*sets: str) -> list[str]:
    (agent,) = _kinds(template("nodeCache.enabled=true", *sets))["DaemonSet"]["spec"]["template"]["spec"][
        "containers"
    ]
    return list(agent["args"])


def test_a_namespace_gets_half_the_cache_by_default_and_the_share_set() -> None:
    args = _agent_args("nodeCache.maxBytes=1000000")
    assert args[args.index("--max-bytes-per-namespace") + 1] == "500000"
    args = _agent_args("nodeCache.maxBytes=1000000", "nodeCache.maxBytesPerNamespace=250000")
    assert args[args.index("--max-bytes-per-namespace") + 1] == "250000"
