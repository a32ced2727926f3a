"""Small helpers for e2e tests: typed-ish access to our objects and deadline-bound waits."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

T = TypeVar("T")
GROUP, VERSION = "modelversioning.io", "v1alpha1"


OPERATOR_SRC = Path(__file__).resolve().parents[1] / "operator"


def kubectl_models(
    kubeconfig: Path | str, namespace: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`kubectl models -n NAMESPACE ARGS` from this source tree (wide output, only --kubeconfig: the
    environment's KUBECONFIG unset), its output captured."""
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(OPERATOR_SRC)}
    env.pop("KUBECONFIG", None)
    cmd = [sys.executable, "-m", "modelversioning.cli.kubectl_models", "--kubeconfig", str(kubeconfig)]
    run = [*cmd, "-n", namespace, *args]
    return subprocess.run(run, capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(
    fn: Callable[[], T | None], timeout: float = 60.0, what: str = "condition", interval: float = 0.1
) -> T:
    """Poll `fn` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ApiException as e:
            if e.status != 404:
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


class Objects:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.co = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    # ours
    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = {"ModelVersion": "modelversions", "ModelEndpoint": "modelendpoints"}[obj["kind"]]
        return dict(self.co.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, obj))

    def mv(self, name: str) -> dict[str, Any]:
        return dict(self.co.get_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions", name))

    def mep(self, name: str) -> dict[str, Any]:
        return dict(self.co.get_namespaced_custom_object(GROUP, VERSION, self.ns, "modelendpoints", name))

    def patch_mv(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.co.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions", name, patch)
        )

    def patch_mep(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.co.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "modelendpoints", name, patch)
        )

    def slot(self, endpoint: str, variant: str, timeout: float = 60) -> str:
        """Name of the Deployment + Service serving `variant` now (status.variants[].serving.slot)."""

        def find() -> str | None:
            for v in (self.mep(endpoint).get("status") or {}).get("variants") or []:
                if v.get("name") == variant and (v.get("serving") or {}).get("slot"):
                    return str(v["serving"]["slot"])
            return None

        return str(wait_for(find, timeout, f"{endpoint}/{variant} has a serving slot"))

    def set_weights(self, name: str, weights: dict[str, int]) -> None:
        ep = self.mep(name)
        variants = ep["spec"]["variants"]
        for v in variants:
            if v["name"] in weights:
                v["weight"] = weights[v["name"]]
        self.patch_mep(name, {"spec": {"variants": variants}})

    def delete_mv(self, name: str) -> None:
        self.co.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions", name)

    def delete_mep(self, name: str) -> None:
        self.co.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "modelendpoints", name)

    # routes
    def virtualservice(self, name: str) -> dict[str, Any]:
        return dict(
            self.co.get_namespaced_custom_object(
                "networking.istio.io", "v1", self.ns, "virtualservices", name
            )
        )

    def httproute(self, name: str) -> dict[str, Any]:
        return dict(
            self.co.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.ns, "httproutes", name
            )
        )

    def events(self, name: str) -> list[Any]:
        evs = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return list(evs)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def cond_is(obj: dict[str, Any], type_: str, status: str, reason: str | None = None) -> bool:
    c = condition(obj, type_)
    return bool(c and c["status"] == status and (reason is None or c["reason"] == reason))


def vs_weights(vs: dict[str, Any]) -> dict[str, int]:
    """variant -> weight from an Istio VirtualService written by the operator."""
    out: dict[str, int] = {}
    for http in vs["spec"].get("http", []):
        for r in http.get("route", []):
            variant = r["headers"]["response"]["set"]["x-endpoint-variant"]
            out[variant] = out.get(variant, 0) + int(r.get("weight", 0))
    return out


def route_weights(rt: dict[str, Any]) -> dict[str, int]:
    """variant -> weight from a Gateway API HTTPRoute written by the operator."""
    out: dict[str, int] = {}
    for rule in rt["spec"].get("rules", []):
        for b in rule.get("backendRefs", []):
            hdrs = {}
            for f in b.get("filters", []):
                for h in (f.get("responseHeaderModifier") or {}).get("set", []):
                    hdrs[h["name"]] = h["value"]
            variant = hdrs.get("x-endpoint-variant", b["name"])
            out[variant] = out.get(variant, 0) + int(b.get("weight", 1))
    return out


def make_artifact(root: Path, model: str, version: str, content: bytes | None = None) -> tuple[str, str]:
    """Write a small artifact file under root; return (file:// uri, sha256)."""
    data = content if content is not None else f"{model} {version} weights\n".encode()
    path = root / model / version / "model.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri(), hashlib.sha256(data).hexdigest()


def model_version(
    model: str,
    version: str,
    uri: str,
    sha256: str,
    stage: str = "candidate",
    complete: bool = True,
    **spec_extra: Any,
) -> dict[str, Any]:
    lineage: dict[str, Any] = {
        "codeCommit": "3f9c2a1",
        "dataset": {"name": "tx", "version": "2024-06-30"},
        "hyperparameters": {"learning_rate": 0.05},
    }
    if complete:
        lineage.update(
            {
                "codeRepository": "https://git.example.com/ml/x.git",
                "trainedAt": "2024-07-02T10:00:00Z",
                "author": "jane@example.com",
                "framework": "xgboost-2.0",
            }
        )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{version}"},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {"uri": uri, "sha256": sha256},
            "lineage": lineage,
            "metrics": {"auc": 0.9},
            "runtime": {"image": "registry.k8s.io/pause:3.10", "port": 8080},
            "stage": stage,
            **spec_extra,
        },
    }


def model_endpoint(
    name: str, model: str, variants: list[dict[str, Any]], router: str = "istio", **spec_extra: Any
) -> dict[str, Any]:
    routing: dict[str, Any] = {"router": router}
    if router == "istio":
        routing["hosts"] = [f"{name}.example.com"]
    if router == "gatewayAPI":
        routing["hosts"] = [f"{name}.example.com"]
        routing["parentRefs"] = [{"name": "models-gateway"}]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelEndpoint",
        "metadata": {"name": name},
        "spec": {"model": model, "variants": variants, "routing": routing, **spec_extra},
    }
