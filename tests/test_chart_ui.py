"""The chart's in-cluster web view (templates/ui.yaml, values ui.*), rendered with `helm template`: off by
default; when on, its ServiceAccount may impersonate exactly the listed users and groups (no rule at
all for an empty list: an `impersonate` rule without resourceNames would allow anyone), never
serviceaccounts, and holds no right of the operator's; the config the view reads is the values'."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from modelversioning.cli.models.ui import incluster_main
from test_chart_networkpolicy import CHART, HELM, template

ON = ("ui.enabled=true", "ui.hosts={models.example.com}", "ui.proxy.secretName=ui-proxy")


def ui_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "ui"]


def impersonation(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every RBAC rule of the chart that grants impersonate (or *) on anything."""
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")]
    return [
        r for d in roles for r in d.get("rules") or [] if {"impersonate", "*"} & set(r.get("verbs") or [])
    ]


def test_the_view_is_off_by_default_and_nothing_may_impersonate():
    docs = template()
    assert ui_objects(docs) == []
    assert impersonation(docs) == []


def test_impersonate_only_the_listed_users_and_groups():
    docs = template(*ON, "ui.impersonation.users={alice,bob}", "ui.impersonation.groups={team-a}")
    rules = impersonation(docs)
    assert sorted((r["resources"], r["resourceNames"], r["apiGroups"]) for r in rules) == [
        (["groups"], ["team-a"], [""]),
        (["users"], ["alice", "bob"], [""]),
    ]
    (role,) = [d for d in ui_objects(docs) if d["kind"] == "ClusterRole"]
    for rule in role["rules"]:
        assert "serviceaccounts" not in rule["resources"] and "secrets" not in rule["resources"]
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        writes = set(rule["verbs"]) - {"get", "list", "watch", "impersonate"}
        assert writes <= {"create"} and (not writes or rule["resources"] == ["subjectaccessreviews"]), rule
    (binding,) = [d for d in ui_objects(docs) if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "r-modelversioning-operator-ui", "namespace": "ops"}
    ]
    (deploy,) = [d for d in ui_objects(docs) if d["kind"] == "Deployment"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "r-modelversioning-operator-ui"
    # the operator's own ServiceAccount is not the view's
    operator = next(d for d in docs if d["kind"] == "Deployment" and d is not deploy)
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] != "r-modelversioning-operator-ui"


@pytest.mark.parametrize(
    "lists", [(), ("ui.impersonation.users={alice}",), ("ui.impersonation.groups={team-a}",)]
)
def test_an_empty_list_grants_no_impersonation_at_all(lists: tuple[str, ...]):
    rules = impersonation(template(*ON, *lists))
    assert all(r.get("resourceNames") for r in rules), rules  # never a rule without names
    kinds = {r["resources"][0] for r in rules}
    assert kinds == {"users" if "users" in s else "groups" for s in lists}


def test_the_config_the_view_reads_is_the_values_and_read_only_by_default():
    docs = template(*ON, "ui.impersonation.users={alice}", "ui.impersonation.groups={team-a}",
                    "ui.proxy.userHeader=X-Auth-Request-User")  # fmt: skip
    (cm,) = [d for d in ui_objects(docs) if d["kind"] == "ConfigMap"]
    conf = yaml.safe_load(cm["data"]["config.yaml"])
    cfg, _cache, server = incluster_main.build(conf, b"x" * 32, None)
    assert cfg.read_only and cfg.allowed_hosts() == {"models.example.com"}
    assert server.incluster is not None
    trust = server.incluster.trust
    assert (
        trust.users == {"alice"} and trust.groups == {"team-a"} and trust.user_header == "X-Auth-Request-User"
    )
    (deploy,) = [d for d in ui_objects(docs) if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert (
        c["args"][0] == "ui-server"
        and "--proxy-secret-file=/etc/modelversioning-ui-proxy/secret" in c["args"]
    )
    assert {
        "name": "proxy-secret",
        "secret": {"secretName": "ui-proxy", "items": [{"key": "secret", "path": "secret"}]},
    } in pod["volumes"]
    off = yaml.safe_load(
        next(d for d in ui_objects(template(*ON, "ui.readOnly=false")) if d["kind"] == "ConfigMap")["data"][
            "config.yaml"
        ]
    )
    assert off["readOnly"] is False


@pytest.mark.parametrize("missing", ["ui.hosts", "ui.proxy.secretName"])
def test_enabling_without_hosts_or_the_proxy_secret_fails(missing: str):
    sets = [s for s in ON if not s.startswith(missing + "=")]
    assert HELM is not None
    args = [HELM, "template", "r", str(CHART), "--namespace", "ops"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and missing in out.stderr


def test_only_the_proxy_may_reach_the_view():
    docs = template(*ON, "ui.proxy.from[0].podSelector.matchLabels.app=oauth2-proxy")
    (np,) = [d for d in ui_objects(docs) if d["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        }
    ]
    (np,) = [d for d in ui_objects(template(*ON)) if d["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"] == []  # no proxy listed: nobody
