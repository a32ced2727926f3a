"""The API server itself enforces the rules of our CRDs (OpenAPI schema + CEL), no webhook needed.

Every invalid object must be refused by the real kube-apiserver with 422 and the human message
of the rule (the CEL `message`/`messageExpression`, or the OpenAPI error for schema-only rules).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from controlplane import ControlPlane
from helpers import wait_for

GROUP, VERSION = "modelversioning.io", "v1alpha1"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def model_version() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": "fraud-detector-v2.3.8"},
        "spec": {
            "model": "fraud-detector",
            "version": "2.3.8",
            "artifact": {
                "uri": "s3://models/fraud-detector/2.3.8/model.onnx",
                "sha256": SHA,
                "format": "onnx",
            },
            "lineage": {
                "codeRepository": "https://git.example.com/risk/fraud.git",
                "codeCommit": "3f9c2a1",
                "dataset": {"name": "transactions", "version": "2024-06-30"},
                "hyperparameters": {"learning_rate": 0.05, "max_depth": 8},
                "trainedAt": "2024-07-02T10:00:00Z",
                "author": "jane@example.com",
                "framework": "xgboost-2.0",
            },
            "metrics": {"auc": 0.947, "f1": 0.81},
            "runtime": {"image": "ghcr.io/example/xgb-server:1.4", "port": 8080},
        },
    }


def model_endpoint() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelEndpoint",
        "metadata": {"name": "fraud-detector"},
        "spec": {
            "model": "fraud-detector",
            "variants": [
                {"name": "stable", "version": "2.3.8", "weight": 90},
                {"name": "canary", "version": "2.4.1", "weight": 10},
            ],
            "routing": {"router": "none"},
        },
    }


def _create(kube: client.ApiClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    plural = {"ModelVersion": "modelversions", "ModelEndpoint": "modelendpoints"}[obj["kind"]]
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, obj
    )


def _patch_mv(kube: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", name, patch
    )


def _refused(call: Callable[[], object]) -> str:
    """Run ``call``, assert the API server answered 422, return its message."""
    with pytest.raises(ApiException) as info:
        call()
    err = info.value
    assert err.status == 422, f"expected 422 Invalid, got {err.status}: {err.body}"
    return str(json.loads(err.body)["message"])


def _mutated(base: Callable[[], dict[str, Any]], mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(base())
    mutate(obj)
    return obj


def _set_version(v: str) -> Callable[[dict[str, Any]], None]:
    def mutate(o: dict[str, Any]) -> None:
        o["spec"]["version"] = v
        o["metadata"]["name"] = f"fraud-detector-v{v}"

    return mutate


MV_INVALID: list[Any] = [
    pytest.param(
        _set_version("2.3"),
        "version must be a semantic version MAJOR.MINOR.PATCH[-prerelease]",
        id="version-not-semver",
    ),
    pytest.param(
        _set_version("2.3.8+build.5"),
        "version must be a semantic version MAJOR.MINOR.PATCH[-prerelease]",
        id="version-build-metadata",
    ),
    pytest.param(
        lambda o: o["metadata"].update(name="fraud-detector-latest"),
        "metadata.name must be fraud-detector-v2.3.8 (<model>-v<version>)",
        id="name-not-model-v-version",
    ),
    pytest.param(
        lambda o: o["spec"]["artifact"].pop("sha256"),
        "spec.artifact.sha256: Required value",
        id="missing-sha256",
    ),
    pytest.param(
        lambda o: o["spec"]["artifact"].update(sha256=SHA.upper()),
        "artifact.sha256 must be 64 lowercase hex characters",
        id="sha256-uppercase",
    ),
    pytest.param(
        lambda o: o["spec"]["artifact"].update(sha256=SHA[:40]),
        "artifact.sha256 must be 64 lowercase hex characters",
        id="sha256-too-short",
    ),
    pytest.param(
        lambda o: o["spec"]["artifact"].update(uri="models/fraud.onnx"),
        "artifact.uri must be an absolute URI with a scheme",
        id="uri-without-scheme",
    ),
    pytest.param(
        lambda o: o["spec"]["lineage"].pop("codeCommit"),
        "spec.lineage.codeCommit: Required value",
        id="missing-code-commit",
    ),
    pytest.param(
        lambda o: o["spec"]["lineage"].update(codeCommit="main"),
        "lineage.codeCommit must be a hex git commit sha (7-64 chars)",
        id="code-commit-not-hex",
    ),
    pytest.param(
        lambda o: o["spec"]["lineage"].update(dataset={"name": "transactions"}),
        "lineage.dataset needs a version and/or a sha256",
        id="dataset-without-identity",
    ),
    pytest.param(
        lambda o: o["spec"].update(metrics={}),
        "spec.metrics in body should have at least 1 properties",
        id="empty-metrics",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), MV_INVALID)
def test_invalid_model_version_refused(
    kube: client.ApiClient, namespace: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    msg = _refused(lambda: _create(kube, namespace, _mutated(model_version, mutate)))
    assert message in msg


def _variants(*vs: tuple[str, str, int]) -> Callable[[dict[str, Any]], None]:
    def mutate(o: dict[str, Any]) -> None:
        o["spec"]["variants"] = [{"name": n, "version": v, "weight": w} for n, v, w in vs]

    return mutate


def _both(*fs: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(o: dict[str, Any]) -> None:
        for f in fs:
            f(o)

    return mutate


def _mirror(variant: str, percent: int | None = None) -> Callable[[dict[str, Any]], None]:
    def mutate(o: dict[str, Any]) -> None:
        o["spec"]["mirror"] = {"variant": variant, **({"percent": percent} if percent is not None else {})}

    return mutate


ME_INVALID: list[Any] = [
    pytest.param(
        _variants(("stable", "2.3.8", 90), ("canary", "2.4.1", 20)),
        "weights of the live (non-mirror) variants must add up to 100",
        id="weights-not-100",
    ),
    pytest.param(
        _variants(("stable", "2.3.8", 50), ("stable", "2.4.1", 50)),
        "variant names must be unique",
        id="duplicate-variant-names",
    ),
    pytest.param(
        _mirror("shadow"),
        "mirror.variant must name one of spec.variants",
        id="mirror-unknown-variant",
    ),
    pytest.param(
        _both(_variants(("stable", "2.3.8", 100), ("shadow", "2.4.1", 10)), _mirror("shadow")),
        "the mirror variant only receives copies of traffic; its weight must be 0",
        id="mirror-with-weight",
    ),
    pytest.param(
        _both(_variants(("stable", "2.3.8", 100), ("shadow", "2.4.1", 0)), _mirror("shadow", 150)),
        "spec.mirror.percent in body should be less than or equal to 100",
        id="mirror-percent-over-100",
    ),
    pytest.param(
        _variants(("stable", "latest", 100)),
        "variant version must be an exact semantic version such as 2.3.8 (no 'latest', no ranges)",
        id="variant-version-latest",
    ),
    pytest.param(
        _variants(("stable", "^2.3", 100)),
        "variant version must be an exact semantic version such as 2.3.8 (no 'latest', no ranges)",
        id="variant-version-range",
    ),
    pytest.param(
        lambda o: o["spec"].update(routing={"router": "istio"}),
        "routing.hosts is required for the istio router",
        id="istio-without-hosts",
    ),
    pytest.param(
        lambda o: o["spec"].update(routing={"router": "gatewayAPI"}),
        "routing.parentRefs is required for the gatewayAPI router",
        id="gateway-api-without-parent-refs",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), ME_INVALID)
def test_invalid_model_endpoint_refused(
    kube: client.ApiClient, namespace: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    msg = _refused(lambda: _create(kube, namespace, _mutated(model_endpoint, mutate)))
    assert message in msg


def test_mirror_variant_does_not_count_towards_100(kube: client.ApiClient, namespace: str) -> None:
    obj = _mutated(
        model_endpoint,
        _both(_variants(("stable", "2.3.8", 100), ("shadow", "2.4.1", 0)), _mirror("shadow", 20)),
    )
    created = _create(kube, namespace, obj)
    assert created["spec"]["mirror"] == {"variant": "shadow", "percent": 20}


def test_valid_objects_accepted_and_listed_by_category(
    cluster: ControlPlane, kube: client.ApiClient, namespace: str
) -> None:
    mv = _create(kube, namespace, model_version())
    assert mv["spec"]["stage"] == "candidate"  # defaulted by the schema
    me = _create(kube, namespace, model_endpoint())
    assert me["spec"]["requiredStage"] == "production"

    def listed(what: str) -> list[str]:
        return sorted(cluster.kubectl("get", what, "-n", namespace, "-o", "name").stdout.split())

    # The category lists every kind of ours. A running operator (started by an earlier test of the
    # session, or not) creates the model's registry record (a Model) at any moment: the two listings
    # agree once it has, or when it does not run.
    both: tuple[list[str], list[str]] = ([], [])

    def agree() -> bool:
        nonlocal both
        both = (listed("models"), listed("mv,mep,mdl,mapr"))
        return both[0] == both[1]

    wait_for(agree, 30, "the category listing and the kinds' listing agree", interval=0.5)
    out = both[0]
    assert "modelversion.modelversioning.io/fraud-detector-v2.3.8" in out
    assert "modelendpoint.modelversioning.io/fraud-detector" in out
    assert set(out) - {"model.modelversioning.io/fraud-detector"} == {
        "modelversion.modelversioning.io/fraud-detector-v2.3.8",
        "modelendpoint.modelversioning.io/fraud-detector",
    }, out


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param(
            {"spec": {"artifact": {"uri": "s3://models/fraud-detector/2.3.8/other.onnx"}}},
            "artifact",
            id="artifact-uri",
        ),
        pytest.param({"spec": {"artifact": {"sha256": "0" * 64}}}, "artifact", id="artifact-sha256"),
        pytest.param({"spec": {"lineage": {"codeCommit": "abcdef12"}}}, "lineage", id="lineage-commit"),
        pytest.param({"spec": {"metrics": {"auc": 0.99}}}, "metrics", id="metrics"),
        pytest.param(
            {"spec": {"runtime": {"image": "ghcr.io/example/xgb-server:9.9"}}}, "runtime", id="runtime"
        ),
    ],
)
def test_model_version_is_immutable(
    kube: client.ApiClient, namespace: str, patch: dict[str, Any], field: str
) -> None:
    _create(kube, namespace, model_version())
    msg = _refused(lambda: _patch_mv(kube, namespace, "fraud-detector-v2.3.8", patch))
    assert f"ModelVersion 2.3.8 is immutable (spec.{field} changed); register a new version" in msg


def test_model_version_stage_and_description_may_change(kube: client.ApiClient, namespace: str) -> None:
    _create(kube, namespace, model_version())
    out = _patch_mv(
        kube,
        namespace,
        "fraud-detector-v2.3.8",
        {"spec": {"stage": "staging", "description": "ready for QA"}},
    )
    assert out["spec"]["stage"] == "staging"
    assert out["spec"]["description"] == "ready for QA"
    assert out["spec"]["artifact"]["sha256"] == SHA
    assert out["metadata"]["generation"] == 2


def test_malformed_stage_refused(kube: client.ApiClient, namespace: str) -> None:
    # Stage names are open (a Model may define its own, e.g. "approved"), but they are DNS-label-like:
    # what no stage graph can name is refused by the API server.
    _create(kube, namespace, model_version())
    msg = _refused(lambda: _patch_mv(kube, namespace, "fraud-detector-v2.3.8", {"spec": {"stage": "Prod!"}}))
    assert "spec.stage" in msg and "should match" in msg
