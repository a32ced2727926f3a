"""The production record's write budget (docs/design.md, "The production record"): status writes per
minute of a fleet of ModelVersions serving, on a simulated clock.

No cluster: the operator's own ModelVersion reconciler (gather, decide, act; the measurement pool
with its threads replaced by ``run_queued``; the watch cache) against an in-memory API that counts
and applies every status merge patch, and a Prometheus that answers every query at once. Time is
simulated (the reconciler's clock is replaced), so ``minutes`` of serving take seconds: what is
measured is what the operator *decides* to write, by cause, not what the API server costs.

The fleet: ``versions`` ModelVersions of ``endpoints`` models (each endpoint serves two versions of its
model, blue at 100 and green at 0); every minute ``flips`` endpoints swap blue and green (a route
change: one period closes, another opens). Writes are classified by what the status patch changed:
``production`` (only summaries: the record's cadence and the closed periods' final summaries) or
``serving`` (a period opened or closed: the write the route change costs anyway).
"""

from __future__ import annotations

import copy
import heapq
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from modelversioning.analysis.pool import AnalysisPool
from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.domain.version_facts import VerifyResult
from modelversioning.handlers import modelversion as mv_handler
from modelversioning.handlers.kube import status_merge_patch
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue

NS = "bench"
SHA = "d" * 64
TICK = 5.0  # simulated seconds between two looks at the timers


