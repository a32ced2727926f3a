"""Which host gets the user's MLflow credentials: the tracking server only. Local HTTP servers record
the Authorization header of every request; no real MLflow server is needed (MLflow's client, the
`mlflow` extra, is)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models.importers import mlflow_artifacts, mlflow_client
from modelversioning.cli.models.importers.mlflow_registry import SourceVersion

IMAGE = "ghcr.io/acme/fraud-server:1.4"


# ---- credentials the way MLflow's client takes them -------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"error_code": "UNAUTHENTICATED", "message": "You are not authenticated."}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_credentials_from_the_mlflow_environment_variables() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _Recorder.seen.clear()
        r = CliRunner().invoke(
            app,
            ["import", "mlflow", "m", "--all", "--image", IMAGE],
            env={"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_TOKEN": "tok123"},
        )
        assert (
            r.exit_code == 1
            and "refused the request (HTTP 401" in r.stderr
            and "MLFLOW_TRACKING_TOKEN" in r.stderr
        )
        assert "tok123" not in r.stderr
        assert _Recorder.seen == ["Bearer tok123"]

        # username and password win over a token (as in MLflow's client); user info in the URI is
        # basic auth too, and never shown
        for env in (
            {
                "MLFLOW_TRACKING_URI": url,
                "MLFLOW_TRACKING_USERNAME": "u",
                "MLFLOW_TRACKING_PASSWORD": "p",
                "MLFLOW_TRACKING_TOKEN": "ignored-like-mlflow-does",
            },
            {"MLFLOW_TRACKING_URI": url.replace("http://", "http://u:p@") + "/"},
        ):
            _Recorder.seen.clear()
            r = CliRunner().invoke(app, ["import", "mlflow", "m", "--all", "--image", IMAGE], env=env)
            assert r.exit_code == 1 and "refused the request (HTTP 401" in r.stderr, r.stderr
            assert _Recorder.seen == ["Basic dTpw"]  # base64("u:p")
            assert "u:p@" not in r.stderr and f"tracking server at {url} " in r.stderr
    finally:
        server.shutdown()


# ---- an mlflow-artifacts:// URI naming another host -------------------------------------------------
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
FILES = {"1/m/artifacts/model.bin": b"weights", "1/m/artifacts/sub/extra.txt": b"extra"}


class _ArtifactServer(http.server.BaseHTTPRequestHandler):
    """MLflow's artifact proxy for FILES: the listing (?path=DIR) and each file; records
    (path, Authorization) of every request on the server's `seen`."""

    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        if getattr(self.server, "deny", False):
            self._send(401, b'{"error_code": "UNAUTHENTICATED"}')
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path == ARTIFACTS:
            base = urllib.parse.parse_qs(url.query)["path"][0].strip("/") + "/"
            entries = {p[len(base) :].split("/")[0]: p for p in FILES if p.startswith(base)}
            files = [
                {
                    "path": n,
                    "is_dir": n != p[len(base) :],
                    **({} if "/" in p[len(base) :] else {"file_size": len(FILES[p])}),
                }
                for n, p in sorted(entries.items())
            ]
            self._send(200, json.dumps({"files": files}).encode())
        else:
            body = FILES.get(url.path.removeprefix(ARTIFACTS + "/"))
            self._send(200, body) if body is not None else self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Any, Any]]:
    """Two artifact servers on loopback: the tracking server's and another host's (another port)."""
    started = []
    for _ in range(2):
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ArtifactServer)
        s.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=s.serve_forever, daemon=True).start()
        started.append(s)
    try:
        yield started[0], started[1]
    finally:
        for s in started:
            s.shutdown()
            s.server_close()


SV = SourceVersion("m", "1", "", None, "READY", (), {}, "")


@pytest.mark.parametrize(
    ("env", "header"),
    [
        ({"MLFLOW_TRACKING_TOKEN": "tok123"}, "Bearer tok123"),
        ({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}, "Basic dTpw"),
    ],
)
def test_credentials_go_to_the_tracking_server_only(
    servers: tuple[Any, Any], env: dict[str, str], header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in {**env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(k, v)
    own, other = servers
    warnings: list[str] = []
    t = mlflow_client.Tracking.from_env(f"http://127.0.0.1:{own.server_address[1]}", {}, warn=warnings.append)

    # mlflow-artifacts:/P (the tracking server's proxy): MLflow's credentials on every request
    art = mlflow_artifacts.resolve_artifact(t, SV, "mlflow-artifacts:/1/m/artifacts", None)
    mine = mlflow_artifacts.hash_proxied(t, art)
    assert mine.files == 2 and mine.size_bytes == len(b"weights") + len(b"extra")
    assert len(own.seen) >= 4 and {h for _, h in own.seen} == {header}
    assert other.seen == [] and warnings == []

    # mlflow-artifacts://OTHER:PORT/P (a host the registry names): the same bytes, no credentials at all
    own.seen.clear()
    foreign = f"127.0.0.1:{other.server_address[1]}"
    art = mlflow_artifacts.resolve_artifact(t, SV, f"mlflow-artifacts://{foreign}/1/m/artifacts", None)
    theirs = mlflow_artifacts.hash_proxied(t, art)
    assert theirs == mine
    assert len(other.seen) >= 4 and {h for _, h in other.seen} == {None}
    assert own.seen == []
    assert len(warnings) == 1 and f"http://{foreign}" in warnings[0] and "without credentials" in warnings[0]
    assert "tok123" not in warnings[0]


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("http://mlflow.example.com:80/api/2.0", True),
        ("http://MLflow.Example.com/x", True),
        ("http://u:p@mlflow.example.com/", True),
        ("https://mlflow.example.com/", False),
        ("http://mlflow.example.com:5000/", False),
        ("http://mlflow.example.com.evil.io/", False),
        ("http://evil.io/?mlflow.example.com", False),
        ("http://mlflow.example.com:notaport/", False),
    ],
)
def test_the_tracking_server_is_its_scheme_host_and_port(url: str, own: bool) -> None:
    t = mlflow_client.Tracking("http://mlflow.example.com", "http://mlflow.example.com", None, None)
    assert t.is_tracking_server(url) is own


def test_another_host_that_wants_credentials_is_named_in_the_error(
    servers: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok123")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    own, other = servers
    other.deny = True
    t = mlflow_client.Tracking.from_env(f"http://127.0.0.1:{own.server_address[1]}", {}, warn=lambda m: None)
    foreign = f"http://127.0.0.1:{other.server_address[1]}"
    art = mlflow_artifacts.resolve_artifact(t, SV, f"mlflow-artifacts://{foreign[7:]}/1/m/artifacts", None)
    with pytest.raises(mlflow_client.MlflowError) as e:
        mlflow_artifacts.hash_proxied(t, art)
    assert e.value.status == 401 and {h for _, h in other.seen} == {None}
    assert e.value.message.startswith(f"{foreign} refused the listing of ")
    assert "credentials are sent to the tracking server only" in e.value.message
    assert "set MLFLOW_TRACKING_TOKEN" not in e.value.message
