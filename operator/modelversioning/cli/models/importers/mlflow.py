"""MLflow tracking server and model registry -> ModelVersions, through MLflow's own Python client.

The client (``mlflow.tracking.MlflowClient`` and MLflow's artifact repositories) comes with the
``mlflow`` extra of this package (``pip install 'modelversioning-operator[mlflow]'``: mlflow-skinny,
no server, no UI); the operator image does not carry it. Without it the command fails (exit 1) and
says how to install it.

The server and credentials are the ones MLflow's client takes: ``MLFLOW_TRACKING_URI`` (or
``--tracking-uri``), ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD`` (basic), else
``MLFLOW_TRACKING_TOKEN`` (bearer), user info in the URI, ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``... Only a tracking
server (``http(s)://``) is read: the artifacts behind ``mlflow-artifacts:/`` are served by it.
MLflow's retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7 with backoff factor 2: minutes
against a server that is down) are lowered to 2 retries with factor 1 while the command runs,
unless those variables are set.

Client calls used: ``get_registered_model``, ``search_model_versions``, ``get_model_version``,
``get_model_version_by_alias``, ``get_model_version_download_uri``, ``get_run``,
``get_logged_model`` (MLflow 3); ``runs:/`` and ``models:/`` URIs are resolved with MLflow's own
parsers; ``mlflow-artifacts:/`` artifacts are listed with MLflow's artifact repository and each file
is streamed through the server's proxy with MLflow's HTTP helper (credentials, TLS, retries).

What comes from where (the lineage mapping, also in docs/import.md):

==============================  ===============================================================
ModelVersion field              MLflow
==============================  ===============================================================
spec.version                    the version rule (:mod:`.mapping`)
artifact.uri                    ``get_model_version_download_uri`` (else the version's source),
                                resolved: ``mlflow-artifacts:/P`` -> ``--artifacts-destination``/P,
                                or the server's proxy URL for a single file; ``runs:/ID/P`` ->
                                the run's artifact root/P; ``models:/...`` -> the logged model or
                                registered version; s3://, gs://, http(s)://, file:// as is
artifact.sha256                 streamed: a file's sha256, a directory's manifest digest
artifact.format                 ``mlflow`` when the artifact has an ``MLmodel`` file
lineage.hyperparameters         run params (numbers/booleans parsed), + the logged model's params
metrics                         run metrics (latest value), + the logged model's metrics
lineage.codeCommit              run tag ``mlflow.source.git.commit``
lineage.codeRepository          run tag ``mlflow.source.git.repoURL`` (credentials removed)
lineage.dataset                 the run's dataset input (context ``training``, or the only one,
                                or ``--dataset NAME``): name; digest -> sha256 if 64 hex, else
                                version; source uri/url/path -> uri
lineage.author                  run tag ``mlflow.user``, else the run's ``user_id``
lineage.trainedAt               run start time (UTC, RFC 3339)
lineage.framework               ``MLmodel``: the first flavor other than python_function, with
                                its ``*_version`` (``sklearn-1.5.2``)
lineage.environment             ``MLmodel``: python (python_function.python_version), mlflow
                                (mlflow_version); run tag ``mlflow.source.git.branch``
spec.stage                      ``--stage-from-alias ALIAS=STAGE``, else ``--stage``
spec.description                the MLflow version's description
==============================  ===============================================================
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from modelversioning.api.common import GIT_SHA, SHA256_HEX
from modelversioning.cli.models.actions import Refused, parse_scalar
from modelversioning.cli.models.gitinfo import redact_remote
from modelversioning.cli.models.importers.mapping import Missing

EXIT_FAILED, EXIT_USAGE = 1, 2
EXTRA = "pip install 'modelversioning-operator[mlflow]'"
CHUNK = 1024 * 1024
Progress = Callable[[int, int | None], None]
# MLflow's HTTP retries while the command runs, unless the variables are set (see the docstring).
RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}

GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPO_TAGS = ("mlflow.source.git.repoURL", "mlflow.gitRepoURL")
GIT_BRANCH_TAG = "mlflow.source.git.branch"
USER_TAG = "mlflow.user"
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class MlflowError(Refused):
    """The tracking server could not be reached or answered with an error (exit 1)."""

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message, EXIT_FAILED)
        self.status = status
        self.error_code = error_code

    @property
    def not_found(self) -> bool:
        return self.status == 404 or self.error_code in NOT_FOUND


# ---- MLflow's client --------------------------------------------------------------------------------
def load_mlflow() -> Any:
    """MLflow's client modules, imported on first use (the ``mlflow`` extra); Refused (exit 1) with
    how to install them when they are missing."""
    try:
        import requests
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
        from mlflow.store.artifact.utils.models import get_model_name_and_version
        from mlflow.tracking import MlflowClient
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request
    except ImportError as e:
        raise Refused(
            f"kubectl models import mlflow needs MLflow's Python client, which is not installed here "
            f"({e}): {EXTRA} (mlflow-skinny; or `pip install mlflow-skinny`)",
            EXIT_FAILED,
        ) from None
    return SimpleNamespace(
        MlflowClient=MlflowClient,
        MlflowException=MlflowException,
        RequestException=requests.RequestException,
        ConnectionError=requests.ConnectionError,
        Timeout=requests.Timeout,
        get_artifact_repository=get_artifact_repository,
        runs_underlying_uri=RunsArtifactRepository.get_underlying_uri,
        model_name_and_version=get_model_name_and_version,
        get_default_host_creds=get_default_host_creds,
        http_request=http_request,
    )


def _redact(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return uri


def _redact_text(text: str) -> str:
    """Credentials in URLs inside an error message (MLflow's messages quote the request URL)."""
    return re.sub(r"(?<=://)[^/@\s'\"]+@", "", text)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


@dataclass
class Tracking:
    """One MLflow tracking server and MLflow's client for it."""

    uri: str = field(repr=False)  # as given (may hold user info: MLflow's client uses it)
    shown: str  # without credentials, no trailing slash (messages, annotations)
    client: Any = field(repr=False)
    mlflow: Any = field(repr=False)

    @classmethod
    def from_env(cls, uri: str | None = None, env: Mapping[str, str] | None = None) -> Tracking:
        env = os.environ if env is None else env
        raw = uri or env.get("MLFLOW_TRACKING_URI") or ""
        if not raw:
            raise Refused(
                "no MLflow tracking server: set MLFLOW_TRACKING_URI (e.g. http://mlflow.example.com:5000) "
                "or pass --tracking-uri",
                EXIT_USAGE,
            )
        parts = urllib.parse.urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(
                f"MLflow tracking URI {_redact(raw)!r}: kubectl models import reads an MLflow tracking "
                "server over HTTP (http:// or https://), which also serves the mlflow-artifacts:/ "
                "artifacts; a local store (file:, sqlite:...) needs `mlflow server --backend-store-uri "
                "...` in front of it",
                EXIT_USAGE,
            )
        mlflow = load_mlflow()
        raw = raw.rstrip("/")
        return cls(raw, _redact(raw), mlflow.MlflowClient(tracking_uri=raw), mlflow)

    # -- MLflow's exceptions -> ours
    def error(self, e: BaseException, what: str) -> MlflowError:
        m = self.mlflow
        for c in _chain(e):
            if isinstance(c, m.ConnectionError | m.Timeout):
                text = str(c)
                found = re.search(r"(\[Errno -?\d+\][^'\")]*|timed out|[Cc]ertificate[^'\")]*)", text)
                reason = found.group(1).strip() if found else type(c).__name__
                return MlflowError(
                    f"cannot reach the MLflow tracking server at {self.shown}: {reason} (is "
                    "MLFLOW_TRACKING_URI right and the server up?)"
                )
        status: int | None = None
        code: str | None = None
        message = str(e)
        if isinstance(e, m.MlflowException):
            code = str(e.error_code) if e.error_code else None
            status = int(e.get_http_status_code())
            message = str(e.message)
        elif isinstance(e, m.RequestException) and getattr(e, "response", None) is not None:
            status = int(e.response.status_code)
        message = _redact_text(message.strip())[:500]
        if status in (401, 403):
            return MlflowError(
                f"the MLflow tracking server at {self.shown} refused the request (HTTP {status}"
                f"{': ' + message if message else ''}); set MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
                status,
                code,
            )
        return MlflowError(f"MLflow ({self.shown}): {what}: {message}", status, code)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), MLflow's and requests' exceptions as MlflowError."""
        try:
            return fn(*args, **kwargs)
        except MlflowError:
            raise
        except (self.mlflow.MlflowException, self.mlflow.RequestException) as e:
            raise self.error(e, what) from None


@contextmanager
def connect(uri: str | None = None) -> Iterator[Tracking]:
    """MLflow's client for the server, with the command's retry defaults while it runs."""
    t = Tracking.from_env(uri)
    saved = {k: os.environ.get(k) for k in RETRY_DEFAULTS}
    for k, v in RETRY_DEFAULTS.items():
        os.environ.setdefault(k, v)
    try:
        yield t
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)


# ---- the registry -----------------------------------------------------------------------------------
@dataclass
class SourceVersion:
    """One MLflow model version, with its run (when it has one) and what they say."""

    name: str
    version: str
    source: str
    run_id: str | None
    status: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    description: str


def _version_from(mv: Any) -> SourceVersion:
    return SourceVersion(
        name=str(mv.name),
        version=str(mv.version),
        source=str(mv.source or ""),
        run_id=str(mv.run_id) if mv.run_id else None,
        status=str(mv.status or "READY"),
        aliases=tuple(str(a) for a in mv.aliases or []),
        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
        description=str(mv.description or ""),
    )


def get_model(t: Tracking, name: str) -> Any:
    """The registered model (MLflow's entity)."""
    try:
        return t.call("get_registered_model", t.client.get_registered_model, name)
    except MlflowError as e:
        if e.not_found:
            raise MlflowError(
                f"MLflow ({t.shown}) has no registered model {name!r}", e.status, e.error_code
            ) from None
        raise


def get_version(t: Tracking, name: str, version: str) -> SourceVersion:
    try:
        mv = t.call("get_model_version", t.client.get_model_version, name, version)
    except MlflowError as e:
        if e.not_found:
            get_model(t, name)  # says "no registered model" when that is the problem
            raise MlflowError(
                f"MLflow model {name!r} has no version {version!r}", e.status, e.error_code
            ) from None
        raise
    return _version_from(mv)


def select_versions(
    t: Tracking, name: str, *, versions: Sequence[str] = (), aliases: Sequence[str] = (), all_: bool = False
) -> list[SourceVersion]:
    """The MLflow versions asked for (each fetched with its aliases and tags), oldest first."""
    wanted: list[str] = []
    if all_:
        get_model(t, name)
        token: str | None = None
        while True:
            page = t.call(
                "search_model_versions",
                t.client.search_model_versions,
                filter_string=f"name='{name.replace(chr(39), chr(92) + chr(39))}'",
                max_results=1000,
                page_token=token,
            )
            wanted += [str(v.version) for v in page]
            token = getattr(page, "token", None) or None
            if not token:
                break
        if not wanted:
            raise MlflowError(f"MLflow model {name!r} has no versions")
    for v in versions:
        if not v.strip().isdigit():
            raise Refused(f"--version {v!r}: MLflow versions are integers (1, 2, ...)", EXIT_USAGE)
        wanted.append(str(int(v)))
    for alias in aliases:
        try:
            mv = t.call("get_model_version_by_alias", t.client.get_model_version_by_alias, name, alias)
        except MlflowError as e:
            if e.not_found:
                model = get_model(t, name)
                known = ", ".join(sorted(f"{a}={v}" for a, v in (model.aliases or {}).items()))
                raise MlflowError(
                    f"MLflow model {name!r} has no alias {alias!r} (aliases: {known or 'none'})",
                    e.status,
                    e.error_code,
                ) from None
            raise
        wanted.append(str(mv.version))
    out: list[SourceVersion] = []
    for v in sorted(set(wanted), key=int):
        sv = get_version(t, name, v)
        if sv.status != "READY":
            raise MlflowError(f"MLflow model {name!r} version {v} is {sv.status}, not READY")
        out.append(sv)
    return out


def get_run(t: Tracking, run_id: str) -> Any:
    """The run (MLflow's entity: info, data, inputs)."""
    try:
        return t.call("get_run", t.client.get_run, run_id)
    except MlflowError as e:
        if e.not_found:
            raise MlflowError(f"MLflow run {run_id} not found (deleted?)", e.status, e.error_code) from None
        raise


def get_logged_model(t: Tracking, model_id: str) -> Any | None:
    """MLflow 3's logged model (``models:/m-...``); None when the server does not know it."""
    try:
        return t.call("get_logged_model", t.client.get_logged_model, model_id)
    except MlflowError as e:
        if e.not_found or e.status == 501 or e.error_code == "ENDPOINT_NOT_FOUND":
            return None
        raise


# ---- artifacts --------------------------------------------------------------------------------------
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
            f"{label}: artifact {_redact(uri)} is in a store kubectl models cannot read (supported: "
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


def _proxy_walk(t: Tracking, repo: Any, rel: str | None = None) -> Iterator[tuple[str, int | None]]:
    for f in t.call("list_artifacts", repo.list_artifacts, rel):
        if f.is_dir:
            yield from _proxy_walk(t, repo, str(f.path))
        else:
            yield str(f.path), int(f.file_size) if f.file_size is not None else None


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
        t.mlflow.get_default_host_creds(host),
        posixpath.join("/", name),
        "GET",
        stream=True,
    )
    try:
        if resp.status_code != 200:
            shown = f"{art.mlflow_uri}/{rel}" if rel else art.mlflow_uri
            if resp.status_code in (401, 403):
                raise MlflowError(
                    f"the MLflow tracking server at {t.shown} refused the download of {shown} (HTTP "
                    f"{resp.status_code}); set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD",
                    resp.status_code,
                )
            raise MlflowError(
                f"{shown}: HTTP {resp.status_code} {_redact_text(resp.text.strip())[:300]}",
                resp.status_code,
            )
        yield resp
    finally:
        resp.close()


