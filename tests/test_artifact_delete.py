"""artifacts/delete.py: retention deletes exactly the objects a version verified, under the same URI
policy and limits as verification. http(s) is never deleted; a URI the policy refuses is not touched;
nothing there counts as already deleted; a file and a directory are deleted object by object after
their digest was re-checked, the directories left empty are removed, nothing else. Against a real file
tree in tmp_path (the adversarial cases: tests/adversarial/test_adv_retention.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import delete_in_child, digest_local
from modelversioning.artifacts.delete import DeleteResult, delete_verified


def file_policy(root: Path) -> ArtifactPolicy:
    return ArtifactPolicy(file_roots=[str(root)])


def tree(d: Path, files: dict[str, bytes]) -> str:
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return digest_local(d).sha256


@pytest.mark.parametrize("uri", ["https://models.example.com/m.onnx", "http://10.0.0.1/m", "hf://org/m"])
def test_http_and_unknown_schemes_are_never_deleted(uri: str, tmp_path: Path) -> None:
    r = delete_verified(uri, "0" * 64, policy=file_policy(tmp_path))
    assert not r.ok and r.refused and "cannot be deleted by the operator" in r.message


def test_a_uri_outside_the_policy_is_not_touched(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    victim = outside / "model.bin"
    victim.write_bytes(b"keep me")
    sha = hashlib.sha256(b"keep me").hexdigest()
    r = delete_verified(f"file://{victim}", sha, policy=file_policy(root))
    assert r.refused and "not under an allowed file root" in r.message and victim.exists(), r.message
    r = delete_verified(f"file://{root}/../outside/model.bin", sha, policy=file_policy(root))
    assert not r.ok and victim.exists(), r.message


def test_a_file_is_deleted_after_its_digest_is_rechecked_and_a_second_delete_finds_it_gone(
    tmp_path: Path,
) -> None:
    f = tmp_path / "m" / "1.0.0" / "model.bin"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    dry = delete_verified(f"file://{f}", sha, policy=file_policy(tmp_path), dry_run=True)
    assert dry.ok and dry.objects == ("model.bin",) and dry.count == 1 and f.exists(), dry
    r = delete_verified(f"file://{f}", sha, policy=file_policy(tmp_path), expected_size=7, expected_files=1)
    assert r.ok and r.existed and r.message.endswith("deleted"), r
    assert not f.exists() and f.parent.exists()  # only the artifact itself
    again = delete_verified(f"file://{f}", sha, policy=file_policy(tmp_path))
    assert again.ok and not again.existed and "already gone" in again.message


def test_a_directory_loses_exactly_its_verified_objects_and_the_directories_left_empty(
    tmp_path: Path,
) -> None:
    d = tmp_path / "m" / "2.0.0"
    sha = tree(d, {"config.json": b"{}", "sub/weights.bin": b"w"})
    sibling = tmp_path / "m" / "2.0.1"
    sibling.mkdir()
    r = delete_verified(f"file://{d}/", sha, policy=file_policy(tmp_path), expected_files=2)
    assert r.ok and r.count == 2 and set(r.objects) == {"config.json", "sub/weights.bin"}, r
    assert not d.exists() and sibling.exists()


def test_a_wrong_file_count_or_size_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "m"
    sha = tree(d, {"a": b"1", "b": b"2"})
    r = delete_verified(f"file://{d}/", sha, policy=file_policy(tmp_path), expected_files=3)
    assert r.refused and (d / "a").exists(), r
    r = delete_verified(f"file://{d}/", sha, policy=file_policy(tmp_path), expected_size=1)
    assert r.refused and (d / "a").exists(), r


def test_a_symbolic_link_in_the_artifact_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    tree(other, {"prod.bin": b"production"})
    d = tmp_path / "mine"
    d.mkdir()
    os.symlink(other / "prod.bin", d / "w.bin")
    sha = digest_local(d).sha256
    r = delete_verified(f"file://{d}/", sha, policy=file_policy(tmp_path))
    assert r.refused and "symbolic link" in r.message, r
    assert (other / "prod.bin").read_bytes() == b"production" and os.path.islink(d / "w.bin")
    os.symlink(other, tmp_path / "alias")
    r = delete_verified(f"file://{tmp_path}/alias/", digest_local(other).sha256, policy=file_policy(tmp_path))
    assert r.refused and (other / "prod.bin").exists(), r


def test_the_worker_process_runs_the_deletion_with_the_same_answer(tmp_path: Path) -> None:
    d = tmp_path / "m"
    sha = tree(d, {"a": b"1"})
    r = delete_in_child(f"file://{d}/", "0" * 64, policy=file_policy(tmp_path))
    assert isinstance(r, DeleteResult) and r.refused and (d / "a").exists(), r
    r = delete_in_child(f"file://{d}/", sha, policy=file_policy(tmp_path), expected_files=1)
    assert r.ok and r.objects == ("a",) and not d.exists(), r
