"""The Argo CD health checks (docs/argocd/health-*.lua) on hand-written objects, for every state and
reason they know, on Debian's lua5.4 and lua5.1 (Argo CD's gopher-lua is a Lua 5.1 VM), in a sandbox
like Argo CD's (e2e/argocd_health.lua: base and table libraries only).

Lua is installed by e2e/ensure-lua.sh when missing (root); when it cannot be, these tests FAIL with
that script's message (they never skip). The same scripts run on real objects from the cluster in
e2e/test_gitops_health.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelversioning.domain import kstatus

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from gitops_tools import ARGOCD_DIR, HEALTH_SCRIPTS, argocd_health  # noqa: E402

LUAS = ("lua5.4", "lua5.1")


@pytest.fixture(params=LUAS)
def lua(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def c(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message or f"{type_} {reason}"}


def mv(*conds: dict[str, Any], stage: str = "production", wanted: str = "production", **kw: Any) -> dict:
    gen, observed = kw.get("generation", 1), kw.get("observed", 1)
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "fraud-v2.4.1", "namespace": "ml", "generation": gen},
        "spec": {"model": "fraud", "version": "2.4.1", "stage": wanted},
        "status": {"observedGeneration": observed, "stage": stage, "conditions": list(conds)},
    }


def mep(*conds: dict[str, Any], rollout: dict[str, Any] | None = None, **kw: Any) -> dict:
    status: dict[str, Any] = {
        "observedGeneration": kw.get("observed", 1),
        "traffic": "stable@2.3.8=90,canary@2.4.1=10",
        "conditions": list(conds),
    }
    if rollout is not None:
        status["rollout"] = rollout
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": kw.get("generation", 1)},
        "spec": {"model": "fraud", "variants": []},
        "status": status,
    }


VERIFIED = c("ArtifactVerified", "True", "Verified", "sha256 fe339eef73d5 verified")
IN_EFFECT = c("StageTransition", "True", "InEffect", "stage production is in effect")
READY = c("Ready", "True", "Ready", "serving as declared")
CONVERGED = c("Progressing", "False", "Converged")
AS_EXPECTED = c("Degraded", "False", "AsExpected")


def health(obj: dict[str, Any], lua: str) -> tuple[str, str]:
    out = argocd_health(obj, lua)
    return out["status"], out["message"]


# ---- ModelVersion --------------------------------------------------------------------------------
def test_version_verified_and_in_effect_is_healthy(lua: str) -> None:
    status, msg = health(mv(VERIFIED, IN_EFFECT, c("Ready", "True", "Ready")), lua)
    assert (status, msg) == ("Healthy", "verified; stage production is in effect")


@pytest.mark.parametrize(
    "verified",
    [
        c("ArtifactVerified", "Unknown", "Verifying", "fetching and hashing s3://m/model.bin"),
        c("ArtifactVerified", "False", "NotFound", "nothing at s3://m/model.bin; retrying in 4s"),
        c("ArtifactVerified", "False", "FetchFailed", "connection reset; retrying in 2s"),
    ],
)
def test_version_verifying_or_retrying_is_progressing(lua: str, verified: dict[str, Any]) -> None:
    blocked = c("StageTransition", "False", "ArtifactNotVerified", "staying in candidate")
    status, msg = health(mv(verified, blocked, stage="candidate"), lua)
    assert status == "Progressing"
    assert verified["reason"] in msg and verified["message"] in msg


@pytest.mark.parametrize(
    "reason",
    ["DigestMismatch", "URIRefused", "AccessDenied", "SizeMismatch", "LimitExceeded", "InvalidSpec"],
)
def test_version_permanent_artifact_failure_is_degraded(lua: str, reason: str) -> None:
    failed = c("ArtifactVerified", "False", reason, f"the artifact: {reason}")
    blocked = c("StageTransition", "False", "ArtifactNotVerified", "staying in candidate")
    status, msg = health(mv(failed, blocked, stage="candidate"), lua)
    assert status == "Degraded"
    assert reason in msg and f"the artifact: {reason}" in msg


@pytest.mark.parametrize("reason", ["TransitionNotAllowed", "LineageIncomplete"])
def test_version_blocked_stage_is_degraded(lua: str, reason: str) -> None:
    blocked = c("StageTransition", "False", reason, "requested production, staying in staging")
    status, msg = health(mv(VERIFIED, blocked, stage="staging"), lua)
    assert status == "Degraded" and reason in msg and "staying in staging" in msg


def test_version_every_kstatus_stalled_reason_is_degraded(lua: str) -> None:
    # the operator's own list of final reasons (domain/kstatus.py): Argo CD must agree with Flux
    for reason in sorted(kstatus.VERSION_STALLED):
        for type_ in ("ArtifactVerified", "StageTransition"):
            conds = [VERIFIED, IN_EFFECT]
            conds[0 if type_ == "ArtifactVerified" else 1] = c(type_, "False", reason)
            assert health(mv(*conds), lua)[0] == "Degraded", (type_, reason)


def test_version_stalled_condition_is_degraded(lua: str) -> None:
    stalled = c("Stalled", "True", "SomethingFinal", "the operator says it is stuck")
    assert health(mv(VERIFIED, IN_EFFECT, stalled), lua) == (
        "Degraded",
        "SomethingFinal: the operator says it is stuck",
    )
    not_stalled = c("Stalled", "False", "NotStalled")
    assert health(mv(VERIFIED, IN_EFFECT, not_stalled), lua)[0] == "Healthy"


def test_version_invalid_spec_is_degraded(lua: str) -> None:
    invalid = c("Ready", "False", "InvalidSpec", "runtime.port: must be <= 65535")
    assert health(mv(invalid), lua) == ("Degraded", "InvalidSpec: runtime.port: must be <= 65535")


def test_version_walking_toward_the_stage_is_progressing(lua: str) -> None:
    # verified, staging in effect, production requested and not reached yet
    stage = c("StageTransition", "True", "InEffect", "stage staging is in effect")
    status, msg = health(mv(VERIFIED, stage, stage="staging"), lua)
    assert status == "Progressing" and "staging -> production" in msg


def test_version_without_status_or_with_stale_status_is_progressing(lua: str) -> None:
    bare = mv()
    del bare["status"]
    assert health(bare, lua)[0] == "Progressing"
    stale = mv(VERIFIED, IN_EFFECT, generation=3, observed=2)  # stage edited: not observed yet
    assert health(stale, lua) == ("Progressing", "Waiting for the operator to observe generation 3")
    no_conditions = mv()
    no_conditions["status"] = {"observedGeneration": 1}
    assert health(no_conditions, lua)[0] == "Progressing"


# ---- ModelEndpoint -------------------------------------------------------------------------------
def test_endpoint_ready_is_healthy(lua: str) -> None:
    status, msg = health(mep(READY, CONVERGED, AS_EXPECTED), lua)
    assert (status, msg) == ("Healthy", "serving as declared: stable@2.3.8=90,canary@2.4.1=10")


@pytest.mark.parametrize("reason", ["FallbackArtifactMissing", "NoFallback", "FallbackNotWarm"])
def test_endpoint_not_rollback_ready_is_still_healthy(lua: str, reason: str) -> None:
    """RollbackReady is advisory (issue #28): a serving endpoint without a ready fallback is Healthy,
    and the operator's kstatus conditions say neither Reconciling nor Stalled for it."""
    from modelversioning.domain.conditions import Cond

    rr = c("RollbackReady", "False", reason)
    assert health(mep(READY, CONVERGED, AS_EXPECTED, rr), lua)[0] == "Healthy"
    conds = [Cond(x["type"], x["status"], x["reason"]) for x in (READY, CONVERGED, AS_EXPECTED, rr)]
    assert [k.status for k in kstatus.for_endpoint(conds)] == ["False", "False"]


def test_endpoint_rolling_out_is_progressing(lua: str) -> None:
    waiting = "canary: Deployment fraud-canary-1 is not Available yet"
    conds = (c("Ready", "False", "Progressing", waiting), c("Progressing", "True", "RollingOut", waiting),
             AS_EXPECTED)  # fmt: skip
    assert health(mep(*conds), lua) == ("Progressing", f"RollingOut: {waiting}")


def test_endpoint_rollout_in_progress_is_progressing(lua: str) -> None:
    msg = "rollout step 1: analysis passed (weights canary=20,stable=80)"
    conds = (c("Ready", "False", "RollingOut", msg), c("Progressing", "True", "RollingOut", msg), AS_EXPECTED)
    rollout = {"phase": "Progressing", "step": 1, "message": "analysis passed"}
    assert health(mep(*conds, rollout=rollout), lua) == ("Progressing", f"RollingOut: {msg}")


def test_endpoint_rollout_paused_is_suspended(lua: str) -> None:
    msg = "rollout step 2: paused until promoted (weights canary=50,stable=50)"
    conds = (c("Ready", "False", "RolloutPaused", msg), c("Progressing", "True", "RolloutPaused", msg),
             AS_EXPECTED)  # fmt: skip
    rollout = {"phase": "Paused", "step": 2, "message": "paused until promoted"}
    assert health(mep(*conds, rollout=rollout), lua) == (
        "Suspended",
        "rollout paused at step 2: paused until promoted",
    )


def test_endpoint_rollout_at_a_pause_without_duration_is_suspended(lua: str) -> None:
    # phase stays Progressing at a manual pause step: the strategy says it waits for a person
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}]
    msg = "rollout step 1: step 1: paused until promoted (weights canary=20,stable=80)"
    conds = (c("Ready", "False", "RollingOut", msg), c("Progressing", "True", "RollingOut", msg), AS_EXPECTED)

    def at(step: int) -> dict[str, Any]:
        rollout = {"phase": "Progressing", "step": step, "message": f"step {step}: ..."}
        obj = mep(*conds, rollout=rollout)
        obj["spec"]["strategy"] = {"canary": {"variant": "canary", "baseline": "stable", "steps": steps}}
        return obj

    assert health(at(1), lua) == ("Suspended", "rollout paused at step 1: step 1: ...")
    for step in (0, 2, 3, 4):  # a setWeight, a pause with a duration, past the last step
        assert health(at(step), lua)[0] == "Progressing", step


