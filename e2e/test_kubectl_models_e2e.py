"""`kubectl models` against the real control plane and the running operator.

Every command runs as a subprocess of the installed console script (`kubectl-models`), the way
kubectl runs it as a plugin: `kubectl-models --kubeconfig K -n NS <command> ...`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import Objects, cond_is, make_artifact, model_endpoint, model_version, vs_weights, wait_for

BIN = Path(sys.executable).parent / "kubectl-models"
BASE = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
COMMANDS = (
    "register",
    "list",
    "get",
    "describe",
    "history",
    "promote",
    "rollback",
    "status",
    "which",
    "diff",
)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("KUBECONFIG", None)
    return subprocess.run([*BASE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


@pytest.fixture
def km(cluster, namespace, operator):
    """Run `kubectl-models --kubeconfig <cluster> -n <namespace> ARGS...`."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args, cwd=cwd, timeout=timeout
        )

    return run


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def git_repo(path: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, check=True, capture_output=True, text=True
        ).stdout.strip()

    path.mkdir(parents=True)
    git("init", "-q")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "ci")
    (path / "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "training code")
    git("remote", "add", "origin", "https://git.example.com/ml/fraud-detector.git")
    return git("rev-parse", "HEAD")


def register_obj(
    objs: Objects,
    root: Path,
    model: str,
    version: str,
    stage: str = "production",
    complete: bool = True,
    metrics: dict[str, float] | None = None,
    hyper: dict[str, Any] | None = None,
    commit: str = "3f9c2a1",
) -> str:
    """A ModelVersion created directly (not through the CLI); returns its sha256."""
    uri, sha = make_artifact(root, model, version)
    mv = model_version(model, version, uri, sha, stage=stage, complete=complete)
    mv["spec"]["metrics"] = metrics or {"auc": 0.9}
    mv["spec"]["lineage"]["codeCommit"] = commit
    if hyper is not None:
        mv["spec"]["lineage"]["hyperparameters"] = hyper
    objs.create(mv)
    return sha


def stage_is(objs: Objects, name: str, stage: str) -> bool:
    m = objs.mv(name)
    return (m.get("status") or {}).get("stage") == stage and cond_is(m, "ArtifactVerified", "True")


def test_help_mentions_every_command():
    p = ok(run_cli("--help"))
    for cmd in COMMANDS:
        assert re.search(rf"\b{cmd}\b", p.stdout), cmd
    assert "Examples" in p.stdout and "Exit codes" in p.stdout
    for cmd in COMMANDS:
        sub = ok(run_cli(cmd, "--help"))
        assert "Example" in sub.stdout, cmd


def test_register_apply_list_get_describe(km, objs, artifact_root, tmp_path, namespace, cluster):
    head = git_repo(tmp_path / "code")
    art = artifact_root / namespace / "fraud-detector" / "2.4.1"  # a directory artifact
    art.mkdir(parents=True)
    (art / "model.bin").write_bytes(b"fraud-detector 2.4.1 weights\n" * 100)
    (art / "config.json").write_text('{"threshold": 0.5}\n')
    p = ok(
        km(
            "register",
            "fraud-detector",
            "2.4.1",
            "--artifact",
            str(art),
            "--image",
            "registry.k8s.io/pause:3.10",
            "--dataset",
            "transactions",
            "--dataset-version",
            "2024-09-30",
            "--metric",
            "auc=0.951",
            "--metric",
            "f1=0.79",
            "--hyperparameter",
            "learning_rate=0.04",
            "--author",
            "jane@example.com",
            "--framework",
            "xgboost-2.0.3",
            "--apply",
            cwd=tmp_path / "code",
        )
    )
    assert "modelversion.modelversioning.io/fraud-detector-v2.4.1 created" in p.stdout
    # the digest the CLI computed is the one the operator verifies (directory manifest digest)
    mv = wait_for(
        lambda: (m := objs.mv("fraud-detector-v2.4.1")) and cond_is(m, "ArtifactVerified", "True") and m,
        60,
        "ArtifactVerified",
    )
    assert mv["status"]["artifact"]["files"] == 2
    lineage = mv["spec"]["lineage"]
    assert lineage["codeCommit"] == head
    assert lineage["codeRepository"] == "https://git.example.com/ml/fraud-detector.git"
    assert mv["metadata"]["annotations"]["modelversioning.io/requested-by"] == "admin"
    assert mv["status"]["history"][0]["actor"] == "admin"
    # versions are immutable: registering the same version again is refused
    again = km(
        "register",
        "fraud-detector",
        "2.4.1",
        "--artifact",
        str(art),
        "--image",
        "x",
        "--dataset",
        "t",
        "--dataset-version",
        "1",
        "--metric",
        "auc=1",
        "--apply",
        cwd=tmp_path / "code",
    )
    assert again.returncode == 1 and "already exists" in again.stderr

    register_obj(objs, artifact_root, "fraud-detector", "2.3.8", stage="candidate")
    wait_for(lambda: stage_is(objs, "fraud-detector-v2.3.8", "candidate"), 60, "2.3.8 verified")
    p = ok(km("list"))
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "VERSION", "REQUESTED", "STAGE"]
    assert [ln.split()[1] for ln in lines[1:]] == ["2.3.8", "2.4.1"]
    assert all("True" in ln for ln in lines[1:])
    rows = json.loads(ok(km("list", "fraud-detector", "-o", "json")).stdout)
    assert [(r["version"], r["stage"], r["verified"]) for r in rows] == [
        ("2.3.8", "candidate", "True"),
        ("2.4.1", "candidate", "True"),
    ]
    assert json.loads(ok(km("list", "other-model", "-o", "json")).stdout) == []
    allns = ok(run_cli("--kubeconfig", str(cluster.kubeconfig), "list", "-A"))
    assert namespace in allns.stdout

    got = yaml.safe_load(ok(km("get", "fraud-detector", "2.4.1", "-o", "yaml")).stdout)
    assert got["spec"]["lineage"]["codeCommit"] == head and "managedFields" not in got["metadata"]
    text = ok(km("describe", "fraud-detector", "2.4.1")).stdout
    sha = mv["spec"]["artifact"]["sha256"]
    for want in (
        "Lineage",
        head,
        "transactions@2024-09-30",
        "jane@example.com",
        "learning_rate",
        "auc",
        "0.951",
        f"Verified digest:  {sha}",
        "Stage history",
        "Registered",
        "ArtifactVerified",
        "no endpoint serves",
    ):
        assert want in text, want
    missing = km("get", "fraud-detector", "9.9.9")
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_promote_records_actor_and_history(km, objs, artifact_root):
    register_obj(objs, artifact_root, "fraud-detector", "2.3.8", stage="candidate")
    register_obj(objs, artifact_root, "fraud-detector", "2.4.1", stage="candidate")
    wait_for(lambda: stage_is(objs, "fraud-detector-v2.4.1", "candidate"), 60, "verified")
    p = ok(km("promote", "fraud-detector", "2.3.8", "--to", "staging"))
    assert re.search(r"candidate -> staging\s+admin\s+spec.stage set to staging", p.stdout)
    assert "fraud-detector-v2.3.8 is now staging" in p.stdout
    p = ok(km("promote", "fraud-detector", "2.3.8", "--to", "production", "--reason", "approved by risk"))
    assert re.search(r"staging -> production\s+admin\s+approved by risk", p.stdout)
    # two hops at once (candidate -> staging -> production), as JSON
    out = json.loads(
        ok(
            km("promote", "fraud-detector", "2.4.1", "--to", "production", "--reason", "canary", "-o", "json")
        ).stdout
    )
    assert out["result"] == "promoted" and out["stage"] == "production"
    assert [(h["from"], h["to"], h["actor"]) for h in out["history"]] == [
        ("candidate", "staging", "admin"),
        ("staging", "production", "admin"),
    ]
    assert objs.mv("fraud-detector-v2.4.1")["status"]["stage"] == "production"

    hist = json.loads(ok(km("history", "fraud-detector", "-o", "json")).stdout)
    assert [h["at"] for h in hist] == sorted(h["at"] for h in hist)
    assert [(h["version"], h["from"], h["to"]) for h in hist if h["from"]] == [
        ("2.3.8", "candidate", "staging"),
        ("2.3.8", "staging", "production"),
        ("2.4.1", "candidate", "staging"),
        ("2.4.1", "staging", "production"),
    ]
    assert {h["actor"] for h in hist if h["from"]} == {"admin"}
    table = ok(km("history", "fraud-detector")).stdout
    assert table.splitlines()[0].split() == ["TIME", "VERSION", "FROM", "->", "TO", "ACTOR", "REASON"]
    assert re.search(r"2\.3\.8\s+staging -> production\s+admin\s+approved by risk", table)
    assert re.search(r"2\.4\.1\s+staging -> production\s+admin\s+canary", table)


