"""Issue 14, finding 9 (the API): credentials and unbounded values in the spec. The operator's own
models refuse them (an object admitted before a rule existed becomes InvalidSpec); the generated CRD
refuses them at admission where CEL can type the field, the chart's spec-limits admission policy
where it cannot (lineage.hyperparameters; e2e/test_adversarial.py). As landed all were accepted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelversioning.api import crdgen
from modelversioning.api.modelversion_spec import ModelVersionSpec


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "m",
        "version": "1.0.0",
        "artifact": {"uri": "s3://b/m/1.0.0/", "sha256": "a" * 64},
        "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
        "metrics": {"auc": 0.9},
        "runtime": {"image": "img:1"},
    }
    for path, value in over.items():
        node = base
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return base


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("artifact.uri", "https://user:hunter2@models.example.com/m.bin"),
        ("artifact.uri", "https://bucket.s3.amazonaws.com/m.bin?X-Amz-Credential=AKIA&X-Amz-Signature=abc"),
        ("artifact.uri", "https://acct.blob.core.windows.net/c/m.bin?sv=2022&sig=abc"),
        ("artifact.uri", "https://storage.googleapis.com/b/m.bin?X-Goog-Signature=abc"),
        ("lineage.codeRepository", "https://ci-bot:ghp_token@git.example.com/ml/fraud.git"),
        ("lineage.hyperparameters", {"optimizer": {"name": "adam"}}),
        ("lineage.hyperparameters", {"blob": "x" * 1_000_000}),
        ("lineage.environment", {"notes": "x" * 1_000_000}),
        ("runtime.args", ["x" * 1_000_000]),
        ("metrics", {"k" * 300: 1.0}),
    ],
)
def test_the_spec_refuses_credentials_and_unbounded_values(path: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        ModelVersionSpec.model_validate(spec(**{path: value}))


def test_ordinary_values_are_still_fine() -> None:
    ModelVersionSpec.model_validate(
        spec(**{
            "artifact.uri": "https://models.example.com/m.bin?version=3",
            "lineage.hyperparameters": {"lr": 0.05, "depth": 8, "early_stop": True, "optimizer": "adam"},
            "lineage.codeRepository": "git@github.com:acme/fraud.git",
        })
    )  # fmt: skip


def test_the_generated_crd_carries_the_rules() -> None:
    crd = crdgen.all_crds()["modelversioning.io_modelversions.yaml"]
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    uri_rules = [r["rule"] for r in spec_schema["artifact"]["properties"]["uri"]["x-kubernetes-validations"]]
    assert any("@" in r for r in uri_rules) and any("x-amz-signature" in r for r in uri_rules)
    lineage = spec_schema["lineage"]["properties"]
    assert lineage["environment"]["additionalProperties"]["maxLength"] == 1024
    assert spec_schema["runtime"]["properties"]["args"]["items"]["maxLength"] == 1024
