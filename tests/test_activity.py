"""A paused HA standby does nothing: the pause hook on the installed kopf, the active/paused cycle of
our own work (listing, work queue, drift check), the queue's pause, and the cache refill on resume."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.configs import configuration
from kopf._cogs.structs import references
from kopf._core.engines import peering
from kopf._core.reactor import orchestration

from modelversioning.handlers.activity import PauseSignal, install_pause_hook, refill, run_while_active
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue, WorkQueue
from waits import PATIENCE, loop_runs_timers_due, until

# refill compares the cache's own objects by identity: the Store hands them out as they are
pytestmark = pytest.mark.raw_cache

# ---- the hook on the installed kopf -------------------------------------------------------------


@pytest.mark.parametrize(("mandatory", "paused"), [(False, False), (True, True)])
def test_hook_binds_kopfs_own_pause_after_its_peering_setup(monkeypatch, mandatory, paused):
    """kopf's real adjust_tasks, with our hook: no peering resource known yet, so a mandatory
    peering (HA) pauses, a standalone operator does not."""
    monkeypatch.setattr(orchestration, "adjust_tasks", orchestration.adjust_tasks)  # undone after
    signal = PauseSignal()
    install_pause_hook(signal)
    install_pause_hook(signal)  # idempotent
    assert signal.paused  # unknown counts as paused

    async def go() -> bool:
        toggles = aiotoggles.ToggleSet(any)
        ensemble = orchestration.Ensemble(
            peering_missing=await toggles.make_toggle(name="peering CRD is missing"),
            operator_paused=toggles,
            operator_indexed=aiotoggles.ToggleSet(all),
        )
        settings = configuration.OperatorSettings()
        settings.peering.mandatory = mandatory
        settings.peering.standalone = not mandatory

        async def processor(**_: object) -> None: ...

        await orchestration.adjust_tasks(
            processor=processor,
            insights=references.Insights(),
            settings=settings,
            identity=peering.Identity("me"),
            ensemble=ensemble,
        )
        return signal.paused

    assert asyncio.run(go()) is paused


def test_hook_refuses_a_kopf_without_the_expected_shape(monkeypatch):
    async def adjust_tasks(*, processor: object, insights: object) -> None: ...

    monkeypatch.setattr(orchestration, "adjust_tasks", adjust_tasks)
    with pytest.raises(RuntimeError, match="peering pause"):
        install_pause_hook(PauseSignal())


# ---- the active/paused cycle --------------------------------------------------------------------


class Toggles:
    """Stands in for kopf's ToggleSet: on = paused. `waiting` lists the states someone waits for now."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.cond = asyncio.Condition()
        self.waiting: list[bool] = []

    def is_on(self) -> bool:
        return self.on

    async def wait_for(self, state: bool, /) -> None:
        self.waiting.append(state)
        try:
            async with self.cond:
                await self.cond.wait_for(lambda: self.on == state)
        finally:
            self.waiting.remove(state)

    async def turn(self, on: bool) -> None:
        async with self.cond:
            self.on = on
            self.cond.notify_all()


