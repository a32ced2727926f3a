"""Signed models end to end through the verifier (artifacts.verify_artifact with trust material) and
the init container (``modelversioning verify-artifact --trust-json``), with REAL signatures: keys and a
certificate chain generated here, bundles made by model-signing's own signing code. Every bad input
of issue 26 has its own outcome; the happy paths cover the key and the certificate methods."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import model_signing
import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, TrustEntry, TrustMaterial, digest_local, verify_artifact
from modelversioning.artifacts import hashing as hashing_mod
from modelversioning.artifacts.signature import sign_digests, signature_location
from modelversioning.cli import verify as verify_cli
from signing_keys import NOW, Signer, ca, cert_signer, key_signer, payload_of, with_payload


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    d = tmp_path / "models" / "fraud" / "2.4.1"
    (d / "tokenizer").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"weights " * 1000)
    (d / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return d


def policy(tmp_path: Path) -> ArtifactPolicy:
    return ArtifactPolicy(allowed_schemes=["file"], file_roots=[str(tmp_path)])


def uri_of(d: Path) -> str:
    return d.as_uri() + "/"


def sig_path(d: Path) -> Path:
    return d.parent / f"{d.name}.sig"  # beside the directory: <directory>.sig


def key_entry(signer: Signer, source: str = "Model fraud", name: str = "release") -> TrustEntry:
    return TrustEntry(f"{source}: keys/{name}", source, "key", signer.public_pem)


def cert_entry(root_cert, identity: str = "release@acme.example", issuer: str | None = None) -> TrustEntry:
    from signing_keys import pem_cert

    pem = pem_cert(root_cert).decode()
    return TrustEntry("Model fraud: certificates/ci", "Model fraud", "certificate", pem, identity, issuer)


def check(d: Path, tmp_path: Path, *entries: TrustEntry, enforce: bool = False):
    trust = TrustMaterial(tuple(entries), policy="p1", enforce=enforce)
    return verify_artifact(uri_of(d), digest_local(d).sha256, policy=policy(tmp_path), trust=trust, env={})


# ---- happy paths -----------------------------------------------------------------------------------


def test_a_key_signed_directory_is_signed_by_that_key(model: Path, tmp_path: Path) -> None:
    signer = key_signer()
    signer.sign(model, sig_path(model), tmp_path)
    r = check(model, tmp_path, key_entry(signer))
    assert r.ok and r.signature is not None
    s = r.signature
    assert (s.outcome, s.method, s.matched, s.policy) == (
        R.SIGNED,
        "key",
        ("Model fraud: keys/release",),
        "p1",
    )
    from modelversioning.artifacts.signature_crypto import key_fingerprint

    assert s.signer == f"sha256:{key_fingerprint(signer.public_pem)}" and s.uri == sig_path(model).as_uri()
    assert [a.id for a in s.anchors] == ["Model fraud: keys/release"]


def test_a_certificate_signed_directory_is_signed_by_its_identity(model: Path, tmp_path: Path) -> None:
    root = ca()
    cert_signer(root).sign(model, sig_path(model), tmp_path)
    r = check(model, tmp_path, cert_entry(root[1], issuer="Acme Model Signing Root"))
    s = r.signature
    assert r.ok and s is not None and s.outcome == R.SIGNED, s
    assert (s.method, s.signer, s.issuer) == (
        "certificate",
        "release@acme.example",
        "CN=Acme Model Signing Root",
    )
    assert s.not_after is not None and s.not_after > NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_single_file_is_signed_beside_it(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"onnx" * 100)
    signer = key_signer()
    signer.sign(f, Path(str(f) + ".sig"), tmp_path)
    trust = TrustMaterial((key_entry(signer),))
    r = verify_artifact(f.as_uri(), digest_local(f).sha256, policy=policy(tmp_path), trust=trust, env={})
    assert r.ok and r.signature is not None and r.signature.outcome == R.SIGNED


def test_the_signature_is_checked_against_the_digests_already_computed(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash once: every file is read and hashed exactly once, signature check included."""
    signer = key_signer()
    signer.sign(model, sig_path(model), tmp_path)
    hashed: list[str] = []
    original = hashing_mod._Hashing.file

    def counting(self, entry):  # type: ignore[no-untyped-def]
        hashed.append(entry.rel)
        return original(self, entry)

    sha = digest_local(model).sha256
    monkeypatch.setattr(hashing_mod._Hashing, "file", counting)
    trust = TrustMaterial((key_entry(signer),))
    r = verify_artifact(uri_of(model), sha, policy=policy(tmp_path), trust=trust, env={})
    assert r.signature is not None and r.signature.outcome == R.SIGNED
    assert sorted(hashed) == ["model.safetensors", "tokenizer/vocab.txt"]


