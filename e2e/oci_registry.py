"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on a loopback port.

    with RegistryServer.start(root) as reg:                  # no authentication
        push_oras(reg.url, "models/fraud", {"model.onnx": b"..."}, tag="2.3.8")
    with RegistryServer.start(root, auth="htpasswd") as reg:  # Basic auth (reg.user / reg.password)
        ...
    with TokenServer.start() as tokens, RegistryServer.start(root, auth=tokens) as reg:  # Bearer tokens
        ...

Several servers may share one storage ``root`` (its files are the registry's state): tests push through
one without authentication and read through one with it, or with a storage ``redirect`` middleware
(``redirect_base``: blob downloads answer 307 to ``<base>/docker/registry/v2/blobs/...``), and tamper
with what is stored by editing ``blob_path(digest)``.

The binary is ``$MV_DOCKER_REGISTRY``, else ``docker-registry`` on the PATH (``apt-get install
docker-registry``; ``bash e2e/build-node.sh --packages`` installs it), and Basic auth needs
``htpasswd`` (apache2-utils) for the bcrypt file. A missing binary raises :class:`RegistryError`:
tests using it fail, never skip.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from childserver import ChildServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TITLE = "org.opencontainers.image.title"
PACKAGES_HINT = "apt-get install docker-registry apache2-utils (bash e2e/build-node.sh --packages)"


class RegistryError(RuntimeError):
    pass


def find_binary(name: str, env: str) -> str:
    found = (
        os.environ.get(env)
        or shutil.which(name)
        or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    )
    if not found:
        raise RegistryError(f"{name} not found: {PACKAGES_HINT}")
    return found


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- the registry --------------------------------------------------------------------------------------
class RegistryServer(ChildServer):
    """One docker-registry process serving ``root`` on ``host`` (127.0.0.1 by default)."""

    what = "docker-registry"
    error = RegistryError

    def __init__(
        self, root: Path, auth: str | TokenServer | None, redirect_base: str | None, host: str = "127.0.0.1"
    ) -> None:
        self.root = root
        self.host = host  # the address it listens on (the e2e tests: the real node's, for the pods)
        self.auth = auth
        self.redirect_base = redirect_base
        self.user = "mv-" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(18)
        self.dir = Path(tempfile.mkdtemp(prefix="mv-registry-"))
        super().__init__(self.dir / "registry.log")

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        auth: str | TokenServer | None = None,
        redirect_base: str | None = None,
        host: str = "127.0.0.1",
        timeout: float = 30.0,
    ) -> RegistryServer:
        server = cls(root, auth, redirect_base, host)
        try:
            server._start(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.root)}, "delete": {"enabled": True}},
            "http": {"addr": f"{self.host}:{self.port}", "secret": secrets.token_hex(16)},
            # foreign layers (descriptors with urls) are accepted, so tests can see the verifier refuse them
            "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
        }
        if self.auth == "htpasswd":
            htpasswd = find_binary("htpasswd", "MV_HTPASSWD")
            line = subprocess.run(
                [htpasswd, "-Bbn", self.user, self.password], check=True, capture_output=True, text=True
            ).stdout.strip()
            (self.dir / "htpasswd").write_text(line + "\n")
            config["auth"] = {"htpasswd": {"realm": "mv-test", "path": str(self.dir / "htpasswd")}}
        elif isinstance(self.auth, TokenServer):
            config["auth"] = {"token": self.auth.registry_config()}
        if self.redirect_base:
            config["middleware"] = {
                "storage": [{"name": "redirect", "options": {"baseurl": self.redirect_base}}]
            }
        return config

    def _command(self) -> tuple[list[str], dict[str, str]]:
        binary = find_binary("docker-registry", "MV_DOCKER_REGISTRY")
        config = self.dir / "config.yml"
        config.write_text(json.dumps(self._config()))  # JSON is YAML
        return [binary, "serve", str(config)], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v2/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # 401: it is serving
        except (OSError, ValueError):
            return False

    def _cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def blob_path(self, digest: str) -> Path:
        """Where the registry stores a blob (a manifest is a blob too): edit it to tamper."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def docker_config(self) -> str:
        """The ``.dockerconfigjson`` of a Secret for this registry (its Basic credentials)."""
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.netloc: {"auth": auth}}})

    def access_log(self) -> list[str]:
        """The request lines the registry logged ("GET /v2/.../blobs/sha256:..."), in order."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"GET /v2/' in line or '"HEAD /v2/' in line:
                out.append(line.split('"', 2)[1])
        return out


