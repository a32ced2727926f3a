"""http(s) artifacts over the standard library's ``http.client``: what
:func:`~modelversioning.artifacts.filesystems.open_filesystem` returns for ``http``/``https`` (the two
calls the verification makes of a file system: ``info`` and ``open``), in the operator and in the init
container alike, so both read the same bytes under the same rules.

Why not fsspec's HTTP file system over aiohttp (what this replaced, and what ``s3://`` and ``oci://``
still use): the init container imported aiohttp (~0.17 s of CPU, two TLS contexts built at import even
for http://) and read the body through fsspec's stream at ~460 MiB/s on this machine, bridged from
aiohttp's event loop thread per read; ``http.client`` reads at the socket's speed into the hashing
thread (issue 25: time to first answer).

The URI policy on every hop, as the aiohttp client enforced it (:mod:`~modelversioning.artifacts.backends`):

* every request's URL -- the first and each redirect's target (at most :data:`MAX_REDIRECTS`; a
  redirect to another scheme, such as ``s3://``, is refused) -- is checked with
  :func:`~modelversioning.artifacts.policy.check_uri` before it is sent; behind a proxy, which
  resolves the target itself, the target's name is resolved and checked here first;
* every address the client connects to is resolved here, checked
  (:func:`~modelversioning.artifacts.policy.check_address`) and connected to by that address (TLS
  still verifies the host name): a DNS answer that changed since the URI was checked (rebinding)
  cannot reach a refused address. A proxy from the process environment (``HTTP(S)_PROXY``,
  ``NO_PROXY``; e.g. the chart's ``extraEnv``) is exempt: the platform chose it;
* the ``Authorization`` header goes only to the hosts the credentials are bound to: it is dropped on
  a redirect to another origin (scheme, host, port), and a request that would carry it to another
  host is refused;
* one deadline over everything: every socket operation's timeout is the time left (a connect at most
  30 s, one read at most 120 s), and at the deadline a guard shuts the connection's socket down
  whatever it is blocked in (the headers, a chunked body's trailers) and refuses a socket connected
  later, so a server that trickles cannot hold a verification. Name resolution (``getaddrinfo``) is
  not interruptible: the process's own watchdog (the init container's, the operator's worker's) ends
  a resolver that never answers, 10 s past the deadline;
* the request target is percent-encoded as yarl did (a space in a redirect's path), and a URL that
  still cannot be sent is refused without showing its path or query (a pre-signed signature);
* proxies come from the process environment (the operator's, e.g. the chart's ``extraEnv``); the init
  container drops the proxy variables a tenant's Secret put in its environment (``cli/verify.py``),
  and only ``http://`` proxies are spoken to.

Answers: 2xx is read (an interim ``103 Early Hints`` is not skipped by ``http.client``: it fails the
read as ``FetchFailed``); a HEAD answered 405/501 (servers that do not do HEAD) gives no size (the GET
tells); any other status is :class:`~modelversioning.artifacts.errors.HTTPStatusError` (404/410
NotFound, 401/403 AccessDenied, else FetchFailed; see ``classify``). A body that ends before its
Content-Length is a truncated read, never a digest. ``Accept-Encoding: identity`` is asked (the
credentials module's headers) and the bytes hashed are the bytes sent, whatever ``Content-Encoding``
says: the bytes stored, as ``s3://`` reads the same object (aiohttp decoded a gzip or deflate body, so
an object stored with ``Content-Encoding: gzip`` hashed differently over http(s) than over s3).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.errors import HTTPStatusError, TruncatedReadError, URIRefusedError
from modelversioning.artifacts.policy import METADATA_HOSTNAMES, check_address, check_uri, host_allowed

MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0
NO_HEAD = frozenset({405, 501})  # the server does not do HEAD: the GET tells the size
USER_AGENT = "modelversioning-artifacts"
SCHEMES = ("http", "https")  # a redirect elsewhere (s3://, oci://, file://) is never followed
# what a request target may hold as it is (yarl's and RFC 3986's): the rest is percent-encoded
PATH_SAFE = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None  # Proxy-Authorization, from the proxy URL's user info


def _proxy_for(scheme: str, host: str, environ: Mapping[str, str]) -> _Proxy | None:
    """The forward proxy the process environment names for ``scheme://host`` (None: direct), with
    ``NO_PROXY`` honoured as the standard library reads it."""
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    value = next((v for k in names if (v := environ.get(k))), None)
    if not value:
        return None
    if environ.get("no_proxy") or environ.get("NO_PROXY"):
        from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

        if proxy_bypass_environment(host, {"no": environ.get("no_proxy") or environ.get("NO_PROXY", "")}):
            return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme.lower() != "http":  # spoken to in plain HTTP: an https:// or socks proxy is refused
        raise URIRefusedError(f"the proxy's scheme {parts.scheme}:// is not supported (http:// proxies only)")
    if not parts.hostname:
        return None
    auth = None
    if parts.username is not None:
        user_info = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + b64encode(user_info.encode()).decode()
    return _Proxy(parts.hostname, parts.port or 80, auth)


class PlainHTTP:
    """The file system of one http(s) artifact read (see the module docstring): ``info(url)`` (a HEAD)
    and ``open(url, "rb")`` (a GET whose body is read in pieces)."""

    def __init__(
        self,
        policy: ArtifactPolicy,
        deadline: float,
        *,
        headers: Mapping[str, str] | None = None,
        credential_hosts: tuple[str, ...] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.headers = {"User-Agent": USER_AGENT, **dict(headers or {})}
        self.credential_hosts = credential_hosts
        self.environ = os.environ if environ is None else environ
        self._tls: Any = None

    # ------------------------------------------------------------------ the two calls of a file system

    def info(self, url: str, **_: Any) -> dict[str, Any]:
        resp, conn = self._request("HEAD", url, ok=NO_HEAD)
        try:
            length = resp.getheader("Content-Length")
            known = resp.status not in NO_HEAD and length is not None and length.isdigit()
            return {"name": url, "type": "file", "size": int(length) if known and length else None}
        finally:
            _close(conn)

    def open(self, url: str, mode: str = "rb", **_: Any) -> _Body:
        if mode != "rb":
            raise ValueError("http(s) artifacts are read only")
        resp, conn = self._request("GET", url)
        return _Body(resp, conn, self)

    # ------------------------------------------------------------------ requests, hop by hop

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _request(
        self, method: str, url: str, ok: frozenset[int] = frozenset()
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        headers = dict(self.headers)
        for _hop in range(MAX_REDIRECTS + 1):
            conn, resp = self._send(method, url, headers)
            location = resp.getheader("Location")
            if resp.status in REDIRECTS and location:
                _close(conn)
                try:
                    target = urljoin(url, location)
                    if _origin(target) != _origin(url):
                        headers.pop("Authorization", None)  # as browsers and aiohttp do
                except ValueError:  # e.g. a port out of range
                    raise URIRefusedError("a redirect to an invalid URL") from None
                url = target
                continue
            if 200 <= resp.status < 300 or resp.status in ok:
                return resp, conn
            _close(conn)
            raise HTTPStatusError(resp.status, resp.reason)
        raise URIRefusedError(f"more than {MAX_REDIRECTS} redirects")

    def _send(
        self, method: str, url: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "")
        if scheme not in SCHEMES:  # a redirect to s3:// would otherwise reach its bucket as an http host
            raise URIRefusedError(f"a redirect to {scheme}:// is not followed")
        proxy = _proxy_for(scheme, host, self.environ)
        refusal = check_uri(url, self.policy, resolve=proxy is not None)  # the proxy resolves the name
        if refusal:
            raise URIRefusedError(refusal)
        if "Authorization" in headers and not host_allowed(host, self.credential_hosts or ()):
            allowed = ", ".join(self.credential_hosts or ())
            raise URIRefusedError(f"the credentials may only be sent to {allowed}, not to {host}")
        port = parts.port or (443 if scheme == "https" else 80)
        target = quote(parts.path or "/", safe=PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=PATH_SAFE + "?")
        sent = dict(headers)
        guard = _Guard(self.left())
        conn = self._connection(scheme, host, port, proxy, guard)
        if proxy is not None and scheme == "http":
            target = f"{scheme}://{parts.netloc}{target}"  # absolute form, to the proxy
            if proxy.authorization:
                sent["Proxy-Authorization"] = proxy.authorization
        try:
            conn.request(method, target, headers=sent)
            return conn, conn.getresponse()
        except http.client.InvalidURL:  # its message would show the path and query (a signature)
            _close(conn)
            raise URIRefusedError("the URL holds characters a request line cannot carry") from None
        except BaseException:
            _close(conn)
            raise

    def _connection(
        self, scheme: str, host: str, port: int, proxy: _Proxy | None, guard: _Guard
    ) -> http.client.HTTPConnection:
        timeout = max(0.05, min(CONNECT_TIMEOUT, self.left()))
        where, at = (proxy.host, proxy.port) if proxy is not None else (host, port)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(where, at, timeout=timeout, context=self._tls_context())
            if proxy is not None:
                extra = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(host, port, headers=extra)
        else:
            conn = http.client.HTTPConnection(where, at, timeout=timeout)
        conn._create_connection = self._opener(guard, exempt=proxy is not None)  # type: ignore[attr-defined]
        conn.guard = guard  # type: ignore[attr-defined]  # cancelled when the connection is closed (_close)
        return conn

    def _tls_context(self) -> Any:
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context()
        return self._tls

    def _opener(self, guard: _Guard, *, exempt: bool) -> Any:
        """``socket.create_connection`` for ``http.client``: resolve, check every address, connect by
        address (``exempt``: a proxy of the platform's, not checked)."""
        policy = self.policy

        def connect(address: tuple[str, int], timeout: Any = None, source: Any = None) -> socket.socket:
            host, port = address
            if guard.expired:
                raise TimeoutError("the deadline passed before connecting")
            name = host.rstrip(".").lower()
            if not exempt and name in METADATA_HOSTNAMES:
                raise URIRefusedError(f"host {host} is a cloud metadata endpoint")
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            if not exempt:
                for info in infos:
                    refusal = check_address(str(info[4][0]).split("%", 1)[0], policy, host=name)
                    if refusal:
                        raise URIRefusedError(f"host {host} resolves to a refused address ({refusal})")
            error: OSError = OSError(f"no address for {host}")
            for family, kind, proto, _, sockaddr in infos:
                sock = socket.socket(family, kind, proto)
                try:
                    sock.settimeout(max(0.05, min(CONNECT_TIMEOUT, self.left())))
                    sock.connect(sockaddr)
                    sock.settimeout(max(0.05, min(READ_TIMEOUT, self.left())))
                    guard.adopt(sock)  # raises (and closes it) if the deadline passed meanwhile
                    return sock
                except OSError as e:
                    sock.close()
                    error = e
            raise error

        return connect


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


class _Guard:
    """The deadline of one connection, whatever it is blocked in (connecting, a TLS handshake, the
    headers, a chunked body's trailers): at the deadline its socket is shut down (through a duplicate,
    so a TLS-wrapped socket goes too), and a socket connected after that is refused. Started before
    the connection exists; cancelled when it is closed (:func:`_close`)."""

    def __init__(self, left: float) -> None:
        self.expired = False
        self._done = False
        self._dups: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, left), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for dup in self._dups:
                with contextlib.suppress(OSError):
                    dup.shutdown(socket.SHUT_RDWR)

    def adopt(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.expired and not self._done:
                self._dups.append(sock.dup())
                return
        sock.close()
        raise TimeoutError("the deadline passed while connecting")

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            dups, self._dups = self._dups, []
        for dup in dups:
            dup.close()


def _close(conn: http.client.HTTPConnection) -> None:
    conn.close()
    guard: _Guard | None = getattr(conn, "guard", None)
    if guard is not None:
        guard.cancel()


class _Body:
    """A GET's body, read in pieces of at most the requested size; each socket read is bounded by the
    time left, and a body that ends before its Content-Length raises :class:`TruncatedReadError`."""

    def __init__(
        self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, fs: PlainHTTP
    ) -> None:
        self._resp = resp
        self._conn = conn
        self._fs = fs

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        _close(self._conn)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the body)."""
        if n < 0:
            raise ValueError("read the body in pieces")
        pieces: list[bytes] = []
        got = 0
        while got < n:
            left = self._fs.left()
            if left <= 0:
                raise TimeoutError("the deadline passed while reading the body")
            sock = self._conn.sock
            if sock is not None:
                sock.settimeout(max(0.05, min(READ_TIMEOUT, left)))
            piece = self._resp.read1(n - got)
            if not piece:
                if self._resp.length:
                    missing = self._resp.length
                    raise TruncatedReadError(f"the body ended {missing} bytes before its Content-Length")
                break
            pieces.append(piece)
            got += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
