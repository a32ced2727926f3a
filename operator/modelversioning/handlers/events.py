"""Events are posted by background threads, each object's in the order the reconcilers produced
them, so a reconcile worker does not wait for them (client-go's event broadcaster works the same
way), unless too many are waiting (below).

A reconcile used to post its Events itself, after its status write: a new ModelVersion made three API
round trips (status, ArtifactVerified, StageChanged) on a worker where one was needed. The backlog is
bounded: when it is full, a reconcile that posts an Event waits for room (back-pressure: a burst, e.g. a
new fleet of 10,000 versions, goes at the pace the API server takes Events, as before, and none is
lost); only if there is no room for WAIT_SECONDS (the API server refuses or ignores Events) is the Event
dropped, counted (`modelversioning_events_dropped_total`) and logged. Reconciles post Events after their
status and route writes, so waiting here never delays the traffic change of the reconcile itself.

Repeats are one Event, as Kubernetes' Event series are (``Series``): an Event with the same object,
type, reason and message as one posted before raises that Event's count and lastTimestamp (one PATCH)
instead of adding another. A verification retried every 5 minutes for a day is one Event with count
288, its lastTimestamp the latest attempt.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from modelversioning import metrics

log = logging.getLogger(__name__)

BACKLOG = 2000  # Events waiting to be posted before a reconcile that posts one waits for room
WAIT_SECONDS = 30.0  # how long it waits before the Event is dropped
THREADS = 4  # posting threads; one object's Events always go through the same one, in order
# Events about these kinds have the first thread and its backlog to themselves: a reconcile that
# changes traffic never waits for room behind a burst of other Events (a new fleet's 20,000 version
# Events held an endpoint's next weight change for 2.8 s while its TrafficShifted Event waited).
SERVING_KINDS = frozenset({"ModelEndpoint"})

Post = Callable[[str, dict[str, Any]], None]  # (namespace, Event body); raises on failure
SeriesKey = tuple[str, str, str, str, str]  # (namespace, involved uid or name, type, reason, message)
SERIES_LIMIT = 4096  # Event series remembered (the least recently posted are forgotten first)


def series_key(namespace: str, event: dict[str, Any]) -> SeriesKey:
    involved = event.get("involvedObject") or {}
    who = str(involved.get("uid") or f"{involved.get('kind')}/{involved.get('name')}")
    return (namespace, who, str(event.get("type")), str(event.get("reason")), str(event.get("message")))


class Series:
    """The Events posted lately, by what makes a repeat (``series_key``): name and count of each."""

    def __init__(self, limit: int = SERIES_LIMIT) -> None:
        self._limit = limit
        self._seen: OrderedDict[SeriesKey, tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: SeriesKey) -> tuple[str, int] | None:
        with self._lock:
            return self._seen.get(key)

    def remember(self, key: SeriesKey, name: str, count: int) -> None:
        with self._lock:
            self._seen[key] = (name, count)
            self._seen.move_to_end(key)
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)


Item = tuple[str, dict[str, Any]]


class EventSink:
    def __init__(
        self, post: Post, backlog: int = BACKLOG, threads: int = THREADS, wait: float = WAIT_SECONDS
    ) -> None:
        self._post = post
        self._wait = wait
        self._queues: list[queue.Queue[Item]] = [
            queue.Queue(maxsize=max(1, backlog // threads)) for _ in range(threads)
        ]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread | None] = [None] * threads
        self._dropping = False

    def put(self, namespace: str, event: dict[str, Any]) -> bool:
        """Queue an Event, waiting up to `wait` seconds for room; False when it was dropped."""
        involved = event.get("involvedObject") or {}
        obj = f"{namespace}/{involved.get('name', '')}"
        if involved.get("kind") in SERVING_KINDS or len(self._queues) == 1:
            shard = 0
        else:
            shard = 1 + zlib.crc32(obj.encode()) % (len(self._queues) - 1)
        self._ensure_thread(shard)
        try:
            self._queues[shard].put((namespace, event), timeout=self._wait)
        except queue.Full:
            metrics.EVENTS_DROPPED.labels(str(event.get("reason", ""))).inc()
            if not self._dropping:
                self._dropping = True
                log.warning("Events cannot be posted fast enough: dropping new ones (%s on %s)",
                            event.get("reason"), obj)  # fmt: skip
            return False
        self._dropping = False
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event is posted (or failed); False if that took over `timeout`."""
        done = threading.Event()

        def wait() -> None:
            for q in self._queues:
                q.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _ensure_thread(self, shard: int) -> None:
        with self._lock:
            t = self._threads[shard]
            if t is None or not t.is_alive():
                t = threading.Thread(
                    target=self._run, args=(self._queues[shard],), name=f"events-{shard}", daemon=True
                )
                self._threads[shard] = t
                t.start()

    def _run(self, q: queue.Queue[Item]) -> None:
        while True:
            namespace, event = q.get()
            try:
                self._post(namespace, event)
            except Exception as e:  # noqa: BLE001 - an Event that cannot be posted fails nothing
                log.warning(
                    "could not post Event %s on %s/%s: %s",
                    event.get("reason"), namespace, (event.get("involvedObject") or {}).get("name"), e,
                )  # fmt: skip
            finally:
                q.task_done()