@pytest.mark.parametrize("phase", ["Failed", "Aborted"])
def test_endpoint_rollout_failed_or_aborted_is_degraded(lua: str, phase: str) -> None:
    msg = f"rollout {phase.lower()}: error-rate 0.31 > 0.05; traffic is back on canary=0,stable=100"
    conds = (c("Ready", "False", f"Rollout{phase}", msg), c("Degraded", "True", f"Rollout{phase}", msg),
             c("Progressing", "False", f"Rollout{phase}"))  # fmt: skip
    rollout = {"phase": phase, "step": 1, "message": "error-rate 0.31 > 0.05"}
    expected = ("Degraded", f"rollout {phase}: error-rate 0.31 > 0.05")
    assert health(mep(*conds, rollout=rollout), lua) == expected
    # the conditions alone say the same (an object from before status.rollout was read)
    assert health(mep(*conds), lua) == ("Degraded", f"Rollout{phase}: {msg}")


def test_endpoint_every_kstatus_stalled_reason_is_degraded(lua: str) -> None:
    # permanent even while something else is still progressing; the same list as Flux's (kstatus.py)
    for reason in sorted(kstatus.ENDPOINT_STALLED):
        conds = (c("Ready", "False", reason), c("Degraded", "True", reason, f"canary: {reason}"),
                 c("Progressing", "True", "Blocked"))  # fmt: skip
        assert health(mep(*conds), lua) == ("Degraded", f"{reason}: canary: {reason}"), reason