class Api:
    """Stores what the operator writes, counts status writes by cause."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: Counter[str] = Counter()
        self.minute = 0
        self.per_minute: Counter[tuple[int, str]] = Counter()
        self.rv = 1000

    def _bump(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        return body

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        cause = _cause(body.get("status") or {}, status)
        self.writes[cause] += 1
        self.per_minute[(self.minute, cause)] += 1
        body["status"] = apply_merge_patch(body.get("status") or {}, status_merge_patch(status, old))
        return self._bump(body)

    def set_finalizers(self, res: Any, ns: str, name: str, finalizers: list[str], rv: str) -> None:
        body = self.store.get(res.kind, ns, name)
        body["metadata"]["finalizers"] = finalizers
        self.store.upsert(res.kind, self._bump(body))

    def annotate(self, res: Any, ns: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        ann = body["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        return self._bump(body)

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.writes["event"] += 1

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(obj)
        body["metadata"].update(uid=f"u-{obj['metadata']['name']}", generation=1)
        return self._bump(body)


def _cause(old: dict[str, Any], new: dict[str, Any]) -> str:
    def without_summaries(st: dict[str, Any]) -> Any:
        periods = [{k: v for k, v in p.items() if k != "production"} for p in st.get("servingHistory") or []]
        return {**{k: v for k, v in st.items() if k != "servingHistory"}, "servingHistory": periods}

    if without_summaries(old) == without_summaries(new):
        return "production"
    return "serving"


class FakePrometheus:
    def __init__(self) -> None:
        self.queries = 0

    def query(self, promql: str, at: float | None = None) -> float:
        self.queries += 1
        return 2.0 if "5.." in promql else 1000.0

    def query_vector(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        self.queries += 1
        return [({"le": "0.1"}, 900.0), ({"le": "0.3"}, 990.0), ({"le": "+Inf"}, 1000.0)]


def _version(model: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"namespace": NS, "name": f"{model}-v{version}", "uid": f"u-{model}-{version}",
                     "generation": 1, "resourceVersion": "1"},
        "spec": {"model": model, "version": version,
                 "artifact": {"uri": f"s3://b/{model}/{version}", "sha256": SHA},
                 "lineage": {"codeCommit": "abc1234", "dataset": {"name": "tx", "version": "1"}},
                 "metrics": {"auc": 0.9}, "runtime": {"image": "img:1", "port": 8080}, "stage": "candidate"},
    }  # fmt: skip


def _endpoint(i: int, blue: str, green: str, flipped: bool, rv: int) -> dict[str, Any]:
    model = f"m{i}"
    live = green if flipped else blue
    weights = {"blue": 0 if flipped else 100, "green": 100 if flipped else 0}
    variants = [
        {"name": name, "version": v, "desiredWeight": weights[name], "effectiveWeight": weights[name],
         "serving": {"version": v, "modelVersionUid": f"u-{model}-{v}", "digest": SHA,
                     "slot": f"ep{i}-{name}-{v}"}}
        for name, v in (("blue", blue), ("green", green))
    ]  # fmt: skip
    return {
        "metadata": {"namespace": NS, "name": f"ep{i}", "resourceVersion": str(rv)},
        "spec": {"model": model, "variants": [
            {"name": "blue", "version": blue, "weight": weights["blue"]},
            {"name": "green", "version": green, "weight": weights["green"]}]},
        "status": {"effectiveWeights": weights, "variants": variants, "live": live},
    }  # fmt: skip


def _verifying(r: ModelVersionReconciler) -> bool:
    v = r.verifications
    with v._lock:
        return any(a.future is not None and not a.future.done() for a in v._attempts.values())


class Clock:
    def __init__(self) -> None:
        self.t = datetime.now(UTC)
        self.mono = 1_000_000.0

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds


def run(
    versions: int, endpoints: int, minutes: float, flips: int, interval: float, log: Callable[[str], None]
) -> dict[str, Any]:
    per_model = max(2, versions // endpoints)
    settings = Settings.model_validate(
        {"analysis": {"prometheusUrl": "http://prometheus.invalid:9090"},
         "production": {"intervalSeconds": interval}}
    )  # fmt: skip
    store = Store()
    api = Api(store)
    ok = VerifyResult(R.VERIFIED, "sha256 matches", transient=False, actual=SHA, size_bytes=7)
    requeued: list[tuple[str, str]] = []
    r = ModelVersionReconciler(
        api,  # type: ignore[arg-type]
        store,
        settings,
        lambda *a, **k: ok,
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: requeued.append((ns, n)),
    )
    models = ModelReconciler(api, store, Settings(), lambda ns, m: None)  # type: ignore[arg-type]
    prom = FakePrometheus()
    r.production.pool = AnalysisPool(workers=0, queued_per_namespace=100_000)
    r.production.client = prom  # type: ignore[assignment]
    clock = Clock()
    r.production.clock = lambda: clock.mono
    timers: list[tuple[float, str]] = []

    def reconcile(name: str) -> None:
        try:
            r.reconcile(NS, name)
        except Requeue as rq:
            heapq.heappush(timers, (clock.mono + rq.delay, name))

    names = []
    for i in range(endpoints):
        for j in range(per_model):
            body = _version(f"m{i}", f"1.{j}.0")
            store.upsert("ModelVersion", body)
            names.append(body["metadata"]["name"])
    log(f"production writes: {len(names)} versions, {endpoints} endpoints; verifying (real reconciler)")
    for _ in range(3):  # verified, recorded by the Models, then settled
        for n in names:
            reconcile(n)
        deadline = time.monotonic() + 300  # the instant fake verifier's jobs, on the verifier's threads
        while _verifying(r):
            if time.monotonic() > deadline:
                raise RuntimeError("verifications did not finish within 300 s")
            time.sleep(0.05)
        for i in range(endpoints):
            if store.get("Model", NS, f"m{i}") is not None:
                models.reconcile(NS, f"m{i}")
    flipped = [False] * endpoints
    rv = 10_000
    for i in range(endpoints):
        rv += 1
        store.upsert("ModelEndpoint", _endpoint(i, "1.0.0", "1.1.0", False, rv))
    real = datetime

    class SimDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return clock.t

    mv_handler.datetime = SimDatetime  # type: ignore[misc]
    try:
        timers.clear()
        for n in names:
            reconcile(n)  # periods open for the versions serving
        requeued.clear()
        api.writes.clear()
        api.per_minute.clear()
        writes_before = dict(api.writes)
        started = time.monotonic()
        steps = int(minutes * 60 / TICK)
        nxt = 0
        for step in range(steps):
            clock.advance(TICK)
            api.minute = int(step * TICK // 60)
            if step % int(60 / TICK) == 0 and flips:  # route changes this minute
                for _ in range(flips):
                    i = nxt % endpoints
                    nxt += 1
                    flipped[i] = not flipped[i]
                    rv += 1
                    store.upsert("ModelEndpoint", _endpoint(i, "1.0.0", "1.1.0", flipped[i], rv))
                    reconcile(f"m{i}-v1.0.0")
                    reconcile(f"m{i}-v1.1.0")
            while timers and timers[0][0] <= clock.mono:
                reconcile(heapq.heappop(timers)[1])
            r.production.pool.run_queued()
            while requeued:
                reconcile(requeued.pop()[1])
        took = time.monotonic() - started
    finally:
        mv_handler.datetime = real  # type: ignore[misc]
    per_minute = [sum(n for (m, c), n in api.per_minute.items() if m == i) for i in range(int(minutes))]
    prod_per_minute = [api.per_minute.get((i, "production"), 0) for i in range(int(minutes))]
    steady = per_minute[int(interval // 60) + 1 :] or per_minute
    out = {
        "versions": len(names),
        "endpoints": endpoints,
        "serving_versions": endpoints,
        "simulated_minutes": minutes,
        "route_changes_per_minute": flips,
        "interval_seconds": interval,
        "status_writes": dict(api.writes),
        "writes_per_minute_max": max(per_minute) if per_minute else 0,
        "writes_per_minute_mean": round(sum(steady) / len(steady), 1) if steady else 0,
        "production_writes_per_minute_max": max(prod_per_minute) if prod_per_minute else 0,
        "production_writes_per_minute_mean": round(sum(prod_per_minute) / len(prod_per_minute), 1)
        if prod_per_minute
        else 0,
        # each open period once per interval; a route change: one period closes, one opens (2 writes), and
        # the closed one gets its final summary (1)
        "budget_per_minute": round(endpoints * 60 / interval + 3 * flips, 1),
        "prometheus_queries": prom.queries,
        "wall_seconds": round(took, 1),
    }
    del writes_before
    log(
        f"production writes: {out['writes_per_minute_mean']} status writes/min on average "
        f"(max {out['writes_per_minute_max']}), of which production summaries "
        f"{out['production_writes_per_minute_mean']}/min; budget {out['budget_per_minute']}/min"
    )
    return out
