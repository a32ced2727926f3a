"""Prometheus metrics, all prefixed modelversioning_.

Served by the operator on --metrics-port (default 8080) at /metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

OPERATOR_INFO = Gauge(
    "modelversioning_operator_info",
    "1, with the region (the cluster) this operator serves as a label; exported only when the region "
    "setting is set (join on instance/pod to put the region on any other series)",
    ["region"],
    registry=REGISTRY,
)
VERSIONS = Gauge(
    "modelversioning_model_versions",
    "ModelVersions per namespace, model and stage in effect",
    ["namespace", "model", "stage"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "modelversioning_stage_transitions_total",
    "Stage transitions made (or blocked) by the operator",
    ["namespace", "model", "from_stage", "to_stage", "result"],
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "modelversioning_artifact_verifications_total",
    "Artifact verifications by result reason",
    ["namespace", "model", "result"],
    registry=REGISTRY,
)
BYTES_HASHED = Counter(
    "modelversioning_artifact_bytes_hashed_total",
    "Bytes of artifacts verified (hashed and matched; a failed verification adds nothing)",
    ["namespace"],
    registry=REGISTRY,
)
VERIFY_SECONDS = Histogram(
    "modelversioning_artifact_verification_duration_seconds",
    "Time to fetch and hash an artifact",
    ["namespace"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
EFFECTIVE_WEIGHT = Gauge(
    "modelversioning_endpoint_effective_weight",
    "Share of live traffic (0-100) each variant of an endpoint receives now",
    ["namespace", "endpoint", "model", "variant", "version"],
    registry=REGISTRY,
)
DESIRED_WEIGHT = Gauge(
    "modelversioning_endpoint_desired_weight",
    "Declared share of live traffic (0-100) per variant",
    ["namespace", "endpoint", "model", "variant", "version"],
    registry=REGISTRY,
)
ROLLOUT_PHASE = Gauge(
    "modelversioning_rollout_phase",
    "1 for the phase the endpoint's rollout is in (Progressing, Paused, Succeeded, Failed, Aborted)",
    ["namespace", "endpoint", "phase"],
    registry=REGISTRY,
)
ROLLBACK_READY = Gauge(
    "modelversioning_endpoint_rollback_ready",
    "1 when the endpoint's fallback could take all its live traffic now (condition RollbackReady=True), "
    "0 when not, -1 when unknown (nothing serving); `reason` names the first check that fails",
    ["namespace", "endpoint", "reason"],
    registry=REGISTRY,
)
ROLLOUT_STEP = Gauge(
    "modelversioning_rollout_step",
    "Index of the current rollout step",
    ["namespace", "endpoint"],
    registry=REGISTRY,
)
ANALYSIS_MEASUREMENTS = Counter(
    "modelversioning_analysis_measurements",
    "Canary analysis measurements, by metric and verdict (Passed, Failed, Inconclusive)",
    ["namespace", "endpoint", "metric", "verdict"],
    registry=REGISTRY,
)
ANALYSIS_VALUE = Gauge(
    "modelversioning_analysis_value",
    "Last measured value of each analysis metric of the canary",
    ["namespace", "endpoint", "metric"],
    registry=REGISTRY,
)
ROLLBACK_SECONDS = Histogram(
    "modelversioning_rollout_rollback_seconds",
    "From the measurement that failed a rollout to the route carrying the start split again (as written)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
    registry=REGISTRY,
)
# The analysis pool (analysis.pool): measurements run on its own threads, never in a reconcile
ANALYSIS_RECONCILE_WAIT = Histogram(
    "modelversioning_analysis_reconcile_wait_seconds",
    "Time an endpoint reconcile spent on the analysis pool when a measurement was due (taking a "
    "finished result or submitting a job: a lock, never a query; ~0 by construction)",
    buckets=(0.0001, 0.001, 0.01, 0.1, 1),
    registry=REGISTRY,
)
ANALYSIS_QUEUE_DEPTH = Gauge(
    "modelversioning_analysis_queue_depth",
    "Measurements waiting for a thread of the analysis pool",
    registry=REGISTRY,
)
ANALYSIS_RUNNING = Gauge(
    "modelversioning_analysis_running",
    "Measurements running on the analysis pool",
    registry=REGISTRY,
)
ANALYSIS_REFUSED = Counter(
    "modelversioning_analysis_refused",
    "Measurements not queued because their namespace had analysis.queuedPerNamespace waiting",
    ["namespace"],
    registry=REGISTRY,
)
PRODUCTION_SEGMENTS = Counter(
    "modelversioning_production_segments_total",
    "Segments of serving periods measured for the production record, by result (measured, failed: "
    "Prometheus down or a query error; the summary is marked incomplete and retried)",
    ["result"],
    registry=REGISTRY,
)
ANALYSIS_QUERY_SECONDS = Histogram(
    "modelversioning_analysis_query_duration_seconds",
    "Duration of one Prometheus query of a measurement, by result (ok, inconclusive: an error, the "
    "deadline, the size cap, no data ...)",
    ["result"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "modelversioning_reconcile_duration_seconds",
    "Duration of one reconcile cycle",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "modelversioning_reconcile_errors_total",
    "Reconcile cycles that failed",
    ["kind", "reason"],
    registry=REGISTRY,
)
EXPECTED_API_ERRORS = Counter(
    "modelversioning_expected_api_errors_total",
    "Reconciles that failed with an API error a retry resolves by itself (409 conflict; 404 of an object "
    "deleted meanwhile; 403 in a namespace being deleted), by HTTP code and kind reconciled: logged at "
    "debug, retried",
    ["code", "kind"],
    registry=REGISTRY,
)
ROUTE_UPDATES = Counter(
    "modelversioning_route_updates_total",
    "Writes to generated routes (VirtualService/HTTPRoute)",
    ["namespace", "endpoint", "router"],
    registry=REGISTRY,
)
ROUTE_REACTION_SECONDS = Histogram(
    "modelversioning_endpoint_route_reaction_seconds",
    "From a ModelEndpoint's watch event reaching the operator to the route write it caused being sent, "
    "by phase: queued (event -> its reconcile starts), reconcile (reconcile start -> route write sent), "
    "total (event -> route write sent)",
    ["phase"],
    buckets=(
        0.0005,
        0.001,
        0.0015,
        0.002,
        0.0025,
        0.003,
        0.004,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.025,
        0.05,
        0.1,
        0.25,
        1,
    ),
    registry=REGISTRY,
)
CHILD_WRITES = Counter(
    "modelversioning_child_writes_total",
    "Writes to generated children (Deployment, Service, route) by kind and action",
    ["kind", "action"],
    registry=REGISTRY,
)
DRIFT_SKIPPED = Counter(
    "modelversioning_drift_reconciles_skipped_total",
    "Drift-check reconciles not run because every cached input was unchanged since a settled reconcile",
    ["kind"],
    registry=REGISTRY,
)
# The reconcile work queue (handlers.workqueue): a benchmark reads it to start a measurement only once
# nothing is waiting (bench/peer.py), and a person reads it to tell a backlog from a slow reconcile.
WORKQUEUE_KEYS = Gauge(
    "modelversioning_workqueue_keys",
    "Keys of the reconcile work queue by state: queued (waiting for a worker), running (being "
    "reconciled), scheduled (a retry or a requeue waiting for its time)",
    ["state"],
    registry=REGISTRY,
)
WORKQUEUE_STATES = ("queued", "running", "scheduled")
EVENTS_DROPPED = Counter(
    "modelversioning_events_dropped_total",
    "Events not posted because the backlog of Events waiting to be posted was full",
    ["reason"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)


def watch_work_queue(states: Callable[[], Mapping[str, int]]) -> None:
    """Serve the work queue's keys by state, read at each scrape (`states()` must be cheap and safe
    from the scrape thread: lengths of containers)."""

    def reader(state: str) -> Callable[[], float]:
        return lambda: float(states()[state])

    for state in WORKQUEUE_STATES:
        WORKQUEUE_KEYS.labels(state).set_function(reader(state))


# The label sets each endpoint has on each per-endpoint gauge, so replacing or dropping an endpoint's
# series touches only its own (scanning a gauge's every series per reconcile made a drift check over
# 2,000 endpoints quadratic: ~0.9 ms per endpoint reconcile at 2,000).
_SERIES: dict[tuple[str, str, str], set[tuple[str, ...]]] = {}  # (gauge, namespace, endpoint) -> labels


def _replace_series(gauge: Gauge, namespace: str, endpoint: str, want: dict[tuple[str, ...], float]) -> None:
    """The series of (namespace, endpoint) on `gauge` become exactly `want` (labels -> value)."""
    key = (gauge._name, namespace, endpoint)  # noqa: SLF001
    for labels in _SERIES.get(key, set()) - set(want):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    for labels, value in want.items():
        gauge.labels(*labels).set(value)
    if want:
        _SERIES[key] = set(want)
    else:
        _SERIES.pop(key, None)


def set_rollout(namespace: str, endpoint: str, phase: str | None, step: int | None) -> None:
    """The rollout series of one endpoint: its phase (one series) and step; none without a rollout
    (nor analysis series: a strategy removed takes them along)."""
    running = phase is not None
    _replace_series(
        ROLLOUT_PHASE, namespace, endpoint, {(namespace, endpoint, phase or ""): 1} if running else {}
    )
    _replace_series(ROLLOUT_STEP, namespace, endpoint, {(namespace, endpoint): step or 0} if running else {})
    if not running:
        for m in (ANALYSIS_MEASUREMENTS, ANALYSIS_VALUE):
            _drop_series(m, namespace, endpoint)


def _drop_series(metric: Gauge | Counter, namespace: str, endpoint: str) -> None:
    for labels in _SERIES.pop((metric._name, namespace, endpoint), set()):  # noqa: SLF001
        with contextlib.suppress(KeyError):
            metric.remove(*labels)


def record_analysis(
    namespace: str,
    endpoint: str,
    measured: Iterable[tuple[str, str, float | None]],
    rollback_seconds: float | None = None,
) -> None:
    """One reconcile's analysis: each (metric, verdict, value) measured counts once in
    analysis_measurements{metric,verdict} and sets analysis_value{metric} (when it has a value); a
    rollout failed by them observes rollout_rollback_seconds."""
    for metric, verdict, value in measured:
        labels = (namespace, endpoint, metric, verdict)
        ANALYSIS_MEASUREMENTS.labels(*labels).inc()
        _SERIES.setdefault((ANALYSIS_MEASUREMENTS._name, namespace, endpoint), set()).add(labels)  # noqa: SLF001
        if value is not None:
            ANALYSIS_VALUE.labels(namespace, endpoint, metric).set(value)
            _SERIES.setdefault((ANALYSIS_VALUE._name, namespace, endpoint), set()).add(  # noqa: SLF001
                (namespace, endpoint, metric)
            )
    if rollback_seconds is not None:
        ROLLBACK_SECONDS.observe(max(0.0, rollback_seconds))


def set_rollback_ready(namespace: str, endpoint: str, status: str, reason: str) -> None:
    """One series per endpoint: RollbackReady as 1 / 0 / -1 (True / False / Unknown), by its reason."""
    value = {"True": 1.0, "False": 0.0}.get(status, -1.0)
    _replace_series(ROLLBACK_READY, namespace, endpoint, {(namespace, endpoint, reason): value})


def forget_endpoint(namespace: str, endpoint: str) -> None:
    """Drop every per-endpoint series of a deleted endpoint (bounded cardinality): weights, rollout
    phase and step, analysis measurements and values, rollback readiness."""
    set_rollout(namespace, endpoint, None, None)  # and the analysis series
    _replace_series(ROLLBACK_READY, namespace, endpoint, {})
    for g in (EFFECTIVE_WEIGHT, DESIRED_WEIGHT):
        _replace_series(g, namespace, endpoint, {})


def set_endpoint_weights(
    namespace: str,
    endpoint: str,
    model: str,
    effective: dict[tuple[str, str], int],
    desired: dict[tuple[str, str], int],
) -> None:
    """Set the weight series of one endpoint to exactly these (variant, version) pairs: a version
    that no longer serves loses its series, so `effective_weight > 0` lists only serving versions."""
    for gauge, values in ((EFFECTIVE_WEIGHT, effective), (DESIRED_WEIGHT, desired)):
        want: dict[tuple[str, ...], float] = {
            (namespace, endpoint, model, variant, version): float(v)
            for (variant, version), v in values.items()
        }
        _replace_series(gauge, namespace, endpoint, want)
