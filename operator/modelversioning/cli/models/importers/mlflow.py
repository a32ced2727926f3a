"""MLflow tracking server and model registry -> ModelVersions, over MLflow's REST API.

Plain HTTP (``urllib``), so ``kubectl models`` does not need the ``mlflow`` package. The server
and credentials are taken the way MLflow's own client takes them:

* ``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``): ``http(s)://host[:port][/prefix]``;
* ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD`` (HTTP basic), else
  ``MLFLOW_TRACKING_TOKEN`` (``Authorization: Bearer``); user info in the URI is basic auth too;
* ``MLFLOW_TRACKING_INSECURE_TLS=true`` (no certificate check) or
  ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (a CA bundle).

Endpoints used: ``registered-models/get``, ``registered-models/alias``, ``model-versions/search``,
``model-versions/get``, ``model-versions/get-download-uri``, ``runs/get``, ``logged-models/<id>``
(MLflow 3) and the artifact proxy ``mlflow-artifacts/artifacts`` (list and download).

What comes from where (the lineage mapping, also in docs/import.md):

==============================  ===============================================================
ModelVersion field              MLflow
==============================  ===============================================================
spec.version                    the version rule (:mod:`.mapping`)
artifact.uri                    ``get-download-uri`` (else the version's ``source``), resolved:
                                ``mlflow-artifacts:/P`` -> ``--artifacts-destination``/P, or
                                the server's proxy URL for a single file; ``runs:/ID/P`` ->
                                the run's artifact root/P; s3://, gs://, http(s)://, file:// as is
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

import base64
import hashlib
import json
import math
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from modelversioning.api.common import GIT_SHA, SHA256_HEX
from modelversioning.cli.models.actions import Refused, parse_scalar
from modelversioning.cli.models.gitinfo import redact_remote
from modelversioning.cli.models.importers.mapping import Missing

EXIT_FAILED, EXIT_USAGE = 1, 2
API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
CHUNK = 1024 * 1024
Progress = Callable[[int, int | None], None]

GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPO_TAGS = ("mlflow.source.git.repoURL", "mlflow.gitRepoURL")
GIT_BRANCH_TAG = "mlflow.source.git.branch"
USER_TAG = "mlflow.user"


class MlflowError(Refused):
    """The tracking server could not be reached or answered with an error (exit 1)."""

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message, EXIT_FAILED)
        self.status = status
        self.error_code = error_code


# ---- the REST client ------------------------------------------------------------------------------
@dataclass
class Tracking:
    """One MLflow tracking server: base URL (no credentials), auth header, TLS settings."""

    base: str
    authorization: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    timeout: float = 60.0

    @property
    def shown(self) -> str:
        return self.base

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
                f"MLflow tracking URI {_redact(raw)!r}: kubectl models import talks to an MLflow tracking "
                "server over HTTP (http:// or https://); a local store (file:, sqlite:, databricks...) "
                "needs `mlflow server --backend-store-uri ...` in front of it",
                EXIT_USAGE,
            )
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        if ":" in parts.hostname:
            host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        base = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
        user = env.get("MLFLOW_TRACKING_USERNAME") or urllib.parse.unquote(parts.username or "")
        password = env.get("MLFLOW_TRACKING_PASSWORD") or urllib.parse.unquote(parts.password or "")
        token = env.get("MLFLOW_TRACKING_TOKEN")
        auth: str | None = None
        if user and password:
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif token:
            auth = f"Bearer {token}"
        context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if (env.get("MLFLOW_TRACKING_INSECURE_TLS") or "").lower() == "true":
                context = ssl._create_unverified_context()
            elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
                context = ssl.create_default_context(cafile=env["MLFLOW_TRACKING_SERVER_CERT_PATH"])
        return cls(base, auth, context)

    # -- plumbing
    def _request(self, url: str) -> Any:
        req = urllib.request.Request(url, headers={"User-Agent": "kubectl-models"})
        if self.authorization:
            req.add_header("Authorization", self.authorization)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl_context)
        except urllib.error.HTTPError as e:
            body = e.read(65536).decode("utf-8", "replace")
            e.close()
            code, message = None, body.strip()[:500]
            try:
                data = json.loads(body)
                code, message = data.get("error_code"), str(data.get("message") or message)
            except ValueError:
                pass
            if e.code in (401, 403):
                raise MlflowError(
                    f"the MLflow tracking server at {self.shown} refused the request (HTTP {e.code}"
                    f"{': ' + message if message else ''}); set MLFLOW_TRACKING_TOKEN, or "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
                    e.code,
                    code,
                ) from None
            raise MlflowError(
                f"MLflow ({self.shown}): HTTP {e.code} {code or ''}: {message}".replace("  ", " "),
                e.code,
                code,
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise MlflowError(
                f"cannot reach the MLflow tracking server at {self.shown}: {reason} (is MLFLOW_TRACKING_URI "
                "right and the server up?)"
            ) from None

    def get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        query = urllib.parse.urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
        url = f"{self.base}{API}/{endpoint}" + (f"?{query}" if query else "")
        with self._request(url) as resp:
            body = resp.read()
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise MlflowError(
                f"{self.shown} did not answer {endpoint} with JSON: is it an MLflow tracking server?"
            ) from None
        if not isinstance(data, dict):
            raise MlflowError(f"{self.shown}: unexpected answer to {endpoint}")
        return data

    def proxy_list(self, path: str, base: str | None = None) -> list[dict[str, Any]]:
        url = f"{base or self.base}{PROXY}?{urllib.parse.urlencode({'path': path})}"
        with self._request(url) as resp:
            data = json.loads(resp.read() or b"{}")
        return list(data.get("files") or [])

    def proxy_open(self, path: str, base: str | None = None) -> Any:
        return self._request(f"{base or self.base}{PROXY}/{urllib.parse.quote(path)}")


def _redact(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return uri


# ---- the registry -----------------------------------------------------------------------------------
def _tags(items: Any) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value", "")) for t in items or [] if isinstance(t, dict)}


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
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _version_from(raw: Mapping[str, Any]) -> SourceVersion:
    return SourceVersion(
        name=str(raw.get("name")),
        version=str(raw.get("version")),
        source=str(raw.get("source") or ""),
        run_id=str(raw["run_id"]) if raw.get("run_id") else None,
        status=str(raw.get("status") or "READY"),
        aliases=tuple(str(a) for a in raw.get("aliases") or []),
        tags=_tags(raw.get("tags")),
        description=str(raw.get("description") or ""),
        raw=dict(raw),
    )


def _not_found(e: MlflowError) -> bool:
    return e.status == 404 or e.error_code == "RESOURCE_DOES_NOT_EXIST"


def get_version(t: Tracking, name: str, version: str) -> SourceVersion:
    try:
        raw = t.get("model-versions/get", name=name, version=version)["model_version"]
    except MlflowError as e:
        if _not_found(e) or e.error_code == "INVALID_PARAMETER_VALUE":
            get_model(t, name)  # says "no registered model" when that is the problem
            raise MlflowError(
                f"MLflow model {name!r} has no version {version!r}", e.status, e.error_code
            ) from None
        raise
    except KeyError:
        raise MlflowError(f"{t.shown}: model-versions/get answered without a model_version") from None
    return _version_from(raw)


def get_model(t: Tracking, name: str) -> dict[str, Any]:
    try:
        return dict(t.get("registered-models/get", name=name).get("registered_model") or {})
    except MlflowError as e:
        if _not_found(e):
            raise MlflowError(
                f"MLflow ({t.shown}) has no registered model {name!r}", e.status, e.error_code
            ) from None
        raise


def select_versions(
    t: Tracking, name: str, *, versions: Sequence[str] = (), aliases: Sequence[str] = (), all_: bool = False
) -> list[SourceVersion]:
    """The MLflow versions asked for (each fetched with its aliases and tags), oldest first."""
    wanted: list[str] = []
    if all_:
        get_model(t, name)
        token: str | None = None
        while True:
            page = t.get(
                "model-versions/search",
                filter=f"name='{name.replace(chr(39), chr(92) + chr(39))}'",
                max_results=1000,
                page_token=token,
            )
            wanted += [str(v.get("version")) for v in page.get("model_versions") or []]
            token = page.get("next_page_token") or None
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
            raw = t.get("registered-models/alias", name=name, alias=alias)["model_version"]
        except MlflowError as e:
            if _not_found(e) or e.error_code == "INVALID_PARAMETER_VALUE":
                model = get_model(t, name)
                known = ", ".join(
                    sorted(f"{a.get('alias')}={a.get('version')}" for a in model.get("aliases") or [])
                )
                raise MlflowError(
                    f"MLflow model {name!r} has no alias {alias!r} (aliases: {known or 'none'})",
                    e.status,
                    e.error_code,
                ) from None
            raise
        wanted.append(str(raw.get("version")))
    out: list[SourceVersion] = []
    for v in sorted(set(wanted), key=int):
        sv = get_version(t, name, v)
        if sv.status != "READY":
            raise MlflowError(f"MLflow model {name!r} version {v} is {sv.status}, not READY")
        out.append(sv)
    return out


def get_run(t: Tracking, run_id: str) -> dict[str, Any]:
    try:
        return dict(t.get("runs/get", run_id=run_id).get("run") or {})
    except MlflowError as e:
        if _not_found(e):
            raise MlflowError(f"MLflow run {run_id} not found (deleted?)", e.status, e.error_code) from None
        raise


def get_logged_model(t: Tracking, model_id: str) -> dict[str, Any]:
    """MLflow 3's logged model (``models:/m-...``); {} when the server does not know it."""
    try:
        return dict(t.get(f"logged-models/{urllib.parse.quote(model_id)}").get("model") or {})
    except MlflowError as e:
        if e.status in (404, 501) or e.error_code in ("RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND"):
            return {}
        raise


