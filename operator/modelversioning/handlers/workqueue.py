"""A small work queue in the spirit of client-go's: deduplicated keys, one worker per key at a time,
rate-limited retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)


class Requeue(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a reconcile to be called again after `delay` seconds (waiting, not failing)."""

    def __init__(self, delay: float, why: str = "") -> None:
        super().__init__(why)
        self.delay = delay


@dataclass
class WorkQueue:
    handler: Callable[[Key], None]
    workers: int = 4
    base_delay: float = 0.5
    max_delay: float = 300.0
    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _dirty: set[Key] = field(default_factory=set)
    _processing: set[Key] = field(default_factory=set)
    _failures: dict[Key, int] = field(default_factory=dict)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for h in self._timers.values():
            h.cancel()

    def add(self, key: Key) -> None:
        """Enqueue now (idempotent while queued). Safe to call from the loop thread only."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_threadsafe(self, key: Key) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.add, key)

    def add_after(self, key: Key, delay: float) -> None:
        assert self._loop is not None
        old = self._timers.get(key)
        if old is not None:
            if old.when() <= self._loop.time() + delay:
                return
            old.cancel()
        self._timers[key] = self._loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def pending(self) -> int:
        return self._queue.qsize() + len(self._processing)

    async def _worker(self, n: int) -> None:
        while True:
            key = await self._queue.get()
            self._dirty.discard(key)
            self._processing.add(key)
            try:
                await asyncio.to_thread(self.handler, key)
                self._failures.pop(key, None)
            except Requeue as r:
                self._failures.pop(key, None)
                self.add_after(key, r.delay)
            except Exception:
                fails = self._failures.get(key, 0) + 1
                self._failures[key] = fails
                delay = min(self.max_delay, self.base_delay * 2 ** (fails - 1))
                log.exception(
                    "reconcile of %s/%s/%s failed (attempt %d); retrying in %.1fs", *key, fails, delay
                )
                self.add_after(key, delay)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)
