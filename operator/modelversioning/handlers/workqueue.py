"""A small work queue in the spirit of client-go's: deduplicated keys, one worker per key at a time,
rate-limited retries with exponential backoff. It can be paused (an HA standby): then it takes no
keys, runs nothing, schedules no retries, and forgets what was queued.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modelversioning import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
# A failure a retry resolves by itself (a conflict, an object deleted meanwhile) is logged at debug and
# counted; it is logged as a warning (no traceback) once it has failed this many times in a row.
EXPECTED_ESCALATE_AFTER = 8


class Requeue(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a reconcile to be called again after `delay` seconds (waiting, not failing)."""

    def __init__(self, delay: float, why: str = "") -> None:
        super().__init__(why)
        self.delay = delay


HIGH, LOW = 0, 1
# The priority of the key being reconciled in this context (set by the worker around the handler)
PRIORITY: contextvars.ContextVar[int] = contextvars.ContextVar("workqueue_priority", default=HIGH)


def is_drift_check() -> bool:
    """Is the running reconcile the periodic drift check's (LOW), not one a change asked for?"""
    return PRIORITY.get() == LOW


@dataclass
class WorkQueue:
    """Keys wait in a priority queue: watch-driven work (HIGH) goes before the periodic drift
    check (LOW), so a weight change never waits behind a resync of the whole fleet."""

    handler: Callable[[Key], None]
    workers: int = 4
    base_delay: float = 0.5
    max_delay: float = 300.0
    # LOW keys (the drift check) run on at most this many workers at once. Reconciles hold the GIL;
    # with every worker on a drift cycle of 2,000 endpoints the event loop thread (kopf's watch
    # events) waited for the GIL at each of its many releases, and a weight change arriving during
    # the cycle took up to 2.2 s to reach its route. One LOW worker leaves the others for events.
    low_workers: int = 1
    # the HTTP code of an expected failure (handlers.kube.expected_api_error), None for the others
    expected: Callable[[BaseException], int | None] = lambda _e: None
    _high: deque[Key] = field(default_factory=deque)
    _low: deque[Key] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # something was queued or a LOW slot freed
    _low_running: int = 0
    _dirty: dict[Key, int] = field(default_factory=dict)  # queued keys -> their priority
    _processing: set[Key] = field(default_factory=set)
    _failures: dict[Key, int] = field(default_factory=dict)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # the reconciles' own threads, one per worker: asyncio's default executor (min(32, cores + 4)
    # threads, shared with every other to_thread call) would cap them at 6 on 2 cores
    _executor: ThreadPoolExecutor | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _running: asyncio.Event = field(default_factory=asyncio.Event)  # clear: paused
    _idle: asyncio.Condition = field(default_factory=asyncio.Condition)  # notified when nothing runs

    def start(self, paused: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        if not paused:
            self._running.set()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]
        metrics.watch_work_queue(self.states)

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    async def pause(self) -> None:
        """Stop taking keys, drop everything queued or scheduled, and wait for the reconciles
        in flight to finish (a thread cannot be interrupted; nothing starts after this returns)."""
        self._running.clear()
        self._dirty.clear()
        self._failures.clear()
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        self._high.clear()
        self._low.clear()
        async with self._idle:
            await self._idle.wait_for(lambda: not self._processing)

    def resume(self) -> None:
        self._running.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for h in self._timers.values():
            h.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def _push(self, key: Key, prio: int) -> None:
        (self._low if prio == LOW else self._high).append(key)
        self._wake.set()

    async def _next(self) -> tuple[int, Key]:
        """The oldest HIGH key, else the oldest LOW key while a LOW slot is free."""
        while True:
            if self._high:
                return HIGH, self._high.popleft()
            if self._low and self._low_running < self.low_workers:
                return LOW, self._low.popleft()
            self._wake.clear()
            await self._wake.wait()

    def add(self, key: Key, low: bool = False) -> None:
        """Enqueue (idempotent while queued; a HIGH add overtakes a queued LOW one). Loop thread only."""
        if self.paused:
            return  # a paused queue forgets; whoever resumes it enqueues everything again
        prio = LOW if low else HIGH
        queued = self._dirty.get(key)
        if queued is not None and queued <= prio:
            return
        self._dirty[key] = prio
        if key not in self._processing:
            self._push(key, prio)

    def add_threadsafe(self, key: Key) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.add, key)

    def add_after(self, key: Key, delay: float) -> None:
        assert self._loop is not None
        if self.paused:
            return
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
        return len(self._dirty) + len(self._processing)

    def states(self) -> dict[str, int]:
        """Keys by state (modelversioning_workqueue_keys): lengths only, safe from the scrape thread."""
        return {"queued": len(self._dirty), "running": len(self._processing), "scheduled": len(self._timers)}

    def _failed(self, key: Key, e: Exception) -> None:
        """Count, log and retry a failed reconcile (with backoff). ERROR with the traceback only for
        what needs a person; an expected API error (a conflict, a deleted object) at debug, counted in
        modelversioning_expected_api_errors_total, until it has failed EXPECTED_ESCALATE_AFTER times."""
        fails = self._failures.get(key, 0) + 1
        self._failures[key] = fails
        delay = min(self.max_delay, self.base_delay * 2 ** (fails - 1))
        code = self.expected(e)
        if code is None:
            log.error(
                "reconcile of %s/%s/%s failed (attempt %d); retrying in %.1fs", *key, fails, delay, exc_info=e
            )
        else:
            metrics.EXPECTED_API_ERRORS.labels(str(code), key[0]).inc()
            level = logging.DEBUG if fails < EXPECTED_ESCALATE_AFTER else logging.WARNING
            log.log(
                level,
                "reconcile of %s/%s/%s: HTTP %d (%s), attempt %d; retrying in %.1fs",
                *key, code, str(e)[:200], fails, delay,
            )  # fmt: skip
        self.add_after(key, delay)

    async def _worker(self, n: int) -> None:
        while True:
            prio, key = await self._next()
            if self.paused or self._dirty.get(key) != prio or key in self._processing:
                continue  # a stale entry: the key was overtaken, or is queued again after processing
            del self._dirty[key]
            self._processing.add(key)
            if prio == LOW:
                self._low_running += 1
            try:
                loop = asyncio.get_running_loop()
                ctx = contextvars.copy_context()
                ctx.run(PRIORITY.set, prio)
                await loop.run_in_executor(self._executor, ctx.run, self.handler, key)
                self._failures.pop(key, None)
            except Requeue as r:
                self._failures.pop(key, None)
                self.add_after(key, r.delay)
            except Exception as e:
                self._failed(key, e)
            finally:
                if prio == LOW:
                    self._low_running -= 1
                    self._wake.set()
                self._processing.discard(key)
                if key in self._dirty:
                    self._push(key, self._dirty[key])
                if not self._processing:
                    async with self._idle:
                        self._idle.notify_all()