def proxy_kind(t: Tracking, art: ResolvedArtifact) -> tuple[str, list[tuple[str, int | None]]]:
    """("directory", files) or ("file", []) for a proxied artifact; MlflowError when nothing is there."""
    files = sorted(_proxy_walk(t, _repo(t, art)))
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


# ---- lineage ----------------------------------------------------------------------------------------
def _rfc3339(ms: Any) -> str | None:
    try:
        return (
            datetime.fromtimestamp(int(ms) / 1000, UTC)
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z")
        )
    except (TypeError, ValueError, OverflowError):
        return None


def framework_of(mlmodel: Mapping[str, Any] | None) -> str | None:
    """'sklearn-1.5.2' from MLmodel flavors (the first one other than python_function)."""
    flavors = (mlmodel or {}).get("flavors") or {}
    if not isinstance(flavors, dict):
        return None
    for name, conf in flavors.items():
        if name == "python_function":
            continue
        conf = conf if isinstance(conf, dict) else {}
        version = next(
            (str(v) for k, v in conf.items() if k.endswith("_version") and k != "python_version" and v), None
        )
        return f"{name}-{version}" if version else str(name)
    if "python_function" in flavors:
        loader = (flavors["python_function"] or {}).get("loader_module")
        return f"pyfunc-{loader}" if loader else "pyfunc"
    return None


def _dataset_uri(source: str) -> str | None:
    try:
        data = json.loads(source)
    except ValueError:
        return source if "://" in source else None
    if isinstance(data, dict):
        for key in ("uri", "url", "path", "source_uri"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return None


DatasetInput = tuple[dict[str, str], dict[str, str]]  # (name/digest/source, input tags)


def dataset_inputs(run: Any) -> list[DatasetInput]:
    """The run's dataset inputs (MLflow's RunInputs) as plain (dataset, tags) pairs."""
    out: list[DatasetInput] = []
    for i in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        d = i.dataset
        out.append(
            (
                {"name": str(d.name or ""), "digest": str(d.digest or ""), "source": str(d.source or "")},
                {str(tag.key): str(tag.value) for tag in i.tags or []},
            )
        )
    return out


def choose_dataset(
    inputs: Sequence[DatasetInput], wanted: str | None
) -> tuple[dict[str, str] | None, Missing | None]:
    """The dataset input of a run that trained the model: --dataset NAME, else context
    ``training``, else the only one. (dataset, None) or (None, why it is missing)."""
    names = sorted({d["name"] for d, _ in inputs})
    if wanted is not None:
        pick = [d for d, _ in inputs if d["name"] == wanted]
        if not pick:
            return None, Missing(
                "lineage.dataset",
                f"--dataset {wanted}: the run has no dataset input of that name "
                f"(inputs: {', '.join(names) or 'none'})",
            )
        return pick[0], None
    training = [d for d, tags in inputs if tags.get("mlflow.data.context") == "training"]
    if len({d["name"] for d in training}) == 1:
        return training[0], None
    if len(names) == 1:
        return inputs[0][0], None
    if not inputs:
        return None, Missing(
            "lineage.dataset",
            "the run has no dataset input: log one in the training code with "
            "mlflow.log_input(mlflow.data.from_...(...), context='training')",
        )
    return None, Missing(
        "lineage.dataset",
        f"the run has several dataset inputs ({', '.join(names)}) and none (or several) with context "
        "'training': pick one with --dataset NAME",
    )


def dataset_of(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": str(d.get("name") or "")}
    digest = str(d.get("digest") or "")
    if re.match(SHA256_HEX, digest):
        out["sha256"] = digest
    elif digest:
        out["version"] = digest
    uri = _dataset_uri(str(d.get("source") or ""))
    if uri and len(uri) <= 2048:
        out["uri"] = uri
    return out


@dataclass
class Gathered:
    """Everything the lineage of one ModelVersion needs, as found in MLflow, and what is missing."""

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    code_commit: str | None = None
    code_repository: str | None = None
    dataset: dict[str, Any] | None = None
    author: str | None = None
    trained_at: str | None = None
    framework: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _metrics(run: Any, logged: Any | None) -> list[tuple[str, Any]]:
    """(key, latest value): the run's, then the logged model's."""
    out = [(str(k), v) for k, v in (run.data.metrics or {}).items()]
    if logged is not None:
        out += [(str(m.key), m.value) for m in logged.metrics or []]
    return out


def gather_lineage(
    sv: SourceVersion,
    run: Any | None,
    logged: Any | None,
    mlmodel: Mapping[str, Any] | None,
    dataset: str | None = None,
) -> Gathered:
    """Lineage from the run (MLflow's Run), MLflow 3's logged model and MLmodel; every missing field
    is listed with where it would come from. Nothing is invented."""
    g = Gathered()
    if run is None:
        g.missing.append(
            Missing(
                "lineage (all of it)",
                f"MLflow version {sv.version} has no run: it was registered from a path "
                f"({sv.source}); lineage comes from the run that logged the model",
            )
        )
        return g
    info = run.info
    tags = {str(k): str(v) for k, v in (run.data.tags or {}).items()}
    g.run_tags = tags
    run_id = info.run_id or sv.run_id
    params = dict(run.data.params or {})
    if logged is not None:
        params.update(logged.params or {})
    for k, v in params.items():
        g.hyperparameters[str(k)] = parse_scalar(str(v))
    for key, value in _metrics(run, logged):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            g.metrics[key] = float(value)
        else:
            g.notes.append(f"metric {key}={value!r} is not a finite number: left out")
    if not g.metrics:
        g.missing.append(
            Missing("metrics", f"run {run_id} logged no metrics (mlflow.log_metric in the training code)")
        )

    commit = tags.get(GIT_COMMIT_TAG, "").strip().lower()
    if not commit:
        g.missing.append(
            Missing(
                "lineage.codeCommit",
                f"run tag {GIT_COMMIT_TAG} on run {run_id}: MLflow sets it when the training code runs "
                "from a git checkout; or set it with MlflowClient().set_tag(run_id, "
                f"'{GIT_COMMIT_TAG}', SHA)",
            )
        )
    elif not re.match(GIT_SHA, commit):
        g.missing.append(
            Missing("lineage.codeCommit", f"run tag {GIT_COMMIT_TAG}={commit!r} is not a hex git commit")
        )
    else:
        g.code_commit = commit
    repo = next((tags[k] for k in GIT_REPO_TAGS if tags.get(k)), None)
    if repo:
        g.code_repository = redact_remote(repo.strip())
    else:
        g.missing.append(
            Missing(
                "lineage.codeRepository",
                f"run tag {GIT_REPO_TAGS[0]} on run {run_id}: MLflow sets it from the checkout's remote; "
                f"or set it with MlflowClient().set_tag(run_id, '{GIT_REPO_TAGS[0]}', URL)",
            )
        )
    if tags.get(GIT_BRANCH_TAG):
        g.environment["gitBranch"] = tags[GIT_BRANCH_TAG][:256]

    chosen, why = choose_dataset(dataset_inputs(run), dataset)
    if chosen is not None:
        ds = dataset_of(chosen)
        if not ds["name"]:
            g.missing.append(
                Missing("lineage.dataset.name", f"the dataset input of run {run_id} has no name")
            )
        elif "version" not in ds and "sha256" not in ds:
            g.missing.append(
                Missing(
                    "lineage.dataset.version",
                    f"dataset {ds['name']} of run {run_id} has no digest (MLflow computes one when the "
                    "dataset is logged with mlflow.data)",
                )
            )
        else:
            g.dataset = ds
    elif why is not None:
        g.missing.append(why)

    g.author = tags.get(USER_TAG) or (str(info.user_id) if info.user_id else None)
    if not g.author:
        g.missing.append(
            Missing("lineage.author", f"run tag {USER_TAG} (or the run's user_id) of run {run_id}")
        )
    g.trained_at = _rfc3339(info.start_time)
    if not g.trained_at:
        g.missing.append(Missing("lineage.trainedAt", f"the start time of run {run_id}"))

    g.framework = framework_of(mlmodel)
    if not g.framework:
        g.missing.append(
            Missing(
                "lineage.framework",
                "the MLmodel file of the artifact (its flavors); the artifact is not an MLflow model "
                "logged with mlflow.<flavor>.log_model",
            )
        )
    if mlmodel:
        pyfunc = (
            ((mlmodel.get("flavors") or {}).get("python_function") or {})
            if isinstance(mlmodel.get("flavors"), dict)
            else {}
        )
        if isinstance(pyfunc, dict) and pyfunc.get("python_version"):
            g.environment["python"] = str(pyfunc["python_version"])
        if mlmodel.get("mlflow_version"):
            g.environment["mlflow"] = str(mlmodel["mlflow_version"])
    return g