def test_endpoint_transient_degraded_reason(lua: str) -> None:
    held = c("Degraded", "True", "NoEligibleVariant", "no variant can take traffic yet")
    # while something progresses (a version still verifying), that is progress...
    waiting = c("Progressing", "True", "RollingOut", "canary: ArtifactNotVerified")
    assert health(mep(c("Ready", "False", "NoEligibleVariant"), held, waiting), lua)[0] == "Progressing"
    # ...and when nothing moves any more, it is degraded
    scale = c("Degraded", "True", "ScaleDownHeld", "stable: replicas 0 requested while it serves 100%")
    assert health(mep(c("Ready", "False", "ScaleDownHeld"), scale, CONVERGED), lua) == (
        "Degraded",
        "ScaleDownHeld: stable: replicas 0 requested while it serves 100%",
    )


def test_endpoint_stalled_condition_is_degraded(lua: str) -> None:
    stalled = c("Stalled", "True", "SomethingFinal", "stuck")
    assert health(mep(READY, CONVERGED, AS_EXPECTED, stalled), lua) == ("Degraded", "SomethingFinal: stuck")
    reconciled = (c("Reconciling", "False", "Reconciled"), c("Stalled", "False", "NotStalled"))
    assert health(mep(READY, CONVERGED, AS_EXPECTED, *reconciled), lua)[0] == "Healthy"


