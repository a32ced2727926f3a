"""Retention's deletions (and their dry runs) on a small fair pool of their own, never on a reconcile
worker: a deletion lists and re-hashes the version's objects in the verifier's worker process, which
may take up to two ``artifacts.timeoutSeconds``. The Model's reconcile submits the job and returns; the
finished job re-queues the Model, whose next reconcile takes the outcome (once)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from modelversioning.artifacts.runner import FairExecutor
from modelversioning.domain.model_plan import Deleted

log = logging.getLogger(__name__)

JobKey = tuple[str, str, str, str, str, bool]  # namespace, model, version object, uri, sha256, dry run


class DeletionJobs:
    def __init__(self, requeue: Callable[[str, str], None], workers: int = 1) -> None:
        self.requeue = requeue  # (namespace, model): thread-safe
        self.pool = FairExecutor(workers, 1, name="retention")  # one per namespace at a time
        self._jobs: dict[JobKey, Future[Deleted]] = {}
        self._lock = threading.Lock()

    def take_or_submit(self, key: JobKey, call: Callable[[], Deleted]) -> Deleted | None:
        """The finished outcome of this job (taken: the next call submits again), or None while it is
        queued or running (submitted now when there was none)."""
        with self._lock:
            fut = self._jobs.get(key)
            if fut is None:
                fut = self.pool.submit_for(key[0], call)
                self._jobs[key] = fut
                fut.add_done_callback(lambda _f: self.requeue(key[0], key[1]))
                return None
            if not fut.done():
                return None
            del self._jobs[key]
        try:
            return fut.result()
        except Exception as e:  # noqa: BLE001 - reported on the Model, retried at the next check
            log.exception("retention's deletion job for %s/%s crashed", key[0], key[2])
            return Deleted(False, f"the deletion crashed: {type(e).__name__}")

    def pending(self) -> int:
        with self._lock:
            return sum(1 for f in self._jobs.values() if not f.done())
