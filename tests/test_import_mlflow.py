"""`kubectl models import mlflow` against a REAL MLflow tracking server started here (e2e/mlflow_server.py:
`mlflow server`, SQLite backend, local artifact root behind its proxy, on loopback), with runs and
registered versions logged by MLflow's own client in this process.

The importer reads the server with MLflow's client too (the `mlflow` extra: mlflow-skinny); without
it the command says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelversioning.api.modelversion import ModelVersion
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import digest_local, verify_artifact
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.importers import mlflow_artifacts, mlflow_client, mlflow_registry
from modelversioning.cli.models.importers.mapping import VersionRule, model_name, stage_for
from modelversioning.cli.models.importers.mlflow_lineage import dataset_of, framework_of

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from mlflow_server import MlflowServer, log_version  # noqa: E402

COMMIT = "3f9c2a1d8e4b5a6c7d8e9f0a1b2c3d4e5f6a7b8c"
REPO = "https://git.example.com/ml/fraud-detector.git"
DATASET = ("transactions", "s3://data/transactions/2024-06-30.parquet")
IMAGE = "ghcr.io/acme/fraud-server:1.4"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    srv.start()
    print(f"mlflow server ready in {srv.startup_seconds:.1f}s")
    try:
        full = {
            "git": (COMMIT, "https://jane:s3cret@git.example.com/ml/fraud-detector.git"),
            "dataset": DATASET,
        }
        runs = {
            "v1": log_version(
                srv.url,
                "fraud-detector",
                params={"learning_rate": 0.05, "max_depth": 8, "optimizer": "adam"},
                metrics={"auc": 0.947, "f1": 0.81},
                **full,  # type: ignore[arg-type]
            ),
            "v2": log_version(
                srv.url,
                "fraud-detector",
                params={"learning_rate": 0.03, "max_depth": 9},
                metrics={"auc": 0.951, "f1": 0.83},
                aliases=("champion",),
                version_tags={"semver": "v2.4.1"},
                coef=2.0,
                **full,  # type: ignore[arg-type]
            ),
            "v3": log_version(
                srv.url,
                "fraud-detector",
                params={"learning_rate": 0.02},
                metrics={"auc": 0.955},
                aliases=("challenger",),
                coef=3.0,
                **full,  # type: ignore[arg-type]
            ),
            # A training script run outside git, with no dataset logged.
            "nolineage": log_version(srv.url, "no-lineage", params={"a": 1}, metrics={"auc": 0.5}),
            "mutable": log_version(srv.url, "mutable", metrics={"auc": 0.7}, coef=4.0, **full),  # type: ignore[arg-type]
            "gone": log_version(srv.url, "gone", metrics={"auc": 0.6}, coef=5.0, **full),  # type: ignore[arg-type]
            # an experiment whose artifacts the client writes straight to a store (no proxy): file:// sources
            "direct": log_version(
                srv.url,
                "direct",
                metrics={"auc": 0.8},
                coef=6.0,
                experiment="direct-store",
                artifact_location=(srv.root / "direct-store").as_uri(),
                **full,  # type: ignore[arg-type]
            ),
            # the MLflow 2 way: model files logged as run artifacts, registered from runs:/RUN/model
            "fromrun": log_version(
                srv.url,
                "from-run",
                metrics={"auc": 0.85},
                coef=7.0,
                from_run_artifacts=True,
                **full,  # type: ignore[arg-type]
            ),
        }
        yield {"srv": srv, "runs": runs}
    finally:
        srv.stop()


def artifact_dir(srv: MlflowServer, model_uri: str) -> Path:
    """Where the server's proxy keeps a logged model (MLflow 3: <exp>/models/<model id>/artifacts)."""
    model_id = model_uri.removeprefix("models:/")
    found = list(srv.artifacts.glob(f"*/models/{model_id}/artifacts"))
    assert len(found) == 1, f"no artifact directory for {model_uri} under {srv.artifacts}"
    return found[0]


def run_import(srv: MlflowServer, *args: str, env: dict[str, str] | None = None) -> Any:
    base = ["import", "mlflow", *args]
    if "--image" not in args:
        base += ["--image", IMAGE]
    if "--artifacts-destination" not in args and "--no-destination" not in args:
        base += ["--artifacts-destination", str(srv.artifacts)]
    base = [a for a in base if a != "--no-destination"]
    return CliRunner().invoke(app, base, env={"MLFLOW_TRACKING_URI": srv.url, **(env or {})})


def ok(r: Any) -> Any:
    assert r.exit_code == 0, f"exit {r.exit_code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}\n{r.exception!r}"
    return r