# ---- artifacts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedArtifact:
    """Where an MLflow version's bytes are: the URI MLflow gave, the URI for the ModelVersion and
    how the importer reads them (through the server's artifact proxy, or from the store itself)."""

    mlflow_uri: str  # as MLflow names it (mlflow-artifacts:/..., s3://..., runs:/...)
    proxy_path: str | None  # path under the server's artifact proxy; None: read `direct`
    proxy_base: str | None
    direct: str | None  # a URI the importer reads itself (s3://, gs://, http(s)://, file://)
    destination: str | None  # --artifacts-destination form of a proxied path, else None


_SCHEMES = ("s3", "s3a", "gs", "gcs", "http", "https", "file")


def download_uri(t: Tracking, sv: SourceVersion) -> str:
    """The artifact URI of a version: get-download-uri (resolves models:/ and runs:/), else source."""
    try:
        uri = t.get("model-versions/get-download-uri", name=sv.name, version=sv.version).get("artifact_uri")
    except MlflowError as e:
        if e.status in (401, 403) or e.status is None:
            raise
        uri = None
    return str(uri or sv.source)


def resolve_artifact(
    t: Tracking, sv: SourceVersion, uri: str, artifacts_destination: str | None
) -> ResolvedArtifact:
    """Map an MLflow artifact URI to the store behind it; Refused for what cannot be mapped."""
    label = f"MLflow {sv.name} version {sv.version}"
    if uri.startswith("runs:/"):
        run_id, _, rel = uri[len("runs:/") :].partition("/")
        root = str(get_run(t, run_id).get("info", {}).get("artifact_uri") or "")
        if not root:
            raise MlflowError(f"{label}: run {run_id} has no artifact root")
        uri = root.rstrip("/") + ("/" + rel.strip("/") if rel.strip("/") else "")
    if uri.startswith("models:/"):
        model_id = uri[len("models:/") :].strip("/")
        logged = get_logged_model(t, model_id)
        root = str((logged.get("info") or {}).get("artifact_uri") or "")
        if not root:
            raise MlflowError(f"{label}: cannot resolve {uri} (the server does not know the logged model)")
        uri = root
    if uri.startswith("mlflow-artifacts:"):
        parts = urllib.parse.urlsplit(uri)
        path = urllib.parse.unquote(parts.path).lstrip("/")
        base = None
        if parts.netloc:  # mlflow-artifacts://host:port/path: another server proxies it
            base = f"{urllib.parse.urlsplit(t.base).scheme}://{parts.netloc}"
        dest = None
        if artifacts_destination:
            dest = artifacts_destination.rstrip("/") + "/" + path
        return ResolvedArtifact(uri, path, base, None, dest)
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


