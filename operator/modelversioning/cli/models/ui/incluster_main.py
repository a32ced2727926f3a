"""Start the web view in the cluster (the chart's ``ui`` Deployment):

    python -m modelversioning.cli.models.ui.incluster_main --config /etc/mv-ui/config.yaml \\
        --proxy-secret-file /etc/mv-ui-proxy/secret [--kubeconfig PATH] [--address 0.0.0.0]

The config (the chart's ConfigMap, from ``ui.*`` values)::

    port: 8080
    hosts: [models.example.com]        # the Host headers accepted (the proxy's upstream Host)
    scheme: https                      # how browsers reach it: a form's Origin must be scheme://host
    readOnly: true
    maxViewers: 256
    proxy: {secretHeader: X-Proxy-Secret, userHeader: X-Forwarded-User, groupsHeader: X-Forwarded-Groups}
    impersonation: {users: [alice], groups: [team-a]}

Without ``--kubeconfig`` it uses the pod's ServiceAccount (the token file re-read on every request).
See :mod:`.incluster` for what is trusted and why.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from modelversioning.cli.models.errors import ClusterError
from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.incluster import AccessReviews, ProxyTrust, Viewer
from modelversioning.cli.models.ui.run import until_signalled
from modelversioning.cli.models.ui.server import InCluster, UiConfig, UiServer


def _strings(v: Any, what: str) -> frozenset[str]:
    if v is None:
        return frozenset()
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{what} must be a list of names")
    return frozenset(v)


def build(
    conf: Mapping[str, Any], secret: bytes, kubeconfig: str | None
) -> tuple[UiConfig, WatchCache, UiServer]:
    """The server of the in-cluster mode from its config; ValueError on a bad one."""
    hosts = conf.get("hosts") or []
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ValueError("hosts must list the Host headers the view answers (ui.hosts)")
    scheme = str(conf.get("scheme") or "https")
    if scheme not in ("https", "http"):
        raise ValueError("scheme must be https or http")
    proxy = conf.get("proxy") or {}
    imp = conf.get("impersonation") or {}
    trust = ProxyTrust(
        secret,
        _strings(imp.get("users"), "impersonation.users"),
        _strings(imp.get("groups"), "impersonation.groups"),
        secret_header=str(proxy.get("secretHeader") or "X-Proxy-Secret"),
        user_header=str(proxy.get("userHeader") or "X-Forwarded-User"),
        groups_header=str(proxy.get("groupsHeader") or "X-Forwarded-Groups"),
    )
    token = hmac.new(secret, b"modelversioning-ui-csrf", hashlib.sha256).hexdigest()  # same in every replica
    cfg = UiConfig(
        kubeconfig, None, None, read_only=bool(conf.get("readOnly", True)), token=token, prefix="",
        port=int(conf.get("port") or 8080), hosts=tuple(hosts), scheme=scheme,
    )  # fmt: skip
    own = Cluster(kubeconfig, None, "default", http=True)  # the ServiceAccount: watches and reviews
    cache = WatchCache(lambda: Cluster(kubeconfig, None, "default", http=True), None)

    def ask(viewer: Viewer, verb: str, res: Any, ns: str) -> bool:
        groups = [*viewer.groups, "system:authenticated"]  # as the API server adds it to impersonation
        return own.subject_may(viewer.user, groups, verb, res, ns)

    reviews = AccessReviews(ask, max_viewers=int(conf.get("maxViewers") or 256))

    def connect_as(ns: str, viewer: Viewer) -> Cluster:
        return Cluster(kubeconfig, None, ns, impersonate=(viewer.user, viewer.groups))

    server = UiServer(cfg, cache, _never, InCluster(trust, reviews, connect_as))
    return cfg, cache, server


def _never(_ns: str | None) -> Cluster:
    """In-cluster, nothing acts with the ServiceAccount's own rights (actions use connect_as)."""
    raise ClusterError("the in-cluster view acts only as its viewer")


async def _serve(cfg: UiConfig, cache: WatchCache, server: UiServer, address: str) -> None:
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, address, cfg.port)
    await site.start()
    cache.start()
    print(f"kubectl models ui (in-cluster): listening on {address}:{cfg.port} for {', '.join(cfg.hosts)}"
          f"{' (read-only)' if cfg.read_only else ''}", flush=True)  # fmt: skip
    await until_signalled(cache, runner)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelversioning.cli.models.ui.incluster_main")
    p.add_argument("--config", required=True)
    p.add_argument("--proxy-secret-file", required=True)
    p.add_argument("--kubeconfig")
    p.add_argument("--address", default="0.0.0.0")  # noqa: S104 - in a pod, behind the proxy
    a = p.parse_args(argv)
    try:
        conf = yaml.safe_load(Path(a.config).read_text()) or {}
        secret = Path(a.proxy_secret_file).read_bytes().strip()
        cfg, cache, server = build(conf, secret, a.kubeconfig)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"cannot start the in-cluster view: {e}", file=sys.stderr)
        return 2
    asyncio.run(_serve(cfg, cache, server, a.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