def docs(r: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def rfc3339(ms: str) -> str:
    return (
        datetime.fromtimestamp(int(ms) / 1000, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


# ---- one version, all of it -------------------------------------------------------------------------
def test_one_version_lineage_matches_the_run(world: dict[str, Any]) -> None:
    srv, run = world["srv"], world["runs"]["v1"]
    r = ok(run_import(srv, "fraud-detector", "--version", "1"))
    [doc] = docs(r)
    ModelVersion.model_validate(doc)  # what the API server's rules check, too
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "fraud-detector-v1.1.0"
    assert spec["model"] == "fraud-detector" and spec["version"] == "1.1.0"
    lin = spec["lineage"]
    assert lin["codeCommit"] == COMMIT
    assert lin["codeRepository"] == REPO  # credentials in the tag are not copied
    assert "s3cret" not in r.stdout
    assert lin["hyperparameters"] == {"learning_rate": 0.05, "max_depth": 8, "optimizer": "adam"}
    assert spec["metrics"] == {"auc": 0.947, "f1": 0.81}
    assert lin["author"] == "jane.doe@example.com"
    assert lin["trainedAt"] == rfc3339(run["start_time"])
    import sklearn

    assert lin["framework"] == f"sklearn-{sklearn.__version__}"
    assert lin["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))
    ds = lin["dataset"]
    assert ds["name"] == "transactions" and ds["uri"] == DATASET[1]
    assert ds["version"] and "sha256" not in ds  # MLflow's dataset digest (8 hex) is a version, not a sha256
    assert spec["runtime"] == {"image": IMAGE}
    assert spec["stage"] == "candidate"
    ann = doc["metadata"]["annotations"]
    assert ann["modelversioning.io/mlflow-version"] == "1"
    assert ann["modelversioning.io/mlflow-run-id"] == run["run_id"]
    assert ann["modelversioning.io/mlflow-tracking-uri"] == srv.url

    # The artifact: the store behind the proxy, and the digest the operator will compute there.
    where = artifact_dir(srv, run["model_uri"])
    assert spec["artifact"]["uri"] == where.as_uri() + "/"
    assert spec["artifact"]["format"] == "mlflow"
    expected = digest_local(where)
    assert spec["artifact"]["sha256"] == expected.sha256 and expected.kind == "directory"
    assert spec["artifact"]["sizeBytes"] == expected.size_bytes
    res = verify_artifact(
        spec["artifact"]["uri"],
        spec["artifact"]["sha256"],
        policy=ArtifactPolicy(file_roots=[str(srv.artifacts)]),
    )
    assert res.ok, res.message


def test_all_versions_in_order_with_distinct_digests(world: dict[str, Any]) -> None:
    srv = world["srv"]
    r = ok(run_import(srv, "fraud-detector", "--all"))
    ds = docs(r)
    assert [d["spec"]["version"] for d in ds] == ["1.1.0", "1.2.0", "1.3.0"]
    assert len({d["spec"]["artifact"]["sha256"] for d in ds}) == 3
    assert [d["spec"]["metrics"]["auc"] for d in ds] == [0.947, 0.951, 0.955]
    for d in ds:
        ModelVersion.model_validate(d)
    # -o json: one List
    j = ok(
        CliRunner().invoke(
            app,
            [
                "-o",
                "json",
                "import",
                "mlflow",
                "fraud-detector",
                "--all",
                "--image",
                IMAGE,
                "--artifacts-destination",
                str(srv.artifacts),
                "--major",
                "3",
            ],
            env={"MLFLOW_TRACKING_URI": srv.url},
        )
    )
    import json

    lst = json.loads(j.stdout)
    assert lst["kind"] == "List" and [i["spec"]["version"] for i in lst["items"]] == [
        "3.1.0",
        "3.2.0",
        "3.3.0",
    ]


def test_by_alias_with_stage_from_alias_and_tag_rule(world: dict[str, Any]) -> None:
    srv = world["srv"]
    r = ok(
        run_import(srv, "fraud-detector", "--alias", "champion", "--stage-from-alias", "champion=production")
    )
    [doc] = docs(r)
    assert doc["spec"]["version"] == "1.2.0" and doc["spec"]["stage"] == "production"
    assert doc["metadata"]["annotations"]["modelversioning.io/mlflow-version"] == "2"

    r = ok(
        run_import(
            srv,
            "fraud-detector",
            "--alias",
            "champion",
            "--alias",
            "challenger",
            "--version-from",
            "tag:semver",
            "--version-map",
            "3=2.5.0",
            "--stage-from-alias",
            "challenger=staging",
        )
    )
    got = {d["spec"]["version"]: d["spec"]["stage"] for d in docs(r)}
    assert got == {"2.4.1": "candidate", "2.5.0": "staging"}

    # the tag rule on a version without the tag: an error naming the version and the tag
    r = run_import(srv, "fraud-detector", "--version", "1", "--version-from", "tag:semver")
    assert r.exit_code == 2 and r.stdout == ""
    assert "no tag 'semver' on MLflow version 1" in r.stderr and "--version-map 1=X.Y.Z" in r.stderr

    r = run_import(srv, "fraud-detector", "--alias", "nope")
    assert r.exit_code == 1 and "no alias 'nope'" in r.stderr and "champion=2" in r.stderr


# ---- idempotency and conflicts ----------------------------------------------------------------------
def test_rerun_is_idempotent(world: dict[str, Any], tmp_path: Path) -> None:
    srv = world["srv"]
    first = ok(run_import(srv, "fraud-detector", "--all"))
    again = ok(run_import(srv, "fraud-detector", "--all"))
    assert first.stdout == again.stdout  # deterministic YAML: same MLflow state, same manifests

    out = tmp_path / "models"
    r1 = ok(run_import(srv, "fraud-detector", "--all", "--out-dir", str(out)))
    assert r1.stdout.count(" written") == 3
    files = sorted(out.glob("*.yaml"))
    before = {f.name: f.read_bytes() for f in files}
    assert [f.name for f in files] == [f"fraud-detector-v1.{n}.0.yaml" for n in (1, 2, 3)]
    r2 = ok(run_import(srv, "fraud-detector", "--all", "--out-dir", str(out)))
    assert r2.stdout.count(" unchanged") == 3 and " written" not in r2.stdout
    assert {f.name: f.read_bytes() for f in sorted(out.glob("*.yaml"))} == before


def test_a_version_already_imported_with_another_digest_is_refused(
    world: dict[str, Any], tmp_path: Path
) -> None:
    srv = world["srv"]
    out = tmp_path / "models"
    ok(run_import(srv, "fraud-detector", "--version", "1", "--version-map", "1=3.0.0", "--out-dir", str(out)))
    target = out / "fraud-detector-v3.0.0.yaml"
    before = target.read_bytes()
    # the rule changed: MLflow version 2 now maps onto 3.0.0, which holds version 1's bytes
    r = run_import(srv, "fraud-detector", "--version", "2", "--version-map", "2=3.0.0", "--out-dir", str(out))
    assert r.exit_code == 1, r.stderr
    assert "refusing to import" in r.stderr and "fraud-detector-v3.0.0" in r.stderr
    assert "another digest" in r.stderr and "Nothing was written" in r.stderr
    assert target.read_bytes() == before

    # the bytes behind an MLflow version changed in the store
    mutable = world["runs"]["mutable"]
    ok(run_import(srv, "mutable", "--version", "1", "--out-dir", str(out)))
    saved = (out / "mutable-v1.1.0.yaml").read_bytes()
    (artifact_dir(srv, mutable["model_uri"]) / "requirements.txt").write_text("scikit-learn\ntampered\n")
    r = run_import(srv, "mutable", "--version", "1", "--out-dir", str(out))
    assert r.exit_code == 1 and "refusing to import" in r.stderr and "mutable-v1.1.0" in r.stderr
    assert (out / "mutable-v1.1.0.yaml").read_bytes() == saved


# ---- bad input --------------------------------------------------------------------------------------
def test_missing_lineage_names_each_field_and_its_source(world: dict[str, Any], tmp_path: Path) -> None:
    srv = world["srv"]
    out = tmp_path / "out"
    r = run_import(srv, "no-lineage", "--all", "--out-dir", str(out))
    assert r.exit_code == 2 and r.stdout == ""
    err = r.stderr
    assert "MLflow no-lineage version 1: incomplete lineage, nothing imported" in err
    assert "lineage.codeCommit (run tag mlflow.source.git.commit" in err
    assert "lineage.codeRepository (run tag mlflow.source.git.repoURL" in err
    assert "lineage.dataset (the run has no dataset input" in err and "mlflow.log_input" in err
    assert "metrics" not in err.split("missing:")[1].split("lineage.dataset")[1]  # it has metrics
    assert not out.exists()  # never a half-filled ModelVersion


def test_unreachable_server_unknown_model_and_version(world: dict[str, Any]) -> None:
    srv = world["srv"]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    started = time.monotonic()
    r = run_import(srv, "fraud-detector", "--all", env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed}"})
    assert (
        r.exit_code == 1
        and f"cannot reach the MLflow tracking server at http://127.0.0.1:{closed}: " in r.stderr
        and "Connection refused" in r.stderr
    ), r.stderr
    # MLflow's client retries 7 times with backoff (minutes); the command lowers that unless set
    assert time.monotonic() - started < 30
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored when the command ends

    r = run_import(srv, "no-such-model", "--all")
    assert r.exit_code == 1 and "has no registered model 'no-such-model'" in r.stderr
    r = run_import(srv, "fraud-detector", "--version", "99")
    assert r.exit_code == 1 and "has no version '99'" in r.stderr

    r = CliRunner().invoke(
        app,
        ["import", "mlflow", "fraud-detector", "--all", "--image", IMAGE],
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert r.exit_code == 2 and "MLFLOW_TRACKING_URI" in r.stderr
    r = run_import(srv, "fraud-detector", "--all", env={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert r.exit_code == 2 and "over HTTP" in r.stderr


def test_a_version_whose_artifact_is_missing(world: dict[str, Any]) -> None:
    srv = world["srv"]
    shutil.rmtree(artifact_dir(srv, world["runs"]["gone"]["model_uri"]))
    r = run_import(srv, "gone", "--version", "1")
    assert r.exit_code == 1 and r.stdout == ""
    assert "is missing on the MLflow server" in r.stderr and "mlflow-artifacts:/" in r.stderr


def test_artifact_stored_without_the_proxy_is_read_from_the_store(world: dict[str, Any]) -> None:
    srv = world["srv"]
    r = ok(run_import(srv, "direct", "--version", "1", "--no-destination"))
    [doc] = docs(r)
    art = doc["spec"]["artifact"]
    store = srv.root / "direct-store"
    [where] = list(store.glob("models/*/artifacts")) or list(store.glob("*/models/*/artifacts"))
    assert art["uri"] == where.as_uri() + "/"  # MLflow's file:// URI, recorded as the directory it is
    assert art["sha256"] == digest_local(where).sha256 and art["format"] == "mlflow"
    assert doc["spec"]["lineage"]["framework"].startswith("sklearn-")  # MLmodel read from the store


def test_version_registered_from_a_runs_uri(world: dict[str, Any]) -> None:
    """runs:/RUN/model (the MLflow 2 way): resolved to the run's artifact root with MLflow's own
    parser, then read through the proxy and recorded under --artifacts-destination."""
    from mlflow.tracking import MlflowClient

    srv, run = world["srv"], world["runs"]["fromrun"]
    assert MlflowClient(srv.url).get_model_version_download_uri("from-run", "1") == run["model_uri"]
    assert run["model_uri"].startswith("runs:/")
    [doc] = docs(ok(run_import(srv, "from-run", "--version", "1")))
    [where] = list(srv.artifacts.glob(f"*/{run['run_id']}/artifacts/model"))
    art = doc["spec"]["artifact"]
    assert art["uri"] == where.as_uri() + "/"
    assert art["sha256"] == digest_local(where).sha256 and art["format"] == "mlflow"
    ann = doc["metadata"]["annotations"]["modelversioning.io/mlflow-artifact-uri"]
    assert ann == f"mlflow-artifacts:/{where.relative_to(srv.artifacts).as_posix()}"
    lin = doc["spec"]["lineage"]
    assert lin["framework"].startswith("sklearn-") and lin["codeCommit"] == COMMIT
    assert doc["spec"]["metrics"] == {"auc": 0.85}


def test_models_and_runs_uris_resolve_through_mlflow(world: dict[str, Any]) -> None:
    """models:/NAME/VERSION, models:/NAME@ALIAS and models:/m-ID (MLflow 3's logged model) all name
    version 2's bytes; unknown ones are errors naming the URI. (The server itself stores a version's
    models:/ source resolved, so this branch is called directly.)"""
    srv, v2 = world["srv"], world["runs"]["v2"]
    dest = srv.artifacts.as_uri()
    with mlflow_client.connect(srv.url) as t:
        sv = mlflow_registry.get_version(t, "fraud-detector", "2")
        expected = mlflow_artifacts.download_uri(t, sv)
        assert expected.startswith("mlflow-artifacts:/")
        path = expected.removeprefix("mlflow-artifacts:/").lstrip("/")
        for uri in ("models:/fraud-detector/2", "models:/fraud-detector@champion", v2["model_uri"]):
            art = mlflow_artifacts.resolve_artifact(t, sv, uri, dest)
            assert art.mlflow_uri == expected, uri
            assert art.destination == f"{dest}/{path}" and art.proxy_path == path
            assert art.proxy_url == f"{srv.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
        for uri in ("models:/fraud-detector/99", "models:/m-00000000000000000000000000000000"):
            with pytest.raises(mlflow_client.MlflowError, match=f"cannot resolve {uri}"):
                mlflow_artifacts.resolve_artifact(t, sv, uri, dest)
        with pytest.raises(mlflow_client.MlflowError, match="no such run"):
            mlflow_artifacts.resolve_artifact(t, sv, f"runs:/{'0' * 32}/model", dest)


def test_without_mlflow_the_command_says_how_to_install_it(world: dict[str, Any]) -> None:
    """MLflow's client is an optional extra: without it, exit 1 and the pip command (in a fresh
    interpreter where importing mlflow fails, as when it is not installed)."""
    srv = world["srv"]
    code = (
        "import sys; sys.modules['mlflow'] = None; sys.argv = ['kubectl-models', *sys.argv[1:]]; "
        "from modelversioning.cli.kubectl_models import main; main()"
    )
    args = ["import", "mlflow", "fraud-detector", "--all", "--image", IMAGE]
    env = {**os.environ, "MLFLOW_TRACKING_URI": srv.url}
    p = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "needs MLflow's Python client" in p.stderr
    assert "pip install 'modelversioning-operator[mlflow]'" in p.stderr and p.stdout == ""


def test_the_operator_image_does_not_carry_mlflow() -> None:
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("mlflow")]
    assert project["optional-dependencies"]["mlflow"] == ["mlflow-skinny>=3.1,<4"]
    [extras] = [
        line for line in (root / "Dockerfile").read_text().splitlines() if line.startswith("ARG EXTRAS=")
    ]
    assert "mlflow" not in extras
    pinned = (root / "constraints.txt").read_text().splitlines()
    assert [line for line in pinned if line.startswith("mlflow-skinny==")]


def test_usage_errors(world: dict[str, Any]) -> None:
    srv = world["srv"]
    r = run_import(srv, "fraud-detector")
    assert r.exit_code == 2 and "--version N" in r.stderr and "--all" in r.stderr
    r = run_import(srv, "fraud-detector", "--all", "--version", "1")
    assert r.exit_code == 2
    r = CliRunner().invoke(
        app, ["import", "mlflow", "fraud-detector", "--all"], env={"MLFLOW_TRACKING_URI": srv.url}
    )
    assert r.exit_code == 2 and "--image" in r.stderr
    # a proxied model directory needs the store behind the proxy
    r = run_import(srv, "fraud-detector", "--version", "1", "--no-destination")
    assert r.exit_code == 2 and "--artifacts-destination" in r.stderr and r.stdout == ""
    r = run_import(srv, "fraud-detector", "--all", "--version-map", "x=1")
    assert r.exit_code == 2 and "--version-map" in r.stderr
    r = run_import(srv, "fraud-detector", "--all", "--version-map", "1=1.2.0")  # collides with version 2
    assert r.exit_code == 2 and "both map to 1.2.0" in r.stderr


# ---- pure rules -------------------------------------------------------------------------------------
def test_version_rule_and_names() -> None:
    rule = VersionRule.parse("mlflow", 1, ["7=2.0.0"])
    assert rule.map("3", {}, {})[0] == "1.3.0"
    assert rule.map("7", {}, {})[0] == "2.0.0"
    tag = VersionRule.parse("tag:semver", 1, [])
    assert tag.map("1", {"semver": "v1.2.3"}, {})[0] == "1.2.3"
    assert tag.map("1", {}, {"semver": "0.9.0"})[0] == "0.9.0"
    assert tag.map("1", {"semver": "latest"}, {})[0] is None
    for bad in (("mlflow", ["3=x"]), ("tag:", []), ("git", [])):
        with pytest.raises(Refused):
            VersionRule.parse(bad[0], 1, bad[1])
    assert model_name("Fraud Detector_v2") == "fraud-detector-v2"
    assert stage_for(["a", "b"], [("b", "staging"), ("a", "production")], "candidate")[0] == "staging"
    assert (
        framework_of({"flavors": {"python_function": {}, "xgboost": {"xgb_version": "2.0.3"}}})
        == "xgboost-2.0.3"
    )
    assert framework_of({"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model"}}}) == (
        "pyfunc-mlflow.pyfunc.model"
    )
    assert dataset_of({"name": "d", "digest": "a" * 64, "source": '{"url": "https://x/d.csv"}'}) == {
        "name": "d",
        "sha256": "a" * 64,
        "uri": "https://x/d.csv",
    }
