"""The API server over HTTP(S) with the standard library (http.client, ssl), for ``kubectl models``
when the kubeconfig holds the credentials itself: a bearer token (``token``/``tokenFile``), a client
certificate, or a user name and password; the cluster's CA (or insecure-skip-tls-verify, or the
system's CAs) and tls-server-name. That is what kind's, the e2e control plane's and most
admin kubeconfigs have. Loading the kubernetes client takes 0.3-0.4 s on a 2-core machine, more than
the rest of a command's start, and in an incident ``kubectl models rollback`` must not wait for it
(issue #25; tests/test_cli_start.py).

Anything else goes through the kubernetes client (:mod:`.kube_client`), unchanged: an exec plugin or an
auth-provider (their tokens come and go), a proxy (the kubeconfig's ``proxy-url`` or one from the
environment) and in-cluster credentials; so does a kubeconfig this module cannot read as it expects,
so that the client reports what is wrong with it. :func:`credentials` says which.

The requests are the kubernetes client's (same paths, JSON bodies, ``application/merge-patch+json``
patches, ``Authorization`` header) and its rules are kept (kubernetes/config/kube_config.py): TLS
settings only for an https server; inline data before a file; a file relative to the kubeconfig file
that names it (the cluster entry's, for the CA and the client certificate and key); a token before a
user name and password; a failed connection retried once.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from modelversioning.api.wire import (
    SELF_SUBJECT_ACCESS_REVIEW,
    SELF_SUBJECT_REVIEW,
    SUBJECT_ACCESS_REVIEW,
    Resource,
)
from modelversioning.cli.models.errors import ClusterError, api_error_message

MERGE_PATCH = "application/merge-patch+json"
# The kubernetes client's product token: the API server names the field manager of what we write after
# it (managedFields[].manager: OpenAPI-Generator), as it did when the client sent these requests.
USER_AGENT = "OpenAPI-Generator/kubectl-models/python"


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class WatchBroken(Exception):
    """The watch's connection dropped or timed out: list again."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are, as read from a kubeconfig."""

    server: str  # scheme://host[:port][/path], no trailing slash
    authorization: str | None = None  # the Authorization header: "Bearer ..." or "Basic ..."
    ca: str | bytes | None = None  # the CA: a PEM file's path, or PEM bytes; None: the system's
    verify: bool = True  # False: insecure-skip-tls-verify
    tls_server_name: str | None = None
    cert: str | bytes | None = None  # client certificate: a PEM file's path, or PEM bytes
    key: str | bytes | None = None
    token_file: str | None = None  # re-read on every request (a projected ServiceAccount token rotates)
    impersonate_user: str | None = None  # Impersonate-User (the in-cluster web view acting as its viewer)
    impersonate_groups: tuple[str, ...] = ()  # one Impersonate-Group header each


def _file_or_data(entry: Mapping[str, Any], key: str, base: str) -> str | bytes | None:
    """`key-data` (base64) as bytes, else the file `key` (relative to `base`) as a path."""
    if f"{key}-data" in entry:
        data = entry[f"{key}-data"]
        return base64.standard_b64decode(data) if data else None
    if key in entry:
        return os.path.normpath(os.path.join(base, str(entry[key])))
    return None


def _proxied(server: str) -> bool:
    """Whether the environment names a proxy the kubernetes client would consider for this server
    (it reads <scheme>_proxy / all_proxy in either case, then applies no_proxy)."""
    names = {f"{urlsplit(server).scheme.lower()}_proxy", "all_proxy"}
    return any(value and name.lower() in names for name, value in os.environ.items())


class _ClientsJob(Exception):
    """Credentials this module leaves to the kubernetes client."""


def _authorization(user: Mapping[str, Any], base: str) -> str | None:
    """The Authorization header from the user entry (None: none); _ClientsJob if not ours to make."""
    if "auth-provider" in user:
        raise _ClientsJob()
    token: str | None = None
    if "token" in user:
        token = str(user["token"] or "")
    elif "tokenFile" in user:
        try:
            token = Path(os.path.normpath(os.path.join(base, str(user["tokenFile"])))).read_text()
        except OSError:
            raise _ClientsJob() from None
    if token:
        return f"Bearer {token}"
    if "exec" in user:
        raise _ClientsJob()
    if "username" in user and "password" in user:
        pair = f"{user['username']}:{user['password']}".encode("latin-1", "replace")
        return "Basic " + base64.b64encode(pair).decode()
    return None


