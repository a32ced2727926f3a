"""Where an MLflow version's bytes are and their digest, for ``kubectl models import mlflow``:
``runs:/`` and ``models:/`` URIs resolved with MLflow's parsers, ``mlflow-artifacts:/`` listed with
MLflow's artifact repository and streamed through the server's proxy (credentials, TLS, retries),
other stores (s3://, gs://, http(s)://, file://) read directly; the ``MLmodel`` file read for the
lineage.
"""

from __future__ import annotations

import hashlib
import posixpath
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused
from modelversioning.cli.models.importers.mlflow_client import (
    MlflowError,
    Tracking,
    redact,
    redact_text,
    shown_origin,
)
from modelversioning.cli.models.importers.mlflow_registry import SourceVersion, get_logged_model

CHUNK = 1024 * 1024
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ResolvedArtifact:
    """Where an MLflow version's bytes are: the URI MLflow gave (resolved), the URI for the
    ModelVersion and how the importer reads them (through the server's artifact proxy, or from the
    store itself)."""

    mlflow_uri: str  # as MLflow names it, runs:/ and models:/ resolved (mlflow-artifacts:/..., s3://...)
    proxy_path: str | None  # path under the server's artifact proxy; None: read `direct`
    proxy_url: str | None  # the proxy's http(s) URL of it (no credentials)
    direct: str | None  # a URI the importer reads itself (s3://, gs://, http(s)://, file://)
    destination: str | None  # --artifacts-destination form of a proxied path, else None


_SCHEMES = ("s3", "s3a", "gs", "gcs", "http", "https", "file")


def download_uri(t: Tracking, sv: SourceVersion) -> str:
    """The artifact URI of a version: get_model_version_download_uri, else its source."""
    try:
        uri = t.call(
            "get_model_version_download_uri", t.client.get_model_version_download_uri, sv.name, sv.version
        )
    except MlflowError as e:
        if e.status in (401, 403) or e.status is None:
            raise
        uri = None
    return str(uri or sv.source)


def _resolve_models_uri(t: Tracking, label: str, uri: str) -> str:
    """models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/STAGE, models:/m-ID -> its location
    (MLflow's own parser; the registry and logged models of this server)."""
    try:
        found = t.call("resolve models:/", t.mlflow.model_name_and_version, t.client, uri)
        if len(found) == 1:
            logged = get_logged_model(t, str(found[0]))
            root = str(logged.artifact_location or "") if logged is not None else ""
        else:
            root = str(
                t.call(
                    "get_model_version_download_uri",
                    t.client.get_model_version_download_uri,
                    str(found[0]),
                    str(found[1]),
                )
                or ""
            )
    except MlflowError as e:
        if not e.not_found:
            raise
        root = ""
    if not root:
        raise MlflowError(f"{label}: cannot resolve {uri} (the server knows no such model)")
    return root


