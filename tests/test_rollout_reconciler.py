"""The endpoint reconciler with a canary strategy, driven step by step (in-memory API, see
test_endpoint_reconciler.py) against a local HTTP server that answers Prometheus's query API. The
measurements run on the analysis pool (without threads here: its jobs run between two reconciles)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from modelversioning.analysis.pool import AnalysisPool
from modelversioning.api.settings import AnalysisSettings
from test_endpoint_reconciler import NEW, OLD, World

STRATEGY = {
    "canary": {
        "variant": "canary",
        "baseline": "stable",
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "20s"}},
            {"setWeight": 50},
            {"pause": {"duration": "20s"}},
        ],
        "analysis": {
            "interval": "10s",
            "metrics": [{"name": "errors", "template": "error-rate", "max": 0.05}],
        },
        "promoteOnSuccess": True,
    }
}


class FakePrometheus:
    """Answers /api/v1/query with `value` for the canary's queries (None: an empty result)."""

    def __init__(self) -> None:
        self.value: float | None = 0.0
        self.queries: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                q = parse_qs(urlparse(self.path).query)["query"][0]
                outer.queries.append(q)
                result = [] if outer.value is None else [{"metric": {}, "value": [0, str(outer.value)]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    p = FakePrometheus()
    yield p
    p.server.shutdown()


def split(stable: int, canary: int) -> list[dict[str, Any]]:
    return [
        {"name": "stable", "version": "2.3.8", "weight": stable},
        {"name": "canary", "version": "2.4.1", "weight": canary},
    ]


class RolloutWorld(World):
    """The World with an analysis pool: the jobs a reconcile submitted run after it (as the pool's
    threads would, between two reconciles); the next reconcile takes their results."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = AnalysisPool(workers=0)
        self.rec.analysis = self.pool

    def reconcile(self) -> None:
        super().reconcile()
        self.pool.run_queued()


def world(prom: FakePrometheus) -> World:
    w = RolloutWorld()
    w.rec.settings = w.rec.settings.model_copy(update={"analysis": AnalysisSettings(prometheus_url=prom.url)})
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    w.endpoint(split(100, 0), strategy=STRATEGY)
    w.settle()
    return w


def weights(w: World) -> dict[str, int]:
    return {version: weight for version, weight in w.routed().values()}


def tick(w: World, seconds: float, rounds: int = 3) -> None:
    w.now += seconds
    w.settle(rounds)


def go_canary(w: World) -> None:
    w.endpoint(split(0, 100), strategy=STRATEGY)


def test_a_good_canary_ramps_step_by_step_and_succeeds(prom: FakePrometheus) -> None:
    w = world(prom)
    assert weights(w) == {"2.3.8": 100, "2.4.1": 0}
    go_canary(w)
    w.settle()
    assert weights(w) == {"2.3.8": 90, "2.4.1": 10}
    assert w.status()["rollout"]["phase"] == "Progressing" and w.cond("Ready")[0] == "False"
    seen = [weights(w)["2.4.1"]]
    for _ in range(12):
        tick(w, 10)
        seen.append(weights(w)["2.4.1"])
    assert seen[0] == 10 and 50 in seen and seen[-1] == 100
    assert seen == sorted(seen)  # never backwards
    ro = w.status()["rollout"]
    assert ro["phase"] == "Succeeded" and w.cond("Ready")[0] == "True"
    assert all(m["verdict"] == "Passed" for m in ro["measurements"])
    assert any('variant="canary"' in q and 'version="2.4.1"' in q for q in prom.queries)
    assert ("Normal", "RolloutSucceeded") in {e[:2] for e in w.api.events}
    # the registry follows: the canary's ModelVersion gets the record and (it is in production) no grant
    ann = w.api.annotations["m-v2.4.1"]
    assert json.loads(ann["modelversioning.io/rollout-record"])["result"] == "Succeeded"
    assert "modelversioning.io/rollout-promotion" not in ann  # production is the top: nothing to promote


def test_a_bad_canary_is_rolled_back_within_one_interval(prom: FakePrometheus) -> None:
    w = world(prom)
    go_canary(w)
    w.settle()
    tick(w, 10)
    assert weights(w)["2.4.1"] == 10
    prom.value = 0.4  # the canary starts failing
    tick(w, 10)  # one analysis interval later
    assert weights(w) == {"2.3.8": 100, "2.4.1": 0}
    ro = w.status()["rollout"]
    assert ro["phase"] == "Failed" and "errors=0.4" in ro["message"]
    assert w.cond("Degraded")[:2] == ("True", "RolloutFailed")
    assert ("Warning", "RolloutFailed") in {e[:2] for e in w.api.events}
    record = json.loads(w.api.annotations["m-v2.4.1"]["modelversioning.io/rollout-record"])
    assert record["result"] == "Failed" and "errors=0.4" in record["message"]
    prom.value = 0.0  # even if it recovers, it stays rolled back until a retry or a spec change
    tick(w, 60)
    assert weights(w) == {"2.3.8": 100, "2.4.1": 0}


def test_no_data_or_no_prometheus_never_promotes(prom: FakePrometheus) -> None:
    w = world(prom)
    go_canary(w)
    prom.value = None  # Prometheus answers, but with nothing
    for _ in range(10):
        tick(w, 10)
        assert weights(w)["2.4.1"] <= 10
    ro = w.status()["rollout"]
    assert ro["phase"] == "Failed" and "inconclusive" in ro["message"]
    assert weights(w) == {"2.3.8": 100, "2.4.1": 0}


def test_operator_restart_resumes_at_the_same_step(prom: FakePrometheus) -> None:
    w = world(prom)
    go_canary(w)
    for _ in range(4):
        tick(w, 10)
    before = (w.status()["rollout"]["step"], weights(w))
    # a new reconciler (a restarted operator) on the same cluster state
    from modelversioning.handlers.modelendpoint import ModelEndpointReconciler

    w.rec = ModelEndpointReconciler(w.api, w.store, w.rec.settings, lambda ns, m: None)  # type: ignore[arg-type]
    w.rec.clock = lambda: w.now
    w.rec.analysis = AnalysisPool(workers=0)  # a restarted operator's pool holds nothing yet
    w.settle()
    assert (w.status()["rollout"]["step"], weights(w)) == before


def test_a_staging_canary_earns_production_with_a_bounded_share(prom: FakePrometheus) -> None:
    w = RolloutWorld()
    w.rec.settings = w.rec.settings.model_copy(update={"analysis": AnalysisSettings(prometheus_url=prom.url)})
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW, stage="staging")
    strategy = json.loads(json.dumps(STRATEGY))
    strategy["canary"]["maxWeightBelowStage"] = 10
    # the canary's own runtime (modelServer) earns a promotion only where the platform trusts it
    trust = {"analysis": {"trustedSources": ["modelServer"]}}
    w.store.upsert("ModelPlatformPolicy", {"metadata": {"name": "p", "resourceVersion": "1"}, "spec": trust})
    w.endpoint(split(100, 0), strategy=strategy)
    w.settle()
    w.endpoint(split(0, 100), strategy=strategy)
    shares = []
    for _ in range(12):
        tick(w, 10)
        shares.append(weights(w).get("2.4.1", 0))
    assert max(shares) == 10  # a staging version never gets more than its allowance
    ro = w.status()["rollout"]
    assert ro["phase"] == "Succeeded"
    grant = json.loads(w.api.annotations["m-v2.4.1"]["modelversioning.io/rollout-promotion"])
    assert (grant["from"], grant["to"], grant["by"]) == ("staging", "production", "ModelEndpoint/ep")
    assert "errors=" in grant["reason"]
    # the ModelVersion reconciler promotes it (see test_version_plan); once in production it takes 100 %
    w.version("2.4.1", NEW, stage="production")
    tick(w, 10)
    assert weights(w) == {"2.3.8": 0, "2.4.1": 100}


@pytest.mark.parametrize(
    ("metric", "policy", "why"),
    [
        ({}, None, "not a trusted source"),  # modelServer, the canary's own runtime
        ({"query": "vector(0)", "template": None, "max": 1e9}, None, "free query"),
        (
            {"max": 1e9, "source": "traefik"},
            {"analysis": {"promotionCeilings": [{"template": "error-rate", "max": 0.05}]}},
            "looser",
        ),
    ],
)
def test_a_success_on_an_untrusted_analysis_earns_no_promotion(
    prom: FakePrometheus, metric: dict[str, Any], policy: dict[str, Any] | None, why: str
) -> None:
    w = RolloutWorld()
    w.rec.settings = w.rec.settings.model_copy(update={"analysis": AnalysisSettings(prometheus_url=prom.url)})
    if policy is not None:
        w.store.upsert(
            "ModelPlatformPolicy", {"metadata": {"name": "p", "resourceVersion": "1"}, "spec": policy}
        )
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW, stage="staging")
    strategy = json.loads(json.dumps(STRATEGY))
    strategy["canary"]["maxWeightBelowStage"] = 10
    m = {**strategy["canary"]["analysis"]["metrics"][0], **metric}
    strategy["canary"]["analysis"]["metrics"] = [{k: v for k, v in m.items() if v is not None}]
    w.endpoint(split(100, 0), strategy=strategy)
    w.settle()
    w.endpoint(split(0, 100), strategy=strategy)
    for _ in range(12):
        tick(w, 10)
    assert w.status()["rollout"]["phase"] == "Succeeded"  # the analysis passed...
    ann = w.api.annotations.get("m-v2.4.1", {})
    assert "modelversioning.io/rollout-promotion" not in ann  # ...and earned no promotion
    record = json.loads(ann["modelversioning.io/rollout-record"])
    assert "not promoted" in record["message"] and why in record["message"], record
    assert weights(w).get("2.4.1", 0) <= 10  # still capped one stage below requiredStage


def test_a_strategy_edit_starts_a_failed_rollout_again_never_on_an_ineligible_version(
    prom: FakePrometheus,
) -> None:
    w = world(prom)
    go_canary(w)
    w.settle()
    tick(w, 10)
    prom.value = 0.4
    tick(w, 10)
    assert w.status()["rollout"]["phase"] == "Failed" and weights(w) == {"2.3.8": 100, "2.4.1": 0}
    tick(w, 30)
    assert w.status()["rollout"]["phase"] == "Failed"  # stays failed while nothing changes
    looser = json.loads(json.dumps(STRATEGY))
    looser["canary"]["analysis"]["metrics"][0]["max"] = 0.5  # the spec changes: only its strategy
    w.endpoint(split(0, 100), strategy=looser)
    w.settle()
    assert w.status()["rollout"]["phase"] == "Progressing" and weights(w) == {"2.3.8": 90, "2.4.1": 10}
    assert any(e[1] == "RolloutStarted" and "spec.strategy changed" in e[2] for e in w.api.events)
    tick(w, 10)
    assert w.status()["rollout"]["measurements"][-1]["verdict"] == "Passed"  # 0.4 <= 0.5
    # a version that is not eligible (staging, no maxWeightBelowStage) gets nothing, edit or not
    w.version("2.4.1", NEW, stage="staging")
    stricter = json.loads(json.dumps(looser))
    stricter["canary"]["analysis"]["interval"] = "15s"
    w.endpoint(split(0, 100), strategy=stricter)
    for _ in range(6):
        tick(w, 10)
        assert weights(w).get("2.4.1", 0) == 0
    assert w.status()["rollout"]["phase"] == "Progressing"


class _NoVersionReadsAfterTheDecision:
    """The reconciler's view of the Store: reading a ModelVersion once the plan is decided fails."""

    def __init__(self, store: Any, decided: list[int]) -> None:
        self._store, self._decided = store, decided

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, kind: str, namespace: str, name: str) -> Any:
        assert not (self._decided and kind == "ModelVersion"), f"read {name} after the decision"
        return self._store.get(kind, namespace, name)


def test_the_stage_a_rollout_earns_is_decided_with_the_plan_not_read_while_acting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelversioning.domain import endpoint_plan

    w = World()
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW, stage="staging")
    quick = {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 50}],
                        "promoteOnSuccess": True}}  # fmt: skip
    w.endpoint(split(100, 0), strategy=quick, requiredStage="staging")
    w.settle()
    decided: list[int] = []
    real = endpoint_plan.decide
    monkeypatch.setattr(endpoint_plan, "decide", lambda f: (decided.append(1), real(f))[1])
    w.rec.store = _NoVersionReadsAfterTheDecision(w.store, decided)  # type: ignore[assignment]
    w.endpoint(split(0, 100), strategy=quick, requiredStage="staging")
    for _ in range(3):
        decided.clear()
        w.reconcile()
        w.deployments_available()
        w.watch()
    assert w.status()["rollout"]["phase"] == "Succeeded"
    # steps alone (no analysis) earn no promotion: an endpoint's editor cannot promote by waiting
    assert "modelversioning.io/rollout-promotion" not in w.api.annotations["m-v2.4.1"]
    record = json.loads(w.api.annotations["m-v2.4.1"]["modelversioning.io/rollout-record"])
    assert record["result"] == "Succeeded"
    assert "not promoted: no metric was measured" in record["message"]
