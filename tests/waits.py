"""Waiting in tests without guessing how long something takes.

CI runs on a 2-core machine that is busy with other work: a thread or the event loop can be held up
for any time. So no test orders two things by sleeping (a 10 ms sleep does not reliably beat a 50 ms
handler there), and no test waits a fixed time and then asserts that nothing happened. A test waits
for a signal: a handler sets a threading.Event, a counter reaches its value, a later item is done.
For "nothing happened", it waits for the signal that proves the code had its chance to act (a later
key reconciled by the same worker, a thread seen blocked, every loop timer due by then having run)
and then asserts. The deadline below is reached only when the code is broken, never by a slow machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

PATIENCE = 30.0  # seconds


async def until(check: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Wait until `check()` holds, polling on the event loop (so the code under test keeps running)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.005)


def eventually(check: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Wait until `check()` holds, polling from this thread."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {what}")
        time.sleep(0.005)


async def set_within(event: threading.Event, what: str, timeout: float = PATIENCE) -> None:
    """Wait, without blocking the event loop, for an Event that another thread sets."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError(f"not reached within {timeout:.0f}s: {what}")


async def loop_runs_timers_due(when: float) -> None:
    """Return once the event loop has run every timer due before loop time `when`.

    Not a guess at how long something takes: asyncio runs due timers in the order of their
    deadlines, and this waits on a timer due just after `when`. So a requeue timer or a sleep due
    before `when` has fired when this returns, however slow the machine (that only makes it later)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, when - loop.time()) + 0.001)


def drain(pool: Any) -> None:
    """Return once every job submitted before to a FairExecutor has finished, its done-callbacks
    included. One job per worker, each of its own key, all waiting for each other at a barrier: the
    barrier opens only when every worker has left the job it held, and a worker takes the jobs
    queued before these first (their keys come first in the pool's round-robin order). Two no-op
    jobs are not enough: the second can run on the worker that ran the first, while the other is
    still inside the job being waited for."""
    barrier = threading.Barrier(pool.workers, timeout=PATIENCE)
    jobs = [pool.submit_for(f"drain-{i}", barrier.wait) for i in range(pool.workers)]
    for job in jobs:
        job.result(PATIENCE)
