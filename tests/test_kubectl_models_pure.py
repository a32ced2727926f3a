"""`kubectl models`: the pure functions the commands prepare and explain with (plain data in, a plan,
a message or view data out), tested without a cluster and without Typer."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from modelversioning.api.wire import REASON_ANNOTATION, REQUESTED_BY_ANNOTATION, REQUESTED_STAGE_ANNOTATION
from modelversioning.cli.models import actions, register_plan, registry_views, rollout_views, views
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.gitinfo import GitInfo
from modelversioning.cli.models.importers import mlflow_plan
from modelversioning.cli.models.importers.mapping import VersionRule
from modelversioning.cli.models.importers.mlflow_artifacts import ArtifactDigest, ResolvedArtifact
from modelversioning.cli.models.importers.mlflow_registry import SourceVersion
from modelversioning.cli.models.register_plan import RegisterArgs

NOW = datetime(2024, 10, 3, 12, 0, 0, tzinfo=UTC)


def test_a_timestamp_without_a_zone_has_no_age_and_sorts_first():
    """The CLI parses times like the operator (domain.registry.parse_time): no zone, no time."""
    assert views.human_age("2024-10-03T11:00:00Z", NOW) == "60m"
    assert views.human_age("2024-10-03T11:00:00", NOW) == "<none>"
    mv = {
        "spec": {"model": "m", "version": "1.0.0"},
        "status": {
            "history": [
                {"from": None, "to": "candidate", "at": "2024-10-03T10:00:00Z"},
                {"from": "candidate", "to": "staging", "at": "2024-10-03T11:00:00"},
            ]
        },
    }
    assert [r["to"] for r in views.history_rows([mv], "m")] == ["staging", "candidate"]


# ---- register: options -> inputs -> manifest --------------------------------------------------------
def _args(**kw: Any) -> RegisterArgs:
    base: dict[str, Any] = {
        "model": "fraud",
        "version": "2.0.0",
        "artifact": "s3://b/k",
        "image": "img:1",
        "dataset": "tx",
        "dataset_version": "v1",
        "metric": ["auc=0.9"],
        "trained_at": "2024-10-03T11:00:00Z",
    }
    return RegisterArgs(**{**base, **kw})


def _git(dirty: tuple[str, ...] = ()) -> GitInfo:
    return GitInfo(root="/src", commit="3f9c2a1d", remote="https://git/x.git", dirty=dirty)


def test_register_takes_commit_and_remote_from_git_only_where_not_given():
    p = register_plan.prepare(_args(), register_plan.read_values(_args()), _git(), "NOW")
    assert (p.inputs.code_commit, p.inputs.code_repository, p.dirty) == (
        "3f9c2a1d",
        "https://git/x.git",
        None,
    )
    given = _args(code_commit="abc1234", code_repository="https://other/y")
    p = register_plan.prepare(given, register_plan.read_values(given), _git(dirty=(" M a.py",)), "NOW")
    assert (p.inputs.code_commit, p.inputs.code_repository) == ("abc1234", "https://other/y")
    assert p.dirty is None  # a dirty checkout matters only when its HEAD is the recorded commit
    assert not register_plan.needs_git(given) and register_plan.needs_git(_args(code_commit="abc1234"))
    assert (
        register_plan.prepare(
            _args(trained_at=None), register_plan.read_values(_args()), None, "NOW"
        ).inputs.trained_at
        == "NOW"
    )


def test_register_refuses_a_dirty_checkout_unless_allowed_and_then_records_it():
    dirty = _git(dirty=tuple(f" M f{i}.py" for i in range(7)))
    p = register_plan.prepare(_args(), register_plan.read_values(_args()), dirty, "NOW")
    with pytest.raises(Refused) as e:
        register_plan.check_lineage(p, allow_dirty=False)
    assert (
        e.value.code == 1
        and "uncommitted changes (7: f0.py, f1.py, f2.py, f3.py, f4.py, ...)" in e.value.message
    )
    allowed = _args(allow_dirty=True)
    p = register_plan.prepare(allowed, register_plan.read_values(allowed), dirty, "NOW")
    notes = register_plan.check_lineage(p, allow_dirty=True)
    assert p.inputs.environment == {"gitDirty": "true"}
    assert notes[0].startswith("warning: /src has uncommitted changes")
    assert any("production will require lineage.author" in n for n in notes)


def test_register_missing_metadata_is_a_usage_error_before_the_dirty_tree():
    args = _args(image=None)
    p = register_plan.prepare(args, register_plan.read_values(args), _git(dirty=(" M a.py",)), "NOW")
    with pytest.raises(Refused) as e:
        register_plan.check_lineage(p, allow_dirty=False)
    assert e.value.code == 2 and "runtime.image (--image)" in e.value.message


def test_register_values_files_first_then_options_and_dvc_fills_only_the_rest(tmp_path):
    f = tmp_path / "m.json"
    f.write_text('{"auc": 0.5, "f1": 0.7}')
    args = _args(metrics_file=f, metric=["auc=0.9"], environment=["python=3.11"])
    values = register_plan.read_values(args)
    assert values.metrics == {"auc": 0.9, "f1": 0.7} and values.environment == {"python": "3.11"}
    info = SimpleNamespace(metrics={"auc": 0.1, "loss": 0.2}, params={"depth": 3})
    filled = SimpleNamespace(
        artifact="/cache/x", uri="s3://r/x", dataset="data", dataset_version="md5", dataset_uri=None
    )
    args, values = register_plan.with_dvc(args, values, info, filled)  # type: ignore[arg-type]
    assert values.metrics == {"auc": 0.9, "f1": 0.7, "loss": 0.2} and values.hyperparameters == {"depth": 3}
    assert (args.artifact, args.uri, args.dataset, args.dataset_version) == (
        "/cache/x",
        "s3://r/x",
        "data",
        "md5",
    )


def test_register_artifact_location_and_given_digest(tmp_path):
    assert register_plan.artifact_location("s3://b/k", None) == (None, "s3://b/k")
    f = tmp_path / "model.bin"
    f.write_bytes(b"12345")
    assert register_plan.artifact_location(str(f), None) == (f, f.resolve().as_uri())
    assert register_plan.artifact_location(f.as_uri(), "s3://up/model.bin") == (f, "s3://up/model.bin")
    assert register_plan.artifact_location(str(tmp_path), None)[1].endswith("/")
    with pytest.raises(Refused) as e:
        register_plan.artifact_location(str(f), "bucket/key")
    assert e.value.code == 2
    with pytest.raises(Refused, match="no such file"):
        register_plan.artifact_location(str(tmp_path / "nope"), None)
    assert register_plan.given_digest("SHA256:" + "AB" * 32, f) == ("ab" * 32, 5)
    assert register_plan.given_digest("AB" * 32, None) == ("ab" * 32, None)


def test_register_manifest_asks_for_the_stage_as_the_user_only_when_applied():
    inp = register_plan.prepare(_args(), register_plan.read_values(_args()), _git(), "NOW").inputs
    printed = register_plan.manifest(inp, "s3://b/k", ("a" * 64, 5), None, None)
    assert "annotations" not in printed["metadata"] and "namespace" not in printed["metadata"]
    applied = register_plan.manifest(inp, "s3://b/k", ("a" * 64, 5), "jane", "models")
    assert applied["metadata"]["annotations"] == {
        REQUESTED_BY_ANNOTATION: "jane",
        REQUESTED_STAGE_ANNOTATION: "candidate",
    }
    assert applied["metadata"]["namespace"] == "models" and applied["spec"]["artifact"]["sizeBytes"] == 5
    with pytest.raises(Refused) as e:
        register_plan.manifest(inp, "s3://b/k", ("not-a-digest", None), None, None)
    assert e.value.code == 2 and "sha256" in e.value.message


# ---- promote: states and messages -----------------------------------------------------------------
def _mv(
    stage: str, generation: int = 2, history: int = 1, conditions: list[Any] | None = None
) -> dict[str, Any]:
    hist = [{"from": None, "to": "candidate"}, {"from": "candidate", "to": "staging"}][:history]
    return {
        "metadata": {"name": "fraud-v2.0.0", "generation": generation},
        "status": {
            "stage": stage,
            "observedGeneration": generation,
            "history": hist,
            "conditions": conditions or [],
        },
    }


def test_promotion_observed_done_blocked_deleted_and_the_messages():
    done = actions.observe_promotion(_mv("staging", history=2), "fraud-v2.0.0", "staging", 2, 1)
    assert done.state == "done" and [actions.step_text(h) for h in done.new_history] == [
        "candidate -> staging"
    ]
    assert actions.promote_done_text("fraud-v2.0.0", "staging", done) == "fraud-v2.0.0 is now staging"
    assert actions.promote_outcome("fraud", "2.0.0", "staging", done)["result"] == "promoted"
    gone = actions.observe_promotion(None, "fraud-v2.0.0", "staging", 2, 1)
    assert (gone.state, gone.reason) == ("blocked", "Deleted")
    gate = {
        "type": "StageTransition",
        "status": "False",
        "reason": "MetricGateFailed",
        "message": "auc 0.9 < 0.95",
    }
    blocked = actions.observe_promotion(
        _mv("candidate", conditions=[{**gate, "observedGeneration": 2}]), "fraud-v2.0.0", "production", 2, 1
    )
    assert blocked.state == "blocked"
    refused = actions.promote_blocked("fraud-v2.0.0", "production", blocked)
    assert refused.code == 1 and refused.message == (
        "fraud-v2.0.0 was not promoted to production; it stays candidate. MetricGateFailed: auc 0.9 < 0.95"
    )
    assert actions.promote_outcome("fraud", "2.0.0", "production", blocked)["result"] == "blocked"


def test_promotion_timeout_is_exit_3_and_says_where_it_stands():
    last = actions.PromoteResult("waiting", "candidate", "Verifying", "artifact")
    t = actions.promote_timeout("fraud-v2.0.0", "production", 60, last)
    assert t.code == 3 and t.message.endswith("; stage is candidate (Verifying: artifact)")
    assert actions.promote_timeout("fraud-v2.0.0", "production", 60, None).message == (
        "timed out after 60s waiting for fraud-v2.0.0 to reach production"
    )


# ---- rollback: the request, the observed split, the timeout -----------------------------------------
def _ep(router: str = "none") -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "resourceVersion": "41"},
        "spec": {
            "routing": {"router": router},
            "variants": [
                {"name": "stable", "version": "1.0.0", "weight": 0},
                {"name": "canary", "version": "1.1.0", "weight": 100},
            ],
        },
        "status": {
            "effectiveWeights": {"stable": 0, "canary": 100},
            "variants": [
                {"name": "stable", "eligible": True, "reason": "Ready"},
                {"name": "canary", "eligible": True, "reason": "Ready"},
            ],
        },
    }


def test_rollback_patch_is_guarded_by_the_planned_resource_version_and_says_who_and_why():
    ep = _ep()
    plan = actions.plan_rollback(ep)
    req = actions.RollbackRequest("jane", actions.rollback_reason(plan, None))
    patch = actions.rollback_patch(plan, ep, req)
    assert patch["metadata"] == {
        "resourceVersion": "41",
        "annotations": {
            REQUESTED_BY_ANNOTATION: "jane",
            REASON_ANNOTATION: "rollback to stable (1.0.0) with kubectl models",
        },
    }
    assert [v["weight"] for v in patch["spec"]["variants"]] == [100, 0]
    assert actions.rollback_reason(plan, "bad canary") == "bad canary"
    assert actions.rollback_printed(ep, plan, manifest=False) == plan.patch
    assert actions.rollback_printed(ep, plan, manifest=True)["metadata"] == {"name": "fraud"}
    assert actions.router_of(ep) == "none" and actions.router_of({"spec": {}}) == "none"


def test_rollback_observes_the_route_or_the_effective_weights_and_times_out_naming_the_target():
    ep = _ep()
    assert actions.observed_weights(ep, "none", routed=False) == {"stable": 0, "canary": 100}
    assert actions.observed_weights(None, "istio", routed=True) == {}
    plan = actions.plan_rollback(ep)
    now = {
        "status": {"variants": [{"name": "stable", "reason": "NotVerified", "message": "digest mismatch"}]}
    }
    t = actions.rollback_timeout(plan, "ModelEndpoint", 30, now, "canary=100,stable=0")
    assert t.code == 3
    assert "still routes canary=100,stable=0; stable: NotVerified: digest mismatch" in t.message
    assert actions.rollback_data(plan, {"stable": 100}, 1.23456, "none")["seconds"] == 1.235


# ---- rollout and registry views ---------------------------------------------------------------------
def test_rollout_watch_exit_and_action_outcome():
    view = {"current": True, "phase": "Failed", "step": 2, "steps": 4, "message": "analysis failed"}
    assert rollout_views.watch_exit(view, "fraud", 60) == (1, None)
    assert rollout_views.watch_exit({**view, "phase": "Succeeded"}, "fraud", 60) == (0, None)
    assert rollout_views.watch_exit({**view, "current": False}, "fraud", 60) == (
        3,
        "error: the rollout of fraud is still Failed after 60s",
    )
    assert rollout_views.handled({"status": {"rollout": {"handledAction": "x1"}}}, "x1")
    assert not rollout_views.handled({"status": {"rollout": {"handledAction": "x0"}}}, "x1")
    not_applied = {**view, "lastAction": {"applied": False, "message": "not paused"}}
    assert rollout_views.action_outcome("promote", "jane", "fraud", not_applied) == (
        ["promote by jane: fraud is Failed at step 2/4", "not paused"],
        False,
    )
    assert rollout_views.action_outcome("abort", "jane", "fraud", view)[1] is True


def test_registry_where_syntax_and_approval_outcome():
    assert registry_views.parse_where("auc >= 0.9") == ("auc", ">=", 0.9)
    with pytest.raises(ValueError, match="use METRIC OP NUMBER"):
        registry_views.parse_where("auc is high")
    body = registry_views.approval_body("fraud", "2.0.0", "c" * 64, "production", "jane", "ok", "d" * 64)
    data = registry_views.approval_outcome(body, "approved")
    assert data == {
        "model": "fraud",
        "version": "2.0.0",
        "sha256": "c" * 64,
        "servingDigest": "d" * 64,
        "stage": "production",
        "approver": "jane",
        "result": "approved",
    }
    assert (
        registry_views.approval_text(data)
        == f"fraud 2.0.0 (sha256 {'c' * 12}) approved for production by jane"
    )


# ---- import mlflow: the plan --------------------------------------------------------------------------
def _run() -> Any:
    dataset = SimpleNamespace(
        dataset=SimpleNamespace(name="tx", digest="d" * 64, source='{"uri": "s3://data/tx"}'),
        tags=[SimpleNamespace(key="mlflow.data.context", value="training")],
    )
    return SimpleNamespace(
        info=SimpleNamespace(run_id="r1", user_id="jane", start_time=1_700_000_000_000),
        data=SimpleNamespace(
            tags={"mlflow.source.git.commit": "3f9c2a1d", "mlflow.source.git.repoURL": "https://git/x"},
            params={"depth": "6"},
            metrics={"auc": 0.9},
        ),
        inputs=SimpleNamespace(dataset_inputs=[dataset]),
    )


def _source(art: ResolvedArtifact, kind: str | None, aliases: tuple[str, ...] = ()) -> mlflow_plan.Source:
    sv = SourceVersion("Fraud", "3", "runs:/r1/model", "r1", "READY", aliases, {}, "")
    mlmodel = {"flavors": {"sklearn": {"sklearn_version": "1.5.2"}}}
    return mlflow_plan.Source(sv, _run(), None, art, kind, mlmodel)


def _plan(art: ResolvedArtifact, kind: str | None, **kw: Any) -> mlflow_plan.Planned:
    return mlflow_plan.plan_version(
        _source(art, kind, kw.pop("aliases", ())),
        rule=VersionRule(),
        alias_stages=kw.pop("alias_stages", []),
        default_stage="candidate",
        dataset=None,
    )


def test_mlflow_plan_records_the_store_the_operator_can_verify():
    direct = ResolvedArtifact("s3://b/m", None, None, "s3://b/m", None)
    p = _plan(direct, None)
    assert (p.semver, p.uri, p.missing) == ("1.3.0", "s3://b/m", [])
    proxied_dir = ResolvedArtifact("mlflow-artifacts:/1/m", "1/m", "http://srv/1/m", None, "s3://dest/1/m")
    assert _plan(proxied_dir, "directory").uri == "s3://dest/1/m/"
    proxied_file = ResolvedArtifact("mlflow-artifacts:/1/m.bin", "1/m.bin", "http://srv/1/m.bin", None, None)
    assert _plan(proxied_file, "file").uri == "http://srv/1/m.bin"
    nowhere = _plan(
        ResolvedArtifact("mlflow-artifacts:/1/m", "1/m", "http://srv/1/m", None, None), "directory"
    )
    assert [m.field for m in nowhere.missing] == ["spec.artifact.uri"]
    prod = _plan(direct, None, aliases=("champion",), alias_stages=[("champion", "production")])
    assert prod.stage == "production" and prod.missing == []  # framework and repository are there


def test_mlflow_plan_refusals_before_anything_is_written():
    with pytest.raises(Refused) as e:
        mlflow_plan.check_options(["1"], ["champion"], False, False, None, "candidate")
    assert e.value.code == 2 and "exactly one of them" in e.value.message
    with pytest.raises(Refused, match="exclusive"):
        mlflow_plan.check_options([], [], True, True, "out/", "candidate")
    with pytest.raises(Refused, match="--stage 'prod'"):
        mlflow_plan.check_options([], [], True, False, None, "prod")
    assert mlflow_plan.check_options([], [], True, False, None, "STAGING") == "staging"
    with pytest.raises(Refused, match=r"runtime.image \(--image\)"):
        mlflow_plan.check_target("fraud", None)
    with pytest.raises(Refused, match="choose one with --as"):
        mlflow_plan.check_target("Fraud_Detector", "img")
    direct = ResolvedArtifact("s3://b/m", None, None, "s3://b/m", None)
    a, b = _plan(direct, None), _plan(direct, None)
    b.sv = SourceVersion("Fraud", "4", "", "r1", "READY", (), {}, "")
    mlflow_plan.check_distinct([a])
    with pytest.raises(Refused, match="MLflow versions 3 and 4 both map to 1.3.0"):
        mlflow_plan.check_distinct([a, b])


def test_mlflow_plan_manifest_digest_and_conflicts():
    direct_dir = ResolvedArtifact("s3://b/m", None, None, "s3://b/m", None)
    p = _plan(direct_dir, None)
    mlflow_plan.with_digest(p, ArtifactDigest("e" * 64, 10, 2, "directory"))
    assert p.uri == "s3://b/m/"  # a directory read from its store is recorded as one
    target = mlflow_plan.Target("fraud", "img", None, "creds", "http://mlflow", None, None)
    p.doc = mlflow_plan.build_doc(p, target, "e" * 64, 10)
    ann = p.doc["metadata"]["annotations"]
    assert REQUESTED_BY_ANNOTATION not in ann and p.doc["spec"]["artifact"]["secretRef"] == {"name": "creds"}
    applied = mlflow_plan.build_doc(
        p, mlflow_plan.Target("fraud", "img", None, None, "http://m", "jane", "ns"), "e" * 64, 10
    )
    assert applied["metadata"]["annotations"][REQUESTED_STAGE_ANNOTATION] == "candidate"
    same = {"fraud-v1.3.0": mlflow_plan.Existing("ModelVersion fraud-v1.3.0", "e" * 64)}
    mlflow_plan.refuse_conflicts([p], same, in_cluster=True)  # the same digest: unchanged, fine
    other = {"fraud-v1.3.0": mlflow_plan.Existing("deploy/fraud-v1.3.0.yaml", "f" * 64)}
    with pytest.raises(Refused) as e:
        mlflow_plan.refuse_conflicts([p], other, in_cluster=False)
    assert e.value.code == 1 and "Nothing was written" in e.value.message and "f" * 64 in e.value.message
    assert mlflow_plan.sha256_of({"spec": {"artifact": {"sha256": "e" * 64}}}) == "e" * 64
    assert mlflow_plan.sha256_of(["not", "a", "manifest"]) is None
