"""`kubectl models drill` (issue #28, part 4): against a fake cluster that plays the operator and a fake
gateway: the two writes (rollback's plan, then its inverse), what is reported, the refusals, and that an
interruption at any point leaves the endpoint as it was found (or says exactly how to put it back)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from modelversioning.api.wire import DRILL_ANNOTATION, REASON_ANNOTATION, REQUESTED_BY_ANNOTATION
from modelversioning.cli.models import drill_plan
from modelversioning.cli.models.commands import drill as drill_cmd
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.kube import ClusterError
from test_kubectl_models_commands import FakeCluster, run


def endpoint(ready: str = "True", **md: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "fraud",
            "resourceVersion": "7",
            "generation": 3,
            "annotations": {REASON_ANNOTATION: "earlier"},
            **md,
        },  # fmt: skip
        "spec": {
            "model": "fraud",
            "routing": {"router": "none"},
            "variants": [
                {"name": "stable", "version": "1.0.0", "weight": 0},
                {"name": "canary", "version": "1.1.0", "weight": 100},
            ],
        },
        "status": {
            "effectiveWeights": {"stable": 0, "canary": 100},
            "variants": [{"name": "stable", "eligible": True}, {"name": "canary", "eligible": True}],
            "conditions": [
                {
                    "type": "RollbackReady",
                    "status": ready,
                    "reason": "FallbackReady" if ready == "True" else "FallbackArtifactMissing",
                    "message": "fallback stable (1.0.0) ...",
                }
            ],  # fmt: skip
        },
    }


class Gateway:
    """The drill's traffic: each wait answers once with the version the fake endpoint routes now."""

    def __init__(self, fake: FakeCluster) -> None:
        self.fake = fake
        self.samples: list[drill_plan.Sample] = []
        self.url = "http://gw.example/v1/predict"

    def answer(self) -> None:
        w = self.fake.obj["status"]["effectiveWeights"]
        versions = {v["name"]: v["version"] for v in self.fake.obj["spec"]["variants"]}
        top = max(w, key=lambda k: w[k])
        self.samples.append((time.monotonic(), 200, versions[top]))

    def wait_for(self, version: str, since: float, timeout: float) -> bool:
        self.answer()
        return any(t >= since and v == version for t, _, v in self.samples)

    def seen(self) -> list[drill_plan.Sample]:
        return list(self.samples)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def routes(ep: dict[str, Any]) -> None:
    """The operator: the effective weights follow the declared ones."""
    ep["status"]["effectiveWeights"] = {v["name"]: v["weight"] for v in ep["spec"]["variants"]}


def with_gateway(monkeypatch: pytest.MonkeyPatch, fake: FakeCluster) -> list[Gateway]:
    made: list[Gateway] = []

    def make(*_a: Any) -> Gateway:
        made.append(Gateway(fake))
        return made[-1]

    monkeypatch.setattr(drill_cmd, "Traffic", make)
    return made


def drill(monkeypatch: pytest.MonkeyPatch, fake: FakeCluster, *args: str) -> Any:
    return run(
        monkeypatch, fake, "drill", "fraud", "--url", "http://gw.example/v1/predict", "--hold", "0", *args
    )


def as_found(fake: FakeCluster, found: dict[str, Any]) -> None:
    """The endpoint's spec and annotations are exactly as found (generation and rv move, history too)."""
    assert fake.obj["spec"] == found["spec"]
    assert fake.obj["metadata"].get("annotations") == found["metadata"]["annotations"]


def test_a_drill_rolls_back_and_forward_and_reports_the_time_to_restore(monkeypatch):
    found = endpoint()
    fake = FakeCluster(copy.deepcopy(found), routes)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake, "-o", "json")
    assert r.exit_code == 0, r.output
    first, second = fake.patches
    # the first write is rollback's own patch (weights, rv guard, who and why) plus the drill's record
    assert [v["weight"] for v in first["spec"]["variants"]] == [100, 0]
    assert first["metadata"]["resourceVersion"] == "7"
    assert first["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == "jane"
    rec = json.loads(first["metadata"]["annotations"][DRILL_ANNOTATION])
    assert (
        rec["weights"] == {"stable": 0, "canary": 100} and rec["annotations"][REASON_ANNOTATION] == "earlier"
    )
    # the second puts back the weights, the annotations it overwrote, and removes its record
    assert [v["weight"] for v in second["spec"]["variants"]] == [0, 100]
    assert second["metadata"]["annotations"] == {
        REQUESTED_BY_ANNOTATION: None, REASON_ANNOTATION: "earlier", DRILL_ANNOTATION: None,
    }  # fmt: skip
    as_found(fake, found)
    out = json.loads(r.stdout)
    assert out["restored"] is True and out["fallback"] == {"variant": "stable", "version": "1.0.0"}
    assert out["from"] == "1.1.0"
    assert out["timeToRestoreSeconds"] is not None and out["timeToRestoreSeconds"] >= 0
    assert out["rollback"]["versions"] == {"1.0.0": 1} and out["forward"]["versions"] == {"1.1.0": 1}
    assert out["rollback"]["routedSeconds"] is not None and out["forward"]["firstAnswerSeconds"] is not None


def test_the_table_names_the_time_to_restore(monkeypatch):
    fake = FakeCluster(endpoint(), routes)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake)
    assert r.exit_code == 0, r.output
    assert "time to restore:" in r.stdout and "restored as found" in r.stdout