def test_promote_blocked_says_why(km, objs, artifact_root):
    register_obj(objs, artifact_root, "churn", "1.0.0", stage="candidate", complete=False)
    wait_for(lambda: stage_is(objs, "churn-v1.0.0", "candidate"), 60, "verified")
    p = km("promote", "churn", "1.0.0", "--to", "production", "--reason", "ship it")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "LineageIncomplete" in p.stderr and "lineage.codeRepository" in p.stderr
    assert "stays staging" in p.stderr  # the allowed first hop was made
    assert objs.mv("churn-v1.0.0")["status"]["stage"] == "staging"
    bad = km("promote", "churn", "1.0.0", "--to", "candidate")
    assert bad.returncode == 1 and "TransitionNotAllowed" in bad.stderr


def test_promote_times_out_without_an_operator(km, objs, artifact_root, operator):
    register_obj(objs, artifact_root, "late", "1.0.0", stage="candidate")
    wait_for(lambda: stage_is(objs, "late-v1.0.0", "candidate"), 60, "verified")
    operator.stop()
    try:
        p = km("promote", "late", "1.0.0", "--to", "staging", "--timeout", "2")
        assert p.returncode == 3, p.stdout + p.stderr
        assert "timed out after 2s" in p.stderr
        nowait = ok(km("promote", "late", "1.0.0", "--to", "staging", "--no-wait"))
        assert "requested staging" in nowait.stdout
    finally:
        operator.start()
    ok(km("promote", "late", "1.0.0", "--to", "staging"))


