"""fsspec file systems for artifact URIs, with the URI policy enforced inside the HTTP client."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts.credentials import StoreAccess
from modelversioning.artifacts.errors import ArtifactError, Reason, URIRefusedError
from modelversioning.artifacts.policy import METADATA_HOSTNAMES, check_address, check_uri

BACKEND_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


class PolicyResolver(AbstractResolver):
    """Resolves like aiohttp's threaded resolver, then refuses metadata/link-local/private
    addresses per the policy -- so a DNS answer that changed since ``check_uri`` (rebinding)
    or a redirect to another name cannot reach them."""

    def __init__(self, policy: ArtifactPolicy) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() in METADATA_HOSTNAMES:
            raise URIRefusedError(f"host {host} is a cloud metadata endpoint")
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refusal = check_address(result["host"].split("%", 1)[0], self._policy)
            if refusal:
                raise URIRefusedError(f"host {host} resolves to a refused address ({refusal})")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: yarl.URL, policy: ArtifactPolicy) -> None:
    refusal = check_uri(str(url), policy, resolve=False)
    if refusal:
        raise URIRefusedError(refusal)


def policy_trace_config(policy: ArtifactPolicy) -> aiohttp.TraceConfig:
    """Checks the URL of every request and the target of every redirect (literal addresses
    never reach the resolver, so they are checked here)."""

    async def on_start(
        session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        _check_url(params.url, policy)

    async def on_redirect(
        session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestRedirectParams
    ) -> None:
        location = params.response.headers.get("Location")
        if location:
            _check_url(params.url.join(yarl.URL(location)), policy)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_redirect.append(on_redirect)
    return trace


def http_client_factory(policy: ArtifactPolicy, timeout_seconds: float) -> Any:
    """A ``get_client`` for fsspec's HTTPFileSystem that enforces ``policy`` on every hop."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=min(30.0, timeout_seconds), sock_read=min(120.0, timeout_seconds)
    )

    async def get_client(**kwargs: Any) -> aiohttp.ClientSession:
        kwargs.setdefault("timeout", timeout)
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy))
        return aiohttp.ClientSession(
            connector=connector, trace_configs=[policy_trace_config(policy)], trust_env=False, **kwargs
        )

    return get_client


def open_filesystem(access: StoreAccess, policy: ArtifactPolicy) -> Any:
    """A fresh (uncached) fsspec file system for ``access.scheme``."""
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - fsspec is a hard dependency
        raise ArtifactError(Reason.FETCH_FAILED, "fsspec is not installed", transient=False) from e

    scheme = access.scheme
    options: dict[str, Any] = dict(access.options)
    if scheme in ("http", "https"):
        options["get_client"] = http_client_factory(policy, policy.timeout_seconds)
    elif scheme in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", min(30.0, policy.timeout_seconds))
        config.setdefault("read_timeout", min(120.0, policy.timeout_seconds))
        config.setdefault("retries", {"max_attempts": 3, "mode": "standard"})
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