@pytest.mark.parametrize(
    ("obj", "args", "said"),
    [
        (endpoint(ready="False"), (), "is not RollbackReady (FallbackArtifactMissing"),
        (
            endpoint(annotations={"argocd.argoproj.io/tracking-id": "app:x/ModelEndpoint:ml/fraud"}),
            (),
            "managed by GitOps (annotation argocd.argoproj.io/tracking-id)",
        ),  # fmt: skip
        (endpoint(labels={"kustomize.toolkit.fluxcd.io/name": "apps"}), ("--force",), "managed by GitOps"),
        (endpoint(annotations={DRILL_ANNOTATION: "{}"}), ("--force",), "is mid-drill"),
    ],
    ids=["not-ready", "argocd", "flux-even-forced", "mid-drill"],
)
def test_refusals_write_nothing(monkeypatch, obj, args, said):
    fake = FakeCluster(obj, routes)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake, *args)
    assert r.exit_code == 1 and said in r.stderr, r.output
    assert fake.patches == []


def test_force_and_gitops_ok_let_it_run(monkeypatch):
    obj = endpoint(ready="False", annotations={"argocd.argoproj.io/tracking-id": "x"})
    fake = FakeCluster(obj, routes)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake, "--force", "--gitops-ok")
    assert r.exit_code == 0, r.output
    assert len(fake.patches) == 2 and fake.obj["spec"] == obj["spec"]


class Interrupting(FakeCluster):
    """Raises `what` in the first wait (the route after the rollback write): Ctrl-C, an error, ..."""

    def __init__(self, obj: dict[str, Any], what: BaseException, meanwhile: Any = None) -> None:
        super().__init__(obj, routes)
        self.what, self.meanwhile, self.waits = what, meanwhile, 0

    def wait(self, res: Any, name: str, check: Any, timeout: float) -> Any:
        self.waits += 1
        if self.waits == 1:
            if self.meanwhile is not None:
                self.meanwhile(self.obj)
            raise self.what
        return super().wait(res, name, check, timeout)


@pytest.mark.parametrize(
    ("what", "code"),
    [(KeyboardInterrupt(), 130), (ClusterError("connection reset", None), 1), (Refused("timed out", 3), 1)],
    ids=["ctrl-c", "api-error", "timeout"],
)
def test_interrupted_between_the_two_writes_it_puts_the_endpoint_back(monkeypatch, what, code):
    found = endpoint()
    fake = Interrupting(copy.deepcopy(found), what)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake)
    assert r.exit_code == code, r.output
    assert "the endpoint is back as found" in r.stderr
    assert len(fake.patches) == 2
    as_found(fake, found)


def test_a_spec_changed_by_someone_else_mid_drill_is_not_overwritten(monkeypatch):
    def responder(ep: dict[str, Any]) -> None:  # an incident responder edits the weights meanwhile
        for v in ep["spec"]["variants"]:
            v["weight"] = 50

    fake = Interrupting(endpoint(), KeyboardInterrupt(), responder)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake, "-o", "json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["restored"] is False
    assert any("weights changed during the drill" in n and "--restore" in n for n in out["notes"])
    assert [v["weight"] for v in fake.obj["spec"]["variants"]] == [50, 50]  # theirs, kept
    assert DRILL_ANNOTATION in fake.obj["metadata"]["annotations"]  # the record says what was found


class FailingRestore(Interrupting):
    def merge_patch(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self.patches:  # the restore
            self.patches.append(patch)
            raise ClusterError("Error from server (Forbidden): cannot patch", 403)
        return super().merge_patch(res, name, patch)


def test_a_restore_that_fails_leaves_the_record_and_restore_finishes_it(monkeypatch):
    found = endpoint()
    fake = FailingRestore(copy.deepcopy(found), KeyboardInterrupt())
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake)
    assert (
        r.exit_code == 1 and "NOT restored" in r.stdout and "kubectl models drill fraud --restore" in r.stdout
    )
    assert DRILL_ANNOTATION in fake.obj["metadata"]["annotations"]
    # later, with the rights: --restore reads the record from the endpoint and puts it back
    later = FakeCluster(fake.obj, routes)
    r = run(monkeypatch, later, "drill", "fraud", "--restore", "-o", "json")
    assert r.exit_code == 0, r.output
    as_found(later, found)
    r = run(monkeypatch, later, "drill", "fraud", "--restore")
    assert r.exit_code == 1 and "carries no drill record" in r.stderr


