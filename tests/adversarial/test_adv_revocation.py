"""Issue 23, item 6 (revocation fails open): archiving or demoting the only serving version left 100 %
of the live traffic on it, the route untouched, with only Ready=False to show: a request was answered
by a model that was not at the required stage. Here the real reconciler (gather -> decide -> act)
runs against the in-memory API of tests/test_endpoint_reconciler.py: after the version is revoked,
archived or demoted, the route the API holds reaches no model and says why; it reopens when an
eligible version takes the variant."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modelversioning.api import wire as R  # noqa: E402
from test_endpoint_reconciler import NEW, NS, World, serving_one  # noqa: E402


def _withdraw(w: World, how: str) -> None:
    body = copy.deepcopy(w.store.get("ModelVersion", NS, "m-v2.3.8"))
    assert body is not None
    if how == "revoked":  # kubectl models revoke: the annotation with spec.stage archived; not walked yet
        body["metadata"]["annotations"] = {R.REVOKED_ANNOTATION: "CVE-2025-0001: leaks PII"}
    else:
        body["status"]["stage"] = {"archived": "archived", "demoted": "staging"}[how]
    body["metadata"]["resourceVersion"] += "1"
    w.store.upsert("ModelVersion", body)


@pytest.mark.parametrize(
    ("how", "value", "reason"),
    [
        pytest.param("revoked", R.UNAVAILABLE_REVOKED, R.REVOKED, id="revoked"),
        pytest.param("archived", R.UNAVAILABLE_ARCHIVED, R.WITHDRAWN, id="archived"),
        pytest.param("demoted", R.UNAVAILABLE_BELOW_STAGE, R.WITHDRAWN, id="demoted-to-staging"),
    ],
)
def test_withdrawing_the_only_serving_version_closes_the_route(how: str, value: str, reason: str) -> None:
    w = World()
    served = serving_one(w)
    _withdraw(w, how)
    w.reconcile()  # one route update
    (rule,) = w.route()["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["ep-closed"]  # as landed: [served] at 100
    assert served not in {b["name"] for b in rule["backendRefs"]}
    headers = rule["filters"][0]["responseHeaderModifier"]["set"]
    assert headers == [{"name": R.HEADER_UNAVAILABLE, "value": value}]
    closed_svc = w.api.objects[("Service", "ep-closed")]
    assert "selector" not in closed_svc["spec"]  # no pods: the gateway answers itself
    st = w.status()
    assert st["effectiveWeights"] == {} and st["closed"]["reason"] == value
    assert w.cond("Ready")[:2] == ("False", reason) and w.cond("RoutesReady")[1] == R.ROUTE_CLOSED
    assert any(e[1] == reason and e[0] == "Warning" for e in w.api.events)
    # it stays closed, and the closed Service stays, while nothing eligible reopens it
    w.settle()
    w.now += 60
    w.settle()
    assert [b["name"] for b in w.route()["spec"]["rules"][0]["backendRefs"]] == ["ep-closed"]
    assert ("Service", "ep-closed") in w.api.objects and w.status()["closed"]["reason"] == value
    # the user points the variant at an eligible version: the route reopens, the closed Service drains
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.settle()
    assert {v for v, _ in w.routed().values()} == {"2.4.1"} and "closed" not in w.status()
    w.now += 60
    w.settle()
    assert ("Service", "ep-closed") not in w.api.objects


def test_pods_not_ready_keep_the_route_on_the_verified_pods_as_before() -> None:
    """An operational reason is not a withdrawal: the route is held, nothing is closed."""
    w = World()
    served = serving_one(w)
    dep = w.api.objects[("Deployment", served)]
    dep["status"]["conditions"] = [{"type": "Available", "status": "False"}]
    dep["status"]["readyReplicas"] = dep["status"]["availableReplicas"] = 0
    w.watch()
    w.reconcile()
    assert w.routed() == {served: ("2.3.8", 100)} and "closed" not in w.status()
    assert ("Service", "ep-closed") not in w.api.objects
