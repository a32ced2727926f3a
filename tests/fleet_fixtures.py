"""Regions for the fleet tests: loopback API servers (fake_apiserver) answering for one endpoint each,
a kubeconfig with one context per region, and regions that never answer or are not there at all."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fake_apiserver import Request, serve, status

NS = "models"
OLD_SHA, NEW_SHA = "a" * 64, "b" * 64


Split = Mapping[str, tuple[str, int]]


def endpoint(
    region: str | None,
    weights: Split,
    *,
    phase: str | None = "Succeeded",
    ready: str = "True",
    history: list[dict[str, Any]] | None = None,
    generation: int = 2,
    observed: int = 2,
    spec_weights: Split | None = None,
) -> dict[str, Any]:
    """A ModelEndpoint as its region's operator writes it: variant -> (version, weight) served."""
    spec_weights = spec_weights or weights
    digest = {"2.3.8": OLD_SHA, "2.4.1": NEW_SHA}
    st: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [{"type": "Ready", "status": ready, "reason": "Ready" if ready == "True" else "X"}],
        "variants": [
            {
                "name": n,
                "version": v,
                "effectiveWeight": w,
                "readyReplicas": 1,
                "replicas": 1,
                "eligible": True,
                "serving": {"version": v, "digest": digest[v]},
            }
            for n, (v, w) in weights.items()
        ],  # fmt: skip
        "effectiveWeights": {n: w for n, (_, w) in weights.items()},
        "traffic": ",".join(f"{n}={w}" for n, (_, w) in weights.items()),
        "routeHistory": {"changes": history or [], "coarse": []},
    }
    if region:
        st["region"] = region
    if phase:
        st["rollout"] = {"phase": phase, "step": 3, "target": "t"}
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {
            "name": "fraud-detector",
            "namespace": NS,
            "generation": generation,
            "resourceVersion": "9",
        },
        "spec": {
            "model": "fraud-detector",
            "variants": [{"name": n, "version": v, "weight": w} for n, (v, w) in spec_weights.items()],
            **(
                {"strategy": {"canary": {"variant": "canary", "steps": [{"setWeight": 50}]}}} if phase else {}
            ),
        },
        "status": st,
    }


def version(v: str, stage: str = "production") -> dict[str, Any]:
    return {
        "metadata": {"name": f"fraud-detector-v{v}", "namespace": NS},
        "spec": {
            "model": "fraud-detector",
            "version": v,
            "artifact": {"sha256": OLD_SHA if v == "2.3.8" else NEW_SHA},
        },
        "status": {"stage": stage, "region": None},
    }


def change(at: str, **split: int) -> dict[str, Any]:
    return {"at": at, "cause": "spec", "generation": 1,
            "split": [{"variant": "canary" if v == "2.4.1" else "stable", "version": v.replace("_", "."),
                       "digest": NEW_SHA, "weight": w, "slot": "s"} for v, w in split.items()]}  # fmt: skip


def router(ep: dict[str, Any] | None, versions: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    def route(req: Request) -> tuple[int | str, Any]:
        base = f"/apis/modelversioning.io/v1alpha1/namespaces/{NS}/"
        if req.path == base + "modelendpoints/fraud-detector":
            return (200, ep) if ep is not None else status(404, "NotFound", "not found")
        if req.path == base + "modelversions":
            return 200, {"items": versions, "metadata": {"resourceVersion": "1"}}
        if req.path.startswith(base + "modelversions/"):
            name = req.path.rsplit("/", 1)[-1]
            hit = [m for m in versions if m["metadata"]["name"] == name]
            return (200, hit[0]) if hit else status(404, "NotFound", "not found")
        return status(404, "NotFound", req.path)

    return route


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@contextmanager
def regions(tmp: Path, answers: Mapping[str, Any]) -> Iterator[Path]:
    """A kubeconfig with one context per region: a router -> its server, "silent" -> a server that never
    answers, "closed" -> nothing listening."""
    with ExitStack() as stack:
        servers: dict[str, str] = {}
        for name, a in answers.items():
            if a == "silent":
                servers[name] = stack.enter_context(silent_server())
            elif a == "closed":
                servers[name] = closed_port()
            else:
                servers[name] = stack.enter_context(serve(a)).url
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": next(iter(answers)),
            "clusters": [{"name": n, "cluster": {"server": u}} for n, u in servers.items()],
            "users": [{"name": "me", "user": {"token": "t"}}],
            "contexts": [
                {"name": n, "context": {"cluster": n, "user": "me", "namespace": NS}} for n in servers
            ],
        }
        path = tmp / "kubeconfig"
        path.write_text(json.dumps(doc))
        yield path
