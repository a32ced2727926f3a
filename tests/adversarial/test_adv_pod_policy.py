"""Issue 14, finding 5: the init container enforces the operator's policy. It is run here as a
process with exactly the arguments the renderer puts into the Deployment (kwok runs no containers;
e2e/test_adversarial.py checks the Deployment in the API server). As landed, the init container got
no policy and ran on built-in defaults, and used whatever credentials its environment held."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers import HTTPServer

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, Serving
from modelversioning.render import EndpointRef, render_deployment

SHA_ABC = hashlib.sha256(b"abc").hexdigest()


def init_container(
    uri: str, sha: str, mount: Path, policy: ArtifactPolicy, **artifact: Any
) -> dict[str, Any]:
    version = ModelVersionSpec.model_validate(
        {
            "model": "m", "version": "1.0.0", "artifact": {"uri": uri, "sha256": sha, **artifact},
            "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
            "metrics": {"auc": 0.9}, "runtime": {"image": "img:1"},
        }
    )  # fmt: skip
    spec = ModelEndpointSpec.model_validate(
        {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}]}
    )
    dep = render_deployment(
        EndpointRef("ep", "ns", "uid"), spec, spec.variants[0], version, Serving(model_mount_path=str(mount)),
        policy=policy,
    )  # fmt: skip
    return dict(dep["spec"]["template"]["spec"]["initContainers"][0])


def run(init: dict[str, Any], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k != "MODELVERSIONING_CONFIG" and not k.startswith(("HTTP", "AWS"))
    }
    out = subprocess.run(
        [sys.executable, "-m", "modelversioning", *init["args"]],
        env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def test_pod_gets_the_operators_file_roots(tmp_path: Path) -> None:
    # as landed: no fileRoots in the pod, so a file:// artifact the operator verified never started
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "m.bin").write_bytes(b"abc")
    policy = ArtifactPolicy(file_roots=[str(tmp_path / "store")])
    init = init_container(f"file://{tmp_path}/store/m.bin", SHA_ABC, tmp_path / "models", policy)
    code, out = run(init, {})
    assert code == 0 and out["reason"] == "Verified", out
    outside = init_container(f"file://{tmp_path}/other.bin", SHA_ABC, tmp_path / "models", policy)
    code, out = run(outside, {})
    assert code == 2 and out["reason"] == "URIRefused", out


def test_pod_does_not_send_a_secret_to_hosts_it_does_not_name(tmp_path: Path) -> None:
    # envFrom the Secret: its credentials are bound to the hosts it names, exactly as in the operator
    policy = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])
    with HTTPServer({"/m.bin": (200, {}, b"abc")}) as srv:
        init = init_container(f"{srv.base}/m.bin", SHA_ABC, tmp_path / "models", policy)
        code, out = run(init, {"HTTP_BEARER_TOKEN": "tenant-token-123"})
        assert code == 3 and out["reason"] == "AccessDenied", out
        assert srv.seen == []
        code, out = run(
            init, {"HTTP_BEARER_TOKEN": "tenant-token-123", "MODELVERSIONING_CREDENTIAL_HOSTS": "127.0.0.1"}
        )
        assert code == 0, out
        assert [h.get("Authorization") for _, h in srv.seen] == ["Bearer tenant-token-123"] * len(srv.seen)


def test_pod_enforces_the_declared_size(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    policy = ArtifactPolicy(file_roots=[str(tmp_path)])
    init = init_container(f"file://{tmp_path}/m.bin", SHA_ABC, tmp_path / "models", policy, sizeBytes=1)
    code, out = run(init, {})
    assert code == 1 and out["reason"] == "SizeMismatch", out
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []
