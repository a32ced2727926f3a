"""The Model reconciler's decisions (domain.model_plan), table-tested without a cluster: Ready, the
archive orders, the artifact deletions (allowed, dry run, switched off, refused and why, failed and
retried), their Events, the pending list and the requeue. The one path that deletes data."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.domain import conditions as cond
from modelversioning.domain import model_plan
from modelversioning.domain.model_plan import (
    Deleted,
    ModelFacts,
    ModelPlan,
    decide,
    deletion_events,
    settle,
)
from modelversioning.domain.platform_policy import Floors
from modelversioning.domain.registry import Retention, RetentionPlan, VersionView, rfc3339
from modelversioning.domain.retention_owner import Verified

NOW = datetime(2024, 6, 1, tzinfo=UTC)
WALL = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = 86400.0
ARCHIVE = Retention(archive_after=timedelta(days=30), keep_previous_production=0)
OFF = "the operator setting registry.allowArtifactDeletion is off"


def delete_rules(mode: str = "Enabled") -> Retention:
    return Retention(delete_artifacts_after=timedelta(days=30), keep_previous_production=0, deletion=mode)


def v(version: str, stage: str = "archived", days: float = 800, **kw: Any) -> VersionView:
    """A version never in production, registered ``days`` ago (out of production since then)."""
    return VersionView(
        name=f"m-v{version}",
        version=version,
        uid=f"u-{version}",
        digest=f"d-{version}",
        uri=kw.pop("uri", f"s3://b/m/{version}/"),
        created=(NOW - timedelta(days=days)).isoformat(),
        stage=stage,
        spec_stage=kw.pop("spec_stage", stage or "candidate"),
        **kw,
    )


def left_production(version: str, days: float) -> VersionView:
    """A version that was in production and left it ``days`` ago (now archived)."""
    hist = (
        {"to": "candidate", "at": rfc3339(NOW - timedelta(days=days + 10))},
        {"from": "candidate", "to": "production", "at": rfc3339(NOW - timedelta(days=days + 5))},
        {"from": "production", "to": "archived", "at": rfc3339(NOW - timedelta(days=days))},
    )
    return replace(v(version, "archived", days + 10), history=hist)


ROOTS = Floors(policies=("p",), storage_roots=(("s3://b/",),))


def facts(*views: VersionView, rules: Retention | None = ARCHIVE, **kw: Any) -> ModelFacts:
    """Facts where every version was verified as its digest and the namespace's root is s3://b/."""
    return ModelFacts(
        **{
            "name": "m",
            "generation": 1,
            "status": {},
            "views": views,
            "now": NOW,
            "wall": WALL,
            "rules": rules,
            "allow_artifact_deletion": True,
            "check_seconds": 1e9,
            "namespace": "team-a",
            "floors": ROOTS,
            "verified": {x.name: Verified(x.digest, True, 10, 2) for x in views},
            **kw,
        }
    )


def ready(plan: ModelPlan) -> tuple[str, str, str]:
    c = cond.get(plan.status["conditions"], "Ready") or {}
    return c["status"], c["reason"], c["message"]


def summary(plan: ModelPlan) -> dict[str, Any]:
    return {
        "archive": [o.name for o in plan.archive],
        "delete": [d.name for d in plan.to_delete],
        "refused": {d.name: d.refused for d in plan.deletions if d.refused is not None},
        # an Event's message up to its first colon: what it says, about which version
        "events": [(e.type, e.reason, e.on, e.message.split(":")[0]) for e in plan.events],
        "pending": plan.status.get("pendingDeletions", []),
        "ready": ready(plan)[:2],
        "requeue": plan.requeue,
    }


NOTHING: dict[str, Any] = {
    "archive": [],
    "delete": [],
    "refused": {},
    "events": [],
    "pending": [],
    "ready": ("True", R.MODEL_RECORDED),
    "requeue": None,
}
DUE = ("Normal", R.ARTIFACT_DELETE_DUE, "")
SHARED = "s3://b/m/shared/"

