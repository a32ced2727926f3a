"""Signed oci:// artifacts (issue 26, part 2): the signature is an OCI referrer of the pinned manifest.

`kubectl models register --artifact oci://... --sign-key` fetches and hashes the files the manifest lays
out, signs them with model-signing's own signers and pushes the bundle as a referrer; the operator's
verifier (in its worker process) and the init container find it (referrers API, else the tag schema)
with the artifact's credentials and check it against the digests they computed while streaming.
Through a REAL registry (Debian's docker-registry, distribution 2.8: no referrers API, so the tag
schema) with htpasswd authentication (e2e/oci_registry.py); keys and certificates are made here.
Every bad input gets its own outcome: no referrer, a bundle over other digests, a tampered or truncated
bundle, a stranger's key, an expired certificate (the hostile registry's unbounded documents:
tests/test_oci_referrers.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import TrustEntry, TrustMaterial, verify_artifact, verify_in_child
from modelversioning.artifacts import oci_referrers as refs
from modelversioning.artifacts.signature import sign_digests
from modelversioning.cli import verify as verify_cli
from modelversioning.cli.kubectl_models import app
from signing_keys import (
    NOW,
    Signer,
    ca,
    cert_signer,
    key_signer,
    payload_of,
    pem_cert,
    pem_private,
    with_payload,
)
from test_oci_register import REGISTER

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import Pushed, RegistryServer, push_oras  # noqa: E402

POLICY = ArtifactPolicy(
    allowed_schemes=["oci"], allowed_private_networks=["127.0.0.0/8"], plain_http_registries=["127.0.0.1"]
)
FILES = {"model.onnx": b"w" * 5000, "config.json": b"{}"}
RELEASE = key_signer()  # the key the trust policy names
ROOT = ca()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    """(the registry with htpasswd: pulls and the signatures' pushes; one without auth on the same
    storage: the model's pushes)."""
    root = tmp_path_factory.mktemp("registry")
    with RegistryServer.start(root, auth="htpasswd") as pull, RegistryServer.start(root) as push:
        yield pull, push


@pytest.fixture
def docker_login(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pull, _ = registry
    (tmp_path / "config.json").write_text(pull.docker_config())  # your own docker login
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


_N = iter(range(1000))


def push_model(registry, files: dict[str, bytes] = FILES) -> tuple[str, Pushed]:
    """A new ORAS artifact (its own repository) and its pinned URI on the authenticated registry."""
    pull, push = registry
    repo = f"models/m{next(_N)}"
    p = push_oras(push.url, repo, files, tag="1.0.0")
    return f"oci://{pull.netloc}/{repo}:1.0.0@{p.digest}", p


def register_signed(uri: str, signer: Signer, tmp_path: Path, *, cert: bool = False) -> Any:
    """`kubectl models register --artifact <tag> --sign-key [--sign-cert]` (model-signing signs)."""
    key, crt, chain = signer.files(tmp_path, f"s{id(signer)}")
    extra = ["--sign-key", str(key)]
    if cert:
        assert crt is not None
        both = tmp_path / "cert-and-chain.pem"
        both.write_bytes(crt.read_bytes() + chain[0].read_bytes())
        extra += ["--sign-cert", str(both)]
    tag = uri.split("@", 1)[0]
    r = CliRunner().invoke(app, [*REGISTER, "--artifact", tag, "--plain-http", *extra])
    assert r.exit_code == 0, r.output
    return r


def secret(registry) -> dict[str, str]:
    return {".dockerconfigjson": registry[0].docker_config()}


def key_entry(signer: Signer = RELEASE) -> TrustEntry:
    return TrustEntry("Model m: keys/release", "Model m", "key", signer.public_pem)


def cert_entry() -> TrustEntry:
    roots = pem_cert(ROOT[1]).decode()
    return TrustEntry("Model m: certificates/ci", "Model m", "certificate", roots, "release@acme.example")


def operator_check(registry, uri: str, p: Pushed, entry: TrustEntry | None = None) -> Any:
    trust = TrustMaterial((entry or key_entry(),), policy="p1")
    r = verify_in_child(uri, p.hex, policy=POLICY, secret_data=secret(registry), trust=trust)
    assert r.ok and (r.layout, r.files) == ("oras", 2), r.message  # the manifest and layers verified
    assert r.signature is not None and r.signature.policy == "p1"
    return r.signature


def index_of(registry, uri: str, p: Pushed) -> dict[str, Any]:
    return dict(json.loads(_manifest(registry, repo_of(uri), refs.referrers_tag(p.digest))))


def repo_of(uri: str) -> str:
    return uri.split("/", 3)[3].split(":", 1)[0]


def _manifest(registry, repo: str, reference: str) -> bytes:
    import urllib.request

    accept = f"{refs.OCI_MANIFEST}, {refs.OCI_INDEX}"
    req = urllib.request.Request(
        f"{registry[1].url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


# ---- signing and the verifier: the happy paths ----------------------------------------------------------
def test_register_signs_an_oci_artifact_and_stores_the_bundle_as_a_tag_schema_referrer(
    registry, docker_login, tmp_path: Path
) -> None:
    uri, p = push_model(registry)
    r = register_signed(uri, RELEASE, tmp_path)
    artifact = yaml.safe_load(r.stdout)["spec"]["artifact"]
    assert (artifact["uri"], artifact["sha256"]) == (uri, p.hex) and "signatureUri" not in artifact
    assert (
        "signed (key, OpenSSF Model Signing)" in r.stderr
        and f"tag schema {p.digest.replace(':', '-')}" in r.stderr
    )
    index = index_of(registry, uri, p)  # distribution 2.8 has no referrers API: the tag schema's index
    (entry,) = index["manifests"]
    assert entry["artifactType"] == refs.BUNDLE_TYPE
    assert entry["annotations"][refs.PREDICATE_ANNOTATION] == refs.MODEL_SIGNING_PREDICATE
    repo = repo_of(uri)
    referrer = json.loads(_manifest(registry, repo, entry["digest"]))
    assert referrer["subject"]["digest"] == p.digest and len(referrer["layers"]) == 1
    sig = operator_check(registry, uri, p)
    assert (sig.outcome, sig.method, sig.matched) == (R.SIGNED, "key", ("Model m: keys/release",)), sig
    assert sig.uri == f"oci://{registry[0].netloc}/{repo}@{entry['digest']}"  # where it was found
    assert "over 2 files verified" in sig.message


def test_signing_twice_lists_both_and_a_second_signer_is_added_not_replacing(
    registry, docker_login, tmp_path: Path
) -> None:
    uri, p = push_model(registry)
    register_signed(uri, key_signer(), tmp_path)  # a stranger first
    register_signed(uri, RELEASE, tmp_path)
    assert len(index_of(registry, uri, p)["manifests"]) == 2
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNED  # the trusted one is found among them


def test_register_signs_an_oci_artifact_with_a_certificate_chain(registry, docker_login, tmp_path) -> None:
    uri, p = push_model(registry)
    register_signed(uri, cert_signer(ROOT), tmp_path, cert=True)
    sig = operator_check(registry, uri, p, cert_entry())
    assert (sig.outcome, sig.method, sig.signer) == (R.SIGNED, "certificate", "release@acme.example"), sig


def test_register_refuses_a_signature_uri_for_an_oci_artifact(registry, docker_login, tmp_path) -> None:
    uri, _ = push_model(registry)
    key, _, _ = RELEASE.files(tmp_path, "k")
    argv = [
        "--artifact",
        uri.split("@")[0],
        "--plain-http",
        "--sign-key",
        str(key),
        "--signature-uri",
        "s3://b/x",
    ]
    r = CliRunner().invoke(app, [*REGISTER, *argv])
    assert r.exit_code == 2 and "OCI referrer" in r.output and r.stdout == "", r.output


def test_admission_refuses_a_signature_uri_on_an_oci_artifact() -> None:
    from pydantic import ValidationError

    from modelversioning.api.artifact import Artifact
    from modelversioning.artifacts.signature import signature_location

    pinned = "oci://registry.example.com/models/fraud:2.4.1@sha256:" + "ab" * 32
    with pytest.raises(ValidationError, match="its signatures are OCI referrers of its manifest"):
        Artifact.model_validate(
            {"uri": pinned, "sha256": "ab" * 32, "signatureUri": "https://s.example.com/f"}
        )
    assert signature_location(pinned, "https://sigs.example.com/fraud.sig") is None  # never beside


# ---- bad input: each its own outcome ----------------------------------------------------------------------
def test_no_referrer_is_signature_missing_and_the_init_container_lays_out_nothing(registry, tmp_path) -> None:
    uri, p = push_model(registry)
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNATURE_MISSING and "lists no model-signing referrer" in sig.message
    dest = tmp_path / "dest"
    trust = TrustMaterial((key_entry(),), enforce=True)
    r = verify_artifact(uri, p.hex, policy=POLICY, secret_data=secret(registry), dest=dest, trust=trust)
    assert r.reason == R.SIGNATURE_MISSING and not r.ok
    assert not dest.exists() or not any(dest.rglob("*"))  # nothing laid out for the runtime


def attach(registry, uri: str, bundle: bytes) -> None:
    """Push ``bundle`` as a referrer of ``uri``'s manifest (our own push: the tag schema)."""
    from modelversioning.artifacts.oci_signature import store_signature

    host = uri.split("/")[2].split(":")[0]
    store_signature(uri, bundle, POLICY.model_copy(update={"ambient_credential_hosts": [host]}))


def test_a_bundle_over_other_digests_is_a_digest_mismatch(registry, docker_login) -> None:
    from modelversioning.artifacts import compute_digest

    uri, p = push_model(registry)
    other_uri, _ = push_model(registry, {"model.onnx": b"x" * 5000, "config.json": b"{}"})
    other = compute_digest(
        other_uri, policy=POLICY, secret_data=secret(registry)
    )  # another model's files, signed by the trusted key
    bundle = sign_digests(
        other.entries, kind="directory", model_name="m", private_key_pem=pem_private(RELEASE.key)
    )
    attach(registry, uri, bundle)
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNATURE_DIGEST_MISMATCH and "other sha256: model.onnx" in sig.message, sig


def test_a_tampered_bundle_is_signature_invalid(registry, docker_login, tmp_path) -> None:
    from modelversioning.artifacts import compute_digest

    uri, p = push_model(registry)
    d = compute_digest(uri, policy=POLICY, secret_data=secret(registry))
    bundle = json.loads(
        sign_digests(d.entries, kind="directory", model_name="m", private_key_pem=pem_private(RELEASE.key))
    )
    payload = payload_of(bundle)
    payload["predicate"]["name"] = "someone else's"  # the payload changed, its signature kept
    attach(registry, uri, json.dumps(with_payload(bundle, payload)).encode())
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNATURE_INVALID and "tampered" in sig.message, sig


def test_without_an_accepted_signature_the_most_telling_failure_is_reported(registry, docker_login, tmp_path):
    """A stranger's, then the trusted key's over other files, then another stranger's: the valid trusted
    signature over other files is what is said, whatever the order."""
    from modelversioning.artifacts import compute_digest

    uri, p = push_model(registry)
    other_uri, _ = push_model(registry, {"model.onnx": b"y" * 5000, "config.json": b"{}"})
    other = compute_digest(other_uri, policy=POLICY, secret_data=secret(registry))
    register_signed(uri, key_signer(), tmp_path)
    attach(registry, uri, sign_digests(other.entries, kind="directory", model_name="m",
                                       private_key_pem=pem_private(RELEASE.key)))  # fmt: skip
    register_signed(uri, key_signer(), tmp_path)
    assert len(index_of(registry, uri, p)["manifests"]) == 3
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNATURE_DIGEST_MISMATCH, sig


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_a_bundle_changed_in_the_registry_is_signature_invalid(registry, docker_login, tmp_path, how) -> None:
    uri, p = push_model(registry)
    register_signed(uri, RELEASE, tmp_path)
    repo = repo_of(uri)
    (entry,) = index_of(registry, uri, p)["manifests"]
    layer = json.loads(_manifest(registry, repo, entry["digest"]))["layers"][0]
    stored = registry[0].blob_path(layer["digest"])
    data = stored.read_bytes()
    stored.write_bytes(data[: len(data) // 2] if how == "truncated" else bytes([data[0] ^ 1]) + data[1:])
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNATURE_INVALID and "tampered with or truncated" in sig.message, sig


def test_a_stranger_re_signing_is_signer_not_trusted_and_the_pod_refuses_it(
    registry, docker_login, tmp_path
) -> None:
    uri, p = push_model(registry)
    register_signed(uri, key_signer(), tmp_path)
    sig = operator_check(registry, uri, p)
    assert sig.outcome == R.SIGNER_NOT_TRUSTED and "which no trust policy names" in sig.message, sig
    trust = json.dumps(TrustMaterial((key_entry(),), enforce=True).to_dict())
    argv = [uri, "--sha256", p.hex, "--dest", str(tmp_path / "d"), "--output", "json",
            "--policy-json", POLICY.model_dump_json(by_alias=True), "--trust-json", trust,
            "--env-credentials", "secret"]  # fmt: skip
    out = io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        _env("MODELVERSIONING_DOCKER_CONFIG_JSON", registry[0].docker_config()),
    ):
        code = verify_cli.main(argv)
    doc = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (code, doc["reason"]) == (verify_cli.EXIT_SIGNATURE, R.SIGNER_NOT_TRUSTED), doc


def test_an_expired_certificate_is_refused_by_the_init_container(registry, docker_login, tmp_path) -> None:
    uri, p = push_model(registry)
    old = cert_signer(ROOT, not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1))
    register_signed(uri, old, tmp_path, cert=True)
    sig = operator_check(registry, uri, p, cert_entry())
    assert sig.outcome == R.SIGNED and sig.not_after is not None  # valid when made; expiry is the policy's
    trust = TrustMaterial((cert_entry(),), enforce=True)
    r = verify_artifact(
        uri, p.hex, policy=POLICY, secret_data=secret(registry), dest=tmp_path / "d", trust=trust
    )
    assert r.reason == R.CERTIFICATE_EXPIRED and "expired at" in r.message, r.message


def test_the_signature_is_read_with_the_artifacts_credentials_only(registry, docker_login, tmp_path) -> None:
    """The registry's credentials are the artifact's Secret's, bound to its host: a Secret for another
    host is refused before any request, and without one the registry refuses the artifact itself."""
    uri, p = push_model(registry)
    register_signed(uri, RELEASE, tmp_path)
    trust = TrustMaterial((key_entry(),))
    other = {".dockerconfigjson": json.dumps({"auths": {"other.example.com": {"auth": "dTpw"}}})}
    r = verify_artifact(uri, p.hex, policy=POLICY, secret_data=other, trust=trust, env={})
    assert r.reason == R.URI_REFUSED and r.signature is None, r.message
    r = verify_artifact(uri, p.hex, policy=POLICY, trust=trust, env={})  # no Secret, no docker login
    assert r.reason == R.ACCESS_DENIED and r.signature is None, r.message


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    import os

    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# ---- the reconciler: the outcome in status, an Event, no slot; describe and lineage say who signed --------
def reconcile(uri: str, p: Pushed, *, stage: str = "candidate", required_from: str = "candidate") -> tuple:
    import test_modelversion_reconciler as harness
    import test_signed_versions as signed
    from modelversioning.handlers.modelversion import ModelVersionReconciler
    from modelversioning.handlers.store import Store
    from modelversioning.handlers.verification import make_verifier

    store = Store()
    kube = signed.Kube(store, {(harness.NS, "release-key"): {"key.pub": RELEASE.public_pem}})
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
    return signed.settle(r), kube, body


def open_model(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Pushed]:
    """A model on the registry without authentication (the reconciler's fake cluster has no Secrets)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no docker login
    _, push = registry
    repo = f"models/r{next(_N)}"
    p = push_oras(push.url, repo, FILES, tag="1.0.0")
    return f"oci://{push.netloc}/{repo}:1.0.0@{p.digest}", p


def test_an_unsigned_oci_version_where_a_signature_is_required_is_refused(registry, tmp_path, monkeypatch):
    from modelversioning.domain import conditions as cond
    from modelversioning.domain.endpoint_plan import NO_SLOT_REASONS
    from modelversioning.handlers.trust import init_trust_json

    uri, p = open_model(registry, tmp_path, monkeypatch)
    st, kube, _ = reconcile(uri, p)
    verified = cond.get(st["conditions"], "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", R.SIGNATURE_MISSING), verified
    assert "lists no model-signing referrer" in verified["message"]
    assert ("event", ("Warning", R.SIGNATURE_MISSING)) in kube.calls
    assert R.SIGNATURE_MISSING in NO_SLOT_REASONS  # no Deployment for it: traffic stays where it was
    assert st["artifact"]["layout"] == "oras" and init_trust_json(st, None) is None


@pytest.mark.parametrize("who", ["release", "stranger"])
def test_a_signed_oci_version_is_verified_with_its_signer_and_describe_and_lineage_show_it(
    registry, tmp_path, monkeypatch, who
):
    from modelversioning.cli.models import render, terminal, views
    from modelversioning.cli.models.registry_views import lineage_view
    from modelversioning.cli.models.render_registry import lineage_renderable
    from modelversioning.domain import conditions as cond
    from modelversioning.handlers.trust import init_trust_json

    uri, p = open_model(registry, tmp_path, monkeypatch)
    register_signed(uri, RELEASE if who == "release" else key_signer(), tmp_path)
    st, _, body = reconcile(uri, p)
    verified = cond.get(st["conditions"], "ArtifactVerified")
    sig = st["artifact"]["signature"]
    if who == "stranger":
        assert (verified["status"], verified["reason"]) == ("False", R.SIGNER_NOT_TRUSTED), verified
        assert "acceptedBy" not in sig and init_trust_json(st, None) is None
        return
    assert (verified["status"], sig["outcome"], sig["method"], sig["acceptedBy"]) == (
        "True", R.SIGNED, "key", "Model m"
    )  # fmt: skip
    assert sig["uri"].startswith(f"oci://{registry[1].netloc}/") and "@sha256:" in sig["uri"]
    anchors = json.loads(init_trust_json(st, None) or "{}")["entries"]
    assert [a["pem"] for a in anchors] == [RELEASE.public_pem]  # the pod checks against the same key
    mv = body | {"status": st}
    v = views.describe_view(mv)
    assert v["verification"]["signature"]["location"] == sig["uri"]  # the referrer
    described = " ".join(terminal.to_text(render.describe_renderable(v)).split())
    assert f"Signature: key {sig['signer']}; accepted by Model m" in described, described
    lineage = " ".join(terminal.to_text(lineage_renderable(lineage_view(mv, [], None))).split())
    assert f"Signed key {sig['signer']}; accepted by Model m" in lineage, lineage
