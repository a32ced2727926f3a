"""GitOps tools see the truth (issue 13, item 8), on the real control plane.

ModelVersions and ModelEndpoints are put in the states that matter, read back from the API server,
and judged by the tools' own logic:

- Flux: the kstatus library itself (e2e/kstatus-check: sigs.k8s.io/cli-utils/pkg/kstatus/status
  .Compute, built from the Go module proxy by e2e/build-kstatus.sh) -> Current / InProgress / Failed;
- Argo CD: docs/argocd/health-<kind>.lua run by Debian's lua5.4 and lua5.1 in an Argo CD-like sandbox
  (e2e/argocd_health.lua) -> Healthy / Progressing / Suspended / Degraded.

The objects are created once per module (one namespace), all at once, then each waits for the state
the operator reports in its own conditions (never for the kstatus conditions: a missing Stalled must
fail the kstatus test, not the setup).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_tools import (
    ARGOCD_DIR,
    BUILD_TIMES,
    HEALTH_SCRIPTS,
    ROOT,
    argocd_health,
    kstatus,
    kstatus_binary,
    lua_interpreters,
)
from helpers import Objects, cond_is, condition, make_artifact, model_endpoint, model_version, wait_for

# a fresh machine builds kstatus-check (Go module proxy) and installs Lua in the first test's setup
pytestmark = pytest.mark.timeout(1200)

MODEL = "fraud"


@dataclass(frozen=True)
class Case:
    kind: str  # ModelVersion | ModelEndpoint
    name: str
    ready: Callable[[dict[str, Any]], bool]  # the operator has reported the state (its own conditions)
    kstatus: str  # what Flux's kstatus says
    argocd: str  # what Argo CD's health check says
    says: str  # a word Argo CD's message (and kstatus's, when Failed) must carry
    still: Callable[[dict[str, Any]], bool] | None = None  # the state when read again (default: ready)

    def holds(self, obj: dict[str, Any]) -> bool:
        return (self.still or self.ready)(obj)


def variants_state(obj: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {
        v["name"]: (v.get("reason", ""), int(v.get("effectiveWeight", 0)))
        for v in (obj.get("status") or {}).get("variants") or []
    }


def rollout(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("rollout") or {})


def observed(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    return st.get("observedGeneration") == obj["metadata"].get("generation")


CASES = {
    # ---- ModelVersions
    "mv-verified-production": Case(
        "ModelVersion",
        f"{MODEL}-v2.3.8",
        lambda o: (
            observed(o)
            and cond_is(o, "ArtifactVerified", "True", "Verified")
            and cond_is(o, "StageTransition", "True", "InEffect")
            and o["status"].get("stage") == "production"
        ),
        "Current",
        "Healthy",
        "production",
    ),
    "mv-digest-mismatch": Case(
        "ModelVersion",
        f"{MODEL}-v2.4.2",
        lambda o: observed(o) and cond_is(o, "ArtifactVerified", "False", "DigestMismatch"),
        "Failed",
        "Degraded",
        "DigestMismatch",
    ),
    "mv-lineage-incomplete": Case(
        "ModelVersion",
        f"{MODEL}-v2.6.0",
        lambda o: observed(o) and cond_is(o, "StageTransition", "False", "LineageIncomplete"),
        "Failed",
        "Degraded",
        "LineageIncomplete",
    ),
    "mv-artifact-not-uploaded-yet": Case(  # NotFound: retried with backoff, never final
        "ModelVersion",
        f"{MODEL}-v2.5.0",
        lambda o: observed(o) and cond_is(o, "ArtifactVerified", "False", "NotFound"),
        "InProgress",
        "Progressing",
        "artifact",
        # between two tries it is NotFound, during one Verifying: the same to both tools
        still=lambda o: (
            observed(o)
            and (
                cond_is(o, "ArtifactVerified", "False", "NotFound")
                or cond_is(o, "ArtifactVerified", "Unknown", "Verifying")
            )
        ),
    ),
    # ---- ModelEndpoints
    "mep-ready": Case(
        "ModelEndpoint",
        "ready",
        lambda o: observed(o) and cond_is(o, "Ready", "True"),
        "Current",
        "Healthy",
        "stable@2.3.8=100",
    ),
    "mep-missing-version": Case(
        "ModelEndpoint",
        "missing",
        lambda o: observed(o) and cond_is(o, "Degraded", "True", "MissingVersion"),
        "Failed",
        "Degraded",
        "MissingVersion",
    ),
    "mep-canary-waiting-for-its-version": Case(
        "ModelEndpoint",
        "waiting",
        lambda o: (
            observed(o)
            and cond_is(o, "Progressing", "True")
            and variants_state(o).get("stable") == ("Eligible", 100)
            and variants_state(o).get("canary", ("", 0))[0] == "ArtifactNotVerified"
        ),
        "InProgress",
        "Progressing",
        "canary",
    ),
    "mep-rollout-progressing": Case(
        "ModelEndpoint",
        "rolling",
        lambda o: observed(o) and rollout(o).get("phase") == "Progressing" and rollout(o).get("step") == 1,
        "InProgress",
        "Progressing",
        "RollingOut",
    ),
    "mep-rollout-awaiting-promote": Case(
        "ModelEndpoint",
        "manual",
        lambda o: observed(o) and rollout(o).get("phase") == "Progressing" and rollout(o).get("step") == 1,
        "InProgress",
        "Suspended",
        "paused until promoted",
    ),
    "mep-rollout-paused-inconclusive": Case(
        "ModelEndpoint",
        "paused",
        lambda o: observed(o) and rollout(o).get("phase") == "Paused",
        "InProgress",
        "Suspended",
        "inconclusive",
    ),
    "mep-rollout-failed": Case(
        "ModelEndpoint",
        "failed",
        lambda o: observed(o) and rollout(o).get("phase") == "Failed" and cond_is(o, "Degraded", "True"),
        "Failed",
        "Degraded",
        "inconclusive",
    ),
    "mep-rollout-aborted": Case(
        "ModelEndpoint",
        "aborted",
        lambda o: observed(o) and rollout(o).get("phase") == "Aborted" and cond_is(o, "Degraded", "True"),
        "Failed",
        "Degraded",
        "abort",
    ),
}


# ---- the world --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tools() -> None:
    """Build/install the tools first, so their time is not counted against the objects' deadlines."""
    kstatus_binary()
    lua_interpreters()
    print("tools ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in BUILD_TIMES.items()))


@pytest.fixture(scope="module")
def ns(kube: client.ApiClient, operator: object) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"e2e-gitops-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e": "true"})))
    wait_for(lambda: core.read_namespaced_service_account("default", name), 30, "default ServiceAccount")
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


