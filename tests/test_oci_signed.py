"""An oci:// version under a trust policy (issue 26: oci:// artifacts and signed models together).

Signatures of oci:// artifacts will be OCI referrers, which are not read yet: such an artifact has no
signature location (artifacts.signature.signature_location is the seam), admission refuses a
signatureUri on it and `kubectl models register` will not sign it. Where a trust policy requires a
signature the version is refused with SignatureMissing (no slot, traffic stays), below requiredFrom it
serves as before, and nothing crashes: the manifest and its layers are still verified and laid out.
Through a REAL registry (Debian's docker-registry on loopback, e2e/oci_registry.py)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import test_modelversion_reconciler as harness
import test_signed_versions as signed
from modelversioning.api import wire as R
from modelversioning.api.artifact import Artifact
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import TrustEntry, TrustMaterial, verify_artifact, verify_in_child
from modelversioning.artifacts.signature import signature_location
from modelversioning.cli import verify as verify_cli
from modelversioning.cli.kubectl_models import app
from modelversioning.domain import conditions as cond
from modelversioning.domain.endpoint_plan import NO_SLOT_REASONS
from modelversioning.handlers.modelversion import ModelVersionReconciler, make_verifier
from modelversioning.handlers.store import Store
from modelversioning.handlers.trust import init_trust_json
from signing_keys import key_signer

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import Pushed, RegistryServer, push_oras  # noqa: E402

POLICY = ArtifactPolicy(
    allowed_schemes=["oci"], allowed_private_networks=["127.0.0.0/8"], plain_http_registries=["127.0.0.1"]
)
HEX = "ab" * 32
PINNED = f"oci://registry.example.com/models/fraud:2.4.1@sha256:{HEX}"
FILES = {"model.onnx": b"w" * 5000, "config.json": b"{}"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer) -> tuple[str, Pushed]:
    p = push_oras(registry.url, "models/signed", FILES, tag="2.4.1")
    return f"oci://{registry.netloc}/models/signed:2.4.1@{p.digest}", p


def trust_material(tmp_path: Path, *, enforce: bool = False) -> TrustMaterial:
    """A trusted key, and a signatureUri naming a file that is there: oci:// must not read it."""
    bundle = tmp_path / "elsewhere.sig"
    bundle.write_text("{}")
    entry = TrustEntry("Model m: keys/release", "Model m", "key", key_signer().public_pem)
    return TrustMaterial((entry,), policy="p1", signature_uri=bundle.as_uri(), enforce=enforce)


# ---- where the signature is, admission, register -------------------------------------------------------
def test_an_oci_artifact_has_no_signature_location_whatever_signature_uri_says() -> None:
    assert signature_location(PINNED) is None
    assert signature_location(PINNED, "https://sigs.example.com/fraud.sig") is None
    assert signature_location("s3://b/models/fraud/2.4.1/") == "s3://b/models/fraud/2.4.1.sig"  # unchanged
    assert signature_location("s3://b/m/", "s3://b/sigs/m.sig") == "s3://b/sigs/m.sig"


def test_admission_refuses_a_signature_uri_on_an_oci_artifact() -> None:
    with pytest.raises(ValidationError, match="OCI referrers"):
        Artifact.model_validate({"uri": PINNED, "sha256": HEX, "signatureUri": "https://s.example.com/f.sig"})
    assert Artifact.model_validate({"uri": PINNED, "sha256": HEX}).signature_uri is None
    s3 = {"uri": "s3://b/m/", "sha256": HEX, "signatureUri": "s3://b/m.sig"}
    assert Artifact.model_validate(s3).signature_uri == "s3://b/m.sig"  # other schemes: unchanged
    rules = [r["rule"] for r in Artifact.model_config["json_schema_extra"]["x-kubernetes-validations"]]
    assert "!self.uri.startsWith('oci://') || !has(self.signatureUri)" in rules  # the API server's copy