CASES: list[tuple[str, ModelFacts, dict[str, Any]]] = [
    # ---- Ready, nothing due, the requeue
    ("no-retention-rules", facts(v("1.0.0", "staging"), rules=Retention()), {}),
    (
        "invalid-policy-does-nothing",
        facts(v("1.0.0", "staging"), rules=None, invalid="spec.retention.archiveAfter: bad"),
        {"ready": ("False", R.INVALID_POLICY)},
    ),
    ("archive-not-due-requeue-at-due", facts(v("1.0.0", "staging", 10)), {"requeue": 20 * DAY}),
    ("requeue-capped-by-check", facts(v("1.0.0", "staging", 10), check_seconds=3600), {"requeue": 3600}),
    ("requeue-at-least-a-second", facts(v("1.0.0", "staging", 30 - 0.5 / DAY)), {"requeue": 1.0}),
    ("in-production-never-due", facts(v("1.0.0", "production")), {}),
    # ---- archive
    (
        "archive-one",
        facts(v("1.0.0", "staging")),
        {"archive": ["m-v1.0.0"], "events": [("Normal", R.ARCHIVE_DUE, "", "archiving m-v1.0.0")]},
    ),
    (
        "archive-several-and-requeue-for-the-next",
        facts(v("1.0.0", "staging"), v("1.1.0", "candidate", 40), v("1.2.0", "staging", 10)),
        {
            "archive": ["m-v1.0.0", "m-v1.1.0"],
            "events": [
                ("Normal", R.ARCHIVE_DUE, "", "archiving m-v1.0.0"),
                ("Normal", R.ARCHIVE_DUE, "", "archiving m-v1.1.0"),
            ],
            "requeue": 20 * DAY,
        },
    ),
    ("archive-ordered-already", facts(v("1.0.0", "staging"), archive_orders={"m-v1.0.0": "staging"}), {}),
    (
        "archive-order-for-an-older-spec-stage-is-renewed",
        facts(v("1.0.0", "staging"), archive_orders={"m-v1.0.0": "production"}),
        {"archive": ["m-v1.0.0"], "events": [("Normal", R.ARCHIVE_DUE, "", "archiving m-v1.0.0")]},
    ),
    (
        "archive-due-exactly-at-the-period",
        facts(v("1.0.0", "staging", 30)),
        {"archive": ["m-v1.0.0"], "events": [("Normal", R.ARCHIVE_DUE, "", "archiving m-v1.0.0")]},
    ),
    ("archived-already", facts(v("1.0.0", "archived")), {}),
    # ---- artifact deletion: allowed, switched off, dry run, disabled
    ("delete-due-and-allowed", facts(v("1.0.0"), rules=delete_rules()), {"delete": ["m-v1.0.0"]}),
    ("delete-not-due-yet", facts(v("1.0.0", days=10), rules=delete_rules()), {"requeue": 20 * DAY}),
    (
        "delete-due-exactly-at-the-period",
        facts(v("1.0.0", days=30), rules=delete_rules()),
        {"delete": ["m-v1.0.0"]},
    ),
    (
        "delete-due-operator-switch-off",
        facts(v("1.0.0"), rules=delete_rules(), allow_artifact_deletion=False),
        {
            "refused": {"m-v1.0.0": OFF},
            "pending": ["1.0.0"],
            "events": [(*DUE, f"dry run ({OFF})")],
        },
    ),
    (
        "dry-run-one-event-per-version",
        facts(v("1.0.0"), v("1.1.0"), rules=delete_rules("DryRun")),
        {
            "refused": {n: "spec.retention.artifactDeletion is DryRun" for n in ("m-v1.0.0", "m-v1.1.0")},
            "pending": ["1.0.0", "1.1.0"],
            "events": [(*DUE, "dry run"), (*DUE, "dry run")],
        },
    ),
    (
        "dry-run-with-the-switch-off-too",
        facts(v("1.0.0"), rules=delete_rules("DryRun"), allow_artifact_deletion=False),
        {
            "refused": {"m-v1.0.0": "spec.retention.artifactDeletion is DryRun"},
            "pending": ["1.0.0"],
            "events": [(*DUE, "dry run")],
        },
    ),
    (
        "dry-run-reported-before-no-second-event",
        facts(v("1.0.0"), v("1.1.0"), rules=delete_rules("DryRun"), status={"pendingDeletions": ["1.0.0"]}),
        {
            "refused": {n: "spec.retention.artifactDeletion is DryRun" for n in ("m-v1.0.0", "m-v1.1.0")},
            "pending": ["1.0.0", "1.1.0"],
            "events": [(*DUE, "dry run")],
        },
    ),
    (
        "deletion-disabled-says-nothing",
        facts(v("1.0.0"), rules=delete_rules("Disabled")),
        {"refused": {"m-v1.0.0": "spec.retention.artifactDeletion is Disabled"}},
    ),
    # ---- what retention never deletes (registry.select leaves it out)
    ("refused-referenced", facts(v("1.0.0", referenced_by=("ep",)), rules=delete_rules()), {}),
    ("refused-in-production", facts(v("1.0.0", "production"), rules=delete_rules()), {}),
    ("refused-not-archived", facts(v("1.0.0", "staging"), rules=delete_rules()), {}),
    ("refused-already-deleted", facts(v("1.0.0", artifact_deleted=True), rules=delete_rules()), {}),
    ("refused-reused-number", facts(v("1.0.0", reused=True), rules=delete_rules()), {}),
    (
        "refused-previous-production-kept",
        facts(left_production("1.0.0", 100), rules=replace(delete_rules(), keep_previous_production=1)),
        {},
    ),
    (
        "refused-uri-shared-with-a-live-version",
        facts(v("1.0.0", uri=SHARED), v("2.0.0", "staging", 10, uri=SHARED), rules=delete_rules()),
        {},
    ),
    (
        "uri-shared-only-by-archived-versions-both-go",
        facts(v("1.0.0", uri=SHARED), v("2.0.0", uri=SHARED), rules=delete_rules()),
        {"delete": ["m-v1.0.0", "m-v2.0.0"]},
    ),
    (
        "failed-earlier-is-retried",
        facts(
            v("1.0.0"),
            rules=delete_rules(),
            status={"conditions": [{"type": "Ready", "status": "False", "reason": R.ARTIFACT_DELETE_FAILED}]},
        ),
        {"delete": ["m-v1.0.0"]},
    ),
]