# ---- a token service for the registry's Bearer challenge ------------------------------------------------
class TokenServer:
    """The distribution token protocol's server side: ``GET /token?service=..&scope=..`` with Basic
    credentials answers a JWT (RS256, signed by a key whose self-signed certificate the registry
    trusts), granting what the scope asks to ``user`` (anonymous requests get no access)."""

    def __init__(self, realm_host: str = "127.0.0.1") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.realm_host = realm_host  # the name the registry's challenge gives (it listens on 127.0.0.1)
        self.user = "tok-" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(18)
        self.service = "mv-test-registry"
        self.issuer = "mv-test-tokens"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mv-test-tokens")])
        now = time.time()
        import datetime as dt

        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.dir = Path(tempfile.mkdtemp(prefix="mv-tokens-"))
        (self.dir / "root.crt").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        self._httpd: http.server.ThreadingHTTPServer | None = None

    @classmethod
    def start(cls, realm_host: str = "127.0.0.1") -> TokenServer:
        server = cls(realm_host)
        handler = _token_handler(server)
        server._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server._httpd.serve_forever, daemon=True).start()
        return server

    @property
    def realm(self) -> str:
        assert self._httpd is not None
        return f"http://{self.realm_host}:{self._httpd.server_address[1]}/token"

    def registry_config(self) -> dict[str, str]:
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.dir / "root.crt"),
        }

    def docker_config(self, netloc: str) -> str:
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return json.dumps({"auths": {netloc: {"auth": auth}}})

    def token(self, scope: str, granted: bool) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        if granted and scope:
            kind, name, actions = scope.split(":", 2)
            access = [{"type": kind, "name": name, "actions": actions.split(",")}]
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": self.user if granted else "", "aud": self.service, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token_handler(server: TokenServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
            granted = auth == expected
            server.requests.append({"query": query, "authorization": auth, "granted": granted})
            if auth and not granted:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": server.token(query.get("scope", ""), granted)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


# ---- a static file server (the target of the registry's blob redirects) ----------------------------------
class StaticServer:
    """Serves ``root`` over HTTP on 127.0.0.1 and records each request's path and headers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(outer.root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append((self.path, dict(self.headers.items())))
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# ---- pushing (the distribution API's monolithic upload) ---------------------------------------------------
@dataclass
class Pushed:
    digest: str  # the manifest's, sha256:<hex>
    manifest: bytes
    layers: list[str] = field(default_factory=list)  # their digests
    size: int = 0  # the layers' sizes

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=30)


def push_blob(base: str, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    with _request("POST", f"{base}/v2/{repo}/blobs/uploads/") as resp:
        location = resp.headers["Location"]
    url = urllib.parse.urljoin(base + "/", location)
    sep = "&" if "?" in url else "?"
    with _request("PUT", f"{url}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}):
        pass
    return digest


def push_manifest(
    base: str, repo: str, reference: str, manifest: bytes, media_type: str = OCI_MANIFEST
) -> str:
    with _request("PUT", f"{base}/v2/{repo}/manifests/{reference}", manifest, {"Content-Type": media_type}):
        pass
    return sha256_digest(manifest)


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def push_artifact(
    base: str,
    repo: str,
    layers: Iterable[tuple[bytes, dict[str, Any]]],
    *,
    config: tuple[str, bytes] = (OCI_EMPTY, b"{}"),
    artifact_type: str | None = None,
    tag: str = "latest",
) -> Pushed:
    """Push ``layers`` ((bytes, descriptor fields: mediaType, annotations...)) and a manifest; tag it."""
    descriptors, digests, size = [], [], 0
    for data, fields in layers:
        digests.append(push_blob(base, repo, data))
        descriptors.append({**descriptor(fields.get("mediaType", OCI_LAYER_TAR), data), **fields})
        size += len(data)
    push_blob(base, repo, config[1])
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config[0], config[1]),
        "layers": descriptors,
        # every push its own manifest (blobs are shared by every repository of a registry: a test that
        # tampers with one must not tamper with another test's)
        "annotations": {"org.opencontainers.image.ref.name": f"{repo}:{tag}:{secrets.token_hex(6)}"},
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    body = json.dumps(manifest, indent=1).encode()
    return Pushed(push_manifest(base, repo, tag, body), body, digests, size)


def push_oras(base: str, repo: str, files: dict[str, bytes], *, tag: str = "latest") -> Pushed:
    """An ORAS artifact: one layer per file, named by its title annotation (as ``oras push``)."""
    layers = [(data, {"mediaType": "application/vnd.oci.image.layer.v1.tar", "annotations": {TITLE: name}})
              for name, data in files.items()]  # fmt: skip
    return push_artifact(base, repo, layers, artifact_type="application/vnd.unknown.artifact.v1", tag=tag)


def tar_bytes(entries: Iterable[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = False) -> bytes:
    """A tar (gzip) of ``(name, bytes)`` regular files and/or prepared TarInfo entries (links, dirs...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def link_entry(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info