class CountingSignal(PauseSignal):
    """A PauseSignal that counts how often run_while_active asked to be let act."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def wait_active(self) -> None:
        self.asked += 1
        await super().wait_active()


# Nothing here is ordered by sleeping, and no test waits a fixed time and then asserts that nothing
# happened: each waits for the signal that proves the code had its chance to act (the replica back in
# its wait for kopf's word, the drift check cancelled, a later key reconciled by the same worker, every
# loop timer due by then having run). See tests/waits.py.
REQUEUE = 0.05  # the delay the reconciles below ask for


def test_paused_replica_lists_nothing_reconciles_nothing_and_relists_on_resume():
    log: list[str] = []

    def handler(key):
        log.append(f"reconcile {key[2]}")
        raise Requeue(REQUEUE)  # a reconcile that asks to be called again soon

    async def go() -> None:
        drift_cancelled = asyncio.Event()

        async def resync() -> None:
            try:
                while True:
                    log.append("resync")
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                drift_cancelled.set()
                raise

        signal = CountingSignal()
        q = WorkQueue(handler, workers=2)
        q.start(paused=True)

        def prime() -> None:
            log.append("list")

        def enqueue_all() -> None:
            q.add(("ModelVersion", "ns", "a"))

        task = asyncio.create_task(run_while_active(signal, q, prime, enqueue_all, resync))
        try:
            await until(lambda: signal.asked >= 1, "the replica waiting for kopf's word")
            assert log == []  # kopf has not said yet: nothing (checked for good below)
            toggles = Toggles(on=True)
            signal.bind(toggles)
            q.add(("ModelVersion", "ns", "b"))  # a watch event while paused: forgotten at once
            assert q.pending() == 0
            # it is waiting to be let act (or, broken, it listed): everything it did is in the log
            await until(lambda: toggles.waiting == [False] or bool(log), "the standby waiting to act")
            assert log == [] and signal.asked == 1  # paused standby: nothing, before kopf said or since
            await toggles.turn(False)
            await until(lambda: log.count("reconcile a") >= 2 and "resync" in log, "active: reconciling")
            assert log[0] == "list" and "reconcile b" not in log  # listed before any reconcile
            await toggles.turn(True)
            # back in its wait to be let act: queue.pause() has returned, so the reconcile that was in
            # flight is done and logged; and the drift check was cancelled (or, broken, ran on)
            await until(lambda: signal.asked == 2 and toggles.waiting == [False], "paused again")
            seen = len(log)
            await until(lambda: drift_cancelled.is_set() or "resync" in log[seen:], "the drift check stopped")
            loop = asyncio.get_running_loop()
            await loop_runs_timers_due(loop.time() + 2 * REQUEUE)  # any requeue timer has fired
            assert log[seen:] == []  # no requeue, no resync, no listing while paused
            assert q.pending() == 0 and drift_cancelled.is_set()
            await toggles.turn(False)
            await until(lambda: log[seen:].count("reconcile a") >= 1, "active again: reconciling")
            assert log[seen] == "list"  # the cache is listed again before reconciling
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await q.stop()

    asyncio.run(go())


def test_pause_waits_for_the_reconcile_in_flight_and_drops_the_rest():
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def handler(key):
        if key[2] == "slow":
            started.set()
            release.wait(PATIENCE)
        done.append(key[2])

    async def go() -> None:
        loop = asyncio.get_running_loop()
        q = WorkQueue(handler, workers=1)
        q.start()
        try:
            q.add(("ModelVersion", "ns", "slow"))
            assert await asyncio.to_thread(started.wait, PATIENCE)
            q.add(("ModelVersion", "ns", "queued"))
            later_due = loop.time() + 0.3
            q.add_after(("ModelVersion", "ns", "later"), 0.3)
            pausing = asyncio.create_task(q.pause())
            # pause() marks the queue paused in its first step, then returns or waits for the
            # reconcile in flight: once the queue is paused, pausing has had its chance to return
            await until(lambda: q.paused, "pause() started")
            assert not pausing.done()  # still waiting for the reconcile in flight
            release.set()
            await asyncio.wait_for(pausing, PATIENCE)
            assert done == ["slow"] and q.pending() == 0  # the queued key is forgotten
            q.add_after(("ModelVersion", "ns", "timer-while-paused"), REQUEUE)
            timer_due = loop.time() + REQUEUE
            q.resume()
            q.add(("ModelVersion", "ns", "after"))
            # one worker, first in first out: a key still queued from before the pause would run first
            await until(lambda: "after" in done, "the key added after resuming reconciled")
            await loop_runs_timers_due(max(later_due, timer_due))  # both timers, had they survived, fired
            assert done == ["slow", "after"] and q.pending() == 0
        finally:
            release.set()
            await q.stop()

    asyncio.run(go())


# ---- refilling the cache -------------------------------------------------------------------------


def _obj(name: str, rv: str) -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}


def test_refill_drops_objects_deleted_while_paused_but_not_newer_watch_events():
    s = Store()
    for name in ("kept", "deleted", "recreated"):
        s.upsert("ModelVersion", _obj(name, "1"))

    def list_objects() -> list[dict]:
        s.upsert("ModelVersion", _obj("recreated", "9"))  # a watch event lands during the LIST
        s.upsert("ModelVersion", _obj("created", "10"))
        return [_obj("kept", "5")]

    refill(s, "ModelVersion", None, list_objects)
    assert {n: b["metadata"]["resourceVersion"] for (_, n), b in s.items("ModelVersion")} == {
        "kept": "5",
        "recreated": "9",
        "created": "10",
    }


def test_refill_keeps_an_entry_cached_at_the_listed_version_and_marks_our_write_observed(monkeypatch):
    """A second LIST (after the startup backlog) re-caches nothing that is unchanged: a new entry per
    object among the LIST's garbage is what left a restarted operator's heap fragmented."""
    s = Store()
    s.upsert("ModelVersion", _obj("same", "3"))
    s.upsert("ModelVersion", _obj("ours", "4"), observed=False)  # our own write, not yet watched
    s.upsert("ModelVersion", _obj("newer", "5"))
    upserted: list[str] = []
    real = s.upsert
    monkeypatch.setattr(s, "upsert", lambda kind, body, **kw: (upserted.append(body["metadata"]["name"]),
                                                               real(kind, body, **kw)))  # fmt: skip
    refill(s, "ModelVersion", None, lambda: [_obj("same", "3"), _obj("ours", "4"), _obj("newer", "6")])
    assert upserted == ["newer"]
    assert s.is_observed("ModelVersion", "ns", "ours")  # the LIST showed it
    assert s.get("ModelVersion", "ns", "newer")["metadata"]["resourceVersion"] == "6"


def test_refill_leaves_the_cache_alone_when_the_list_fails():
    s = Store()
    s.upsert("ModelVersion", _obj("a", "1"))

    def fails() -> list[dict]:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        refill(s, "ModelVersion", "ns", fails)
    assert s.get("ModelVersion", "ns", "a") is not None


def test_refill_caches_page_by_page_and_a_failed_page_drops_nothing():
    s = Store()
    s.upsert("ModelVersion", _obj("gone", "1"))

    def pages():
        yield _obj("a", "2")
        raise OSError("connection reset")

    with pytest.raises(OSError):
        refill(s, "ModelVersion", None, pages)
    assert {n for (_, n), _ in s.items("ModelVersion")} == {"gone", "a"}


def test_the_startup_list_is_read_in_pages():
    from modelversioning.handlers.kube import MODELVERSION, Kube

    calls: list[dict] = []

    class Paged(Kube):
        def _call(self, method, path, body=None, *, content_type=None, query=None):
            q = dict(query or [])
            calls.append(q)
            start = int(q.get("continue") or 0)
            names = [f"mv{i}" for i in range(start, min(start + q["limit"], 5))]
            more = str(start + q["limit"]) if start + q["limit"] < 5 else ""
            return {"metadata": {"continue": more}, "items": [{"metadata": {"name": n}} for n in names]}

    pages = list(Paged(None).list_pages(MODELVERSION, "ns", "a=b", page=2))  # type: ignore[arg-type]
    assert [[i["metadata"]["name"] for i in p] for p in pages] == [["mv0", "mv1"], ["mv2", "mv3"], ["mv4"]]
    assert all(
        i["kind"] == "ModelVersion" and i["apiVersion"] == MODELVERSION.api_version for p in pages for i in p
    )
    assert [c.get("continue") for c in calls] == [None, "2", "4"] and calls[0]["labelSelector"] == "a=b"


def test_memory_is_released_once_the_startup_backlog_is_done(monkeypatch):
    from modelversioning.handlers import resync

    backlog = [5, 3, 0, 1, 0, 0, 0, 0]
    released: list[int] = []

    class Op:
        class queue:  # noqa: N801 - stands in for the attribute
            paused = True  # _settle lists nothing while paused (tested below)

            @staticmethod
            def pending() -> int:
                return backlog.pop(0) if backlog else 0

    monkeypatch.setattr(resync, "release_memory", lambda: released.append(len(backlog)))
    asyncio.run(resync._release_when_settled(Op(), poll=0))  # type: ignore[arg-type]
    assert released == [1, 1]  # after three quiet polls in a row, and again once kopf's workers end


@pytest.mark.parametrize(
    "cycle, recheck, versions",
    [(1, 0.0, False), (9, 0.0, False), (10, 0.0, True), (20, 0.0, True), (1, 3600.0, True), (7, 60.0, True)],
)
def test_drift_checks_rerun_versions_only_when_something_needs_them(cycle, recheck, versions) -> None:  # type: ignore[no-untyped-def]
    from modelversioning.handlers.resync import drift_kinds

    kinds = drift_kinds(cycle, recheck)
    assert "ModelEndpoint" in kinds and "Model" in kinds  # children and retention: every time
    assert ("ModelVersion" in kinds) is versions


def test_after_a_restart_endpoints_go_first_and_versions_wait_behind_watch_events() -> None:
    from types import SimpleNamespace

    from modelversioning.handlers.listing import enqueue_all
    from modelversioning.handlers.store import Store

    store = Store()
    for kind in ("ModelVersion", "Model", "ModelEndpoint"):
        store.upsert(kind, {"metadata": {"name": kind.lower(), "namespace": "ns", "resourceVersion": "1"}})
    added: list[tuple[str, bool]] = []
    queue = SimpleNamespace(add=lambda key, low=False: added.append((key[0], low)))
    enqueue_all(SimpleNamespace(store=store, queue=queue))  # type: ignore[arg-type]
    assert added == [("ModelEndpoint", False), ("Model", False), ("ModelVersion", True)]


def test_kopfs_listing_of_what_the_cache_holds_enqueues_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After a restart kopf lists every object again; those the primed cache holds at the same
    resourceVersion must not queue work (enqueue_all did, endpoints first), the others must."""
    from types import SimpleNamespace

    from modelversioning.handlers import runtime, watch
    from modelversioning.handlers.store import Store

    store = Store()
    mv = {"metadata": {"name": "m-v1", "namespace": "ns", "resourceVersion": "7"}, "spec": {"model": "m"}}
    ep = {"metadata": {"name": "ep", "namespace": "ns", "resourceVersion": "8"}, "spec": {"model": "m"}}
    store.upsert("ModelVersion", mv)
    store.upsert("ModelEndpoint", ep)
    added: list[tuple[str, str]] = []
    queue = SimpleNamespace(add=lambda key, low=False: added.append((key[0], key[2])))
    op = runtime.Operator.__new__(runtime.Operator)
    op.store, op.queue = store, queue  # type: ignore[assignment]
    monkeypatch.setattr(runtime, "OP", op)

    asyncio.run(watch.modelversion_event(event={"type": None, "object": mv}, body=mv))
    asyncio.run(watch.modelendpoint_event(event={"type": None, "object": ep}, body=ep))
    assert added == []  # the same versions as cached: nothing to do
    changed = {**mv, "metadata": {**mv["metadata"], "resourceVersion": "9"}}
    asyncio.run(watch.modelversion_event(event={"type": None, "object": changed}, body=changed))
    assert ("ModelVersion", "m-v1") in added and ("ModelEndpoint", "ep") in added  # and its endpoint
    added.clear()
    asyncio.run(watch.modelversion_event(event={"type": "MODIFIED", "object": changed}, body=changed))
    assert ("ModelVersion", "m-v1") in added  # a watch event always queues its object


def test_a_watch_event_caches_kopfs_body_as_plain_data(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """kopf hands a mapping view (kopf.Body) over the event's decoded JSON; the cache holds plain
    dicts, copied: a later change of the event's object does not reach the cache."""
    from types import SimpleNamespace

    import kopf

    from modelversioning.handlers import runtime, watch
    from modelversioning.handlers.store import Store

    raw = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": "ep", "namespace": "ns", "resourceVersion": "3"},
        "spec": {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}]},
    }
    op = runtime.Operator.__new__(runtime.Operator)
    op.store = Store()
    op.queue = SimpleNamespace(add=lambda key, low=False: None)  # type: ignore[assignment]
    monkeypatch.setattr(runtime, "OP", op)
    asyncio.run(watch.modelendpoint_event(event={"type": "ADDED", "object": raw}, body=kopf.Body(raw)))
    raw["spec"]["variants"][0]["weight"] = 0
    cached = op.store.get("ModelEndpoint", "ns", "ep")
    assert type(cached) is dict and type(cached["spec"]) is dict
    assert cached["spec"]["variants"] == [{"name": "a", "version": "1.0.0", "weight": 100}]


def test_only_event_handlers_are_registered_so_kopf_needs_no_essence() -> None:
    """startup.NoEssence skips kopf's per-event diff base: right only while no handler reads it."""
    from pathlib import Path

    import modelversioning.handlers as handlers

    used = set()
    for path in Path(handlers.__file__).parent.glob("*.py"):
        used |= set(re.findall(r"kopf\.on\.(\w+)", path.read_text()))
    assert used <= {"event", "startup", "cleanup", "probe"}, used
    from modelversioning.handlers.startup import NoEssence

    assert NoEssence().fetch(body=None) is None and NoEssence().build(body=None) == {}  # type: ignore[arg-type]


