"""The file system of an artifact URI's scheme (:func:`open_filesystem`), with the URI policy enforced
inside its network client: http(s) over the standard library (:mod:`~modelversioning.artifacts.http_plain`),
s3 over aiobotocore with our resolver (:mod:`~modelversioning.artifacts.backends`); ``file://`` and
http(s) never load aiohttp.
"""

from __future__ import annotations

import time
from typing import Any

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.credentials import StoreAccess
from modelversioning.artifacts.errors import ArtifactError, Reason

BACKEND_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


def open_filesystem(access: StoreAccess, policy: ArtifactPolicy, deadline: float | None = None) -> Any:
    """A fresh (uncached) file system for ``access.scheme``: for http(s) our standard-library client
    (:class:`~modelversioning.artifacts.http_plain.PlainHTTP`), else fsspec's."""
    if deadline is None:
        deadline = time.monotonic() + policy.timeout_seconds
    scheme = access.scheme
    options: dict[str, Any] = dict(access.options)
    if scheme in ("http", "https"):
        from modelversioning.artifacts.http_plain import PlainHTTP

        headers = options.get("headers") or {}
        return PlainHTTP(policy, deadline, headers=headers, credential_hosts=access.credential_hosts)
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - fsspec is a hard dependency
        raise ArtifactError(Reason.FETCH_FAILED, "fsspec is not installed", transient=False) from e

    left = max(0.05, deadline - time.monotonic())
    if scheme in ("s3", "s3a"):
        from modelversioning.artifacts.backends import PolicyResolver, proxy_hosts

        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", min(30.0, left))
        config.setdefault("read_timeout", min(120.0, left))
        config.setdefault("retries", {"max_attempts": 3, "mode": "standard"})
        config["connector_args"] = {"resolver": PolicyResolver(policy, exempt=proxy_hosts())}
        if access.endpoint_url:
            # never <bucket>.<endpoint>: a wildcard DNS record would send signed requests anywhere
            config["s3"] = {**(config.get("s3") or {}), "addressing_style": "path"}
        options["config_kwargs"] = config
    try:
        return fsspec.filesystem(scheme, skip_instance_cache=True, **options)
    except ImportError:
        package = BACKEND_PACKAGES.get(scheme, "an fsspec backend")
        raise ArtifactError(
            Reason.URI_REFUSED,
            f"{scheme}:// needs {package}, which is not installed in this image",
            transient=False,
        ) from None
    except ValueError as e:
        if "protocol" in str(e).lower():
            raise ArtifactError(
                Reason.URI_REFUSED, f"no fsspec backend for {scheme}://", transient=False
            ) from None
        raise
