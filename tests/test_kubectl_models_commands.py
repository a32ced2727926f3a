"""`kubectl models promote | rollback` as commands (the thin shells over actions.py): against a fake
cluster that plays the operator, the patches sent, what is printed and the exit codes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from modelversioning.api.wire import REQUESTED_BY_ANNOTATION
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models import actions, context
from modelversioning.cli.models.kube import ClusterError, WaitTimeout
from modelversioning.domain.merge_patch import apply_merge_patch

Operator = Callable[[dict[str, Any]], None]


class FakeCluster:
    """Objects by name; `wait` lets the operator act once on the watched object, then checks it."""

    namespace = "models"

    def __init__(self, obj: dict[str, Any], operator: Operator | None = None, conflicts: int = 0) -> None:
        self.obj, self.operator, self.conflicts = obj, operator, conflicts
        self.patches: list[dict[str, Any]] = []

    def current_user(self) -> str:
        return "jane"

    def get(self, res: Any, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def get_or_none(self, res: Any, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    def merge_patch(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] += "1"  # someone else changed it meanwhile
            raise ClusterError("Error from server (Conflict): changed", 409)
        self.obj = apply_merge_patch(self.obj, patch)
        self.obj["metadata"]["generation"] += 1
        return copy.deepcopy(self.obj)

    def wait(self, res: Any, name: str, check: Any, timeout: float) -> Any:
        if self.operator is not None:
            self.operator(self.obj)
        got = check(copy.deepcopy(self.obj))
        if got is None:
            raise WaitTimeout(copy.deepcopy(self.obj))
        return got


def run(monkeypatch: pytest.MonkeyPatch, fake: FakeCluster, *args: str) -> Result:
    monkeypatch.setattr(context, "Cluster", lambda *a, **k: fake)
    return CliRunner().invoke(app, list(args))


# ---- promote ----------------------------------------------------------------------------------------
def version() -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud-v2.0.0", "generation": 1},
        "spec": {"model": "fraud", "version": "2.0.0", "stage": "candidate"},
        "status": {
            "stage": "candidate",
            "observedGeneration": 1,
            "history": [{"from": None, "to": "candidate"}],
        },
    }


def moves(mv: dict[str, Any]) -> None:
    st, gen = mv["status"], mv["metadata"]["generation"]
    st["history"].append({"from": st["stage"], "to": mv["spec"]["stage"], "at": "2024-10-03T12:00:00Z"})
    st["stage"], st["observedGeneration"] = mv["spec"]["stage"], gen


def blocks(mv: dict[str, Any]) -> None:
    gen = mv["metadata"]["generation"]
    mv["status"]["observedGeneration"] = gen
    gate = {"type": "StageTransition", "status": "False", "reason": "MetricGateFailed"}
    mv["status"]["conditions"] = [{**gate, "message": "auc 0.9 < 0.95", "observedGeneration": gen}]


def test_promote_sends_stage_actor_and_reason_and_prints_the_new_history(monkeypatch):
    fake = FakeCluster(version(), moves)
    r = run(monkeypatch, fake, "promote", "fraud", "2.0.0", "--to", "staging", "--reason", "ok", "-o", "json")
    assert r.exit_code == 0, r.output
    assert fake.patches == [actions.promote_patch("staging", "jane", "ok")]
    out = json.loads(r.stdout)
    assert (out["result"], out["stage"], out["history"][0]["to"]) == ("promoted", "staging", "staging")


def test_promote_blocked_prints_the_data_then_exits_1_with_the_gate(monkeypatch):
    r = run(
        monkeypatch,
        FakeCluster(version(), blocks),
        "promote",
        "fraud",
        "2.0.0",
        "--to",
        "production",
        "-o",
        "json",
    )
    assert r.exit_code == 1
    assert json.loads(r.stdout)["result"] == "blocked"
    assert "it stays candidate. MetricGateFailed: auc 0.9 < 0.95" in r.stderr


def test_promote_not_reconciled_in_time_exits_3(monkeypatch):
    r = run(
        monkeypatch, FakeCluster(version()), "promote", "fraud", "2.0.0", "--to", "staging", "--timeout", "5"
    )
    assert r.exit_code == 3 and "timed out after 5s waiting for fraud-v2.0.0 to reach staging" in r.stderr
    assert r.stdout == ""


# ---- rollback ---------------------------------------------------------------------------------------
def endpoint() -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "resourceVersion": "7", "generation": 3},
        "spec": {
            "model": "fraud",
            "variants": [
                {"name": "stable", "version": "1.0.0", "weight": 0},
                {"name": "canary", "version": "1.1.0", "weight": 100},
            ],
        },
        "status": {
            "effectiveWeights": {"stable": 0, "canary": 100},
            "variants": [{"name": "stable", "eligible": True}, {"name": "canary", "eligible": True}],
        },
    }


def routes(ep: dict[str, Any]) -> None:
    ep["status"]["effectiveWeights"] = {v["name"]: v["weight"] for v in ep["spec"]["variants"]}


def test_rollback_replans_on_a_conflict_and_waits_for_the_split(monkeypatch):
    fake = FakeCluster(endpoint(), routes, conflicts=1)
    r = run(monkeypatch, fake, "rollback", "fraud", "-o", "json")
    assert r.exit_code == 0, r.output
    assert [p["metadata"]["resourceVersion"] for p in fake.patches] == [
        "7",
        "71",
    ]  # planned again on the new state
    assert fake.patches[1]["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == "jane"
    out = json.loads(r.stdout)
    assert (out["target"], out["after"]) == ("stable", {"stable": 100, "canary": 0})


def test_rollback_print_applies_nothing(monkeypatch):
    fake = FakeCluster(endpoint(), routes)
    r = run(monkeypatch, fake, "rollback", "fraud", "--print")
    assert r.exit_code == 0 and fake.patches == []
    assert [v["weight"] for v in json.loads(r.stdout)["spec"]["variants"]] == [100, 0]
    assert "not applied (--print)" in r.stderr


def test_rollback_the_operator_does_not_route_in_time_exits_3(monkeypatch):
    r = run(monkeypatch, FakeCluster(endpoint()), "rollback", "fraud", "--timeout", "2")
    assert r.exit_code == 3
    assert "timed out after 2s: the ModelEndpoint fraud still routes canary=100,stable=0" in r.stderr


# ---- approve ----------------------------------------------------------------------------------------
class ApprovingCluster(FakeCluster):
    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__(obj)
        self.created: list[dict[str, Any]] = []

    def current_identity(self) -> tuple[str, list[str]]:
        return "jane", ["ml-leads", "system:authenticated"]

    def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(copy.deepcopy(body))
        return body


def test_approve_names_the_serving_digest_and_the_groups_and_waits_for_the_operator(monkeypatch):
    mv = version()
    mv["spec"]["artifact"] = {"sha256": "c" * 64}
    fake = ApprovingCluster(copy.deepcopy(mv))
    res = run(monkeypatch, fake, "approve", "fraud", "2.0.0", "--stage", "production")
    assert res.exit_code != 0 and "no status.servingDigest yet" in res.output and not fake.created
    mv["status"]["servingDigest"] = "d" * 64
    fake = ApprovingCluster(mv)
    res = run(monkeypatch, fake, "approve", "fraud", "2.0.0", "--stage", "production", "-o", "json")
    assert res.exit_code == 0, res.output
    (body,) = fake.created
    assert body["spec"]["servingDigest"] == "d" * 64 and body["spec"]["sha256"] == "c" * 64
    assert body["spec"]["approver"] == "jane"
    assert body["spec"]["approverGroups"] == ["ml-leads", "system:authenticated"]
