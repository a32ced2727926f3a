"""The chart's in-use admission policy (files/admission/in-use.yaml, issue #25) on the real API server:
a ModelVersion whose status.servedBy names an endpoint is not deleted, and while the operator observes
the policy bound it adds no in-use finalizer (two writes per served version saved). Without the
binding (break-glass, or an older chart) the finalizer holds the deletion as before.

The harness installs the policy without its binding (e2e/admission.py UNBOUND: the other e2e tests
exercise the finalizer); these tests bind it for their duration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

import admission
from helpers import Objects, cond_is, make_artifact, model_endpoint, model_version, wait_for

IN_USE = "modelversioning.io/in-use"


@pytest.fixture
def in_use_bound(cluster: Any) -> Iterator[None]:
    admission.bind(cluster, admission.IN_USE_POLICY)
    try:
        yield
    finally:
        admission.unbind(cluster, admission.IN_USE_POLICY)


def _delete(objs: Objects, name: str) -> str | None:
    """DELETE the version: None when the API server accepted it, else its refusal's message."""
    try:
        objs.delete_mv(name)
    except ApiException as e:
        assert e.status in (403, 422), e
        return str(json.loads(e.body or "{}").get("message", e.body))
    return None


def _refused_dry_run(cluster: Any, objs: Objects, name: str) -> str | None:
    """The API server's refusal of a DELETE of the version (server-side dry run: nothing is deleted)."""
    res = cluster.kubectl("delete", "mv", name, "-n", objs.ns, "--dry-run=server", check=False, timeout=30)
    return (res.stderr or res.stdout) if res.returncode != 0 else None


def _gone(objs: Objects, name: str) -> bool:
    try:
        objs.mv(name)
    except ApiException as e:
        return e.status == 404
    return False


def _served(objs: Objects, name: str, endpoint: str) -> dict[str, Any] | None:
    mv = objs.mv(name)
    served = {s["endpoint"] for s in (mv.get("status") or {}).get("servedBy") or []}
    return mv if endpoint in served else None


def test_a_served_version_is_not_deleted_and_carries_no_finalizer(
    cluster: Any, kube: Any, namespace: str, operator: Any, artifact_root: Path, in_use_bound: None
) -> None:
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "kept", "1.0.0")
    objs.create(model_version("kept", "1.0.0", uri, sha, stage="production"))
    variants = [
        {"name": "a", "version": "1.0.0", "weight": 60},
        {"name": "b", "version": "1.0.0", "weight": 40},
    ]
    objs.create(model_endpoint("kept", "kept", variants, router="none"))
    mv = wait_for(lambda: _served(objs, "kept-v1.0.0", "kept"), 60, "status.servedBy names the endpoint")
    assert IN_USE not in (mv["metadata"].get("finalizers") or [])  # the record is the protection
    wait_for(lambda: _refused_dry_run(cluster, objs, "kept-v1.0.0"), 30, "the binding enforced")
    msg = _delete(objs, "kept-v1.0.0")
    assert msg is not None, "a served version was deleted"
    assert "ModelVersion kept-v1.0.0 is in use: ModelEndpoint kept (variant a) and 1 more" in msg, msg
    assert "status.servedBy" in msg
    assert not objs.mv("kept-v1.0.0")["metadata"].get("deletionTimestamp")  # refused, not held
    # the endpoint goes: the operator clears the record, and the version may go
    objs.delete_mep("kept")
    wait_for(lambda: not (objs.mv("kept-v1.0.0").get("status") or {}).get("servedBy"), 60, "record cleared")
    assert _delete(objs, "kept-v1.0.0") is None
    wait_for(lambda: _gone(objs, "kept-v1.0.0"), 30, "deleted at once (no finalizer)")


def test_an_unserved_version_is_deleted_as_before(
    kube: Any, namespace: str, operator: Any, artifact_root: Path, in_use_bound: None
) -> None:
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "free", "1.0.0")
    objs.create(model_version("free", "1.0.0", uri, sha))
    wait_for(lambda: cond_is(objs.mv("free-v1.0.0"), "Ready", "True"), 60, "Ready")
    assert _delete(objs, "free-v1.0.0") is None
    wait_for(lambda: _gone(objs, "free-v1.0.0"), 30, "deleted")


def test_break_glass_brings_the_finalizer_back(
    cluster: Any, kube: Any, namespace: str, operator: Any, artifact_root: Path, in_use_bound: None
) -> None:
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "glass", "1.0.0")
    objs.create(model_version("glass", "1.0.0", uri, sha, stage="production"))
    objs.create(
        model_endpoint("glass", "glass", [{"name": "a", "version": "1.0.0", "weight": 100}], router="none")
    )
    mv = wait_for(lambda: _served(objs, "glass-v1.0.0", "glass"), 60, "status.servedBy")
    assert IN_USE not in (mv["metadata"].get("finalizers") or [])
    admission.unbind(cluster, admission.IN_USE_POLICY)  # break-glass: the operator sees it at once
    wait_for(
        lambda: IN_USE in (objs.mv("glass-v1.0.0")["metadata"].get("finalizers") or []), 60, "the finalizer"
    )
    # the DELETE is accepted now (no binding), and the finalizer holds it while the endpoint serves it
    wait_for(lambda: _delete(objs, "glass-v1.0.0") is None, 30, "the DELETE accepted")
    wait_for(lambda: cond_is(objs.mv("glass-v1.0.0"), "Deleting", "False", "InUse"), 30, "deletion held")
    objs.delete_mep("glass")
    wait_for(lambda: _gone(objs, "glass-v1.0.0"), 60, "deleted once no endpoint uses it")