def credentials(
    cluster: Mapping[str, Any], user: Mapping[str, Any], cluster_dir: str, user_dir: str
) -> Credentials | None:
    """The credentials of a kubeconfig context's cluster and user entries (the directories of the files
    they come from); None when the kubernetes client must do it (see the module's docstring)."""
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")) or "proxy-url" in cluster or _proxied(server):
        return None
    try:
        auth = _authorization(user, user_dir)
    except _ClientsJob:
        return None
    if not server.startswith("https://"):
        return Credentials(server, auth or None)
    files = [_file_or_data(cluster, "certificate-authority", cluster_dir)]
    files += [_file_or_data(user, k, cluster_dir) for k in ("client-certificate", "client-key")]
    if any(isinstance(f, str) and not os.path.isfile(f) for f in files):
        return None  # the client says which file is missing
    verify = not cluster["insecure-skip-tls-verify"] if "insecure-skip-tls-verify" in cluster else True
    name = cluster.get("tls-server-name")
    return Credentials(
        server, auth or None, files[0], verify, str(name) if name else None, files[1], files[2]
    )


Headers = list[tuple[str, str]]  # in order; a name may repeat
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_credentials() -> Credentials:
    """The pod's ServiceAccount: the API server from the environment, the mounted CA, the token file
    (re-read on every request: the kubelet rotates it)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ClusterError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    host = f"[{host}]" if ":" in host else host
    return Credentials(f"https://{host}:{port}", ca=f"{SA_DIR}/ca.crt", token_file=f"{SA_DIR}/token")


def _tls_context(c: Credentials) -> ssl.SSLContext:
    """Verification as urllib3 does it for the kubernetes client: the given CA only, else the system's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not c.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(c.ca, bytes):
        ctx.load_verify_locations(cadata=c.ca.decode("ascii", "replace"))
    elif c.ca:
        ctx.load_verify_locations(cafile=c.ca)
    else:
        ctx.load_default_certs()
    if c.cert:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kubectl-models-") as tmp:  # load_cert_chain reads files
            paths: list[str | None] = []
            for name, pem in (("cert.pem", c.cert), ("key.pem", c.key)):
                if isinstance(pem, bytes):
                    path = Path(tmp) / name
                    path.touch(mode=0o600)
                    path.write_bytes(pem)
                    pem = str(path)
                paths.append(pem)
            ctx.load_cert_chain(str(paths[0]), paths[1])
    return ctx


class _HTTPSConnection(http.client.HTTPSConnection):
    """With the name the server's certificate must carry (tls-server-name; SNI too), not the host's."""

    def __init__(self, host: str, port: int | None, context: ssl.SSLContext, server_name: str | None,
                 timeout: float | None) -> None:  # fmt: skip
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name or host
        self._tls = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


IDEMPOTENT = ("GET",)  # of ours, those the kubernetes client's one retry repeats once the request was sent