def test_register_s_signature_is_a_model_signing_signature(model: Path, tmp_path: Path) -> None:
    """What `kubectl models register --sign-key/--sign-cert` makes from the digests it computed verifies
    with model-signing's own verifier (which hashes the model itself)."""
    digest = digest_local(model)
    signer = key_signer()
    key, _, _ = signer.files(tmp_path, "k")
    bundle = sign_digests(
        digest.entries, kind="directory", model_name="2.4.1", private_key_pem=key.read_bytes()
    )
    sig_path(model).write_bytes(bundle)
    pub = tmp_path / "k.pub"
    pub.write_text(signer.public_pem)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig_path(model))
    root = ca()
    cs = cert_signer(root)
    key, cert, chain = cs.files(tmp_path, "c")
    certs = cert.read_bytes() + chain[0].read_bytes()
    bundle = sign_digests(digest.entries, kind="directory", model_name="m", private_key_pem=key.read_bytes(),
                          certificate_pem=certs)  # fmt: skip
    sig_path(model).write_bytes(bundle)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(chain[0].read_bytes())
    verifier = model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[roots])
    verifier.verify(model, sig_path(model))
    assert check(model, tmp_path, cert_entry(root[1])).signature.outcome == R.SIGNED  # type: ignore[union-attr]


# ---- bad input: each its own outcome ----------------------------------------------------------------


def test_no_signature_is_missing(model: Path, tmp_path: Path) -> None:
    r = check(model, tmp_path, key_entry(key_signer()))
    assert r.ok and r.signature is not None and r.signature.outcome == R.SIGNATURE_MISSING


def test_a_key_no_policy_names_is_not_trusted(model: Path, tmp_path: Path) -> None:
    key_signer().sign(model, sig_path(model), tmp_path)  # a stranger's key
    s = check(model, tmp_path, key_entry(key_signer())).signature
    assert s is not None and s.outcome == R.SIGNER_NOT_TRUSTED and "no trust policy names" in s.message


def test_a_certificate_from_another_ca_or_identity_is_not_trusted(model: Path, tmp_path: Path) -> None:
    root = ca()
    cert_signer(ca("Stranger CA"), "release@acme.example").sign(model, sig_path(model), tmp_path)
    s = check(model, tmp_path, cert_entry(root[1])).signature  # the same identity, another root
    assert s is not None and s.outcome == R.SIGNER_NOT_TRUSTED and "chain" in s.message
    cert_signer(root, "intern@acme.example").sign(model, sig_path(model), tmp_path)
    s = check(model, tmp_path, cert_entry(root[1])).signature  # the right root, another identity
    assert s is not None and s.outcome == R.SIGNER_NOT_TRUSTED and "intern@acme.example" in s.message
    cert_signer(root).sign(model, sig_path(model), tmp_path)
    s = check(model, tmp_path, cert_entry(root[1], issuer="CN=Other CA")).signature  # another issuer
    assert s is not None and s.outcome == R.SIGNER_NOT_TRUSTED


