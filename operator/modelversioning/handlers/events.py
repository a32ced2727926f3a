"""Events are posted by one background thread, in the order the reconcilers produced them, so a
reconcile worker never waits for them (client-go's event broadcaster works the same way).

A reconcile used to post its Events itself, after its status write: a new ModelVersion made three API
round trips (status, ArtifactVerified, StageChanged) on a worker where one was needed, and a new fleet
of 12,000 objects spent most of its time on the 22,000 Events. An Event is a notice, not state: status
and `status.history` are the record. So the backlog is bounded; when it is full an Event is dropped,
counted (`modelversioning_events_dropped_total`) and logged once per burst, and the reconcile goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from modelversioning import metrics

log = logging.getLogger(__name__)

BACKLOG = 2000  # Events waiting to be posted before new ones are dropped

Post = Callable[[str, dict[str, Any]], None]  # (namespace, Event body); raises on failure


class EventSink:
    def __init__(self, post: Post, backlog: int = BACKLOG) -> None:
        self._post = post
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=backlog)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._dropping = False

    def put(self, namespace: str, event: dict[str, Any]) -> bool:
        """Queue an Event (never blocks); False when the backlog is full and it was dropped."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((namespace, event))
        except queue.Full:
            metrics.EVENTS_DROPPED.labels(str(event.get("reason", ""))).inc()
            if not self._dropping:
                self._dropping = True
                log.warning("%d Events waiting to be posted: dropping new ones", self._queue.maxsize)
            return False
        self._dropping = False
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event is posted (or failed); False if that took over `timeout`."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="events", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            namespace, event = self._queue.get()
            try:
                self._post(namespace, event)
            except Exception as e:  # noqa: BLE001 - an Event that cannot be posted fails nothing
                log.warning(
                    "could not post Event %s on %s/%s: %s",
                    event.get("reason"), namespace, (event.get("involvedObject") or {}).get("name"), e,
                )  # fmt: skip
            finally:
                self._queue.task_done()
