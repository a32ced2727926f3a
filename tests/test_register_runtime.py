"""kubectl models register and the runtime catalog: --image (spec.runtime), --runtime-ref
(spec.runtimeRef), --model-format (spec.format) or --framework (lineage.framework) for the operator to
choose; the document each combination prints, and each refusal (before anything is hashed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models import register_plan, register_runtime
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.register_plan import RegisterInputs

BASE = [
    "register",
    "fraud-detector",
    "2.4.1",
    "--artifact",
    "s3://models/fraud-detector/2.4.1/",
    "--sha256",
    "c" * 64,
    "--dataset",
    "tx",
    "--dataset-version",
    "1",
    "--metric",
    "auc=0.9",
    "--code-commit",
    "abcdef1",
    "--code-repository",
    "https://git.example.com/fraud.git",
]
RUNTIME_KEYS = ("runtime", "runtimeRef", "format")


def _run(*extra: str) -> Any:
    return CliRunner().invoke(app, [*BASE, *extra])


def _spec(*extra: str) -> dict[str, Any]:
    r = _run(*extra)
    assert r.exit_code == 0, r.output
    spec: dict[str, Any] = yaml.safe_load(r.stdout)["spec"]
    return spec


def _runtime_fields(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in RUNTIME_KEYS if k in spec}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--image", "img:1"], {"runtime": {"image": "img:1"}}),
        (["--image", "img:1", "--port", "9000"], {"runtime": {"image": "img:1", "port": 9000}}),
        (
            ["--runtime-ref", "ClusterModelRuntime/xgboost-server"],
            {"runtimeRef": {"kind": "ClusterModelRuntime", "name": "xgboost-server"}},
        ),
        (["--runtime-ref", "modelruntime/xgb"], {"runtimeRef": {"kind": "ModelRuntime", "name": "xgb"}}),
        (["--runtime-ref", "xgb"], {"runtimeRef": {"name": "xgb"}}),
        (["--model-format", "sklearn:1"], {"format": {"name": "sklearn", "version": "1"}}),
        (["--model-format", "sklearn"], {"format": {"name": "sklearn"}}),
        (
            ["--runtime-ref", "ModelRuntime/sk", "--model-format", "sklearn:1.5"],
            {
                "runtimeRef": {"kind": "ModelRuntime", "name": "sk"},
                "format": {"name": "sklearn", "version": "1.5"},
            },
        ),
        (
            ["--image", "img:1", "--model-format", "sklearn"],
            {"runtime": {"image": "img:1"}, "format": {"name": "sklearn"}},
        ),
        (["--framework", "xgboost-2.0.3"], {}),  # the operator reads lineage.framework as the format
    ],
)
def test_register_records_the_runtime_each_combination_names(options: list[str], expected: dict[str, Any]):
    spec = _spec(*options)
    assert _runtime_fields(spec) == expected
    assert ("framework" in spec["lineage"]) == ("--framework" in options)
    assert "format" not in spec["artifact"]


def test_the_artifact_format_stays_the_artifact_s_and_is_not_the_model_format():
    spec = _spec("--format", "joblib", "--runtime-ref", "sk")
    assert spec["artifact"]["format"] == "joblib"
    assert _runtime_fields(spec) == {"runtimeRef": {"name": "sk"}}
    r = _run("--format", "joblib")  # an artifact format alone names no runtime
    assert r.exit_code == 2 and "missing: runtime.image (--image)" in r.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--image", "img:1", "--runtime-ref", "sk"],
            "--image and --runtime-ref are exclusive (spec.runtime and spec.runtimeRef)",
        ),
        (["--runtime-ref", "sk", "--port", "9000"], "--port belongs to an explicit runtime (spec.runtime)"),
        (["--model-format", "sklearn", "--port", "9000"], "--port belongs to an explicit runtime"),
        (["--framework", "xgboost-2.0.3", "--port", "9000"], "--port belongs to an explicit runtime"),
        (["--port", "9000"], "--port belongs to an explicit runtime"),
        (["--runtime-ref", "Deployment/sk"], "--runtime-ref 'Deployment/sk' must be NAME or KIND/NAME"),
        (["--runtime-ref", "ModelRuntime/"], "with KIND ModelRuntime or ClusterModelRuntime"),
        (["--model-format", "sklearn:"], "--model-format 'sklearn:' must be NAME or NAME:VERSION"),
        (["--model-format", ":1"], "--model-format ':1' must be NAME or NAME:VERSION"),
        (["--runtime-ref", "Bad_Name"], "invalid ModelVersion"),
        (["--model-format", "scikit learn"], "invalid ModelVersion"),
    ],
)
def test_register_refuses_runtime_options_before_hashing(tmp_path: Path, options: list[str], message: str):
    art = tmp_path / "model.bin"
    art.write_bytes(b"weights")
    base = [a if a != "s3://models/fraud-detector/2.4.1/" else str(art) for a in BASE]
    base = [a for a in base if a not in ("--sha256", "c" * 64)]  # would be hashed
    r = CliRunner().invoke(app, [*base, *options])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and r.stdout == ""
    assert "sha256 of" not in r.stderr


def test_without_any_runtime_the_plain_message_is_kept():
    r = _run()
    assert r.exit_code == 2
    assert "incomplete metadata; missing: runtime.image (--image)" in r.stderr


def test_missing_metadata_asks_for_an_image_only_when_the_catalog_cannot_choose():
    inp = RegisterInputs(
        model="m", version="1.0.0", artifact="a", dataset="tx", dataset_version="1", metrics={"a": 1}
    )
    inp.code_commit = "abc1234"
    assert register_plan.missing_metadata(inp) == ["runtime.image (--image)"]
    for given in ({"runtime_ref": "sk"}, {"model_format": "sklearn"}, {"framework": "sklearn-1.5"}):
        assert register_plan.missing_metadata(RegisterInputs(**{**inp.__dict__, **given})) == []


def test_the_parsers_and_the_errors_alone():
    assert register_runtime.parse_runtime_ref("CLUSTERMODELRUNTIME/a.b") == {
        "kind": "ClusterModelRuntime",
        "name": "a.b",
    }
    assert register_runtime.parse_model_format("xgboost:2:1") == {"name": "xgboost", "version": "2:1"}
    assert register_runtime.runtime_errors("img", 80, None) == []
    assert register_runtime.runtime_errors(None, None, "sk") == []
    assert len(register_runtime.runtime_errors("img", None, "sk")) == 1
    with pytest.raises(Refused) as e:
        register_runtime.check_runtime(None, None, None, "")
    assert e.value.code == 2


def test_help_lists_the_runtime_options_with_an_example():
    r = CliRunner().invoke(app, ["register", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for option in ("--runtime-ref", "--model-format", "[KIND/]NAME", "NAME[:VERSION]"):
        assert option in r.stdout
    assert "ClusterModelRuntime/xgboost-server" in r.stdout  # the epilog's catalog example


def test_the_catalog_document_validates_with_the_api_model():
    r = _run("--runtime-ref", "ModelRuntime/sk", "--model-format", "sklearn:1")
    model = register_plan.validate_manifest(yaml.safe_load(r.stdout))
    assert model.spec.runtime is None and model.spec.runtime_ref is not None
    assert model.spec.runtime_ref.kind == "ModelRuntime" and model.spec.format is not None