def test_kopfs_initial_listing_is_paged_like_ours() -> None:
    import sys

    import kopf

    from modelversioning.handlers import listing, memory, startup

    settings = kopf.OperatorSettings()
    before = sys.getswitchinterval()
    try:
        asyncio.run(_startup_settings_only(startup, settings))
        assert sys.getswitchinterval() == pytest.approx(
            startup.SWITCH_INTERVAL
        )  # the loop gets the GIL back soon
    finally:
        sys.setswitchinterval(before)
        import gc

        if memory._watch_gc in gc.callbacks:  # the startup handler installed it: not for the test run
            gc.callbacks.remove(memory._watch_gc)
        gc.unfreeze()
    assert settings.watching.chunk_size == listing.LIST_PAGE  # never one LIST of 10,000 objects


async def _startup_settings_only(startup, settings) -> None:  # type: ignore[no-untyped-def]
    """Run the startup handler far enough to configure kopf's settings, without an API server."""
    import contextlib

    class Stop(Exception):
        pass

    def stop(*_a, **_k):  # type: ignore[no-untyped-def]
        raise Stop

    orig = startup.load_api_client
    startup.load_api_client = stop
    try:
        with contextlib.suppress(Stop):
            await startup.startup(settings=settings)
    finally:
        startup.load_api_client = orig


