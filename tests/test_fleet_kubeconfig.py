"""A ``kubeconfig:`` in a Fleet/WavePlan file (kept in a shared Git repository) is not the reader's
choice: a kubeconfig runs programs (exec credential plugins) and sends files (tokenFile) to the server it
names. Only the reader's own file is used (absolute or ~, outside the repository, owned by the reader,
writable by no one else); anything else is refused before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from typer.testing import CliRunner

from fleet_fixtures import endpoint, regions, router, version
from modelversioning.cli.models.app import app

NEW = {"stable": ("2.3.8", 0), "canary": ("2.4.1", 100)}
VERSIONS = [version("2.3.8"), version("2.4.1")]


def _evil_kubeconfig(path: Path, marker: Path) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx-a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "sh",
            "args": ["-c", f"touch {marker}; exit 1"], "interactiveMode": "Never"}}}],
        "contexts": [{"name": "ctx-a", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip


def _fleet(path: Path, kubeconfig: str) -> None:
    path.write_text(yaml.safe_dump({"kind": "Fleet", "regions": [
        {"name": "us-east", "context": "ctx-a", "kubeconfig": kubeconfig}]}))  # fmt: skip


def test_a_kubeconfig_from_the_shared_repository_is_refused_and_never_run(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    marker = tmp_path / "ran"
    _evil_kubeconfig(repo / "kubeconfig", marker)
    os.symlink(repo / "kubeconfig", tmp_path / "link")  # a link out of the repo still points into it
    for named, why in [
        ("kubeconfig", "absolute or ~ path"),
        (str(repo / "kubeconfig"), "inside the repository"),
        (str(tmp_path / "link"), "inside the repository"),
    ]:
        _fleet(repo / "fleet.yaml", named)
        res = CliRunner().invoke(app, ["which", "ep", "--fleet", str(repo / "fleet.yaml")])
        assert res.exit_code == 2, res.output
        assert why in res.output and "own kubeconfig" in res.output
    shared = tmp_path / "shared"
    _evil_kubeconfig(shared, marker)
    shared.chmod(0o666)
    _fleet(repo / "fleet.yaml", str(shared))
    res = CliRunner().invoke(app, ["which", "ep", "--fleet", str(repo / "fleet.yaml")])
    assert res.exit_code == 2 and "others can write it" in res.output
    assert not marker.exists()


def test_the_readers_own_kubeconfig_outside_the_repository_is_used(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with regions(tmp_path, {"ctx-a": router(endpoint("us-east", NEW), VERSIONS)}) as kc:
        kc.chmod(0o600)
        _fleet(repo / "fleet.yaml", str(kc))
        res = CliRunner().invoke(app, ["which", "fraud-detector", "--fleet", str(repo / "fleet.yaml"),
                                       "-o", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["regions"][0]["region"] == "us-east"
