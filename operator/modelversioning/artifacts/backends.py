"""The aiohttp clients of ``oci://`` registries and ``s3://`` stores, with the URI policy enforced inside
them (http(s) artifacts are read by :mod:`~modelversioning.artifacts.http_plain`, with the same rules
over the standard library).

* the registry session (:func:`http_client_factory`, used by
  :mod:`~modelversioning.artifacts.oci_registry`). Every request and every redirect is checked against
  the policy (trace hooks), every address the connector resolves is checked (``PolicyResolver``), and the
  whole request -- connecting, the response headers and the body -- runs under the verification's
  deadline (``ClientTimeout(total=...)``), so a server that trickles its headers cannot hold a
  verification. Proxies from the *process* environment (``HTTP(S)_PROXY``/``NO_PROXY``, e.g. the
  chart's ``extraEnv``) are honoured; the proxy itself is exempt from the address check (the
  platform chose it) and the target name is resolved and checked before each request.
* s3: aiobotocore's aiohttp connector gets the same ``PolicyResolver`` (DNS rebinding of the
  endpoint cannot reach a refused address) and a custom endpoint is always addressed path-style,
  so the bucket never becomes part of the host name (``<bucket>.<endpoint>`` could resolve
  anywhere).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.errors import URIRefusedError
from modelversioning.artifacts.policy import METADATA_HOSTNAMES, check_address, check_uri, host_allowed

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class PolicyResolver(AbstractResolver):
    """Resolves like aiohttp's threaded resolver, then refuses metadata/link-local/private
    addresses per the policy -- so a DNS answer that changed since ``check_uri`` (rebinding)
    or a redirect to another name cannot reach them. ``exempt``: host names not checked (a
    configured proxy). Safe to create outside an event loop (aiobotocore's ``connector_args``)."""

    def __init__(self, policy: ArtifactPolicy, exempt: Iterable[str] = ()) -> None:
        self._inner: aiohttp.ThreadedResolver | None = None
        self._policy = policy
        self._exempt = frozenset(h.rstrip(".").lower() for h in exempt)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".").lower()
        if name in METADATA_HOSTNAMES:
            raise URIRefusedError(f"host {host} is a cloud metadata endpoint")
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if name in self._exempt:
            return results
        for result in results:
            refusal = check_address(result["host"].split("%", 1)[0], self._policy, host=name)
            if refusal:
                raise URIRefusedError(f"host {host} resolves to a refused address ({refusal})")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def proxy_hosts(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """Host names of the proxies configured in the (process) environment."""
    environ = os.environ if env is None else env
    hosts = set()
    for var in PROXY_VARIABLES:
        value = environ.get(var)
        if value:
            host = urlsplit(value if "://" in value else f"http://{value}").hostname
            if host:
                hosts.add(host.lower())
    return frozenset(hosts)


def policy_trace_config(
    policy: ArtifactPolicy, *, proxied: bool = False, credential_hosts: tuple[str, ...] | None = None
) -> aiohttp.TraceConfig:
    """Checks the URL of every request and the target of every redirect (literal addresses
    never reach the resolver, so they are checked here). Behind a proxy the proxy resolves the
    target, so the name is resolved and checked here. A request that carries credentials must go
    to a host the credentials are bound to."""

    def check(url: yarl.URL, headers: Any = None) -> None:
        refusal = check_uri(str(url), policy, resolve=proxied)
        if refusal:
            raise URIRefusedError(refusal)
        carries = credential_hosts is not None and headers is not None and "Authorization" in headers
        if carries and not host_allowed(url.host or "", credential_hosts or ()):
            raise URIRefusedError(
                f"the credentials may only be sent to {', '.join(credential_hosts or ())}, not to {url.host}"
            )

    async def on_start(
        session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        check(params.url, params.headers)

    async def on_redirect(
        session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestRedirectParams
    ) -> None:
        location = params.response.headers.get("Location")
        if location:
            check(params.url.join(yarl.URL(location)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_redirect.append(on_redirect)
    return trace


def http_client_factory(
    policy: ArtifactPolicy,
    deadline: float,
    *,
    credential_hosts: tuple[str, ...] | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """A session factory (fsspec's ``get_client`` form) that enforces ``policy`` on every hop and
    bounds every request by ``deadline`` (time.monotonic())."""
    proxies = proxy_hosts(env)

    async def get_client(**kwargs: Any) -> aiohttp.ClientSession:
        left = max(0.05, deadline - time.monotonic())
        kwargs.pop("timeout", None)
        timeout = aiohttp.ClientTimeout(
            total=left, connect=min(30.0, left), sock_connect=min(30.0, left), sock_read=min(120.0, left)
        )
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy, exempt=proxies))
        trace = policy_trace_config(policy, proxied=bool(proxies), credential_hosts=credential_hosts)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            trace_configs=[trace],
            trust_env=bool(proxies),
            **kwargs,
        )

    return get_client
