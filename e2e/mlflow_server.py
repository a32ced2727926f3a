"""A real MLflow tracking server on loopback, for tests: `mlflow server` (the PyPI package, installed
by the dev extra) with a SQLite backend store and a local artifact root served through its proxy.

    with MlflowServer(tmp_dir) as srv:        # or srv.start() / srv.stop()
        srv.url                                # http://127.0.0.1:PORT
        srv.artifacts                          # the --artifacts-destination directory
        srv.startup_seconds

Started with `python -m mlflow server` from this interpreter; ready when GET /health answers 200
(polled until a deadline; the process dying or the deadline passing raises with the log's tail).
A missing `mlflow` package raises (tests fail, never skip).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from childserver import free_port

START_TIMEOUT = float(os.environ.get("MV_MLFLOW_START_TIMEOUT", "180"))


class MlflowServerError(RuntimeError):
    pass


class MlflowServer:
    def __init__(self, root: Path, *, artifacts: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.artifacts = (artifacts or self.root / "mlartifacts").resolve()
        self.db = self.root / "mlflow.db"
        self.log_path = self.root / "mlflow-server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self) -> MlflowServer:
        if importlib.util.find_spec("mlflow") is None:
            raise MlflowServerError(
                "the `mlflow` package is not installed in this interpreter "
                f"({sys.executable}); `./dev test` installs it with the dev extra, or: "
                "pip install -c constraints.txt -e '.[dev]'"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.db}",
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # No background job runner (its huey consumers are ~7 processes the tests never use).
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        t0 = time.monotonic()
        log = open(self.log_path, "wb")  # noqa: SIM115 (closed with the process)
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env, start_new_session=True
            )
        finally:
            log.close()
        deadline = t0 + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise MlflowServerError(
                    f"mlflow server exited with {self.proc.returncode} while starting:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise MlflowServerError(
                    f"mlflow server not ready on {self.url} after {START_TIMEOUT:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.2)  # poll interval while waiting for /health, bounded by the deadline
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn/gunicorn workers
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def log_version(
    url: str,
    model: str,
    *,
    params: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
    git: tuple[str, str] | None = None,
    dataset: tuple[str, str] | None = None,
    user: str = "jane.doe@example.com",
    aliases: tuple[str, ...] = (),
    version_tags: dict[str, str] | None = None,
    experiment: str = "tests",
    artifact_location: str | None = None,
    coef: float = 1.0,
    from_run_artifacts: bool = False,
) -> dict[str, str]:
    """Train a tiny scikit-learn model in a run logged with MLflow's own client (params, metrics,
    git tags, a pandas dataset input with context 'training'), log it with mlflow.sklearn.log_model
    and register it as a new version of `model`. Returns run_id, version, model_uri, run start time.
    ``artifact_location`` (for a new experiment): a store the client writes to directly, instead of
    the server's proxy. ``from_run_artifacts``: the MLflow 2 way instead: the model saved, logged
    as the run's artifacts under ``model/`` and registered from ``runs:/RUN/model`` (the version's
    source and download URI stay that runs:/ URI)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LinearRegression

    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    if artifact_location is not None and client.get_experiment_by_name(experiment) is None:
        # artifacts written by the client straight to this store (no proxy): sources are file:// URIs
        client.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    tags = {"mlflow.user": user}
    if git is not None:
        tags["mlflow.source.git.commit"], tags["mlflow.source.git.repoURL"] = git
    with mlflow.start_run(tags=tags) as run:
        if params:
            mlflow.log_params(params)
        if metrics:
            mlflow.log_metrics(metrics)
        x = np.array([[0.0], [1.0], [2.0], [3.0]])
        y = coef * x[:, 0]
        if dataset is not None:
            name, source = dataset
            df = pd.DataFrame({"x": x[:, 0], "y": y})
            mlflow.log_input(mlflow.data.from_pandas(df, source=source, name=name, targets="y"), "training")
        fitted = LinearRegression().fit(x, y)
        if from_run_artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.sklearn.save_model(fitted, f"{tmp}/model", pip_requirements=["scikit-learn"])
                mlflow.log_artifacts(f"{tmp}/model", artifact_path="model")
        else:
            info = mlflow.sklearn.log_model(
                fitted, name="model", pip_requirements=["scikit-learn"], registered_model_name=model
            )
    if from_run_artifacts:
        if not client.search_registered_models(filter_string=f"name='{model}'"):
            client.create_registered_model(model)
        model_uri = f"runs:/{run.info.run_id}/model"
        version = str(client.create_model_version(model, model_uri, run_id=run.info.run_id).version)
    else:
        model_uri, version = info.model_uri, str(info.registered_model_version)
    for alias in aliases:
        client.set_registered_model_alias(model, alias, version)
    for k, v in (version_tags or {}).items():
        client.set_model_version_tag(model, version, k, v)
    r = client.get_run(run.info.run_id)
    return {
        "run_id": run.info.run_id,
        "version": version,
        "model_uri": model_uri,
        "start_time": str(r.info.start_time),
    }
