"""analysis.PrometheusClient against a local HTTP server: every answer that is not one clean number is
an *inconclusive* measurement (never a pass, never a crash of the reconcile)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelversioning.analysis import Inconclusive, PrometheusClient, QueryVars, measure
from modelversioning.api.strategy import MetricCheck
from modelversioning.domain import rollout as RO


class Server:
    """Answers every request with (status code, body bytes); `cut` closes the connection after
    sending the headers with a Content-Length it never fills."""

    def __init__(self) -> None:
        self.code = 200
        self.body = b"{}"
        self.cut = False
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(outer.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body) + (100 if outer.cut else 0)))
                self.end_headers()
                self.wfile.write(outer.body)
                if outer.cut:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: Any, code: int = 200) -> None:
        self.code = code
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def prom(server: Server) -> Server:
    server.answer(b"{}")
    server.cut = False
    return server


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"i": str(i)}, "value": [1700000000.0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_one_number_is_the_value(prom: Server) -> None:
    client = PrometheusClient(prom.url)
    prom.answer(vector("0.25"))
    assert client.query("up") == 0.25
    prom.answer({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "3"]}})
    assert client.query("scalar(up)") == 3.0


@pytest.mark.parametrize(
    "code, body, why",
    [
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
         "Prometheus answered 400: parse error at char 5"),
        (422, {"status": "error", "errorType": "execution", "error": "too many samples"},
         "Prometheus answered 422: too many samples"),
        (503, b"Service Unavailable", "Prometheus answered 503"),
        (500, b"null", "Prometheus answered 500"),
        (500, b"[]", "Prometheus answered 500"),
        (200, {"status": "error", "errorType": "timeout", "error": "query timed out"},
         "query error: query timed out"),
        (200, {"status": "error"}, "query error: unknown"),
        (200, b"null", "JSON that is not an object"),
        (200, b"[]", "JSON that is not an object"),
        (200, b'"success"', "JSON that is not an object"),
        (200, b"42", "JSON that is not an object"),
        (200, b"<html>proxy login</html>", "not JSON"),
        (200, b"\xff\xfe", "not JSON"),
        (200, {"status": "success"}, "no data object"),
        (200, {"status": "success", "data": None}, "no data object"),
        (200, {"status": "success", "data": []}, "no data object"),
        (200, vector(), "no data"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": None}}, "no data"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}}, "result shape"),
        (200, vector("0.1", "0.2"), "2 series, not one number"),
        (200, vector("0.1", "0.2", "0.3"), "3 series"),
        (200, vector("NaN"), "returned nan"),
        (200, vector("+Inf"), "returned inf"),
        (200, vector("-Inf"), "returned -inf"),
        (200, vector("abc"), "result shape"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
         "result shape"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [None]}}, "result shape"),
        (200, {"status": "success", "data": {"resultType": "matrix",
                                              "result": [{"metric": {}, "values": [[1, "0.1"]]}]}},
         "a matrix, not an instant vector"),
        (200, {"status": "success", "data": {"resultType": "string", "result": [1, "x"]}}, "a string"),
    ],
)  # fmt: skip
def test_anything_but_one_clean_number_is_inconclusive(prom: Server, code: int, body: Any, why: str) -> None:
    prom.answer(body, code)
    with pytest.raises(Inconclusive, match=why.replace("+", r"\+").replace("(", r"\(")):
        PrometheusClient(prom.url).query("up")


def test_a_connection_cut_mid_answer_is_inconclusive(prom: Server) -> None:
    prom.answer(vector("0.1"))
    prom.cut = True  # IncompleteRead (an http.client.HTTPException, not an OSError)
    with pytest.raises(Inconclusive, match="unreachable: IncompleteRead"):
        PrometheusClient(prom.url).query("up")


def test_a_garbled_status_line_is_inconclusive() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(4096)
        conn.sendall(b"SPDY/9 what\r\n\r\n")  # http.client.BadStatusLine
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(Inconclusive, match="unreachable: BadStatusLine"):
            PrometheusClient(f"http://127.0.0.1:{srv.getsockname()[1]}").query("up")
    finally:
        t.join(5)
        srv.close()


def test_nothing_listening_and_a_bad_url_are_inconclusive() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(Inconclusive, match="unreachable"):
        PrometheusClient(f"http://127.0.0.1:{port}", timeout=2).query("up")
    with pytest.raises(Inconclusive, match="unreachable"):
        PrometheusClient("prometheus:9090").query("up")  # no scheme: not an http(s) URL


def test_a_slow_answer_times_out_inconclusive() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts the connection (backlog) but never answers
    try:
        with pytest.raises(Inconclusive, match="did not answer within the query deadline"):
            PrometheusClient(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=0.3).query("up")
    finally:
        srv.close()


def test_measure_turns_every_bad_answer_into_an_inconclusive_measurement(prom: Server) -> None:
    """Through the analysis: the verdict is Inconclusive with the reason, never Passed."""
    checks = [
        MetricCheck.model_validate({"name": "errors", "template": "error-rate", "max": 0.05}),
        MetricCheck.model_validate({"name": "p99", "template": "latency", "maxIncreaseOverBaseline": 0.1}),
    ]
    qv = QueryVars("ns", "ep", "canary", "2.4.1", "ep-c", "stable", "2.3.8", "ep-s")
    client = PrometheusClient(prom.url)
    for code, body in ((200, b"null"), (200, b"[]"), (400, b"null"), (200, vector()), (200, vector("NaN"))):
        prom.answer(body, code)
        got = measure(checks, qv, client.query, now=10)
        assert [x.verdict for x in got] == [RO.INCONCLUSIVE, RO.INCONCLUSIVE], body
        assert all(x.value is None and x.message for x in got)
    prom.answer(vector("0.01"))
    assert [x.verdict for x in measure(checks, qv, client.query, now=10)] == [RO.PASSED, RO.PASSED]


# --------------------------------------------------------------- a total deadline and a size cap


class Hostile:
    """A raw HTTP server on 127.0.0.1 answering every connection with `script(conn)` in a thread of
    its own; `stop` ends the trickles."""

    def __init__(self, script: Any) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.url = f"http://127.0.0.1:{self.srv.getsockname()[1]}"
        self.script = script
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.script(self, conn)
        except OSError:
            pass  # the client gave up: what we want
        finally:
            conn.close()

    def trickle(self, conn: socket.socket, data: bytes, every: float) -> None:
        for i in range(len(data)):
            if self.stop.wait(every):
                return
            conn.sendall(data[i : i + 1])
            self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.srv.close()


@pytest.fixture
def hostile() -> Iterator[list[Hostile]]:
    made: list[Hostile] = []
    yield made
    for h in made:
        h.close()


ANSWER = json.dumps(vector("0.1")).encode()


def test_a_body_that_trickles_is_cut_at_the_total_deadline(hostile: list[Hostile]) -> None:
    """One byte every 20 ms: every read returns well within any per-read timeout, so urllib's timeout
    never fired (the answer would have taken 10,000 x 20 ms); the total deadline does."""
    body = ANSWER + b" " * 10_000

    def script(h: Hostile, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        conn.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode())
        h.trickle(conn, body, 0.02)

    h = Hostile(script)
    hostile.append(h)
    with pytest.raises(Inconclusive, match=r"did not answer within the query deadline \(0.5s"):
        PrometheusClient(h.url, timeout=0.5).query("up")
    assert h.sent < 1000  # cut long before the end (a generous bound: ~25 bytes in 0.5 s)


def test_headers_that_trickle_are_cut_at_the_total_deadline(hostile: list[Hostile]) -> None:
    def script(h: Hostile, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        h.trickle(conn, b"X-Slow: " + b"a" * 60_000 + b"\r\n\r\n", 0.02)

    h = Hostile(script)
    hostile.append(h)
    with pytest.raises(Inconclusive, match="within the query deadline"):
        PrometheusClient(h.url, timeout=0.5).query("up")
    assert h.sent < 1000


def test_a_huge_answer_is_refused_while_it_is_read(hostile: list[Hostile]) -> None:
    """64 MiB without a Content-Length (the end is the connection's): refused once the cap is
    crossed, not read whole (as landed: read whole, then refused as 'not one number')."""
    chunk = b" " * 65536

    def script(h: Hostile, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        conn.sendall(ANSWER[:-1])
        for _ in range(1024):
            conn.sendall(chunk)
            h.sent += len(chunk)
        conn.sendall(b"}")

    h = Hostile(script)
    hostile.append(h)
    with pytest.raises(Inconclusive, match=r"more than 1048576 bytes: over the cap .*maxAnswerBytes"):
        PrometheusClient(h.url, timeout=20).query("up")
    assert h.sent < 32 << 20  # the server could not send it all: the client stopped reading


def test_a_declared_huge_answer_is_refused_before_reading(hostile: list[Hostile]) -> None:
    def script(h: Hostile, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
        h.trickle(conn, b" " * 1000, 0.01)

    h = Hostile(script)
    hostile.append(h)
    with pytest.raises(Inconclusive, match="67108864 bytes declared: over the cap of 2048 bytes"):
        PrometheusClient(h.url, timeout=5, max_bytes=2048).query("up")


def test_an_answer_under_the_cap_and_the_deadline_is_read(prom: Server) -> None:
    prom.answer(vector("0.5"))
    assert PrometheusClient(prom.url, timeout=5, max_bytes=len(prom.body)).query("up") == 0.5
    with pytest.raises(Inconclusive, match="over the cap"):
        PrometheusClient(prom.url, timeout=5, max_bytes=len(prom.body) - 1).query("up")
