"""A new fleet, played in process (test helper): the three real reconcilers (ModelVersion, Model,
ModelEndpoint) against an in-memory API server that records every write, a watch that delivers what
changed to the Store and queues what the operator's watch handlers queue (handlers/watch.py), and a
"controller-manager" that makes Deployments Available once the operator has nothing left to do.

What it measures is what the benchmark measures on a real control plane (bench/writes.py): the
operator's writes by object kind and cause (``verb resource[/subresource]``, ``Event <reason>``),
without a cluster and in a second. Verification is instant (a fake verifier), so every new version
takes the fast path: its first verification finishes within the grace.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.settings import Settings
from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.domain.version_facts import VerifyResult
from modelversioning.handlers.kube import Conflict, count_write, status_merge_patch
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store, controller_of
from modelversioning.handlers.workqueue import Requeue
from waits import drain

NS = "bench"
GROUP_VERSION = "modelversioning.io/v1alpha1"
# the resource (plural) of each kind the operator writes, as the API server's audit log names it
RESOURCES = {
    "ModelVersion": "modelversions",
    "ModelEndpoint": "modelendpoints",
    "Model": "models",
    "Deployment": "deployments",
    "Service": "services",
    "VirtualService": "virtualservices",
    "HTTPRoute": "httproutes",
}
CHILDREN = ("Deployment", "Service", "VirtualService", "HTTPRoute")
WATCHED = ("ModelVersion", "Model", "ModelEndpoint", *CHILDREN)


@dataclass(frozen=True)
class Write:
    kind: str  # the kind of the object written (an Event: of the object it is about)
    cause: str  # "patch modelversions/status", "create deployments", "Event StageChanged", ...
    name: str


def sha_of(model: str, version: str) -> str:
    return (f"{model}{version}".encode().hex() * 64)[:64]


def version_body(model: str, version: str, stage: str = "production") -> dict[str, Any]:
    """A ModelVersion as the benchmark creates it (e2e/helpers.model_version)."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{version}", "namespace": NS},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {
                "uri": f"file:///artifacts/{model}/{version}/model.bin",
                "sha256": sha_of(model, version),
            },
            "lineage": {
                "codeCommit": "3f9c2a1",
                "dataset": {"name": "tx", "version": "2024-06-30"},
                "codeRepository": "https://git.example.com/ml/x.git",
                "trainedAt": "2024-07-02T10:00:00Z",
                "author": "jane@example.com",
                "framework": "xgboost-2.0",
            },
            "metrics": {"auc": 0.9},
            "runtime": {"image": "registry.k8s.io/pause:3.10", "port": 8080},
            "stage": stage,
        },
    }


