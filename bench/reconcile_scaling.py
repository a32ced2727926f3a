#!/usr/bin/env python3
"""CPU cost of one drift-check cycle (every reconcile re-run from the watch cache, nothing to change) as a
function of fleet size, in process, without a cluster: the reconcilers run against a Store filled with
converged objects and a fake Kube that records writes.

    python bench/reconcile_scaling.py [--endpoints 200 1000 2000] [--versions-per-model 5] [--profile]

A cycle that is O(endpoints) per endpoint reconcile grows quadratically with the fleet; this shows it
(see docs/benchmarks.md, "Idle CPU and the drift check").
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import hashlib
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from helpers import model_endpoint, model_version  # noqa: E402
from modelversioning.api.settings import Settings  # noqa: E402
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler  # noqa: E402
from modelversioning.handlers.modelversion import ModelVersionReconciler  # noqa: E402
from modelversioning.handlers.store import Store  # noqa: E402

NS = "bench"
AVAILABLE = {
    "observedGeneration": 1,
    "replicas": 1,
    "readyReplicas": 1,
    "updatedReplicas": 1,
    "availableReplicas": 1,
    "conditions": [{"type": "Available", "status": "True"}],
}


class FakeKube:
    """Kube's write methods; applied children come back 'available', statuses land in the Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0
        self._rv = 0

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        self._rv += 1
        out = copy.deepcopy(obj)
        out["metadata"].setdefault("generation", 1)
        out["metadata"]["resourceVersion"] = str(self._rv)
        if out["kind"] == "Deployment":
            out["status"] = {**AVAILABLE, "replicas": out["spec"].get("replicas", 1)}
        return out

    create = apply  # children are created with POST, then updated by server-side apply

    def annotate(self, *_: Any) -> None:
        self.writes += 1

    def delete(self, *_: Any) -> bool:
        self.writes += 1
        return True

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        self.writes += 1
        self._rv += 1
        stored = self.store.get(res.kind, ns, name) or {"metadata": {"namespace": ns, "name": name}}
        body = copy.deepcopy(stored)
        body["status"] = {k: v for k, v in status.items() if v is not None}
        body["metadata"]["resourceVersion"] = str(self._rv)
        return body

    def set_finalizers(self, res: Any, ns: str, name: str, finalizers: list[str], rv: str) -> None:
        self.writes += 1
        body = self.store.get(res.kind, ns, name)
        if body is not None:
            body["metadata"]["finalizers"] = finalizers

    def event(self, *_: Any) -> None:
        pass

    def read_secret(self, *_: Any) -> dict[str, str]:
        return {}


Fleet = tuple[Store, FakeKube, ModelEndpointReconciler, ModelVersionReconciler]


def build(endpoints: int, per_model: int) -> Fleet:
    store = Store()
    kube = FakeKube(store)
    settings = Settings()
    for i in range(endpoints):
        model = f"m{i:04d}"
        for j in range(max(2, per_model)):
            sha = hashlib.sha256(f"{i}/{j}".encode()).hexdigest()
            mv = model_version(model, f"1.{j}.0", f"file:///artifacts/{i}/{j}", sha, stage="production")
            mv["metadata"].update(namespace=NS, uid=f"mv-{i}-{j}", generation=1, resourceVersion="1")
            mv["status"] = {
                "stage": "production",
                "observedGeneration": 1,
                "artifact": {"digest": sha},
                "conditions": [{"type": "ArtifactVerified", "status": "True", "reason": "Verified"}],
            }
            store.upsert("ModelVersion", mv)
        ep = model_endpoint(
            f"ep-{i:04d}",
            model,
            [
                {"name": "stable", "version": "1.0.0", "weight": 90},
                {"name": "canary", "version": "1.1.0", "weight": 10},
            ],
        )
        ep["metadata"].update(namespace=NS, uid=f"ep-{i}", generation=1, resourceVersion="1")
        store.upsert("ModelEndpoint", ep)
    er = ModelEndpointReconciler(kube, store, settings, enqueue_versions=lambda ns, m: None)  # type: ignore[arg-type]
    vr = ModelVersionReconciler(
        kube, store, settings, verifier=None,  # type: ignore[arg-type]
        enqueue_endpoints=lambda ns, m: None, requeue=lambda ns, n: None,
    )
    for _ in range(3):  # converge: children created, statuses and finalizers written
        cycle(store, er, vr)
    return store, kube, er, vr


def cycle(store: Store, er: ModelEndpointReconciler, vr: ModelVersionReconciler) -> tuple[float, float]:
    t0 = time.perf_counter()
    for (ns, name), _ in list(store.items("ModelEndpoint")):
        er.reconcile(ns, name)
    t1 = time.perf_counter()
    for (ns, name), _ in list(store.items("ModelVersion")):
        vr.reconcile(ns, name)
    return t1 - t0, time.perf_counter() - t1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, nargs="+", default=[200, 1000, 2000])
    ap.add_argument("--versions-per-model", type=int, default=5)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile 200 endpoint reconciles of the largest fleet")
    args = ap.parse_args()
    for m in args.endpoints:
        store, kube, er, vr = build(m, args.versions_per_model)
        w0 = kube.writes
        te, tv = cycle(store, er, vr)
        n_mv = store.count("ModelVersion")
        print(
            f"{m:5d} endpoints / {n_mv:5d} versions: drift cycle {te + tv:6.2f} s "
            f"(endpoints {te:6.2f} s = {1000 * te / m:6.2f} ms each; versions {tv:5.2f} s = "
            f"{1000 * tv / n_mv:5.3f} ms each); writes {kube.writes - w0}"
        )
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for (ns, name), _ in list(store.items("ModelEndpoint"))[:200]:
            er.reconcile(ns, name)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
