"""The runtime catalog, decided purely (domain.runtime_catalog): which runtime a version without
spec.runtime resolves to, each way it cannot, and what it records; the API's rules about runtime,
runtimeRef and format; the serving digest that covers a resolved runtime."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelversioning.api import wire as R
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.runtime import ModelRuntimeSpec
from modelversioning.domain.approvals import serving_digest
from modelversioning.domain.conditions import FALSE, TRUE
from modelversioning.domain.runtime_catalog import (
    CLUSTER,
    EXPLICIT,
    NAMESPACED,
    CatalogRuntime,
    Format,
    RuntimeFacts,
    framework_format,
    resolve_runtime,
    resolved_from,
)

NS = "team"


def fmt(name: str, version: str | None = None, auto: bool | None = True, priority: int | None = None) -> dict:
    out: dict[str, Any] = {"name": name}
    if version is not None:
        out["version"] = version
    if auto is not None:
        out["autoSelect"] = auto
    if priority is not None:
        out["priority"] = priority
    return out


def rt(
    name: str,
    *formats: dict[str, Any],
    kind: str = CLUSTER,
    ns: str = "",
    image: str | None = None,
    disabled: bool = False,
    protocols: tuple[str, ...] = ("v2",),
    generation: int = 1,
    **container: Any,
) -> CatalogRuntime:
    spec: dict[str, Any] = {
        "supportedModelFormats": list(formats),
        "containers": [{"name": "kserve-container", "image": image or f"reg.example/{name}:1", **container}],
        "protocolVersions": list(protocols),
    }
    if disabled:
        spec["disabled"] = True
    valid = ModelRuntimeSpec.model_validate(spec).to_k8s()  # as gathered: validated, wire form
    return CatalogRuntime(kind, name, ns if kind == NAMESPACED else "", f"uid-{name}", generation, valid)


MLSERVER = rt("kserve-mlserver", fmt("sklearn", "1", priority=2), fmt("xgboost", "1", priority=2))
TEAM_SKLEARN = rt("team-sklearn", fmt("sklearn", priority=2), kind=NAMESPACED, ns=NS)
OTHER_TENANT = rt("greedy", fmt("sklearn", priority=100), kind=NAMESPACED, ns="other-team")
LOUD = rt("loud", fmt("sklearn", priority=9), disabled=True)
MANUAL = rt("manual-onnx", fmt("onnx", auto=False))
UNRANKED = rt("a-unranked", fmt("sklearn"))
BROKEN = CatalogRuntime(CLUSTER, "broken", uid="u", generation=3, invalid="containers: too short")
CATALOG = (MLSERVER, TEAM_SKLEARN, OTHER_TENANT, LOUD, MANUAL, UNRANKED, BROKEN)


def by_format(name: str, version: str | None = None, catalog: tuple[CatalogRuntime, ...] = CATALOG) -> Any:
    return resolve_runtime(RuntimeFacts(NS, format=Format(name, version), catalog=catalog))


def by_ref(kind: str, name: str, format: Format | None = None) -> Any:
    return resolve_runtime(RuntimeFacts(NS, ref=(kind, name), format=format, catalog=CATALOG))


def chosen(r: Any) -> str:
    assert r.cond is not None and r.cond.status == TRUE, r.cond
    return str(r.resolved["source"]["name"])


# ---- chosen by format: autoSelect, priority, namespaced before cluster, by name; tenancy


@pytest.mark.parametrize(
    ("catalog", "format", "want"),
    [
        # equal priority 2: this namespace's before the cluster's; another tenant's (priority 100) unseen
        (CATALOG, Format("sklearn"), "team-sklearn"),
        ((MLSERVER, OTHER_TENANT), Format("sklearn"), "kserve-mlserver"),
        # a higher priority wins over the namespace
        ((TEAM_SKLEARN, rt("fast", fmt("sklearn", priority=3))), Format("sklearn"), "fast"),
        # a priority set beats none; a disabled runtime is never chosen, whatever its priority
        ((UNRANKED, MLSERVER, LOUD), Format("sklearn"), "kserve-mlserver"),
        # ties (same kind, same priority) by name
        (
            (rt("b-sk", fmt("sklearn", priority=2)), rt("a-sk", fmt("sklearn", priority=2))),
            Format("sklearn"),
            "a-sk",
        ),
        # names ignore case; a finer version matches its major; none on either side matches
        (CATALOG, Format("XGBoost", "1.7.6"), "kserve-mlserver"),
        ((MLSERVER,), Format("sklearn", "1"), "kserve-mlserver"),
        ((UNRANKED,), Format("sklearn", "1.3"), "a-unranked"),
    ],
)
def test_a_format_chooses_the_runtime(catalog: tuple[CatalogRuntime, ...], format: Format, want: str) -> None:
    assert chosen(resolve_runtime(RuntimeFacts(NS, format=format, catalog=catalog))) == want


@pytest.mark.parametrize(
    ("catalog", "format"),
    [
        (CATALOG, Format("xgboost", "2")),  # MLServer serves xgboost 1 only
        (CATALOG, Format("onnx")),  # only a runtime without autoSelect serves it
        ((LOUD,), Format("sklearn")),  # disabled
        ((OTHER_TENANT,), Format("sklearn")),  # another namespace's ModelRuntime is never seen
        (CATALOG, Format("xgboost", "10")),  # "10" is not a finer "1"
        ((), Format("sklearn")),
    ],
)
def test_no_runtime_for_a_format(catalog: tuple[CatalogRuntime, ...], format: Format) -> None:
    r = resolve_runtime(RuntimeFacts(NS, format=format, catalog=catalog))
    assert r.resolved is None and r.cond is not None
    assert (r.cond.status, r.cond.reason) == (FALSE, R.NO_RUNTIME_FOR_FORMAT)
    assert str(format) in r.cond.message and "spec.runtimeRef" in r.cond.message


def test_no_format_at_all_fails_closed() -> None:
    r = resolve_runtime(RuntimeFacts(NS, catalog=CATALOG))
    assert r.cond is not None and r.cond.reason == R.NO_RUNTIME_FOR_FORMAT and not r.ok


# ---- by reference: each bad input its own reason


@pytest.mark.parametrize(
    ("kind", "name", "format", "reason", "said"),
    [
        (CLUSTER, "nope", None, R.RUNTIME_NOT_FOUND, "ClusterModelRuntime nope, which does not exist"),
        # tenancy: another namespace's ModelRuntime does not exist for this one
        (NAMESPACED, "greedy", None, R.RUNTIME_NOT_FOUND, f"does not exist in namespace {NS}"),
        (NAMESPACED, "kserve-mlserver", None, R.RUNTIME_NOT_FOUND, "ModelRuntime kserve-mlserver"),
        (CLUSTER, "loud", None, R.RUNTIME_DISABLED, "disabled"),
        (
            CLUSTER,
            "kserve-mlserver",
            Format("onnx"),
            R.RUNTIME_FORMAT_MISMATCH,
            "supports: sklearn 1, xgboost 1",
        ),
        (CLUSTER, "kserve-mlserver", Format("sklearn", "2"), R.RUNTIME_FORMAT_MISMATCH, "format sklearn 2"),
        (CLUSTER, "broken", None, R.INVALID_RUNTIME, "containers: too short"),
    ],
)
def test_a_bad_reference_says_why(
    kind: str, name: str, format: Format | None, reason: str, said: str
) -> None:
    r = by_ref(kind, name, format)
    assert r.resolved is None and r.cond is not None and not r.ok
    assert (r.cond.status, r.cond.reason) == (FALSE, reason) and said in r.cond.message, r.cond.message


@pytest.mark.parametrize(
    ("kind", "name", "format", "want"),
    [
        (CLUSTER, "kserve-mlserver", None, "kserve-mlserver"),
        (CLUSTER, "manual-onnx", Format("onnx"), "manual-onnx"),  # autoSelect is for choosing, not naming
        (CLUSTER, "kserve-mlserver", Format("sklearn", "1.5"), "kserve-mlserver"),
        (NAMESPACED, "team-sklearn", Format("SKLEARN"), "team-sklearn"),
        ("", "team-sklearn", None, "team-sklearn"),  # no kind: KServe's lookup
        ("", "kserve-mlserver", None, "kserve-mlserver"),
    ],
)
def test_a_reference_resolves(kind: str, name: str, format: Format | None, want: str) -> None:
    r = by_ref(kind, name, format)
    assert chosen(r) == want and r.ok


def test_no_kind_prefers_the_namespaced_runtime_of_the_same_name() -> None:
    twin = rt("team-sklearn", fmt("sklearn"), image="reg.example/cluster-twin:1")
    r = resolve_runtime(RuntimeFacts(NS, ref=("", "team-sklearn"), catalog=(twin, TEAM_SKLEARN)))
    assert r.resolved is not None and r.resolved["source"]["kind"] == NAMESPACED


# ---- explicit wins, resolved stays


def test_an_explicit_runtime_wins_and_resolves_nothing() -> None:
    r = resolve_runtime(RuntimeFacts(NS, explicit=True, ref=(CLUSTER, "nope"), catalog=CATALOG))
    assert r is EXPLICIT and r.ok and r.cond is None and r.resolved is None


def test_a_resolved_runtime_stays_whatever_the_catalog_says_now() -> None:
    first = by_format("sklearn", catalog=(MLSERVER,))
    assert first.resolved is not None
    edited = rt("kserve-mlserver", fmt("sklearn", "1", priority=2), image="reg.example/evil:2", generation=2)
    for catalog in ((edited,), (), (LOUD,)):
        again = resolve_runtime(
            RuntimeFacts(NS, format=Format("sklearn"), resolved=first.resolved, catalog=catalog)
        )
        assert again.resolved == first.resolved and again.cond == first.cond


# ---- what is recorded


def test_the_record_holds_image_command_env_port_protocol_health_and_source() -> None:
    r = rt(
        "srv",
        fmt("sklearn"),
        protocols=("grpc-v2", "v2", "v1"),
        image="reg.example/srv@sha256:" + "a" * 64,
        command=["mlserver", "start"],
        args=["$(MODEL_PATH)"],
        env=[{"name": "MLSERVER_HTTP_PORT", "value": "9000"}],
        ports=[{"containerPort": 9000, "protocol": "TCP"}],
        resources={"requests": {"cpu": "1"}},
        generation=7,
    )
    got = resolved_from(r)
    assert got == {
        "image": "reg.example/srv@sha256:" + "a" * 64,
        "command": ["mlserver", "start"],
        "args": ["$(MODEL_PATH)"],
        "env": [{"name": "MLSERVER_HTTP_PORT", "value": "9000"}],
        "port": 9000,
        "protocol": "v2",  # the first HTTP protocol listed
        "healthPath": "/v2/health/ready",  # the protocol's own
        "resources": {"requests": {"cpu": "1"}},
        "source": {"kind": CLUSTER, "name": "srv", "uid": "uid-srv", "generation": 7},
    }


@pytest.mark.parametrize(
    ("protocols", "probe", "protocol", "health"),
    [
        ((), None, "v1", None),  # KServe's default protocol; v1 has no health path: a TCP check
        (("v1",), {"httpGet": {"path": "/ready", "port": 8080}}, "v1", "/ready"),
        (("v2",), {"httpGet": {"path": "/v2/models/m/ready"}}, "v2", "/v2/models/m/ready"),
        (("grpc-v2",), None, "v1", None),
    ],
)
def test_protocol_and_health(
    protocols: tuple[str, ...], probe: Any, protocol: str, health: str | None
) -> None:
    extra = {"readinessProbe": probe} if probe else {}
    got = resolved_from(rt("x", fmt("sklearn"), protocols=protocols, **extra))
    assert got["protocol"] == protocol and got.get("healthPath") == health and got["port"] == 8080


@pytest.mark.parametrize(
    ("framework", "want"),
    [
        ("sklearn", Format("sklearn")),
        ("xgboost-2.0.3", Format("xgboost", "2.0.3")),
        ("PyTorch 2.1", Format("PyTorch", "2.1")),
        ("scikit-learn", Format("scikit-learn")),
        ("", None),
        (None, None),
    ],
)
def test_lineage_framework_as_a_format(framework: str | None, want: Format | None) -> None:
    assert framework_format(framework) == want


# ---- the serving digest covers a resolved runtime


def test_the_serving_digest_covers_the_resolved_runtime() -> None:
    spec = {"artifact": {"sha256": "a" * 64}, "format": {"name": "sklearn"}}
    resolved = resolved_from(MLSERVER)
    base = serving_digest(spec, resolved)
    assert len(base) == 64 and serving_digest(spec) == ""  # nothing resolved: nothing to approve
    for change in (
        {"image": "reg.example/other:1"},
        {"env": [{"name": "X", "value": "1"}]},
        {"protocol": "v1"},
        {"port": 9000},
        {"source": {**resolved["source"], "generation": 2}},
        {"source": {**resolved["source"], "uid": "recreated"}},
    ):
        assert serving_digest(spec, {**resolved, **change}) != base, change
    # an explicit runtime's digest is what it always was: a resolved record beside it is ignored
    explicit = {**spec, "runtime": {"image": "img:1"}}
    assert serving_digest(explicit, resolved) == serving_digest(explicit)


def test_no_approval_counts_for_a_version_whose_runtime_is_not_resolved() -> None:
    from modelversioning.domain.approvals import Approval, ApprovalContext, refusal

    ctx = ApprovalContext("a" * 64, serving_digest="", recorded=True)
    said = refusal(Approval("alice", "production", "a" * 64, serving_digest=""), ctx)
    assert said is not None and "not resolved" in said
    ok = ApprovalContext("a" * 64, serving_digest="d" * 64, recorded=True)
    assert refusal(Approval("alice", "production", "a" * 64, serving_digest="d" * 64), ok) is None


# ---- the API: runtime, runtimeRef, format


BASE: dict[str, Any] = {
    "model": "iris",
    "version": "1.0.0",
    "artifact": {"uri": "s3://b/iris/1", "sha256": "a" * 64},
    "lineage": {"codeCommit": "abc1234", "dataset": {"name": "iris", "version": "1"}},
    "metrics": {"accuracy": 0.97},
}


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ({"format": {"name": "sklearn"}}, True),
        ({"runtimeRef": {"name": "kserve-mlserver"}}, True),
        ({"runtime": {"image": "img:1"}}, True),
        ({"lineage": {**BASE["lineage"], "framework": "sklearn-1.5"}}, True),
        ({}, False),  # nothing says what serves it
        ({"runtime": {"image": "img:1"}, "runtimeRef": {"name": "x"}}, False),  # exclusive
        ({"runtimeRef": {"kind": "ServingRuntime", "name": "x"}}, False),  # KServe's kinds are converted
    ],
)
def test_the_spec_names_a_runtime_one_way(extra: dict[str, Any], ok: bool) -> None:
    data = {**BASE, **extra}
    if ok:
        ModelVersionSpec.model_validate(data)
    else:
        with pytest.raises(ValidationError):
            ModelVersionSpec.model_validate(data)
