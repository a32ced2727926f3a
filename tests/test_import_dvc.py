"""`kubectl models register --dvc`: artifact, remote location, dataset, parameters and metrics from a
DVC repository's metadata.

The repository is made with `dvc` itself (the dev extra pins it): `git init`, `dvc init`, `dvc add`
of the dataset, of an exported model file and of a model directory, a pipeline stage with
`dvc stage add` + `dvc repro` (dvc.lock), a local remote with `dvc remote add -d` + `dvc push`.
It is built once per module and copied for each test. The locations `register --dvc` computes are
checked against where `dvc push` put the bytes and against DVC's own `dvc.api.get_url`. Only what
DVC 3 no longer writes (the DVC 2 layout) and malformed files are written by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from modelversioning.api.modelversion import ModelVersion
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import digest_local, verify_artifact
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models.importers import dvc as dvcmeta

MODEL = b"model-weights-" + bytes(range(256)) * 64
EXPORTED = b"onnx-export-" + bytes(range(255, -1, -1)) * 32
DATA = b"x,y\n1,2\n3,4\n"
EVAL = json.dumps({"auc": 0.93, "eval": {"f1": 0.8, "note": "text"}})
# the stage's command: writes the model and the metrics file (deterministic, so dvc.lock is known)
TRAIN_PY = (
    "from pathlib import Path\n"
    f"Path('model.bin').write_bytes({MODEL!r})\n"
    f"Path('eval.json').write_text({EVAL!r})\n"
)
DIR_FILES = {"weights.bin": b"w" * 100, "sub/config.json": b"{}"}
IMAGE = "ghcr.io/acme/demo:1"
LINEAGE = ["--author", "jane", "--framework", "sklearn-1.5.2", "--image", IMAGE]


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def dvc_env(home: Path) -> dict[str, str]:
    """DVC isolated from this machine: its global/system config and site cache under `home`, no
    analytics (no network)."""
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(home / "global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "system"),
        "DVC_SITE_CACHE_DIR": str(home / "site-cache"),
    }


def dvc(repo: Path, *args: str) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=dvc_env(repo.parent / "dvc-home"),
        timeout=120,
    )
    assert p.returncode == 0, f"dvc {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def dvc_url(repo: Path, path: str) -> str:
    """Where DVC itself says the object of `path` is in the default remote (dvc.api.get_url)."""
    code = "import sys, dvc.api; print(dvc.api.get_url(sys.argv[1], repo=sys.argv[2]))"
    p = subprocess.run(
        [sys.executable, "-c", code, path, str(repo)],
        cwd=repo,
        capture_output=True,
        text=True,
        env=dvc_env(repo.parent / "dvc-home"),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def commit(repo: Path, message: str = "more DVC metadata") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<base>/repo (git + DVC) and <base>/remote (its default remote, after `dvc push`)."""
    base = tmp_path_factory.mktemp("dvc")
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    dvc(repo, "init", "-q")
    (repo / "data").mkdir()
    (repo / "data" / "transactions.csv").write_bytes(DATA)
    dvc(repo, "add", "-q", "data/transactions.csv")
    (repo / "export").mkdir()
    (repo / "export" / "model.onnx").write_bytes(EXPORTED)
    dvc(repo, "add", "-q", "export/model.onnx")
    for rel, b in DIR_FILES.items():
        (repo / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / "model" / rel).write_bytes(b)
    dvc(repo, "add", "-q", "model")
    (repo / "train.py").write_text(TRAIN_PY)
    (repo / "params.yaml").write_text("train:\n  lr: 0.05\n  depth: 8\n")
    dvc(
        repo,
        "stage",
        "add",
        "-q",
        "-n",
        "train",
        "-d",
        "data/transactions.csv",
        "-d",
        "train.py",
        "-p",
        "train.lr,train.depth",
        "-o",
        "model.bin",
        "-M",
        "eval.json",
        f"{sys.executable} train.py",
    )
    dvc(repo, "repro", "-q")
    # relative, as most teams write it: DVC stores it relative to .dvc/ (../../remote)
    dvc(repo, "remote", "add", "-d", "storage", "../remote")
    dvc(repo, "push", "-q")
    commit(repo, "train")
    git(repo, "remote", "add", "origin", "https://git.example.com/ml/demo.git")
    return base


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    """A copy of the built repository (and its remote) for one test."""
    shutil.copytree(built / "repo", tmp_path / "repo", symlinks=True)
    shutil.copytree(built / "remote", tmp_path / "remote")
    return tmp_path / "repo"


def register(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["register", "demo", "1.0.0", *LINEAGE, "--code-dir", str(repo), *args], catch_exceptions=False
    )


