"""`kubectl models register --dvc`: artifact, remote location, dataset, parameters and metrics from a
DVC repository's metadata.

The repositories are written here in DVC 3's real formats (checked against `dvc` 3.67: `dvc add`,
`dvc stage add`, `dvc repro`, `dvc push` produce exactly these .dvc/dvc.lock/dvc.yaml/.dvc/config
files and the `files/md5/<2>/<30>` cache and remote layout), so the tests need neither the `dvc`
package nor a network.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelversioning.api.modelversion import ModelVersion
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import digest_local, verify_artifact
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models.importers import dvc as dvcmeta

MODEL = b"model-weights-" + bytes(range(256)) * 64
DATA = b"x,y\n1,2\n3,4\n"
EVAL = json.dumps({"auc": 0.93, "eval": {"f1": 0.8, "note": "text"}}).encode()
IMAGE = "ghcr.io/acme/demo:1"
LINEAGE = ["--author", "jane", "--framework", "sklearn-1.5.2", "--image", IMAGE]


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def put(store: Path, data: bytes, dvc3: bool = True, suffix: str = "") -> Path:
    h = md5(data)
    p = store / ("files/md5" if dvc3 else "") / h[:2] / (h[2:] + suffix)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def out(path: str, data: bytes, dvc3: bool = True) -> dict[str, Any]:
    o: dict[str, Any] = {"md5": md5(data), "size": len(data)}
    if dvc3:
        o["hash"] = "md5"
    o["path"] = path
    return o


def make_repo(tmp: Path, *, cached: bool = True, remote: bool = True) -> Path:
    """A git + DVC repo after `dvc add data/...`, `dvc stage add -n train ...`, `dvc repro`, `dvc push`."""
    repo = tmp / "repo"
    (repo / ".dvc").mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    config = (
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = ../../remote\n" if remote else ""
    )
    (repo / ".dvc" / "config").write_text(config)
    (repo / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    (repo / "data").mkdir()
    (repo / "data" / "transactions.csv").write_bytes(DATA)
    (repo / "data" / "transactions.csv.dvc").write_text(
        yaml.safe_dump({"outs": [out("transactions.csv", DATA)]}, sort_keys=False)
    )
    (repo / "train.py").write_text("print('train')\n")
    (repo / "params.yaml").write_text("train:\n  lr: 0.05\n  depth: 8\n")
    (repo / "model.bin").write_bytes(MODEL)
    (repo / "eval.json").write_bytes(EVAL)
    (repo / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    deps:\n    - data/transactions.csv\n"
        "    - train.py\n"
        "    params:\n    - train.depth\n    - train.lr\n    outs:\n    - model.bin\n    metrics:\n"
        "    - eval.json:\n        cache: false\n"
    )
    lock = {
        "schema": "2.0",
        "stages": {
            "train": {
                "cmd": "python train.py",
                "deps": [out("data/transactions.csv", DATA), out("train.py", b"print('train')\n")],
                "params": {"params.yaml": {"train.depth": 8, "train.lr": 0.05}},
                "outs": [out("eval.json", EVAL), out("model.bin", MODEL)],
            }
        },
    }
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    (repo / ".gitignore").write_text("/model.bin\n/eval.json\n")
    (repo / "data" / ".gitignore").write_text("/transactions.csv\n")
    if cached:
        for b in (DATA, MODEL, EVAL):
            put(repo / ".dvc" / "cache", b)
    if remote:
        for b in (DATA, MODEL):
            put(tmp / "remote", b)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    git(repo, "remote", "add", "origin", "https://git.example.com/ml/demo.git")
    return repo


def commit(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more DVC metadata")


def register(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["register", "demo", "1.0.0", *LINEAGE, "--code-dir", str(repo), *args], catch_exceptions=False
    )


def doc_of(r: Any) -> dict[str, Any]:
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    doc = yaml.safe_load(r.stdout)
    ModelVersion.model_validate(doc)
    return dict(doc)


def test_register_from_dvc_lock(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    spec = doc_of(register(repo, "--dvc", str(repo / "dvc.lock")))["spec"]
    remote = (tmp_path / "remote").resolve()
    h = md5(MODEL)
    assert spec["artifact"]["uri"] == f"{remote.as_uri()}/files/md5/{h[:2]}/{h[2:]}"
    assert spec["artifact"]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert spec["artifact"]["sizeBytes"] == len(MODEL)
    d = md5(DATA)
    assert spec["lineage"]["dataset"] == {
        "name": "data/transactions.csv",
        "version": d,
        "uri": f"{remote.as_uri()}/files/md5/{d[:2]}/{d[2:]}",
    }
    assert spec["lineage"]["hyperparameters"] == {"train.depth": 8, "train.lr": 0.05}
    assert spec["metrics"] == {"auc": 0.93, "eval.f1": 0.8}
    assert spec["lineage"]["codeCommit"] == git(repo, "rev-parse", "HEAD")
    assert spec["lineage"]["codeRepository"] == "https://git.example.com/ml/demo.git"
    # the operator finds the same bytes at that URI in the remote
    res = verify_artifact(
        spec["artifact"]["uri"], spec["artifact"]["sha256"], policy=ArtifactPolicy(file_roots=[str(remote)])
    )
    assert res.ok, res.message

    # explicit options win over DVC; stage:out syntax
    spec = doc_of(
        register(
            repo,
            "--dvc",
            f"{repo / 'dvc.lock'}:train:model.bin",
            "--uri",
            "s3://models/demo/1.0.0/model.bin",
            "--dataset-version",
            "2024-06-30",
            "--metric",
            "auc=0.99",
        )
    )["spec"]
    assert spec["artifact"]["uri"] == "s3://models/demo/1.0.0/model.bin"
    assert spec["lineage"]["dataset"]["version"] == "2024-06-30"
    assert spec["metrics"] == {"auc": 0.99, "eval.f1": 0.8}


def test_register_from_a_dvc_file_with_the_dataset_from_another(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "model.bin.dvc").write_text(yaml.safe_dump({"outs": [out("model.bin", MODEL)]}, sort_keys=False))
    commit(repo)
    spec = doc_of(
        register(
            repo,
            "--dvc",
            str(repo / "model.bin.dvc"),
            "--dataset",
            str(repo / "data/transactions.csv.dvc"),
            "--metric",
            "auc=0.9",
        )
    )["spec"]
    assert spec["artifact"]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert spec["artifact"]["uri"].endswith(f"/remote/files/md5/{md5(MODEL)[:2]}/{md5(MODEL)[2:]}")
    assert spec["lineage"]["dataset"]["name"] == "transactions.csv"
    assert spec["lineage"]["dataset"]["version"] == md5(DATA)


def test_bytes_that_are_not_what_dvc_recorded_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, cached=False)
    (repo / "model.bin").write_bytes(MODEL + b"retrained but not committed")
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 1 and r.stdout == ""
    assert "the bytes changed since DVC recorded them" in r.stderr and "dvc commit" in r.stderr
    # the cache object is DVC's own copy: used first, whatever the workspace holds
    put(repo / ".dvc" / "cache", MODEL)
    assert doc_of(register(repo, "--dvc", str(repo / "dvc.lock")))["spec"]["artifact"]["sha256"] == (
        hashlib.sha256(MODEL).hexdigest()
    )


def test_metrics_file_changed_since_the_run_is_not_used(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "eval.json").write_text('{"auc": 0.99}')
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 2 and "metrics (--metrics FILE or --metric k=v)" in r.stderr
    assert "metrics file eval.json changed since dvc.lock stage train ran" in r.stderr


def test_stage_and_dataset_choice(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    other = b"labels\n"
    lock["stages"]["prepare"] = {"cmd": "prep", "deps": [], "outs": [out("data/labels.csv", other)]}
    lock["stages"]["train"]["deps"].append(out("data/labels.csv", other))
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    commit(repo)
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 2 and "several stages have outs (train, prepare)" in r.stderr
    r = register(repo, "--dvc", f"{repo / 'dvc.lock'}:train")
    assert (
        r.exit_code == 2
        and "several DVC-tracked data paths (data/transactions.csv, data/labels.csv)" in r.stderr
    )
    spec = doc_of(register(repo, "--dvc", f"{repo / 'dvc.lock'}:train", "--dataset", "labels"))["spec"]
    assert spec["lineage"]["dataset"]["name"] == "data/labels.csv"
    assert spec["lineage"]["dataset"]["version"] == md5(other)
    r = register(repo, "--dvc", f"{repo / 'dvc.lock'}:nope")
    assert r.exit_code == 2 and "no stage 'nope'" in r.stderr


def test_directory_out_needs_uri_and_is_checked_against_the_dir_listing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    files = {"weights.bin": b"w" * 100, "sub/config.json": b"{}"}
    for rel, b in files.items():
        (repo / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / "model" / rel).write_bytes(b)
    listing = json.dumps([{"md5": md5(b), "relpath": rel} for rel, b in sorted(files.items())]).encode()
    put(repo / ".dvc" / "cache", listing, suffix=".dir")
    (repo / "model.dvc").write_text(
        yaml.safe_dump(
            {
                "outs": [
                    {"md5": md5(listing) + ".dir", "size": 102, "nfiles": 2, "hash": "md5", "path": "model"}
                ]
            }
        )
    )
    (repo / ".gitignore").write_text("/model.bin\n/eval.json\n/model\n")
    commit(repo)
    r = register(
        repo, "--dvc", str(repo / "model.dvc"), "--dataset", "d", "--dataset-version", "1", "--metric", "a=1"
    )
    assert r.exit_code == 2 and "is a directory" in r.stderr and "--uri" in r.stderr
    args = [
        "--dvc",
        str(repo / "model.dvc"),
        "--uri",
        "s3://m/demo/1.0.0/",
        "--dataset",
        "d",
        "--dataset-version",
        "1",
    ]
    spec = doc_of(register(repo, *args, "--metric", "a=1"))["spec"]
    assert spec["artifact"]["sha256"] == digest_local(repo / "model").sha256
    (repo / "model" / "weights.bin").write_bytes(b"tampered")
    r = register(repo, *args, "--metric", "a=1")
    assert r.exit_code == 1 and "differs from what model.dvc recorded (1 paths: weights.bin)" in r.stderr


def test_dvc2_layout_and_no_remote(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, remote=False)
    (repo / "model.bin.dvc").write_text(yaml.safe_dump({"outs": [out("model.bin", MODEL, dvc3=False)]}))
    commit(repo)
    put(repo / ".dvc" / "cache", MODEL, dvc3=False)
    base = [
        "--dvc",
        str(repo / "model.bin.dvc"),
        "--dataset",
        "d",
        "--dataset-version",
        "1",
        "--metric",
        "a=1",
    ]
    r = register(repo, *base)
    spec = doc_of(r)["spec"]
    assert spec["artifact"]["uri"] == (repo / "model.bin").resolve().as_uri()  # no remote: the workspace file
    assert "names no remote" in r.stderr
    (repo / ".dvc" / "config.local").write_text(
        "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://dvc/store\n"
    )
    spec = doc_of(register(repo, *base))["spec"]
    h = md5(MODEL)
    assert spec["artifact"]["uri"] == f"s3://dvc/store/{h[:2]}/{h[2:]}"  # DVC 2: no files/md5/


def test_bad_dvc_input(tmp_path: Path) -> None:
    (tmp_path / "x.dvc").write_text("outs: []\n")
    r = register(tmp_path, "--dvc", str(tmp_path / "x.dvc"))
    assert r.exit_code == 2 and "not inside a DVC repository" in r.stderr
    repo = make_repo(tmp_path)
    (repo / "bad.dvc").write_text(yaml.safe_dump({"outs": [{"path": "m.bin", "hash": "md5"}]}))
    commit(repo)
    r = register(repo, "--dvc", str(repo / "bad.dvc"))
    assert r.exit_code == 2 and "m.bin has no md5" in r.stderr
    r = register(repo, "--dvc", str(repo / "missing.dvc"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    with pytest.raises(Exception, match="remote 'nope' is not defined"):
        dvcmeta.remote_url(repo, "nope")