def _proxy_walk(t: Tracking, art: ResolvedArtifact, rel: str = "") -> Iterator[tuple[str, int | None]]:
    assert art.proxy_path is not None
    here = art.proxy_path.rstrip("/") + ("/" + rel if rel else "")
    for f in t.proxy_list(here, art.proxy_base):
        name = str(f.get("path") or "").rstrip("/").rsplit("/", 1)[-1]
        if not name:
            continue
        child = f"{rel}/{name}" if rel else name
        if f.get("is_dir"):
            yield from _proxy_walk(t, art, child)
        else:
            size = f.get("file_size")
            yield child, int(size) if size is not None else None


def proxy_kind(t: Tracking, art: ResolvedArtifact) -> tuple[str, list[tuple[str, int | None]]]:
    """("directory", files) or ("file", []) for a proxied artifact; MlflowError when nothing is there."""
    assert art.proxy_path is not None
    files = sorted(_proxy_walk(t, art))
    if files:
        return "directory", files
    try:
        with t.proxy_open(art.proxy_path, art.proxy_base) as resp:
            resp.read(1)
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
    while True:
        chunk = resp.read(CHUNK)
        if not chunk:
            break
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
    if kind == "file":
        with t.proxy_open(art.proxy_path, art.proxy_base) as resp:
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
        with t.proxy_open(f"{art.proxy_path.rstrip('/')}/{rel}", art.proxy_base) as resp:
            sha, n = _hash_stream(resp, progress, done)
        if expected is not None and n != expected:
            raise MlflowError(f"{art.mlflow_uri}/{rel}: read {n} of {expected} bytes (truncated); try again")
        entries.append((rel, sha))
        size += n
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
            with t.proxy_open(f"{art.proxy_path.rstrip('/')}/MLmodel", art.proxy_base) as resp:
                text = resp.read(1 << 20).decode("utf-8", "replace")
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


