"""Per-endpoint series: replaced exactly, dropped on forget, never touching other endpoints'."""

from __future__ import annotations

from modelversioning import metrics


def series(gauge: metrics.Gauge, ns: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value for s in gauge.collect()[0].samples if s.labels["namespace"] == ns
    }


def test_weights_are_replaced_exactly_and_other_endpoints_are_left_alone() -> None:
    ns = "metrics-a"
    metrics.set_endpoint_weights(ns, "ep", "m", {("stable", "1.0"): 100}, {("stable", "1.0"): 100})
    metrics.set_endpoint_weights(ns, "other", "m", {("main", "1.0"): 100}, {("main", "1.0"): 100})
    metrics.set_endpoint_weights(ns, "ep", "m", {("stable", "2.0"): 90, ("canary", "3.0"): 10}, {})
    assert series(metrics.EFFECTIVE_WEIGHT, ns) == {
        (ns, "ep", "m", "stable", "2.0"): 90.0,
        (ns, "ep", "m", "canary", "3.0"): 10.0,
        (ns, "other", "m", "main", "1.0"): 100.0,
    }
    assert series(metrics.DESIRED_WEIGHT, ns) == {(ns, "other", "m", "main", "1.0"): 100.0}
    metrics.forget_endpoint(ns, "ep")
    assert series(metrics.EFFECTIVE_WEIGHT, ns) == {(ns, "other", "m", "main", "1.0"): 100.0}


def test_rollout_series_follow_the_phase_and_go_with_the_rollout() -> None:
    ns = "metrics-b"
    metrics.set_rollout(ns, "ep", "Progressing", 1)
    metrics.set_rollout(ns, "ep", "Paused", 2)
    assert series(metrics.ROLLOUT_PHASE, ns) == {(ns, "ep", "Paused"): 1.0}
    assert series(metrics.ROLLOUT_STEP, ns) == {(ns, "ep"): 2.0}
    metrics.set_rollout(ns, "ep", None, None)
    assert series(metrics.ROLLOUT_PHASE, ns) == {} and series(metrics.ROLLOUT_STEP, ns) == {}
