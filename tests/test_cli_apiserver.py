"""`kubectl models`' own HTTP access to the API server (cli/models/apiserver.py), against a loopback
TLS server: the credentials a kubeconfig can hold (token, token file, client certificate, user and
password; the CA, insecure-skip-tls-verify, tls-server-name), the requests as the kubernetes client
sends them, its errors, its one retry, watches; and what is left to the kubernetes client (exec
plugins, auth-providers, proxies), which still works."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fake_apiserver import Pki, Request, kubeconfig, make_pki, serve, status
from modelversioning.api.wire import MODELENDPOINT, MODELVERSION
from modelversioning.cli.models import apiserver
from modelversioning.cli.models.apiserver import HttpApi
from modelversioning.cli.models.errors import ClusterError
from modelversioning.cli.models.kube import Cluster, WaitTimeout

EP_PATH = "/apis/modelversioning.io/v1alpha1/namespaces/models/modelendpoints/fraud"


def endpoint(rv: str = "7", weights: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "namespace": "models", "resourceVersion": rv},
        "status": {"effectiveWeights": weights or {"stable": 0, "canary": 100}},
    }


def answers(req: Request) -> tuple[int | str, Any]:
    if req.path == EP_PATH and req.method in ("GET", "PATCH"):
        return 200, endpoint()
    if req.path.endswith("/selfsubjectreviews"):
        return 201, {"status": {"userInfo": {"username": "jane@example.com", "groups": ["team-a"]}}}
    return status(404, "NotFound", f'modelendpoints "{req.path.rsplit("/", 1)[-1]}" not found')


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), dns="apiserver.test")


def ca_data(pki: Pki) -> str:
    return base64.b64encode(pki.ca.read_bytes()).decode()


def cluster_for(tmp_path: Path, server: str, user: dict[str, Any], **cluster: Any) -> Cluster:
    return Cluster(str(kubeconfig(tmp_path / "kubeconfig", {"server": server, **cluster}, user)))


# ---- requests as the kubernetes client sends them ------------------------------------------------
def test_token_and_ca_data_get_patch_and_who_am_i(tmp_path: Path, pki: Pki) -> None:
    with serve(answers, pki) as srv:
        c = cluster_for(
            tmp_path, srv.url, {"token": "s3cret"}, **{"certificate-authority-data": ca_data(pki)}
        )
        assert c.get(MODELENDPOINT, "fraud")["metadata"]["resourceVersion"] == "7"
        c.merge_patch(MODELENDPOINT, "fraud", {"spec": {"variants": []}})
        assert c.current_identity() == ("jane@example.com", ["team-a"])
        assert c.get_or_none(MODELVERSION, "missing") is None
        assert isinstance(c._api, HttpApi)
    get, patch, review = srv.requests[0], srv.requests[1], srv.requests[2]
    assert (get.method, get.path, get.headers["authorization"]) == ("GET", EP_PATH, "Bearer s3cret")
    assert get.headers["accept"] == "application/json"
    assert get.headers["user-agent"].split("/")[0] == "OpenAPI-Generator"  # the same field manager as before
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.body == {"spec": {"variants": []}}
    assert review.path == "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    assert review.body == {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    assert [r.method for r in srv.requests] == ["GET", "PATCH", "POST", "GET"]


def test_api_errors_read_like_kubectl_and_keep_their_status(tmp_path: Path, pki: Pki) -> None:
    with serve(answers, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        with pytest.raises(ClusterError) as e:
            c.get(MODELVERSION, "fraud-v9")
    assert e.value.status == 404
    assert e.value.message == 'Error from server (NotFound): modelendpoints "fraud-v9" not found'


def test_list_across_namespaces_with_a_label_selector(tmp_path: Path, pki: Pki) -> None:
    def route(req: Request) -> tuple[int, Any]:
        return 200, {"items": [{"metadata": {"name": "a"}}], "metadata": {"resourceVersion": "3"}}

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        assert c.list(MODELVERSION, all_namespaces=True, label_selector="a=b") == [
            {"metadata": {"name": "a"}}
        ]
    assert srv.requests[0].path == "/apis/modelversioning.io/v1alpha1/modelversions"
    assert srv.requests[0].query == {"labelSelector": "a=b"}


# ---- TLS and credentials ---------------------------------------------------------------------------
def test_a_server_certificate_from_another_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    with serve(answers, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.other_ca)})
        with pytest.raises(ClusterError, match="cannot reach the API server .*CERTIFICATE_VERIFY_FAILED"):
            c.get(MODELENDPOINT, "fraud")
        assert srv.requests == []  # the token never left
        insecure = cluster_for(tmp_path / "i", srv.url, {"token": "t"}, **{"insecure-skip-tls-verify": True})
        assert insecure.get(MODELENDPOINT, "fraud")["metadata"]["name"] == "fraud"


def test_tls_server_name_is_the_name_the_certificate_must_carry(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", dns="apiserver.test", ip=False)  # not valid for 127.0.0.1
    with serve(answers, pki) as srv:
        base = {"certificate-authority": str(pki.ca)}
        named = cluster_for(
            tmp_path / "a", srv.url, {"token": "t"}, **base, **{"tls-server-name": "apiserver.test"}
        )
        assert named.get(MODELENDPOINT, "fraud")["metadata"]["name"] == "fraud"
        with pytest.raises(ClusterError, match="cannot reach"):
            cluster_for(tmp_path / "b", srv.url, {"token": "t"}, **base).get(MODELENDPOINT, "fraud")


def test_a_client_certificate_inline_or_as_files_relative_to_the_kubeconfig(tmp_path: Path, pki: Pki) -> None:
    with serve(answers, pki, client_cert="required") as srv:
        inline = {
            "client-certificate-data": base64.b64encode(pki.client_cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(pki.client_key.read_bytes()).decode(),
        }
        c = cluster_for(tmp_path / "a", srv.url, inline, **{"certificate-authority-data": ca_data(pki)})
        c.get(MODELENDPOINT, "fraud")
        d = tmp_path / "b"
        d.mkdir()
        for src in (pki.client_cert, pki.client_key, pki.ca):
            (d / src.name).write_bytes(src.read_bytes())
        files = {"client-certificate": "client.crt", "client-key": "client.key"}
        c = cluster_for(d, srv.url, files, **{"certificate-authority": "ca.crt"})
        c.get(MODELENDPOINT, "fraud")
    assert [r.client_cn for r in srv.requests] == ["jane", "jane"]
    assert all("authorization" not in r.headers for r in srv.requests)


def test_token_file_then_basic_auth(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "token").write_text("from-file")
    with serve(answers, pki) as srv:
        ca = {"certificate-authority": str(pki.ca)}
        cluster_for(tmp_path, srv.url, {"tokenFile": "token"}, **ca).get(MODELENDPOINT, "fraud")
        both = {"token": "tok", "username": "jane", "password": "pw"}
        cluster_for(tmp_path / "b", srv.url, both, **ca).get(MODELENDPOINT, "fraud")
        basic = {"username": "jane", "password": "pw"}
        cluster_for(tmp_path / "c", srv.url, basic, **ca).get(MODELENDPOINT, "fraud")
    auth = [r.headers["authorization"] for r in srv.requests]
    assert auth == ["Bearer from-file", "Bearer tok", "Basic " + base64.b64encode(b"jane:pw").decode()]


@pytest.mark.parametrize(
    ("cluster", "user", "env"),
    [
        ({}, {"exec": {"command": "x", "apiVersion": "client.authentication.k8s.io/v1"}}, {}),
        ({}, {"auth-provider": {"name": "oidc"}}, {}),
        ({"proxy-url": "http://proxy:3128"}, {"token": "t"}, {}),
        ({}, {"token": "t"}, {"HTTPS_PROXY": "http://proxy:3128"}),
        ({}, {"token": "t"}, {"all_proxy": "socks5://proxy:1080"}),
        ({"certificate-authority": "/does/not/exist"}, {"token": "t"}, {}),
    ],
    ids=["exec", "auth-provider", "proxy-url", "env-proxy", "all-proxy", "missing-ca-file"],
)
def test_what_is_left_to_the_kubernetes_client(
    cluster: dict[str, Any], user: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert apiserver.credentials({"server": "https://127.0.0.1:6443", **cluster}, user, "/", "/") is None


def test_an_exec_plugin_goes_through_the_kubernetes_client(tmp_path: Path, pki: Pki) -> None:
    plugin = tmp_path / "plugin.py"
    cred = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "status": {"token": "from-plugin"}}  # fmt: skip
    plugin.write_text(f"import json\nprint(json.dumps({cred!r}))\n")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin)], "interactiveMode": "Never"}}  # fmt: skip
    with serve(answers, pki) as srv:
        c = cluster_for(tmp_path, srv.url, user, **{"certificate-authority-data": ca_data(pki)})
        assert c.get(MODELENDPOINT, "fraud")["metadata"]["name"] == "fraud"
        assert not isinstance(c._api, HttpApi)
        with pytest.raises(ClusterError) as e:
            c.get(MODELVERSION, "gone")
    assert e.value.status == 404 and e.value.message.startswith("Error from server (NotFound): ")
    assert srv.requests[0].headers["authorization"] == "Bearer from-plugin"


# ---- connections: keep-alive, the one retry ----------------------------------------------------------
@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_a_connection_the_server_closed_meanwhile_is_replaced_and_a_patch_is_sent_once(
    tmp_path: Path, pki: Pki, tls: bool
) -> None:
    with serve(answers, pki if tls else None, keep_alive=False) as srv:
        c = cluster_for(
            tmp_path, srv.url, {"token": "t"}, **({"certificate-authority": str(pki.ca)} if tls else {})
        )
        c.get(MODELENDPOINT, "fraud")
        srv.wait_closed(1)  # the kept-alive connection is gone, the client was not told
        c.merge_patch(MODELENDPOINT, "fraud", {"metadata": {}})
        srv.wait_closed(2)
        c.get(MODELENDPOINT, "fraud")
    assert [r.method for r in srv.requests] == ["GET", "PATCH", "GET"]


def test_an_idle_connection_is_dropped_once_the_peer_closed_it() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert not apiserver._dropped(a)  # open and idle: reusable
        b.close()
        assert apiserver._dropped(a)  # the peer's FIN: readable, a new connection is needed


def test_an_unanswered_get_is_retried_once_an_unanswered_patch_never(tmp_path: Path, pki: Pki) -> None:
    dropped: list[str] = []

    def flaky(req: Request) -> tuple[int | str, Any]:
        if req.method not in dropped:  # the first of each method: no answer
            dropped.append(req.method)
            return "drop", None
        return answers(req)

    with serve(flaky, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        assert c.get(MODELENDPOINT, "fraud")["metadata"]["name"] == "fraud"
        with pytest.raises(ClusterError, match="cannot reach the API server"):
            c.merge_patch(MODELENDPOINT, "fraud", {"metadata": {}})
    assert [r.method for r in srv.requests] == ["GET", "GET", "PATCH"]


def test_nothing_listening_is_a_cluster_error(tmp_path: Path) -> None:
    c = cluster_for(tmp_path, "http://127.0.0.1:1", {"token": "t"})
    with pytest.raises(ClusterError, match=r"cannot reach the API server http://127.0.0.1:1: .*refused"):
        c.get(MODELENDPOINT, "fraud")


# ---- watches ----------------------------------------------------------------------------------------
def test_wait_lists_then_watches_from_the_listed_version_and_lists_again_after_410(
    tmp_path: Path, pki: Pki
) -> None:
    watches: list[list[dict[str, Any]]] = [
        [
            {
                "type": "ERROR",
                "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
            }
        ],
        [
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "11"}}},
            {"type": "MODIFIED", "object": endpoint("12", {"stable": 50, "canary": 50})},
            {"type": "MODIFIED", "object": endpoint("13", {"stable": 100, "canary": 0})},
        ],
    ]

    def route(req: Request) -> tuple[int, Any]:
        if req.query.get("watch") == "true":
            return 200, watches.pop(0)
        return 200, {"items": [endpoint("10")], "metadata": {"resourceVersion": "10"}}

    def done(obj: dict[str, Any] | None) -> dict[str, int] | None:
        w = (obj or {}).get("status", {}).get("effectiveWeights", {})
        return w if w.get("stable") == 100 else None

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        assert c.wait(MODELENDPOINT, "fraud", done, timeout=20) == {"stable": 100, "canary": 0}
    kinds = [
        ("watch" if r.query.get("watch") else "list", r.query.get("resourceVersion")) for r in srv.requests
    ]
    assert kinds == [("list", None), ("watch", "10"), ("list", None), ("watch", "10")]
    assert all(r.query["fieldSelector"] == "metadata.name=fraud" for r in srv.requests)


def test_wait_times_out_with_the_last_object(tmp_path: Path, pki: Pki) -> None:
    def route(req: Request) -> tuple[int, Any]:
        if req.query.get("watch") == "true":
            return 200, [{"type": "MODIFIED", "object": endpoint("12")}]
        return 200, {"items": [endpoint("10")], "metadata": {"resourceVersion": "10"}}

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        with pytest.raises(WaitTimeout) as e:
            c.wait(MODELENDPOINT, "fraud", lambda obj: None, timeout=0.3)
    assert e.value.last is not None and e.value.last["metadata"]["resourceVersion"] in ("10", "12")


def test_a_forbidden_watch_is_a_cluster_error(tmp_path: Path, pki: Pki) -> None:
    def route(req: Request) -> tuple[int, Any]:
        if req.query.get("watch") == "true":
            return status(403, "Forbidden", "cannot watch")
        return 200, {"items": [], "metadata": {"resourceVersion": "1"}}

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        with pytest.raises(ClusterError) as e:
            c.wait(MODELENDPOINT, "fraud", lambda obj: None, timeout=5)
    assert e.value.status == 403 and e.value.message == "Error from server (Forbidden): cannot watch"


# ---- the point of it all -------------------------------------------------------------------------------
def test_the_first_request_loads_neither_the_kubernetes_client_nor_urllib3(tmp_path: Path, pki: Pki) -> None:
    code = (
        "import json, sys\n"
        "from modelversioning.api.wire import MODELENDPOINT\n"
        "from modelversioning.cli.models.kube import Cluster\n"
        f"Cluster({str(tmp_path / 'kubeconfig')!r}).get(MODELENDPOINT, 'fraud')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3'))))\n"
    )
    with serve(answers, pki) as srv:
        cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority-data": ca_data(pki)})
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [] and len(srv.requests) == 1


def test_may_asks_a_self_subject_access_review_and_reads_allowed_and_denied(tmp_path: Path, pki: Pki) -> None:
    """`kubectl models quarantine` asks the API server, as the caller, before writing for them."""

    def route(req: Request) -> tuple[int, Any]:
        attrs = req.body["spec"]["resourceAttributes"]
        if attrs["namespace"] == "team-a":
            return 201, {"status": {"allowed": True}}
        return 201, {"status": {"allowed": False, "reason": "no RBAC policy matched"}}

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        assert c.may("patch", MODELVERSION, "team-a") == ""
        assert c.may("update", MODELENDPOINT, "team-b") == (
            "you may not update modelendpoints.modelversioning.io in team-b (no RBAC policy matched)"
        )
    first = srv.requests[0]
    assert (first.method, first.path) == ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert first.body == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": "team-a",
                "verb": "patch",
                "group": "modelversioning.io",
                "resource": "modelversions",
            }
        },
    }


def test_may_fails_closed_when_the_review_cannot_be_asked(tmp_path: Path, pki: Pki) -> None:
    def route(req: Request) -> tuple[int, Any]:
        return status(403, "Forbidden", "selfsubjectaccessreviews is forbidden")

    with serve(route, pki) as srv:
        c = cluster_for(tmp_path, srv.url, {"token": "t"}, **{"certificate-authority": str(pki.ca)})
        assert c.may("patch", MODELVERSION, "team-a").startswith("cannot ask whether you may patch")
