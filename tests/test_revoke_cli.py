"""`kubectl models revoke`: the pure plan (cli/models/revoke_plan.py) and the thin command, against the
fake cluster of test_kubectl_models_commands.py that plays the operator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.cli.models import revoke_plan as RP
from modelversioning.cli.models.errors import Refused
from test_kubectl_models_commands import FakeCluster, run


def served(*entries: tuple[str, int, bool], stage: str = "production") -> dict[str, Any]:
    by = [
        {"endpoint": e, "variant": "stable", "weight": w, **({"mirror": True} if m else {})}
        for e, w, m in entries
    ]
    return {
        "metadata": {"name": "fraud-v2.0.0", "generation": 1, "resourceVersion": "1"},
        "spec": {"model": "fraud", "version": "2.0.0", "stage": "production"},
        "status": {"stage": stage, "observedGeneration": 1, "servedBy": by},
    }


def test_the_patch_is_one_write_annotation_stage_and_requester() -> None:
    patch = RP.revoke_patch("jane", "CVE-1")
    ann = patch["metadata"]["annotations"]
    assert ann[R.REVOKED_ANNOTATION] == "CVE-1" and patch["spec"] == {"stage": "archived"}
    assert ann[R.REQUESTED_BY_ANNOTATION] == "jane" and ann[R.REQUESTED_STAGE_ANNOTATION] == "archived"
    assert "CVE-1" in ann[R.REASON_ANNOTATION]


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_revocation_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(Refused, match="--reason is required"):
        RP.revoke_reason(reason)


@pytest.mark.parametrize(
    ("mv", "done", "routed"),
    [
        pytest.param(served(("ep", 100, False)), False, ("ep/stable",), id="still-routed"),
        pytest.param(served(("ep", 0, True), stage="archived"), False, ("ep/stable",), id="still-mirrored"),
        pytest.param(served(("ep", 0, False)), False, (), id="dropped-not-archived-yet"),
        pytest.param(served(("ep", 0, False), stage="archived"), True, (), id="dropped-and-archived"),
        pytest.param(None, False, (), id="not-seen"),
    ],
)
def test_revoke_state(mv: dict[str, Any] | None, done: bool, routed: tuple[str, ...]) -> None:
    state = RP.revoke_state(mv)
    assert (state.done, state.routed) == (done, routed)


def operator_drops(mv: dict[str, Any]) -> None:
    """The operator: every route drops the revoked version, the stage walk archives it."""
    assert mv["metadata"]["annotations"][R.REVOKED_ANNOTATION]
    mv["status"]["servedBy"] = [{**s, "weight": 0} for s in mv["status"]["servedBy"]]
    mv["status"]["stage"] = mv["spec"]["stage"]


def test_revoke_sends_one_patch_and_waits_for_every_route(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(served(("a", 100, False), ("b", 10, False)), operator_drops)
    r = run(monkeypatch, fake, "revoke", "fraud", "2.0.0", "--reason", "CVE-1", "-o", "json")
    assert r.exit_code == 0, r.output
    assert fake.patches == [RP.revoke_patch("jane", "CVE-1")]
    out = json.loads(r.stdout)
    assert out["pulledFrom"] == ["a/stable", "b/stable"] and out["stillRouted"] == []
    assert (out["result"], out["stage"]) == ("done", "archived")


def test_revoke_not_dropped_in_time_exits_3_naming_the_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(served(("a", 100, False)))
    r = run(monkeypatch, fake, "revoke", "fraud", "2.0.0", "--reason", "CVE-1", "--timeout", "1")
    assert r.exit_code == 3 and "still routed by a/stable" in r.output


def test_revoke_without_a_reason_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(served(("a", 100, False)))
    r = run(monkeypatch, fake, "revoke", "fraud", "2.0.0")
    assert r.exit_code == 2 and fake.patches == []