def test_register_will_not_sign_an_oci_artifact(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(b"not read")
    from test_oci_register import REGISTER

    argv = ["--artifact", "oci://registry.invalid/ml/fraud:2.4.1", "--sha256", HEX, "--sign-key", str(key)]
    r = CliRunner().invoke(app, [*REGISTER, *argv])
    assert r.exit_code == 2 and "oci:// artifacts cannot be signed yet" in r.output, r.output
    assert r.stdout == ""  # nothing printed for GitOps


# ---- the verifier: the digest verified, the signature missing -------------------------------------------
def test_the_operators_verifier_finds_no_signature_for_an_oci_artifact(pushed, tmp_path: Path) -> None:
    uri, p = pushed
    r = verify_in_child(uri, p.hex, policy=POLICY, trust=trust_material(tmp_path))  # the worker process
    assert r.ok and (r.layout, r.files) == ("oras", 2), r.message  # the manifest and layers verified
    assert r.signature is not None
    assert (r.signature.outcome, r.signature.policy) == (R.SIGNATURE_MISSING, "p1")
    assert "OCI referrers" in r.signature.message and not r.signature.matched


def test_the_init_container_refuses_an_oci_artifact_whose_signature_is_required(
    pushed, tmp_path: Path
) -> None:
    uri, p = pushed
    dest = tmp_path / "dest"
    r = verify_artifact(uri, p.hex, policy=POLICY, dest=dest, trust=trust_material(tmp_path, enforce=True))
    assert r.reason == R.SIGNATURE_MISSING and not r.ok
    assert not dest.exists() or not any(dest.rglob("*"))  # nothing laid out for the runtime
    trust = json.dumps(replace(trust_material(tmp_path), enforce=True).to_dict())
    argv = [uri, "--sha256", p.hex, "--dest", str(tmp_path / "d2"), "--output", "json",
            "--policy-json", POLICY.model_dump_json(by_alias=True), "--trust-json", trust]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify_cli.main(argv)
    doc = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (code, doc["reason"]) == (verify_cli.EXIT_SIGNATURE, R.SIGNATURE_MISSING)


# ---- the reconciler: SignatureMissing where it is required, unchanged below ------------------------------
def reconcile(uri: str, p: Pushed, *, stage: str, required_from: str) -> tuple[dict, signed.Kube]:
    store = Store()
    kube = signed.Kube(store, {(harness.NS, "release-key"): {"key.pub": key_signer().public_pem}})
    r = ModelVersionReconciler(
        kube,  # type: ignore[arg-type]
        store,
        harness.Settings(),
        make_verifier(POLICY, in_process=True),
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: None,
    )
    trust = {
        "requiredFrom": required_from,
        "keys": [{"name": "release", "publicKeyRef": {"name": "release-key", "key": "key.pub"}}],
    }
    md = {"namespace": harness.NS, "name": "m", "resourceVersion": "1", "uid": "mu", "generation": 1}
    store.upsert("Model", {"metadata": md, "spec": {"trust": trust}})
    body = harness.mv(stage)
    body["spec"]["artifact"] = {"uri": uri, "sha256": p.hex}
    store.upsert("ModelVersion", body)
    return signed.settle(r), kube


def test_an_oci_version_where_a_signature_is_required_is_refused_with_signature_missing(pushed) -> None:
    uri, p = pushed
    st, kube = reconcile(uri, p, stage="candidate", required_from="candidate")
    verified = cond.get(st["conditions"], "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", R.SIGNATURE_MISSING), verified
    assert "OCI referrers" in verified["message"]
    assert ("event", ("Warning", R.SIGNATURE_MISSING)) in kube.calls
    assert R.SIGNATURE_MISSING in NO_SLOT_REASONS  # no Deployment for it: traffic stays where it was
    art = st["artifact"]
    assert (art["layout"], art["signature"]["outcome"]) == ("oras", R.SIGNATURE_MISSING)
    assert "acceptedBy" not in art["signature"] and init_trust_json(st, None) is None


def test_an_oci_version_below_required_from_serves_as_before(pushed) -> None:
    uri, p = pushed
    st, _ = reconcile(uri, p, stage="candidate", required_from="production")
    verified = cond.get(st["conditions"], "ArtifactVerified")
    assert (verified["status"], verified["reason"], st["stage"]) == ("True", R.VERIFIED, "candidate")
    assert "(not required at candidate)" in verified["message"]
    assert st["artifact"]["contentDigest"] and init_trust_json(st, None) is None  # the pod: no anchors
