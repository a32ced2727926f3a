"""modelversioning_workqueue_keys: what the reconcile work queue holds, by state, at each scrape (the
peer benchmark starts a measurement block only once nothing is queued or running)."""

from __future__ import annotations

import asyncio
import threading

from modelversioning import metrics
from modelversioning.handlers.workqueue import WorkQueue
from waits import PATIENCE, until


def scraped() -> dict[str, float]:
    """The gauge as a scrape sees it (set_function values are read at collection)."""
    return {
        s.labels["state"]: s.value
        for s in list(metrics.WORKQUEUE_KEYS.collect())[0].samples
        if s.name == "modelversioning_workqueue_keys"
    }


def test_the_gauge_counts_queued_running_and_scheduled_keys_at_each_scrape() -> None:
    started, release = threading.Event(), threading.Event()

    def handler(key: tuple[str, str, str]) -> None:
        if key[2] == "slow":
            started.set()
            release.wait(PATIENCE)

    seen: dict[str, dict[str, float]] = {}

    async def main() -> None:
        q = WorkQueue(handler, workers=1)
        q.start()
        try:
            q.add(("K", "ns", "slow"))
            await until(started.is_set, "the slow key running")
            q.add(("K", "ns", "next"))  # the only worker is busy: queued
            q.add(("K", "ns", "slow"))  # queued again while it runs
            q.add_after(("K", "ns", "later"), 3600)  # a requeue waiting for its time
            seen["busy"] = scraped()
            release.set()
            await until(lambda: scraped()["running"] == 0 and scraped()["queued"] == 0, "the queue drained")
            seen["drained"] = scraped()
        finally:
            await q.stop()

    asyncio.run(main())
    assert seen["busy"] == {"queued": 2.0, "running": 1.0, "scheduled": 1.0}
    assert seen["drained"] == {"queued": 0.0, "running": 0.0, "scheduled": 1.0}