# ---- pure: what the traffic says --------------------------------------------------------------------
def test_leg_times_the_first_and_the_last_answers() -> None:
    samples = [(0.5, 200, "1.1.0"), (1.0, 200, "1.1.0"), (1.2, 503, ""), (1.4, 200, "1.0.0"),
               (1.5, 200, "1.1.0"),
               (1.6, 200, "1.0.0"), (9.0, 200, "1.0.0")]  # fmt: skip
    lg = drill_plan.leg(samples, 1.0, 5.0, "1.0.0", 0.2)
    # first 1.0.0 at 1.4; the last other answer at 1.5; every answer 1.0.0 from 1.6 on
    assert (lg.first_answer_seconds, lg.last_other_seconds) == (pytest.approx(0.4), pytest.approx(0.6))
    clean = drill_plan.leg(
        [(1.1, 200, "1.1.0"), (1.3, 200, "1.0.0"), (1.4, 200, "1.0.0")], 1.0, 5.0, "1.0.0", 0.1
    )
    assert clean.first_answer_seconds == clean.last_other_seconds == pytest.approx(0.3)  # a clean switch
    assert (lg.requests, lg.errors, lg.versions) == (5, 1, {"1.0.0": 2, "1.1.0": 2})
    none = drill_plan.leg([], 1.0, 5.0, "1.0.0", None)
    assert none.first_answer_seconds is None and none.last_other_seconds is None


def test_restore_patch_only_undoes_exactly_what_the_drill_wrote() -> None:
    ep = endpoint()
    rec = {
        "weights": {"stable": 0, "canary": 100},
        "drilled": {"stable": 100, "canary": 0},
        "annotations": {},
    }
    drilled = copy.deepcopy(ep)
    for v, w in zip(drilled["spec"]["variants"], (100, 0), strict=True):
        v["weight"] = w
    assert [v["weight"] for v in drill_plan.restore_patch(drilled, rec, "jane")["spec"]["variants"]] == [
        0,
        100,
    ]
    assert "spec" not in drill_plan.restore_patch(ep, rec, "jane")  # already back: only the record goes
    added = copy.deepcopy(drilled)
    added["spec"]["variants"].append({"name": "new", "version": "1.2.0", "weight": 0})
    with pytest.raises(Refused, match="changed during the drill"):
        drill_plan.restore_patch(added, rec, "jane")


def test_restore_never_writes_another_users_name() -> None:
    """requested-by must name who makes the change (the admission policy): as found when it was absent
    or the caller's own, else the caller and the drill."""
    found = {REQUESTED_BY_ANNOTATION: "bob", REASON_ANNOTATION: "rollback after the incident"}
    assert drill_plan.restored_annotations({"id": "d1", "annotations": found}, "jane") == {
        REQUESTED_BY_ANNOTATION: "jane",
        REASON_ANNOTATION: "drill d1: restored as found (the last change before it was by bob)",
    }
    mine = {REQUESTED_BY_ANNOTATION: "jane", REASON_ANNOTATION: "x"}
    assert drill_plan.restored_annotations({"id": "d1", "annotations": mine}, "jane") == mine
    none = {REQUESTED_BY_ANNOTATION: None, REASON_ANNOTATION: None}
    assert drill_plan.restored_annotations({"id": "d1", "annotations": {}}, "jane") == none


class LostAnswer(FakeCluster):
    """The first write is applied by the API server, then Ctrl-C arrives before its answer."""

    def merge_patch(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        out = super().merge_patch(res, name, patch)
        if len(self.patches) == 1:
            raise KeyboardInterrupt
        return out


def test_ctrl_c_while_the_first_write_is_in_flight_still_restores(monkeypatch):
    found = endpoint()
    fake = LostAnswer(copy.deepcopy(found), routes)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake)
    assert r.exit_code == 130, r.output
    assert len(fake.patches) == 2
    as_found(fake, found)


def test_a_conflict_on_the_first_write_changes_nothing(monkeypatch):
    found = endpoint()
    fake = FakeCluster(copy.deepcopy(found), routes, conflicts=1)
    with_gateway(monkeypatch, fake)
    r = drill(monkeypatch, fake)
    assert r.exit_code == 1 and "changed while the drill started" in r.stderr, r.output
    assert len(fake.patches) == 1  # the refused write only: the restore found no record to undo
    assert fake.obj["spec"] == found["spec"]
