"""`kubectl models runtimes convert | list`: KServe's ServingRuntime/ClusterServingRuntime manifests (the
fixture is written in KServe's documented format) become ours, every field left out or rewritten a
warning on stderr, never dropped silently; the result validates and is what the catalog reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from modelversioning.api.runtime import ModelRuntimeSpec
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models import context
from modelversioning.cli.models import runtime_convert as rc
from modelversioning.domain.runtime_catalog import CatalogRuntime, Format, RuntimeFacts, resolve_runtime

FIXTURE = Path(__file__).parent / "fixtures" / "kserve-mlserver.yaml"


def cli(*args: str, cluster: Any = None, monkeypatch: pytest.MonkeyPatch | None = None) -> Result:
    if cluster is not None and monkeypatch is not None:
        monkeypatch.setattr(context, "Cluster", lambda *a, **k: cluster)
    return CliRunner().invoke(app, list(args))


def converted() -> tuple[list[dict[str, Any]], list[str]]:
    docs = [(f"f#{i}: ", d) for i, d in enumerate(yaml.safe_load_all(FIXTURE.read_text()))]
    return rc.convert_all(docs)


def test_the_kserve_mlserver_manifest_converts_and_validates() -> None:
    objs, _ = converted()
    cluster, team = objs
    assert cluster["apiVersion"] == "modelversioning.io/v1alpha1" and cluster["kind"] == "ClusterModelRuntime"
    assert cluster["metadata"] == {
        "name": "kserve-mlserver",
        "annotations": {"serving.kserve.io/server-type": "mlserver"},
    }
    spec = cluster["spec"]
    assert spec["protocolVersions"] == ["v2"] and len(spec["supportedModelFormats"]) == 6
    assert spec["supportedModelFormats"][1] == {
        "name": "sklearn",
        "version": "1",
        "autoSelect": True,
        "priority": 2,
    }
    c = spec["containers"][0]
    assert c["image"] == "docker.io/seldonio/mlserver:1.6.1" and c["resources"]["limits"]["memory"] == "2Gi"
    assert c["env"] == [
        {"name": "MLSERVER_HTTP_PORT", "value": "8080"},
        {"name": "MLSERVER_GRPC_PORT", "value": "9000"},
        {"name": "MODELS_DIR", "value": "$(MODEL_PATH)"},  # KServe's /mnt/models, rewritten
    ]
    assert team["kind"] == "ModelRuntime" and team["metadata"]["namespace"] == "team-a"
    assert team["spec"]["containers"][0]["args"] == ["--model_dir=$(MODEL_PATH)", "--http_port=8080"]
    assert team["spec"]["containers"][0]["readinessProbe"] == {"httpGet": {"path": "/v1/models"}}
    for o in objs:
        ModelRuntimeSpec.model_validate(o["spec"])


def test_everything_left_out_or_rewritten_is_a_warning() -> None:
    _, warnings = converted()
    text = "\n".join(warnings)
    for needle in (
        "ClusterServingRuntime kserve-mlserver: spec.annotations: not supported",
        "spec.containers[0].securityContext: not supported",
        "env MLSERVER_MODEL_IMPLEMENTATION: '{{.Labels.modelClass}}' is a KServe per-InferenceService "
        "template",
        "env MODELS_DIR: /mnt/models (KServe's model directory) became $(MODEL_PATH)",
        "ServingRuntime team-sklearn: spec.multiModel: not supported",
        "spec.containers[0].args: '--model_name={{.Name}}'",
        "spec.containers[0].readinessProbe: only httpGet.path is used",
    ):
        assert needle in text, needle
    assert len(warnings) == 8, warnings


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "not a serving.kserve.io"),
        (
            {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": {}},
            "metadata.name",
        ),
        (
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ServingRuntime",
                "metadata": {"name": "x"},
                "spec": {},
            },
            "containers",  # no container: nothing to serve with
        ),
    ],
)
def test_what_cannot_be_converted_is_refused(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(rc.NotConvertible, match=needle):
        rc.convert_all([("f#1: ", doc)])


def test_a_converted_runtime_is_chosen_by_format() -> None:
    objs, _ = converted()
    spec = ModelRuntimeSpec.model_validate(objs[0]["spec"]).to_k8s()
    mlserver = CatalogRuntime("ClusterModelRuntime", "kserve-mlserver", spec=spec)
    r = resolve_runtime(RuntimeFacts("ns", format=Format("sklearn", "1"), catalog=(mlserver,)))
    assert r.resolved is not None and r.resolved["image"] == "docker.io/seldonio/mlserver:1.6.1"
    assert r.resolved["protocol"] == "v2" and r.resolved["healthPath"] == "/v2/health/ready"


def test_the_command_prints_ours_on_stdout_and_warnings_on_stderr() -> None:
    res = cli("runtimes", "convert", "-f", str(FIXTURE))
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(res.stdout))
    assert [d["kind"] for d in docs] == ["ClusterModelRuntime", "ModelRuntime"]
    assert "warning: " in res.stderr and "securityContext" in res.stderr and "warning" not in res.stdout


def test_the_command_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    res = cli("runtimes", "convert", "-f", str(tmp_path / "absent.yaml"))
    assert res.exit_code == 2 and "cannot read" in res.stderr
    bad = tmp_path / "cm.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    res = cli("runtimes", "convert", "-f", str(bad))
    assert res.exit_code == 1 and "not a serving.kserve.io" in res.stderr


class FakeCluster:
    namespace = "team-a"

    def list(
        self, res: Any, all_namespaces: bool = False, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        objs, _ = converted()
        return [o for o in objs if o["kind"] == res.kind]  # the API server's items (kind set by the command)


def test_list_shows_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    res = cli("runtimes", "list", cluster=FakeCluster(), monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["KIND", "NAMESPACE", "NAME"]
    assert lines[1].split()[:3] == ["ModelRuntime", "team-a", "team-sklearn"]  # this namespace's first
    assert "ClusterModelRuntime" in lines[2] and "sklearn:1 (auto, priority 2)" in lines[2]
    res = cli("-o", "json", "runtimes", "list", cluster=FakeCluster(), monkeypatch=monkeypatch)
    rows = yaml.safe_load(res.stdout)
    assert [r["name"] for r in rows] == ["team-sklearn", "kserve-mlserver"] and rows[1]["protocols"] == ["v2"]


def test_get_and_diff_show_the_resolved_runtime() -> None:
    from modelversioning.cli.models import views

    resolved = {
        "image": "reg.example/mlserver@sha256:" + "a" * 64,
        "port": 8080,
        "protocol": "v2",
        "source": {"kind": "ClusterModelRuntime", "name": "kserve-mlserver", "uid": "u", "generation": 3},
    }
    mv = {
        "metadata": {"name": "iris-v1.0.0", "namespace": "ns"},
        "spec": {
            "model": "iris",
            "version": "1.0.0",
            "format": {"name": "sklearn"},
            "artifact": {},
            "lineage": {},
        },
        "status": {"resolvedRuntime": resolved},
    }
    assert views.describe_view(mv)["runtime"] == resolved
    rows = {(r["section"], r["key"]): r for r in views.diff_rows(mv, mv)}
    assert rows[("runtime", "image")]["a"] == resolved["image"] and ("runtime", "source.name") in rows
