"""Objects as the API server returns them, for the web view's tests (tests/test_ui_*.py), and a
cache that holds them without watching anything."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelversioning.api.wire import MODEL, MODELAPPROVAL, MODELENDPOINT, MODELVERSION
from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.snapshot import Snapshot

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def mv(
    model: str,
    version: str,
    stage: str = "production",
    ns: str = "ml",
    verified: str = "True",
    dataset: str = "tx",
    commit: str = "3f9c2a1",
    metrics: Mapping[str, float] | None = None,
    serving: Sequence[Mapping[str, Any]] = (),
    served_by: Sequence[Mapping[str, Any]] = (),
    history: Sequence[Mapping[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    conditions: Sequence[Mapping[str, Any]] = (),
    rollouts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "apiVersion": MODELVERSION.api_version,
        "kind": "ModelVersion",
        "metadata": {
            "name": f"{model}-v{version}",
            "namespace": ns,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "annotations": dict(annotations or {}),
            "resourceVersion": "1",
        },
        "spec": {
            "model": model,
            "version": version,
            "stage": stage,
            "artifact": {"uri": f"s3://b/{model}/{version}", "sha256": "a" * 64},
            "lineage": {
                "dataset": {"name": dataset, "version": "2026-11"},
                "codeCommit": commit,
                "codeRepository": "https://git.example.com/ml.git",
                "author": "jane",
                "hyperparameters": {"depth": 6},
            },
            "metrics": dict(metrics or {"auc": 0.9}),
        },
        "status": {
            "stage": stage,
            "conditions": [
                {"type": "ArtifactVerified", "status": verified, "reason": "Verified" if verified == "True"
                 else "DigestMismatch", "message": "digest differs" if verified != "True" else ""},
                *conditions,
            ],
            "artifact": {"digest": "a" * 64, "verifiedAt": "2026-12-01T10:01:00Z"},
            "servingHistory": list(serving),
            "servedBy": list(served_by),
            "history": list(history),
            "rollouts": list(rollouts),
        },
    }  # fmt: skip


def ep(
    name: str,
    model: str,
    variants: Sequence[tuple[str, str, int]],
    effective: Mapping[str, int] | None = None,
    ns: str = "ml",
    ready: str = "True",
    strategy: Mapping[str, Any] | None = None,
    rollout: Mapping[str, Any] | None = None,
    route_history: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    eff = dict(effective if effective is not None else {n: w for n, _, w in variants})
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "effectiveWeights": eff,
        "variants": [
            {"name": n, "version": v, "eligible": True, "readyReplicas": 1, "replicas": 1,
             "effectiveWeight": eff.get(n, 0)}
            for n, v, _ in variants
        ],
        "conditions": [{"type": "Ready", "status": ready,
                        "reason": "Ready" if ready == "True" else "Progressing",
                        "message": "" if ready == "True" else "waiting for pods"}],
    }  # fmt: skip
    if rollout is not None:
        status["rollout"] = dict(rollout)
    if route_history is not None:
        status["routeHistory"] = dict(route_history)
    spec: dict[str, Any] = {
        "model": model,
        "variants": [{"name": n, "version": v, "weight": w} for n, v, w in variants],
    }
    if strategy is not None:
        spec["strategy"] = dict(strategy)
    return {
        "apiVersion": MODELENDPOINT.api_version,
        "kind": "ModelEndpoint",
        "metadata": {"name": name, "namespace": ns, "generation": 1, "resourceVersion": "1"},
        "spec": spec,
        "status": status,
    }


def approval(model: str, version: str, stage: str, approver: str, ns: str = "ml") -> dict[str, Any]:
    return {
        "apiVersion": MODELAPPROVAL.api_version,
        "kind": "ModelApproval",
        "metadata": {"name": f"{model}-{version}-{approver}", "namespace": ns,
                     "creationTimestamp": "2026-12-02T10:00:00Z"},
        "spec": {"model": model, "version": version, "sha256": "a" * 64, "stage": stage, "approver": approver,
                 "comment": "looks good"},
    }  # fmt: skip


def snapshot(
    versions: Sequence[Mapping[str, Any]] = (),
    endpoints: Sequence[Mapping[str, Any]] = (),
    models: Sequence[Mapping[str, Any]] = (),
    approvals: Sequence[Mapping[str, Any]] = (),
    errors: Mapping[str, str] | None = None,
) -> Snapshot:
    return Snapshot(1, tuple(versions), tuple(endpoints), tuple(models), tuple(approvals), dict(errors or {}))


class StaticCache(WatchCache):
    """A WatchCache holding given objects, fed by apply_event (no threads, no cluster)."""

    def __init__(self, *objs: Mapping[str, Any]) -> None:
        super().__init__(lambda: None, "ml")  # type: ignore[arg-type,return-value]
        kinds = {"ModelVersion": MODELVERSION, "ModelEndpoint": MODELENDPOINT, "Model": MODEL,
                 "ModelApproval": MODELAPPROVAL}  # fmt: skip
        for o in objs:
            self.apply_event(kinds[str(o["kind"])], {"type": "ADDED", "object": o})

    def start(self) -> None:
        pass
