"""`kubectl models import mlflow --apply` on the real control plane, from a real MLflow tracking server
(e2e/mlflow_server.py: `mlflow server`, SQLite, artifacts under the operator's file root) with runs
logged by MLflow's own client: the ModelVersions verify, the champion reaches production through the
gates (complete lineage), their lineage is the run's; re-running changes nothing; another digest for
an imported version is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helpers import Objects, cond_is, wait_for
from mlflow_server import MlflowServer, log_version

BIN = Path(sys.executable).parent / "kubectl-models"
BASE = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
COMMIT = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
REPO = "https://git.example.com/ml/fraud-detector.git"
IMAGE = "ghcr.io/acme/fraud-server:1.4"


@pytest.fixture(scope="module")
def mlflow_world(tmp_path_factory: pytest.TempPathFactory, artifact_root: Path) -> Iterator[dict[str, Any]]:
    # The server's --artifacts-destination is under the operator's allowed file root.
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow"), artifacts=artifact_root / "mlartifacts")
    srv.start()
    print(f"mlflow server ready in {srv.startup_seconds:.1f}s")
    try:
        common: dict[str, Any] = {
            "git": (COMMIT, REPO),
            "dataset": ("transactions", "s3://data/transactions/2024-06-30.parquet"),
        }
        runs = [
            log_version(
                srv.url,
                "fraud-detector",
                params={"learning_rate": 0.05, "max_depth": 8},
                metrics={"auc": 0.947},
                **common,
            ),
            log_version(
                srv.url,
                "fraud-detector",
                params={"learning_rate": 0.03, "max_depth": 9},
                metrics={"auc": 0.951, "f1": 0.83},
                aliases=("champion",),
                coef=2.0,
                **common,
            ),
        ]
        yield {"srv": srv, "runs": runs}
    finally:
        srv.stop()


def km(cluster: Any, namespace: str, srv: MlflowServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "MLFLOW_TRACKING_URI": srv.url}
    env.pop("KUBECONFIG", None)
    cmd = [*BASE, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "import", "mlflow", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_import_mlflow_apply_verifies_and_promotes(cluster, namespace, operator, kube, mlflow_world) -> None:
    srv, runs = mlflow_world["srv"], mlflow_world["runs"]
    objs = Objects(kube, namespace)
    args = [
        "fraud-detector",
        "--all",
        "--image",
        IMAGE,
        "--artifacts-destination",
        str(srv.artifacts),
        "--stage-from-alias",
        "champion=production",
    ]
    p = km(cluster, namespace, srv, *args, "--apply")
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert p.stdout.splitlines() == [
        "modelversion.modelversioning.io/fraud-detector-v1.1.0 created",
        "modelversion.modelversioning.io/fraud-detector-v1.2.0 created",
    ]

    # The operator verifies both artifacts from the store behind MLflow's proxy; the champion passes
    # the production gates (verified + complete lineage).
    for name in ("fraud-detector-v1.1.0", "fraud-detector-v1.2.0"):
        wait_for(lambda n=name: cond_is(objs.mv(n), "ArtifactVerified", "True"), 120, f"{name} verified")
    champion = wait_for(
        lambda: (m := objs.mv("fraud-detector-v1.2.0")).get("status", {}).get("stage") == "production" and m,
        120,
        "fraud-detector-v1.2.0 in production",
    )
    assert objs.mv("fraud-detector-v1.1.0")["status"]["stage"] == "candidate"

    lin = champion["spec"]["lineage"]
    started = datetime.fromtimestamp(int(runs[1]["start_time"]) / 1000, UTC).replace(microsecond=0)
    assert lin["codeCommit"] == COMMIT and lin["codeRepository"] == REPO
    assert lin["hyperparameters"] == {"learning_rate": 0.03, "max_depth": 9}
    assert champion["spec"]["metrics"] == {"auc": 0.951, "f1": 0.83}
    assert lin["dataset"]["name"] == "transactions" and lin["dataset"]["version"]
    assert lin["author"] == "jane.doe@example.com"
    assert lin["trainedAt"] == started.isoformat().replace("+00:00", "Z")
    assert lin["framework"].startswith("sklearn-")
    ann = champion["metadata"]["annotations"]
    assert ann["modelversioning.io/mlflow-version"] == "2"
    assert ann["modelversioning.io/mlflow-run-id"] == runs[1]["run_id"]
    assert champion["status"]["artifact"]["digest"] == champion["spec"]["artifact"]["sha256"]
    before = objs.mv("fraud-detector-v1.1.0")

    # Re-running is idempotent.
    p = km(cluster, namespace, srv, *args, "--apply")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "modelversion.modelversioning.io/fraud-detector-v1.1.0 unchanged",
        "modelversion.modelversioning.io/fraud-detector-v1.2.0 unchanged",
    ]

    # Another digest for an imported version (the version rule now maps MLflow 2 onto 1.1.0): refused.
    p = km(
        cluster, namespace, srv, *args[:-2], "--version-map", "2=1.1.0", "--version-map", "1=1.0.0", "--apply"
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert (
        "refusing to import" in p.stderr
        and "fraud-detector-v1.1.0" in p.stderr
        and "Nothing was created" in p.stderr
    )
    names = {
        m["metadata"]["name"]
        for m in objs.co.list_namespaced_custom_object(
            "modelversioning.io", "v1alpha1", namespace, "modelversions"
        )["items"]
    }
    assert names == {"fraud-detector-v1.1.0", "fraud-detector-v1.2.0"}  # 1.0.0 was not created either
    after = objs.mv("fraud-detector-v1.1.0")
    assert (
        after["spec"] == before["spec"]
        and after["metadata"]["generation"] == before["metadata"]["generation"]
    )
