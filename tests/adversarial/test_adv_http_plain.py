"""The standard-library http(s) reader (``artifacts/http_plain.py``, issue 25: the init container's start
and read speed) keeps every rule the aiohttp client enforced; the cases here are the ones only the new
client can get wrong (the rest of the http(s) rules are tested through ``verify_artifact`` in
test_adv_policy, test_adv_credentials, test_adv_bounded_verification and tests/test_artifacts.py)."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from typing import Any

import pytest
from servers import ForwardProxy, HTTPServer
from test_adv_credentials import fake_dns  # noqa: F401 - the fixture: names that resolve as a test says

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, verify_artifact
from modelversioning.cli.verify import main as verify_cli

LOOPBACK = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])
SHA_ABC = hashlib.sha256(b"abc").hexdigest()


def test_a_name_that_rebinds_to_loopback_is_refused_at_connect_time(fake_dns: dict[str, list[str]]) -> None:  # noqa: F811
    # the URI's check resolves the name to a public address; the connection resolves it again (loopback)
    with HTTPServer({"/m.bin": (200, {}, b"abc")}) as srv:
        fake_dns["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
        r = verify_artifact(f"http://rebind.test:{srv.port}/m.bin", SHA_ABC, policy=ArtifactPolicy(), env={})
        seen = list(srv.seen)
    assert r.reason is Reason.URI_REFUSED and not r.transient, r.message
    assert "resolves to a refused address" in r.message
    assert seen == []  # nothing reached the loopback server


def test_the_bytes_sent_are_hashed_whatever_their_content_encoding() -> None:
    # an object stored gzip-encoded is the bytes stored (as s3:// reads them), not what they inflate to
    raw = gzip.compress(b"model weights " * 100)
    with HTTPServer({"/m.bin": (200, {"Content-Encoding": "gzip"}, raw)}) as srv:
        stored = verify_artifact(
            f"{srv.base}/m.bin", hashlib.sha256(raw).hexdigest(), policy=LOOPBACK, env={}
        )
        inflated = hashlib.sha256(gzip.decompress(raw)).hexdigest()
        other = verify_artifact(f"{srv.base}/m.bin", inflated, policy=LOOPBACK, env={})
    assert stored.ok and stored.size_bytes == len(raw), stored.message
    assert other.reason is Reason.DIGEST_MISMATCH


class RawServer:
    """Answers every request with ``answer(method)`` (raw bytes), or with ``streaming``
    ``answer(method, connection)`` writing what it likes, then closes the connection."""

    def __init__(self, answer: Any, streaming: bool = False) -> None:
        self.answer = answer
        self.streaming = streaming
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.methods: list[str] = []

    def __enter__(self) -> RawServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        break
                    request += data
                method = request.split(b" ", 1)[0].decode()
                self.methods.append(method)
                try:
                    if self.streaming:
                        self.answer(method, conn)
                    else:
                        conn.sendall(self.answer(method))
                except OSError:
                    pass  # the client hung up


def test_a_body_that_ends_before_its_content_length_is_never_a_digest() -> None:
    def answer(method: str) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        return head if method == "HEAD" else head + b"abc"

    with RawServer(answer) as srv:
        r = verify_artifact(f"{srv.base}/m.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.FETCH_FAILED and r.transient, r.message
    assert "Content-Length" in r.message or "truncated" in r.message, r.message


def test_a_server_without_head_is_read_by_its_get() -> None:
    def answer(method: str) -> bytes:
        if method == "HEAD":
            return b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"

    with RawServer(answer) as srv:
        r = verify_artifact(f"{srv.base}/m.bin", SHA_ABC, policy=LOOPBACK, env={})
        methods = list(srv.methods)
    assert r.ok, r.message
    assert methods == ["HEAD", "GET"]


def test_a_redirect_loop_ends() -> None:
    with HTTPServer({"/a": (302, {"Location": "/a"}, b"")}) as srv:
        r = verify_artifact(f"{srv.base}/a", SHA_ABC, policy=LOOPBACK, env={})
        hops = len(srv.seen)
    assert r.reason is Reason.URI_REFUSED and "redirects" in r.message, r.message
    assert hops == 11  # the first request and 10 redirects


def test_statuses_say_what_went_wrong() -> None:
    routes = {"/gone": (410, {}, b""), "/denied": (403, {}, b""), "/broken": (500, {}, b"")}
    with HTTPServer(routes) as srv:
        results = {p: verify_artifact(f"{srv.base}{p}", SHA_ABC, policy=LOOPBACK, env={}) for p in routes}
    assert results["/gone"].reason is Reason.NOT_FOUND and results["/gone"].transient
    assert results["/denied"].reason is Reason.ACCESS_DENIED and not results["/denied"].transient
    assert results["/broken"].reason is Reason.FETCH_FAILED and results["/broken"].transient
    assert "HTTP 500" in results["/broken"].message


# ------------------------------------------------------------------ found by the session's hostile review


def test_a_redirect_to_another_scheme_is_not_followed_as_http() -> None:
    # as first written: s3://anyhost:port/path was followed as http://anyhost:port/path, past allowedHosts
    policy = ArtifactPolicy(allowed_hosts=["127.0.0.1", "s3.amazonaws.com"], allow_private_networks=True)
    with HTTPServer({"/secret": (200, {}, b"abc")}) as evil:
        with HTTPServer({"/m.bin": (302, {"Location": f"s3://localhost:{evil.port}/secret"}, b"")}) as srv:
            r = verify_artifact(f"{srv.base}/m.bin", SHA_ABC, policy=policy, env={})
        seen = list(evil.seen)
    assert r.reason is Reason.URI_REFUSED and not r.transient, r.message
    assert seen == []


def test_a_chunked_body_whose_trailers_trickle_is_cut_at_the_deadline() -> None:
    # as first written: the deadline was checked between reads only; http.client reads trailers on its own
    stop = threading.Event()

    def answer(method: str, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        if method == "HEAD":
            return
        conn.sendall(b"3\r\nabc\r\n0\r\n")
        while not stop.wait(0.2):
            conn.sendall(b"X-Trailer: y\r\n")

    policy = LOOPBACK.model_copy(update={"timeout_seconds": 1.0})
    results: list[Any] = []
    with RawServer(answer, streaming=True) as srv:
        t0 = time.monotonic()
        uri = f"{srv.base}/m.bin"
        reader = threading.Thread(
            target=lambda: results.append(verify_artifact(uri, SHA_ABC, policy=policy, env={})), daemon=True
        )
        reader.start()
        reader.join(10)
        took = time.monotonic() - t0
        stop.set()
    assert results, f"still reading after {took:.1f} s (deadline 1 s)"
    assert results[0].reason is Reason.LIMIT_EXCEEDED and not results[0].transient, results[0].message
    assert took < 5, took


def test_a_redirect_url_that_cannot_be_sent_does_not_show_its_query() -> None:
    # as first written: http.client's InvalidURL message carried the path and query into the status
    routes = {"/m.bin": (302, {"Location": "/model bin?X-Amz-Signature=SECRETSIG"}, b"")}
    with HTTPServer(routes) as srv:
        r = verify_artifact(f"{srv.base}/m.bin", SHA_ABC, policy=LOOPBACK, env={})
        paths = [p for p, _ in srv.seen]
    assert not r.ok and "SECRETSIG" not in r.message, r.message
    assert paths[1:] == ["/model%20bin?X-Amz-Signature=SECRETSIG"]  # percent-encoded, as yarl did


def test_a_redirect_to_an_invalid_port_is_refused() -> None:
    with HTTPServer({"/m.bin": (302, {"Location": "http://127.0.0.1:99999/x"}, b"")}) as srv:
        r = verify_artifact(f"{srv.base}/m.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.URI_REFUSED and not r.transient, r.message


def test_the_init_container_ignores_a_proxy_its_artifact_secret_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # envFrom puts every key of the tenant's Secret in the environment: a proxy there would be exempt from
    # the address check (as first written, and before this client too)
    with HTTPServer({"/m.bin": (200, {}, b"abc")}) as srv, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        argv = [f"{srv.base}/m.bin", "--sha256", SHA_ABC, "--env-credentials", "secret",
                "--policy-json", LOOPBACK.model_dump_json(by_alias=True)]  # fmt: skip
        code = verify_cli(argv)
        forwarded = list(proxy.forwarded)
    assert code == 0
    assert forwarded == []
    assert "ignored HTTP_PROXY" in capsys.readouterr().err


def test_an_abbreviated_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse accepts --sha for --sha256 by default; the typer command it replaced did not
    assert verify_cli(["file:///x", "--sha", SHA_ABC]) == 2
    assert "required: --sha256" in capsys.readouterr().err
