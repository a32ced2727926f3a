"""artifacts/delete.py: retention's artifact deletion under the same URI policy as verification.
http(s) is never deleted; a URI the policy refuses is not touched; an artifact already gone counts as
deleted; file:// under the roots (a file, a directory URI ending in /); s3 through a fake file system
(the real one: e2e/test_registry_e2e.py on versitygw) with the endpoint checked before anything opens,
and a failure message that never shows the credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import delete as delete_mod
from modelversioning.artifacts import policy as policy_mod
from modelversioning.artifacts.delete import delete_artifact

SECRET = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}


def file_policy(root: Path) -> ArtifactPolicy:
    return ArtifactPolicy(file_roots=[str(root)])


@pytest.mark.parametrize("uri", ["https://models.example.com/m.onnx", "http://10.0.0.1/m", "hf://org/m"])
def test_http_and_unknown_schemes_are_never_deleted(uri: str, tmp_path: Path) -> None:
    r = delete_artifact(uri, file_policy(tmp_path))
    assert not r.ok and "cannot be deleted by the operator" in r.message


def test_a_uri_outside_the_policy_is_not_touched(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    victim = outside / "model.bin"
    victim.write_bytes(b"keep me")
    r = delete_artifact(f"file://{victim}", file_policy(root))
    assert not r.ok and "not under an allowed file root" in r.message, r.message
    assert r.message.count(str(victim)) == 1  # said once
    assert victim.exists()
    # a path that climbs out of the root
    r = delete_artifact(f"file://{root}/../outside/model.bin", file_policy(root))
    assert not r.ok and victim.exists(), r.message
    # file:// not allowed at all
    r = delete_artifact(f"file://{victim}", ArtifactPolicy(allowed_schemes=["s3"], file_roots=[str(outside)]))
    assert not r.ok and "allowedSchemes" in r.message and victim.exists()


def test_a_file_under_the_roots_is_deleted_and_a_second_delete_finds_it_gone(tmp_path: Path) -> None:
    f = tmp_path / "m" / "1.0.0" / "model.bin"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"weights")
    r = delete_artifact(f"file://{f}", file_policy(tmp_path))
    assert r.ok and r.existed and r.message.endswith("deleted"), r
    assert not f.exists() and f.parent.exists()  # only the artifact itself
    again = delete_artifact(f"file://{f}", file_policy(tmp_path))
    assert again.ok and not again.existed and "already gone" in again.message


def test_a_directory_uri_is_removed_whole(tmp_path: Path) -> None:
    d = tmp_path / "m" / "2.0.0"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "sub" / "weights.bin").write_bytes(b"w")
    sibling = tmp_path / "m" / "2.0.1"
    sibling.mkdir()
    r = delete_artifact(f"file://{d}/", file_policy(tmp_path))
    assert r.ok and not d.exists() and sibling.exists(), r


class FakeS3:
    """The part of an fsspec file system delete_artifact uses, over a dict of keys."""

    def __init__(self, keys: set[str], fail: Exception | None = None, sticky: bool = False) -> None:
        self.keys = set(keys)
        self.fail = fail
        self.sticky = sticky  # rm "succeeds" but the object stays
        self.removed: list[tuple[str, bool]] = []

    def _strip_protocol(self, uri: str) -> str:
        return uri.split("://", 1)[1]

    def exists(self, path: str) -> bool:
        p = path.rstrip("/")
        return any(k == p or k.startswith(p + "/") for k in self.keys)

    def rm(self, path: str, recursive: bool = False) -> None:
        if self.fail is not None:
            raise self.fail
        self.removed.append((path, recursive))
        if self.sticky:
            return
        self.keys = {k for k in self.keys if not (k == path or (recursive and k.startswith(path + "/")))}


@pytest.fixture
def fake_s3(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    opened: dict[str, Any] = {}

    def open_filesystem(access: Any, policy: Any, deadline: float) -> FakeS3:
        opened["access"] = access
        return opened["fs"]  # type: ignore[no-any-return]

    monkeypatch.setattr(delete_mod, "open_filesystem", open_filesystem)
    monkeypatch.setattr(policy_mod, "_default_resolver", lambda host, port: ["93.184.216.34"])  # no DNS
    return opened


def s3_policy() -> ArtifactPolicy:
    return ArtifactPolicy(allowed_hosts=["s3.example.com"])


def creds(**extra: str) -> dict[str, str]:
    base = {
        "AWS_ENDPOINT_URL": "https://s3.example.com",
        "MODELVERSIONING_CREDENTIAL_HOSTS": "s3.example.com",
    }
    return {**SECRET, **base, **extra}


def test_s3_object_and_prefix(fake_s3: dict[str, Any]) -> None:
    fs = fake_s3["fs"] = FakeS3({"models/m/1.0.0/model.bin", "models/m/2.0.0/a", "models/m/2.0.0/b/c"})
    r = delete_artifact("s3://models/m/1.0.0/model.bin", s3_policy(), creds(), env={})
    assert r.ok and fs.removed == [("models/m/1.0.0/model.bin", False)], r
    r = delete_artifact("s3://models/m/2.0.0/", s3_policy(), creds(), env={})
    assert r.ok and fs.removed[-1] == ("models/m/2.0.0", True) and fs.keys == set(), r
    gone = delete_artifact("s3://models/m/1.0.0/model.bin", s3_policy(), creds(), env={})
    assert gone.ok and not gone.existed


def test_s3_refused_endpoint_opens_nothing(fake_s3: dict[str, Any]) -> None:
    fake_s3["fs"] = FakeS3({"models/m"})
    r = delete_artifact(
        "s3://models/m", s3_policy(), creds(AWS_ENDPOINT_URL="http://169.254.169.254"), env={}
    )
    assert not r.ok and "access" not in fake_s3, r  # refused before a file system was opened
    elsewhere = ArtifactPolicy(allowed_hosts=["other.example.org"])
    r = delete_artifact("s3://models/m", elsewhere, creds(), env={})
    assert not r.ok and "access" not in fake_s3, r


def test_s3_failures_are_reported_without_credentials(fake_s3: dict[str, Any]) -> None:
    fake_s3["fs"] = FakeS3(
        {"models/m"}, fail=PermissionError(f"AccessDenied for {SECRET['AWS_SECRET_ACCESS_KEY']}")
    )
    r = delete_artifact("s3://models/m", s3_policy(), creds(), env={})
    assert not r.ok and "PermissionError" in r.message and "s3cr3t-value" not in r.message, r
    fake_s3["fs"] = FakeS3({"models/m"}, sticky=True)
    r = delete_artifact("s3://models/m", s3_policy(), creds(), env={})
    assert not r.ok and "still exists after the delete" in r.message, r