def _listing_op(listed: dict[str, list[dict]]):  # type: ignore[no-untyped-def]
    """An Operator whose API server lists `listed` (kind -> objects) and counts the LISTs."""
    from types import SimpleNamespace

    from modelversioning.api.settings import Settings
    from modelversioning.handlers import runtime
    from modelversioning.handlers.store import Store

    calls: list[str] = []

    class K:
        def list_pages(self, res, namespace, selector, page=250):  # type: ignore[no-untyped-def]
            calls.append(res.kind)
            yield [dict(o) for o in listed.get(res.kind, [])]

    op = runtime.Operator.__new__(runtime.Operator)
    op.settings, op.kube, op.store = Settings(), K(), Store()  # type: ignore[assignment]
    op.queue = SimpleNamespace(paused=False)  # type: ignore[assignment]
    op.primed_at = None
    return op, calls


def _obj(name: str, rv: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "spec": {"model": "m"}}


def test_startups_listing_stands_in_for_the_first_activation_only_while_fresh(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from modelversioning.handlers import listing

    op, calls = _listing_op({"ModelVersion": [_obj("a", "1")]})
    asyncio.run(listing.prime_at_startup(op))
    assert op.store.has("ModelVersion", "ns", "a") and op.primed_at is not None
    n = len(calls)
    listing.prime_unless_fresh(op)  # active at once: startup's listing is enough
    assert len(calls) == n and op.primed_at is None
    listing.prime_unless_fresh(op)  # a later activation (after a pause) lists again
    assert len(calls) == 2 * n
    op.primed_at = 0.0  # a standby that became active long after startup lists again too
    listing.prime_unless_fresh(op)
    assert len(calls) == 3 * n


def test_settling_listing_drops_what_was_deleted_between_the_two_listings() -> None:
    from modelversioning.handlers import resync

    op, calls = _listing_op({"ModelVersion": [_obj("a", "1")]})
    op.store.upsert("ModelVersion", _obj("a", "1"))
    op.store.upsert("ModelVersion", _obj("gone", "2"))  # deleted after our listing, before kopf's
    resync._settle(op)
    assert op.store.has("ModelVersion", "ns", "a") and not op.store.has("ModelVersion", "ns", "gone")
    op.queue.paused = True  # a paused replica lists nothing
    before = len(calls)
    resync._settle(op)
    assert len(calls) == before


def test_each_drift_check_freezes_the_heap_and_an_hourly_one_collects_it_whole(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc

    from modelversioning.handlers import memory

    calls: list[object] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(("collect", generation)) or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    memory.freeze_heap(1)
    assert calls == [("collect", 1), "freeze"]  # young generations only, then out of the collector's way
    calls.clear()
    memory.freeze_heap(memory.UNFREEZE_EVERY)
    assert calls == ["unfreeze", ("collect", 2), "freeze"]


def test_a_slow_garbage_collection_is_logged(caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc

    from modelversioning.handlers import memory

    # the hook's clock moves only when the test says: on a busy machine the real one also counts the
    # time this test takes between the two calls (it read "took 1.77s" for a collection of 1.5 s)
    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    junk = [[i] for i in range(1000)]  # alive, tracked, not frozen
    gc.disable()  # no real collection (which calls the same hook) in between
    memory._watch_gc("start", {"generation": 2})
    clock[0] += 1.5
    before = gc.get_freeze_count()
    try:
        with caplog.at_level("WARNING", logger="modelversioning"):
            memory._watch_gc("stop", {"generation": 2})
        assert "generation 2 took 1.50s" in caplog.text
        assert gc.get_freeze_count() >= before + len(junk)  # what survived a full collection is frozen
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_failed_settling_listing_does_not_stop_the_drift_check(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from modelversioning.handlers import resync

    def boom(_op):  # type: ignore[no-untyped-def]
        raise ConnectionError("the API server went away")

    monkeypatch.setattr(resync, "_settle", boom)
    monkeypatch.setattr(resync, "release_memory", lambda: None)

    class Op:
        class queue:  # noqa: N801 - stands in for the attribute
            paused = False

            @staticmethod
            def pending() -> int:
                return 0

    asyncio.run(resync._release_when_settled(Op(), poll=0))  # type: ignore[arg-type]  # returns, no raise
