"""Start the web view: the shared watch cache, then the server on 127.0.0.1; print the URL."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from aiohttp import web

from modelversioning.cli.models import fleet
from modelversioning.cli.models.context import Globals
from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.regions import RegionReads
from modelversioning.cli.models.ui.server import UiConfig, UiServer

HOST = "127.0.0.1"  # never another address: the server acts with the user's credentials


def region_targets(
    g: Globals, contexts: str | None, all_contexts: bool, fleet_file: str | None
) -> list[fleet.Target] | None:
    """The regions of the regions page, as ``which --contexts`` picks them (None: no option given)."""
    if contexts is None and not all_contexts and fleet_file is None:
        return None
    return fleet.targets(g, contexts, all_contexts, fleet_file)


def build(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    read_only: bool,
    *,
    g: Globals | None = None,
    regions: list[fleet.Target] | None = None,
    region_timeout: float = fleet.DEFAULT_TIMEOUT,
) -> tuple[UiConfig, WatchCache, UiServer]:
    cfg = UiConfig(kubeconfig, context, namespace, read_only, region_timeout=region_timeout)
    cache = WatchCache(lambda: Cluster(kubeconfig, context, namespace or "default"), namespace)
    reads = None
    if regions:
        rg, ts = g or Globals(kubeconfig, context, namespace), list(regions)
        # every region at once, each within region_timeout: fleet.read_all, as `which --contexts`
        reads = RegionReads(lambda: fleet.read_all(ts, lambda t: fleet.read_namespace(rg, t, namespace),
                                                   region_timeout))  # fmt: skip
    server = UiServer(cfg, cache, lambda ns: Cluster(kubeconfig, context, ns), regions=reads)
    return cfg, cache, server


async def _serve(cfg: UiConfig, cache: WatchCache, server: UiServer, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    cfg.port = int(sock.getsockname()[1])  # the Host header and cookie checks need it before serving
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    cache.start()
    print(f"kubectl models ui: {cfg.url()}", flush=True)
    print(
        f"serving {cfg.namespace or 'all namespaces'} as your kubeconfig's user"
        f"{' (read-only)' if cfg.read_only else ''}"
        f"{'; the regions page: /regions' if server.regions else ''}"
        "; anyone with this URL acts as you. Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    await until_signalled(cache, runner)


def serve(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    port: int,
    read_only: bool,
    *,
    g: Globals | None = None,
    regions: list[fleet.Target] | None = None,
    region_timeout: float = fleet.DEFAULT_TIMEOUT,
) -> None:
    cfg, cache, server = build(
        kubeconfig, context, namespace, read_only, g=g, regions=regions, region_timeout=region_timeout
    )
    asyncio.run(_serve(cfg, cache, server, port))


async def until_signalled(cache: WatchCache, runner: web.AppRunner) -> None:
    """Serve until SIGINT or SIGTERM, then stop the watches and the server (both modes)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        cache.stop()
        await runner.cleanup()
