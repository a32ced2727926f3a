"""Pure helpers of the handlers layer: drift comparison, actor attribution, path walking,
rollout detection, servedBy, and the work queue's per-key semantics."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

from modelversioning.handlers.drift import diff, in_sync
from modelversioning.handlers.modelendpoint import deployment_state
from modelversioning.handlers.modelversion import served_by
from modelversioning.handlers.store import Store
from modelversioning.handlers.version_annotations import stage_actor
from modelversioning.handlers.workqueue import Requeue, WorkQueue
from waits import PATIENCE, set_within, until


def test_diff_ignores_server_defaults_and_normalized_quantities():
    desired = {
        "spec": {
            "replicas": 2,
            "template": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}}}]
            },
        }
    }
    actual = {
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {
                "containers": [
                    {
                        "name": "c",
                        "terminationMessagePath": "/dev/termination-log",
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                    }
                ]
            },
        }
    }
    assert diff(desired, actual) == []


def test_diff_reports_hand_edits():
    desired = {"spec": {"http": [{"route": [{"weight": 90}, {"weight": 10}]}]}}
    actual = {"spec": {"http": [{"route": [{"weight": 100}, {"weight": 0}]}]}}
    assert diff(desired, actual) == [".spec.http[0].route[0].weight", ".spec.http[0].route[1].weight"]
    assert diff({"a": [1, 2]}, {"a": [1]}) == [".a"]
    assert diff({"replicas": 0}, {}) == [".replicas"]  # zero replicas is a value, not an empty field
    assert diff({"labels": {}}, {}) == []  # the API server drops empty maps


def _tree(rnd: random.Random, depth: int = 0) -> Any:
    """A random desired/actual-like value: maps of known keys, lists, quantities, numbers, empties."""
    pick = rnd.random()
    if depth < 3 and pick < 0.35:
        keys = ["replicas", "weight", "resources", "requests", "cpu", "labels", "name", "x"]
        return {k: _tree(rnd, depth + 1) for k in rnd.sample(keys, rnd.randint(0, 4))}
    if depth < 3 and pick < 0.5:
        return [_tree(rnd, depth + 1) for _ in range(rnd.randint(0, 2))]
    return rnd.choice([None, 0, 1, 1.0, 2, "", "a", "b", "1", "1000m", "1Gi", "1024Mi", False, True, {}, []])


def _mutated(rnd: random.Random, value: Any) -> Any:
    """`value` with some parts changed, dropped or added (an API server's defaults, a hand edit)."""
    if isinstance(value, dict):
        out = {k: _mutated(rnd, v) if rnd.random() < 0.8 else _tree(rnd, 2) for k, v in value.items()}
        for k in list(out):
            if rnd.random() < 0.1:
                del out[k]
        if rnd.random() < 0.3:
            out["default"] = _tree(rnd, 2)
        return out
    if isinstance(value, list) and rnd.random() < 0.8:
        return [_mutated(rnd, v) for v in value]
    return value if rnd.random() < 0.7 else _tree(rnd, 2)


def test_in_sync_is_exactly_an_empty_diff():
    rnd = random.Random(25)
    agree = differ = 0
    for _ in range(20000):
        desired = _tree(rnd)
        actual = _mutated(rnd, desired)
        assert in_sync(desired, actual) == (not diff(desired, actual)), (desired, actual)
        agree += in_sync(desired, actual)
        differ += not in_sync(desired, actual)
    assert agree > 1000 and differ > 1000  # both outcomes exercised


def _mv(annotations=None, managed=None):
    return {"metadata": {"annotations": annotations or {}, "managedFields": managed or []}}


def test_actor_prefers_matching_annotation_then_field_manager():
    managed = [
        {
            "manager": "argocd-controller",
            "operation": "Apply",
            "time": "2024-01-02T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:stage": {}}},
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2024-01-01T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:stage": {}}},
        },
        {
            "manager": "other",
            "operation": "Update",
            "time": "2024-01-03T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:description": {}}},
        },
    ]
    ann = {"modelversioning.io/requested-by": "alice", "modelversioning.io/requested-stage": "production"}
    assert stage_actor(_mv(ann, managed), "production", enforced=True) == "alice"
    assert stage_actor(_mv(ann, managed), "production") == "alice (unverified requested-by)"
    # a stale annotation (for another stage) is not trusted
    # a client-chosen name, not an identity: marked as such in the audit trail
    assert stage_actor(_mv(ann, managed), "archived") == "argocd-controller (apply; unverified field manager)"
    assert stage_actor(_mv(), "staging") == "unknown"


def _dep(replicas=1, ready=1, gen=1, observed=1, available=True):
    return {
        "metadata": {"name": "ep-stable-0123456789", "generation": gen},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if available else "False"}],
        },
    }


