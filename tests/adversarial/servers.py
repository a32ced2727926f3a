"""Small loopback servers for the adversarial tests (no network beyond 127.0.0.1).

* :class:`HTTPServer` serves ``routes`` (path -> (status, headers, body)) and records every
  request's path and headers; ``trickle`` seconds between bytes of the status line and headers
  (a slow-loris server: the response never gets past its headers in time), for the methods in
  ``trickle_methods`` (both by default; ``("GET",)``: a fast HEAD, then a GET that trickles).
* :class:`ForwardProxy` is a plain HTTP forward proxy (absolute-form GET/HEAD) that records what it
  forwarded.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakes3 import QuietServer


class HTTPServer:
    def __init__(
        self,
        routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None,
        trickle: float = 0.0,
        trickle_methods: tuple[str, ...] = ("GET", "HEAD"),
    ):
        self.routes = dict(routes or {})
        self.trickle = trickle
        self.trickle_methods = trickle_methods
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.methods: list[str] = []  # of each request, in order
        self._server = QuietServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()

    def __enter__(self) -> HTTPServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _route(self, head: bool) -> None:
                srv.seen.append((self.path, dict(self.headers)))
                srv.methods.append(self.command)
                status, headers, body = srv.routes.get(self.path.split("?", 1)[0], (404, {}, b""))
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
                if srv.trickle and self.command in srv.trickle_methods:
                    for i in range(len(raw)):
                        if srv._stop.is_set():
                            return
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(srv.trickle)
                else:
                    self.wfile.write(raw)
                if not head:
                    self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                self._route(False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._route(True)

        return Handler


class ForwardProxy:
    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self._server = QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                proxy.forwarded.append(self.path)
                req = urllib.request.Request(self.path, method=method)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                length = "0"
                try:
                    with opener.open(req, timeout=10) as r:
                        body = r.read()
                        status = r.status
                        length = r.headers.get("Content-Length") or str(len(body))
                except urllib.error.HTTPError as e:
                    body, status = b"", e.code
                self.send_response(status)
                self.send_header("Content-Length", length)
                self.send_header("Connection", "close")
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._forward("HEAD")

        return Handler
