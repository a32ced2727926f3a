"""RollbackReady on the real ModelEndpoint reconciler (in-memory API, tests/test_endpoint_reconciler.py's
World), and the fallback artifact probes (handlers.rollback_probe): what is probed, how often, which
writes a probe costs (none while nothing changes), and that the condition is advisory."""

from __future__ import annotations

from typing import Any

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.artifacts.probe import ProbeResult
from modelversioning.domain.endpoint_facts import VariantFacts, VersionFacts
from modelversioning.handlers.rollback_probe import ArtifactProbes
from test_endpoint_reconciler import NEW, NS, OLD, World, drift, ran


class Pool:
    """The verification pool, run by hand: submit_for queues, run() runs what is queued."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, Any, tuple[Any, ...]]] = []

    def submit_for(self, key: str, fn: Any, *args: Any) -> None:
        self.queued.append((key, fn, args))

    def run(self) -> int:
        jobs, self.queued = self.queued, []
        for _, fn, args in jobs:
            fn(*args)
        return len(jobs)


class Store:
    """What the probe answers, per URI; and every probe asked."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.asked: list[tuple[str, int | None]] = []

    def __call__(self, uri: str, **kw: Any) -> ProbeResult:
        self.asked.append((uri, kw.get("expected_size")))
        return ProbeResult(self.state.get(uri, R.PROBE_PRESENT), f"{uri}: {self.state.get(uri, 'present')}")


def world(every: float = 300.0) -> tuple[World, Pool, Store, list[tuple[str, str]]]:
    w = World()
    pool, store, requeued = Pool(), Store(), []
    w.rec.fallback_probes = ArtifactProbes(
        pool,  # type: ignore[arg-type]
        w.rec.settings.artifacts,
        lambda ns, name: {},
        lambda ns, name: requeued.append((ns, name)),
        every,
        probe=store,
        clock=lambda: w.now,
    )
    return w, pool, store, requeued


def after_a_rollout(w: World) -> None:
    """canary 2.4.1 takes 100 %, stable 2.3.8 stays deployed at 0 %: the fallback."""
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    w.endpoint([
        {"name": "stable", "version": "2.3.8", "weight": 0},
        {"name": "canary", "version": "2.4.1", "weight": 100},
    ])  # fmt: skip
    w.settle()


def conds(w: World) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in w.status().get("conditions") or []}


def gauge(name: str = "ep") -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for s in metrics.ROLLBACK_READY.collect()[0].samples
        if s.labels["namespace"] == NS and s.labels["endpoint"] == name
    }


def test_ready_then_the_fallback_artifact_goes_and_readiness_follows_without_touching_health() -> None:
    w, pool, store, requeued = world()
    after_a_rollout(w)
    assert conds(w)["RollbackReady"] == ("Unknown", R.FALLBACK_ARTIFACT_UNCHECKED)  # not probed yet
    assert pool.run() == 1 and store.asked == [("https://models.example.com/m/2.3.8", None)]
    assert requeued == [(NS, "ep")]  # the first answer re-queues the endpoint
    w.settle()
    assert conds(w)["RollbackReady"] == ("True", R.FALLBACK_READY)
    assert gauge() == {R.FALLBACK_READY: 1.0}
    # the store loses the fallback's bytes; the next probe (due after rollbackProbeSeconds) sees it
    store.state["https://models.example.com/m/2.3.8"] = R.PROBE_MISSING
    w.now += 301
    assert ran(w, lambda: drift(w))  # a due probe runs a drift check that would otherwise be skipped
    assert pool.run() == 1
    assert requeued[-1] == (NS, "ep")
    w.reconcile()
    assert conds(w)["RollbackReady"] == ("False", R.FALLBACK_ARTIFACT_MISSING)
    assert "2.3.8" in w.cond("RollbackReady")[2]
    assert gauge() == {R.FALLBACK_ARTIFACT_MISSING: 0.0}
    # advisory: serving is untouched, the endpoint neither Degraded nor Stalled (kstatus, Argo CD)
    c = conds(w)
    assert c["Ready"][0] == "True" and c["Degraded"][0] == "False" and c["Stalled"][0] == "False"


