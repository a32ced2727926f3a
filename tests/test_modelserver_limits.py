"""The reference model server's hardening: request bodies within the limit whatever their framing
(modelserver.body), and the fault port's token (modelserver.faults). Real sockets on loopback for the
server; an in-memory stream for what the body reader consumes."""

from __future__ import annotations

import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from modelversioning.modelserver import Identity, ModelServer, ServerConfig
from modelversioning.modelserver.body import BodyError, read_body
from modelversioning.modelserver.faults import admin_token, token_matches
from modelversioning.modelserver.server import MAX_BODY

TOKEN = "fault-port-token-0123456789"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ModelServer]:
    (tmp_path / "model.bin").write_bytes(b"weights")
    config = ServerConfig(
        model_path=str(tmp_path / "model.bin"),
        identity=Identity(model="m", version="1.0.0", hostname="pod-a"),
        host="127.0.0.1",
        port=0,
        admin_port=0,
        admin_token=TOKEN,
    )
    with ModelServer(config) as srv:
        yield srv


def _raw(port: int, data: bytes) -> tuple[int, str]:
    """Send raw bytes and read the answer; the connection stays open for writing, so a server that
    waits for more of the body times the test out instead of answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        head = b""
        while b"\r\n\r\n" not in head:
            got = s.recv(4096)
            assert got, f"connection closed without an answer after {head!r}"
            head += got
    lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    return int(lines[0].split()[1]), "\n".join(lines[1:]).lower()


def _chunked(body: bytes) -> bytes:
    return b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


# ---- request bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size_line",
    [b"-1", b"-0", b"+10", b"0x10", b"1_0", b"zz", b"", b" ", b"-FFFFFFFF", b"a" * 17, b"5 5"],
)
def test_a_malformed_chunk_size_is_refused_without_reading_on(server: ModelServer, size_line: bytes) -> None:
    # a negative size used to read the rest of the connection (past the 1 MiB limit): here it never ends
    code, headers = _raw(server.port, _chunked(size_line + b"\r\n" + b"x" * 64))
    assert code == 400 and "connection: close" in headers


def test_chunked_and_content_length_framing_errors(server: ModelServer) -> None:
    assert _raw(server.port, _chunked(b"4\r\nabcdXY\r\n0\r\n\r\n"))[0] == 400  # no CRLF after the data
    assert _raw(server.port, _chunked(b"1" * 5000))[0] == 400  # a size line with no end
    for value in (b"-1", b"+5", b"1_0", b"abc"):
        req = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\nxx"
        assert _raw(server.port, req)[0] == 400, value


def test_bodies_over_the_limit_are_refused_before_their_bytes_are_sent(server: ModelServer) -> None:
    over = b"%x" % (MAX_BODY + 1)
    code, headers = _raw(server.port, _chunked(over + b"\r\n"))
    assert code == 413 and "connection: close" in headers
    half = b"%x" % (MAX_BODY // 2)
    code, _ = _raw(server.port, _chunked(half + b"\r\n" + b"x" * (MAX_BODY // 2) + b"\r\n" + half + b"1\r\n"))
    assert code == 413
    req = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    assert _raw(server.port, req)[0] == 413


def test_a_valid_chunked_body_with_extensions_and_trailers_is_served(server: ModelServer) -> None:
    code, _ = _raw(server.port, _chunked(b'3;ext=1\r\n{"a\r\n4\r\n": 1\r\n1\r\n}\r\n0\r\nX-T: y\r\n\r\n'))
    assert code == 200


def test_the_reader_consumes_no_more_than_the_limit() -> None:
    chunk = b"40\r\n" + b"x" * 64 + b"\r\n"
    stream = io.BytesIO(chunk * 100 + b"0\r\n\r\n")
    headers = Message()
    headers["Transfer-Encoding"] = "chunked"
    with pytest.raises(BodyError) as e:
        read_body(stream, headers, 100)
    assert e.value.code == 413
    assert stream.tell() <= len(chunk) + len(b"40\r\n")  # the second chunk's data was never read
    stream = io.BytesIO(b"-1\r\n" + b"x" * 10_000)
    with pytest.raises(BodyError) as e:
        read_body(stream, headers, 100)
    assert e.value.code == 400 and stream.tell() == len(b"-1\r\n")
    trailers = io.BytesIO(b"1\r\nx\r\n0\r\n" + b"X-T: yyyyyyyyyy\r\n" * 20 + b"\r\n")
    with pytest.raises(BodyError) as e:
        read_body(trailers, headers, 100)
    assert e.value.code == 413
    assert read_body(io.BytesIO(b"2\r\nab\r\n0\r\n\r\n"), headers, 2) == b"ab"


# ---- the fault port's token --------------------------------------------------------------------------
def _admin(port: int, method: str = "GET", body: bytes | None = None, auth: str | None = None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/faults", data=body, method=method)
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            assert e.headers.get("WWW-Authenticate", "").startswith("Bearer")
        return int(e.code)


def test_the_fault_port_requires_the_token(server: ModelServer) -> None:
    port = server.admin_port
    assert port is not None
    body = json.dumps({"errorRate": 1.0}).encode()
    for auth in (None, "", "Bearer", "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        assert _admin(port, auth=auth) == 401, auth
        assert _admin(port, "PUT", body, auth) == 401, auth
    assert server.faults.faults.error_rate == 0.0  # nothing was changed
    assert _admin(port, auth=f"Bearer {TOKEN}") == 200
    assert _admin(port, "PUT", body, f"bearer {TOKEN}") == 200
    assert server.faults.faults.error_rate == 1.0


def test_without_a_token_the_fault_port_is_not_opened(tmp_path: Path) -> None:
    config = ServerConfig(
        model_path=str(tmp_path),
        identity=Identity(model="m", version="1"),
        host="127.0.0.1",
        port=0,
        admin_port=0,
    )
    with ModelServer(config) as srv:
        assert srv.admin is None and srv.admin_port is None


def test_the_token_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert admin_token({}) is None
    assert admin_token({"MODEL_SERVER_ADMIN_TOKEN": f" {TOKEN}\n"}) == TOKEN
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert admin_token({"MODEL_SERVER_ADMIN_TOKEN_FILE": str(f)}) == TOKEN
    with pytest.raises(ValueError, match="at least 16"):
        admin_token({"MODEL_SERVER_ADMIN_TOKEN": "short"})
    with pytest.raises(OSError):
        admin_token({"MODEL_SERVER_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})
    assert token_matches(TOKEN, f"Bearer {TOKEN}") and token_matches(TOKEN, f"BEARER  {TOKEN} ")
    assert not token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, None)
    assert not token_matches("", "Bearer ")