def test_status_which_and_diff(km, objs, artifact_root):
    sha_old = register_obj(
        objs,
        artifact_root,
        "fraud-detector",
        "2.3.8",
        metrics={"auc": 0.94, "f1": 0.78},
        hyper={"learning_rate": 0.05},
        commit="3f9c2a1",
    )
    sha_new = register_obj(
        objs,
        artifact_root,
        "fraud-detector",
        "2.4.1",
        metrics={"auc": 0.951, "f1": 0.79, "latency_p99_ms": 12.1},
        hyper={"learning_rate": 0.04, "max_depth": 9},
        commit="9b1e77c04a",
    )
    objs.create(
        model_endpoint(
            "fraud-detector",
            "fraud-detector",
            [
                {"name": "stable", "version": "2.3.8", "weight": 90},
                {"name": "canary", "version": "2.4.1", "weight": 10},
            ],
        )
    )
    wait_for(lambda: cond_is(objs.mep("fraud-detector"), "Ready", "True"), 90, "endpoint Ready")
    text = ok(km("status", "fraud-detector")).stdout
    assert "Traffic:" in text and "stable@2.3.8=90,canary@2.4.1=10" in text
    serving = text.split("Serving")[1]
    assert re.search(rf"90%\s+stable\s+2\.3\.8\s+{sha_old}\s+3f9c2a1\s+tx@2024-06-30", serving)
    assert re.search(rf"10%\s+canary\s+2\.4\.1\s+{sha_new}\s+9b1e77c04a", serving)
    which = json.loads(ok(km("which", "fraud-detector", "-o", "json")).stdout)
    by = {v["name"]: v for v in which["variants"]}
    assert (by["stable"]["effectiveWeight"], by["stable"]["routeWeight"], by["stable"]["digest"]) == (
        90,
        90,
        sha_old,
    )
    assert (by["canary"]["effectiveWeight"], by["canary"]["routeWeight"], by["canary"]["digest"]) == (
        10,
        10,
        sha_new,
    )
    assert by["canary"]["verifiedDigest"] == sha_new and by["canary"]["eligible"] is True
    assert by["canary"]["lineage"]["codeCommit"] == "9b1e77c04a"
    assert "Serving" in ok(km("which", "fraud-detector")).stdout  # which = status

    d = json.loads(ok(km("diff", "fraud-detector", "2.3.8", "2.4.1", "-o", "json")).stdout)
    rows = {(r["section"], r["key"]): r for r in d["rows"]}
    assert rows[("metrics", "auc")]["delta"] == pytest.approx(0.011)
    assert rows[("lineage", "codeCommit")]["change"] == "*"
    assert rows[("hyperparameters", "max_depth")]["change"] == "+"
    assert rows[("runtime", "image")]["change"] == ""
    table = ok(km("diff", "fraud-detector", "2.3.8", "2.4.1")).stdout
    assert re.search(r"\*\s+metrics\s+auc\s+0\.94\s+0\.951\s+\+0\.011", table)
    assert re.search(r"\+\s+hyperparameters\s+max_depth\s+<none>\s+9", table)
    assert re.search(r"^\s+runtime\s+image", table, re.M)  # unchanged rows carry no marker