@pytest.mark.parametrize(("f", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(f: ModelFacts, expected: dict[str, Any]) -> None:
    assert summary(decide(f)) == {**NOTHING, **expected}


# ---- the payloads: annotations, Events, records ------------------------------------------------


def test_an_archive_order_carries_the_spec_stage_time_actor_and_numbers() -> None:
    (order,) = decide(facts(v("1.0.0", "staging"))).archive
    why = f"out of production since {rfc3339(NOW - timedelta(days=800))} (800d), longer than archiveAfter 30d"
    assert json.loads(order.annotation) == {
        "specStage": "staging",
        "at": "2024-06-01T00:00:00Z",
        "by": "Retention (Model m)",
        "reason": f"retention: {why}",
    }
    assert order.event.message == f"archiving m-v1.0.0: {why}"


def test_a_deletion_says_what_it_deletes_and_what_it_writes_afterwards() -> None:
    f = facts(v("1.0.0"), rules=delete_rules(), secret_refs={"m-v1.0.0": "s3-creds"})
    (d,) = decide(f).to_delete
    assert (d.name, d.version, d.uri, d.secret_ref) == ("m-v1.0.0", "1.0.0", "s3://b/m/1.0.0/", "s3-creds")
    assert json.loads(d.annotation) == {
        "at": "2024-06-01T00:00:00Z",
        "by": "Retention (Model m)",
        "reason": d.why,
        "uri": "s3://b/m/1.0.0/",
    }
    assert "longer than deleteArtifactsAfter 30d" in d.why and not d.pending and d.due_event is None


def test_the_dry_run_event_names_the_version_and_why() -> None:
    (d,) = decide(facts(v("1.0.0"), rules=delete_rules("DryRun"))).deletions
    assert d.due_event is not None
    assert d.due_event.message == f"dry run: would delete the artifact of m-v1.0.0 under s3://b/: {d.why}"
    assert d.probe and d.owned is not None and d.owned.sha256 == "d-1.0.0"  # the worker says which objects
    probe = Deleted(True, "ok", objects=("a.bin", "b/c.bin"), count=12)
    said = model_plan.dry_run_event(d, probe).message
    head = "dry run: would delete the artifact of m-v1.0.0 under s3://b/"
    assert said == f"{head}, 12 objects: a.bin, b/c.bin and 10 more: {d.why}"
    no = model_plan.dry_run_event(d, Deleted(False, "s3://b/m/1.0.0/: no longer hashes", refused=True))
    assert (no.type, no.message) == (
        "Warning",
        "dry run: would refuse to delete the artifact of m-v1.0.0: s3://b/m/1.0.0/: no longer hashes",
    )


def test_retention_says_why_it_leaves_a_version_alone() -> None:
    plan = decide(
        facts(v("1.0.0", referenced_by=("ep", "ep2")), v("2.0.0", "production"), rules=delete_rules())
    )
    assert plan.kept == {"m-v1.0.0": "referenced by ModelEndpoint ep, ep2", "m-v2.0.0": "in production"}


def test_a_successful_deletion_marks_the_record_and_posts_on_the_model_and_the_version() -> None:
    f = facts(v("1.0.0"), v("1.1.0", "staging", 10), rules=delete_rules())
    plan = decide(f)
    assert [r["artifact"] for r in plan.status["versions"]] == ["Present", "Present"]  # nothing ran yet
    (d,) = plan.to_delete
    ran = Deleted(True, "s3://b/m/1.0.0/ deleted", objects=("w.bin",), count=1)
    done = settle(f, plan, {d.name: ran})
    assert [r["artifact"] for r in done.status["versions"]] == ["Deleted", "Present"]
    assert ready(done)[:2] == ("True", R.MODEL_RECORDED) and done.requeue is None
    msg = (
        f"deleted the artifact of m-v1.0.0 (s3://b/m/1.0.0/ deleted; under s3://b/, 1 objects: w.bin): "
        f"{d.why}; the ModelVersion and its record are kept"
    )
    assert deletion_events(d, ran) == (
        model_plan.Event("Normal", R.ARTIFACT_DELETED, msg),
        model_plan.Event("Normal", R.ARTIFACT_DELETED, msg, on="m-v1.0.0"),
    )


def test_a_failed_deletion_keeps_the_record_warns_on_the_version_and_retries_in_30s() -> None:
    f = facts(v("1.0.0"), v("1.1.0"), v("1.2.0", days=10), rules=delete_rules())
    plan = decide(f)
    assert plan.requeue == 20 * DAY
    d1, d2 = plan.to_delete
    done = settle(f, plan, {d1.name: Deleted(False, "AccessDenied"), d2.name: Deleted(True, "gone")})
    assert ready(done) == ("False", R.ARTIFACT_DELETE_FAILED, "1.0.0: AccessDenied")
    assert [r["artifact"] for r in done.status["versions"]] == ["Present", "Deleted", "Present"]
    assert (done.requeue, done.requeue_why) == (30.0, "artifact deletion failed")  # before the next due
    assert deletion_events(d1, Deleted(False, "AccessDenied")) == (
        model_plan.Event("Warning", R.ARTIFACT_DELETE_FAILED, "AccessDenied", on="m-v1.0.0"),
    )


def test_after_a_failure_a_successful_retry_makes_the_model_ready_again() -> None:
    failed = facts(v("1.0.0"), rules=delete_rules())
    first = settle(failed, decide(failed), {"m-v1.0.0": Deleted(False, "timeout")})
    again = replace(failed, status=first.status, wall=WALL + timedelta(minutes=1))
    plan = decide(again)
    assert [d.name for d in plan.to_delete] == ["m-v1.0.0"]  # retried
    done = settle(again, plan, {"m-v1.0.0": Deleted(True, "deleted")})
    c = cond.get(done.status["conditions"], "Ready") or {}
    assert (c["status"], c["reason"], c["lastTransitionTime"]) == (
        "True",
        R.MODEL_RECORDED,
        "2024-06-01T12:01:00Z",
    )


def test_an_outcome_for_a_refused_deletion_changes_nothing() -> None:
    f = facts(v("1.0.0"), rules=delete_rules("DryRun"))
    plan = decide(f)
    assert settle(f, plan, {"m-v1.0.0": Deleted(True, "deleted")}) == plan


@pytest.mark.parametrize(
    ("status", "notify"),
    [
        ({"production": ["2.0.0"], "observedGeneration": 1}, False),
        ({"production": [], "observedGeneration": 1}, True),  # the versions' gates compare with it
        ({"production": ["2.0.0"], "observedGeneration": 0}, True),  # the policy changed
    ],
    ids=["same", "production-changed", "generation-changed"],
)
def test_versions_look_again_when_production_or_the_policy_changed(
    status: dict[str, Any], notify: bool
) -> None:
    plan = decide(facts(v("2.0.0", "production"), status=status))
    assert plan.status["production"] == ["2.0.0"] and plan.notify_versions is notify


# ---- the last line of defence: whatever select returns, these are never deleted ---------------


LIVE = v("2.0.0", "staging", 10, uri=SHARED)
GUARD = [
    ("kept", v("1.0.0"), (), {"m-v1.0.0": "in a test"}, "kept: in a test"),
    ("referenced", v("1.0.0", referenced_by=("ep",)), (), {}, "referenced by ModelEndpoint ep"),
    ("in-production", v("1.0.0", "production"), (), {}, "at stage production, not archived"),
    ("not-archived", v("1.0.0", "staging"), (), {}, "at stage staging, not archived"),
    ("no-stage-yet", v("1.0.0", ""), (), {}, "at stage (none yet), not archived"),
    ("reused", v("1.0.0", reused=True), (), {}, "refused as a reused version number"),
    ("already-deleted", v("1.0.0", artifact_deleted=True), (), {}, "its artifact is already deleted"),
    ("shared-with-live", v("1.0.0", uri=SHARED), (LIVE,), {}, "its artifact is also the artifact of 2.0.0"),
    ("shared-with-deleted-live", v("1.0.0", uri=SHARED), (replace(LIVE, artifact_deleted=True),), {}, None),
    ("shared-with-archived", v("1.0.0", uri=SHARED), (v("2.0.0", uri=SHARED),), {}, None),
    ("safe", v("1.0.0"), (), {}, None),
]


@pytest.mark.parametrize(
    ("target", "others", "kept", "refused"), [g[1:] for g in GUARD], ids=[g[0] for g in GUARD]
)
def test_decide_refuses_an_unsafe_deletion_even_if_retention_selected_it(
    monkeypatch: pytest.MonkeyPatch,
    target: VersionView,
    others: tuple[VersionView, ...],
    kept: dict[str, str],
    refused: str | None,
) -> None:
    chosen = RetentionPlan(delete=((target.name, "a broken select"),), kept=kept)
    monkeypatch.setattr(model_plan.registry, "select", lambda views, rules, now: chosen)
    plan = decide(facts(target, *others, rules=delete_rules()))
    (d,) = plan.deletions
    assert d.refused == refused
    assert [x.name for x in plan.to_delete] == ([] if refused else [target.name])
    assert not d.pending and d.due_event is None and "pendingDeletions" not in plan.status


def test_an_unsafe_deletion_stays_refused_in_a_dry_run_and_with_the_switch_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = v("1.0.0", referenced_by=("ep",))
    chosen = RetentionPlan(delete=((target.name, "a broken select"),))
    monkeypatch.setattr(model_plan.registry, "select", lambda views, rules, now: chosen)
    for f in (
        facts(target, rules=delete_rules("DryRun")),
        facts(target, rules=delete_rules(), allow_artifact_deletion=False),
    ):
        (d,) = decide(f).deletions
        assert d.refused == "referenced by ModelEndpoint ep" and not d.pending and d.due_event is None


@pytest.mark.parametrize(
    ("mode", "allow", "refused"),
    [
        ("Enabled", True, None),
        ("Enabled", False, OFF),
        ("DryRun", True, "spec.retention.artifactDeletion is DryRun"),
        ("Disabled", True, "spec.retention.artifactDeletion is Disabled"),
        ("Something", True, "spec.retention.artifactDeletion is Something"),  # unknown: never deletes
    ],
)
def test_only_enabled_and_the_operator_switch_together_allow_deleting(
    mode: str, allow: bool, refused: str | None
) -> None:
    assert model_plan.mode_refusal(mode, allow) == refused


# ---- ownership (issue 23, item 3): only what the version provably owns ---------------------------

REFUSED = (
    "Warning",
    R.ARTIFACT_DELETE_REFUSED,
    "m-v1.0.0",
    "retention will not delete the artifact of m-v1.0.0",
)
OWNERSHIP: list[tuple[str, dict[str, Any], str | None]] = [
    ("owned", {}, None),
    ("no-policy-no-root", {"floors": Floors()}, "no ModelPlatformPolicy names a retention.storageRoots"),
    (
        "outside-the-root",
        {"floors": Floors(policies=("p",), storage_roots=(("s3://other/",),))},
        "not strictly under a storage root of namespace team-a (s3://other/)",
    ),
    (
        "the-root-itself",
        {"floors": Floors(policies=("p",), storage_roots=(("s3://b/m/1.0.0/",),))},
        "not strictly under",
    ),
    ("never-verified", {"verified": {}}, "never verified"),
    ("no-verified-digest", {"verified": {"m-v1.0.0": Verified("", True)}}, "never verified"),
    (
        "verified-another-digest",
        {"verified": {"m-v1.0.0": Verified("e" * 64, True)}},
        "not verified as sha256 d-1.0.0",
    ),
    (
        "verification-not-true",
        {"verified": {"m-v1.0.0": Verified("d-1.0.0", False)}},
        "ArtifactVerified is not True",
    ),
    (
        "overlaps-another-namespace",
        {"overlaps": {"m-v1.0.0": ("team-b/prod-v1",)}},
        "lies inside the artifact URI of team-b/prod-v1",
    ),
]


@pytest.mark.parametrize(("over", "refused"), [c[1:] for c in OWNERSHIP], ids=[c[0] for c in OWNERSHIP])
def test_decide_deletes_only_what_the_version_provably_owns(
    over: dict[str, Any], refused: str | None
) -> None:
    f = facts(v("1.0.0"), rules=delete_rules(), **over)
    plan = decide(f)
    (d,) = plan.deletions
    if refused is None:
        assert d.refused is None and d.owned is not None and d.owned.root == "s3://b/" and not plan.events
        assert "refusedDeletions" not in plan.status
        return
    assert d.refused is not None and refused in d.refused and d.owned is None and not plan.to_delete
    assert d.refused_reason == R.ARTIFACT_DELETE_REFUSED
    assert [(e.type, e.reason, e.on, e.message.split(":")[0]) for e in plan.events] == [REFUSED]
    assert plan.status["refusedDeletions"] == [
        {"version": "1.0.0", "reason": R.ARTIFACT_DELETE_REFUSED, "message": d.refused}
    ]
    again = decide(replace(f, status=plan.status))  # the same refusal is said once
    assert again.events == () and again.status["refusedDeletions"] == plan.status["refusedDeletions"]


def test_a_dry_run_that_is_not_owned_says_why_and_is_not_pending() -> None:
    plan = decide(facts(v("1.0.0"), rules=delete_rules("DryRun"), floors=Floors()))
    (d,) = plan.deletions
    assert not d.pending and not d.probe and plan.status.get("pendingDeletions") is None
    assert [e.reason for e in plan.events] == [R.ARTIFACT_DELETE_REFUSED]


def test_a_refusal_by_the_worker_deletes_nothing_is_recorded_and_said_once() -> None:
    f = facts(v("1.0.0"), rules=delete_rules())
    plan = decide(f)
    (d,) = plan.to_delete
    no = Deleted(False, "s3://b/m/1.0.0/: no longer hash to the verified sha256", refused=True)
    done = settle(f, plan, {d.name: no})
    assert [r["artifact"] for r in done.status["versions"]] == ["Present"]
    assert ready(done)[:2] == ("True", R.MODEL_RECORDED) and done.requeue is None  # not retried in 30 s
    assert done.status["refusedDeletions"][0]["message"] == no.message
    assert [e.reason for e in deletion_events(d, no)] == [R.ARTIFACT_DELETE_REFUSED]
    assert deletion_events(d, no, model_plan.refusals_of(done.status)) == ()
