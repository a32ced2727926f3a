"""`kubectl models` without a cluster: views and formatting from fixture objects, the rollback
target rule, promotion outcomes, register validation and the git dirty-tree refusal."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from modelversioning.artifacts import digest_local
from modelversioning.cli.kubectl_models import app
from modelversioning.cli.models import actions, inputs, register_plan, render, terminal, views
from modelversioning.cli.models.app import _hoist_globals
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.gitinfo import git_info, redact_remote
from modelversioning.cli.models.output import Output
from modelversioning.cli.models.register_plan import RegisterInputs
from modelversioning.domain.merge_patch import apply_merge_patch

SHA_OLD = "a" * 64
SHA_NEW = "b" * 64
NOW = datetime(2024, 10, 3, 12, 0, 0, tzinfo=UTC)


# ---- fixtures -------------------------------------------------------------------------------------
def mv(
    version: str,
    sha: str,
    *,
    stage: str = "production",
    history: list[dict[str, Any]] | None = None,
    served: list[dict[str, Any]] | None = None,
    metrics: dict[str, float] | None = None,
    hyper: dict[str, Any] | None = None,
    dataset_version: str = "2024-06-30",
    commit: str = "3f9c2a1",
    verified: str = "True",
    created: str = "2024-10-03T11:00:00Z",
) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": f"fraud-detector-v{version}",
            "namespace": "models",
            "creationTimestamp": created,
            "generation": 2,
        },
        "spec": {
            "model": "fraud-detector",
            "version": version,
            "artifact": {"uri": f"s3://models/fraud-detector/{version}/model.bin", "sha256": sha},
            "lineage": {
                "codeRepository": "https://git.example.com/ml/fraud.git",
                "codeCommit": commit,
                "dataset": {"name": "transactions", "version": dataset_version},
                "hyperparameters": hyper if hyper is not None else {"learning_rate": 0.05},
                "trainedAt": "2024-07-02T10:00:00Z",
                "author": "jane@example.com",
                "framework": "xgboost-2.0.3",
            },
            "metrics": metrics if metrics is not None else {"auc": 0.94, "f1": 0.78},
            "runtime": {
                "image": "ghcr.io/example/fraud:1.4",
                "port": 8080,
                "env": [{"name": "THRESHOLD", "value": "0.5"}],
            },
            "stage": stage,
        },
        "status": {
            "observedGeneration": 2,
            "stage": stage,
            "history": history or [],
            "conditions": [
                {
                    "type": "ArtifactVerified",
                    "status": verified,
                    "reason": "Verified" if verified == "True" else "DigestMismatch",
                    "message": "ok",
                    "observedGeneration": 2,
                },
                {
                    "type": "StageTransition",
                    "status": "True",
                    "reason": "InEffect",
                    "message": "",
                    "observedGeneration": 2,
                },
            ],
            "artifact": {"digest": sha, "verifiedAt": "2024-10-03T11:00:05Z", "sizeBytes": 69, "files": 1},
            "servedBy": served or [],
        },
    }


def old_mv() -> dict[str, Any]:
    return mv(
        "2.3.8",
        SHA_OLD,
        history=[
            {"to": "candidate", "at": "2024-07-02T10:05:00Z", "reason": "Registered", "actor": "ci"},
            {
                "from": "candidate",
                "to": "staging",
                "at": "2024-07-03T09:00:00Z",
                "reason": "eval ok",
                "actor": "bob",
            },
            {
                "from": "staging",
                "to": "production",
                "at": "2024-07-05T09:00:00Z",
                "reason": "approved",
                "actor": "carol",
            },
        ],
        served=[{"endpoint": "fraud-detector", "variant": "stable", "weight": 0}],
        commit="3f9c2a1",
    )


def new_mv() -> dict[str, Any]:
    return mv(
        "2.4.1",
        SHA_NEW,
        history=[
            {"to": "candidate", "at": "2024-10-01T08:00:00Z", "reason": "Registered", "actor": "ci"},
            {
                "from": "candidate",
                "to": "staging",
                "at": "2024-10-02T08:00:00Z",
                "reason": "eval ok",
                "actor": "bob",
            },
            {
                "from": "staging",
                "to": "production",
                "at": "2024-10-03T08:00:00Z",
                "reason": "canary",
                "actor": "admin",
            },
        ],
        served=[{"endpoint": "fraud-detector", "variant": "canary", "weight": 100}],
        metrics={"auc": 0.951, "f1": 0.79, "latency_p99_ms": 12.1},
        hyper={"learning_rate": 0.04, "max_depth": 9},
        dataset_version="2024-09-30",
        commit="9b1e77c04a",
        created="2024-10-01T08:00:00Z",
    )


def variant_status(
    name: str,
    version: str,
    desired: int,
    effective: int,
    sha: str,
    eligible: bool = True,
    reason: str = "Eligible",
    message: str = "ok",
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "modelVersion": f"fraud-detector-v{version}",
        "desiredWeight": desired,
        "effectiveWeight": effective,
        "replicas": 1,
        "readyReplicas": 1,
        "artifactVerified": True,
        "stage": "production",
        "eligible": eligible,
        "reason": reason,
        "message": message,
        "digest": sha,
    }


def endpoint(
    stable: int = 0,
    canary: int = 100,
    *,
    eff: dict[str, int] | None = None,
    canary_eligible: bool = True,
    stable_eligible: bool = True,
) -> dict[str, Any]:
    eff = eff if eff is not None else {"stable": stable, "canary": canary}
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {
            "name": "fraud-detector",
            "namespace": "models",
            "generation": 3,
            "resourceVersion": "42",
            "uid": "u-1",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "model": "fraud-detector",
            "variants": [
                {"name": "stable", "version": "2.3.8", "weight": stable, "replicas": 2},
                {"name": "canary", "version": "2.4.1", "weight": canary},
            ],
            "routing": {"router": "istio", "hosts": ["fraud.example.com"]},
        },
        "status": {
            "observedGeneration": 3,
            "effectiveWeights": eff,
            "traffic": f"stable@2.3.8={eff.get('stable', 0)},canary@2.4.1={eff.get('canary', 0)}",
            "router": "istio",
            "variants": [
                variant_status(
                    "stable",
                    "2.3.8",
                    stable,
                    eff.get("stable", 0),
                    SHA_OLD,
                    stable_eligible,
                    "Eligible" if stable_eligible else "StageNotReached",
                    "ok" if stable_eligible else "fraud-detector-v2.3.8 is staging; needs production",
                ),
                variant_status("canary", "2.4.1", canary, eff.get("canary", 0), SHA_NEW, canary_eligible),
            ],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "no problems"},
            ],
        },
    }


def with_variants(
    ep: dict[str, Any], variants: list[tuple[str, str, int, bool]], mirror: str | None = None
) -> dict[str, Any]:
    """(name, version, weight, eligible) -> endpoint with those variants, effective == declared."""
    ep = copy.deepcopy(ep)
    ep["spec"]["variants"] = [{"name": n, "version": v, "weight": w} for n, v, w, _ in variants]
    if mirror:
        ep["spec"]["mirror"] = {"variant": mirror, "percent": 25}
    ep["status"]["effectiveWeights"] = {n: w for n, _, w, _ in variants if n != mirror}
    ep["status"]["variants"] = [
        variant_status(
            n, v, w, w, SHA_OLD, e, "Eligible" if e else "ArtifactNotVerified", "ok" if e else "not verified"
        )
        for n, v, w, e in variants
    ]
    return ep


# ---- list -------------------------------------------------------------------------------------------
def test_list_rows_table_yaml_json():
    rows = views.list_rows(
        [new_mv(), old_mv(), mv("1.0.0", SHA_OLD, stage="archived")], "fraud-detector", now=NOW
    )
    assert [r["version"] for r in rows] == ["1.0.0", "2.3.8", "2.4.1"]  # semver order, not creation order
    r = rows[2]
    assert (r["model"], r["requestedStage"], r["stage"], r["verified"]) == (
        "fraud-detector",
        "production",
        "production",
        "True",
    )
    assert r["age"] == "2d4h"
    text = terminal.to_text(render.list_table(rows))
    header = text.splitlines()[0].split()
    assert header == ["MODEL", "VERSION", "REQUESTED", "STAGE", "VERIFIED", "SERVED", "BY", "AGE"]
    line = next(ln for ln in text.splitlines() if "2.4.1" in ln)
    assert "fraud-detector/canary=100" in line and "True" in line and "2d4h" in line
    assert yaml.safe_load(terminal.dump(rows, Output.yaml)) == rows
    assert json.loads(terminal.dump(rows, Output.json)) == rows
    assert views.list_rows([old_mv()], "other-model") == []


def test_list_shows_failed_verification_and_pending_stage():
    bad = mv("2.5.0", SHA_NEW, verified="False")
    bad["spec"]["stage"] = "staging"
    bad["status"]["stage"] = "candidate"
    row = views.list_rows([bad])[0]
    assert row["verifiedText"] == "False (DigestMismatch)"
    text = terminal.to_text(render.list_table([row], all_namespaces=True))
    assert "NAMESPACE" in text and "models" in text and "False (DigestMismatch)" in text
    assert "staging" in text and "candidate" in text


@pytest.mark.parametrize(
    ("seconds", "want"),
    [
        (5, "5s"),
        (150, "2m30s"),
        (1200, "20m"),
        (4 * 3600 + 60, "4h1m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y"),
    ],
)
def test_human_age(seconds, want):
    ts = datetime.fromtimestamp(NOW.timestamp() - seconds, UTC).isoformat().replace("+00:00", "Z")
    assert views.human_age(ts, NOW) == want


# ---- history ----------------------------------------------------------------------------------------
def test_history_is_sorted_by_time_across_versions():
    interleaved = new_mv()
    interleaved["status"]["history"].insert(
        1,
        {
            "from": "candidate",
            "to": "archived",
            "at": "2024-07-04T00:00:00Z",
            "reason": "oops",
            "actor": "dave",
        },
    )
    rows = views.history_rows([interleaved, old_mv()], "fraud-detector")
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert [(r["version"], r["from"], r["to"]) for r in rows[:4]] == [
        ("2.3.8", None, "candidate"),
        ("2.3.8", "candidate", "staging"),
        ("2.4.1", "candidate", "archived"),
        ("2.3.8", "staging", "production"),
    ]
    text = terminal.to_text(render.history_table(rows))
    assert text.splitlines()[0].split() == ["TIME", "VERSION", "FROM", "->", "TO", "ACTOR", "REASON"]
    assert "(new) -> candidate" in text
    line = next(ln for ln in text.splitlines() if "2024-10-03T08:00:00Z" in ln)
    assert "staging -> production" in line and "admin" in line and "canary" in line
    assert json.loads(terminal.dump(rows, Output.json))[-1] == {
        "at": "2024-10-03T08:00:00Z",
        "version": "2.4.1",
        "event": "stage",
        "from": "staging",
        "to": "production",
        "actor": "admin",
        "reason": "canary",
    }
    assert views.history_rows([old_mv()], "nope") == []


def test_history_shows_rollouts_interleaved_with_stage_changes():
    failed = new_mv()
    failed["status"]["rollouts"] = [
        {"endpoint": "fraud-detector", "result": "Failed", "at": "2024-10-02T12:00:00Z",
         "message": "errors=0.31 Failed: 0.31 > max 0.01"},
        # the same second as the promotion it led to: the rollout comes first
        {"endpoint": "fraud-detector", "result": "Succeeded", "at": "2024-10-03T08:00:00Z",
         "message": "errors=0.002 Passed"},
    ]  # fmt: skip
    rows = views.history_rows([failed, old_mv()], "fraud-detector")
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert [
        (r["version"], r["event"], r["result"] if r["event"] == "rollout" else r["to"]) for r in rows[-4:]
    ] == [
        ("2.4.1", "stage", "staging"),
        ("2.4.1", "rollout", "Failed"),
        ("2.4.1", "rollout", "Succeeded"),
        ("2.4.1", "stage", "production"),
    ]
    bad = rows[-3]
    assert bad["actor"] == "ModelEndpoint/fraud-detector" and bad["endpoint"] == "fraud-detector"
    assert "0.31 > max 0.01" in bad["reason"]
    text = terminal.to_text(render.history_table(rows))
    line = next(ln for ln in text.splitlines() if "2024-10-02T12:00:00Z" in ln)
    assert "rollout Failed on fraud-detector" in line and "ModelEndpoint/fraud-detector" in line
    assert "errors=0.31" in line
    assert json.loads(terminal.dump(rows, Output.json))[-3]["result"] == "Failed"


# ---- describe -------------------------------------------------------------------------------------
def test_describe_sections():
    v = views.describe_view(new_mv())
    assert v["verification"]["matches"] is True
    text = terminal.to_text(render.describe_renderable(v))
    for want in (
        "Artifact",
        "Lineage",
        "Hyperparameters",
        "Metrics",
        "Runtime",
        "Stage history",
        "Conditions",
        "Served by",
        SHA_NEW,
        "9b1e77c04a",
        "transactions@2024-09-30",
        "max_depth",
        "latency_p99_ms",
        "ghcr.io/example/fraud:1.4",
        "Env THRESHOLD",
        "staging -> production",
        "StageTransition",
        "fraud-detector   canary",
    ):
        assert want in text, want


def test_rich_markup_in_user_data_is_printed_literally():
    m = new_mv()
    m["spec"]["lineage"]["author"] = "[bold]mallory[/bold]"
    text = terminal.to_text(render.describe_renderable(views.describe_view(m)))
    assert "[bold]mallory[/bold]" in text


# ---- status / which -------------------------------------------------------------------------------
def test_status_view_joins_versions_and_route():
    view = views.status_view(
        endpoint(0, 100), [old_mv(), new_mv()], route_weights={"stable": 0, "canary": 100}
    )
    canary = next(v for v in view["variants"] if v["name"] == "canary")
    assert canary["digest"] == SHA_NEW and canary["verifiedDigest"] == SHA_NEW
    assert canary["lineage"]["codeCommit"] == "9b1e77c04a"
    assert canary["lineage"]["dataset"] == "transactions@2024-09-30"
    assert (canary["desiredWeight"], canary["effectiveWeight"], canary["routeWeight"]) == (100, 100, 100)
    stable = next(v for v in view["variants"] if v["name"] == "stable")
    assert stable["replicas"] == 2 and stable["eligible"] is True
    text = terminal.to_text(render.status_renderable(view))
    assert "ROUTED" in text
    serving = text.split("Serving")[1]
    assert SHA_NEW in serving and "9b1e77c04a" in serving and SHA_OLD not in serving  # stable carries 0%
    assert "100%" in serving
    data = json.loads(terminal.dump(view, Output.json))
    assert data["variants"][1]["digest"] == SHA_NEW
    assert yaml.safe_load(terminal.dump(view, Output.yaml))["router"] == "istio"


def test_status_view_mirror_removed_and_missing_version():
    ep = with_variants(
        endpoint(), [("live", "2.3.8", 100, True), ("shadow", "3.0.0-rc.1", 0, True)], mirror="shadow"
    )
    ep["status"]["variants"].append({**variant_status("old", "2.2.0", 0, 10, SHA_OLD), "desiredWeight": 0})
    ep["status"]["effectiveWeights"]["old"] = 10
    view = views.status_view(ep, [old_mv()])
    by = {v["name"]: v for v in view["variants"]}
    assert by["shadow"]["mirror"] is True and by["shadow"]["mirrorPercent"] == 25
    assert by["shadow"]["found"] is False and by["shadow"]["digest"] == SHA_OLD  # from the endpoint status
    assert by["old"].get("removed") is True and by["old"]["effectiveWeight"] == 10
    assert by["live"]["routeWeight"] is None  # no route read
    text = terminal.to_text(render.status_renderable(view))
    assert "shadow (mirror)" in text and "mirror 25%" in text and "old (removed)" in text
    assert "ROUTED" not in text


def test_status_view_before_the_operator_reported():
    ep = endpoint()
    del ep["status"]
    view = views.status_view(ep, [])
    assert [(v["name"], v["effectiveWeight"], v["eligible"]) for v in view["variants"]] == [
        ("stable", 0, False),
        ("canary", 0, False),
    ]
    assert "no variant carries live traffic" in terminal.to_text(render.status_renderable(view))


# ---- diff -------------------------------------------------------------------------------------------
def test_diff_rows_mark_changes_and_metric_deltas():
    view = views.diff_view(old_mv(), new_mv())
    rows = {(r["section"], r["key"]): r for r in view["rows"]}
    assert rows[("lineage", "codeCommit")]["change"] == "*"
    assert rows[("lineage", "author")]["change"] == ""
    assert rows[("lineage", "dataset.version")]["b"] == "2024-09-30"
    assert rows[("hyperparameters", "max_depth")]["change"] == "+"
    assert rows[("metrics", "auc")]["delta"] == pytest.approx(0.011)
    assert (
        rows[("metrics", "latency_p99_ms")]["change"] == "+"
        and rows[("metrics", "latency_p99_ms")]["delta"] is None
    )
    assert rows[("runtime", "env.THRESHOLD")]["a"] == "0.5"
    assert rows[("artifact", "sha256")]["changed"] is True
    text = terminal.to_text(render.diff_table(view))
    assert "fraud-detector: 2.3.8 -> 2.4.1" in text
    auc = next(ln for ln in text.splitlines() if " auc " in ln)
    assert auc.lstrip().startswith("*") and "+0.011" in auc and "(+1.2%)" in auc
    same = next(ln for ln in text.splitlines() if " author " in ln)
    assert not same.lstrip().startswith(("*", "+", "-"))
    only = terminal.to_text(render.diff_table(view, changed_only=True))
    assert " author " not in only and " auc " in only
    assert json.loads(terminal.dump(view, Output.json))["rows"][0]["section"] == "lineage"
    removed = views.diff_rows(new_mv(), old_mv())
    assert next(r for r in removed if r["key"] == "max_depth")["change"] == "-"


# ---- rollback ---------------------------------------------------------------------------------------
def test_rollback_seed_story_canary_took_over():
    plan = actions.plan_rollback(endpoint(0, 100))
    assert (plan.target, plan.version, plan.rolled_back) == ("stable", "2.3.8", "canary")
    assert plan.before == {"stable": 0, "canary": 100} and plan.after == {"stable": 100, "canary": 0}
    variants = plan.patch["spec"]["variants"]
    assert variants == [
        {"name": "stable", "version": "2.3.8", "weight": 100, "replicas": 2},
        {"name": "canary", "version": "2.4.1", "weight": 0},
    ]  # canary stays deployed (warm)
    assert set(plan.patch) == {"spec"}
    assert not plan.noop


def test_rollback_mid_canary_goes_back_to_stable():
    plan = actions.plan_rollback(endpoint(90, 10))
    assert plan.target == "stable" and plan.after == {"stable": 100, "canary": 0}


def test_rollback_cancels_a_rollout_the_operator_still_holds():
    # declared canary 100, but the operator keeps traffic on stable until canary is eligible
    plan = actions.plan_rollback(endpoint(0, 100, eff={"stable": 100, "canary": 0}, canary_eligible=False))
    assert (plan.target, plan.rolled_back, plan.noop) == ("stable", "canary", False)
    assert plan.after == {"stable": 100, "canary": 0}


def test_rollback_prefers_highest_version_below_and_skips_ineligible():
    ep = with_variants(
        endpoint(),
        [
            ("a", "2.2.0", 0, True),
            ("b", "2.3.8", 0, True),
            ("c", "2.4.1", 100, True),
            ("d", "2.5.0", 0, True),
        ],
    )
    assert actions.plan_rollback(ep).target == "b"  # not a (older) and not d (newer, takes no traffic)
    ep = with_variants(
        endpoint(), [("a", "2.2.0", 0, True), ("b", "2.3.8", 0, False), ("c", "2.4.1", 100, True)]
    )
    assert actions.plan_rollback(ep).target == "a"


def test_rollback_refusals():
    with pytest.raises(Refused, match="nothing to roll back to: stable"):
        actions.plan_rollback(endpoint(100, 0))
    with pytest.raises(Refused, match=r"no variant below canary \(2.4.1\) is eligible.*StageNotReached"):
        actions.plan_rollback(endpoint(0, 100, stable_eligible=False))
    ep = endpoint()
    del ep["status"]
    ep["spec"]["variants"][0]["weight"] = 0
    with pytest.raises(Refused, match="not reported this variant yet"):
        actions.plan_rollback(ep)  # declared weights stand in for effective ones; nothing is eligible


def test_rollback_to_version_or_variant():
    assert actions.plan_rollback(endpoint(0, 100), to="2.3.8").target == "stable"
    assert actions.plan_rollback(endpoint(100, 0), to="canary").target == "canary"
    with pytest.raises(Refused, match="no variant running version 9.9.9.*stable=2.3.8, canary=2.4.1"):
        actions.plan_rollback(endpoint(), to="9.9.9")
    with pytest.raises(Refused, match="not eligible.*--force"):
        actions.plan_rollback(endpoint(0, 100, stable_eligible=False), to="2.3.8")
    forced = actions.plan_rollback(endpoint(0, 100, stable_eligible=False), to="2.3.8", force=True)
    assert forced.target == "stable"
    assert actions.plan_rollback(endpoint(100, 0), to="2.3.8").noop


def test_rollback_never_targets_or_weights_the_mirror():
    ep = with_variants(
        endpoint(),
        [("stable", "2.3.8", 0, True), ("canary", "2.4.1", 100, True), ("shadow", "2.2.0", 0, True)],
        mirror="shadow",
    )
    plan = actions.plan_rollback(ep)
    assert plan.target == "stable" and "shadow" not in plan.after
    assert [v["weight"] for v in plan.patch["spec"]["variants"]] == [100, 0, 0]
    with pytest.raises(Refused, match="mirror"):
        actions.plan_rollback(ep, to="shadow")


def test_rollback_done_and_gitops_manifest():
    assert actions.rollback_done({"stable": 100, "canary": 0}, "stable")
    assert not actions.rollback_done({"stable": 90, "canary": 10}, "stable")
    assert not actions.rollback_done({}, "stable")
    ep = endpoint(0, 100)
    plan = actions.plan_rollback(ep)
    manifest = actions.clean_manifest(apply_merge_patch(ep, plan.patch))
    assert "status" not in manifest
    assert set(manifest["metadata"]) == {"name", "namespace"}
    assert [v["weight"] for v in manifest["spec"]["variants"]] == [100, 0]
    assert manifest["spec"]["routing"] == ep["spec"]["routing"]
    assert ep["spec"]["variants"][0]["weight"] == 0  # the input is not modified
    assert apply_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}, "d": {"e": None}}) == {
        "a": {"c": 2},
        "d": {},
    }


def test_rollback_table():
    plan = actions.plan_rollback(endpoint(0, 100))
    text = terminal.to_text(
        render.rollback_table(plan, {"stable": "2.3.8", "canary": "2.4.1"}, {"stable": 100, "canary": 0})
    )
    lines = [ln.split() for ln in text.splitlines()]
    assert lines[0] == ["VARIANT", "VERSION", "BEFORE", "AFTER"]
    assert ["stable", "2.3.8", "0%", "100%"] in lines and ["canary", "2.4.1", "100%", "0%"] in lines


# ---- promote ----------------------------------------------------------------------------------------
def _promoting(stage: str, observed: int, cond_status: str, reason: str, cond_gen: int) -> dict[str, Any]:
    m = new_mv()
    m["status"]["stage"] = stage
    m["status"]["observedGeneration"] = observed
    m["status"]["conditions"][1] = {
        "type": "StageTransition",
        "status": cond_status,
        "reason": reason,
        "message": f"why: {reason}",
        "observedGeneration": cond_gen,
    }
    return m


def test_promote_states():
    done = actions.promote_state(_promoting("production", 3, "True", "InEffect", 3), "production", 3, 2)
    assert done.state == "done" and [h["to"] for h in done.new_history] == ["production"]
    blocked = actions.promote_state(
        _promoting("staging", 3, "False", "LineageIncomplete", 3), "production", 3, 2
    )
    assert (blocked.state, blocked.stage, blocked.reason) == ("blocked", "staging", "LineageIncomplete")
    assert blocked.message == "why: LineageIncomplete"
    stale = actions.promote_state(
        _promoting("staging", 2, "False", "LineageIncomplete", 2), "production", 3, 2
    )
    assert stale.state == "waiting"  # a refusal of the previous generation is not an answer
    verifying = actions.promote_state(
        _promoting("candidate", 3, "Unknown", "ArtifactNotVerified", 3), "staging", 3, 0
    )
    assert (verifying.state, verifying.reason) == ("waiting", "ArtifactNotVerified")
    not_yet = actions.promote_state(_promoting("staging", 2, "True", "InEffect", 2), "staging", 3, 0)
    assert not_yet.state == "waiting"


def test_promote_patch_names_actor_stage_and_reason():
    from modelversioning.handlers.version_annotations import stage_actor

    patch = actions.promote_patch("production", "admin", None)
    assert patch["spec"] == {"stage": "production"}
    ann = patch["metadata"]["annotations"]
    assert ann == {
        "modelversioning.io/requested-by": "admin",
        "modelversioning.io/requested-stage": "production",
        "modelversioning.io/reason": None,
    }  # null removes a stale reason
    body = apply_merge_patch(
        {"metadata": {"annotations": {"modelversioning.io/reason": "old"}}}, patch
    )
    assert stage_actor(body, "production", enforced=True) == "admin"
    assert "modelversioning.io/reason" not in body["metadata"]["annotations"]


# ---- register ---------------------------------------------------------------------------------------
def test_missing_metadata_is_named_with_its_options():
    inp = RegisterInputs(model="fraud", version="1.0.0", artifact="m.bin", image="img", code_commit="abc1234")
    assert register_plan.missing_metadata(inp) == [
        "lineage.dataset (--dataset and --dataset-version/--dataset-sha256)",
        "metrics (--metrics FILE or --metric k=v)",
    ]
    inp = RegisterInputs(
        model="fraud", version="1.0.0", dataset="tx", metrics={"auc": 1.0}, stage="production"
    )
    assert register_plan.missing_metadata(inp) == [
        "artifact (--artifact URI_OR_PATH)",
        "runtime.image (--image)",
        "lineage.dataset.version or lineage.dataset.sha256 (--dataset-version/--dataset-sha256)",
        "lineage.codeCommit (--code-commit, or run inside the training code's git checkout)",
        "lineage.codeRepository (--code-repository, or a git remote 'origin') (for --stage production)",
        "lineage.trainedAt (--trained-at) (for --stage production)",
        "lineage.author (--author) (for --stage production)",
        "lineage.framework (--framework) (for --stage production)",
    ]


def test_parse_pairs_and_files(tmp_path):
    assert inputs.parse_pairs(["auc=0.95", "n=3"], "--metric", numeric=True) == {"auc": 0.95, "n": 3}
    assert inputs.parse_pairs(
        ["lr=1e-3", "deep=true", "opt=adam", "d=9"], "--hyperparameter", numeric=False
    ) == {"lr": 0.001, "deep": True, "opt": "adam", "d": 9}
    with pytest.raises(Refused, match="not a number") as e:
        inputs.parse_pairs(["auc=high"], "--metric", numeric=True)
    assert e.value.code == 2
    with pytest.raises(Refused, match="expected KEY=VALUE"):
        inputs.parse_pairs(["auc"], "--metric", numeric=True)
    f = tmp_path / "m.json"
    f.write_text('{"auc": 0.9, "name": "x"}')
    with pytest.raises(Refused, match="'name' is not a number"):
        inputs.load_mapping(f, "--metrics", numeric=True)
    assert inputs.load_mapping(f, "--hyperparameters", numeric=False) == {"auc": 0.9, "name": "x"}


def test_build_manifest_validates_with_the_api_model():
    inp = RegisterInputs(
        model="fraud",
        version="1.0.0",
        artifact="x",
        image="img",
        dataset="tx",
        dataset_version="1",
        metrics={"auc": 0.9},
        code_commit="abc1234",
        trained_at="2024-07-02T10:00:00Z",
    )
    doc = register_plan.build_manifest(inp, uri="s3://b/k", sha256="c" * 64, size_bytes=3)
    model = register_plan.validate_manifest(doc)
    assert model.spec.artifact.size_bytes == 3 and model.metadata["name"] == "fraud-v1.0.0"
    bad = register_plan.build_manifest(
        RegisterInputs(**{**inp.__dict__, "trained_at": "yesterday"}), uri="s3://b/k", sha256="c" * 64
    )
    with pytest.raises(Refused, match="trainedAt 'yesterday' is not an RFC 3339") as e:
        register_plan.validate_manifest(bad)
    assert e.value.code == 2
    assert register_plan.identity_errors("Fraud_Detector", "v2") and not register_plan.identity_errors(
        "fraud", "2.0.0-rc.1"
    )


GIT = shutil.which("git")


def needs_git(fn):  # type: ignore[no-untyped-def]
    """git is part of the toolchain here (CI runs in a clone): a missing git fails, never skips."""

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert GIT is not None, "git is required for these tests"
        return fn(*args, **kwargs)

    return functools.wraps(fn)(wrapped)


def _git_repo(path: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, check=True, capture_output=True, text=True
        ).stdout.strip()

    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "ci")
    (path / "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "training code")
    git("remote", "add", "origin", "https://ci:s3cret@git.example.com/ml/fraud.git")
    return git("rev-parse", "HEAD")


REGISTER = [
    "register",
    "fraud-detector",
    "2.4.1",
    "--image",
    "ghcr.io/example/fraud:1.4",
    "--dataset",
    "tx",
    "--dataset-version",
    "2024-09-30",
    "--metric",
    "auc=0.951",
    "--author",
    "jane",
    "--framework",
    "xgb",
]


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


@needs_git
def test_register_prints_gitops_yaml_with_lineage_from_git(tmp_path):
    code = tmp_path / "code"
    head = _git_repo(code)
    art = tmp_path / "model"
    art.mkdir()
    (art / "weights.bin").write_bytes(b"w" * 1000)
    (art / "config.json").write_text("{}")
    r = _run(
        [
            *REGISTER,
            "--artifact",
            str(art),
            "--code-dir",
            str(code),
            "--hyperparameter",
            "max_depth=9",
            "--trained-at",
            "2024-10-03T08:30:00Z",
        ]
    )
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.stdout)
    assert doc["metadata"]["name"] == "fraud-detector-v2.4.1" and "namespace" not in doc["metadata"]
    assert doc["spec"]["lineage"]["codeCommit"] == head
    assert (
        doc["spec"]["lineage"]["codeRepository"] == "https://git.example.com/ml/fraud.git"
    )  # no credentials
    assert doc["spec"]["lineage"]["hyperparameters"] == {"max_depth": 9}
    assert doc["spec"]["artifact"]["sha256"] == digest_local(art).sha256
    assert doc["spec"]["artifact"]["uri"] == art.resolve().as_uri() + "/"
    assert doc["spec"]["artifact"]["sizeBytes"] == 1002
    assert "environment" not in doc["spec"]["lineage"]
    assert "sha256 of" in r.stderr


@needs_git
def test_register_refuses_a_dirty_checkout(tmp_path):
    code = tmp_path / "code"
    _git_repo(code)
    (code / "train.py").write_text("print('changed')\n")
    art = tmp_path / "model.bin"
    art.write_bytes(b"weights")
    r = _run([*REGISTER, "--artifact", str(art), "--code-dir", str(code)])
    assert r.exit_code == 1
    assert "uncommitted changes" in r.stderr and "train.py" in r.stderr and "--allow-dirty" in r.stderr
    assert r.stdout == ""
    ok = _run(
        [
            *REGISTER,
            "--artifact",
            str(art),
            "--code-dir",
            str(code),
            "--allow-dirty",
            "--uri",
            "s3://models/fraud-detector/2.4.1/model.bin",
            "-o",
            "json",
        ]
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["spec"]["lineage"]["environment"] == {"gitDirty": "true"}
    assert doc["spec"]["artifact"] == {
        "uri": "s3://models/fraud-detector/2.4.1/model.bin",
        "sha256": hashlib.sha256(b"weights").hexdigest(),
        "sizeBytes": 7,
    }
    explicit = _run(
        [
            *REGISTER,
            "--artifact",
            str(art),
            "--code-dir",
            str(code),
            "--code-commit",
            "abcdef1",
            "--code-repository",
            "https://git.example.com/x.git",
        ]
    )
    assert explicit.exit_code == 0, explicit.output  # an explicit commit is not checked against the tree


def test_register_names_what_is_missing(tmp_path):
    art = tmp_path / "model.bin"
    art.write_bytes(b"x")
    r = _run(
        [
            "register",
            "fraud-detector",
            "2.4.1",
            "--artifact",
            str(art),
            "--image",
            "img",
            "--code-commit",
            "abcdef1",
            "--code-dir",
            str(tmp_path),
        ]
    )
    assert r.exit_code == 2
    assert (
        "missing: lineage.dataset (--dataset and --dataset-version/--dataset-sha256), "
        "metrics (--metrics FILE or --metric k=v)"
    ) in r.stderr
    r = _run(
        [
            "register",
            "fraud-detector",
            "2.4.1",
            "--artifact",
            str(art),
            "--image",
            "img",
            "--dataset",
            "tx",
            "--dataset-version",
            "1",
            "--metric",
            "auc=1",
            "--code-dir",
            str(tmp_path),
        ]
    )
    assert r.exit_code == 2 and "lineage.codeCommit (--code-commit" in r.stderr


def test_register_usage_errors(tmp_path):
    r = _run(["register", "fraud-detector", "v2", "--artifact", "x"])
    assert r.exit_code == 2 and "not a semantic version" in r.stderr
    r = _run([*REGISTER, "--artifact", str(tmp_path / "nope.bin"), "--code-commit", "abcdef1"])
    assert r.exit_code == 1 and "no such file or directory" in r.stderr
    r = _run([*REGISTER, "--artifact", "s3://b/k", "--sha256", "xyz", "--code-commit", "abcdef1"])
    assert r.exit_code == 2 and "artifact.sha256 must be 64 lowercase hex" in r.stderr
    r = _run([*REGISTER, "--artifact", "s3://b/k", "--sha256", "C" * 64, "--code-commit", "abcdef1"])
    assert r.exit_code == 0 and yaml.safe_load(r.stdout)["spec"]["artifact"] == {
        "uri": "s3://b/k",
        "sha256": "c" * 64,
    }


@needs_git
def test_git_info(tmp_path):
    assert git_info(tmp_path) is None or git_info(tmp_path).root != str(tmp_path)  # not a checkout
    head = _git_repo(tmp_path / "repo")
    info = git_info(tmp_path / "repo")
    assert info is not None and info.commit == head and not info.is_dirty
    assert redact_remote("https://u:p@h.example.com:8443/x.git") == "https://h.example.com:8443/x.git"
    assert redact_remote("git@github.com:org/x.git") == "git@github.com:org/x.git"


# ---- CLI plumbing -----------------------------------------------------------------------------------
def test_help_mentions_every_command_with_examples():
    r = _run(["--help"])
    assert r.exit_code == 0
    for cmd in (
        "register",
        "list",
        "get",
        "describe",
        "history",
        "promote",
        "rollback",
        "status",
        "which",
        "diff",
    ):
        assert cmd in r.stdout, cmd
        sub = _run([cmd, "--help"])
        assert sub.exit_code == 0 and "kubectl models " + cmd in sub.stdout, cmd
        assert "Example" in sub.stdout, cmd


def test_global_options_are_accepted_after_the_command():
    group = typer.main.get_group(app)
    assert _hoist_globals(group, ["list", "fraud", "-n", "ns", "-o", "json"]) == [
        "-n",
        "ns",
        "-o",
        "json",
        "list",
        "fraud",
    ]
    assert _hoist_globals(
        group,
        ["--kubeconfig", "k", "promote", "m", "1.0.0", "--to", "staging", "--reason", "-n", "--context=c"],
    ) == ["--kubeconfig", "k", "--context=c", "promote", "m", "1.0.0", "--to", "staging", "--reason", "-n"]
    assert _hoist_globals(group, ["rollback", "ep", "-nns", "--", "-o"]) == [
        "-nns",
        "rollback",
        "ep",
        "--",
        "-o",
    ]
    assert _hoist_globals(group, ["--help"]) == ["--help"]


def test_cluster_errors_exit_1_on_stderr(tmp_path):
    r = _run(["--kubeconfig", str(tmp_path / "missing"), "list"])
    assert r.exit_code == 1 and "does not exist" in r.stderr and r.stdout == ""
    r = _run(["promote", "m", "1.0.0"])
    assert r.exit_code == 2  # --to is required
    r = _run(["-o", "xml", "list"])
    assert r.exit_code == 2


def test_namespace_defaults_to_the_context(tmp_path):
    from modelversioning.cli.models.kube import Cluster

    kc = tmp_path / "kubeconfig"
    kc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "a",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "jane", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "jane", "namespace": "models"}},
                    {"name": "b", "context": {"cluster": "c", "user": "jane"}},
                ],
            }
        )
    )
    assert Cluster(str(kc)).namespace == "models"
    assert Cluster(str(kc), context="b").namespace == "default"
    assert Cluster(str(kc), namespace="x").namespace == "x"
    assert Cluster(str(kc)).kubeconfig_user() == "jane"


def test_rollout_view_reads_status_and_spec():
    from modelversioning.cli.models.rollout_views import rollout_view

    ep = {
        "metadata": {"name": "fraud"},
        "spec": {
            "variants": [{"name": "stable", "weight": 0}, {"name": "canary", "weight": 100}],
            "strategy": {
                "canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}] * 3}
            },
        },
        "status": {
            "effectiveWeights": {"stable": 90, "canary": 10},
            "rollout": {
                "phase": "Progressing",
                "step": 1,
                "weights": {"stable": 90, "canary": 10},
                "measurements": [{"metric": "errors", "verdict": "Passed", "value": 0.01}],
            },
        },
    }
    v = rollout_view(ep)
    assert (v["phase"], v["step"], v["steps"]) == ("Progressing", 1, 3)
    assert v["declared"] == {"stable": 0, "canary": 100} and v["effective"]["canary"] == 10
    assert v["measurements"][0]["verdict"] == "Passed"


def test_the_plugin_starts_without_building_the_api_models_or_loading_the_kubernetes_client() -> None:
    # `kubectl models --help` and every command's start: the pydantic models (0.2-0.6 s to build) and
    # the kubernetes client load only when a command needs them (validation, the cluster).
    import subprocess
    import sys

    code = (
        "import sys, modelversioning.cli.kubectl_models\n"
        "print(sorted(m for m in ('pydantic', 'kubernetes', 'modelversioning.api.modelversion',"
        " 'modelversioning.api.modelversion_spec', 'modelversioning.api.modelendpoint') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
