"""``kubectl models register --sign-key/--sign-cert``: the artifact is signed (OpenSSF Model Signing,
model-signing's own signers) from the digests register computed, the signature is stored where the
operator reads it, and the operator's verifier accepts it; keys and certificates are made here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import TrustEntry, TrustMaterial, verify_artifact
from signing_keys import ca, cert_signer, key_signer, pem_cert
from test_kubectl_models import REGISTER, _git_repo, _run, needs_git


@pytest.fixture()
def art(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"w" * 1000)
    (d / "config.json").write_text("{}")
    return d


def register(tmp_path: Path, art: Path, *extra: str):
    return _run([*REGISTER, "--artifact", str(art), "--code-dir", str(tmp_path / "code"), *extra])


def operator_check(doc: dict, tmp_path: Path, entry: TrustEntry):
    a = doc["spec"]["artifact"]
    trust = TrustMaterial((entry,), signature_uri=a.get("signatureUri"))
    pol = ArtifactPolicy(allowed_schemes=["file"], file_roots=[str(tmp_path)])
    return verify_artifact(a["uri"], a["sha256"], policy=pol, trust=trust, env={}).signature


@needs_git
def test_register_signs_with_a_key_beside_the_directory(tmp_path: Path, art: Path) -> None:
    _git_repo(tmp_path / "code")
    signer = key_signer()
    key, _, _ = signer.files(tmp_path, "release")
    r = register(tmp_path, art, "--sign-key", str(key))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "model.sig").is_file() and "signed (key" in r.stderr
    doc = yaml.safe_load(r.stdout)
    assert "signatureUri" not in doc["spec"]["artifact"]  # the default location: nothing to record
    s = operator_check(
        doc,
        tmp_path,
        TrustEntry("Model fraud-detector: keys/release", "Model fraud-detector", "key", signer.public_pem),
    )
    assert s is not None and s.outcome == R.SIGNED and s.method == "key"


@needs_git
def test_register_signs_with_a_certificate_chain(tmp_path: Path, art: Path) -> None:
    _git_repo(tmp_path / "code")
    root = ca()
    key, cert, chain = cert_signer(root).files(tmp_path, "ci")
    bundle = tmp_path / "ci-bundle.pem"
    bundle.write_bytes(cert.read_bytes() + chain[0].read_bytes())  # the certificate, then its chain
    where = (tmp_path / "sigs" / "fraud.sig").as_uri()
    (tmp_path / "sigs").mkdir()
    r = register(tmp_path, art, "--sign-key", str(key), "--sign-cert", str(bundle), "--signature-uri", where)
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.stdout)
    assert doc["spec"]["artifact"]["signatureUri"] == where
    entry = TrustEntry(
        "Model f: certificates/ci",
        "Model f",
        "certificate",
        pem_cert(root[1]).decode(),
        "release@acme.example",
    )
    s = operator_check(doc, tmp_path, entry)
    assert s is not None and (s.outcome, s.method, s.signer) == (
        R.SIGNED,
        "certificate",
        "release@acme.example",
    )


@needs_git
def test_an_http_location_is_written_locally_to_publish(tmp_path: Path, art: Path) -> None:
    _git_repo(tmp_path / "code")
    key, _, _ = key_signer().files(tmp_path, "k")
    r = register(tmp_path, art, "--uri", "https://models.example.com/fraud/2.4.1/", "--sign-key", str(key))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "model.sig").is_file()
    assert "publish" in r.stderr and "https://models.example.com/fraud/2.4.1.sig" in r.stderr


@needs_git
def test_signing_refuses_a_wrong_digest_and_bad_options(tmp_path: Path, art: Path) -> None:
    _git_repo(tmp_path / "code")
    key, _, _ = key_signer().files(tmp_path, "k")
    r = register(tmp_path, art, "--sign-key", str(key), "--sha256", "0" * 64)
    assert r.exit_code == 1 and "nothing signed" in r.output and not (tmp_path / "model.sig").exists()
    r = register(tmp_path, art, "--sign-cert", str(key))
    assert r.exit_code == 2 and "need --sign-key" in r.output
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("nope")
    r = register(tmp_path, art, "--sign-key", str(not_a_key))
    assert r.exit_code == 1 and "cannot sign" in r.output


# ---- describe and lineage show the signer, the method and the policy that accepted it ----------------

SIGNATURE = {
    "outcome": R.SIGNED,
    "method": "certificate",
    "signer": "release@acme.example",
    "issuer": "CN=Acme Model Signing Root",
    "notAfter": "2030-01-01T00:00:00Z",
    "acceptedBy": "Model fraud-detector and ModelPlatformPolicy corp",
    "uri": "s3://b/models/fraud/2.4.1.sig",
}


def signed_mv() -> dict:
    from test_kubectl_models import new_mv

    m = new_mv()
    m["status"]["artifact"]["signature"] = dict(SIGNATURE)
    return m


def test_describe_shows_the_signer_the_method_and_who_accepted_it() -> None:
    from modelversioning.cli.models import render, terminal, views

    v = views.describe_view(signed_mv())
    assert v["verification"]["signature"]["location"] == SIGNATURE["uri"]
    text = " ".join(terminal.to_text(render.describe_renderable(v)).split())
    assert "Signature: certificate release@acme.example (issuer CN=Acme Model Signing Root)" in text
    assert "accepted by Model fraud-detector and ModelPlatformPolicy corp" in text


def test_lineage_shows_the_signature_or_why_not() -> None:
    from modelversioning.cli.models.registry_views import lineage_view
    from modelversioning.cli.models.render_registry import lineage_renderable
    from modelversioning.cli.models.terminal import to_text

    m = signed_mv()
    text = " ".join(to_text(lineage_renderable(lineage_view(m, [], None))).split())
    assert "Signed certificate release@acme.example" in text and "accepted by Model fraud-detector" in text
    m["status"]["artifact"]["signature"] = {"outcome": R.SIGNER_NOT_TRUSTED, "message": "key sha256:ab.."}
    text = " ".join(to_text(lineage_renderable(lineage_view(m, [], None))).split())
    assert "Signed SignerNotTrusted: key sha256:ab.." in text
    del m["status"]["artifact"]["signature"]
    text = " ".join(to_text(lineage_renderable(lineage_view(m, [], None))).split())
    assert "not checked (no trust policy)" in text
