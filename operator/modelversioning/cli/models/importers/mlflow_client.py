"""MLflow's client for ``kubectl models import mlflow``: connecting to a tracking server, and its
errors as ours.

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

Client calls used (:mod:`.mlflow_registry`, :mod:`.mlflow_artifacts`): ``get_registered_model``,
``search_model_versions``, ``get_model_version``, ``get_model_version_by_alias``,
``get_model_version_download_uri``, ``get_run``, ``get_logged_model`` (MLflow 3); ``runs:/`` and
``models:/`` URIs are resolved with MLflow's own parsers; ``mlflow-artifacts:/`` artifacts are listed
with MLflow's artifact repository and each file is streamed through the server's proxy with
MLflow's HTTP helper (credentials, TLS, retries).

Credentials go to the tracking server only: an ``mlflow-artifacts://HOST:PORT/...`` URI names the
server that holds its bytes, and when that is not the tracking server (scheme, host and port all
equal to the tracking URI's) the artifact is listed and read WITHOUT credentials (no basic auth, no
bearer token, no auth plugin or SigV4 signature, no client certificate) and the command warns once per
host (:meth:`Tracking.host_creds`). A registry's data should not be able to send the user's token to a
host of its choosing.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused

EXTRA = "pip install 'modelversioning-operator[mlflow]'"
# MLflow's HTTP retries while the command runs, unless the variables are set (see the docstring).
RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
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
        from mlflow.utils.request_utils import augmented_raise_for_status
        from mlflow.utils.rest_utils import MlflowHostCreds, http_request
        from mlflow.utils.uri import validate_path_is_safe
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
        MlflowHostCreds=MlflowHostCreds,
        http_request=http_request,
        raise_for_status=augmented_raise_for_status,
        validate_path_is_safe=validate_path_is_safe,
    )


def redact(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return uri


def redact_text(text: str) -> str:
    """Credentials in URLs inside an error message (MLflow's messages quote the request URL)."""
    return re.sub(r"(?<=://)[^/@\s'\"]+@", "", text)


def origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an http(s) URL, the port defaulted by the scheme; None when it has
    no host or an invalid port."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None
    return (scheme, parts.hostname.lower(), port) if parts.hostname else None


def shown_origin(url: str) -> str:
    """scheme://host:port of a URL (no credentials, path or query), for messages."""
    where = origin(url)
    return f"{where[0]}://{where[1]}:{where[2]}" if where else redact(url)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


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
    warn: Callable[[str], None] = field(default=_stderr, repr=False)
    warned: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def from_env(
        cls,
        uri: str | None = None,
        env: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = _stderr,
    ) -> Tracking:
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
                f"MLflow tracking URI {redact(raw)!r}: kubectl models import reads an MLflow tracking "
                "server over HTTP (http:// or https://), which also serves the mlflow-artifacts:/ "
                "artifacts; a local store (file:, sqlite:...) needs `mlflow server --backend-store-uri "
                "...` in front of it",
                EXIT_USAGE,
            )
        mlflow = load_mlflow()
        raw = raw.rstrip("/")
        return cls(raw, redact(raw), mlflow.MlflowClient(tracking_uri=raw), mlflow, warn)

    def is_tracking_server(self, url: str) -> bool:
        """Whether url is on the tracking server itself: the same scheme, host and port."""
        mine = origin(self.uri)
        return mine is not None and origin(url) == mine

    def host_creds(self, url: str) -> Any:
        """MLflow's host credentials for a request to url: MLflow's own (get_default_host_creds) on the
        tracking server; on any other host none at all, only the TLS verification settings, and a
        warning (once per host)."""
        creds = self.mlflow.get_default_host_creds(url)
        if self.is_tracking_server(url):
            return creds
        host = shown_origin(url)
        if host not in self.warned:
            self.warned.add(host)
            self.warn(
                f"warning: artifacts on {host}, not on the MLflow tracking server {self.shown}: read "
                "without credentials (MLflow's credentials are sent to the tracking server only)"
            )
        return self.mlflow.MlflowHostCreds(
            url,
            ignore_tls_verification=creds.ignore_tls_verification,
            server_cert_path=creds.server_cert_path,
        )

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
        message = redact_text(message.strip())[:500]
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
def connect(uri: str | None = None, warn: Callable[[str], None] = _stderr) -> Iterator[Tracking]:
    """MLflow's client for the server, with the command's retry defaults while it runs."""
    t = Tracking.from_env(uri, warn=warn)
    saved = {k: os.environ.get(k) for k in RETRY_DEFAULTS}
    for k, v in RETRY_DEFAULTS.items():
        os.environ.setdefault(k, v)
    try:
        yield t
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