class HttpApi:
    """The operations :class:`..kube.Cluster` needs, as HTTP requests on one kept-alive connection."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self.server = creds.server
        url = urlsplit(creds.server)
        self._https = url.scheme == "https"
        self._host, self._port, self._prefix = url.hostname or "", url.port, url.path.rstrip("/")
        self._ctx = _tls_context(creds) if self._https else None
        self._conn: http.client.HTTPConnection | None = None

    # ---- the operations --------------------------------------------------------------------------
    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        return self._json("GET", _path(res, namespace, name))

    def list(
        self,
        res: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        return self._json("GET", _path(res, namespace), {k: v for k, v in query.items() if v})

    def create(self, res: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", _path(res, namespace), body=body)

    def merge_patch(
        self, res: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._json("PATCH", _path(res, namespace, name), body=patch, content_type=MERGE_PATCH)

    def self_subject_review(self) -> dict[str, Any]:
        body = {"apiVersion": SELF_SUBJECT_REVIEW.api_version, "kind": SELF_SUBJECT_REVIEW.kind}
        return self._json("POST", SELF_SUBJECT_REVIEW.path(None), body=body)

    def self_subject_access_review(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        kind = SELF_SUBJECT_ACCESS_REVIEW
        body = {"apiVersion": kind.api_version, "kind": kind.kind, "spec": {"resourceAttributes": attributes}}
        return self._json("POST", kind.path(None), body=body)

    def subject_access_review(
        self, attributes: Mapping[str, Any], user: str, groups: Sequence[str]
    ) -> dict[str, Any]:
        """May ``user`` (in ``groups``) do this? Asked with our own credentials (create
        subjectaccessreviews), about someone else."""
        kind = SUBJECT_ACCESS_REVIEW
        spec = {"resourceAttributes": dict(attributes), "user": user, "groups": list(groups)}
        body = {"apiVersion": kind.api_version, "kind": kind.kind, "spec": spec}
        return self._json("POST", kind.path(None), body=body)

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        field_selector: str,
        resource_version: str,
        seconds: int,
        read_timeout: float,
    ) -> Iterator[dict[str, Any]]:
        """The events of a watch from `resource_version`, until the server ends it (after `seconds`).
        WatchExpired on a 410 (the answer or an ERROR event), WatchBroken when the connection drops or
        nothing arrives for `read_timeout` seconds, ClusterError on another API error."""
        query = {"fieldSelector": field_selector, "resourceVersion": resource_version}
        query.update(timeoutSeconds=str(seconds), watch="true")
        try:
            conn = self._connect(timeout=10)
        except OSError as e:
            raise WatchBroken(str(e)) from None
        try:
            conn.sock.settimeout(read_timeout)
            _request(conn, "GET", self._url(_path(res, namespace), query), None, self._headers())
            resp = conn.getresponse()
            if resp.status == 410:
                raise WatchExpired()
            if not 200 <= resp.status < 300:
                raise ClusterError(api_error_message(resp.reason, resp.read()), resp.status)
            yield from _events(resp)
        except (OSError, http.client.HTTPException) as e:
            raise WatchBroken(str(e)) from None
        finally:
            conn.close()

    # ---- HTTP ------------------------------------------------------------------------------------
    def _url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        return self._prefix + path + (f"?{urlencode(query)}" if query else "")

    def _headers(self, content_type: str | None = None) -> Headers:
        """A list, not a dict: impersonating several groups takes one Impersonate-Group header each."""
        c = self.creds
        headers: Headers = [("Accept", "application/json"), ("User-Agent", USER_AGENT)]
        if content_type:
            headers.append(("Content-Type", content_type))
        authorization = c.authorization
        if c.token_file:
            try:
                authorization = "Bearer " + Path(c.token_file).read_text().strip()
            except OSError as e:
                raise ClusterError(f"cannot read the token file {c.token_file}: {e}") from None
        if authorization:
            headers.append(("Authorization", authorization))
        if c.impersonate_user is not None:
            headers.append(("Impersonate-User", c.impersonate_user))
            headers += [("Impersonate-Group", g) for g in c.impersonate_groups]
        return headers

    def _connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._ctx is not None:
            conn = _HTTPSConnection(self._host, self._port, self._ctx, self.creds.tls_server_name, timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        conn.connect()
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        """The kept-alive connection, a new one if the server has closed it meanwhile."""
        if self._conn is not None and (self._conn.sock is None or _dropped(self._conn.sock)):
            self._close()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _json(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, reason, raw = self._send(method, self._url(path, query), data, content_type)
        if not 200 <= status < 300:
            raise ClusterError(api_error_message(reason, raw), status)
        loaded = json.loads(raw) if raw else {}
        return dict(loaded) if isinstance(loaded, dict) else {}

    def _send(self, method: str, url: str, data: bytes | None, content_type: str) -> tuple[int, str, bytes]:
        """(status, reason, body). A failure is retried once, like the kubernetes client's
        (retries=1): a request not sent, or a GET; a request the server may have acted on never."""
        headers = self._headers(content_type if data is not None else None)
        for attempt in (1, 2):
            sent = False
            try:
                conn = self._connection()
                _request(conn, method, url, data, headers)
                sent = True
                resp = conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self._close()
                return resp.status, resp.reason, raw
            except (OSError, http.client.HTTPException) as e:
                self._close()
                if attempt == 2 or (sent and method not in IDEMPOTENT):
                    raise ClusterError(f"cannot reach the API server {self.server}: {e}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _request(
    conn: http.client.HTTPConnection, method: str, url: str, body: bytes | None, headers: Headers
) -> None:
    """conn.request with headers that may repeat (http.client's takes a mapping)."""
    conn.putrequest(method, url)
    for name, value in headers:
        conn.putheader(name, value)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders(body)


def _dropped(sock: Any) -> bool:
    """An idle kept-alive connection is readable only if the server closed it (or broke protocol)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _path(res: Resource, namespace: str | None, name: str | None = None) -> str:
    return res.path(quote(namespace, safe="") if namespace else None, quote(name, safe="") if name else None)


def _events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Watch events, one JSON object a line; an ERROR event with code 410 is WatchExpired, another
    a ClusterError (as the kubernetes client's Watch raises them)."""
    while True:
        line = resp.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("type") == "ERROR":
            obj = event.get("object") or {}
            if obj.get("code") == 410:
                raise WatchExpired()
            raise ClusterError(
                f"Error from server ({obj.get('reason')}): {obj.get('message')}", obj.get("code")
            )
        yield event