def test_endpoint_succeeded_rollout_is_healthy(lua: str) -> None:
    rollout = {"phase": "Succeeded", "step": 4, "message": "all steps done"}
    assert health(mep(READY, CONVERGED, AS_EXPECTED, rollout=rollout), lua)[0] == "Healthy"


def test_endpoint_without_status_or_with_stale_status_is_progressing(lua: str) -> None:
    bare = mep()
    del bare["status"]
    assert health(bare, lua) == ("Progressing", "Waiting for the operator to report status")
    stale = mep(READY, CONVERGED, AS_EXPECTED, generation=5, observed=4)  # weights edited: not seen yet
    assert health(stale, lua) == ("Progressing", "Waiting for the operator to observe generation 5")
    nulls = mep()
    nulls["status"]["conditions"] = None  # JSON null reaches Lua as nil, as in Argo CD
    assert health(nulls, lua)[0] == "Progressing"


# ---- the sandbox and the shipped snippet ---------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    ['return {status = ("x"):upper()}', "return {status = string.upper('healthy')}",
     "return {status = math.floor(1)}", "return {status = 'Fine'}", "return 'Healthy'"],
)  # fmt: skip
def test_sandbox_refuses_what_argocd_refuses(lua: str, body: str, tmp_path: Path) -> None:
    # a script that would fail in Argo CD's VM (no string/math library, invalid status) fails here too
    script = tmp_path / "health.lua"
    script.write_text(body + "\n")
    with pytest.raises(RuntimeError, match="failed with exit 2"):
        argocd_health(mv(), lua, script=script)


CHART_README = ARGOCD_DIR.parent.parent / "charts" / "modelversioning-operator" / "README.md"


@pytest.mark.parametrize("readme", [ARGOCD_DIR / "README.md", CHART_README], ids=["docs", "chart"])
def test_readme_snippet_is_the_scripts_verbatim(readme: Path) -> None:
    """docs/argocd/README.md and the chart's README (a packaged chart has no docs/ to link to) both
    show the argocd-cm snippet, and it is the scripts as tested, verbatim."""
    blocks = re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.S)
    cms = [yaml.safe_load(b) for b in blocks if "name: argocd-cm" in b]
    assert len(cms) == 1, f"{readme} has no (or more than one) argocd-cm ```yaml block"
    (cm,) = cms
    assert cm["kind"] == "ConfigMap"
    for kind, path in HEALTH_SCRIPTS.items():
        key = f"resource.customizations.health.modelversioning.io_{kind}"
        assert cm["data"].get(key) == path.read_text(), (
            f"{key} in {readme} differs from {path.name}: paste the script again"
        )
