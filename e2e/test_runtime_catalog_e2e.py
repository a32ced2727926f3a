"""The runtime catalog on the real control plane: a KServe ClusterServingRuntime manifest (KServe's
documented format, tests/fixtures/kserve-mlserver.yaml) converted by `kubectl models runtimes convert`
and applied; a ModelVersion that names only its format resolves it (status.resolvedRuntime) and its
endpoint's Deployment runs the catalog's image; a catalog edit leaves that version as it is (a new
version picks the edit up); a reference to a runtime that does not exist gets its reason, an Event
and no Deployment; admission refuses a version that names no runtime at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import (
    GROUP,
    VERSION,
    Objects,
    cond_is,
    condition,
    make_artifact,
    model_endpoint,
    model_version,
    wait_for,
)

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "kserve-mlserver.yaml"
BIN = Path(sys.executable).parent / "kubectl-models"
BASE = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
PLURAL = "clustermodelruntimes"
NEW_IMAGE = "docker.io/seldonio/mlserver:1.7.0"


def kubectl_models(cluster: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("KUBECONFIG", None)
    cmd = [*BASE, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


@pytest.fixture
def catalog(cluster, kube, namespace, operator) -> Iterator[dict[str, Any]]:
    """The fixture's ClusterServingRuntime, converted by the CLI and applied (named after the test's
    namespace: cluster-scoped objects outlive it); deleted afterwards."""
    p = kubectl_models(cluster, namespace, "runtimes", "convert", "-f", str(FIXTURE))
    assert p.returncode == 0, p.stderr
    assert "warning: " in p.stderr and "securityContext" in p.stderr  # what it left out, said
    docs = list(yaml.safe_load_all(p.stdout))
    rt = next(d for d in docs if d["kind"] == "ClusterModelRuntime")
    rt["metadata"]["name"] = f"mlserver-{namespace}"
    co = client.CustomObjectsApi(kube)
    created = dict(co.create_cluster_custom_object(GROUP, VERSION, PLURAL, rt))
    try:
        yield created
    finally:
        co.delete_cluster_custom_object(GROUP, VERSION, PLURAL, rt["metadata"]["name"])


def by_format(objs: Objects, root: Path, version: str, **spec: Any) -> str:
    uri, sha = make_artifact(root, "iris", version)
    mv = model_version("iris", version, uri, sha, stage="production", **spec)
    del mv["spec"]["runtime"]
    mv["spec"].setdefault("format", {"name": "sklearn", "version": "1"})
    objs.create(mv)
    return f"iris-v{version}"


def resolved(objs: Objects, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = objs.mv(name).get("status") or {}
        return st if st.get("resolvedRuntime") and cond_is(objs.mv(name), "Ready", "True") else None

    return wait_for(done, 90, f"{name} resolved its runtime and is Ready")


def server_image(objs: Objects, slot: str) -> str:
    dep = objs.apps.read_namespaced_deployment(slot, objs.ns)
    return str(dep.spec.template.spec.containers[0].image)


def test_a_kserve_runtime_serves_a_version_by_format_and_an_edit_never_changes_it(
    cluster, objs, catalog, artifact_root, kube
):
    name = catalog["metadata"]["name"]
    image = catalog["spec"]["containers"][0]["image"]
    listed = kubectl_models(cluster, objs.ns, "runtimes", "list")
    assert (
        listed.returncode == 0 and name in listed.stdout and "sklearn:1 (auto, priority 2)" in listed.stdout
    )

    mv = by_format(objs, artifact_root, "1.0.0")
    st = resolved(objs, mv)
    rr = st["resolvedRuntime"]
    assert rr["image"] == image and rr["protocol"] == "v2" and rr["healthPath"] == "/v2/health/ready"
    assert rr["source"]["kind"] == "ClusterModelRuntime" and rr["source"]["name"] == name
    assert rr["source"]["uid"] == catalog["metadata"]["uid"]
    assert {"name": "MODELS_DIR", "value": "$(MODEL_PATH)"} in rr["env"]  # KServe's /mnt/models, converted
    digest = st["servingDigest"]

    objs.create(
        model_endpoint("iris", "iris", [{"name": "stable", "version": "1.0.0", "weight": 100}], router="none")
    )
    slot = objs.slot("iris", "stable", timeout=90)
    assert server_image(objs, slot) == image
    env = {
        e.name: e.value
        for e in objs.apps.read_namespaced_deployment(slot, objs.ns).spec.template.spec.containers[0].env
    }
    assert env["MODELS_DIR"] == "$(MODEL_PATH)" and env["MLSERVER_HTTP_PORT"] == "8080"

    # the platform edits the catalog: a new version picks the edit up ...
    co = client.CustomObjectsApi(kube)
    patch = {"spec": {"containers": [{**catalog["spec"]["containers"][0], "image": NEW_IMAGE}]}}
    co.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, patch)
    newer = by_format(objs, artifact_root, "1.1.0")
    assert resolved(objs, newer)["resolvedRuntime"]["image"] == NEW_IMAGE
    # ... and the version already resolved (and its approval, bound to its serving digest) does not:
    # a new generation of it (its description) is reconciled by an operator that has seen the edit
    gen = objs.patch_mv(mv, {"spec": {"description": "after the catalog edit"}})["metadata"]["generation"]

    def reconciled() -> dict[str, Any] | None:
        got = dict(objs.mv(mv)["status"])
        return got if got.get("observedGeneration") == gen else None

    st = wait_for(reconciled, 60, f"{mv} generation {gen} reconciled")
    assert st["resolvedRuntime"] == rr and st["servingDigest"] == digest
    assert objs.slot("iris", "stable") == slot and server_image(objs, slot) == image


def test_a_reference_to_a_missing_runtime_is_refused_with_its_reason(objs, catalog, artifact_root):
    mv = by_format(objs, artifact_root, "2.0.0", runtimeRef={"kind": "ClusterModelRuntime", "name": "absent"})
    body = wait_for(
        lambda: (o := objs.mv(mv)) and cond_is(o, "Ready", "False", "RuntimeNotFound") and o,
        60,
        f"{mv} Ready=False RuntimeNotFound",
    )
    rc = condition(body, "RuntimeResolved")
    assert rc is not None and "ClusterModelRuntime absent, which does not exist" in rc["message"]
    assert "resolvedRuntime" not in body["status"] and body["status"]["stage"] == "candidate"
    wait_for(
        lambda: any(e.reason == "RuntimeNotFound" for e in objs.events(mv)), 30, "a RuntimeNotFound Event"
    )
    objs.create(
        model_endpoint(
            "broken", "iris", [{"name": "stable", "version": "2.0.0", "weight": 100}], router="none"
        )
    )

    def variant_reason() -> str | None:
        vs = (objs.mep("broken").get("status") or {}).get("variants") or []
        return next((v.get("reason") for v in vs if v.get("name") == "stable"), None)

    assert wait_for(variant_reason, 60, "the variant's reason") == "RuntimeNotResolved"
    assert objs.apps.list_namespaced_deployment(objs.ns).items == []  # nothing rendered


def test_admission_refuses_a_version_that_names_no_runtime(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "bare", "1.0.0")
    mv = model_version("bare", "1.0.0", uri, sha, complete=False)
    del mv["spec"]["runtime"]
    with pytest.raises(ApiException) as e:
        objs.create(mv)
    assert e.value.status == 422 and "a version needs a runtime" in str(e.value.body)
    both = model_version("bare", "1.0.0", uri, sha, runtimeRef={"name": "x"})
    with pytest.raises(ApiException) as e:
        objs.create(both)
    assert e.value.status == 422 and "spec.runtime and spec.runtimeRef are exclusive" in str(e.value.body)
