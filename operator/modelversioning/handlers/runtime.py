"""The running operator: the one ``Operator`` (cache, work queue, reconcilers) that startup creates and
every kopf handler uses, and kopf's peering pause that our own work follows."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from modelversioning import metrics
from modelversioning.analysis.pool import AnalysisPool
from modelversioning.api.settings import Settings
from modelversioning.api.wire import LABEL_MANAGED_BY, MANAGED_BY
from modelversioning.handlers.activity import PauseSignal
from modelversioning.handlers.kube import Kube, expected_api_error
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.rollback_probe import ArtifactProbes
from modelversioning.handlers.runtime_contract import RuntimeProbes
from modelversioning.handlers.store import Store
from modelversioning.handlers.verification import make_verifier
from modelversioning.handlers.workqueue import Key, WorkQueue

MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}  # the label of our children: the watches and LISTs select it


class Operator:
    """Everything the handlers share; created at startup."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.store = Store()
        self.activity: asyncio.Task[None] | None = None  # listing, work queue, drift check: while not paused
        self.primed_at: float | None = None  # when startup's listing finished (before kopf's watches)
        self.queue = WorkQueue(
            self._dispatch, expected=expected_api_error, workers=settings.serving.reconcile_workers
        )
        self.versions = ModelVersionReconciler(
            kube,
            self.store,
            settings,
            make_verifier(settings.artifacts),
            enqueue_endpoints=self._endpoints_of_model_threadsafe,
            requeue=lambda ns, n: self.queue.add_threadsafe(("ModelVersion", ns, n)),
        )
        self.endpoints = ModelEndpointReconciler(
            kube, self.store, settings, enqueue_versions=self._versions_of_model_threadsafe
        )
        self.models = ModelReconciler(
            kube,
            self.store,
            settings,
            self._versions_of_model_threadsafe,
            requeue=lambda ns, name: self.queue.add_threadsafe(("Model", ns, name)),
        )
        a = settings.analysis
        # measurements run on threads of their own, never on the reconcile workers: a finished one
        # re-queues its endpoint, whose next reconcile takes the result
        self.analysis = AnalysisPool(
            a.workers,
            a.per_namespace,
            a.queued_per_namespace,
            on_done=lambda ns, name: self.queue.add_threadsafe(("ModelEndpoint", ns, name)),
        )
        self.endpoints.analysis = self.analysis
        self.versions.production.pool = self.analysis  # the production record's queries: the same pool
        # the canary's runtime asked for its OIP model metadata (Model spec.ioContract.checkRuntimeMetadata)
        self.endpoints.runtime_probes = RuntimeProbes(
            requeue=lambda ns, name: self.queue.add_threadsafe(("ModelEndpoint", ns, name))
        )
        # a slot's pod refused a verified digest: that version is fetched and hashed again at once
        self.endpoints.reverify = lambda ns, mv, found: self.versions.verifications.request_recheck(
            (ns, mv), found
        )
        # the fallback's artifact probed for RollbackReady, on the verification pool (with its bounds)
        self.endpoints.fallback_probes = ArtifactProbes(
            self.versions.verifications.pool,
            settings.artifacts,
            kube.read_secret,
            requeue=lambda ns, name: self.queue.add_threadsafe(("ModelEndpoint", ns, name)),
            every=settings.serving.rollback_probe_seconds,
        )
        metrics.ANALYSIS_QUEUE_DEPTH.set_function(self.analysis.queued)
        metrics.ANALYSIS_RUNNING.set_function(self.analysis.running)

    def _dispatch(self, key: Key) -> None:
        kind, ns, name = key
        if kind == "ModelVersion":
            self.versions.reconcile(ns, name)
        elif kind == "Model":
            self.models.reconcile(ns, name)
        else:
            self.endpoints.reconcile(ns, name)

    def endpoints_of_model(self, namespace: str, model: str) -> None:
        for ns, name in self.store.model_keys("ModelEndpoint", namespace, model):
            self.queue.add(("ModelEndpoint", ns, name))

    def versions_of_model(self, namespace: str, model: str) -> None:
        for ns, name in self.store.model_keys("ModelVersion", namespace, model):
            self.queue.add(("ModelVersion", ns, name))

    def _endpoints_of_model_threadsafe(self, namespace: str, model: str) -> None:
        assert self.queue._loop is not None
        self.queue._loop.call_soon_threadsafe(self.endpoints_of_model, namespace, model)

    def _versions_of_model_threadsafe(self, namespace: str, model: str) -> None:
        assert self.queue._loop is not None
        self.queue._loop.call_soon_threadsafe(self.versions_of_model, namespace, model)

    def update_version_gauges(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for (ns, _), model, stage in self.store.notes("ModelVersion"):  # 10,000 versions, none unpickled
            k = (ns, model or "", stage or "unknown")
            counts[k] = counts.get(k, 0) + 1
        metrics.VERSIONS.clear()
        for (ns, model, stage), n in counts.items():
            metrics.VERSIONS.labels(ns, model, stage).set(n)


OP: Operator | None = None  # set by the startup handler
PAUSE = PauseSignal()  # kopf's peering pause (HA): our own work runs only while it is off


def current() -> Operator:
    """The operator, once startup has created it (before: a handler is retried a second later)."""
    if OP is None:
        raise kopf.TemporaryError("operator is starting", delay=1)
    return OP


def queue_depth(**_: Any) -> int:
    """kopf's liveness probe "queue": reconciles waiting (-1 before startup)."""
    return OP.queue.pending() if OP else -1
