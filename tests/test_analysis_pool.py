"""analysis.pool.AnalysisPool: measurements on threads of their own, fair across namespaces, one per
endpoint at a time, a bounded queue per namespace, results kept for the endpoint's next reconcile."""

from __future__ import annotations

import threading
from collections.abc import Callable

from modelversioning.analysis.pool import BUSY, QUEUED, REFUSED, AnalysisPool, Job
from modelversioning.domain import rollout as RO

WAIT = 10.0  # a generous bound for events that happen at once; never reached when the pool works


def m(value: float = 0.0) -> tuple[RO.Measurement, ...]:
    return (RO.Measurement("errors", RO.PASSED, value, None, "", 0.0),)


def job(ns: str, uid: str, ticket: object = "t1", run: Callable[[], tuple[RO.Measurement, ...]] | None = None,
        ran: list[str] | None = None) -> Job:  # fmt: skip
    def go() -> tuple[RO.Measurement, ...]:
        if ran is not None:
            ran.append(uid)
        return m()

    return Job(ns, f"ep-{uid}", uid, ticket, 10, run or go)


def blocking(
    gate: threading.Event, started: threading.Event | None = None
) -> Callable[[], tuple[RO.Measurement, ...]]:
    def run() -> tuple[RO.Measurement, ...]:
        if started is not None:
            started.set()
        assert gate.wait(WAIT)
        return m()

    return run


def test_jobs_start_round_robin_across_namespaces_fifo_within_one() -> None:
    pool = AnalysisPool(workers=0, per_namespace=1)
    ran: list[str] = []
    for ns, uid in (("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1"), ("b", "b2")):
        assert pool.submit(job(ns, uid, ran=ran)) == QUEUED
    assert pool.queued() == 6
    assert pool.run_queued() == 6
    assert ran == ["a1", "b1", "c1", "a2", "b2", "a3"]  # a's three never run back to back before b and c


def test_one_measurement_per_endpoint_queued_or_running() -> None:
    gate, started = threading.Event(), threading.Event()
    pool = AnalysisPool(workers=1)
    try:
        assert pool.submit(job("a", "u1", run=blocking(gate, started))) == QUEUED
        assert started.wait(WAIT)
        assert pool.submit(job("a", "u1")) == BUSY  # running: nothing else of it starts
        assert pool.submit(job("a", "u1", ticket="t2")) == BUSY
        assert pool.submit(job("a", "u2")) == QUEUED
        assert pool.submit(job("a", "u2")) == QUEUED  # idempotent: still one job
        assert pool.queued() == 1 and pool.running() == 1
    finally:
        gate.set()
        pool.shutdown()


def test_a_queued_job_is_replaced_by_its_newer_ticket_in_place() -> None:
    pool = AnalysisPool(workers=0)
    pool.submit(job("a", "u1", ticket="old"))
    pool.submit(job("a", "u2"))
    pool.submit(job("a", "u1", ticket="new"))
    assert pool.queued() == 2
    pool.run_queued()
    assert pool.take("u1", "old") is None  # and dropped: a stale result is never kept
    pool.submit(job("a", "u1", ticket="new"))
    pool.run_queued()
    got = pool.take("u1", "new")
    assert got is not None and got.share == 10 and got.measurements == m()


def test_a_slow_namespace_does_not_hold_another_namespaces_measurement() -> None:
    """Two workers, two endpoints of namespace a blocked in their queries: b's job still runs at once
    (a holds at most per_namespace=1 worker), and every submit returns without waiting."""
    gate = threading.Event()
    b_done = threading.Event()
    pool = AnalysisPool(
        workers=2, per_namespace=1, on_done=lambda ns, name: b_done.set() if ns == "b" else None
    )
    try:
        started = threading.Event()
        assert pool.submit(job("a", "a1", run=blocking(gate, started))) == QUEUED
        assert started.wait(WAIT)
        assert pool.submit(job("a", "a2", run=blocking(gate))) == QUEUED
        assert pool.submit(job("b", "b1")) == QUEUED
        assert b_done.wait(WAIT), "b's measurement waited behind a's"
        assert pool.take("b1", "t1") is not None
        assert pool.running() == 1 and pool.queued() == 1  # a1 blocked, a2 waits for a's slot
    finally:
        gate.set()
        pool.shutdown()


def test_submitting_never_waits_for_busy_workers() -> None:
    gate, started = threading.Event(), threading.Event()
    pool = AnalysisPool(workers=1)
    try:
        pool.submit(job("a", "a1", run=blocking(gate, started)))
        assert started.wait(WAIT)
        # the only worker is stuck: submits and takes still answer (a lock, no wait on the job)
        assert [pool.submit(job("b", f"b{i}")) for i in range(3)] == [QUEUED] * 3
        assert pool.take("b0", "t1") is None and pool.queued() == 3
    finally:
        gate.set()
        pool.shutdown()


def test_each_namespace_has_a_bounded_queue() -> None:
    pool = AnalysisPool(workers=0, queued_per_namespace=2)
    assert [pool.submit(job("a", f"a{i}")) for i in range(3)] == [QUEUED, QUEUED, REFUSED]
    assert pool.submit(job("b", "b1")) == QUEUED  # another namespace is not refused for a's backlog
    pool.run_queued()
    assert pool.submit(job("a", "a2")) == QUEUED  # room again once a's jobs ran


def test_a_finished_measurement_requeues_its_endpoint_and_is_taken_once() -> None:
    requeued: list[tuple[str, str]] = []
    pool = AnalysisPool(workers=0, on_done=lambda ns, name: requeued.append((ns, name)))
    pool.submit(job("a", "u1", ticket=("rollout", 1030.0)))
    assert requeued == [] and pool.take("u1", ("rollout", 1030.0)) is None  # not run yet
    pool.run_queued()
    assert requeued == [("a", "ep-u1")]
    got = pool.take("u1", ("rollout", 1030.0))
    assert got is not None and got.measurements[0].verdict == RO.PASSED
    assert pool.take("u1", ("rollout", 1030.0)) is None  # once


def test_a_job_that_crashes_records_nothing_and_the_pool_goes_on() -> None:
    requeued: list[str] = []
    pool = AnalysisPool(workers=0, on_done=lambda ns, name: requeued.append(name))

    def boom() -> tuple[RO.Measurement, ...]:
        raise RuntimeError("bug")

    pool.submit(job("a", "u1", run=boom))
    pool.submit(job("b", "u2"))
    assert pool.run_queued() == 2
    assert pool.take("u1", "t1") is None and pool.take("u2", "t1") is not None
    assert requeued == ["ep-u2"]  # no requeue for the crash: its endpoint asks again at its own pace
    assert pool.submit(job("a", "u1")) == QUEUED  # not stuck as running
