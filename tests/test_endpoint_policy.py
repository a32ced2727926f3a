"""The platform's floors on the real endpoint reconciler: a ModelPlatformPolicy raises requiredStage
(never lowers it) and refuses hosts and tolerations it does not allow, writing nothing of them."""

from __future__ import annotations

from typing import Any

from modelversioning.api import wire as R
from test_endpoint_reconciler import NS, OLD, World


def _policy(w: World, spec: dict[str, Any], labels: dict[str, str] | None = None) -> None:
    w.store.upsert("Namespace", {"metadata": {"name": NS, "resourceVersion": "1", "labels": labels or {}}})
    w.store.upsert(
        "ModelPlatformPolicy", {"metadata": {"name": "floor", "resourceVersion": "1"}, "spec": spec}
    )


def test_the_floor_raises_required_stage_so_a_staging_version_is_not_served() -> None:
    w = World()
    _policy(w, {"serving": {"minRequiredStage": "production"}})
    w.version("2.3.8", OLD, stage="staging")
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], requiredStage="staging")
    w.settle()
    assert ("HTTPRoute", "ep") not in w.api.objects or not w.routed()
    assert w.cond("Ready")[0] == "False"


def test_without_the_policy_the_same_endpoint_serves() -> None:
    w = World()
    w.version("2.3.8", OLD, stage="staging")
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], requiredStage="staging")
    w.settle()
    assert list(w.routed().values()) == [("2.3.8", 100)]


def test_a_policy_of_another_namespace_selector_does_not_apply() -> None:
    w = World()
    _policy(
        w,
        {
            "namespaceSelector": {"matchLabels": {"tier": "prod"}},
            "serving": {"minRequiredStage": "production"},
        },
    )
    w.version("2.3.8", OLD, stage="staging")
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], requiredStage="staging")
    w.settle()
    assert list(w.routed().values()) == [("2.3.8", 100)]


def test_a_host_the_policy_does_not_allow_is_refused_and_nothing_is_written() -> None:
    w = World()
    _policy(w, {"serving": {"allowedHosts": ["*.team-a.example.com"]}})
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], hosts=["payments.example.com"])
    w.settle()
    assert w.cond("Ready")[:2] == ("False", R.POLICY_VIOLATION)
    assert "payments.example.com" in w.cond("Ready")[2]
    assert not [k for k in w.api.objects if k[0] in ("HTTPRoute", "Deployment", "Service")]
    assert len([e for e in w.api.events if e[1] == R.POLICY_VIOLATION]) == 1  # once, not per reconcile


def test_a_toleration_the_policy_does_not_allow_is_refused() -> None:
    w = World()
    _policy(
        w, {"serving": {"allowedTolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}}
    )
    w.version("2.3.8", OLD)
    w.endpoint(
        [{"name": "stable", "version": "2.3.8", "weight": 100}],
        hosts=["ep.example.com"],
        placement={"tolerations": [{"operator": "Exists"}]},  # every taint, the control plane's too
    )
    w.settle()
    assert w.cond("Ready")[:2] == ("False", R.POLICY_VIOLATION)
    assert not [k for k in w.api.objects if k[0] == "Deployment"]
    w.endpoint(
        [{"name": "stable", "version": "2.3.8", "weight": 100}],
        hosts=["ep.example.com"],
        placement={"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    )
    w.settle()
    assert list(w.routed().values()) == [("2.3.8", 100)]


def test_a_settled_endpoint_is_checked_again_when_a_policy_changes() -> None:
    from test_endpoint_reconciler import drift, ran, serving_one

    w = World()
    serving_one(w)
    w.reconcile()
    assert not ran(w, lambda: drift(w))
    _policy(w, {"serving": {"allowedHosts": ["*.team-a.example.com"]}})
    drift(w)  # the drift check runs it again: the new floor applies without waiting for another event
    assert w.cond("Ready")[:2] == ("False", R.POLICY_VIOLATION)


def test_an_analysis_the_policy_refuses_is_a_policy_violation() -> None:
    w = World()
    _policy(w, {"analysis": {"freeQueries": "Refused", "minInterval": "30s"}})
    w.version("2.3.8", OLD)
    strategy = {
        "canary": {
            "variant": "stable",
            "baseline": "other",
            "steps": [{"setWeight": 10}],
            "analysis": {"interval": "10s", "metrics": [{"name": "q", "query": "vector(0)", "max": 1}]},
        }
    }
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 100},
            {"name": "other", "version": "2.3.8", "weight": 0},
        ],
        strategy=strategy,
    )
    w.settle()
    status, reason, msg = w.cond("Ready")
    assert (status, reason) == ("False", R.POLICY_VIOLATION)
    assert "interval 10s is below the minimum 30s" in msg and "q are free queries" in msg
    assert not [k for k in w.api.objects if k[0] in ("HTTPRoute", "Deployment")]
