"""ModelVersion controller on the real control plane: verification, gated stages, audit history,
deletion safety."""

from __future__ import annotations

import http.server
import threading
from functools import partial

import pytest

from helpers import Objects, cond_is, condition, make_artifact, model_endpoint, model_version, wait_for
from modelversioning.handlers.version_annotations import UNATTRIBUTED


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


def test_version_becomes_verified(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "fraud-detector", "2.3.8")
    objs.create(model_version("fraud-detector", "2.3.8", uri, sha))
    mv = wait_for(
        lambda: (m := objs.mv("fraud-detector-v2.3.8")) and cond_is(m, "ArtifactVerified", "True") and m,
        30,
        "ArtifactVerified=True",
    )
    st = mv["status"]
    assert st["artifact"]["digest"] == sha
    assert st["artifact"]["sizeBytes"] == len(b"fraud-detector 2.3.8 weights\n")
    assert st["stage"] == "candidate"
    assert st["history"][0]["to"] == "candidate" and st["history"][0]["reason"] == "Registered"
    assert st["observedGeneration"] == mv["metadata"]["generation"]
    ready = condition(mv, "Ready")
    assert ready and ready["status"] == "True"


def test_tampered_artifact_is_caught_and_never_reaches_staging(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "fraud-detector", "2.4.1")
    # Someone "fixes" the model by overwriting the artifact in place after registration.
    make_artifact(artifact_root, "fraud-detector", "2.4.1", content=b"overwritten weights\n")
    objs.create(model_version("fraud-detector", "2.4.1", uri, sha))
    mv = wait_for(
        lambda: (
            (m := objs.mv("fraud-detector-v2.4.1"))
            and cond_is(m, "ArtifactVerified", "False", "DigestMismatch")
            and m
        ),
        30,
        "DigestMismatch",
    )
    assert sha in condition(mv, "ArtifactVerified")["message"]
    objs.patch_mv("fraud-detector-v2.4.1", {"spec": {"stage": "staging"}})
    mv = wait_for(
        lambda: (m := objs.mv("fraud-detector-v2.4.1")) and cond_is(m, "StageTransition", "False") and m,
        30,
        "StageTransition=False",
    )
    assert mv["status"]["stage"] == "candidate"
    assert condition(mv, "StageTransition")["reason"] == "ArtifactNotVerified"
    reasons = wait_for(
        lambda: (
            (r := {e.reason: e.type for e in objs.events("fraud-detector-v2.4.1")})
            and "StageTransitionBlocked" in r
            and r
        ),
        10,
        "Events",
    )
    assert reasons.get("DigestMismatch") == "Warning"
    assert reasons.get("StageTransitionBlocked") == "Warning"
    assert "artifact" not in mv["status"]


def test_missing_artifact_is_reported_and_retried(objs, artifact_root):
    uri = (artifact_root / "nope" / "model.bin").as_uri()
    objs.create(model_version("ghost", "1.0.0", uri, "b" * 64))
    mv = wait_for(
        lambda: (m := objs.mv("ghost-v1.0.0")) and cond_is(m, "ArtifactVerified", "False", "NotFound") and m,
        30,
        "NotFound",
    )
    msg = condition(mv, "ArtifactVerified")["message"]
    assert "verification is retried" in msg, msg
    # retries are Events (a series per message: a repeat raises the count), not status writes (24.2)
    rv = mv["metadata"]["resourceVersion"]
    wait_for(
        lambda: sum(e.count or 1 for e in objs.events("ghost-v1.0.0") if e.reason == "NotFound") >= 2,
        60,
        "a second attempt, reported as a Warning Event",
    )
    assert objs.mv("ghost-v1.0.0")["metadata"]["resourceVersion"] == rv  # the retry wrote no status


def test_refused_uri_gets_a_condition_not_a_fetch(objs):
    objs.create(model_version("meta", "1.0.0", "http://169.254.169.254/latest/meta-data/", "c" * 64))
    mv = wait_for(
        lambda: (m := objs.mv("meta-v1.0.0")) and cond_is(m, "ArtifactVerified", "False", "URIRefused") and m,
        30,
        "URIRefused",
    )
    assert "169.254.169.254" in condition(mv, "ArtifactVerified")["message"]


def test_blocked_promotion_lineage_incomplete(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "churn", "1.0.0")
    objs.create(model_version("churn", "1.0.0", uri, sha, stage="production", complete=False))
    mv = wait_for(
        lambda: (
            (m := objs.mv("churn-v1.0.0"))
            and cond_is(m, "StageTransition", "False", "LineageIncomplete")
            and m
        ),
        30,
        "LineageIncomplete",
    )
    # staging was reachable (verified); production needs complete lineage
    assert mv["status"]["stage"] == "staging"
    msg = condition(mv, "StageTransition")["message"]
    assert "lineage.author" in msg and "lineage.trainedAt" in msg


