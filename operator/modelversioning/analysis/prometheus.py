"""A minimal Prometheus HTTP API client: one instant query, one number, or Inconclusive.

Everything that is not a clean single number is *inconclusive*, never a pass: Prometheus unreachable,
a timeout, a connection dropped mid-answer, an HTTP or PromQL error, an answer that is not a JSON
object, an empty result (no traffic yet), several series, NaN or Inf.

Bounded: `timeout` is the *total* deadline of one query (connecting, the answer's headers and every
byte of its body), not a per-read timeout that an answer trickling one byte at a time resets forever;
a watchdog shuts the socket down when it passes. The answer is read in chunks and refused once it
exceeds `max_bytes`. A query is written by the endpoint's author (PromQL); neither a slow nor a huge
answer can hold a measurement thread longer than the deadline or take more memory than the cap.
The URL is the platform's (operator setting), reached directly (no proxy, no redirect).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

CHUNK = 64 * 1024


class Inconclusive(Exception):  # noqa: N818 - a verdict, not a crash
    """The measurement could not be taken; the message says why."""


def _error_detail(raw: bytes) -> str:
    """Prometheus's `error` of an error answer; '' when the body is not a JSON object saying one."""
    try:
        body = json.loads(raw.decode())
    except ValueError:
        return ""
    return str(body.get("error") or "")[:300] if isinstance(body, dict) else ""


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes: a blocked read (headers or body,
    however slowly they trickle) returns at once."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the fd's, also under TLS

    def cancel(self) -> None:
        self._timer.cancel()


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 5.0, max_bytes: int = 1 << 20) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # the whole query's
        self.max_bytes = max_bytes

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        u = urllib.parse.urlsplit(self.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise Inconclusive(f"Prometheus unreachable: not an http(s) URL: {self.base_url!r}")
        try:
            port = u.port
        except ValueError as e:
            raise Inconclusive(f"Prometheus unreachable: bad port in {self.base_url!r}") from e
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            ctx = ssl.create_default_context()
            conn = http.client.HTTPSConnection(u.hostname, port, timeout=self.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(u.hostname, port, timeout=self.timeout)
        return conn, u.path.rstrip("/")

    def _get(self, promql: str, at: float | None = None) -> Any:
        conn, path = self._connection()
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        target = f"{path}/api/v1/query?" + urllib.parse.urlencode(params)
        dog = _Watchdog(conn, self.timeout)
        deadline = time.monotonic() + self.timeout
        try:
            conn.request("GET", target, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            raw = self._body(resp, deadline)
        except Inconclusive:
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:
            # refused, DNS, TLS, timeout (all OSError), a connection cut mid-answer / a garbled status
            # line (http.client's IncompleteRead, RemoteDisconnected, BadStatusLine ...); the watchdog
            # cutting the socket shows up as any of them
            if dog.fired or time.monotonic() >= deadline:
                raise Inconclusive(self._late()) from e
            raise Inconclusive(f"Prometheus unreachable: {type(e).__name__}: {e}") from e
        finally:
            dog.cancel()
            conn.close()
        if dog.fired:  # cut at the deadline: what was read may look whole (http.client takes the cut
            raise Inconclusive(self._late())  # inside a header line for the headers' end, body empty)
        if resp.status >= 300:
            detail = _error_detail(raw)
            raise Inconclusive(f"Prometheus answered {resp.status}{': ' + detail if detail else ''}")
        try:
            return json.loads(raw.decode())
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            raise Inconclusive(f"Prometheus answered something that is not JSON: {e}") from e

    def _late(self) -> str:
        return (
            f"Prometheus did not answer within the query deadline ({self.timeout:g}s, "
            "operator setting analysis.timeoutSeconds)"
        )

    def _body(self, resp: http.client.HTTPResponse, deadline: float) -> bytes:
        """The whole body, read a chunk at a time (read1: one socket read each, so the deadline is
        looked at between reads), refused beyond max_bytes or the deadline."""
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise Inconclusive(self._too_big(f"{int(declared)} bytes declared"))
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() >= deadline:
                raise Inconclusive(self._late())
            chunk = resp.read1(CHUNK)
            if not chunk:
                if resp.length:  # the connection ended before the declared Content-Length
                    raise http.client.IncompleteRead(b"".join(chunks), resp.length)
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise Inconclusive(self._too_big(f"more than {self.max_bytes} bytes"))
            chunks.append(chunk)

    def _too_big(self, what: str) -> str:
        return (
            f"Prometheus answered {what}: over the cap of {self.max_bytes} bytes "
            "(operator setting analysis.maxAnswerBytes); does the query return one number?"
        )

    def _vector(self, promql: str, at: float | None) -> list[Any]:
        """The answer's samples (a scalar as one), or Inconclusive: an error, no data, another type."""
        body = self._get(promql, at)
        if not isinstance(body, dict):
            raise Inconclusive(f"Prometheus answered JSON that is not an object: {json.dumps(body)[:100]}")
        if body.get("status") != "success":
            raise Inconclusive(f"query error: {str(body.get('error') or 'unknown')[:300]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise Inconclusive("unexpected answer: no data object")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            result = [{"value": result}]
        elif kind != "vector":
            raise Inconclusive(f"the query returned a {kind}, not an instant vector or a scalar")
        if not result:
            raise Inconclusive("no data (no traffic in the window yet?)")
        if not isinstance(result, list):
            raise Inconclusive(f"unexpected result shape: {type(result).__name__}")
        return result

    def query_vector(
        self, promql: str, at: float | None = None, max_series: int = 64
    ) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector (labels, value) at ``at`` (epoch seconds; None: now); at most
        ``max_series`` (more is Inconclusive). NaN and Inf are refused as in ``query``."""
        result = self._vector(promql, at)
        if len(result) > max_series:
            raise Inconclusive(f"the query returned {len(result)} series, more than {max_series}")
        out = []
        for r in result:
            try:
                labels = {str(k): str(v) for k, v in (r.get("metric") or {}).items()}
                value = float(r["value"][1])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
                raise Inconclusive(f"unexpected result shape: {type(e).__name__}: {e}") from e
            if math.isnan(value) or math.isinf(value):
                raise Inconclusive(f"the query returned {value}")
            out.append((labels, value))
        return out

    def query(self, promql: str, at: float | None = None) -> float:
        """The one number an instant query answers at ``at`` (epoch seconds; None: now): a scalar or a
        one-series vector; NaN, Inf, no data or more series are Inconclusive."""
        result = self._vector(promql, at)
        if len(result) > 1:
            raise Inconclusive(f"the query returned {len(result)} series, not one number")
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise Inconclusive(f"unexpected result shape: {type(e).__name__}: {e}") from e
        if math.isnan(value) or math.isinf(value):
            raise Inconclusive(f"the query returned {value} (no requests in the window?)")
        return value
