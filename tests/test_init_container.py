"""The init container's entry point, run as a process with exactly the arguments the renderer
puts in the Deployment (kwok does not execute containers, so this is where it is proven)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, Serving
from modelversioning.render import EndpointRef, render_deployment


def _init_args(uri: str, sha: str, mount: Path) -> tuple[list[str], dict[str, str]]:
    """The init container's argv and env as rendered with the operator's policy (file:// under the
    artifact's directory)."""
    version = ModelVersionSpec.model_validate(
        {
            "model": "fraud-detector",
            "version": "2.4.1",
            "artifact": {"uri": uri, "sha256": sha},
            "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "2024-09-30"}},
            "metrics": {"auc": 0.95},
            "runtime": {"image": "ghcr.io/example/server:1"},
        }
    )
    spec = ModelEndpointSpec.model_validate(
        {"model": "fraud-detector", "variants": [{"name": "canary", "version": "2.4.1", "weight": 100}]}
    )
    dep = render_deployment(
        EndpointRef("fraud", "ml", "uid-1"),
        spec,
        spec.variants[0],
        version,
        Serving(model_mount_path=str(mount)),
        policy=ArtifactPolicy(file_roots=[str(Path(uri.removeprefix("file://")).parent.parent)]),
    )
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in init.get("env", []) if "value" in e}
    return list(init.get("command", [])) + list(init["args"]), env


def _entry_point() -> list[str]:
    exe = shutil.which("modelversioning", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "modelversioning"]


def _run(args: list[str], env_extra: dict[str, str], root: Path) -> subprocess.CompletedProcess[str]:
    assert args[0] == "verify-artifact", args  # the image's ENTRYPOINT is `modelversioning`
    env = {k: v for k, v in os.environ.items() if k != "MODELVERSIONING_CONFIG"}
    env.update(env_extra)
    return subprocess.run(
        [*_entry_point(), *args],  # the policy is the one the operator rendered (--policy-json)
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "store" / "model.bin"
    p.parent.mkdir()
    p.write_bytes(b"fraud-detector 2.4.1 weights\n" * 1000)
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def test_init_container_writes_verified_model(tmp_path: Path, artifact: tuple[Path, str]) -> None:
    path, sha = artifact
    mount = tmp_path / "models"
    mount.mkdir()
    args, env = _init_args(path.as_uri(), sha, mount)
    proc = _run(args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reason"] == "Verified" and out["actual"] == sha
    assert (mount / "model.bin").read_bytes() == path.read_bytes()


def test_init_container_refuses_tampered_artifact(tmp_path: Path, artifact: tuple[Path, str]) -> None:
    path, sha = artifact
    path.write_bytes(b"overwritten in place\n")  # the seed story: a "fix" without a version bump
    mount = tmp_path / "models"
    mount.mkdir()
    args, env = _init_args(path.as_uri(), sha, mount)
    proc = _run(args, env, tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    out = json.loads(proc.stdout)
    assert out["reason"] == "DigestMismatch"
    assert list(mount.iterdir()) == []  # nothing for the model server to load: the pod never gets ready
