"""The web view's in-cluster mode against the real API server (control lane): the view runs as a
subprocess (`modelversioning ui-server`, as the chart's Deployment runs it) with a ServiceAccount token
whose RBAC is the chart's own (templates/ui.yaml rendered with `helm template`), behind no proxy: the
test plays the proxy, sending its secret and identity headers.

Two users with RoleBindings in different namespaces: alice (namespace A) and bob (namespace B), both on
`ui.impersonation.users`; mallory is not. Checked over HTTP and in Chromium (the proxy's headers set
with DevTools' Network.setExtraHTTPHeaders):

- without the proxy's secret (or with another one): 401, nothing shown;
- alice sees A's model and nothing of B (a page of B is 403); bob the reverse;
- mallory (not on the list) is refused (403) before the view asks anything about her;
- an action (confirmation or POST) in the other namespace is 403;
- what the actions use (a Cluster impersonating the viewer, with the view's ServiceAccount): the API
  server says it is alice; her write in B is refused by the API server's RBAC; impersonating a user the
  chart did not list is refused by the API server itself.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from browser import Browser, chromium_path
from helpers import GROUP, VERSION, model_version
from modelversioning.api.wire import MODELVERSION
from modelversioning.cli.models.errors import ClusterError
from modelversioning.cli.models.kube import Cluster

pytestmark = pytest.mark.timeout(600)

OPERATOR_SRC = Path(__file__).resolve().parents[1] / "operator"
CHART = Path(__file__).resolve().parents[1] / "charts" / "modelversioning-operator"
SECRET = "a-secret-only-the-proxy-and-the-view-hold"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chart_ui_role(cluster: Any, users: list[str]) -> dict[str, Any]:
    """The chart's ClusterRole of the view, rendered by helm with these users."""
    helm = cluster.bin_dir / "helm" if cluster.bin_dir is not None else None
    if helm is None or not helm.exists():
        helm = next(Path.home().glob(".cache/modelversioning/*/bin/helm"))
    args = [
        str(helm),
        "template",
        "r",
        str(CHART),
        "--namespace",
        "ops",
        "--set",
        "ui.enabled=true",
        "--set",
        "ui.hosts={x}",
        "--set",
        "ui.proxy.secretName=x",
        "--set",
        f"ui.impersonation.users={{{','.join(users)}}}",
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-ui"))


def sa_kubeconfig(cluster: Any, kube: Any, ns: str, tmp_path: Path) -> Path:
    """The view's ServiceAccount in ``ns``, bound to the chart's ClusterRole; its token's kubeconfig."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="ui"))
    )
    role = chart_ui_role(cluster, ["alice", "bob"])
    name = f"{ns}-ui"
    role["metadata"] = {"name": name}
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "ui", "namespace": ns}],
        }
    )
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token("ui", ns, req).status.token
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cfg["users"] = [{"name": "ui", "user": {"token": token}}]
    for c in cfg["contexts"]:
        c["context"]["user"] = "ui"
    path = tmp_path / "ui.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def grant(kube: Any, ns: str, user: str, verbs: list[str]) -> None:
    rbac = client.RbacAuthorizationV1Api(kube)
    plurals = ["modelversions", "modelendpoints", "models", "modelapprovals"]
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": f"models-{user}"},
            "rules": [{"apiGroups": [GROUP], "resources": plurals, "verbs": verbs}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": f"models-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"models-{user}"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )


@pytest.fixture
def two_teams(cluster, kube, namespace, other_namespace, tmp_path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    a, b = namespace, other_namespace
    co = client.CustomObjectsApi(kube)
    for ns, model in ((a, "fraud-a"), (b, "churn-b")):
        co.create_namespaced_custom_object(
            GROUP, VERSION, ns, "modelversions", model_version(model, "1.0.0", "file:///m/x.bin", "a" * 64)
        )
    grant(kube, a, "alice", ["get", "list", "watch"])
    grant(kube, b, "bob", ["get", "list", "watch", "patch"])
    kubeconfig = sa_kubeconfig(cluster, kube, a, tmp_path)
    port = free_port()
    conf = {
        "port": port,
        "hosts": [f"127.0.0.1:{port}"],
        "scheme": "http",
        "readOnly": False,  # actions on: the forbidden ones are checked
        "impersonation": {"users": ["alice", "bob"], "groups": []},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    (tmp_path / "secret").write_text(SECRET + "\n")
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_SRC)}
    env.pop("KUBECONFIG", None)
    cmd = [
        sys.executable,
        "-m",
        "modelversioning.cli.main",
        "ui-server",
        "--config",
        str(tmp_path / "config.yaml"),
        "--proxy-secret-file",
        str(tmp_path / "secret"),
        "--kubeconfig",
        str(kubeconfig),
        "--address",
        "127.0.0.1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on" in line, line + (
            proc.stdout.read() if proc.stdout and proc.poll() is not None else ""
        )
        base = f"http://127.0.0.1:{port}"
        # until the shared cache has both namespaces' versions (alice sees hers)
        deadline = time.monotonic() + 30
        while "fraud-a" not in get(base + "/", "alice")[1]:
            assert time.monotonic() < deadline, "the view never showed alice her model"
            time.sleep(0.2)
        yield {"base": base, "a": a, "b": b, "kubeconfig": kubeconfig}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        rbac = client.RbacAuthorizationV1Api(kube)
        rbac.delete_cluster_role_binding(f"{a}-ui")
        rbac.delete_cluster_role(f"{a}-ui")


def proxy_headers(user: str | None, secret: str | None = SECRET) -> dict[str, str]:
    h = {}
    if secret is not None:
        h["X-Proxy-Secret"] = secret
    if user is not None:
        h["X-Forwarded-User"] = user
    return h


def get(
    url: str, user: str | None, secret: str | None = SECRET, form: dict[str, str] | None = None
) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, headers=proxy_headers(user, secret))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_each_viewer_sees_only_their_namespaces_over_http(two_teams):  # type: ignore[no-untyped-def]
    base, a, b = two_teams["base"], two_teams["a"], two_teams["b"]
    for secret in (None, "not-the-secret"):
        status, body = get(base + "/", "alice", secret)
        assert status == 401 and "fraud-a" not in body and "churn-b" not in body
    status, body = get(base + "/", "mallory")
    assert status == 403 and "impersonation list" in body
    for user, mine, theirs, ns, other in (
        ("alice", "fraud-a", "churn-b", a, b),
        ("bob", "churn-b", "fraud-a", b, a),
    ):
        status, body = get(base + "/", user)
        assert status == 200 and mine in body and theirs not in body and other not in body, user
        status, body = get(f"{base}/ns/{ns}/models/{mine}", user)
        assert status == 200 and "1.0.0" in body
        for path in (f"/ns/{other}/models/{theirs}", f"/ns/{other}/endpoints/{theirs}"):
            status, body = get(base + path, user)
            assert status == 403 and "may not list" in body and "1.0.0" not in body, (user, path)
        # an action in the other namespace: its confirmation and its POST are forbidden
        status, body = get(f"{base}/ns/{ns}/confirm/promote?model={mine}&version=1.0.0", user)
        assert status == 200, body  # in their own namespace the confirmation shows (with their CSRF field)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
        assert csrf
        status, body = get(f"{base}/ns/{other}/confirm/promote?model={theirs}&version=1.0.0", user)
        assert status == 403 and "may not list" in body
        form = {"model": theirs, "version": "1.0.0", "stage": "staging", "csrf": csrf.group(1)}
        status, body = get(f"{base}/ns/{other}/act/promote", user, form=form)
        assert status == 403 and "may not list" in body, body


def test_the_actions_path_impersonates_the_viewer_with_the_charts_rbac(two_teams):  # type: ignore[no-untyped-def]
    """What the view's actions run on (connect_as: a Cluster with the view's ServiceAccount and
    Impersonate-User), against the real API server."""
    kubeconfig, a, b = str(two_teams["kubeconfig"]), two_teams["a"], two_teams["b"]
    alice_in_b = Cluster(kubeconfig, None, b, impersonate=("alice", ()))
    assert alice_in_b.current_user() == "alice"  # the API server's SelfSubjectReview: the actor recorded
    with pytest.raises(ClusterError) as e:
        alice_in_b.merge_patch(MODELVERSION, "churn-b-v1.0.0", {"metadata": {"annotations": {"x": "y"}}})
    assert e.value.status == 403 and "alice" in e.value.message
    bob_in_b = Cluster(kubeconfig, None, b, impersonate=("bob", ()))
    bob_in_b.merge_patch(MODELVERSION, "churn-b-v1.0.0", {"metadata": {"annotations": {"seen-by": "bob"}}})
    with pytest.raises(ClusterError) as e:
        Cluster(kubeconfig, None, a, impersonate=("mallory", ())).get(MODELVERSION, "fraud-a-v1.0.0")
    assert e.value.status == 403 and "impersonate" in e.value.message  # not on the chart's list
    with pytest.raises(ClusterError) as e:  # nor a group the chart did not list
        Cluster(kubeconfig, None, a, impersonate=("alice", ("system:masters",))).get(
            MODELVERSION, "fraud-a-v1.0.0"
        )
    assert e.value.status == 403
    with pytest.raises(ClusterError) as e:  # the view's own rights write nothing
        Cluster(kubeconfig, None, b).merge_patch(
            MODELVERSION, "churn-b-v1.0.0", {"metadata": {"labels": {"x": "y"}}}
        )
    assert e.value.status == 403


def test_two_viewers_in_chromium(two_teams):  # type: ignore[no-untyped-def]
    if chromium_path() is None:
        pytest.fail("no chromium: run e2e/ensure-chromium.sh")
    base, a, b = two_teams["base"], two_teams["a"], two_teams["b"]
    with Browser() as br:
        br.page("Network.enable")
        br.goto(base + "/")
        assert "not from the authenticating proxy" in br.text("body")
        for user, mine, theirs, other in (
            ("alice", "fraud-a", "churn-b", b),
            ("bob", "churn-b", "fraud-a", a),
        ):
            br.page("Network.setExtraHTTPHeaders", {"headers": proxy_headers(user)})
            br.goto(base + "/")
            br.wait("(document.getElementById('live') || {innerText: ''}).innerText.startsWith('live')", 15)
            main = br.text()
            assert mine in main and theirs not in main, (user, main)
            assert f"as {user}" in br.text("header")
            br.goto(f"{base}/ns/{other}/models/{theirs}")
            assert "may not list" in br.text("body") and "1.0.0" not in br.text("body")