def resolve_artifact(
    t: Tracking, sv: SourceVersion, uri: str, artifacts_destination: str | None
) -> ResolvedArtifact:
    """Map an MLflow artifact URI to the store behind it; Refused for what cannot be mapped."""
    label = f"MLflow {sv.name} version {sv.version}"
    if uri.startswith("runs:/"):
        try:
            uri = str(t.call("resolve runs:/", t.mlflow.runs_underlying_uri, uri, t.uri))
        except MlflowError as e:
            if e.not_found:
                raise MlflowError(f"{label}: cannot resolve {uri} (no such run)", e.status) from None
            raise
    if uri.startswith("models:/"):
        uri = _resolve_models_uri(t, label, uri)
    if uri.startswith("mlflow-artifacts:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path).lstrip("/")
        # the proxy URL as MLflow's repository resolves it (mlflow-artifacts://host:port/P: that server)
        shown = t.call("artifact repository", t.mlflow.get_artifact_repository, uri, tracking_uri=t.shown)
        dest = artifacts_destination.rstrip("/") + "/" + path if artifacts_destination else None
        return ResolvedArtifact(uri, path, str(shown.artifact_uri), None, dest)
    if uri.startswith("/"):
        uri = Path(uri).as_uri()
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme not in _SCHEMES:
        raise Refused(
            f"{label}: artifact {redact(uri)} is in a store kubectl models cannot read (supported: "
            "mlflow-artifacts:/ through the server, s3://, gs://, http(s)://, file://)",
            EXIT_FAILED,
        )
    return ResolvedArtifact(uri, None, None, uri, None)


def normalize_destination(value: str | None) -> str | None:
    """--artifacts-destination as a URI: an absolute local path becomes file://."""
    if not value:
        return None
    if "://" in value:
        return value.rstrip("/")
    p = Path(value)
    if not p.is_absolute():
        raise Refused(
            f"--artifacts-destination {value!r}: give a URI (s3://bucket/prefix) or an absolute path; a "
            "relative path is relative to where the MLflow server runs, which is not known here",
            EXIT_USAGE,
        )
    return p.as_uri()


@dataclass(frozen=True)
class ArtifactDigest:
    sha256: str
    size_bytes: int
    files: int
    kind: str  # file | directory


def _repo(t: Tracking, art: ResolvedArtifact) -> Any:
    """MLflow's artifact repository of a proxied artifact (mlflow-artifacts:/ -> the server's proxy)."""
    return t.call("artifact repository", t.mlflow.get_artifact_repository, art.mlflow_uri, tracking_uri=t.uri)


_LIST = "/mlflow-artifacts/artifacts"


def _refused_off_server(t: Tracking, url: str, status: int, what: str) -> None:
    """MlflowError for a 401/403 from a host that is not the tracking server (sent no credentials)."""
    if status in (401, 403) and not t.is_tracking_server(url):
        raise MlflowError(
            f"{shown_origin(url)} refused {what} (HTTP {status}): it is not the MLflow tracking server "
            f"{t.shown}, and MLflow's credentials are sent to the tracking server only",
            status,
        )


def _list(t: Tracking, root: str, rel: str | None) -> list[tuple[str, bool, int | None]]:
    """(path, is_dir, size) of the entries under root/rel: what MLflow's HTTP artifact repository's
    list_artifacts does, with the credentials of Tracking.host_creds (none off the tracking server)."""
    url, tail = root.split(_LIST, 1)
    base = tail.lstrip("/")
    resp = t.mlflow.http_request(
        t.host_creds(url), _LIST, "GET", params={"path": posixpath.join(base, rel) if rel else base}
    )
    _refused_off_server(t, url, resp.status_code, f"the listing of {redact(root)}")
    t.mlflow.raise_for_status(resp)
    found: list[tuple[str, bool, int | None]] = []
    for f in resp.json().get("files", []):
        path = str(t.mlflow.validate_path_is_safe(f["path"]))
        size = int(f["file_size"]) if "file_size" in f else None
        found.append((posixpath.join(rel, path) if rel else path, bool(f["is_dir"]), size))
    if (
        len(found) == 1
        and not found[0][1]
        and rel
        and found[0][0] == posixpath.join(rel, posixpath.basename(rel))
    ):
        return []  # rel is a file (MLflow's convention: an empty listing)
    return found


def _proxy_walk(t: Tracking, root: str, rel: str | None = None) -> Iterator[tuple[str, int | None]]:
    for path, is_dir, size in t.call("list_artifacts", _list, t, root, rel):
        if is_dir:
            yield from _proxy_walk(t, root, path)
        else:
            yield path, size


@contextmanager
def _proxied(t: Tracking, art: ResolvedArtifact, rel: str = "") -> Iterator[Any]:
    """A streamed GET of one proxied file (``rel`` under the artifact; "" for a file artifact),
    with MLflow's credentials, TLS settings and retries (what its HTTP artifact repository does to
    download a file). MlflowError with the HTTP status when the server answers with an error."""
    root = str(_repo(t, art).artifact_uri)
    host, name = (root, rel) if rel else root.rsplit("/", 1)
    resp = t.call(
        "download",
        t.mlflow.http_request,
        t.host_creds(host),
        posixpath.join("/", name),
        "GET",
        stream=True,
    )
    try:
        if resp.status_code != 200:
            shown = f"{art.mlflow_uri}/{rel}" if rel else art.mlflow_uri
            _refused_off_server(t, host, resp.status_code, f"the download of {shown}")
            if resp.status_code in (401, 403):
                raise MlflowError(
                    f"the MLflow tracking server at {t.shown} refused the download of {shown} (HTTP "
                    f"{resp.status_code}); set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD",
                    resp.status_code,
                )
            raise MlflowError(
                f"{shown}: HTTP {resp.status_code} {redact_text(resp.text.strip())[:300]}",
                resp.status_code,
            )
        yield resp
    finally:
        resp.close()


def proxy_kind(t: Tracking, art: ResolvedArtifact) -> tuple[str, list[tuple[str, int | None]]]:
    """("directory", files) or ("file", []) for a proxied artifact; MlflowError when nothing is there."""
    files = sorted(_proxy_walk(t, str(_repo(t, art).artifact_uri)))
    if files:
        return "directory", files
    try:
        with _proxied(t, art) as resp:
            next(resp.iter_content(1), b"")
    except MlflowError as e:
        if e.status in (401, 403):
            raise
        raise MlflowError(
            f"the artifact {art.mlflow_uri} is missing on the MLflow server ({e.message})", e.status
        ) from None
    return "file", []


def _hash_stream(resp: Any, progress: Progress | None, done: list[int]) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for chunk in resp.iter_content(CHUNK):
        h.update(chunk)
        n += len(chunk)
        done[0] += len(chunk)
        if progress:
            progress(done[0], done[1] if len(done) > 1 and done[1] >= 0 else None)
    return h.hexdigest(), n


def hash_proxied(t: Tracking, art: ResolvedArtifact, progress: Progress | None = None) -> ArtifactDigest:
    """Stream every file through the server's artifact proxy: a file's sha256, or the manifest digest
    of a directory (same format as the operator's, via artifacts.manifest_digest)."""
    from modelversioning.artifacts import manifest_digest

    assert art.proxy_path is not None
    kind, files = proxy_kind(t, art)
    try:
        if kind == "file":
            with _proxied(t, art) as resp:
                length = resp.headers.get("Content-Length")
                sha, n = _hash_stream(resp, progress, [0, int(length) if length else -1])
            if length is not None and int(length) != n:
                raise MlflowError(f"{art.mlflow_uri}: read {n} of {length} bytes (truncated); try again")
            return ArtifactDigest(sha, n, 1, "file")
        total = sum(s for _, s in files if s is not None) if all(s is not None for _, s in files) else -1
        done = [0, total]
        entries: list[tuple[str, str]] = []
        size = 0
        for rel, expected in files:
            with _proxied(t, art, rel) as resp:
                sha, n = _hash_stream(resp, progress, done)
            if expected is not None and n != expected:
                raise MlflowError(
                    f"{art.mlflow_uri}/{rel}: read {n} of {expected} bytes (truncated); try again"
                )
            entries.append((rel, sha))
            size += n
    except t.mlflow.RequestException as e:  # the connection broke while streaming
        raise t.error(e, f"download {art.mlflow_uri}") from None
    return ArtifactDigest(manifest_digest(entries), size, len(entries), "directory")


def hash_direct(uri: str, progress: Progress | None = None) -> ArtifactDigest:
    """s3/gs/http(s)/file: the artifacts package's own streaming digest (credentials from the
    environment, as for `register` with a remote --artifact)."""
    from modelversioning.artifacts import ArtifactError, compute_digest, digest_local

    try:
        if uri.startswith("file://"):
            d = digest_local(urllib.parse.unquote(urllib.parse.urlsplit(uri).path), progress=progress)
        else:
            d = compute_digest(uri, progress=progress)
    except ArtifactError as e:
        raise Refused(f"cannot hash the artifact: {e}", EXIT_FAILED) from None
    return ArtifactDigest(d.sha256, d.size_bytes, d.files, d.kind)


def read_mlmodel(t: Tracking, art: ResolvedArtifact, kind: str) -> dict[str, Any] | None:
    """The MLmodel file of an MLflow model directory (flavors, versions), or None."""
    text: str | None = None
    if art.proxy_path is not None:
        if kind != "directory":
            return None
        try:
            with _proxied(t, art, "MLmodel") as resp:
                raw = b""
                for chunk in resp.iter_content(64 * 1024):
                    raw += chunk
                    if len(raw) >= 1 << 20:
                        break
                text = raw.decode("utf-8", "replace")
        except MlflowError as e:
            if e.status == 404:
                return None
            raise
    elif art.direct is not None:
        try:
            import fsspec

            from modelversioning.artifacts import storage_options

            scheme = urllib.parse.urlsplit(art.direct).scheme
            opts = storage_options(scheme) if scheme not in ("file", "http", "https") else {}
            with fsspec.open(art.direct.rstrip("/") + "/MLmodel", "rb", **opts) as f:
                text = f.read(1 << 20).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except Exception as e:  # a store error: the hashing step reports it with its reason
            raise Refused(f"cannot read {art.direct.rstrip('/')}/MLmodel: {e}", EXIT_FAILED) from None
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None
