"""A loopback API server for `kubectl models`' own HTTP access (cli/models/apiserver.py): TLS with a
CA of its own (a client certificate optional or required), every request recorded, the answers
scripted by the test (JSON objects, or a watch's events streamed in chunks)."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1 (and `dns`), a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these


def make_pki(directory: Path, dns: str | None = None, ip: bool = True) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def cert(subject: x509.Name, key: Any, issuer: x509.Name, signer: Any, ca: bool, sans: list[Any]) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(signer, hashes.SHA256())

    def write(stem: str, crt: Any, key: Any) -> tuple[Path, Path]:
        c, k = directory / f"{stem}.crt", directory / f"{stem}.key"
        c.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return c, k

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, other_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca_name = name("test-ca")
    ca_crt = cert(ca_name, ca_key, ca_name, ca_key, True, [])
    other_crt = cert(name("other-ca"), other_key, name("other-ca"), other_key, True, [])
    sans: list[Any] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if ip else []
    sans += [x509.DNSName(dns)] if dns else []
    srv_crt = cert(name("apiserver"), srv_key, ca_name, ca_key, False, sans)
    cli_crt = cert(name("jane", "team-a"), cli_key, ca_name, ca_key, False, [])
    ca, _ = write("ca", ca_crt, ca_key)
    other, _ = write("other-ca", other_crt, other_key)
    server_cert, server_key = write("server", srv_crt, srv_key)
    client_cert, client_key = write("client", cli_crt, cli_key)
    return Pki(ca, server_cert, server_key, client_cert, client_key, other)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    client_cn: str | None  # the client certificate's common name, if one was presented


# A route answers (status, JSON object) or, for a watch, (status, [event, ...]) streamed in chunks;
# "drop" as the status closes the connection without an answer.
Answer = tuple[int | str, Any]
Route = Callable[[Request], Answer]


@dataclass
class FakeApiServer:
    route: Route
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    keep_alive: bool = True  # False: close each connection after its answer, without saying so
    closed: int = 0  # connections the server has closed
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_closed(self, n: int, timeout: float = 10) -> None:
        """Until the server has closed `n` connections (an event to order on, not a sleep)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.closed >= n, timeout), f"{self.closed} closed, not {n}"

    def seen(self, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if method is None or r.method == method]


def _handler(fake: FakeApiServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
            super().setup()

        def finish(self) -> None:
            super().finish()
            self.request.close()
            with fake._cond:
                fake.closed += 1
                fake._cond.notify_all()

        def _answer(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            cn = None
            if isinstance(self.connection, ssl.SSLSocket):
                peer = self.connection.getpeercert()
                for rdn in (peer or {}).get("subject", ()):
                    for key, value in rdn:
                        cn = value if key == "commonName" else cn
            req = Request(
                self.command,
                url.path,
                dict(parse_qsl(url.query)),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
                cn,
            )
            fake.requests.append(req)
            status, obj = fake.route(req)
            if status == "drop":
                self.close_connection = True
                return
            assert isinstance(status, int)
            if isinstance(obj, list):
                self._stream(status, obj)
            else:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            if not fake.keep_alive:
                self.close_connection = True

        def _stream(self, status: int, events: list[Any]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for ev in events:
                line = json.dumps(ev).encode() + b"\n"
                for part in (line[:7], line[7:]):  # an event split across chunks
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@contextmanager
def serve(
    route: Route, pki: Pki | None = None, client_cert: str = "optional", keep_alive: bool = True
) -> Iterator[FakeApiServer]:
    """The server on 127.0.0.1 (https with `pki`, else http) until the block ends."""
    fake = FakeApiServer(route, keep_alive=keep_alive)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    srv.daemon_threads = True
    scheme = "http"
    if pki is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = {"optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}[client_cert]
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    fake.url = f"{scheme}://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        srv.shutdown()
        srv.server_close()


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any], namespace: str = "models") -> Path:
    """A kubeconfig with one context (cluster "c", user "u") at `path` (JSON is YAML)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def status(code: int, reason: str, message: str) -> Answer:
    """A Kubernetes Status answer."""
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                  "message": message, "code": code}  # fmt: skip
