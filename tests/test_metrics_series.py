"""Per-endpoint series: replaced exactly, dropped on forget, never touching other endpoints'."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from modelversioning import metrics


def series(gauge: Gauge, ns: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for s in list(gauge.collect())[0].samples
        if s.labels["namespace"] == ns
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


def samples(metric: Counter | Histogram, name: str, ns: str | None = None) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for s in list(metric.collect())[0].samples
        if s.name == name and (ns is None or s.labels.get("namespace") == ns)
    }


def test_analysis_series_count_each_measurement_and_go_with_the_endpoint() -> None:
    ns = "metrics-c"
    metrics.record_analysis(ns, "ep", [("errors", "Passed", 0.01), ("p99", "Inconclusive", None)])
    metrics.record_analysis(ns, "ep", [("errors", "Failed", 0.3)])
    metrics.record_analysis(ns, "ep", [("errors", "Failed", 0.4)])
    metrics.record_analysis(ns, "other", [("errors", "Passed", 0.0)])
    counted = samples(metrics.ANALYSIS_MEASUREMENTS, "modelversioning_analysis_measurements_total", ns)
    assert counted == {
        (ns, "ep", "errors", "Passed"): 1.0,
        (ns, "ep", "p99", "Inconclusive"): 1.0,
        (ns, "ep", "errors", "Failed"): 2.0,
        (ns, "other", "errors", "Passed"): 1.0,
    }
    # the last value of each metric; an inconclusive measurement has none (no series, not a 0)
    assert series(metrics.ANALYSIS_VALUE, ns) == {(ns, "ep", "errors"): 0.4, (ns, "other", "errors"): 0.0}
    metrics.forget_endpoint(ns, "ep")
    assert samples(metrics.ANALYSIS_MEASUREMENTS, "modelversioning_analysis_measurements_total", ns) == {
        (ns, "other", "errors", "Passed"): 1.0
    }
    assert series(metrics.ANALYSIS_VALUE, ns) == {(ns, "other", "errors"): 0.0}
    # a strategy removed (no rollout any more) takes its analysis series along too
    metrics.set_rollout(ns, "other", "Succeeded", 3)
    assert series(metrics.ANALYSIS_VALUE, ns) == {(ns, "other", "errors"): 0.0}
    metrics.set_rollout(ns, "other", None, None)
    assert series(metrics.ANALYSIS_VALUE, ns) == {}
    assert samples(metrics.ANALYSIS_MEASUREMENTS, "modelversioning_analysis_measurements_total", ns) == {}


def test_time_to_rollback_is_observed_once_per_failed_rollout() -> None:
    def observed() -> dict[str, float]:
        buckets = samples(metrics.ROLLBACK_SECONDS, "modelversioning_rollout_rollback_seconds_bucket")
        out = {le: v for (le,), v in buckets.items()}
        out["count"] = samples(metrics.ROLLBACK_SECONDS, "modelversioning_rollout_rollback_seconds_count")[()]
        out["sum"] = samples(metrics.ROLLBACK_SECONDS, "modelversioning_rollout_rollback_seconds_sum")[()]
        return out

    before = observed()
    metrics.record_analysis("metrics-d", "ep", [("errors", "Passed", 0.0)])  # no rollback: nothing observed
    assert observed() == before
    metrics.record_analysis("metrics-d", "ep", [("errors", "Failed", 0.5)], rollback_seconds=0.25)
    metrics.record_analysis("metrics-d", "ep", [], rollback_seconds=-1.0)  # a clock step back counts as 0
    after = observed()
    delta = {k: after[k] - before[k] for k in after}
    assert (delta["count"], delta["sum"]) == (2, 0.25)
    assert (delta["0.01"], delta["0.1"], delta["0.25"], delta["+Inf"]) == (1, 1, 2, 2)
