"""The web view's page data (cli/models/ui/pages.py): pure functions of the watch cache's snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

from modelversioning.api.wire import ARTIFACT_DELETED_ANNOTATION, REVOKED_ANNOTATION
from modelversioning.cli.models.ui import pages
from ui_objects import approval, ep, mv, snapshot

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CANARY = {
    "canary": {
        "variant": "canary",
        "baseline": "stable",
        "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {}}],
        "analysis": {
            "interval": "30s",
            "metrics": [{"name": "error-rate", "template": "error-rate", "max": 0.05},
                        {"name": "latency", "template": "latency", "maxIncreaseOverBaseline": 5.0}],
        },
    }
}  # fmt: skip
MEASURED = [
    {"metric": "error-rate", "at": "2026-12-07T11:00:00Z", "verdict": "Passed", "value": 0.01},
    {"metric": "error-rate", "at": "2026-12-07T11:00:30Z", "verdict": "Failed", "value": 0.08},
    {"metric": "latency", "at": "2026-12-07T11:00:00Z", "verdict": "Passed", "value": 21.0, "baseline": 20.0},
]
ROLLOUT = {"phase": "Paused", "step": 1, "message": "paused: inconclusive", "measurements": MEASURED,
           "target": "x", "weights": {"canary": 10, "stable": 90}}  # fmt: skip


def fleet():
    versions = [
        mv("fraud", "1.0.0", served_by=[{"endpoint": "fraud", "variant": "stable", "weight": 90}]),
        mv("fraud", "1.1.0", "staging",
           conditions=[{"type": "StageTransition", "status": "False", "reason": "ApprovalRequired",
                        "message": "needs 2 approvals, has 1 (alice)"}]),
        mv("fraud", "0.9.0", "archived", verified="False"),
        mv("churn", "2.0.0", "production", annotations={REVOKED_ANNOTATION: "CVE-2026-1"}),
        mv("churn", "2.1.0", "shadow-eval"),  # a Model's own stage
    ]  # fmt: skip
    endpoints = [
        ep("fraud", "fraud", [("stable", "1.0.0", 100), ("canary", "1.1.0", 0)],
           effective={"stable": 90, "canary": 10}, strategy=CANARY, rollout=ROLLOUT),
        ep("churn", "churn", [("stable", "2.0.0", 100)], ready="False"),
        ep("manual", "churn", [("stable", "2.0.0", 0), ("canary", "2.1.0", 100)], strategy=CANARY,
           rollout={**ROLLOUT, "phase": "Progressing", "step": 3, "message": "paused until promoted"}),
        ep("timed", "churn", [("stable", "2.0.0", 0), ("canary", "2.1.0", 100)], strategy=CANARY,
           rollout={**ROLLOUT, "phase": "Progressing", "step": 1, "message": "step 1: pause, 30s left"}),
    ]  # fmt: skip
    return snapshot(versions, endpoints)


def test_fleet_groups_models_with_stages_endpoints_and_the_live_split():
    page = pages.fleet_page(fleet(), NOW)
    by = {m["model"]: m for m in page["models"]}
    assert list(by) == ["churn", "fraud"]
    assert by["fraud"]["stages"] == [
        ("staging", ["1.1.0"]),
        ("production", ["1.0.0"]),
        ("archived", ["0.9.0"]),
    ]
    (e,) = by["fraud"]["endpoints"]
    # the live split is the route's (status.effectiveWeights), not the declared 100/0
    assert e["split"] == [
        {"variant": "stable", "version": "1.0.0", "weight": 90},
        {"variant": "canary", "version": "1.1.0", "weight": 10},
    ]
    assert e["health"]["ok"] is True
    assert e["rollout"]["phase"] == "Paused" and e["rollout"]["step"] == 1 and e["rollout"]["steps"] == 4
    churn = {e["name"]: e for e in by["churn"]["endpoints"]}
    health = {"ok": False, "text": "Progressing", "why": "waiting for pods", "tone": "warn"}  # not Stalled
    assert churn["churn"]["health"] == health
    assert churn["churn"]["rollout"] is None and churn["manual"]["rollout"]["phase"] == "Progressing"


def test_fleet_lists_what_needs_attention():
    got = {
        (a.get("model"), a.get("version") or a.get("endpoint"), a["what"]) for a in pages.attention(fleet())
    }
    assert got == {
        ("fraud", "0.9.0", "verification failed"),
        ("fraud", "1.1.0", "approval pending"),
        ("churn", "2.0.0", "revoked"),
        ("churn", "churn", "endpoint Progressing"),
        ("fraud", "fraud", "rollout Paused"),
        ("churn", "manual", "rollout waits for promotion"),  # a pause without duration, not "timed"
    }
    first = pages.attention(fleet())[0]
    assert first["kind"] == "bad"  # failures first


def test_model_page_versions_lineage_graph_history_and_retention():
    serving = [{"endpoint": "fraud", "variant": "stable", "from": "2026-12-01T10:05:00Z", "to": None}]
    old_serving = [{"endpoint": "fraud", "variant": "stable", "from": "2026-11-01T00:00:00Z",
                    "to": "2026-12-01T10:05:00Z"}]  # fmt: skip
    history = [{"from": "staging", "to": "production", "at": "2026-12-01T10:04:00Z", "actor": "alice",
                "reason": "canary green"}]  # fmt: skip
    snap = snapshot(
        [
            mv("fraud", "1.0.0", serving=serving, history=history, dataset="tx", commit="abc123"),
            mv(
                "fraud",
                "0.9.0",
                "archived",
                serving=old_serving,
                dataset="tx",
                commit="def456",
                annotations={ARTIFACT_DELETED_ANNOTATION: "{}"},
            ),
            mv("other", "1.0.0"),
        ],  # fmt: skip
        [ep("fraud", "fraud", [("stable", "1.0.0", 100)])],
        approvals=[approval("fraud", "1.0.0", "production", "alice"), approval("fraud", "0.9.0", "x", "bob")],
    )
    page = pages.model_page(snap, "ml", "fraud", NOW)
    assert [v["version"] for v in page["versions"]] == ["1.0.0", "0.9.0"]
    v1, v0 = page["versions"]
    assert [a["approver"] for a in v1["approvals"]] == ["alice"]
    assert v1["retention"] == "live" and v0["retention"] == "archived, artifact deleted"
    assert v1["keyMetrics"] == {"auc": 0.9}
    assert v1["signature"].startswith("not checked")
    g = page["graph"]
    ids = {n["id"] for n in g["nodes"]}
    assert {"dataset:tx@2026-11", "commit:abc123", "commit:def456", "v:1.0.0", "v:0.9.0", "e:fraud"} == ids
    served = {(e["from"], e["to"]): e["periods"] for e in g["edges"]}
    assert served[("v:1.0.0", "e:fraud")] == ["2026-12-01T10:05:00Z - now"]
    assert served[("v:0.9.0", "e:fraud")] == ["2026-11-01T00:00:00Z - 2026-12-01T10:05:00Z"]
    assert served[("dataset:tx@2026-11", "v:1.0.0")] == []
    # every edge starts at the right edge of its source box and ends at the left edge of its target
    nodes = {n["id"]: n for n in g["nodes"]}
    for e in g["edges"]:
        assert e["x1"] == nodes[e["from"]]["x"] + g["boxW"] and e["x2"] == nodes[e["to"]]["x"]
    assert [(h["version"], h["to"], h["actor"]) for h in page["history"]] == [
        ("1.0.0", "production", "alice")
    ]
    assert pages.model_page(snap, "ml", "nope", NOW)["exists"] is False
    assert pages.model_page(snap, "other-ns", "fraud", NOW)["versions"] == []  # namespaces stay apart


def test_endpoint_page_split_timeline_plots_and_past_rollouts():
    past = [{"endpoint": "fraud", "at": "2026-11-30T00:00:00Z", "result": "Succeeded", "message": "ok"},
            {"endpoint": "elsewhere", "at": "2026-11-29T00:00:00Z", "result": "Failed"}]  # fmt: skip
    snap = snapshot(
        [mv("fraud", "1.0.0", rollouts=past), mv("fraud", "1.1.0", "staging")],
        [ep("fraud", "fraud", [("stable", "1.0.0", 100), ("canary", "1.1.0", 0)],
            effective={"stable": 90, "canary": 10}, strategy=CANARY, rollout=ROLLOUT)],
    )  # fmt: skip
    page = pages.endpoint_page(snap, "ml", "fraud")
    variants = {v["name"]: v for v in page["status"]["variants"]}
    assert variants["canary"]["effectiveWeight"] == 10 and variants["canary"]["desiredWeight"] == 0
    assert [s["state"] for s in page["timeline"]] == ["done", "current", "next", "next"]
    assert [s["text"] for s in page["timeline"]] == ["set weight 10%", "pause 1m", "set weight 50%",
                                                      "pause until promoted"]  # fmt: skip
    plots = {p["metric"]: p for p in page["plots"]}
    er = plots["error-rate"]
    assert [t["label"] for t in er["thresholds"]] == ["max"] and er["thresholds"][0]["value"] == 0.05
    assert [p["verdict"] for p in er["points"]] == ["Passed", "Failed"]
    # the failed value (0.08) is above the max line (smaller y), the passed one (0.01) below it
    assert er["points"][1]["y"] < er["thresholds"][0]["y"] < er["points"][0]["y"]
    lat = plots["latency"]
    assert lat["thresholds"] == [
        {"label": "baseline + max increase", "value": 25.0, "y": lat["thresholds"][0]["y"]}
    ]
    assert lat["baseline"]
    assert [r["result"] for r in page["pastRollouts"]] == ["Succeeded"]
    assert pages.endpoint_page(snap, "ml", "nope")["exists"] is False


def test_endpoint_page_answers_which_version_at_a_moment_like_which_at():
    history = {"changes": [
        {"at": "2026-12-07T10:00:00.000Z", "cause": "initial", "generation": 1,
         "split": [{"variant": "stable", "version": "1.0.0", "digest": "sha256:aa", "weight": 100}]},
        {"at": "2026-12-07T11:00:00.000Z", "cause": "spec", "generation": 2,
         "split": [{"variant": "canary", "version": "1.1.0", "digest": "sha256:bb", "weight": 100}]},
    ]}  # fmt: skip
    snap = snapshot([], [ep("fraud", "fraud", [("stable", "1.0.0", 100)], route_history=history)])
    at = pages.endpoint_page(snap, "ml", "fraud", "2026-12-07T10:30:00Z", now=NOW.timestamp())["which"]
    assert [(v["variant"], v["version"], v["weight"]) for v in at["variants"]] == [("stable", "1.0.0", 100)]
    later = pages.endpoint_page(snap, "ml", "fraud", "-30m", now=NOW.timestamp())["which"]
    assert [v["version"] for v in later["variants"]] == ["1.1.0"]
    before = pages.endpoint_page(snap, "ml", "fraud", "2026-12-07T09:00:00Z", now=NOW.timestamp())["which"]
    assert "before the route history" in before["error"]
    assert "not a time" in pages.endpoint_page(snap, "ml", "fraud", "yesterday", now=0)["which"]["error"]
    for far in ("-999999999h", "-99999999999999999999h"):  # a date no clock prints: an answer, not a 500
        far_page = pages.endpoint_page(snap, "ml", "fraud", far, now=NOW.timestamp())
        assert "before 1970" in far_page["which"]["error"]


def test_diff_page_side_by_side_and_missing_versions():
    a = mv("fraud", "1.0.0", metrics={"auc": 0.9})
    b = mv("fraud", "1.1.0", metrics={"auc": 0.95}, commit="new")
    page = pages.diff_page(snapshot([a, b]), "ml", "fraud", "1.0.0", "1.1.0")
    rows = {(r["section"], r["key"]): r for r in page["diff"]["rows"]}
    assert rows[("metrics", "auc")]["delta"] == 0.05
    assert rows[("lineage", "codeCommit")]["change"] == "*"
    assert page["versions"] == ["1.0.0", "1.1.0"]
    missing = pages.diff_page(snapshot([a]), "ml", "fraud", "1.0.0", "9.9.9")
    assert missing["diff"] is None and missing["missing"] == ["9.9.9"]
