"""Credentials by reference: Secret data (or the process environment) -> fsspec storage options.

``artifact.secretRef`` names a Secret; its decoded data is passed here as a ``dict[str, str]``.
Recognised keys (anything else is ignored):

=================================  =============================================================
``AWS_ACCESS_KEY_ID``              s3: access key (``key``)
``AWS_SECRET_ACCESS_KEY``          s3: secret key (``secret``)
``AWS_SESSION_TOKEN``              s3: session token (``token``)
``AWS_ENDPOINT_URL_S3``            s3: endpoint (MinIO, Ceph, ...); wins over ``AWS_ENDPOINT_URL``
``AWS_ENDPOINT_URL``               s3: endpoint
``AWS_REGION``/``AWS_DEFAULT_REGION``  s3: region
``AWS_S3_ADDRESSING_STYLE``        s3: ``path`` / ``virtual`` / ``auto``
``GOOGLE_APPLICATION_CREDENTIALS_JSON``  gs: service-account key JSON
``GOOGLE_CLOUD_PROJECT``           gs: project
``GCS_ENDPOINT_URL``/``STORAGE_EMULATOR_HOST``  gs: endpoint
``HTTP_AUTHORIZATION``             http(s): the ``Authorization`` header value; a value without a
                                   space is taken as a bearer token (``Bearer <value>``)
``HTTP_BEARER_TOKEN``              http(s): ``Authorization: Bearer <value>``
``MODELVERSIONING_CREDENTIAL_HOSTS``  the hosts the credentials may be sent to (comma-separated,
                                   exact or ``*.suffix``); **required** when the Secret holds
                                   credentials (except registry credentials: see below)
``.dockerconfigjson``              oci: registry credentials, docker config JSON (a
                                   ``kubernetes.io/dockerconfigjson`` Secret); also read from
                                   ``MODELVERSIONING_DOCKER_CONFIG_JSON`` (the init container's env)
=================================  =============================================================

Registry credentials (``oci://``) are bound by the docker config itself: each ``auths`` entry goes
only to the registry (``host[:port]``) it is keyed by (:mod:`~modelversioning.artifacts.oci_auth`);
``MODELVERSIONING_CREDENTIAL_HOSTS``, when the Secret has it, narrows that further. A Secret with
registry credentials for other registries only is URIRefused, as for the other schemes. Without a
Secret, the operator's (or your) own docker config (``MODELVERSIONING_DOCKER_CONFIG_JSON``, else
``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``) is used only for
``artifacts.ambientCredentialHosts``.

Credentials are bound to hosts. A Secret's credentials are used only if the Secret itself names
the hosts they may be sent to (``MODELVERSIONING_CREDENTIAL_HOSTS``): whoever may write a
ModelVersion can name any Secret of the namespace and any URI, so without the binding the operator
would send another team's credentials wherever the URI points. For s3/gs the host is the endpoint
(``s3.amazonaws.com`` / ``storage.googleapis.com`` by default); for http(s) the URL's host (and every
request that carries the ``Authorization`` header). A Secret with only settings (an endpoint, a
region) needs no binding: nothing secret is sent.

Without a Secret (``secret_data=None``) the same keys are read from the process environment,
and for s3/gs the SDK's default credential chain applies (the operator's own service account:
IRSA, workload identity, instance profile, ``~/.aws``...) -- but only for the hosts in
``artifacts.ambientCredentialHosts`` (see :func:`bind_credentials`); any other host is fetched
anonymously. With a Secret, *only* the Secret's credentials are used -- a Secret without keys
means anonymous access, never the operator's own
identity, so a user cannot make the operator sign requests to an endpoint of their choosing.
Endpoints and regions (not credentials) still fall back to the environment.

Credential values never appear in ``repr()`` of :class:`StoreAccess`, in messages or in results;
:attr:`StoreAccess.secret_values` lists them for :func:`~modelversioning.artifacts.redact.redact_text`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.oci_auth import (
    DOCKER_CONFIG_ENV,
    DOCKER_CONFIG_KEY,
    DockerConfigError,
    RegistryCredential,
    credential_for,
    parse_docker_config,
)
from modelversioning.artifacts.policy import endpoint_for, host_allowed, parse_target

# Keys whose values are credentials (redacted wherever they might show up).
CREDENTIAL_KEYS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS_JSON",
        "HTTP_AUTHORIZATION",
        "HTTP_BEARER_TOKEN",
        DOCKER_CONFIG_KEY,
        DOCKER_CONFIG_ENV,
    }
)
# Non-secret settings that may come from the Secret or, failing that, from the environment.
SETTING_KEYS = frozenset(
    {
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_S3_ADDRESSING_STYLE",
        "GOOGLE_CLOUD_PROJECT",
        "GCS_ENDPOINT_URL",
        "STORAGE_EMULATOR_HOST",
    }
)
HOSTS_KEY = "MODELVERSIONING_CREDENTIAL_HOSTS"
KNOWN_KEYS = CREDENTIAL_KEYS | SETTING_KEYS | {HOSTS_KEY}


class CredentialsError(ValueError):
    """Secret data that cannot be used (message names the key, never the value)."""


@dataclass(frozen=True)
class StoreAccess:
    """How to reach one store: fsspec storage options plus what the policy needs to check."""

    scheme: str
    options: dict[str, Any] = field(repr=False)
    endpoint_url: str | None
    from_secret: bool
    secret_values: frozenset[str] = field(repr=False, default=frozenset())
    has_credentials: bool = False  # something secret would be sent (or, ambient: may be)
    credential_hosts: tuple[str, ...] | None = None  # where they may go (None: no binding applies)


def _get(data: Mapping[str, str], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\ufffd" in value or "\x00" in value:
        # a binary value (kube.read_secret decodes with errors="replace"): never guess
        raise CredentialsError(f"the Secret's key {key} is not UTF-8 text")
    value = value.strip()
    return value or None


def parse_hosts(value: str | None) -> tuple[str, ...]:
    return tuple(h.strip() for h in (value or "").replace("\n", ",").split(",") if h.strip())


def _authorization(value: str) -> str:
    return value if " " in value else f"Bearer {value}"


def store_access(
    scheme: str,
    secret_data: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> StoreAccess:
    """Storage options for ``scheme`` from Secret data, else from ``env`` (default os.environ)."""
    scheme = scheme.lower()
    environ: Mapping[str, str] = os.environ if env is None else env
    from_secret = secret_data is not None
    creds: Mapping[str, str] = secret_data if secret_data is not None else environ
    # Settings: the Secret's own value, else the environment's.
    settings = {k: v for k in SETTING_KEYS if (v := _get(creds, k) or _get(environ, k))}
    secret_values = frozenset(v for k in CREDENTIAL_KEYS if (v := _get(creds, k)))
    options: dict[str, Any] = {}
    endpoint = (endpoint_for(scheme, creds) if from_secret else None) or endpoint_for(scheme, environ)

    if scheme in ("s3", "s3a"):
        options = _s3_options(creds, settings, endpoint, from_secret=from_secret)
    elif scheme in ("gs", "gcs"):
        options = _gs_options(creds, settings, endpoint, from_secret=from_secret)
    elif scheme in ("http", "https"):
        headers = _http_headers(creds)
        if "Authorization" in headers:
            secret_values |= {headers["Authorization"]}
        options["headers"] = headers
    elif scheme == "oci":
        options["auths"] = _registry_auths(creds, environ, from_secret=from_secret)
        for cred in options["auths"].values():
            secret_values |= cred.secrets()
    has_credentials = _has_credentials(scheme, options, from_secret=from_secret)
    if scheme == "oci":  # bound by the docker config's own keys (and narrowed by the hosts key)
        hosts = (parse_hosts(_get(creds, HOSTS_KEY)) or None) if from_secret and has_credentials else None
    else:
        hosts = _credential_hosts(creds) if from_secret and has_credentials else None
    return StoreAccess(
        scheme=scheme,
        options=options,
        endpoint_url=endpoint,
        from_secret=from_secret,
        secret_values=secret_values,
        has_credentials=has_credentials,
        credential_hosts=hosts,
    )


def _s3_options(
    creds: Mapping[str, str], settings: Mapping[str, str], endpoint: str | None, *, from_secret: bool
) -> dict[str, Any]:
    """s3fs options: with a Secret its keys (none: anonymous), else botocore's default chain."""
    options: dict[str, Any] = {}
    key, secret = _get(creds, "AWS_ACCESS_KEY_ID"), _get(creds, "AWS_SECRET_ACCESS_KEY")
    if from_secret:
        if key or secret:
            if not (key and secret):
                raise CredentialsError("the Secret needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            options.update(key=key, secret=secret)
            token = _get(creds, "AWS_SESSION_TOKEN")
            if token:
                options["token"] = token
        else:
            options["anon"] = True
    # else: botocore's default chain (env, IRSA, profile, instance metadata) finds them.
    if endpoint:
        options["endpoint_url"] = endpoint
    client_kwargs: dict[str, Any] = {}
    region = settings.get("AWS_REGION") or settings.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    style = settings.get("AWS_S3_ADDRESSING_STYLE")
    if style:
        if style not in ("path", "virtual", "auto"):
            raise CredentialsError("AWS_S3_ADDRESSING_STYLE must be path, virtual or auto")
        options["config_kwargs"] = {"s3": {"addressing_style": style}}
    return options


def _gs_options(
    creds: Mapping[str, str], settings: Mapping[str, str], endpoint: str | None, *, from_secret: bool
) -> dict[str, Any]:
    """gcsfs options: the service-account key JSON; a Secret without one means anonymous."""
    options: dict[str, Any] = {}
    raw = _get(creds, "GOOGLE_APPLICATION_CREDENTIALS_JSON")
    if raw:
        try:
            options["token"] = json.loads(raw)
        except ValueError:
            raise CredentialsError("GOOGLE_APPLICATION_CREDENTIALS_JSON is not valid JSON") from None
        if not isinstance(options["token"], dict):
            raise CredentialsError("GOOGLE_APPLICATION_CREDENTIALS_JSON must be a JSON object")
    elif from_secret:
        options["token"] = "anon"
    project = settings.get("GOOGLE_CLOUD_PROJECT")
    if project:
        options["project"] = project
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


def _http_headers(creds: Mapping[str, str]) -> dict[str, str]:
    """Request headers: no content encoding (the bytes hashed are the bytes stored), and the
    ``Authorization`` header if the credentials have one."""
    headers = {"Accept-Encoding": "identity"}
    auth = _get(creds, "HTTP_AUTHORIZATION")
    bearer = _get(creds, "HTTP_BEARER_TOKEN")
    if auth:
        headers["Authorization"] = _authorization(auth)
    elif bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return headers


def _has_credentials(scheme: str, options: Mapping[str, Any], *, from_secret: bool) -> bool:
    """Whether something secret would be sent (ambient, without a Secret: whether it may be)."""
    if scheme in ("s3", "s3a"):
        return "key" in options or not from_secret  # ambient: the SDK chain may find some
    if scheme in ("gs", "gcs"):
        return isinstance(options.get("token"), dict) or not from_secret
    if scheme in ("http", "https"):
        return "Authorization" in options.get("headers", {})
    if scheme == "oci":
        return bool(options.get("auths"))
    return False


def _registry_auths(
    creds: Mapping[str, str], environ: Mapping[str, str], *, from_secret: bool
) -> dict[str, RegistryCredential]:
    """The docker config's entries: the Secret's (key ``.dockerconfigjson``, or its env form), else the
    environment's, else (the process's own environment only) ``$DOCKER_CONFIG/config.json`` or
    ``~/.docker/config.json``."""
    raw = _get(creds, DOCKER_CONFIG_KEY) or _get(creds, DOCKER_CONFIG_ENV)
    if raw is None and not from_secret:
        path = None
        if environ.get("DOCKER_CONFIG"):
            path = os.path.join(environ["DOCKER_CONFIG"], "config.json")
        elif environ is os.environ:
            path = os.path.expanduser("~/.docker/config.json")
        if path and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    raw = f.read(2 * 1024 * 1024)
            except (OSError, UnicodeDecodeError):
                raw = None
    if raw is None:
        return {}
    try:
        return parse_docker_config(raw)
    except DockerConfigError as e:
        raise CredentialsError(str(e)) from None


def _credential_hosts(creds: Mapping[str, str]) -> tuple[str, ...]:
    """The hosts a Secret's credentials may be sent to (it must name them)."""
    hosts = parse_hosts(_get(creds, HOSTS_KEY))
    if not hosts:
        raise CredentialsError(
            f"the Secret holds credentials but does not name the hosts they may be sent to: add the key "
            f"{HOSTS_KEY} (e.g. 'minio.storage.svc.cluster.local' or '*.s3.amazonaws.com')"
        )
    return hosts


def anonymous(access: StoreAccess, env: Mapping[str, str] | None = None) -> StoreAccess:
    """The same store without any credentials (endpoint and settings kept)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    settings = {k: v for k in SETTING_KEYS if (v := _get(environ, k))}
    if access.endpoint_url:
        key = "AWS_ENDPOINT_URL" if access.scheme in ("s3", "s3a") else "GCS_ENDPOINT_URL"
        settings[key] = access.endpoint_url
    return store_access(access.scheme, settings, env={})


def bind_credentials(
    uri: str, access: StoreAccess, policy: ArtifactPolicy, env: Mapping[str, str] | None = None
) -> StoreAccess:
    """``access`` if its credentials may be sent to the host ``uri`` makes us contact.

    A Secret's credentials go only to the hosts the Secret names (else URIRefused); the operator's
    own (ambient) credentials only to ``policy.ambient_credential_hosts`` -- for any other host the
    store is accessed anonymously (an s3 ``anon``, a gs ``anon`` token, no Authorization header)."""
    if access.scheme == "oci":
        return _bind_registry(uri, access, policy)
    if not access.has_credentials or access.scheme not in ("s3", "s3a", "gs", "gcs", "http", "https"):
        return access
    try:
        host = (parse_target(uri, access.endpoint_url).host or "").rstrip(".").lower()
    except ValueError:
        return anonymous(access, env)  # check_uri refuses it anyway
    if access.from_secret:
        hosts = access.credential_hosts or ()
        if not hosts or not host_allowed(host, hosts):
            raise ArtifactError(
                Reason.URI_REFUSED,
                f"the credentials Secret may only be sent to {', '.join(hosts) or 'no host'} "
                f"({HOSTS_KEY}); {host} is not one of them",
            )
        return access
    ambient = tuple(h for h in policy.ambient_credential_hosts if h.strip())
    if ambient and host_allowed(host, ambient):
        return StoreAccess(
            access.scheme,
            access.options,
            access.endpoint_url,
            access.from_secret,
            access.secret_values,
            access.has_credentials,
            ambient,
        )
    return anonymous(access, env)


def _bind_registry(uri: str, access: StoreAccess, policy: ArtifactPolicy) -> StoreAccess:
    """``access`` with the one docker config entry of the URI's registry (none: anonymous). A Secret
    whose entries are all for other registries (or whose hosts key excludes this one) is URIRefused."""
    parts = urlsplit(uri)
    registry = parts.netloc.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    auths: dict[str, RegistryCredential] = access.options.get("auths") or {}
    found = credential_for(auths, registry)
    keep: dict[str, RegistryCredential] = {}
    if access.from_secret and auths:
        narrowed = access.credential_hosts
        if found is None or (narrowed and not host_allowed(host, narrowed)):
            bound = ", ".join(sorted(auths)) if found is None else ", ".join(narrowed or ())
            raise ArtifactError(
                Reason.URI_REFUSED,
                f"the credentials Secret holds registry credentials for {bound}; "
                f"{registry} is not one of them",
            )
        keep = dict([found])
    elif found is not None:
        ambient = tuple(h for h in policy.ambient_credential_hosts if h.strip())
        if ambient and host_allowed(host, ambient):
            keep = dict([found])
    return StoreAccess(
        access.scheme,
        {**access.options, "auths": keep},
        access.endpoint_url,
        access.from_secret,
        access.secret_values,
        bool(keep),
        (host,) if keep else None,
    )


def storage_options(
    scheme: str,
    secret_data: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """fsspec storage options for ``scheme`` (see the module docstring for the keys)."""
    return dict(store_access(scheme, secret_data, env=env).options)
