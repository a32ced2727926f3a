"""Artifact verification against a real S3-compatible server (versitygw on loopback).

Credentials are passed by reference (the decoded data of a Secret), the endpoint is on
127.0.0.1. Fails -- never skips -- when versitygw is unavailable.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modelversioning.api.settings import ArtifactPolicy  # noqa: E402
from modelversioning.artifacts import Reason, compute_digest, manifest_digest, verify_artifact  # noqa: E402
from s3server import S3Server  # noqa: E402

pytestmark = pytest.mark.e2e

SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA_HELLO = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
TREE_DIGEST = (
    "44f6e35b5a81468822a799d2948c6c00a9b2f8e57c10bcfcc10edaa0f4eb63ab"  # see tests/test_artifacts.py
)
WRONG = "0" * 64
BIG = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: many ranged reads at 64 KiB chunks
# versitygw listens on loopback: allowed explicitly, as a platform allows its in-cluster store
POLICY = ArtifactPolicy(
    chunk_size=64 * 1024, max_workers=3, timeout_seconds=60, allowed_private_networks=["127.0.0.0/8"]
)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        server.create_bucket("models")
        server.put("models/fraud/2.3.8/model.onnx", b"abc")
        server.put("models/fraud/2.3.8/big.bin", BIG)
        server.put("models/fraud/tree/a.txt", b"abc")
        server.put("models/fraud/tree/sub/empty", b"")
        server.put("models/fraud/tree/sub/with space", b"hello")
        server.put("models/fraud/tree-sibling/zzz", b"must not be part of tree/")
        yield server


def test_file_verified_with_secret_reference(s3: S3Server) -> None:
    r = verify_artifact(
        "s3://models/fraud/2.3.8/model.onnx", SHA_ABC, policy=POLICY, secret_data=s3.secret_data()
    )
    assert r.ok, r.message
    assert (r.size_bytes, r.files, r.kind, r.actual) == (3, 1, "file", SHA_ABC)


def test_large_file_streams_in_chunks(s3: S3Server) -> None:
    calls: list[tuple[int, int | None]] = []
    r = verify_artifact(
        "s3://models/fraud/2.3.8/big.bin",
        hashlib.sha256(BIG).hexdigest(),
        policy=POLICY,
        secret_data=s3.secret_data(),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert r.ok, r.message
    assert calls[-1] == (len(BIG), len(BIG))
    assert len(calls) >= len(BIG) // POLICY.chunk_size  # progress per chunk, not one big read


@pytest.mark.parametrize("uri", ["s3://models/fraud/tree/", "s3://models/fraud/tree"])
def test_prefix_manifest(s3: S3Server, uri: str) -> None:
    assert manifest_digest([("a.txt", SHA_ABC), ("sub/empty", SHA_EMPTY), ("sub/with space", SHA_HELLO)]) == (
        TREE_DIGEST
    )
    r = verify_artifact(uri, TREE_DIGEST, policy=POLICY, secret_data=s3.secret_data())
    assert r.ok, r.message
    assert (r.files, r.size_bytes, r.kind) == (3, 8, "directory")
    d = compute_digest(uri, policy=POLICY, secret_data=s3.secret_data())
    assert [e.path for e in d.entries] == ["a.txt", "sub/empty", "sub/with space"]


def test_wrong_digest(s3: S3Server) -> None:
    r = verify_artifact(
        "s3://models/fraud/2.3.8/model.onnx", WRONG, policy=POLICY, secret_data=s3.secret_data()
    )
    assert r.reason is Reason.DIGEST_MISMATCH and r.actual == SHA_ABC and not r.transient
    assert SHA_ABC not in r.message  # what the URI hashed to is never in a message (an oracle)
    r = verify_artifact("s3://models/fraud/tree/", WRONG, policy=POLICY, secret_data=s3.secret_data())
    assert r.reason is Reason.DIGEST_MISMATCH and r.actual == TREE_DIGEST


def test_missing_object_and_bucket_are_not_found(s3: S3Server) -> None:
    for uri in (
        "s3://models/fraud/9.9.9/model.onnx",
        "s3://models/fraud/9.9.9/",
        "s3://no-such-bucket/model.onnx",
    ):
        r = verify_artifact(uri, SHA_ABC, policy=POLICY, secret_data=s3.secret_data())
        assert r.reason is Reason.NOT_FOUND, (uri, r.message)
        assert r.transient


def test_bad_credentials_are_access_denied(s3: S3Server) -> None:
    wrong_secret = "not-the-secret-" + "x" * 20
    for data in (
        s3.secret_data(AWS_SECRET_ACCESS_KEY=wrong_secret),
        s3.secret_data(AWS_ACCESS_KEY_ID="AKIAUNKNOWN000000000"),
    ):
        for uri in ("s3://models/fraud/2.3.8/model.onnx", "s3://models/fraud/tree/"):
            r = verify_artifact(uri, SHA_ABC, policy=POLICY, secret_data=data)
            assert r.reason is Reason.ACCESS_DENIED, (uri, r.message)
            assert not r.transient
            blob = json.dumps(r.to_dict())
            assert wrong_secret not in blob and s3.secret_key not in blob


def test_anonymous_secret_is_denied(s3: S3Server) -> None:
    # A Secret without keys means anonymous access, never the operator's own credentials.
    r = verify_artifact(
        "s3://models/fraud/2.3.8/model.onnx",
        SHA_ABC,
        policy=POLICY,
        secret_data={"AWS_ENDPOINT_URL": s3.endpoint_url},
        env={"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
    )
    assert r.reason is Reason.ACCESS_DENIED, r.message


def test_endpoint_policy(s3: S3Server) -> None:
    strict = POLICY.model_copy(update={"allowed_private_networks": []})
    r = verify_artifact(
        "s3://models/fraud/2.3.8/model.onnx", SHA_ABC, policy=strict, secret_data=s3.secret_data()
    )
    assert r.reason is Reason.URI_REFUSED and "allowPrivateNetworks" in r.message
    listed = POLICY.model_copy(update={"allowed_hosts": ["s3.example.com"]})
    r = verify_artifact(
        "s3://models/fraud/2.3.8/model.onnx", SHA_ABC, policy=listed, secret_data=s3.secret_data()
    )
    assert r.reason is Reason.URI_REFUSED and "allowedHosts" in r.message


def test_init_container_cli_with_env_credentials(s3: S3Server, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MODELVERSIONING_CONFIG"}
    env.update(s3.secret_data())  # the Deployment injects the Secret with envFrom
    cmd = [
        sys.executable, "-m", "modelversioning.cli.verify", "--output", "json",
        "--env-credentials", "secret", "--policy-json", POLICY.model_dump_json(by_alias=True),
    ]  # fmt: skip

    bad = subprocess.run(
        [*cmd, "s3://models/fraud/tree/", "--sha256", WRONG, "--dest", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["reason"] == "DigestMismatch"
    assert list((tmp_path / "bad").iterdir()) == []

    ok = subprocess.run(
        [*cmd, "s3://models/fraud/tree/", "--sha256", TREE_DIGEST, "--dest", str(tmp_path / "models")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["files"] == 3
    assert (tmp_path / "models" / "sub" / "with space").read_bytes() == b"hello"
    assert s3.secret_key not in ok.stdout + ok.stderr

    missing = subprocess.run(
        [*cmd, "s3://models/nope/model.onnx", "--sha256", SHA_ABC],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert missing.returncode == 3 and json.loads(missing.stdout)["reason"] == "NotFound"


def test_unreachable_endpoint_is_transient_and_keeps_the_endpoint_in_the_message() -> None:
    secret = {
        "AWS_ACCESS_KEY_ID": "AKIAUNREACHABLE00000",
        "AWS_SECRET_ACCESS_KEY": "unreachable-secret-value",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # discard port: nothing listens
        "MODELVERSIONING_CREDENTIAL_HOSTS": "127.0.0.1",
    }
    r = verify_artifact("s3://models/m.onnx", SHA_ABC, policy=POLICY, secret_data=secret)
    assert r.reason is Reason.FETCH_FAILED and r.transient, r.message
    assert "127.0.0.1:9" in r.message  # settings are not redacted, credentials are
    assert "unreachable-secret-value" not in json.dumps(r.to_dict())
