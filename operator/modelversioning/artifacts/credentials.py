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
=================================  =============================================================

Without a Secret (``secret_data=None``) the same keys are read from the process environment,
and for s3/gs the SDK's default credential chain applies (the operator's own service account:
IRSA, workload identity, instance profile, ``~/.aws``...). With a Secret, *only* the Secret's
credentials are used -- a Secret without keys means anonymous access, never the operator's own
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

from modelversioning.artifacts.policy import endpoint_for

# Keys whose values are credentials (redacted wherever they might show up).
CREDENTIAL_KEYS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS_JSON",
        "HTTP_AUTHORIZATION",
        "HTTP_BEARER_TOKEN",
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
KNOWN_KEYS = CREDENTIAL_KEYS | SETTING_KEYS


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


def _get(data: Mapping[str, str], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


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
        key, secret = _get(creds, "AWS_ACCESS_KEY_ID"), _get(creds, "AWS_SECRET_ACCESS_KEY")
        if from_secret:
            if key or secret:
                if not (key and secret):
                    raise CredentialsError(
                        "the Secret needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    )
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
    elif scheme in ("gs", "gcs"):
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
    elif scheme in ("http", "https"):
        headers = {"Accept-Encoding": "identity"}
        auth = _get(creds, "HTTP_AUTHORIZATION")
        bearer = _get(creds, "HTTP_BEARER_TOKEN")
        if auth:
            headers["Authorization"] = _authorization(auth)
        elif bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if "Authorization" in headers:
            secret_values |= {headers["Authorization"]}
        options["headers"] = headers
    return StoreAccess(
        scheme=scheme,
        options=options,
        endpoint_url=endpoint,
        from_secret=from_secret,
        secret_values=secret_values,
    )


def storage_options(
    scheme: str,
    secret_data: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """fsspec storage options for ``scheme`` (see the module docstring for the keys)."""
    return dict(store_access(scheme, secret_data, env=env).options)
