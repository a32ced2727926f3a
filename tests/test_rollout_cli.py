"""`kubectl models rollout status [-w] | promote | abort | retry` against a fake cluster whose
"operator" is the real rollout decision (handlers.rollout.rollout_facts, then
domain.endpoint_rollout.decide_rollout, no analysis): the annotations
the CLI writes, who it says asked, what the operator makes of them, the output and the exit codes."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.api.wire import (
    REQUESTED_BY_ANNOTATION,
    ROLLOUT_ACTION_ANNOTATION,
    ROLLOUT_ACTION_ID_ANNOTATION,
)
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models import context as app_module
from modelversioning.cli.models.kube import MODELENDPOINTS, WaitTimeout
from modelversioning.domain.endpoint_rollout import decide_rollout
from modelversioning.domain.rollout_status import status_of
from modelversioning.handlers.rollout import rollout_facts

USER = "jane@example.com"
STRATEGY = {
    "canary": {
        "variant": "canary",
        "baseline": "stable",
        "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}],
    }
}


def endpoint(strategy: dict[str, Any] | None = STRATEGY) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "fraud",
        "variants": [
            {"name": "stable", "version": "2.3.8", "weight": 0},
            {"name": "canary", "version": "2.4.1", "weight": 100},
        ],
        "routing": {"router": "istio", "hosts": ["fraud.example.com"]},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {
        "metadata": {"name": "fraud", "namespace": "models", "generation": 2, "annotations": {}},
        "spec": spec,
        "status": {"observedGeneration": 1, "effectiveWeights": {"stable": 100, "canary": 0}},
    }


class FakeCluster:
    """One ModelEndpoint. `reconcile` plays the operator: the rollout planner on the object as it is,
    the route then carrying the step weights. `wait` reconciles once (unless `asleep`)."""

    def __init__(self, ep: dict[str, Any]) -> None:
        self.ep = ep
        self.now = 1000.0
        self.patches: list[dict[str, Any]] = []
        self.asleep = False
        self.gets = 0

    def current_user(self) -> str:
        return USER

    def get(self, res: Any, name: str) -> dict[str, Any]:
        assert res is MODELENDPOINTS and name == "fraud"
        self.gets += 1
        return copy.deepcopy(self.ep)

    def merge_patch(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        assert res is MODELENDPOINTS and name == "fraud" and set(patch) == {"metadata"}  # never the spec
        self.patches.append(patch)
        self.ep["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        return copy.deepcopy(self.ep)

    def wait(self, res: Any, name: str, check: Any, timeout: float) -> Any:
        if not self.asleep:
            self.reconcile()
        got = check(copy.deepcopy(self.ep))
        if got is None:
            raise WaitTimeout(self.ep)
        return got

    def reconcile(self, seconds: float = 1.0) -> None:
        self.now += seconds
        spec = ModelEndpointSpec.model_validate(self.ep["spec"])
        both: dict[str, tuple[str | None, bool]] = {
            "stable": ("production", True),
            "canary": ("production", True),
        }
        facts = rollout_facts(self.ep, spec, both, {}, Settings(), now=self.now)
        assert facts is not None
        out = decide_rollout(facts)
        st = self.ep["status"]
        st["rollout"] = status_of(out.outcome.state, out.promoted)
        st["effectiveWeights"] = dict(out.weights)
        st["observedGeneration"] = self.ep["metadata"]["generation"]

    @property
    def rollout(self) -> dict[str, Any]:
        return dict(self.ep["status"]["rollout"])


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster(endpoint())
    monkeypatch.setattr(app_module, "Cluster", lambda *a, **k: fake)
    return fake


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def paused(c: FakeCluster) -> None:
    """Reconcile until the rollout waits at its `pause: {}` (step 1)."""
    for _ in range(3):
        c.reconcile()
    assert (c.rollout["phase"], c.rollout["step"]) == ("Progressing", 1), c.rollout
    assert "paused until promoted" in c.rollout["message"]


def test_promote_writes_a_fresh_action_id_and_who_asked_and_the_status_keeps_it(cluster: FakeCluster) -> None:
    paused(cluster)
    r = run("rollout", "promote", "fraud")
    assert r.exit_code == 0, r.output
    (patch,) = cluster.patches
    ann = patch["metadata"]["annotations"]
    assert ann[ROLLOUT_ACTION_ANNOTATION] == "promote" and ann[REQUESTED_BY_ANNOTATION] == USER
    assert re.fullmatch(r"[0-9a-f]{12}", ann[ROLLOUT_ACTION_ID_ANNOTATION])
    assert f"promote by {USER}: fraud is Progressing at step 2/3" in r.stdout
    assert f"promoted past step 1 by {USER}" in r.stdout
    ro = cluster.rollout
    assert ro["handledAction"] == ann[ROLLOUT_ACTION_ID_ANNOTATION]
    assert ro["weights"] == {"stable": 50, "canary": 50}
    # the steps go on (the message moves on) but who promoted stays in the status
    cluster.reconcile()
    ro = cluster.rollout
    assert ro["phase"] == "Succeeded" and ro["message"] == "all steps done"
    assert ro["lastAction"]["kind"] == "promote" and ro["lastAction"]["by"] == USER
    assert ro["lastAction"]["applied"] is True and ro["lastAction"]["at"].endswith("Z")
    shown = run("rollout", "status", "fraud")
    assert shown.exit_code == 0, shown.output
    assert f"last action: promote by {USER} at {ro['lastAction']['at']}: promoted past step 1" in shown.stdout
    # a second request gets a new id: the operator acts on each request once
    again = run("rollout", "promote", "fraud")
    assert (
        cluster.patches[1]["metadata"]["annotations"][ROLLOUT_ACTION_ID_ANNOTATION]
        != ann[ROLLOUT_ACTION_ID_ANNOTATION]
    )
    # ... and promoting a finished rollout is refused with the reason, exit 1
    assert again.exit_code == 1
    assert "not applied: the rollout is Succeeded, not Progressing or Paused" in again.stdout
    assert cluster.rollout["lastAction"]["applied"] is False


def test_abort_then_retry_each_record_who_asked(cluster: FakeCluster) -> None:
    paused(cluster)
    r = run("rollout", "abort", "fraud")
    assert r.exit_code == 0, r.output
    assert f"abort by {USER}: fraud is Aborted at step 1/3" in r.stdout and f"aborted by {USER}" in r.stdout
    cluster.reconcile()
    assert cluster.ep["status"]["effectiveWeights"] == {"stable": 100, "canary": 0}  # back where it started
    r = run("rollout", "retry", "fraud")
    assert r.exit_code == 0, r.output
    assert f"retry by {USER}: fraud is Progressing at step 0/3" in r.stdout
    assert f"retried by {USER}" in r.stdout
    assert cluster.rollout["lastAction"]["kind"] == "retry"
    ids = [p["metadata"]["annotations"][ROLLOUT_ACTION_ID_ANNOTATION] for p in cluster.patches]
    assert len(set(ids)) == 2
    cluster.reconcile()  # the retried rollout walks on: the retry stays the last action
    assert cluster.rollout["step"] == 1 and cluster.rollout["lastAction"]["message"] == f"retried by {USER}"
    r = run("rollout", "retry", "fraud")  # nothing failed: nothing to retry
    assert r.exit_code == 1 and "not applied: the rollout is Progressing" in r.stdout


def test_an_action_the_operator_does_not_handle_times_out_with_exit_3(cluster: FakeCluster) -> None:
    paused(cluster)
    cluster.asleep = True
    r = run("rollout", "abort", "fraud", "--timeout", "0.1")
    assert r.exit_code == 3 and "did not handle the abort within 0.1s" in r.stderr


def test_actions_need_a_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(endpoint(strategy=None))
    monkeypatch.setattr(app_module, "Cluster", lambda *a, **k: fake)
    for cmd in ("promote", "abort", "retry"):
        r = run("rollout", cmd, "fraud")
        assert r.exit_code == 1 and "has no spec.strategy" in r.stderr
    assert fake.patches == []  # nothing written
    r = run("rollout", "status", "fraud", "-w")
    assert r.exit_code == 1 and "nothing to watch" in r.stderr


def test_status_watch_ends_when_the_rollout_succeeds(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: list[float] = []

    def sleep(s: float) -> None:  # one watch tick: the operator reconciles; a person promotes the pause
        ticks.append(s)
        if cluster.ep["status"].get("rollout", {}).get("step") == 1:
            cluster.ep["metadata"]["annotations"].update(
                {
                    ROLLOUT_ACTION_ANNOTATION: "promote",
                    ROLLOUT_ACTION_ID_ANNOTATION: "x1",
                    REQUESTED_BY_ANNOTATION: "bob",
                }
            )
        cluster.reconcile()

    monkeypatch.setattr(
        "modelversioning.cli.models.commands.rollout.pause", sleep
    )  # not time.sleep: other threads
    r = run("rollout", "status", "fraud", "-w")
    assert r.exit_code == 0, r.output
    assert cluster.rollout["phase"] == "Succeeded" and 3 <= len(ticks) <= 6
    assert "Succeeded" in r.stdout and "last action: promote by bob" in r.stdout


def test_status_watch_exits_1_on_a_failed_rollout_and_3_on_timeout(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused(cluster)

    def sleep(s: float) -> None:
        cluster.ep["status"]["rollout"]["phase"] = "Failed"
        cluster.ep["status"]["rollout"]["message"] = "analysis failed 1 time(s): errors=0.4 Failed"

    monkeypatch.setattr(
        "modelversioning.cli.models.commands.rollout.pause", sleep
    )  # not time.sleep: other threads
    r = run("rollout", "status", "fraud", "-w", "--timeout", "0")  # the deadline passed: still Progressing
    assert r.exit_code == 3 and "still Progressing after 0s" in r.stderr
    r = run("rollout", "status", "fraud", "-w")
    assert r.exit_code == 1 and "errors=0.4" in r.stdout


def test_status_watch_waits_for_the_operator_to_see_the_new_spec(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after `kubectl apply`, status still shows the previous rollout's Succeeded: not the answer."""
    old = {"target": "before", "phase": "Succeeded", "step": 3, "weights": {"stable": 100, "canary": 0}}
    cluster.ep["status"]["rollout"] = old  # observedGeneration 1 < generation 2
    seen: list[str] = []

    def sleep(s: float) -> None:
        cluster.reconcile()
        seen.append(cluster.rollout["phase"])
        if cluster.rollout["phase"] == "Progressing":
            cluster.ep["status"]["rollout"]["phase"] = "Failed"

    monkeypatch.setattr(
        "modelversioning.cli.models.commands.rollout.pause", sleep
    )  # not time.sleep: other threads
    r = run("rollout", "status", "fraud", "-w")
    assert seen and seen[0] == "Progressing"  # it waited for the new rollout
    assert r.exit_code == 1


def test_status_output_formats(cluster: FakeCluster) -> None:
    paused(cluster)
    r = run("rollout", "status", "fraud", "-o", "json")
    assert r.exit_code == 0, r.output
    import json

    view = json.loads(r.stdout)
    assert view["phase"] == "Progressing" and view["step"] == 1 and view["lastAction"] is None
    assert view["effective"] == {"stable": 90, "canary": 10}
    text = run("rollout", "status", "fraud").stdout
    assert "last action: none" in text and "paused until promoted" in text
