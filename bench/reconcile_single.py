#!/usr/bin/env python3
"""One endpoint's weight change in process, phase by phase (issue #25): the operator's own part of the
reaction, reproducible on a loaded machine. No cluster: a Store holding one converged endpoint (istio
router, 2 variants, their ModelVersions, slots and VirtualService), the real ``Kube`` on an API client
whose HTTP call is a stub (the request is serialized as the real client does; the reply echoes it), so
the client's own cost before the request leaves is counted too.

    python bench/reconcile_single.py [--changes 2000] [--profile]

Per weight change, as the watch event and the work queue would run it: ``event`` (the handler caching
the new endpoint in the Store), then the reconcile up to the route write's request: ``spec`` (the
endpoint read, validated, the platform's floors), ``gather``, ``decide``, ``slots`` (the unchanged slots
checked), ``route`` (rendered, compared, the request built and handed to the HTTP layer); then what
follows it (``after``: status, Events, metrics). Printed: p50 / p90 (µs) of each and of the sum up to
the route's request (``to_route``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from kubernetes import client  # noqa: E402
from reconcile_scaling import AVAILABLE, NS, build  # noqa: E402

from modelversioning.domain import endpoint_delete as D  # noqa: E402
from modelversioning.domain import endpoint_plan  # noqa: E402
from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.handlers.kube import Kube  # noqa: E402
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler  # noqa: E402
from modelversioning.handlers.store import Store  # noqa: E402

try:  # absent before issue #25: the same benchmark also runs on an older tree, for a before/after
    from modelversioning.handlers.instrument import ROUTE_REACTION
except ImportError:  # pragma: no cover
    ROUTE_REACTION = None  # type: ignore[assignment]

ENDPOINT = "ep-0000"
PHASES = ("event", "spec", "gather", "decide", "slots", "route", "after")


class _Reply:
    def __init__(self, data: bytes) -> None:
        self.status, self.data = 200, data

    def read(self) -> bytes:
        return self.data


class StubApi(client.ApiClient):  # type: ignore[misc]
    """The real client up to the HTTP call: the body serialized as RESTClientObject would (JSON);
    the reply is the object as the API server would return it (a new resourceVersion)."""

    def __init__(self, store: Store, on_send: Callable[[str, str], None]) -> None:
        cfg = client.Configuration(host="https://127.0.0.1:6443")
        cfg.api_key = {"authorization": "Bearer x"}
        super().__init__(cfg)
        self.store, self.on_send = store, on_send
        self.rv = 1000

    def call_api(
        self, method: str, url: str, header_params: Any = None, body: Any = None, **_: Any
    ) -> _Reply:
        self.on_send(method, url)
        sent = json.loads(json.dumps(body)) if body is not None else {}
        self.rv += 1
        if url.split("?")[0].endswith("/status"):  # our endpoint's status: merged into what is cached
            name = url.split("?")[0].split("/")[-2]
            obj = self.store.get("ModelEndpoint", NS, name) or {}
            obj["status"] = apply_merge_patch(obj.get("status") or {}, sent.get("status") or {})
            obj["metadata"]["resourceVersion"] = str(self.rv)
            return _Reply(json.dumps(obj).encode())
        if isinstance(sent, dict) and "metadata" in sent:
            sent["metadata"]["resourceVersion"] = str(self.rv)
            if sent.get("kind") == "Deployment":
                sent["status"] = dict(AVAILABLE)
        return _Reply(json.dumps(sent).encode())


class Timeline:
    """Monotonic stamps of one change: the boundaries between PHASES."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.rows: list[dict[str, float]] = []

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())

    def close(self) -> None:
        m = self.marks
        order = ["t0", "event", "spec", "gather", "decide", "slots", "route", "after"]
        if all(k in m for k in order):
            self.rows.append({p: (m[p] - m[prev]) * 1e6 for prev, p in zip(order, order[1:], strict=False)})
        self.marks = {}


def instrument(er: ModelEndpointReconciler, tl: Timeline) -> None:
    """Stamp the phase boundaries around the reconciler's steps (wrappers; the code is unchanged)."""
    gather, route, decide = er.gather, er._route, endpoint_plan.decide

    def timed_gather(*a: Any, **kw: Any) -> Any:
        tl.mark("spec")
        out = gather(*a, **kw)
        tl.mark("gather")
        return out

    def timed_decide(*a: Any, **kw: Any) -> Any:
        out = decide(*a, **kw)
        tl.mark("decide")
        return out

    def timed_route(*a: Any, **kw: Any) -> Any:
        tl.mark("slots")
        return route(*a, **kw)

    er.gather, er._route = timed_gather, timed_route  # type: ignore[method-assign]
    endpoint_plan.decide = timed_decide


def change(store: Store, er: ModelEndpointReconciler, i: int, tl: Timeline) -> None:
    body = store.get("ModelEndpoint", NS, ENDPOINT)
    assert body is not None
    w = 10 + (i * 37) % 81
    body["spec"]["variants"][0]["weight"] = w
    body["spec"]["variants"][1]["weight"] = 100 - w
    md = body["metadata"]
    md["generation"] = int(md.get("generation") or 1) + 1
    md["resourceVersion"] = str(int(md["resourceVersion"]) + 1)
    tl.mark("t0")
    store.upsert("ModelEndpoint", body)  # what the watch handler does (handlers.watch.track)
    if ROUTE_REACTION is not None:
        ROUTE_REACTION.arrived(NS, ENDPOINT, time.monotonic())
    tl.mark("event")
    er.reconcile(NS, ENDPOINT)
    tl.mark("after")
    tl.close()
    for kind in ("VirtualService", "ModelEndpoint"):  # the watch shows our writes
        for _, obj in list(store.items(kind, NS)):
            store.upsert(kind, obj)


def setup() -> tuple[Store, ModelEndpointReconciler, Timeline]:
    store, _kube, er, _vr = build(1, 2)
    for kind in ("Deployment", "Service", "VirtualService"):  # observed, as the watch would show them
        for _, obj in list(store.items(kind, NS)):
            store.upsert(kind, obj)
    ep = store.get("ModelEndpoint", NS, ENDPOINT)  # with our finalizer, as the API server holds it
    assert ep is not None
    ep["metadata"]["finalizers"] = list(D.finalizers_for(()) or ())
    store.upsert("ModelEndpoint", ep)
    tl = Timeline()

    def on_send(method: str, url: str) -> None:
        if "/virtualservices/" in url and method == "PATCH":
            tl.mark("route")

    er.kube = Kube(StubApi(store, on_send))
    er.reconcile(NS, ENDPOINT)
    instrument(er, tl)
    return store, er, tl


def report(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for p in [*PHASES, "to_route"]:
        xs = sorted(r[p] if p != "to_route" else sum(r[q] for q in PHASES[:-1]) for r in rows)
        out[p] = {"p50_us": round(xs[len(xs) // 2], 1), "p90_us": round(xs[int(len(xs) * 0.9)], 1)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=2000)
    ap.add_argument("--profile", action="store_true", help="cProfile the changes (cumulative, top 40)")
    args = ap.parse_args()
    store, er, tl = setup()
    for i in range(50):  # warm-up
        change(store, er, i, tl)
    tl.rows.clear()
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    for i in range(args.changes):
        change(store, er, i, tl)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    out = report(tl.rows)
    print(f"{len(tl.rows)} weight changes of one endpoint, in process (µs)")
    for p, st in out.items():
        print(f"  {p:9s} p50 {st['p50_us']:8.1f}   p90 {st['p90_us']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
