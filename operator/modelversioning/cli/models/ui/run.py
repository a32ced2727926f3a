"""Start the web view: the shared watch cache, then the server on 127.0.0.1; print the URL."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from aiohttp import web

from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.server import UiConfig, UiServer

HOST = "127.0.0.1"  # never another address: the server acts with the user's credentials


def build(
    kubeconfig: str | None, context: str | None, namespace: str | None, read_only: bool
) -> tuple[UiConfig, WatchCache, UiServer]:
    cfg = UiConfig(kubeconfig, context, namespace, read_only)
    cache = WatchCache(lambda: Cluster(kubeconfig, context, namespace or "default"), namespace)
    server = UiServer(cfg, cache, lambda ns: Cluster(kubeconfig, context, ns))
    return cfg, cache, server


async def _serve(cfg: UiConfig, cache: WatchCache, server: UiServer, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    cfg.port = int(sock.getsockname()[1])  # the Host header and cookie checks need it before serving
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    cache.start()
    print(f"kubectl models ui: {cfg.url()}", flush=True)
    print(
        f"serving {cfg.namespace or 'all namespaces'} as your kubeconfig's user"
        f"{' (read-only)' if cfg.read_only else ''}; anyone with this URL acts as you. Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        cache.stop()
        await runner.cleanup()


def serve(
    kubeconfig: str | None, context: str | None, namespace: str | None, port: int, read_only: bool
) -> None:
    cfg, cache, server = build(kubeconfig, context, namespace, read_only)
    asyncio.run(_serve(cfg, cache, server, port))