def test_rollback_seed_story(km, objs, artifact_root, namespace):
    """fraud-detector 2.4.1 took over from 2.3.8 and degrades: one command moves traffic back."""
    register_obj(objs, artifact_root, "fraud-detector", "2.3.8")
    register_obj(objs, artifact_root, "fraud-detector", "2.4.1")
    objs.create(
        model_endpoint(
            "fraud-detector",
            "fraud-detector",
            [
                {"name": "stable", "version": "2.3.8", "weight": 0},
                {"name": "canary", "version": "2.4.1", "weight": 100},
            ],
        )
    )
    wait_for(
        lambda: vs_weights(objs.virtualservice("fraud-detector")) == {"stable": 0, "canary": 100},
        90,
        "canary took over",
    )
    wait_for(lambda: cond_is(objs.mep("fraud-detector"), "Ready", "True"), 60, "Ready")
    before = objs.mep("fraud-detector")

    # GitOps mode: print, change nothing
    p = ok(km("rollback", "fraud-detector", "--print"))
    patch = json.loads(p.stdout)
    assert [(v["name"], v["weight"]) for v in patch["spec"]["variants"]] == [("stable", 100), ("canary", 0)]
    manifest = yaml.safe_load(ok(km("rollback", "fraud-detector", "--print", "-o", "yaml")).stdout)
    assert manifest["kind"] == "ModelEndpoint" and "status" not in manifest
    assert [v["weight"] for v in manifest["spec"]["variants"]] == [100, 0]
    after_print = objs.mep("fraud-detector")
    assert after_print["metadata"]["generation"] == before["metadata"]["generation"]
    assert after_print["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert vs_weights(objs.virtualservice("fraud-detector")) == {"stable": 0, "canary": 100}

    canary = objs.slot("fraud-detector", "canary")
    dep_before = objs.apps.read_namespaced_deployment(canary, namespace)
    p = ok(km("rollback", "fraud-detector"))
    m = re.search(r"rolled back fraud-detector to stable \(2\.3\.8\) in (\d+\.\d\d)s", p.stdout)
    assert m, p.stdout
    assert float(m.group(1)) < 30
    assert re.search(r"stable\s+2\.3\.8\s+0%\s+100%", p.stdout) and re.search(
        r"canary\s+2\.4\.1\s+100%\s+0%", p.stdout
    )
    assert vs_weights(objs.virtualservice("fraud-detector")) == {"stable": 100, "canary": 0}
    ep = objs.mep("fraud-detector")
    assert [(v["name"], v["weight"]) for v in ep["spec"]["variants"]] == [("stable", 100), ("canary", 0)]
    assert ep["metadata"]["annotations"]["modelversioning.io/requested-by"] == "admin"
    dep_after = objs.apps.read_namespaced_deployment(canary, namespace)
    assert dep_after.metadata.generation == dep_before.metadata.generation  # canary stays deployed and warm

    again = km("rollback", "fraud-detector")
    assert again.returncode == 1 and "nothing to roll back to" in again.stderr
    nope = km("rollback", "fraud-detector", "--to", "9.9.9")
    assert nope.returncode == 1 and "no variant running version 9.9.9" in nope.stderr
    forward = json.loads(ok(km("rollback", "fraud-detector", "--to", "2.4.1", "-o", "json")).stdout)
    assert forward["after"] == {"stable": 0, "canary": 100} and forward["seconds"] >= 0


def test_kubectl_runs_it_as_a_plugin(cluster, namespace, operator):
    path = f"{BIN.parent}{os.pathsep}{cluster.env().get('PATH', '')}"
    kubectl = shutil.which("kubectl", path=path)
    assert kubectl, "kubectl is needed to run the plugin"
    p = subprocess.run(
        [kubectl, "models", "--kubeconfig", str(cluster.kubeconfig), "list", "-n", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path},
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []
