"""Issue 23 item 2: measurements never hold a reconcile worker.

An analysis query is PromQL written by the endpoint's author. As landed, a due measurement was queried
inside the endpoint reconcile, on the workers every kind shares, with a per-read timeout: eight
endpoints whose queries Prometheus answered a byte at a time held eight reconcile workers for good,
and every weight change, rollback and stage change waited behind them. Here eight such endpoints have
a measurement due while another endpoint is rolled back: every reconcile returns at once, no query
ever runs on the reconciling thread, and the reconcile's wait for the analysis pool is ~0.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelversioning import metrics
from modelversioning.analysis import PrometheusClient
from modelversioning.analysis.pool import AnalysisPool
from modelversioning.api.settings import AnalysisSettings
from modelversioning.handlers import rollout as rollout_handler
from modelversioning.handlers.workqueue import Requeue
from test_endpoint_reconciler import NEW, NS, OLD, World, _rv

HOSTILE = 8
REPLY_BOUND = 5.0  # generous: a reconcile takes milliseconds; as landed a hostile one never returned


class TricklingPrometheus:
    """Every answer: a 200 and its headers at once, then one byte of a 100 kB body every 50 ms."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.requests = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                with contextlib.suppress(OSError):
                    while not outer.stop.wait(0.05):
                        self.wfile.write(b" ")
                        self.wfile.flush()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prom() -> Iterator[TricklingPrometheus]:
    p = TricklingPrometheus()
    yield p
    p.stop.set()
    p.server.shutdown()
    p.server.server_close()


def strategy(metrics_: int) -> dict[str, Any]:
    checks = [
        {"name": f"m{i}", "query": 'sum(rate(x{variant="{{variant}}"}[{{window}}]))',
         "maxIncreaseOverBaseline": 0.1}  # two queries each: the canary's and the baseline's
        for i in range(metrics_)
    ]  # fmt: skip
    return {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 50}],
                       "analysis": {"interval": "2s", "metrics": checks}}}  # fmt: skip


def split(stable: int, canary: int) -> list[dict[str, Any]]:
    return [
        {"name": "stable", "version": "2.3.8", "weight": stable},
        {"name": "canary", "version": "2.4.1", "weight": canary},
    ]


def put(w: World, name: str, variants: list[dict[str, Any]], strat: dict[str, Any]) -> None:
    """World.endpoint for an endpoint of any name (the user's create or edit)."""
    key = ("ModelEndpoint", name)
    old = w.api.objects.get(key)
    body: dict[str, Any] = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid", "generation": 1,
                     "resourceVersion": str(next(_rv))},
        "spec": {"model": "m", "variants": variants, "strategy": strat,
                 "routing": {"router": "gatewayAPI", "hosts": [f"{name}.example.com"],
                             "parentRefs": [{"name": "gw"}]}},
    }  # fmt: skip
    if old is not None:
        body["status"] = old.get("status", {})
        body["metadata"]["generation"] = old["metadata"]["generation"] + 1
    w.api.objects[key] = body
    w.store.upsert("ModelEndpoint", copy.deepcopy(body))


def reconcile(w: World, name: str) -> float:
    started = time.monotonic()
    with contextlib.suppress(Requeue):
        w.rec.reconcile(NS, name)
    return time.monotonic() - started


def settle(w: World, names: list[str]) -> None:
    for _ in range(3):
        for n in names:
            reconcile(w, n)
        w.deployments_available()
        w.watch()


def canary_share(w: World, name: str) -> int:
    return int(w.api.objects[("ModelEndpoint", name)]["status"]["effectiveWeights"].get("canary", 0))


def wait_sum() -> tuple[float, float]:
    get = metrics.REGISTRY.get_sample_value
    return (get("modelversioning_analysis_reconcile_wait_seconds_sum") or 0.0,
            get("modelversioning_analysis_reconcile_wait_seconds_count") or 0.0)  # fmt: skip


def test_hostile_queries_never_hold_a_reconcile_and_a_rollback_goes_through(
    prom: TricklingPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers: list[str] = []

    class Recording(PrometheusClient):
        def query(self, promql: str) -> float:
            callers.append(threading.current_thread().name)
            return super().query(promql)

    monkeypatch.setattr(rollout_handler, "PrometheusClient", Recording)
    w = World()
    w.rec.settings = w.rec.settings.model_copy(
        update={"analysis": AnalysisSettings(prometheus_url=prom.url, timeout_seconds=0.5)}
    )
    requeued: list[str] = []
    pool = AnalysisPool(workers=2, per_namespace=2, on_done=lambda ns, name: requeued.append(name))
    w.rec.analysis = pool
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    names = [f"hostile{i}" for i in range(HOSTILE)] + ["victim"]
    try:
        for n in names:
            put(w, n, split(100, 0), strategy(16 if n != "victim" else 1))
        settle(w, names)
        for n in names:  # every rollout starts: the canary takes its 50 %
            put(w, n, split(0, 100), strategy(16 if n != "victim" else 1))
        settle(w, names)
        assert {canary_share(w, n) for n in names} == {50}
        assert callers == []  # nothing was due yet
        w.now += 10  # a measurement is due for every endpoint
        before = wait_sum()
        took = [reconcile(w, n) for n in names[:HOSTILE]]
        assert max(took) < REPLY_BOUND, took
        # both analysis threads are held by hostiles (their first queries reach the server in a moment:
        # the submits returned before the pool's threads sent anything)
        deadline = time.monotonic() + 10
        while not (prom.requests >= 1 and pool.running() == 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert prom.requests >= 1 and pool.running() == 2
        # the victim is rolled back (a weight edit) while the pool is held
        put(w, "victim", split(100, 0), strategy(1))
        assert reconcile(w, "victim") < REPLY_BOUND
        w.deployments_available()
        w.watch()
        reconcile(w, "victim")
        victim = w.api.objects[("ModelEndpoint", "victim")]["status"]
        assert victim["effectiveWeights"] == {"stable": 100, "canary": 0}
        assert victim["rollout"]["phase"] == "Succeeded"
        # no query ever ran on the reconciling thread, and the reconciles waited ~0 for the pool
        main = threading.current_thread().name
        assert callers and main not in callers and all(c.startswith("analysis-") for c in callers)
        waited, count = (a - b for a, b in zip(wait_sum(), before, strict=True))
        assert count >= HOSTILE and waited < 0.05 * count
        # the hostile rollouts wait for their own measurements and raise nothing meanwhile
        ro = w.api.objects[("ModelEndpoint", "hostile0")]["status"]["rollout"]
        assert "measurement in progress at 50% before 100%" in ro["message"]
        assert all(canary_share(w, n) == 50 for n in names[:HOSTILE])
    finally:
        prom.stop.set()
        pool.shutdown()
