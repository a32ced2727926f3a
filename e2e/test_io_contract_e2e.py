"""The SemVer I/O contract on the real control plane (issue 27, part 4): 1.0.0 is registered with a
signature; 1.1.0, whose input ``x`` changed shape, is refused (IOSignatureChanged naming the tensor, a
Warning Event, never Ready) and an endpoint naming it as a canary gets no Deployment for it and no
traffic; 2.0.0 with the same change is accepted (a MAJOR may change anything); the Model's record keeps
the accepted signatures' digests."""

from __future__ import annotations

from typing import Any

import pytest

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

X4 = {
    "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1]}],
}
X5 = {
    "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 5]}],
    "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1]}],
}


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


def register(objs: Objects, root: Any, version: str, signature: dict[str, Any]) -> None:
    uri, sha = make_artifact(root, "iris", version)
    objs.create(model_version("iris", version, uri, sha, stage="production", signature=signature))


def settled(objs: Objects, name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return wait_for(
        lambda: (m := objs.mv(name)) and cond_is(m, "ArtifactVerified", status, reason) and m,
        60,
        f"{name}: ArtifactVerified={status} {reason or ''}",
    )


def test_a_minor_that_changes_an_input_is_refused_and_a_major_is_not(objs, artifact_root):
    register(objs, artifact_root, "1.0.0", X4)
    first = settled(objs, "iris-v1.0.0", "True")
    assert first["status"]["ioSignature"]["source"] == "spec.signature"
    assert first["status"]["ioSignature"]["contract"]["reason"] == "IOSignatureNotChecked"
    wait_for(lambda: objs.mv("iris-v1.0.0")["status"]["stage"] == "production", 30, "1.0.0 in production")

    register(objs, artifact_root, "1.1.0", X5)
    refused = settled(objs, "iris-v1.1.0", "False", "IOSignatureChanged")
    said = condition(refused, "ArtifactVerified")["message"]
    assert "input 'x' shape [-1, 4] -> [-1, 5]" in said and "1.0.0" in said and "2.0.0" in said
    assert cond_is(refused, "Ready", "False", "IOSignatureChanged")
    assert refused["status"]["stage"] == "candidate"  # it asked for production: never walked
    assert refused["status"]["ioSignature"]["contract"]["baseline"] == "1.0.0"
    events = wait_for(
        lambda: (r := {e.reason: e for e in objs.events("iris-v1.1.0")}) and "IOSignatureChanged" in r and r,
        30,
        "the IOSignatureChanged Event",
    )
    assert (
        events["IOSignatureChanged"].type == "Warning" and "input 'x'" in events["IOSignatureChanged"].message
    )

    # an endpoint naming it as a canary: no Deployment for it, all traffic stays on 1.0.0
    objs.create(
        model_endpoint(
            "iris",
            "iris",
            [
                {"name": "stable", "version": "1.0.0", "weight": 100},
                {"name": "canary", "version": "1.1.0", "weight": 0},
            ],
        )
    )
    stable = objs.slot("iris", "stable")
    ep = wait_for(
        lambda: (
            (e := objs.mep("iris"))
            and any(
                v["name"] == "canary" and v.get("reason")
                for v in (e.get("status") or {}).get("variants") or []
            )
            and e
        ),
        60,
        "the refused canary reported",
    )
    canary = next(v for v in ep["status"]["variants"] if v["name"] == "canary")
    assert not canary["eligible"] and not canary.get("serving")
    wait_for(
        lambda: [d.metadata.name for d in objs.apps.list_namespaced_deployment(objs.ns).items] == [stable],
        30,
        "only the stable variant's Deployment",
    )
    assert ep["status"]["traffic"].startswith("stable@1.0.0=100")

    register(objs, artifact_root, "2.0.0", X5)
    major = settled(objs, "iris-v2.0.0", "True", "Verified")
    assert major["status"]["ioSignature"]["contract"]["reason"] == "IOSignatureNotChecked"
    assert cond_is(objs.mv("iris-v1.1.0"), "ArtifactVerified", "False", "IOSignatureChanged")  # still refused

    # the registry's memory: the accepted signatures' digests, none for the refused version
    def records() -> dict[str, Any] | None:
        model = objs.co.get_namespaced_custom_object(GROUP, VERSION, objs.ns, "models", "iris")
        recs = {r["version"]: r for r in (model.get("status") or {}).get("versions") or []}
        return (
            recs
            if {"1.0.0", "1.1.0", "2.0.0"} <= recs.keys() and "signatureDigest" in recs["2.0.0"]
            else None
        )

    recs = wait_for(records, 30, "the Model records every version")
    assert recs["1.0.0"]["signatureDigest"] == first["status"]["ioSignature"]["digest"]
    assert (
        recs["2.0.0"]["signatureDigest"]
        == major["status"]["ioSignature"]["digest"]
        != recs["1.0.0"]["signatureDigest"]
    )
    assert "signatureDigest" not in recs["1.1.0"]
