"""The analysis pool: measurements run here, never on a reconcile worker.

An endpoint reconcile whose rollout needs a measurement *submits* a job and returns; it never waits.
A few threads (``workers``) run the jobs; when one finishes its result is kept in memory, keyed by
the endpoint's uid and the job's *ticket* (what the measurement is of: the rollout, its step, the
canary's weight, the Services measured), and ``on_done`` re-queues the endpoint, whose next reconcile
takes the result (``take``) and feeds it to the rollout decision. A result whose ticket no longer
matches (the rollout moved on meanwhile) is dropped, never recorded.

Fair and bounded, so hostile endpoints (slow or huge answers to their PromQL) only ever wait behind
themselves:

- at most one job per endpoint queued or running (a second submit with the same ticket is a no-op; a
  queued job with an older ticket is replaced in place; while one runs, nothing else of it starts);
- jobs start round-robin across namespaces (FIFO within one), at most ``per_namespace`` of one
  namespace running at once;
- at most ``queued_per_namespace`` jobs of one namespace wait; past it a submit is refused (the
  rollout waits and the endpoint submits again at its next reconcile).

With ``workers=0`` no thread is started and ``run_queued`` runs the waiting jobs in the caller's
thread, in the same fair order (tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

QUEUED, BUSY, REFUSED = "queued", "busy", "refused"
RESULT_TTL = 3600.0  # a result nobody took (its endpoint deleted meanwhile) is dropped after this


@dataclass(frozen=True)
class Job:
    namespace: str
    name: str  # the endpoint's, for the requeue
    uid: str
    ticket: Hashable  # what it measures (the rollout and its last analysis): a result is for it only
    share: int  # the canary's share the route carried when it was submitted
    # the measurements (a ModelVersion's production record: domain.production.SegmentFigures)
    run: Callable[[], tuple[Any, ...]]
    # who to re-queue when it is done (None: the pool's on_done, the endpoint); the production record's
    # jobs re-queue their ModelVersion
    requeue: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class Result:
    share: int
    measurements: tuple[Any, ...]  # Measurements (or the production record's SegmentFigures)


class AnalysisPool:
    def __init__(
        self,
        workers: int = 2,
        per_namespace: int = 1,
        queued_per_namespace: int = 32,
        on_done: Callable[[str, str], None] = lambda ns, name: None,
    ) -> None:
        self.per_namespace = max(1, per_namespace)
        self.queued_per_namespace = max(1, queued_per_namespace)
        self.on_done = on_done
        self._cond = threading.Condition()
        self._queues: OrderedDict[str, deque[str]] = OrderedDict()  # namespace -> uids, in order
        self._jobs: dict[str, Job] = {}  # uid -> its queued job
        self._running: dict[str, Job] = {}  # uid -> its running job
        self._running_ns: dict[str, int] = {}
        self._results: OrderedDict[str, tuple[Hashable, Result, float]] = OrderedDict()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"analysis-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ the reconcile's side
    def submit(self, job: Job) -> str:
        """Queue `job` unless its endpoint has one queued or running. Never blocks (one lock)."""
        with self._cond:
            if job.uid in self._running:
                return BUSY
            if job.uid in self._jobs:
                self._jobs[job.uid] = job  # a newer ticket takes the queued one's place
                return QUEUED
            queue = self._queues.get(job.namespace)
            if queue is not None and len(queue) >= self.queued_per_namespace:
                return REFUSED
            self._queues.setdefault(job.namespace, deque()).append(job.uid)
            self._jobs[job.uid] = job
            self._cond.notify()
            return QUEUED

    def take(self, uid: str, ticket: Hashable) -> Result | None:
        """The finished measurement of `ticket`, once (None: not there; a stale one is dropped)."""
        with self._cond:
            got = self._results.pop(uid, None)
        if got is None or got[0] != ticket:
            return None
        return got[1]

    def forget(self, uid: str) -> None:
        with self._cond:
            self._results.pop(uid, None)

    def queued(self) -> int:
        with self._cond:
            return len(self._jobs)

    def running(self) -> int:
        with self._cond:
            return len(self._running)

    # ------------------------------------------------------------------ the workers' side
    def _next(self) -> Job | None:
        for ns, queue in self._queues.items():
            if self._running_ns.get(ns, 0) < self.per_namespace:
                job = self._jobs.pop(queue.popleft())
                self._queues.move_to_end(ns)  # the next job goes to another namespace first
                if not queue:
                    del self._queues[ns]
                self._running[job.uid] = job
                self._running_ns[ns] = self._running_ns.get(ns, 0) + 1
                return job
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._next()
            self._run(job)

    def _run(self, job: Job) -> None:
        result: tuple[Any, ...] | None = None
        try:
            result = job.run()
        except Exception:  # a bug, not a verdict: nothing recorded; the endpoint submits again later
            log.exception("measurement of %s/%s failed", job.namespace, job.name)
        with self._cond:
            del self._running[job.uid]
            self._running_ns[job.namespace] -= 1
            if not self._running_ns[job.namespace]:
                del self._running_ns[job.namespace]
            if result is not None:
                now = time.monotonic()
                self._results.pop(job.uid, None)
                self._results[job.uid] = (job.ticket, Result(job.share, result), now)
                while self._results and next(iter(self._results.values()))[2] < now - RESULT_TTL:
                    self._results.popitem(last=False)
            self._cond.notify_all()
        if result is not None:
            (job.requeue or self.on_done)(job.namespace, job.name)

    def run_queued(self) -> int:
        """Run every waiting job in this thread, in the workers' order (for a pool without threads)."""
        n = 0
        while True:
            with self._cond:
                job = self._next()
            if job is None:
                return n
            self._run(job)
            n += 1

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._queues.clear()
            self._jobs.clear()
            self._cond.notify_all()
