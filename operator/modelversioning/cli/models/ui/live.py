"""The web view's live stream (``/events``): server-sent events that tell a viewer their page changed.
See :meth:`.server.UiServer.events` for the bounds on how many a viewer holds."""

from __future__ import annotations

import asyncio

from aiohttp import web

from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.incluster import AccessReviews, Viewer, sees_change


async def stream(
    request: web.Request,
    cache: WatchCache,
    changed: asyncio.Event,
    viewer: Viewer | None,
    reviews: AccessReviews | None,
    heartbeat: float,
    coalesce: float,
) -> web.StreamResponse:
    """The keep-alive is timed from this stream's own last write, never from the cache's last change:
    restarted by every change anywhere, its absence would tell a viewer when other teams' objects
    change, and a closed stream (noticed at a write) would hold its slot while anyone's do."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    loop, sent, told = asyncio.get_running_loop(), cache.revision, 0
    await resp.write(b"event: hello\ndata: 0\n\n")
    wrote = loop.time()
    try:
        while True:
            if cache.revision == sent:
                changed.clear()
                left = wrote + heartbeat - loop.time()
                try:
                    if left <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(changed.wait(), left)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    wrote = loop.time()
                    continue
                await asyncio.sleep(coalesce)
            sent, pairs, kinds = cache.changes_since(sent)
            if viewer is not None and reviews is not None and not await loop.run_in_executor(
                None, sees_change, viewer, reviews, pairs, kinds
            ):
                continue  # a change they may not see: not even that something changed is told
            told += 1
            await resp.write(f"event: change\ndata: {told}\n\n".encode())
            wrote = loop.time()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp
