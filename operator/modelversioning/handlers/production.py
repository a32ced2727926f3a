"""The production record's wiring (docs/design.md, "The production record"): the ModelVersion
reconcile takes what the measurement pool finished for the version (gather), ``domain.production``
decides what to merge and what to measure next (decide), and the segments due are submitted to the
pool (act). The queries never run on a reconcile worker; a finished job re-queues the version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelversioning import metrics
from modelversioning.analysis.pool import QUEUED, AnalysisPool, Job
from modelversioning.analysis.production import Scope, measure_segment
from modelversioning.analysis.prometheus import PrometheusClient
from modelversioning.api.settings import Settings
from modelversioning.domain.production import ProductionPolicy, Segment, SegmentFigures
from modelversioning.domain.version_facts import ProductionFacts
from modelversioning.handlers.modelfacts import model_spec
from modelversioning.handlers.store import Store

TICKET = "production-record"  # one job per version at a time (the pool keys jobs by uid)
MAX_REMEMBERED = 10_000  # versions whose last segment failed, remembered for their backoff


def policy_of(settings: Settings) -> ProductionPolicy | None:
    """The record's cadence, or None without a Prometheus to read (then nothing is measured or written)."""
    if not settings.analysis.prometheus_url:
        return None
    p = settings.production
    return ProductionPolicy(p.interval_seconds, p.settle_seconds, p.retry_seconds, p.give_up_seconds)


@dataclass
class ProductionRecorder:
    store: Store
    requeue: Callable[[str, str], None]
    client: PrometheusClient | None = None
    pool: AnalysisPool | None = None  # the operator's measurement pool (runtime.Operator sets it)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        # version uid -> (when a segment of it last failed, how many in a row); bounded: the oldest go
        self._failed: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, requeue: Callable[[str, str], None]
    ) -> ProductionRecorder:
        a = settings.analysis
        client = (
            PrometheusClient(a.prometheus_url, a.timeout_seconds, a.max_answer_bytes)
            if a.prometheus_url
            else None
        )
        return cls(store, requeue, client)

    def gather(self, namespace: str, model: str, version: str, uid: str) -> tuple[ProductionFacts, Scope]:
        """The Model's source and KPIs, the finished segments (taken once) and the last failure's age."""
        _, mspec = model_spec(self.store, namespace, model)
        source = mspec.production.source if mspec is not None else "traefik"
        kpis = tuple(mspec.production.kpis) if mspec is not None else ()
        scope = Scope(namespace, model, version, source, kpis)
        results: tuple[SegmentFigures, ...] = ()
        if self.pool is not None and uid:
            got = self.pool.take(uid, TICKET)
            results = tuple(got.measurements) if got is not None else ()
        now = self.clock()
        with self._lock:
            if any(r.error is not None for r in results):
                count = self._failed.pop(uid, (now, 0))[1] + 1
                self._failed[uid] = (now, count)
                while len(self._failed) > MAX_REMEMBERED:
                    del self._failed[next(iter(self._failed))]
            elif results:
                self._failed.pop(uid, None)
            failed = self._failed.get(uid)
        if failed is None:
            return ProductionFacts(source, results), scope
        return ProductionFacts(source, results, now - failed[0], failed[1]), scope

    def submit(
        self, namespace: str, name: str, uid: str, scope: Scope, segments: tuple[Segment, ...]
    ) -> bool:
        """Queue the segments' measurement on the pool (one job per version; never waits)."""
        if self.pool is None or self.client is None or not segments or not uid:
            return False
        client = self.client

        def run() -> tuple[SegmentFigures, ...]:
            out = tuple(measure_segment(scope, s, client.query, client.query_vector) for s in segments)
            for r in out:
                metrics.PRODUCTION_SEGMENTS.labels("failed" if r.error else "measured").inc()
            return out

        return self.pool.submit(Job(namespace, name, uid, TICKET, 0, run, requeue=self.requeue)) == QUEUED

    def forget(self, uid: str) -> None:
        with self._lock:
            self._failed.pop(uid, None)
        if self.pool is not None:
            self.pool.forget(uid)