def test_full_walk_records_history_with_actor_and_reason(objs, artifact_root, cluster, kube, namespace):
    # each user makes their own request: the admission policy requires requested-by to name the
    # user who makes the change (e2e/admission.py installs the chart's policies)
    from admission import as_user, grant_models_editor

    def act_as(who: str) -> Objects:
        grant_models_editor(cluster, namespace, who)
        return Objects(as_user(kube, who), namespace)

    uri, sha = make_artifact(artifact_root, "ranker", "1.2.0")
    objs.create(model_version("ranker", "1.2.0", uri, sha))
    wait_for(lambda: cond_is(objs.mv("ranker-v1.2.0"), "ArtifactVerified", "True"), 30, "verified")
    for stage, who, why in [
        ("staging", "alice@example.com", "offline eval passed"),
        ("production", "bob@example.com", "canary looked good"),
        ("archived", "carol@example.com", "replaced by 1.3.0"),
    ]:
        act_as(who).patch_mv(
            "ranker-v1.2.0",
            {
                "metadata": {
                    "annotations": {
                        "modelversioning.io/requested-by": who,
                        "modelversioning.io/requested-stage": stage,
                        "modelversioning.io/reason": why,
                    }
                },
                "spec": {"stage": stage},
            },
        )
        wait_for(
            lambda s=stage: objs.mv("ranker-v1.2.0").get("status", {}).get("stage") == s, 30, f"stage {stage}"
        )
    hist = objs.mv("ranker-v1.2.0")["status"]["history"]
    assert [(h.get("from"), h["to"]) for h in hist] == [
        (None, "candidate"),
        ("candidate", "staging"),
        ("staging", "production"),
        ("production", "archived"),
    ]
    assert [h["actor"] for h in hist[1:]] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert hist[2]["reason"] == "canary looked good"
    assert all(h["at"].endswith("Z") for h in hist)
    # archived -> production is not an edge; the operator walks the allowed path archived -> staging ->
    # production, gating and recording each hop
    act_as("dave@example.com").patch_mv(
        "ranker-v1.2.0",
        {
            "metadata": {
                "annotations": {
                    "modelversioning.io/requested-by": "dave@example.com",
                    "modelversioning.io/requested-stage": "production",
                    "modelversioning.io/reason": "restore",
                }
            },
            "spec": {"stage": "production"},
        },
    )
    mv = wait_for(
        lambda: (m := objs.mv("ranker-v1.2.0")) and m["status"]["stage"] == "production" and m,
        30,
        "restored to production",
    )
    hist = mv["status"]["history"]
    assert [(h.get("from"), h["to"], h["actor"]) for h in hist[4:]] == [
        ("archived", "staging", "dave@example.com"),
        ("staging", "production", "dave@example.com"),
    ]


def test_disallowed_transition_is_blocked(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "pricing", "1.0.0")
    objs.create(model_version("pricing", "1.0.0", uri, sha, stage="staging"))
    wait_for(lambda: objs.mv("pricing-v1.0.0").get("status", {}).get("stage") == "staging", 30, "staging")
    objs.patch_mv("pricing-v1.0.0", {"spec": {"stage": "candidate"}})
    mv = wait_for(
        lambda: (
            (m := objs.mv("pricing-v1.0.0"))
            and cond_is(m, "StageTransition", "False", "TransitionNotAllowed")
            and m
        ),
        30,
        "blocked",
    )
    assert mv["status"]["stage"] == "staging"
    assert "staging -> candidate is not an allowed transition" in condition(mv, "StageTransition")["message"]


def test_actor_without_annotation_is_unattributed_never_the_field_manager(objs, artifact_root):
    """The cluster enforces the chart's admission policies (settings admission.enforced): only the
    operator's identity (the harness user here) may change spec.stage without naming itself, and the
    field manager (a name the client chooses) is never recorded as the actor."""
    uri, sha = make_artifact(artifact_root, "scorer", "0.1.0")
    objs.create(model_version("scorer", "0.1.0", uri, sha))
    wait_for(lambda: cond_is(objs.mv("scorer-v0.1.0"), "ArtifactVerified", "True"), 30, "verified")
    objs.patch_mv("scorer-v0.1.0", {"spec": {"stage": "staging"}})
    mv = wait_for(
        lambda: (m := objs.mv("scorer-v0.1.0")) and m.get("status", {}).get("stage") == "staging" and m,
        30,
        "staging",
    )
    assert mv["status"]["history"][-1]["actor"] == UNATTRIBUTED


def test_deletion_is_held_while_served(objs, artifact_root):
    uri, sha = make_artifact(artifact_root, "held", "1.0.0")
    objs.create(model_version("held", "1.0.0", uri, sha, stage="production"))
    objs.create(
        model_endpoint("held", "held", [{"name": "main", "version": "1.0.0", "weight": 100}], router="none")
    )
    mv = wait_for(
        lambda: (
            (m := objs.mv("held-v1.0.0"))
            and "modelversioning.io/in-use" in (m["metadata"].get("finalizers") or [])
            and m.get("status", {}).get("servedBy")
            and m
        ),
        60,
        "in-use finalizer and servedBy",
    )
    assert mv["status"]["servedBy"][0]["endpoint"] == "held"
    objs.delete_mv("held-v1.0.0")
    mv = wait_for(
        lambda: (m := objs.mv("held-v1.0.0")) and cond_is(m, "Deleting", "False", "InUse") and m,
        30,
        "deletion held",
    )
    assert "held" in condition(mv, "Deleting")["message"]
    wait_for(
        lambda: any(e.reason == "DeletionHeld" for e in objs.events("held-v1.0.0")), 10, "DeletionHeld Event"
    )
    objs.delete_mep("held")

    def gone():
        try:
            objs.mv("held-v1.0.0")
        except Exception as e:  # noqa: BLE001
            return getattr(e, "status", None) == 404
        return False

    wait_for(gone, 60, "ModelVersion deleted once no endpoint uses it")


def test_http_artifact_verified(objs, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"served over http\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        import hashlib

        sha = hashlib.sha256(b"served over http\n").hexdigest()
        uri = f"http://127.0.0.1:{srv.server_address[1]}/model.bin"
        objs.create(model_version("webmodel", "1.0.0", uri, sha))
        wait_for(
            lambda: cond_is(objs.mv("webmodel-v1.0.0"), "ArtifactVerified", "True"), 30, "verified over http"
        )
    finally:
        srv.shutdown()