def choose_dataset(
    run: Mapping[str, Any], wanted: str | None
) -> tuple[dict[str, Any] | None, Missing | None]:
    """The dataset input of a run that trained the model: --dataset NAME, else context
    ``training``, else the only one. (dataset, None) or (None, why it is missing)."""
    inputs = [
        (i.get("dataset") or {}, _tags(i.get("tags")))
        for i in ((run.get("inputs") or {}).get("dataset_inputs") or [])
        if isinstance(i, dict)
    ]
    names = sorted({str(d.get("name")) for d, _ in inputs})
    if wanted is not None:
        pick = [d for d, _ in inputs if d.get("name") == wanted]
        if not pick:
            return None, Missing(
                "lineage.dataset",
                f"--dataset {wanted}: the run has no dataset input of that name "
                f"(inputs: {', '.join(names) or 'none'})",
            )
        return pick[0], None
    training = [d for d, tags in inputs if tags.get("mlflow.data.context") == "training"]
    if len({str(d.get("name")) for d in training}) == 1:
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


def gather_lineage(
    sv: SourceVersion,
    run: Mapping[str, Any] | None,
    logged: Mapping[str, Any] | None,
    mlmodel: Mapping[str, Any] | None,
    dataset: str | None = None,
) -> Gathered:
    """Lineage from the run (and MLflow 3's logged model, and MLmodel); every missing field is
    listed with where it would come from. Nothing is invented."""
    g = Gathered()
    if not run:
        g.missing.append(
            Missing(
                "lineage (all of it)",
                f"MLflow version {sv.version} has no run: it was registered from a path "
                f"({sv.source}); lineage comes from the run that logged the model",
            )
        )
        return g
    info = run.get("info") or {}
    data = run.get("data") or {}
    tags = _tags(data.get("tags"))
    g.run_tags = tags
    run_id = info.get("run_id") or info.get("run_uuid") or sv.run_id
    logged_data = (logged or {}).get("data") or {}
    for p in [*(data.get("params") or []), *(logged_data.get("params") or [])]:
        g.hyperparameters[str(p.get("key"))] = parse_scalar(str(p.get("value", "")))
    for m in [*(data.get("metrics") or []), *(logged_data.get("metrics") or [])]:
        value = m.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            g.metrics[str(m.get("key"))] = float(value)
        else:
            g.notes.append(f"metric {m.get('key')}={value!r} is not a finite number: left out")
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

    chosen, why = choose_dataset(run, dataset)
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

    g.author = tags.get(USER_TAG) or (str(info["user_id"]) if info.get("user_id") else None)
    if not g.author:
        g.missing.append(
            Missing("lineage.author", f"run tag {USER_TAG} (or the run's user_id) of run {run_id}")
        )
    g.trained_at = _rfc3339(info.get("start_time"))
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
