"""The web view's shared watch cache (cli/models/ui/cache.py) against a loopback API server: one LIST
then a WATCH per kind from the listed resourceVersion, events applied, a refused kind recorded (the
others keep working), and no request from reading it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fake_apiserver import Request, kubeconfig, serve, status
from modelversioning.api.wire import MODELENDPOINT, MODELVERSION
from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui.cache import WatchCache, wait_until
from ui_objects import ep, mv


def test_lists_once_then_watches_and_records_a_refused_kind(tmp_path: Path) -> None:
    release = threading.Event()  # the second watch of a kind blocks until the test ends

    def route(req: Request) -> tuple[int, Any]:
        plural = req.path.rstrip("/").rsplit("/", 1)[-1]
        if plural == "modelapprovals":
            return status(403, "Forbidden", 'modelapprovals is forbidden: User "v" cannot list')
        if req.query.get("watch") == "true":
            if plural == "modelversions" and req.query.get("resourceVersion") == "5":
                moved = mv("fraud", "1.1.0", "staging")
                moved["metadata"]["resourceVersion"] = "6"
                return 200, [{"type": "ADDED", "object": moved}]
            release.wait(10)
            return 200, []
        items = {
            "modelversions": [mv("fraud", "1.0.0")],
            "modelendpoints": [ep("fraud", "fraud", [("s", "1.0.0", 100)])],
        }
        return 200, {"items": items.get(plural, []), "metadata": {"resourceVersion": "5"}}

    with serve(route) as srv:
        path = kubeconfig(tmp_path / "kubeconfig", {"server": srv.url}, {"token": "t"}, namespace="ml")
        cache = WatchCache(lambda: Cluster(str(path)), "ml")
        seen: list[int] = []
        cache.on_change = seen.append
        cache.start()
        try:
            assert cache.wait_synced(10)
            assert wait_until(lambda: len(cache.snapshot().versions) == 2, 10)
            snap = cache.snapshot()
            assert {v["spec"]["version"] for v in snap.versions} == {"1.0.0", "1.1.0"}
            assert [e["metadata"]["name"] for e in snap.endpoints] == ["fraud"]
            assert "forbidden" in snap.errors["ModelApproval"] and snap.approvals == ()
            assert seen and seen[-1] == cache.revision

            def watched() -> list[Any]:
                return [r.query.get("resourceVersion") for r in srv.requests
                        if r.query.get("watch") == "true" and r.path.endswith("/modelversions")]  # fmt: skip

            assert wait_until(lambda: len(watched()) == 2, 10)
            assert watched() == ["5", "6"]  # from the list, then from the last event
            assert wait_until(lambda: len(srv.requests) == 8, 10)  # 4 lists (one refused), 4 watches
            lists = [r for r in srv.requests if r.query.get("watch") != "true"]
            assert sorted(r.path.rsplit("/", 1)[-1] for r in lists) == [
                "modelapprovals", "modelendpoints", "models", "modelversions"
            ]  # fmt: skip
            assert all("/namespaces/ml/" in r.path for r in srv.requests)
            for _ in range(20):
                cache.snapshot()
            assert len(srv.requests) == 8  # reading the cache asks the API server nothing
        finally:
            cache.stop()
            release.set()


def test_all_namespaces_watch_at_cluster_scope(tmp_path: Path) -> None:
    def route(req: Request) -> tuple[int, Any]:
        if req.query.get("watch") == "true":
            return 200, []
        return 200, {"items": [], "metadata": {"resourceVersion": "1"}}

    with serve(route) as srv:
        path = kubeconfig(tmp_path / "kubeconfig", {"server": srv.url}, {"token": "t"})
        cache = WatchCache(lambda: Cluster(str(path)), None, kinds=(MODELVERSION, MODELENDPOINT))
        cache.start()
        try:
            assert cache.wait_synced(10)
            assert wait_until(lambda: len(srv.requests) >= 4, 10)
        finally:
            cache.stop()
    assert {r.path for r in srv.requests} == {
        "/apis/modelversioning.io/v1alpha1/modelversions",
        "/apis/modelversioning.io/v1alpha1/modelendpoints",
    }
