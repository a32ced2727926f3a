"""A version without spec.runtime, end to end through the reconcilers' gather -> decide -> act: the
ModelVersion reconciler resolves it from the cached catalog into status.resolvedRuntime (once, for
good; the serving digest covers it), every bad input is its own reason with an Event and blocks the
stage walk; the endpoint renders only a resolved version (golden Deployment), never an unresolved one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec, ResolvedRuntime
from modelversioning.domain import conditions as cond
from modelversioning.domain.approvals import serving_digest
from modelversioning.handlers.catalog import catalog
from modelversioning.handlers.endpoint_inputs import version_facts
from modelversioning.handlers.store import Store
from modelversioning.render import RenderError, render_deployment, with_resolved_runtime
from test_modelversion_reconciler import NS, OK, mv, reconciler, run
from test_render import ENDPOINT, SERVING, assert_golden

IMAGE = "docker.io/seldonio/mlserver@sha256:" + "b" * 64


def runtime(
    name: str = "kserve-mlserver", *, kind: str = "ClusterModelRuntime", ns: str = "", **spec: Any
) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True, "priority": 2}],
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": IMAGE,
                    "env": [{"name": "MLSERVER_MODEL_URI", "value": "$(MODEL_PATH)"}],
                }
            ],
            **spec,
        },
    }
    if ns:
        body["metadata"]["namespace"] = ns
    return body


def catalog_version(stage: str = "candidate", **spec: Any) -> dict[str, Any]:
    body = mv(stage)
    del body["spec"]["runtime"]
    body["spec"]["lineage"]["framework"] = "sklearn-1.5.2"
    body["spec"].update(spec)
    return body


def status(store: Any) -> dict[str, Any]:
    return dict(store.get("ModelVersion", NS, "m-v1.0.0")["status"])


def test_a_format_resolves_once_and_a_catalog_edit_never_changes_it() -> None:
    store, kube, _verifier, r, _, notified = reconciler(OK)
    store.upsert("ClusterModelRuntime", runtime())
    store.upsert("ModelVersion", catalog_version("staging"))
    run(r)
    run(r)
    st = status(store)
    rr = st["resolvedRuntime"]
    assert rr["image"] == IMAGE and rr["protocol"] == "v2" and rr["healthPath"] == "/v2/health/ready"
    assert rr["source"] == {
        "kind": "ClusterModelRuntime",
        "name": "kserve-mlserver",
        "uid": "uid-kserve-mlserver",
        "generation": 1,
    }
    got = cond.get(st["conditions"], R.RUNTIME_RESOLVED_CONDITION)
    assert got is not None and (got["status"], got["reason"]) == ("True", R.RUNTIME_RESOLVED)
    spec = store.get("ModelVersion", NS, "m-v1.0.0")["spec"]
    assert st["servingDigest"] == serving_digest(spec, rr) != ""
    assert st["stage"] == "staging" and notified  # the endpoints re-render with it
    # the platform edits the catalog: the approved version keeps what it resolved to
    edited = runtime()
    edited["metadata"].update(generation=2, resourceVersion="2")
    edited["spec"]["containers"][0]["image"] = "docker.io/seldonio/mlserver:latest"
    store.upsert("ClusterModelRuntime", edited)
    kube.calls.clear()
    run(r)
    assert status(store)["resolvedRuntime"] == rr and status(store)["servingDigest"] == st["servingDigest"]
    assert kube.calls == []  # nothing to write


@pytest.mark.parametrize(
    ("spec", "catalog", "reason"),
    [
        ({"runtimeRef": {"name": "missing"}}, [runtime()], R.RUNTIME_NOT_FOUND),
        ({"runtimeRef": {"name": "kserve-mlserver"}}, [runtime(disabled=True)], R.RUNTIME_DISABLED),
        ({"format": {"name": "onnx"}}, [runtime()], R.NO_RUNTIME_FOR_FORMAT),
        (
            {"runtimeRef": {"name": "kserve-mlserver"}, "format": {"name": "onnx"}},
            [runtime()],
            R.RUNTIME_FORMAT_MISMATCH,
        ),
        # another namespace's ModelRuntime is invisible here (tenancy)
        (
            {"runtimeRef": {"kind": "ModelRuntime", "name": "theirs"}},
            [runtime("theirs", kind="ModelRuntime", ns="other")],
            R.RUNTIME_NOT_FOUND,
        ),
        ({"runtimeRef": {"name": "kserve-mlserver"}}, [runtime(containers=[])], R.INVALID_RUNTIME),
    ],
)
def test_each_bad_input_is_its_own_reason_with_an_event_and_no_stage(
    spec: dict[str, Any], catalog: list[dict[str, Any]], reason: str
) -> None:
    store, kube, _verifier, r, _, _ = reconciler(OK)
    for obj in catalog:
        store.upsert(obj["kind"], obj)
    store.upsert("ModelVersion", catalog_version("staging", **spec))
    run(r)
    run(r)
    st = status(store)
    assert "resolvedRuntime" not in st and "servingDigest" not in st
    rc = cond.get(st["conditions"], R.RUNTIME_RESOLVED_CONDITION)
    ready = cond.get(st["conditions"], "Ready")
    stalled = cond.get(st["conditions"], "Stalled")
    assert rc is not None and (rc["status"], rc["reason"]) == ("False", reason)
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", reason)
    assert stalled is not None and stalled["status"] == "True"
    assert st["stage"] == "candidate"  # never promoted without a runtime
    walk = cond.get(st["conditions"], "StageTransition")
    assert walk is not None and walk["reason"] == reason and "requires a resolved runtime" in walk["message"]
    assert kube.calls.count(("event", ("Warning", reason))) == 1
    kube.calls.clear()
    run(r)  # the same failure again: no second Event, no write
    assert ("event", ("Warning", reason)) not in kube.calls


def test_the_catalog_fixed_later_resolves_the_waiting_version() -> None:
    store, _kube, _verifier, r, _, _ = reconciler(OK)
    store.upsert("ModelVersion", catalog_version(runtimeRef={"name": "kserve-mlserver"}))
    run(r)
    run(r)
    assert "resolvedRuntime" not in status(store)
    ready = cond.get(status(store)["conditions"], "Ready")  # a candidate too: Ready says why not
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", R.RUNTIME_NOT_FOUND)
    store.upsert("ClusterModelRuntime", runtime())  # the watch queues the version again
    run(r)
    assert status(store)["resolvedRuntime"]["image"] == IMAGE
    ready = cond.get(status(store)["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True"


def test_gather_reads_only_the_versions_namespace_and_the_cluster() -> None:
    store = Store()
    store.upsert("ModelRuntime", runtime("ours", kind="ModelRuntime", ns=NS))
    store.upsert("ModelRuntime", runtime("theirs", kind="ModelRuntime", ns="other"))
    store.upsert("ClusterModelRuntime", runtime("shared"))
    got = {(c.kind, c.name, c.namespace) for c in catalog(store, NS)}
    assert got == {("ModelRuntime", "ours", NS), ("ClusterModelRuntime", "shared", "")}


def test_the_platform_image_rule_applies_to_a_resolved_image() -> None:
    store, _kube, _verifier, r, _, _ = reconciler(OK)
    unpinned = runtime()
    unpinned["spec"]["containers"][0]["image"] = "docker.io/seldonio/mlserver:1.6"
    store.upsert("ClusterModelRuntime", unpinned)
    store.upsert(
        "ModelPlatformPolicy",
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelPlatformPolicy",
            "metadata": {"name": "floors", "uid": "p", "resourceVersion": "1", "generation": 1},
            "spec": {"serving": {"pinnedImagesFrom": "staging"}},
        },
    )
    store.upsert("ModelVersion", catalog_version("staging"))
    run(r)
    run(r)
    st = status(store)
    walk = cond.get(st["conditions"], "StageTransition")
    assert st["stage"] == "candidate" and walk is not None and walk["reason"] == R.IMAGE_NOT_PINNED
    assert "mlserver:1.6" in walk["message"]


# ---- the endpoint: rendered only with a resolved runtime


def _version_body(resolved: dict[str, Any] | None) -> dict[str, Any]:
    body = catalog_version()
    body["status"] = {"conditions": [], **({"resolvedRuntime": resolved} if resolved else {})}
    return body


def test_an_unresolved_version_is_never_rendered() -> None:
    facts, spec, problem = version_facts(_version_body(None), NS, "m-v1.0.0")
    assert facts is None and spec is None
    assert problem is not None and problem[0] == R.RUNTIME_NOT_RESOLVED
    bare = ModelVersionSpec.model_validate(catalog_version()["spec"])
    with pytest.raises(RenderError, match="not resolved"):
        with_resolved_runtime(bare, None)
    with pytest.raises(RenderError, match="no runtime"):
        render_deployment(ENDPOINT, _endpoint(), _endpoint().variants[0], bare, SERVING)


def _endpoint() -> ModelEndpointSpec:
    return ModelEndpointSpec.model_validate(
        {
            "model": "m",
            "variants": [{"name": "stable", "version": "1.0.0", "weight": 100}],
            "routing": {"router": "none"},
        }
    )


RESOLVED = {
    "image": IMAGE,
    "command": [],
    "args": ["--model-dir", "$(MODEL_PATH)"],
    "env": [{"name": "MLSERVER_HTTP_PORT", "value": "9000"}],
    "port": 9000,
    "protocol": "v2",
    "healthPath": "/v2/health/ready",
    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
    "source": {"kind": "ClusterModelRuntime", "name": "kserve-mlserver", "uid": "u", "generation": 1},
}


def test_a_resolved_version_renders_the_catalog_runtime_golden() -> None:
    facts, spec, problem = version_facts(_version_body(copy.deepcopy(RESOLVED)), NS, "m-v1.0.0")
    assert problem is None and facts is not None and spec is not None and spec.runtime is not None
    ep = _endpoint()
    dep = render_deployment(ENDPOINT, ep, ep.variants[0], spec, SERVING)
    server = dep["spec"]["template"]["spec"]["containers"][0]
    assert server["image"] == IMAGE and server["ports"][0]["containerPort"] == 9000
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    direct = with_resolved_runtime(
        ModelVersionSpec.model_validate(catalog_version()["spec"]), ResolvedRuntime.model_validate(RESOLVED)
    )
    assert render_deployment(ENDPOINT, ep, ep.variants[0], direct, SERVING) == dep
    assert_golden("deployment-resolved-runtime", dep)