def test_a_restarted_operator_keeps_the_recorded_condition_until_its_probe_answers() -> None:
    w, pool, _, _ = world()
    after_a_rollout(w)
    pool.run()
    w.settle()
    assert conds(w)["RollbackReady"] == ("True", R.FALLBACK_READY)
    w.api.writes.clear()
    w2, pool2, _, requeued2 = world()  # a new operator: nothing probed yet, the same cluster
    w2.api, w2.store = w.api, w.store
    w2.rec.kube, w2.rec.store = w.api, w.store  # type: ignore[assignment]
    w2.now = w.now
    metrics.forget_endpoint(NS, "ep")  # a new process: no series yet
    w2.settle()
    assert w.api.writes == []  # no write for "not known yet"
    assert gauge() == {R.FALLBACK_READY: 1.0}  # the series from the recorded condition meanwhile
    assert pool2.run() == 1 and requeued2 == [(NS, "ep")]
    w2.settle()
    assert w.api.writes == [] and conds(w2)["RollbackReady"] == ("True", R.FALLBACK_READY)


def test_re_probes_that_find_the_same_write_nothing_and_are_bounded_by_the_interval() -> None:
    w, pool, store, requeued = world(every=300)
    after_a_rollout(w)
    pool.run()
    w.settle()
    w.reconcile()
    w.api.writes.clear()
    for _ in range(3):  # drift checks within the interval: skipped, nothing probed
        assert not ran(w, lambda: drift(w))
    assert pool.run() == 0
    w.now += 301
    assert drift(w) == 0  # due: it runs and asks once more
    assert pool.run() == 1 and len(store.asked) == 2
    assert requeued == [(NS, "ep")]  # same answer: no re-queue
    w.settle()
    assert w.api.writes == []  # and no write
    assert not ran(w, lambda: drift(w))


def test_an_unverified_fallback_is_never_probed() -> None:
    """Only what the operator verified (its URI fetched under the policy) is probed: a tenant cannot
    make the operator HEAD a URL by declaring a variant."""
    w, pool, store, _ = world()
    w.version("2.3.8", OLD, verified=False)
    w.version("2.4.1", NEW)
    w.endpoint([
        {"name": "stable", "version": "2.3.8", "weight": 0},
        {"name": "canary", "version": "2.4.1", "weight": 100},
    ])  # fmt: skip
    w.settle()
    assert pool.run() == 0 and store.asked == []
    assert conds(w)["RollbackReady"] == ("False", R.FALLBACK_NOT_VERIFIED)


def test_a_single_variant_endpoint_says_no_fallback() -> None:
    w, pool, _, _ = world()
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "canary", "version": "2.4.1", "weight": 100}])
    w.settle()
    assert conds(w)["RollbackReady"] == ("False", R.NO_FALLBACK)
    assert pool.run() == 0
    assert conds(w)["Ready"][0] == "True"


def _variant(uid: str = "u1") -> tuple[VariantFacts, dict[str, Any]]:
    mv = VersionFacts("m-v2.3.8", uid, "2.3.8", OLD, True, "Verified", "production")
    body = {"spec": {"artifact": {"uri": "s3://b/m/2.3.8", "secretRef": {"name": "creds"}}},
            "status": {"artifact": {"sizeBytes": 10, "files": 1}}}  # fmt: skip
    return VariantFacts("stable", "2.3.8", 0, 1, False, mv), body


def test_one_probe_per_version_however_many_endpoints_fall_back_to_it() -> None:
    now = [0.0]
    pool, store, secrets = Pool(), Store(), []
    p = ArtifactProbes(pool, World().rec.settings.artifacts,  # type: ignore[arg-type]
                       lambda ns, n: (secrets.append((ns, n)), {"k": "v"})[1], lambda ns, n: None, 60,
                       probe=store, clock=lambda: now[0])  # fmt: skip
    v, body = _variant()
    for i in range(50):
        assert p.check(NS, f"ep{i}", v, body).state == ""
    assert pool.run() == 1 and store.asked == [("s3://b/m/2.3.8", 10)] and secrets == [(NS, "creds")]
    assert p.check(NS, "ep0", v, body).state == R.PROBE_PRESENT and pool.run() == 0
    assert not p.due(NS, "ep0")
    now[0] = 61
    assert p.due(NS, "ep7")
    p.check(NS, "ep7", v, body)
    p.check(NS, "ep8", v, body)
    assert pool.run() == 1  # one probe however many asked
    # another object of that name (re-created: another uid) is another probe
    v2, _ = _variant("u2")
    p.check(NS, "ep0", v2, body)
    assert pool.run() == 1


def test_probes_off_claim_nothing_about_the_artifact() -> None:
    pool = Pool()
    p = ArtifactProbes(pool, World().rec.settings.artifacts, lambda ns, n: {}, lambda ns, n: None, 0,  # type: ignore[arg-type]
                       probe=Store())  # fmt: skip
    v, body = _variant()
    assert p.check(NS, "ep", v, body).state == R.PROBE_PRESENT and pool.run() == 0
