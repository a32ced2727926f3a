"""The reference model server's Prometheus metrics (``modelserver_*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from modelversioning.modelserver.faults import Faults

if TYPE_CHECKING:
    from modelversioning.modelserver.server import Identity

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS = ("model", "version", "variant")  # "variant" only when known (an empty label is no label).
# Scraped with honor_labels: false, the variant label Prometheus attaches from the pod wins anyway.


class ServerMetrics:
    def __init__(self, identity: Identity) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        labels = LABELS if identity.variant else LABELS[:2]
        self.values: tuple[str, ...] = (identity.model, identity.version, identity.variant)[: len(labels)]
        r = self.registry
        self.requests = Counter(
            "modelserver_requests",
            "HTTP requests answered, by handler (predict, health, metrics, other), method and status code",
            [*labels, "handler", "method", "code"],
            registry=r,
        )
        self.errors = Counter(
            "modelserver_request_errors",
            "Requests answered with an error, by reason (injected, not_loaded, draining, bad_request, "
            "internal, not_found)",
            [*labels, "handler", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "modelserver_request_duration_seconds",
            "Time from reading the request to the response being written (injected latency included)",
            [*labels, "handler"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.info = Gauge(
            "modelserver_model_info",
            "The model this server was started for (value 1); sha256 is the pinned digest",
            [*labels, "sha256", "hostname"],
            registry=r,
        )
        self.loaded = Gauge(
            "modelserver_model_loaded", "1 when the artifact is loaded and verified", labels, registry=r
        )
        self.artifact_bytes = Gauge(
            "modelserver_model_artifact_bytes", "Size of the loaded artifact", labels, registry=r
        )
        self.fault_error_rate = Gauge(
            "modelserver_fault_error_rate", "Injected share of predictions answered 500", labels, registry=r
        )
        self.fault_latency = Gauge(
            "modelserver_fault_latency_seconds", "Injected latency added to predictions", labels, registry=r
        )
        self.info.labels(*self.values, identity.sha256 or "", identity.hostname).set(1)
        self.loaded.labels(*self.values).set(0)
        # Series that exist from the start, at 0: an error-rate query (5xx / all) over a version that has
        # never failed then says 0 instead of returning no data (which an analysis reads as inconclusive).
        for code in ("200", "500", "503"):
            self.requests.labels(*self.values, "predict", "POST", code)
        for reason in ("injected", "internal", "not_loaded"):
            self.errors.labels(*self.values, "predict", reason)
        self.latency.labels(*self.values, "predict")

    def set_faults(self, faults: Faults) -> None:
        self.fault_error_rate.labels(*self.values).set(faults.error_rate)
        self.fault_latency.labels(*self.values).set(faults.latency_ms / 1000.0)
