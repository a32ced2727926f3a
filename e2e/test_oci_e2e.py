"""oci:// artifacts on the real data plane (issue 26, part 1): a real registry (docker-registry,
distribution 2.8, with htpasswd) on the real node's address, real model pods whose init container (the
operator image) pulls and verifies the manifest and every layer, Traefik in front, real requests.

* A version whose artifact is an ORAS artifact pinned by digest, pulled with a dockerconfigjson Secret,
  rolls out and answers; status.artifact lists what was laid out.
* A layer tampered with on the registry's disk after the operator verified the version never answers:
  the init container refuses it (LayerDigestMismatch), the version is re-verified at once and refused,
  and every request of the load is answered by the version that served before.

The session operator is reconfigured for this module (oci allowed, the registry reached over HTTP) on
top of the data plane's own configuration, and restored after.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, model_version, wait_for
from images import OPERATOR_IMAGE
from oci_registry import Pushed, push_oras
from oci_serving import SECRET, pull_secret, registries
from test_dataplane import Load, _init_report, endpoint, live_on

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def registry(dataplane: DataPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(the registry the pods pull from, with htpasswd; one without auth on the same storage, to push),
    both on the node's address; the operator allows oci:// and reaches the registry over HTTP."""
    with registries(dataplane, tmp_path_factory.mktemp("oci-registry")) as both:
        yield both


@pytest.fixture
def objs(kube, namespace, dp, registry) -> Objects:  # type: ignore[no-untyped-def]
    o = Objects(kube, namespace)
    pull_secret(o, registry[0])
    return o


def register_oci(registry: tuple[Any, Any], objs: Objects, model: str, version: str) -> Pushed:
    """An ORAS artifact (model.bin) pushed under <namespace>/<model>:<version>, and a ModelVersion pinning
    its manifest digest with the registry Secret; the runtime is the reference model server."""
    pull, push = registry
    data = f"{model} {version} weights {secrets.token_hex(4)}\n".encode()
    pushed = push_oras(push.url, f"{objs.ns}/{model}", {"model.bin": data}, tag=version)
    uri = f"oci://{pull.netloc}/{objs.ns}/{model}:{version}@{pushed.digest}"
    mv = model_version(model, version, uri, pushed.hex, stage="production")
    mv["spec"]["artifact"]["secretRef"] = {"name": SECRET}
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"], "port": 8080,
        "healthPath": "/healthz",
    }  # fmt: skip
    objs.create(mv)
    return pushed


def test_an_oci_version_pulled_with_a_secret_rolls_out_and_answers(dp, objs, registry):  # type: ignore[no-untyped-def]
    pushed = register_oci(registry, objs, "ocimodel", "1.0.0")
    wait_for(lambda: cond_is(objs.mv("ocimodel-v1.0.0"), "ArtifactVerified", "True"), 120, "1.0.0 verified")
    art = objs.mv("ocimodel-v1.0.0")["status"]["artifact"]
    assert (art["digest"], art["layout"], [c["path"] for c in art["contents"]]) == (
        pushed.hex,
        "oras",
        ["model.bin"],
    )
    objs.create(endpoint(dp, "ocimodel", "ocimodel", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("ocimodel"), "Ready", "True"), 300, "1.0.0 Ready on real pods")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    pull, _ = registry
    blob_pulls = [ln for ln in pull.access_log() if f"/v2/{objs.ns}/ocimodel/blobs/{pushed.layers[0]}" in ln]
    assert len(blob_pulls) >= 2  # the operator's verification and the pod's init container


def test_a_tampered_oci_layer_never_answers(dp, objs, registry):  # type: ignore[no-untyped-def]
    register_oci(registry, objs, "ocitamper", "1.0.0")
    objs.create(endpoint(dp, "ocitamper", "ocitamper", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("ocitamper"), "Ready", "True"), 300, "1.0.0 live")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    pushed = register_oci(registry, objs, "ocitamper", "1.1.0")
    wait_for(lambda: cond_is(objs.mv("ocitamper-v1.1.0"), "ArtifactVerified", "True"), 60, "1.1.0 verified")
    pull, _ = registry
    stored: Path = pull.blob_path(pushed.layers[0])
    data = stored.read_bytes()
    stored.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, other bytes
    with Load(dp) as load:
        objs.patch_mep(
            "ocitamper", {"spec": {"variants": [{"name": "main", "version": "1.1.0", "weight": 100}]}}
        )
        seen: list[Any] = []

        def refused() -> bool:
            seen[:] = objs.core.list_namespaced_pod(
                objs.ns, label_selector="modelversioning.io/version=1.1.0"
            ).items
            return any(
                (r := _init_report(p)) is not None and r.get("reason") == "LayerDigestMismatch" for p in seen
            )

        wait_for(refused, 180, "the 1.1.0 pod's init container to refuse the layer")
        wait_for(
            lambda: cond_is(objs.mv("ocitamper-v1.1.0"), "ArtifactVerified", "False", "LayerDigestMismatch"),
            60, "1.1.0 re-verified: LayerDigestMismatch",
        )  # fmt: skip
        time.sleep(3)  # requests keep coming meanwhile
    assert not any(c.type == "Ready" and c.status == "True" for p in seen for c in p.status.conditions or [])
    statuses = Counter(s for _, s, _, _ in load.log)
    served = Counter(v for _, s, v, _ in load.log if s == 200)
    print(f"during the tampered oci rollout: {dict(statuses)} {dict(served)}")
    assert set(statuses) == {200} and set(served) == {"1.0.0"}
    variant = objs.mep("ocitamper")["status"]["variants"][0]
    assert variant["reason"] == "DigestMismatch", json.dumps(variant)
