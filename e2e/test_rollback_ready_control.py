"""RollbackReady and drills on the real control plane (kwok runs the pods; issue #28, part 4): the
operator probes the fallback's artifact (file:// under the session's artifact root) and the condition
follows it; `kubectl models drill` (the real CLI, route timing only) rolls back and forward and leaves
the endpoint as found; a GitOps-managed endpoint is refused. The traffic drill is e2e/test_drill_e2e.py."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import Objects, cond_is, kubectl_models, make_artifact, model_endpoint, model_version, wait_for


@pytest.fixture
def objs(kube, namespace, operator):  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


@pytest.fixture
def fast_probes(operator: Any) -> Iterator[None]:
    original = operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg.setdefault("serving", {}).update({"rollbackProbeSeconds": 2, "driftCheckSeconds": 3})
    operator.config.write_text(yaml.safe_dump(cfg))
    operator.restart()
    try:
        yield
    finally:
        operator.config.write_text(original)
        operator.restart()


def cli(cluster: Any, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl_models(cluster.kubeconfig, ns, *args, timeout=300)


def ready(objs: Objects, name: str) -> tuple[str, str]:
    c = next((c for c in (objs.mep(name).get("status") or {}).get("conditions") or []
              if c["type"] == "RollbackReady"), {})  # fmt: skip
    return str(c.get("status")), str(c.get("reason"))


def test_readiness_follows_the_fallback_artifact_and_a_drill_leaves_the_endpoint_as_found(  # type: ignore[no-untyped-def]
    objs, artifact_root, cluster, fast_probes
):
    uris = {}
    for v in ("1.0.0", "1.1.0"):
        uri, sha = make_artifact(artifact_root, "rbready", v)
        uris[v] = uri
        objs.create(model_version("rbready", v, uri, sha, stage="production"))
    objs.create(model_endpoint("rbready", "rbready", [
        {"name": "stable", "version": "1.0.0", "weight": 0},
        {"name": "canary", "version": "1.1.0", "weight": 100},
    ]))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("rbready"), "Ready", "True"), 180, "Ready")
    wait_for(lambda: ready(objs, "rbready") == ("True", "FallbackReady"), 120, "RollbackReady=True")
    found = objs.mep("rbready")

    p = cli(cluster, objs.ns, "drill", "rbready", "--hold", "0", "-o", "json")
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    report = json.loads(p.stdout)
    print(json.dumps(report))
    assert report["restored"] and report["rollback"]["routedSeconds"] is not None
    assert (
        report["forward"]["routedSeconds"] is not None and report["timeToRestoreSeconds"] is None
    )  # no traffic
    now = objs.mep("rbready")
    assert now["spec"] == found["spec"]
    assert {
        k: v for k, v in (now["metadata"].get("annotations") or {}).items() if "modelversioning.io" in k
    } == {k: v for k, v in (found["metadata"].get("annotations") or {}).items() if "modelversioning.io" in k}

    # GitOps-managed: refused, nothing written
    objs.patch_mep("rbready", {"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "apps:x"}}})
    before = objs.mep("rbready")["metadata"]["generation"]
    p = cli(cluster, objs.ns, "drill", "rbready")
    assert p.returncode == 1 and "managed by GitOps" in p.stderr, p.stderr
    assert objs.mep("rbready")["metadata"]["generation"] == before

    # the store loses the fallback's bytes
    Path(uris["1.0.0"].removeprefix("file://")).unlink()
    t0 = time.monotonic()
    wait_for(lambda: ready(objs, "rbready") == ("False", "FallbackArtifactMissing"), 120, "readiness false")
    print(f"RollbackReady=False {time.monotonic() - t0:.1f} s after the deletion")
    ep = objs.mep("rbready")
    assert cond_is(ep, "Ready", "True") and cond_is(ep, "Stalled", "False")