def test_deployment_state():
    ok = deployment_state(_dep())
    assert ok.available and ok.exists and ok.name == "ep-stable-0123456789" and ok.ready_replicas == 1
    assert not deployment_state(None).exists
    assert deployment_state(_dep(gen=2, observed=1)).why == "Deployment update not yet observed"
    assert deployment_state(_dep(replicas=2, ready=1)).why == "1/2 replicas available"
    assert not deployment_state(_dep(available=False)).available
    zero = deployment_state(_dep(replicas=0, ready=0))
    assert not zero.available and zero.why == "Deployment has 0 replicas"


def test_served_by_includes_warm_mirror_and_draining_variants():
    s = Store()
    s.upsert(
        "ModelEndpoint",
        {
            "metadata": {"namespace": "ns", "name": "ep"},
            "spec": {
                "model": "m",
                "variants": [
                    {"name": "blue", "version": "1.0.0", "weight": 0},
                    {"name": "shadow", "version": "1.0.0", "weight": 0},
                ],
                "mirror": {"variant": "shadow"},
            },
            "status": {
                "effectiveWeights": {"blue": 0, "old": 100},
                "variants": [{"name": "old", "version": "1.0.0"}],
            },
        },
    )
    s.upsert(
        "ModelEndpoint",
        {
            "metadata": {"namespace": "other", "name": "ep"},
            "spec": {"model": "m", "variants": [{"name": "x", "version": "1.0.0"}]},
        },
    )
    assert served_by(s, "ns", "m", "1.0.0") == [
        {"endpoint": "ep", "variant": "blue", "weight": 0},
        {"endpoint": "ep", "variant": "old", "weight": 100},
        {"endpoint": "ep", "variant": "shadow", "weight": 0, "mirror": True},
    ]
    assert served_by(s, "ns", "m", "2.0.0") == []


# ---- the work queue: ordered by explicit signals (handlers block on Events the test sets), never by
# how long something takes; see tests/waits.py


def test_workqueue_serializes_keys_dedups_and_retries():
    calls: list[str] = []
    running: set[tuple[str, str, str]] = set()
    overlap = threading.Event()
    failed_once: set[str] = set()

    def handler(key):
        if key in running:
            overlap.set()
        running.add(key)
        try:
            calls.append(key[2])
            if key[2] == "flaky" and "flaky" not in failed_once:
                failed_once.add("flaky")
                raise RuntimeError("boom")
            if key[2] == "wait" and calls.count("wait") == 1:
                raise Requeue(0.05)
        finally:
            running.discard(key)

    async def main():
        q = WorkQueue(handler, workers=3, base_delay=0.01)
        q.start()
        try:
            for _ in range(5):  # all before any worker runs (no await in between): queued once
                q.add(("K", "ns", "a"))
            q.add(("K", "ns", "flaky"))
            q.add(("K", "ns", "wait"))
            # the retry and the requeue are the last things to happen; once both ran and nothing is
            # queued or running, every reconcile these adds could cause has happened
            await until(
                lambda: calls.count("flaky") == 2 and calls.count("wait") == 2 and q.pending() == 0,
                "the failed key retried and the requeued key called again",
            )
        finally:
            await q.stop()

    asyncio.run(main())
    assert calls.count("a") == 1  # five adds while queued -> one reconcile
    assert calls.count("flaky") == 2  # retried after the failure
    assert calls.count("wait") == 2  # Requeue -> called again after the delay
    assert not overlap.is_set()


def test_workqueue_events_overtake_the_drift_check():
    order: list[str] = []
    started, gate, finished = threading.Event(), threading.Event(), threading.Event()

    def handler(key):
        if key[2] == "first":
            started.set()
            gate.wait(PATIENCE)
        order.append(key[2])
        if len(order) == 7:
            finished.set()

    async def main():
        q = WorkQueue(handler, workers=1)
        q.start()
        try:
            q.add(("K", "ns", "first"))
            await set_within(started, "the single worker busy with 'first'")
            for i in range(5):
                q.add(("K", "ns", f"resync-{i}"), low=True)
            q.add(("K", "ns", "resync-3"))  # an event for a key already queued for the resync
            q.add(("K", "ns", "event"))
            gate.set()
            await set_within(finished, "every queued key reconciled")
            await until(lambda: q.pending() == 0, "the queue empty")
        finally:
            gate.set()
            await q.stop()

    asyncio.run(main())
    assert order[:3] == ["first", "resync-3", "event"]
    assert sorted(order[3:]) == ["resync-0", "resync-1", "resync-2", "resync-4"]
    assert order.count("resync-3") == 1


