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
        PrometheusClient("prometheus:9090").query("up")  # no scheme: urllib cannot open it


def test_a_slow_answer_times_out_inconclusive() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts the connection (backlog) but never answers
    try:
        with pytest.raises(Inconclusive, match="unreachable"):
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