def _strategy(steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    canary: dict[str, Any] = {"variant": "canary", "baseline": "stable", "steps": steps}
    if analysis:
        # no Prometheus is configured in the e2e operator: every measurement is inconclusive
        metrics = [{"name": "errors", "template": "error-rate", "window": "10s", "max": 0.05}]
        canary["analysis"] = {"interval": "2s", "inconclusiveLimit": 0, "metrics": metrics, **analysis}
    return {"canary": canary}


ROLLOUTS = {
    "rolling": _strategy([{"setWeight": 20}, {"pause": {"duration": "1h"}}]),
    "manual": _strategy([{"setWeight": 20}, {"pause": {}}]),
    "aborted": _strategy([{"setWeight": 20}, {"pause": {}}]),
    "paused": _strategy([{"setWeight": 20}, {"pause": {"duration": "1h"}}], onInconclusive="pause"),
    "failed": _strategy([{"setWeight": 20}, {"pause": {"duration": "1h"}}], onInconclusive="fail"),
}


@pytest.fixture(scope="module")
def world(tools: None, kube: client.ApiClient, ns: str, artifact_root: Path) -> Objects:
    objs = Objects(kube, ns)
    root = artifact_root / ns

    def register(version: str, tamper: bool = False, upload: bool = True, complete: bool = True) -> None:
        uri, sha = make_artifact(root, MODEL, version)
        if tamper:  # other bytes than the sha256 says
            make_artifact(root, MODEL, version, content=b"tampered weights\n")
        if not upload:
            Path(uri.removeprefix("file://")).unlink()
        objs.create(model_version(MODEL, version, uri, sha, stage="production", complete=complete))

    register("2.3.8")
    register("2.4.1")
    register("2.4.2", tamper=True)
    register("2.5.0", upload=False)
    register("2.6.0", complete=False)

    def endpoint(name: str, variants: list[tuple[str, str, int]], **spec: Any) -> None:
        vs = [{"name": n, "version": v, "weight": w} for n, v, w in variants]
        objs.create(model_endpoint(name, MODEL, vs, **spec))

    endpoint("ready", [("stable", "2.3.8", 100)])
    endpoint("missing", [("stable", "2.3.8", 90), ("canary", "2.9.9", 10)])
    endpoint("waiting", [("stable", "2.3.8", 90), ("canary", "2.5.0", 10)])
    for name in ROLLOUTS:  # stable live, canary warm (a strategy from the start would ramp at once)
        endpoint(name, [("stable", "2.3.8", 100), ("canary", "2.4.1", 0)])
    for name, strategy in ROLLOUTS.items():  # then the canary should take everything, by the strategy
        wait_for(lambda n=name: cond_is(objs.mep(n), "Ready", "True"), 120, f"{name}: stable live")
        objs.patch_mep(name, {"spec": {"strategy": strategy, "variants": [
            {"name": "stable", "version": "2.3.8", "weight": 0},
            {"name": "canary", "version": "2.4.1", "weight": 100},
        ]}})  # fmt: skip
    wait_for(lambda: rollout(objs.mep("aborted")).get("step") == 1, 120, "aborted: at its pause step")
    objs.patch_mep(
        "aborted",
        {
            "metadata": {
                "annotations": {
                    "modelversioning.io/rollout-action": "abort",
                    "modelversioning.io/rollout-action-id": str(uuid.uuid4()),
                    "modelversioning.io/requested-by": "e2e-gitops",
                }
            }
        },
    )
    for case_id, case in CASES.items():
        reached(objs, case_id, case)
    return objs


def reached(objs: Objects, case_id: str, case: Case, timeout: float = 120) -> None:
    seen: list[dict[str, Any]] = []

    def check() -> bool:
        seen[:] = [read(objs, case)]
        return case.ready(seen[0])

    try:
        wait_for(check, timeout, f"{case_id}: the operator reports its state")
    except AssertionError as e:
        status = (seen[0].get("status") if seen else None) or {}
        conds = [(c["type"], c["status"], c.get("reason"), c.get("message", "")[:200])
                 for c in status.get("conditions") or []]  # fmt: skip
        gen = seen[0]["metadata"].get("generation") if seen else None
        raise AssertionError(
            f"{e}\n  generation {gen}, observedGeneration {status.get('observedGeneration')}, "
            f"rollout {status.get('rollout', {}).get('phase')}/{status.get('rollout', {}).get('step')}, "
            f"variants {status.get('variants') and variants_state(seen[0])}\n  conditions {conds}"
        ) from None


def read(objs: Objects, case: Case) -> dict[str, Any]:
    return objs.mv(case.name) if case.kind == "ModelVersion" else objs.mep(case.name)


def without_kstatus_conditions(obj: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    conds = out["status"].get("conditions") or []
    out["status"]["conditions"] = [c for c in conds if c["type"] not in ("Reconciling", "Stalled")]
    return out


# ---- Flux: the kstatus library ------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", list(CASES))
def test_kstatus_sees_the_truth(world: Objects, case_id: str) -> None:
    case = CASES[case_id]
    obj = read(world, case)
    assert case.holds(obj), f"{case_id}: the object left its state: {obj.get('status')}"
    (res,) = kstatus(obj)
    conds = {c["type"]: (c["status"], c.get("reason")) for c in obj["status"].get("conditions") or []}
    assert (res["kind"], res["name"]) == (case.kind, case.name)
    assert res["status"] == case.kstatus, (
        f"{case_id}: kstatus says {res['status']} ({res['message']!r}), expected {case.kstatus}; "
        f"conditions {conds}"
    )
    if case.kstatus == "Failed":  # Flux shows the operator's reason and message
        stalled = condition(obj, "Stalled")
        assert stalled is not None and res["message"] == stalled["message"]
        assert stalled["reason"] and case.says.lower() in (stalled["reason"] + stalled["message"]).lower()
    # kstatus's conditions are "abnormal-true": present, and False unless stalled / reconciling
    want = {"Failed": ("False", "True"), "InProgress": ("True", "False"), "Current": ("False", "False")}
    got = tuple(conds.get(t, ("absent",))[0] for t in ("Reconciling", "Stalled"))
    assert got == want[case.kstatus], f"{case_id}: (Reconciling, Stalled) = {got}; conditions {conds}"


@pytest.mark.parametrize("case_id", [k for k, c in CASES.items() if c.kstatus == "Failed"])
def test_without_stalled_kstatus_would_never_say_failed(world: Objects, case_id: str) -> None:
    """The control: the same object without Reconciling/Stalled is InProgress forever to kstatus
    (it falls back to Ready=False), which is why the operator writes them."""
    obj = without_kstatus_conditions(read(world, CASES[case_id]))
    (res,) = kstatus(obj)
    assert res["status"] == "InProgress", res


def test_kstatus_on_a_spec_edit_not_yet_observed(world: Objects) -> None:
    """kstatus's own generation rule: a generation the operator has not observed is InProgress."""
    obj = read(world, CASES["mep-ready"])
    obj["metadata"]["generation"] = int(obj["metadata"]["generation"]) + 1
    (res,) = kstatus(obj)
    assert res["status"] == "InProgress" and "observed generation" in res["message"], res
    assert argocd_health(obj)["status"] == "Progressing"


# ---- Argo CD: the Lua health checks -------------------------------------------------------------------
@pytest.mark.parametrize("case_id", list(CASES))
def test_argocd_health_sees_the_truth(world: Objects, case_id: str) -> None:
    case = CASES[case_id]
    obj = read(world, case)
    assert case.holds(obj), f"{case_id}: the object left its state: {obj.get('status')}"
    for lua in lua_interpreters():
        hs = argocd_health(obj, lua)
        assert hs["status"] == case.argocd, f"{case_id} on {lua}: {hs}; status {obj['status']}"
        assert case.says.lower() in hs["message"].lower(), f"{case_id} on {lua}: {hs}"


def test_all_at_once_as_a_list(world: Objects) -> None:
    """One `kubectl get -o json`-style List through kstatus-check, the way a tool reads a namespace."""
    items = [read(world, c) for c in CASES.values()]
    got = [(r["kind"], r["name"], r["status"]) for r in kstatus(*items)]
    assert got == [(c.kind, c.name, c.kstatus) for c in CASES.values()]


# ---- the install instructions --------------------------------------------------------------------------
def test_readme_patch_command_installs_the_checks(cluster: Any, ns: str) -> None:
    """docs/argocd/README.md's `kubectl patch` (run as written, in a test namespace for `argocd`) adds
    both scripts to an existing argocd-cm and keeps its other keys."""
    text = (ARGOCD_DIR / "README.md").read_text()
    block = re.search(r"```bash\n(kubectl -n argocd patch configmap argocd-cm.*?)```", text, re.S)
    assert block, "docs/argocd/README.md has no kubectl patch block"
    cmd = block.group(1).replace("-n argocd ", f"-n {ns} ")
    env = cluster.env()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "namespace": ns},
          "data": {"url": "https://argocd.example.com"}}  # fmt: skip
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(cm))
    assert res.returncode == 0, res.stderr
    t0 = time.monotonic()
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, f"{cmd}\n{res.stderr}"
    res = cluster.kubectl("get", "configmap", "argocd-cm", "-n", ns, "-o", "json")
    data = json.loads(res.stdout)["data"]
    assert data["url"] == "https://argocd.example.com"
    for kind, path in HEALTH_SCRIPTS.items():
        assert data[f"resource.customizations.health.modelversioning.io_{kind}"] == path.read_text(), kind
    print(f"README patch command: {time.monotonic() - t0:.2f}s")
