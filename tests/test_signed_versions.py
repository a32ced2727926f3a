"""A signed ModelVersion through its reconciler: the Model's trust policy read from the watch cache, its
public key read by reference (a ConfigMap of the Model's namespace), the real verifier (in process)
checking a real model-signing signature against the digests it computed, and what the status, the
Events and the endpoint's init container get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

import test_modelversion_reconciler as harness
from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import digest_local
from modelversioning.domain import conditions as cond
from modelversioning.domain.endpoint_plan import NO_SLOT_REASONS
from modelversioning.handlers.modelversion import ModelVersionReconciler
from modelversioning.handlers.store import Store
from modelversioning.handlers.trust import init_trust_json
from modelversioning.handlers.verification import make_verifier
from signing_keys import key_signer

NS, NAME = harness.NS, "m-v1.0.0"


class Kube(harness.FakeKube):
    def __init__(self, store: Store, configmaps: dict[tuple[str, str], dict[str, str]]) -> None:
        super().__init__(store)
        self.configmaps = configmaps
        self.reads: list[tuple[str, str]] = []

    def read_configmap(self, ns: str, name: str) -> dict[str, str]:
        self.reads.append((ns, name))
        if (ns, name) not in self.configmaps:
            raise ApiException(status=404, reason="Not Found")
        return self.configmaps[(ns, name)]


def setup(tmp_path: Path, public_pem: str, stage: str, required_from: str = "staging"):
    model = tmp_path / "m" / "1.0.0"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w" * 4096)
    store = Store()
    kube = Kube(store, {(NS, "release-key"): {"key.pub": public_pem}})
    policy = ArtifactPolicy(allowed_schemes=["file"], file_roots=[str(tmp_path)])
    r = ModelVersionReconciler(
        kube,  # type: ignore[arg-type]
        store,
        harness.Settings(),
        make_verifier(policy, in_process=True),
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: None,
    )
    trust = {
        "requiredFrom": required_from,
        "keys": [{"name": "release", "publicKeyRef": {"name": "release-key", "key": "key.pub"}}],
    }
    store.upsert(
        "Model",
        {
            "metadata": {"namespace": NS, "name": "m", "resourceVersion": "1", "uid": "mu", "generation": 1},
            "spec": {"trust": trust},
        },
    )
    body = harness.mv(stage)
    body["spec"]["artifact"] = {"uri": model.as_uri() + "/", "sha256": digest_local(model).sha256}
    store.upsert("ModelVersion", body)
    return model, store, kube, r


def settle(r: ModelVersionReconciler) -> dict[str, Any]:
    for _ in range(4):
        harness.run(r)
    writes = r.kube.kinds().count("status")  # type: ignore[attr-defined]
    harness.run(r)  # settled: another reconcile writes nothing
    assert r.kube.kinds().count("status") == writes  # type: ignore[attr-defined]
    return r.store.get("ModelVersion", NS, NAME)["status"]


def test_a_version_signed_by_the_trusted_key_is_verified_with_its_signer_and_the_pod_gets_the_anchors(
    tmp_path,
):
    signer = key_signer()
    model, store, kube, r = setup(tmp_path, signer.public_pem, "production")
    signer.sign(model, model.parent / "1.0.0.sig", tmp_path)
    st = settle(r)
    verified = cond.get(st["conditions"], "ArtifactVerified")
    assert verified["status"] == "True" and st["stage"] == "production", verified
    sig = st["artifact"]["signature"]
    assert (sig["outcome"], sig["method"], sig["acceptedBy"]) == (R.SIGNED, "key", "Model m")
    assert sig["matched"] == ["Model m: keys/release"] and kube.reads[0] == (NS, "release-key")
    anchors = json.loads(init_trust_json(st, None) or "{}")["entries"]
    assert [a["pem"] for a in anchors] == [signer.public_pem]  # the pod checks against the same key


@pytest.mark.parametrize("how", ["missing", "stranger"])
def test_an_unsigned_or_stranger_signed_version_at_production_is_refused_with_an_event_and_no_slot(
    tmp_path, how
):
    signer = key_signer()
    model, store, kube, r = setup(tmp_path, signer.public_pem, "production", required_from="candidate")
    if how == "stranger":
        key_signer().sign(model, model.parent / "1.0.0.sig", tmp_path)
    st = settle(r)
    verified = cond.get(st["conditions"], "ArtifactVerified")
    reason = R.SIGNATURE_MISSING if how == "missing" else R.SIGNER_NOT_TRUSTED
    assert (verified["status"], verified["reason"]) == ("False", reason), verified
    assert ("event", ("Warning", reason)) in kube.calls
    assert reason in NO_SLOT_REASONS  # the endpoint creates no Deployment for it; traffic stays put
    assert "acceptedBy" not in st["artifact"]["signature"] and init_trust_json(st, None) is None


def test_a_missing_trust_root_is_retried_not_guessed(tmp_path):
    signer = key_signer()
    model, store, kube, r = setup(tmp_path, signer.public_pem, "candidate")
    kube.configmaps.clear()
    st = settle(r)
    verified = cond.get(st["conditions"], "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", R.ACCESS_DENIED)
    assert "ConfigMap ns/release-key does not exist" in verified["message"]


def test_the_slot_of_a_signed_version_checks_its_signature_and_an_unsigned_one_is_unchanged():
    from modelversioning.render import render_deployment
    from test_render import ENDPOINT, SERVING, minimal_deployment_inputs

    spec, variant, version = minimal_deployment_inputs()
    plain = render_deployment(ENDPOINT, spec, variant, version, SERVING)
    anchors = '{"enforce":true,"entries":[{"id":"Model m: keys/release"}],"signatureUri":null}'
    signed = render_deployment(ENDPOINT, spec, variant, version, SERVING, trust_json=anchors)
    (init,) = signed["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][-2:] == ["--trust-json", anchors]
    assert "--trust-json" not in plain["spec"]["template"]["spec"]["initContainers"][0]["args"]
    # another pod template is another slot: pods verified without the anchors never take its traffic
    assert signed["metadata"]["name"] != plain["metadata"]["name"]
