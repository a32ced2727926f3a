"""The artifact init container starts with what its URI needs (issue #25, time to first answer): a real
`modelversioning verify-artifact` run, with the arguments the operator renders into the pod, in a fresh
interpreter, loads neither the other schemes' code (oci://, with its registry client and tar extraction),
nor the operator's own machinery (the verifier runner, retention, the renderers, the handlers, kopf, the
kubernetes client), nor what a run without --trust-json never uses (the signature libraries, the trust
rules) or the pod never asks for (YAML: its policy comes as JSON; rich: no terminal), nor the CLI
framework of the other commands (typer, click). An http(s):// or file:// run loads neither aiohttp nor
fsspec's HTTP file system: http(s) is read by the standard library (``artifacts/http_plain.py``).

Each check runs the console script's entry point and reads sys.modules after the run."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.render.deployment import policy_json

NEVER = (
    "modelversioning.artifacts.oci_fetch",
    "modelversioning.artifacts.oci_registry",
    "modelversioning.artifacts.oci_extract",
    "modelversioning.artifacts.oci_layout",
    "modelversioning.artifacts.runner",
    "modelversioning.artifacts.delete",
    "modelversioning.artifacts.signature_crypto",
    "modelversioning.domain.trust",
    "modelversioning.render",
    "modelversioning.handlers",
    "modelversioning.api.modelversion",
    "modelversioning.api.modelversion_spec",
    "modelversioning.api.modelversion_status",
    "modelversioning.api.modelendpoint",
    "model_signing",
    "sigstore",
    "cryptography",
    "kopf",
    "kubernetes",
    "rich",
    "yaml",
    "typer",
    "click",
    "aiohttp",
    "fsspec.implementations.http",
    "modelversioning.artifacts.backends",
)


def under(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def run_init_container(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """`modelversioning verify-artifact ARGS` through the console script's entry point, in a fresh
    interpreter: (exit code, its stdout, the modules loaded by the end of the run)."""
    code = (
        "import io, json, sys, contextlib\n"
        "from modelversioning.cli.entry import main\n"
        f"sys.argv = ['modelversioning', 'verify-artifact', *{args!r}]\n"
        "out, rc = io.StringIO(), 0\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as e:\n"
        "        rc = e.code\n"
        "print(json.dumps([rc, out.getvalue(), sorted(sys.modules)]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    rc, out, modules = json.loads(proc.stdout.strip().splitlines()[-1])
    return rc, out, modules


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A model file on a loopback HTTP server: (its URL, its sha256)."""
    root = tmp_path_factory.mktemp("served")
    data = os.urandom(3 * 1024 * 1024 + 5)  # a few chunks: the threaded hashing runs
    (root / "model.bin").write_bytes(data)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/model.bin", hashlib.sha256(data).hexdigest()
    finally:
        srv.shutdown()
        srv.server_close()


def pod_args(uri: str, sha: str, dest: Path, policy: ArtifactPolicy) -> list[str]:
    """What render/deployment.py renders as the init container's arguments (no signature)."""
    return [
        uri, "--sha256", sha, "--dest", str(dest), "--output", "json", "--env-credentials", "secret",
        "--policy-json", policy_json(policy), "--size-bytes", str(3 * 1024 * 1024 + 5),
    ]  # fmt: skip


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MODELVERSIONING_CONFIG"}


def test_an_http_artifact_is_verified_without_the_rest_of_the_operator(
    served: tuple[str, str], tmp_path: Path
) -> None:
    uri, sha = served
    policy = ArtifactPolicy(allowed_private_networks=["127.0.0.1/32"])
    rc, out, modules = run_init_container(pod_args(uri, sha, tmp_path / "model", policy), clean_env())
    assert rc == 0 and json.loads(out)["reason"] == "Verified", out
    assert (tmp_path / "model" / "model.bin").stat().st_size == 3 * 1024 * 1024 + 5
    assert under(modules, NEVER) == []
    assert "modelversioning.artifacts.http_plain" in modules  # http(s): the policy-enforcing client


def test_a_file_artifact_is_verified_without_the_http_client(tmp_path: Path) -> None:
    model = tmp_path / "store" / "model.bin"
    model.parent.mkdir()
    model.write_bytes(b"weights" * 1000)
    policy = ArtifactPolicy(file_roots=[str(model.parent)])
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    args = pod_args(model.as_uri(), sha, tmp_path / "model", policy)
    args[-1] = str(model.stat().st_size)
    rc, out, modules = run_init_container(args, clean_env())
    assert rc == 0 and json.loads(out)["reason"] == "Verified", out
    assert under(modules, (*NEVER, "modelversioning.artifacts.http_plain")) == []