def endpoint_body(name: str, model: str) -> dict[str, Any]:
    """A ModelEndpoint as the benchmark creates it: stable 1.0.0 at 90, canary 1.1.0 at 10, istio."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelEndpoint",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": model,
            "variants": [
                {"name": "stable", "version": "1.0.0", "weight": 90},
                {"name": "canary", "version": "1.1.0", "weight": 10},
            ],
            "routing": {"router": "istio", "hosts": [f"{name}.example.com"]},
        },
    }


class Api:
    """The API server: objects by (kind, namespace, name), resourceVersions, every write recorded."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[Write] = []
        # called after each write with the object as written (None: an Event, a deletion)
        self.on_write: list[Callable[[Write, dict[str, Any] | None], None]] = []
        self._rv = itertools.count(1)
        self._lock = threading.Lock()  # the verifier's threads never write, but be safe

    # -- bookkeeping
    def _wrote(self, kind: str, cause: str, name: str, obj: dict[str, Any] | None = None) -> None:
        count_write()
        w = Write(kind, cause, name)
        with self._lock:
            self.writes.append(w)
        for check in self.on_write:
            check(w, obj)

    def _bump(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A user's create (not the operator's: not recorded)."""
        body = copy.deepcopy(obj)
        md = body["metadata"]
        md.setdefault("uid", f"uid-{md['name']}")
        md.setdefault("generation", 1)
        md.setdefault("creationTimestamp", "2026-12-01T00:00:00Z")
        self._bump(body)
        self.objects[(body["kind"], md["namespace"], md["name"])] = body
        return body

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, NS, name)]

    # -- what the reconcilers call (handlers.kube.Kube's interface)
    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        key = (obj["kind"], md["namespace"], md["name"])
        if key in self.objects:
            raise Conflict(f"POST {obj['kind']} {md['name']}: conflict")
        body = self.put(obj)
        self._wrote(obj["kind"], f"create {RESOURCES[obj['kind']]}", md["name"], body)
        return copy.deepcopy(body)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        key = (obj["kind"], md["namespace"], md["name"])
        old = self.objects.get(key, {})
        body = {**old, **copy.deepcopy(obj), "metadata": {**old.get("metadata", {}), **obj["metadata"]}}
        self._bump(body)
        self.objects[key] = body
        self._wrote(obj["kind"], f"patch {RESOURCES[obj['kind']]} (apply)", md["name"], body)
        return copy.deepcopy(body)

    def delete(self, res: Any, namespace: str, name: str, uid: str | None = None) -> bool:
        self._wrote(res.kind, f"delete {RESOURCES[res.kind]}", name)
        return self.objects.pop((res.kind, namespace, name), None) is not None

    def patch_status(self, res: Any, namespace: str, name: str, status: dict[str, Any], old: Any) -> Any:
        obj = self.objects[(res.kind, namespace, name)]
        obj["status"] = apply_merge_patch(obj.get("status") or {}, status_merge_patch(status, old))
        self._bump(obj)
        self._wrote(res.kind, f"patch {RESOURCES[res.kind]}/status", name, obj)
        return copy.deepcopy(obj)

    def set_finalizers(self, res: Any, namespace: str, name: str, finalizers: list[str], rv: str) -> Any:
        obj = self.objects[(res.kind, namespace, name)]
        if obj["metadata"]["resourceVersion"] != rv:
            raise Conflict(f"PATCH {res.kind} {name}: conflict")
        obj["metadata"]["finalizers"] = list(finalizers)
        self._bump(obj)
        self._wrote(res.kind, f"patch {RESOURCES[res.kind]} (finalizers)", name, obj)
        return copy.deepcopy(obj)

    def annotate(self, res: Any, namespace: str, name: str, annotations: dict[str, Any]) -> dict[str, Any]:
        obj = self.objects[(res.kind, namespace, name)]
        ann = obj["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        self._bump(obj)
        self._wrote(res.kind, f"patch {RESOURCES[res.kind]} (annotations)", name, obj)
        return copy.deepcopy(obj)

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        # a POST, or a PATCH of the series it repeats: a write either way (handlers.events)
        self._wrote(str(involved.get("kind")), f"Event {reason}", involved["metadata"]["name"])

    def read_secret(self, ns: str, name: str) -> dict[str, str]:
        raise AssertionError("the fleet references no Secret")


class Verifier:
    """Instant: every artifact hashes to its declared digest."""

    def __call__(self, uri: str, sha: str, secret: Any, size: int | None = None) -> VerifyResult:
        return VerifyResult(
            R.VERIFIED, f"sha256 {sha[:12]} matches", transient=False, actual=sha, size_bytes=7
        )


@dataclass
class Fleet:
    """The API, the operator's Store and reconcilers, its work queue and watches, the controllers."""

    settings: Settings = field(default_factory=Settings)
    api: Api = field(default_factory=Api)
    store: Store = field(default_factory=Store)
    queue: dict[tuple[str, str, str], None] = field(default_factory=dict)  # FIFO, deduplicated
    delayed: list[tuple[str, str, str]] = field(default_factory=list)  # Requeue'd: after the others
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)  # what the watch delivered
    reconciles: int = 0
    # the cluster's order under load (issue #25): a Model's reconcile runs only once nothing else is
    # queued, and ``late()`` is called before the first such one (a test moves the clock on: the Model
    # reconciled that much after its versions were verified)
    late: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._late_called = False
        kube: Any = self.api
        self.versions = ModelVersionReconciler(
            kube, self.store, self.settings, Verifier(), self.endpoints_of_model, self._requeue_version
        )
        self.endpoints = ModelEndpointReconciler(kube, self.store, self.settings, self.versions_of_model)
        self.models = ModelReconciler(kube, self.store, self.settings, self.versions_of_model)

    # -- the work queue (handlers.runtime.Operator)
    def add(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self.queue[key] = None

    def _requeue_version(self, ns: str, name: str) -> None:  # the verifier's threads call it
        self.add(("ModelVersion", ns, name))

    def endpoints_of_model(self, ns: str, model: str) -> None:
        for _, name in self.store.model_keys("ModelEndpoint", ns, model):
            self.add(("ModelEndpoint", ns, name))

    def versions_of_model(self, ns: str, model: str) -> None:
        for _, name in self.store.model_keys("ModelVersion", ns, model):
            self.add(("ModelVersion", ns, name))

    # -- the watch (handlers.watch): deliver what changed, queue what it concerns
    def watch(self) -> None:
        for key, obj in list(self.api.objects.items()):
            kind, ns, name = key
            rv = obj["metadata"]["resourceVersion"]
            if kind not in WATCHED or self.seen.get(key) == rv:
                continue
            self.seen[key] = rv
            self.store.upsert(kind, copy.deepcopy(obj))
            self._queue_for(kind, ns, name, obj)

    def _queue_for(self, kind: str, ns: str, name: str, obj: dict[str, Any]) -> None:
        model = str((obj.get("spec") or {}).get("model", ""))
        if kind == "ModelVersion":
            self.add((kind, ns, name))
            self.endpoints_of_model(ns, model)
            if self.store.has("Model", ns, model):
                self.add(("Model", ns, model))
        elif kind == "Model":
            self.add((kind, ns, name))
            self.versions_of_model(ns, name)
        elif kind == "ModelEndpoint":
            self.add((kind, ns, name))
        elif (owner := controller_of(obj)) is not None:
            self.add(("ModelEndpoint", ns, owner[1]))

    # -- the cluster's controllers: Deployments become Available (after the operator went quiet)
    def controllers(self) -> bool:
        changed = False
        for (kind, _, _), obj in self.api.objects.items():
            if kind == "Deployment" and not obj.get("status"):
                n = obj["spec"]["replicas"]
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n,
                    "conditions": [{"type": "Available", "status": "True"}],
                }  # fmt: skip
                self.api._bump(obj)
                changed = True
        return changed

    # -- running
    def step(self) -> bool:
        """One reconcile of the first queued key (then the watch); False when nothing is queued."""
        with self._lock:
            if not self.queue:
                return False
            key = next(iter(self.queue))
            if self.late is not None:  # Models last, as a long queue on the cluster orders them
                if key[0] == "Model" and not self._late_called and all(k[0] == "Model" for k in self.queue):
                    self._late_called = True
                    self.late()  # the clock moves on: the requeue timers of the waiting versions fire
                    for k in self.delayed:
                        self.queue[k] = None
                    self.delayed.clear()
                key = next((k for k in self.queue if k[0] != "Model"), key)
            del self.queue[key]
        kind, ns, name = key
        rec: Callable[[str, str], None] = {
            "ModelVersion": self.versions.reconcile,
            "Model": self.models.reconcile,
            "ModelEndpoint": self.endpoints.reconcile,
        }[kind]
        self.reconciles += 1
        try:
            rec(ns, name)
        except Requeue:
            self.delayed.append(key)
        drain(self.versions.verifications.pool)  # an instant verification has finished and requeued
        self.watch()
        return True

    def settle(self, limit: int = 10_000) -> None:
        """Until nothing is queued, nothing waits for a retry and the controllers have nothing to do."""
        for _ in range(limit):
            if self.step():
                continue
            if self.delayed:  # the requeue timers fire once the queue is empty
                for key in self.delayed:
                    self.add(key)
                self.delayed.clear()
                continue
            if self.controllers():
                self.watch()
                continue
            return
        raise AssertionError(f"the fleet did not settle in {limit} reconciles")

    def create(self, *bodies: dict[str, Any]) -> None:
        for b in bodies:
            self.api.put(b)
        self.watch()

    # -- reading
    def writes_since(self, mark: int) -> list[Write]:
        return self.api.writes[mark:]

    def mark(self) -> int:
        return len(self.api.writes)


def by_cause(writes: list[Write]) -> Counter[tuple[str, str]]:
    return Counter((w.kind, w.cause) for w in writes)


def models_fleet(models: int, versions_per_model: int) -> list[dict[str, Any]]:
    """The benchmark's layout: model mNNNN has versions 1.0.0, 1.1.0, ..."""
    return [version_body(f"m{i:04d}", f"1.{j}.0") for i in range(models) for j in range(versions_per_model)]


def endpoints_fleet(n: int) -> list[dict[str, Any]]:
    return [endpoint_body(f"ep-{i:04d}", f"m{i:04d}") for i in range(n)]