def test_a_valid_signature_over_other_digests_is_a_digest_mismatch(model: Path, tmp_path: Path) -> None:
    signer = key_signer()
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"other weights")
    (other / "tokenizer").mkdir()
    (other / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    signer.sign(other, sig_path(model), tmp_path)  # the trusted key, over another model's files
    s = check(model, tmp_path, key_entry(signer)).signature
    assert s is not None and s.outcome == R.SIGNATURE_DIGEST_MISMATCH
    assert "other sha256: model.safetensors" in s.message and "vocab" not in s.message
    signer.sign(model, sig_path(model), tmp_path)
    (model / "extra.bin").write_bytes(b"added after signing")
    s = check(model, tmp_path, key_entry(signer)).signature
    assert s is not None and s.outcome == R.SIGNATURE_DIGEST_MISMATCH and "not signed: extra.bin" in s.message


def test_a_tampered_or_truncated_bundle_is_invalid(model: Path, tmp_path: Path) -> None:
    signer = key_signer()
    path = signer.sign(model, sig_path(model), tmp_path)
    good = json.loads(path.read_text())
    payload = payload_of(good)
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    path.write_text(json.dumps(with_payload(good, payload)))
    s = check(model, tmp_path, key_entry(signer)).signature
    assert s is not None and s.outcome == R.SIGNATURE_INVALID and "tampered" in s.message
    text = json.dumps(good)
    path.write_text(text[: len(text) // 2])
    s = check(model, tmp_path, key_entry(signer)).signature
    assert s is not None and s.outcome == R.SIGNATURE_INVALID and "truncated" in s.message
    del good["dsseEnvelope"]
    path.write_text(json.dumps(good))
    s = check(model, tmp_path, key_entry(signer)).signature
    assert s is not None and s.outcome == R.SIGNATURE_INVALID


def test_an_expired_certificate_is_reported_with_its_expiry(model: Path, tmp_path: Path) -> None:
    root = ca()
    expired = cert_signer(root, not_before=NOW - dt.timedelta(days=20), not_after=NOW - dt.timedelta(days=1))
    expired.sign(model, sig_path(model), tmp_path)
    s = check(model, tmp_path, cert_entry(root[1])).signature
    # the verifier reports what it found; the trust decision (domain.trust) and the pod refuse it
    assert s is not None and s.outcome == R.SIGNED and s.not_after is not None
    assert s.not_after < NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    r = check(model, tmp_path, cert_entry(root[1]), enforce=True)
    assert r.reason is Reason.CERTIFICATE_EXPIRED and not r.ok


def test_the_location_is_beside_the_artifact_and_none_where_there_is_no_beside() -> None:
    assert signature_location("s3://b/models/fraud/2.4.1/") == "s3://b/models/fraud/2.4.1.sig"
    assert signature_location("https://h/m/model.onnx") == "https://h/m/model.onnx.sig"
    assert signature_location("https://h/m/model.onnx?x=1") is None  # say where: signatureUri
    assert signature_location("s3://bucket/") is None
    assert signature_location("oci://r/m@sha256:" + "a" * 64) is None  # OCI referrers
    assert signature_location("s3://b/m/", "s3://b/sigs/m.sig") == "s3://b/sigs/m.sig"


def test_a_signature_inside_the_directory_need_not_cover_itself(model: Path, tmp_path: Path) -> None:
    signer = key_signer()
    inside = model / "model.sig"
    signer.sign(model, inside, tmp_path)  # model-signing leaves the signature file out
    trust = TrustMaterial((key_entry(signer),), signature_uri=inside.as_uri())
    r = verify_artifact(
        uri_of(model), digest_local(model).sha256, policy=policy(tmp_path), trust=trust, env={}
    )
    assert r.signature is not None and r.signature.outcome == R.SIGNED


# ---- the init container ------------------------------------------------------------------------------


def _init(model: Path, tmp_path: Path, dest: Path, anchors: list[TrustEntry]) -> tuple[int, dict]:
    trust = json.dumps({"entries": [a.to_dict() for a in anchors], "enforce": True})
    pol = policy(tmp_path).model_dump_json(by_alias=True)
    argv = [uri_of(model), "--sha256", digest_local(model).sha256, "--dest", str(dest), "--output", "json",
            "--policy-json", pol, "--trust-json", trust]  # fmt: skip
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify_cli.main(argv)
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_the_init_container_verifies_the_signature_again_before_moving_files(
    model: Path, tmp_path: Path
) -> None:
    signer = key_signer()
    signer.sign(model, sig_path(model), tmp_path)
    dest = tmp_path / "dest"
    code, doc = _init(model, tmp_path, dest, [key_entry(signer)])
    assert code == 0 and doc["signature"]["outcome"] == R.SIGNED
    assert (dest / "model.safetensors").exists()
    stranger = key_signer()
    stranger.sign(model, sig_path(model), tmp_path)  # re-signed by a stranger after the operator checked
    dest2 = tmp_path / "dest2"
    code, doc = _init(model, tmp_path, dest2, [key_entry(signer)])
    assert code == verify_cli.EXIT_SIGNATURE and doc["reason"] == R.SIGNER_NOT_TRUSTED
    assert not any(dest2.rglob("*.safetensors"))  # nothing moved into place


def test_the_init_container_needs_every_source_among_the_anchors(model: Path, tmp_path: Path) -> None:
    signer = key_signer()
    signer.sign(model, sig_path(model), tmp_path)
    platform = key_entry(key_signer(), "ModelPlatformPolicy corp", "corp")
    code, doc = _init(model, tmp_path, tmp_path / "d", [key_entry(signer), platform])
    assert code == verify_cli.EXIT_SIGNATURE and "ModelPlatformPolicy corp" in doc["message"]


def test_the_operator_s_worker_process_returns_the_signature_check(model: Path, tmp_path: Path) -> None:
    from modelversioning.artifacts import verify_in_child

    signer = key_signer()
    signer.sign(model, sig_path(model), tmp_path)
    trust = TrustMaterial((key_entry(signer),), policy="p9")
    r = verify_in_child(uri_of(model), digest_local(model).sha256, policy=policy(tmp_path), trust=trust)
    assert r.ok and r.signature is not None
    assert (r.signature.outcome, r.signature.policy, r.signature.matched) == (
        R.SIGNED,
        "p9",
        ("Model fraud: keys/release",),
    )
    assert r.signature.anchors[0].pem == signer.public_pem
