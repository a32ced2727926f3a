"""The web view (`kubectl models ui`) at fleet scale, in process: 1,000 ModelVersions and 200
ModelEndpoints (200 models x 5 versions, one endpoint each, a canary in progress on every tenth) in
the view's watch cache, fed by watch events as the real cache is (no cluster: this measures the view,
not the API server). Printed, never asserted:

* server time to render each page (fleet, a model, an endpoint): p50 / p95 over N views, and bytes;
* API requests per page view: the cache's LIST/WATCH count before and after the views (the real
  cache makes one LIST and one WATCH per kind when it starts, and none per view);
* from a watch event (an endpoint's new effective weights) to the `change` server-sent event at a
  connected client, and to that client having fetched the page again with the new weight (what the
  page's script does): p50 / p95 over M changes;
* in-cluster mode (chart ui.enabled): the same objects spread over 20 namespaces, a viewer whose RBAC
  allows 5 of them; the fleet page's server time as that viewer, and the access reviews
  (SubjectAccessReviews) asked of the API server vs answered from the viewer's kept answers, counted
  separately from the shared watches (the reviews are a stand-in here that counts, not a cluster).

    python bench/ui_view.py [--views 200] [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "tests")]

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from modelversioning.api.wire import MODELENDPOINT  # noqa: E402
from modelversioning.cli.models.ui.server import UiConfig, UiServer  # noqa: E402
from ui_objects import StaticCache, ep, mv  # noqa: E402

MODELS, VERSIONS = 200, 5
CANARY = {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}, {"pause": {}}]}}


def fleet_objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for m in range(MODELS):
        model = f"model-{m:03d}"
        for v in range(VERSIONS):
            objs.append(mv(model, f"1.{v}.0", "production" if v >= VERSIONS - 2 else "archived"))
        rollout = {"phase": "Paused", "step": 1, "message": "paused", "target": "x"} if m % 10 == 0 else None
        objs.append(
            ep(model, model, [("stable", f"1.{VERSIONS - 2}.0", 0), ("canary", f"1.{VERSIONS - 1}.0", 100)],
               effective={"stable": 90, "canary": 10}, strategy=CANARY if rollout else None, rollout=rollout)
        )  # fmt: skip
    return objs


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def run(views: int, changes: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cfg = UiConfig(None, None, "ml", port=port)
    t0 = time.perf_counter()
    cache = StaticCache(*fleet_objects())
    print(f"cache filled from {MODELS * (VERSIONS + 1)} watch events in {ms(time.perf_counter() - t0)}")
    srv = UiServer(cfg, cache, lambda ns: None)  # type: ignore[arg-type,return-value]
    ts = TestServer(srv.app(), host="127.0.0.1", port=port)
    await ts.start_server()
    base, cookie = f"http://127.0.0.1:{port}{cfg.root}", {"Cookie": f"{cfg.cookie}={cfg.token}"}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
            before = dict(cache.requests)
            for label, path in (("fleet", "/"), ("model", "/ns/ml/models/model-007"),
                                ("endpoint", "/ns/ml/endpoints/model-010")):  # fmt: skip
                srv.render_seconds.clear()
                size = 0
                for i in range(views):
                    if label == "fleet" and i % 2 == 0:  # a change between views: no cached page
                        cache.apply_event(
                            MODELENDPOINT, {"type": "MODIFIED", "object": cache.snapshot().endpoints[0]}
                        )
                    async with s.get(base + path, headers=cookie) as r:
                        size = len(await r.read())
                        assert r.status == 200
                rs = [x for x in srv.render_seconds if x > 0] or [0.0]
                print(f"{label:8s} page: server time p50 {ms(pct(rs, 0.5))}, p95 {ms(pct(rs, 0.95))}; "
                      f"{size / 1024:.0f} KiB ({views} views, {len(rs)} rendered)")  # fmt: skip
            after = dict(cache.requests)
            lists, watches = after["list"] - before["list"], after["watch"] - before["watch"]
            print(f"API requests by {3 * views} page views: {lists} LIST, {watches} WATCH "
                  "(the shared cache: 1 LIST + 1 WATCH per kind at start)")  # fmt: skip
            to_event, to_page = [], []
            async with s.get(base + "/events", headers=cookie) as events:
                await events.content.readuntil(b"\n\n")
                loop = asyncio.get_running_loop()
                for i in range(changes):
                    w = 11 + i % 80
                    moved = ep("model-010", "model-010", [("stable", "1.3.0", 0), ("canary", "1.4.0", 100)],
                               effective={"stable": 100 - w, "canary": w}, strategy=CANARY)  # fmt: skip
                    t = time.perf_counter()
                    await loop.run_in_executor(None, cache.apply_event, MODELENDPOINT,
                                               {"type": "MODIFIED", "object": moved})  # fmt: skip
                    await events.content.readuntil(b"event: change")
                    await events.content.readuntil(b"\n\n")
                    to_event.append(time.perf_counter() - t)
                    async with s.get(base + "/ns/ml/endpoints/model-010", headers=cookie) as r:
                        assert f"<b>{w}%</b>" in await r.text()
                    to_page.append(time.perf_counter() - t)
                    await asyncio.sleep(0.02)
            ev50, ev95, pg50, pg95 = (ms(pct(x, q)) for x in (to_event, to_page) for q in (0.5, 0.95))
            print(f"watch event -> `change` at the client: p50 {ev50}, p95 {ev95}; "
                  f"-> page fetched with the new weight: p50 {pg50}, p95 {pg95} "
                  f"({changes} changes; includes the 50 ms coalescing of the event stream)")  # fmt: skip
    finally:
        await ts.close()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


async def run_in_cluster(views: int) -> None:
    from modelversioning.cli.models.ui.incluster import AccessReviews, ProxyTrust
    from modelversioning.cli.models.ui.server import InCluster

    objs = fleet_objects()
    for i, o in enumerate(objs):
        o["metadata"]["namespace"] = f"team-{(i // (VERSIONS + 1)) % 20:02d}"
    allowed = {f"team-{n:02d}" for n in range(5)}
    reviews = AccessReviews(lambda v, verb, res, ns: ns in allowed)
    secret = b"x" * 32
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    n = int(port.getsockname()[1])
    port.close()
    cfg = UiConfig(None, None, None, prefix="", port=n, hosts=(f"127.0.0.1:{n}",))
    srv = UiServer(cfg, StaticCache(*objs), lambda ns: None,  # type: ignore[arg-type,return-value]
                   InCluster(ProxyTrust(secret, frozenset({"alice"})), reviews, lambda ns, v: None))  # type: ignore[arg-type,return-value]  # fmt: skip
    ts = TestServer(srv.app(), host="127.0.0.1", port=n)
    await ts.start_server()
    headers = {"X-Proxy-Secret": secret.decode(), "X-Forwarded-User": "alice"}
    try:
        async with aiohttp.ClientSession() as s:
            size = 0
            for _ in range(views):
                async with s.get(f"http://127.0.0.1:{n}/", headers=headers) as r:
                    assert r.status == 200
                    size = len(await r.read())
        rs = list(srv.render_seconds) or [0.0]
        print(f"in-cluster fleet page as a viewer of 5/20 namespaces: server time p50 {ms(pct(rs, 0.5))}, "
              f"p95 {ms(pct(rs, 0.95))}; {size / 1024:.0f} KiB; access reviews over {views} views: "
              f"{reviews.requests} asked of the API server, {reviews.kept} answered from the kept ones "
              f"(one per kind and namespace per 30 s); watches: the shared cache's only")  # fmt: skip
    finally:
        await ts.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--views", type=int, default=200)
    p.add_argument("--changes", type=int, default=50)
    a = p.parse_args()
    print(f"web view at {MODELS * VERSIONS} versions / {MODELS} endpoints")
    asyncio.run(run(a.views, a.changes))
    asyncio.run(run_in_cluster(min(a.views, 50)))


if __name__ == "__main__":
    main()