def test_served_by_counts_the_pinned_version_and_the_pending_one():
    s = Store()
    s.upsert(
        "ModelEndpoint",
        {
            "metadata": {"namespace": "ns", "name": "ep"},
            "spec": {"model": "m", "variants": [{"name": "stable", "version": "2.4.1", "weight": 100}]},
            "status": {
                "effectiveWeights": {"stable": 100},
                "variants": [
                    {
                        "name": "stable",
                        "version": "2.4.1",
                        "serving": {"version": "2.3.8", "slot": "ep-stable-x"},
                    }
                ],
            },
        },
    )
    # 2.3.8 still answers every request: it is in use (its deletion is held) at 100 %
    # (with the slot that carries it: the production record selects the gateway's series by it)
    assert served_by(s, "ns", "m", "2.3.8") == [
        {"endpoint": "ep", "variant": "stable", "weight": 100, "slot": "ep-stable-x"}
    ]
    # the pending one: no slot of its own carries traffic yet
    assert served_by(s, "ns", "m", "2.4.1") == [{"endpoint": "ep", "variant": "stable", "weight": 0}]


def test_store_tracks_writes_the_watch_has_not_shown():
    s = Store()
    body = {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": "5"}}
    s.upsert("HTTPRoute", body)
    assert s.is_observed("HTTPRoute", "ns", "r")
    s.upsert(
        "HTTPRoute", {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": "6"}}, observed=False
    )
    assert not s.is_observed("HTTPRoute", "ns", "r")
    s.upsert(
        "HTTPRoute", {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": "5"}}
    )  # late event
    assert not s.is_observed("HTTPRoute", "ns", "r")
    s.upsert("HTTPRoute", {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": "6"}})
    assert s.is_observed("HTTPRoute", "ns", "r")
    # a no-op write (same resourceVersion) produces no watch event: it must not stay "unobserved"
    s.upsert(
        "HTTPRoute", {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": "6"}}, observed=False
    )
    assert s.is_observed("HTTPRoute", "ns", "r")


def test_workqueue_runs_one_drift_reconcile_at_a_time_and_leaves_the_rest_to_events():
    """Four drift (LOW) keys on three workers: one runs, held until the test releases it; the other
    two workers stay free, and an event added meanwhile is reconciled while the drift reconcile is
    still running. Each drift reconcile is held until the test has seen that no second one started."""
    lows = [f"resync-{i}" for i in range(4)]
    started = {k: threading.Event() for k in [*lows, "event"]}
    release = {k: threading.Event() for k in lows}
    running: list[str] = []
    order: list[str] = []
    peak = {"low": 0}
    lock = threading.Lock()

    def handler(key):
        with lock:
            running.append(key[2])
            peak["low"] = max(peak["low"], sum(1 for k in running if k.startswith("resync")))
        started[key[2]].set()
        if key[2] in release:
            release[key[2]].wait(PATIENCE)
        with lock:
            running.remove(key[2])
            order.append(key[2])

    async def main():
        q = WorkQueue(handler, workers=3)
        q.start()
        try:
            for k in lows:
                q.add(("K", "ns", k), low=True)
            await set_within(started["resync-0"], "the first drift reconcile started")
            q.add(("K", "ns", "event"))
            # the event is done, or a second drift reconcile took a worker (the bug: fails at once)
            await until(
                lambda: "event" in order or any(started[k].is_set() for k in lows[1:]),
                "the event reconciled beside the drift reconcile",
            )
            assert order == ["event"] and peak["low"] == 1  # resync-0 still runs, nothing else started
            for k, nxt in zip(lows, [*lows[1:], None], strict=True):
                release[k].set()
                if nxt is not None:
                    await set_within(started[nxt], f"{nxt} started once {k} was released")
            await until(lambda: len(order) == 5 and q.pending() == 0, "every key reconciled")
        finally:
            for e in release.values():
                e.set()
            await q.stop()

    asyncio.run(main())
    assert peak["low"] == 1  # never two drift reconciles at once
    assert order == ["event", *lows]  # the event did not wait behind the drift check


def test_workqueue_runs_as_many_reconciles_at_once_as_it_has_workers():
    """Each worker has its own thread: asyncio's default executor (min(32, cores + 4) threads, shared
    with every to_thread call) held 8 workers to 6 on 2 cores."""
    workers = 12
    barrier = threading.Barrier(workers, timeout=PATIENCE)
    met: list[str] = []
    broken: list[str] = []

    def handler(key):
        try:
            barrier.wait()  # raises BrokenBarrierError unless all of them run at the same time
        except threading.BrokenBarrierError:
            broken.append(key[2])
            raise
        met.append(key[2])

    async def main():
        q = WorkQueue(handler, workers=workers)
        q.start()
        try:
            for i in range(workers):
                q.add(("K", "ns", f"o{i}"))
            await until(lambda: len(met) == workers or bool(broken), "every worker at the barrier")
        finally:
            barrier.abort()  # lets a broken run end now
            await q.stop()

    asyncio.run(main())
    assert not broken
    assert sorted(met) == sorted(f"o{i}" for i in range(workers))
