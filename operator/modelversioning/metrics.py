"""Prometheus metrics, all prefixed modelversioning_.

Served by the operator on --metrics-port (default 8080) at /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

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
    "Bytes of artifacts hashed",
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
ROUTE_UPDATES = Counter(
    "modelversioning_route_updates_total",
    "Writes to generated routes (VirtualService/HTTPRoute)",
    ["namespace", "endpoint", "router"],
    registry=REGISTRY,
)
CHILD_WRITES = Counter(
    "modelversioning_child_writes_total",
    "Writes to generated children (Deployment, Service, route) by kind and action",
    ["kind", "action"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)


def set_rollout(namespace: str, endpoint: str, phase: str | None, step: int | None) -> None:
    for labels in list(ROLLOUT_PHASE._metrics):  # noqa: SLF001
        if labels[0] == namespace and labels[1] == endpoint:
            ROLLOUT_PHASE.remove(*labels)
    if phase is None:
        return
    ROLLOUT_PHASE.labels(namespace, endpoint, phase).set(1)
    ROLLOUT_STEP.labels(namespace, endpoint).set(step or 0)


def forget_endpoint(namespace: str, endpoint: str) -> None:
    """Drop per-variant series of a deleted endpoint (bounded cardinality)."""
    set_rollout(namespace, endpoint, None, None)
    for g in (EFFECTIVE_WEIGHT, DESIRED_WEIGHT):
        for labels in list(g._metrics):  # noqa: SLF001 - prometheus_client has no public API for this
            if labels[0] == namespace and labels[1] == endpoint:
                g.remove(*labels)


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
        want = {(namespace, endpoint, model, variant, version) for variant, version in values}
        for labels in list(gauge._metrics):  # noqa: SLF001 - no public API to list label sets
            if labels[0] == namespace and labels[1] == endpoint and labels not in want:
                gauge.remove(*labels)
        for (variant, version), value in values.items():
            gauge.labels(namespace, endpoint, model, variant, version).set(value)
