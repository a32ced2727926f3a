"""A minimal S3 endpoint on loopback for adversarial tests: ListObjectsV2 (paged), HEAD and GET of
generated objects, and the Host header and path of every request (to see where requests went).

    with FakeS3(objects={"bucket/prefix/a": b"..."}) as s3:          # or count=100_000
        s3.endpoint_url   # http://127.0.0.1:<port>

``count=N`` serves N generated objects ``bucket/many/<i:06d>.bin`` of 1 byte without storing them.
``trickle`` delays every response header byte by that many seconds (a slow-loris server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

PAGE = 1000


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the point of most tests here) is not an error


class FakeS3:
    def __init__(
        self,
        objects: dict[str, bytes] | None = None,
        *,
        count: int = 0,
        trickle: float = 0.0,
        bind: str = "127.0.0.1",
    ) -> None:
        self.objects = dict(objects or {})
        self.count = count
        self.trickle = trickle
        self.requests: list[tuple[str, str, str]] = []  # (method, Host header, path)
        self.first_request_at: float | None = None  # time.monotonic() when the first request came
        self._server = QuietServer((bind, 0), self._handler())
        self.port = int(self._server.server_address[1])
        self.endpoint_url = f"http://{bind}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the object space ------------------------------------------------------------------------
    def _keys(self, bucket: str, prefix: str, start: int = 0) -> Iterator[tuple[str, int]]:
        """Keys below ``prefix`` in listing order, from position ``start`` (the continuation token)."""
        if self.count and bucket == "bucket" and ("many/".startswith(prefix) or prefix.startswith("many/")):
            for i in range(start, self.count):
                key = f"many/{i:06d}.bin"
                if key.startswith(prefix):
                    yield key, 1
            return
        listed = [
            (k, len(body))
            for full, body in sorted(self.objects.items())
            for b, _, k in [full.partition("/")]
            if b == bucket and k.startswith(prefix)
        ]
        yield from listed[start:]

    def _body(self, bucket: str, key: str) -> bytes | None:
        if self.count and bucket == "bucket" and key.startswith("many/"):
            return b"x"
        return self.objects.get(f"{bucket}/{key}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self, status: int, body: bytes, ctype: str = "application/xml", head: bool = False
            ) -> None:
                lines = [
                    f"HTTP/1.1 {status} X",
                    f"Content-Length: {len(body)}",
                    f"Content-Type: {ctype}",
                    "",
                    "",
                ]
                raw = "\r\n".join(lines).encode()
                if fake.trickle:
                    for i in range(len(raw)):
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(fake.trickle)
                else:
                    self.wfile.write(raw)
                if not head:
                    self.wfile.write(body)
                self.wfile.flush()

            def _route(self, head: bool) -> None:
                if fake.first_request_at is None:
                    fake.first_request_at = time.monotonic()
                fake.requests.append((self.command, self.headers.get("Host", ""), self.path))
                parts = urlsplit(self.path)
                path = unquote(parts.path).lstrip("/")
                bucket, _, key = path.partition("/")
                query = parse_qs(parts.query)
                if not key and "list-type" in query:
                    self._list(bucket, query)
                    return
                if not key:
                    self._send(200, b"", head=head)  # HEAD bucket
                    return
                body = fake._body(bucket, key)
                if body is None:
                    err = b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"
                    self._send(404, err, head=head)
                    return
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not head:
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a), min(int(b) if b else len(body) - 1, len(body) - 1)
                    body = body[start : end + 1]
                    self._send(206, body, "application/octet-stream")
                    return
                self._send(200, body, "application/octet-stream", head=head)

            def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
                prefix = query.get("prefix", [""])[0]
                token = int(query.get("continuation-token", ["0"])[0] or 0)
                keys = []
                truncated = False
                for k, size in fake._keys(bucket, prefix, token):
                    if len(keys) == PAGE:
                        truncated = True
                        break
                    keys.append((k, size))
                contents = "".join(
                    f'<Contents><Key>{escape(k)}</Key><Size>{size}</Size><ETag>"e"</ETag>'
                    f"<LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                    f"<StorageClass>STANDARD</StorageClass></Contents>"
                    for k, size in keys
                )
                nxt = (
                    f"<NextContinuationToken>{token + len(keys)}</NextContinuationToken>" if truncated else ""
                )
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount>"
                    f"<MaxKeys>{PAGE}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
                    f"{contents}{nxt}</ListBucketResult>"
                )
                self._send(200, xml.encode())

            def do_GET(self) -> None:  # noqa: N802
                self._route(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._route(head=True)

        return Handler


def quote_key(key: str) -> str:
    return quote(key, safe="/")