def doc_of(r: Any) -> dict[str, Any]:
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    doc = yaml.safe_load(r.stdout)
    ModelVersion.model_validate(doc)
    return dict(doc)


def pushed(uri: str) -> bytes:
    """The bytes at a file:// URI in the remote."""
    return Path(unquote(urlsplit(uri).path)).read_bytes()


def test_dvc_made_the_repository_this_test_reads(repo: Path) -> None:
    """What `dvc` wrote is the layout the importer reads: DVC 3 outs (`hash: md5`), the relative
    remote stored relative to .dvc/, and pushed objects under files/md5/<2>/<30>."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {o["path"]: o for o in lock["stages"]["train"]["outs"]}
    assert outs["model.bin"]["md5"] == md5(MODEL) and outs["model.bin"]["hash"] == "md5"
    assert "url = ../../remote" in (repo / ".dvc" / "config").read_text()
    h = md5(MODEL)
    assert (repo.parent / "remote" / "files" / "md5" / h[:2] / h[2:]).read_bytes() == MODEL
    [model_dir] = yaml.safe_load((repo / "model.dvc").read_text())["outs"]
    assert model_dir["md5"].endswith(".dir") and model_dir["nfiles"] == 2


def test_register_from_dvc_lock(repo: Path) -> None:
    spec = doc_of(register(repo, "--dvc", str(repo / "dvc.lock")))["spec"]
    remote = (repo.parent / "remote").resolve()
    h = md5(MODEL)
    uri = spec["artifact"]["uri"]
    assert uri == f"{remote.as_uri()}/files/md5/{h[:2]}/{h[2:]}"
    assert unquote(urlsplit(uri).path) == dvc_url(repo, "model.bin")  # where DVC itself says
    assert pushed(uri) == MODEL  # and where `dvc push` put the bytes
    assert spec["artifact"]["sha256"] == sha256(MODEL)
    assert spec["artifact"]["sizeBytes"] == len(MODEL)
    d = md5(DATA)
    assert spec["lineage"]["dataset"] == {
        "name": "data/transactions.csv",
        "version": d,
        "uri": f"{remote.as_uri()}/files/md5/{d[:2]}/{d[2:]}",
    }
    assert pushed(spec["lineage"]["dataset"]["uri"]) == DATA
    assert spec["lineage"]["hyperparameters"] == {"train.depth": 8, "train.lr": 0.05}
    assert spec["metrics"] == {"auc": 0.93, "eval.f1": 0.8}
    assert spec["lineage"]["codeCommit"] == git(repo, "rev-parse", "HEAD")
    assert spec["lineage"]["codeRepository"] == "https://git.example.com/ml/demo.git"
    # the operator finds the same bytes at that URI in the remote
    res = verify_artifact(uri, spec["artifact"]["sha256"], policy=ArtifactPolicy(file_roots=[str(remote)]))
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


def test_register_from_a_dvc_file_with_the_dataset_from_another(repo: Path) -> None:
    spec = doc_of(
        register(
            repo,
            "--dvc",
            str(repo / "export" / "model.onnx.dvc"),
            "--dataset",
            str(repo / "data" / "transactions.csv.dvc"),
            "--metric",
            "auc=0.9",
        )
    )["spec"]
    h = md5(EXPORTED)
    uri = spec["artifact"]["uri"]
    assert uri == f"{(repo.parent / 'remote').resolve().as_uri()}/files/md5/{h[:2]}/{h[2:]}"
    assert unquote(urlsplit(uri).path) == dvc_url(repo, "export/model.onnx")
    assert pushed(uri) == EXPORTED
    assert spec["artifact"]["sha256"] == sha256(EXPORTED)
    assert spec["lineage"]["dataset"]["name"] == "transactions.csv"
    assert spec["lineage"]["dataset"]["version"] == md5(DATA)


def test_bytes_that_are_not_what_dvc_recorded_are_refused(repo: Path) -> None:
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "model.bin").write_bytes(MODEL + b"retrained but not committed")
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 1 and r.stdout == ""
    assert "the bytes changed since DVC recorded them" in r.stderr and "dvc commit" in r.stderr
    # the cache object is DVC's own copy (`dvc fetch` brings it back from the remote): used first,
    # whatever the workspace holds
    dvc(repo, "fetch", "-q")
    assert doc_of(register(repo, "--dvc", str(repo / "dvc.lock")))["spec"]["artifact"]["sha256"] == sha256(
        MODEL
    )


def test_metrics_file_changed_since_the_run_is_not_used(repo: Path) -> None:
    (repo / "eval.json").write_text('{"auc": 0.99}')
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 2 and "metrics (--metrics FILE or --metric k=v)" in r.stderr
    assert "metrics file eval.json changed since dvc.lock stage train ran" in r.stderr


def test_stage_and_dataset_choice(repo: Path) -> None:
    labels = b"labels\n"
    (repo / "prepare.py").write_text(
        f"from pathlib import Path\nPath('data/labels.csv').write_bytes({labels!r})\n"
    )
    dvc(
        repo,
        "stage",
        "add",
        "-q",
        "-n",
        "prepare",
        "-d",
        "prepare.py",
        "-o",
        "data/labels.csv",
        f"{sys.executable} prepare.py",
    )
    train = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]
    dvc(
        repo,
        "stage",
        "add",
        "-q",
        "--force",
        "-n",
        "train",
        "-d",
        "data/transactions.csv",
        "-d",
        "data/labels.csv",
        "-d",
        "train.py",
        "-p",
        "train.lr,train.depth",
        "-o",
        "model.bin",
        "-M",
        "eval.json",
        train["cmd"],
    )
    dvc(repo, "repro", "-q")
    commit(repo)
    r = register(repo, "--dvc", str(repo / "dvc.lock"))
    assert r.exit_code == 2 and "several stages have outs (" in r.stderr
    assert "train" in r.stderr and "prepare" in r.stderr
    r = register(repo, "--dvc", f"{repo / 'dvc.lock'}:train")
    assert (
        r.exit_code == 2
        and "several DVC-tracked data paths (data/labels.csv, data/transactions.csv)" in r.stderr
    ), r.stderr
    spec = doc_of(register(repo, "--dvc", f"{repo / 'dvc.lock'}:train", "--dataset", "labels"))["spec"]
    assert spec["lineage"]["dataset"]["name"] == "data/labels.csv"
    assert spec["lineage"]["dataset"]["version"] == md5(labels)
    r = register(repo, "--dvc", f"{repo / 'dvc.lock'}:nope")
    assert r.exit_code == 2 and "no stage 'nope'" in r.stderr


def test_directory_out_needs_uri_and_is_checked_against_the_dir_listing(repo: Path) -> None:
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


def test_dvc2_layout_and_no_remote(repo: Path) -> None:
    """A DVC 2 out (no `hash: md5`, objects at <2>/<30>), written by hand: DVC 3 no longer writes
    them. The remote configuration is changed with `dvc remote` itself."""
    dvc(repo, "remote", "remove", "storage")
    legacy = b"legacy-model-" + bytes(range(100))
    (repo / "legacy.bin").write_bytes(legacy)
    (repo / "legacy.bin.dvc").write_text(
        yaml.safe_dump({"outs": [{"md5": md5(legacy), "size": len(legacy), "path": "legacy.bin"}]})
    )
    cached = repo / ".dvc" / "cache" / md5(legacy)[:2] / md5(legacy)[2:]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(legacy)
    (repo / ".gitignore").write_text((repo / ".gitignore").read_text() + "/legacy.bin\n")
    commit(repo)
    base = [
        "--dvc",
        str(repo / "legacy.bin.dvc"),
        "--dataset",
        "d",
        "--dataset-version",
        "1",
        "--metric",
        "a=1",
    ]
    r = register(repo, *base)
    spec = doc_of(r)["spec"]
    assert (
        spec["artifact"]["uri"] == (repo / "legacy.bin").resolve().as_uri()
    )  # no remote: the workspace file
    assert spec["artifact"]["sha256"] == sha256(legacy)
    assert "names no remote" in r.stderr
    dvc(repo, "remote", "add", "--local", "-d", "s3", "s3://dvc/store")  # .dvc/config.local
    spec = doc_of(register(repo, *base))["spec"]
    h = md5(legacy)
    assert spec["artifact"]["uri"] == f"s3://dvc/store/{h[:2]}/{h[2:]}"  # DVC 2: no files/md5/


def test_bad_dvc_input(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.dvc").write_text("outs: []\n")
    r = register(tmp_path / "elsewhere", "--dvc", str(tmp_path / "elsewhere" / "x.dvc"))
    assert r.exit_code == 2 and "not inside a DVC repository" in r.stderr
    (repo / "bad.dvc").write_text(yaml.safe_dump({"outs": [{"path": "m.bin", "hash": "md5"}]}))
    commit(repo)
    r = register(repo, "--dvc", str(repo / "bad.dvc"))
    assert r.exit_code == 2 and "m.bin has no md5" in r.stderr
    r = register(repo, "--dvc", str(repo / "missing.dvc"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    with pytest.raises(Exception, match="remote 'nope' is not defined"):
        dvcmeta.remote_url(repo, "nope")
