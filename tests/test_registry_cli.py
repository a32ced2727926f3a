"""`kubectl models search | lineage | approve`: the pure views, and the commands' output formats."""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from modelversioning.cli.models.commands.registry import parse_where
from modelversioning.cli.models.registry_views import (
    Filters,
    approval_body,
    compare_view,
    lineage_view,
    search_rows,
)
from modelversioning.cli.models.render_registry import compare_table, lineage_renderable, search_table
from modelversioning.cli.models.terminal import to_text

SHA = "c" * 64


def mv(
    version,
    stage,
    *,
    author="jane@acme.com",
    auc=0.9,
    dataset=("tx", "2024-06", None),
    commit="3f9c2a1d",
    tags=(),
    ns="a",
):
    return {
        "metadata": {
            "name": f"fraud-v{version}",
            "namespace": ns,
            "labels": {f"tag.modelversioning.io/{t}": "true" for t in tags},
        },
        "spec": {
            "model": "fraud",
            "version": version,
            "artifact": {"uri": f"s3://m/{version}", "sha256": SHA},
            "lineage": {
                "codeCommit": commit,
                "codeRepository": "https://git/x",
                "dataset": {
                    k: val for k, val in zip(("name", "version", "sha256"), dataset, strict=True) if val
                },
                "author": author,
                "hyperparameters": {"lr": 0.1},
            },
            "metrics": {"auc": auc, "latency_p99_ms": 12.0},
        },
        "status": {"stage": stage},
    }


DS_SHA = "0123456789abcdef" * 4
FLEET = [
    mv("1.0.0", "archived", auc=0.91, dataset=("tx", None, DS_SHA)),
    mv("1.1.0", "production", auc=0.947, tags=("best-for-fraud-detection",)),
    mv(
        "1.2.0", "staging", auc=0.95, author="bob@acme.com", dataset=("tx", "2024-09", None), commit="abcdef1"
    ),
    mv("2.0.0", "candidate", auc=0.96, ns="b"),
]


@pytest.mark.parametrize(
    "filters,versions",
    [
        (Filters(), ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]),
        (Filters(stage="production"), ["1.1.0"]),
        (Filters(tags=("best-for-fraud-detection",)), ["1.1.0"]),
        (Filters(author="BOB"), ["1.2.0"]),
        (Filters(dataset="tx@2024-09"), ["1.2.0"]),
        (Filters(dataset="tx"), ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]),
        (Filters(dataset=f"tx@{DS_SHA}"), ["1.0.0"]),  # the dataset's digest
        (Filters(dataset=f"tx@sha256:{DS_SHA[:12].upper()}"), ["1.0.0"]),  # a prefix, any case
        (Filters(dataset="tx@0123456"), []),  # too short a prefix to mean a digest
        (Filters(dataset=f"other@{DS_SHA}"), []),
        (Filters(commit="abc"), ["1.2.0"]),
        (Filters(where=(parse_where("auc>=0.947"),)), ["1.1.0", "1.2.0", "2.0.0"]),
        (Filters(where=(parse_where("auc>0.947"), parse_where("latency_p99_ms < 20"))), ["1.2.0", "2.0.0"]),
        (Filters(where=(parse_where("f1>=0.5"),)), []),  # a metric it does not have never matches
        (Filters(model="other"), []),
    ],
)
def test_search_filters(filters, versions):
    assert [r["version"] for r in search_rows(FLEET, filters)] == versions


def test_search_rows_and_table():
    rows = search_rows(FLEET, Filters(stage="production"))
    assert rows == [
        {
            "namespace": "a",
            "model": "fraud",
            "version": "1.1.0",
            "stage": "production",
            "author": "jane@acme.com",
            "dataset": "tx@2024-06",
            "codeCommit": "3f9c2a1d",
            "metrics": {"auc": 0.947, "latency_p99_ms": 12.0},
            "served": {},
            "tags": ["best-for-fraud-detection"],
        }
    ]
    text = to_text(search_table(rows, ["auc"]))
    assert (
        "1.1.0" in text
        and "auc=0.947" in text
        and "latency" not in text
        and "best-for-fraud-detection" in text
    )


@pytest.mark.parametrize("bad", ["auc", "auc >> 1", "auc>=high", ">=0.9"])
def test_where_refuses_what_it_cannot_read(bad):
    with pytest.raises(typer.BadParameter):
        parse_where(bad)


def test_lineage_view_tells_the_whole_story():
    v = mv("1.1.0", "production")
    v["metadata"]["annotations"] = {}
    v["status"].update(
        {
            "history": [
                {"to": "candidate", "at": "t0", "actor": "ci", "reason": "Registered"},
                {
                    "from": "staging",
                    "to": "production",
                    "at": "t2",
                    "actor": "jane",
                    "reason": "ok",
                    "approvedBy": ["alice", "bob"],
                },
            ],
            "servedBy": [{"endpoint": "fraud", "variant": "stable", "weight": 90}],
            "rollouts": [
                {"endpoint": "fraud", "result": "Succeeded", "at": "t3", "message": "analysis passed"}
            ],
            "artifact": {"digest": SHA, "verifiedAt": "t1"},
        }
    )
    approvals = [
        {
            "metadata": {"creationTimestamp": "t1"},
            "spec": {"stage": "production", "approver": "bob", "sha256": SHA},
        },
        {
            "metadata": {"creationTimestamp": "t0"},
            "spec": {"stage": "production", "approver": "alice", "sha256": SHA},
        },
        {
            "metadata": {"creationTimestamp": "t0"},
            "spec": {"stage": "production", "approver": "eve", "sha256": "d" * 64},
        },
    ]
    model = {
        "status": {"versions": [{"version": "1.1.0", "digest": SHA, "firstSeen": "2024-01-01T00:00:00Z"}]}
    }
    view = lineage_view(v, approvals, model)
    assert view["producedBy"]["codeCommit"] == "3f9c2a1d" and view["artifact"]["verifiedAt"] == "t1"
    assert [a["approver"] for a in view["approvals"]] == ["alice", "bob"]  # eve approved other weights
    assert view["registry"] == {"firstSeen": "2024-01-01T00:00:00Z", "digest": SHA, "sameDigest": True}
    assert view["endpoints"] == [
        {"endpoint": "fraud", "at": "t3", "what": "rollout Succeeded"},
        {"endpoint": "fraud", "at": "now", "what": "variant stable at 90%"},
    ]  # an object from before status.servingHistory: where it is served now
    assert view["stages"][1]["approvedBy"] == ["alice", "bob"]
    text = to_text(lineage_renderable(view))
    for needle in (
        "https://git/x @ 3f9c2a1d",
        "tx 2024-06",
        "alice,bob",
        "rollout Succeeded",
        "2024-01-01T00:00:00Z",
    ):
        assert needle in text, needle
    # -o json / yaml carry the same data
    assert json.loads(json.dumps(view)) == view and yaml.safe_load(yaml.safe_dump(view)) == view


def test_lineage_shows_serving_periods_of_a_version_swapped_out():
    v = mv("1.1.0", "archived")
    v["status"].update(
        {
            "servingHistory": [
                {
                    "endpoint": "fraud",
                    "variant": "stable",
                    "from": "2024-02-01T00:00:00Z",
                    "to": "2024-05-01T00:00:00Z",
                },
                {"endpoint": "shadow", "variant": "m", "from": "2024-04-01T00:00:00Z", "mirror": True},
            ],
            "servedBy": [
                {"endpoint": "shadow", "variant": "m", "weight": 0, "mirror": True},
                {"endpoint": "fraud", "variant": "old", "weight": 0},
            ],
            "rollouts": [{"endpoint": "fraud", "result": "Succeeded", "at": "2024-02-01T00:00:00Z"}],
        }
    )
    view = lineage_view(v, [], None)
    assert view["endpoints"] == [
        {"endpoint": "fraud", "at": "2024-02-01T00:00:00Z", "what": "rollout Succeeded"},
        {
            "endpoint": "fraud",
            "at": "2024-02-01T00:00:00Z",
            "until": "2024-05-01T00:00:00Z",
            "what": "served by variant stable",
        },
        {
            "endpoint": "shadow",
            "at": "2024-04-01T00:00:00Z",
            "until": "now",
            "what": "mirrored by variant m, at 0% now",
        },
        {"endpoint": "fraud", "at": "now", "what": "variant old at 0%"},  # deployed, no traffic
    ]
    text = to_text(lineage_renderable(view))
    assert "2024-05-01T00:00:00Z" in text and "served by variant stable" in text


def test_approval_is_named_per_user_and_stage():
    served = "d" * 64
    a = approval_body("fraud", "1.1.0", SHA, "production", "alice@acme.com", "looks right", served, ["devs"])
    b = approval_body("fraud", "1.1.0", SHA, "production", "bob@acme.com", None, served)
    assert a["spec"] == {
        "model": "fraud", "version": "1.1.0", "sha256": SHA, "servingDigest": served, "stage": "production",
        "approver": "alice@acme.com", "approverGroups": ["devs"], "comment": "looks right",
    }  # fmt: skip
    assert (
        a["metadata"]["name"].startswith("fraud-v1.1.0-production-")
        and a["metadata"]["name"] != b["metadata"]["name"]
    )
    assert "comment" not in b["spec"] and "approverGroups" not in b["spec"]
    # the same user approving a re-created version (another serving digest) makes a new object
    again = approval_body("fraud", "1.1.0", SHA, "production", "alice@acme.com", None, "e" * 64)
    assert again["metadata"]["name"] != a["metadata"]["name"]


# ---- the production record: search --where served.<figure>, compare ----------------------------


def served(version, stage, *periods):
    """A version whose status.servingHistory holds these summaries."""
    body = mv(version, stage)
    body["status"]["servingHistory"] = [
        {
            "endpoint": "fraud",
            "variant": f"v{i}",
            "from": f"2026-12-0{i + 1}T10:00:00Z",
            **({"production": p} if p else {}),
        }
        for i, p in enumerate(periods)
    ]
    return body


def summary(requests, errors, **more):
    return {
        "source": "traefik",
        "requests": requests,
        "errors": errors,
        "errorRatio": errors / requests,
        **more,
    }


PROD = [
    served("1.0.0", "archived", summary(1000, 2, final=True), summary(3000, 2, final=True)),  # 0.1 %
    served("1.1.0", "staging", summary(1000, 50, final=True)),  # 5 %
    served("1.2.0", "candidate", {"source": "traefik", "incomplete": "traefik: Prometheus unreachable"}),
    served("1.3.0", "candidate"),  # served, nothing summarised yet
]


@pytest.mark.parametrize(
    "where,versions",
    [
        ("served.errorRatio<=0.01", ["1.0.0"]),
        ("served.errorRatio>0.01", ["1.1.0"]),
        ("served.requests>=1000", ["1.0.0", "1.1.0"]),
        ("served.requests>=0", ["1.0.0", "1.1.0"]),  # unknown is not 0: 1.2.0 and 1.3.0 never match
        ("served.latencyP99Seconds<=1", []),
    ],
)
def test_search_where_reads_the_production_record(where, versions):
    assert [r["version"] for r in search_rows(PROD, Filters(where=(parse_where(where),)))] == versions


def test_compare_shows_versions_side_by_side_offline_and_in_production():
    view = compare_view("fraud", PROD, ("1.1.0", "1.0.0", "1.2.0"))
    assert [r["version"] for r in view["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]
    old, worse, down = view["versions"]
    assert old["production"] == {"requests": 4000.0, "errors": 4.0, "errorRatio": 0.001}
    assert worse["production"]["errorRatio"] == 0.05 and worse["metrics"]["auc"] == 0.9
    assert [p["requests"] for p in old["periods"]] == [1000, 3000]
    assert down["production"] == {} and down["incomplete"] == [
        "fraud/v0 from 2026-12-01T10:00:00Z: traefik: Prometheus unreachable"
    ]
    text = to_text(compare_table(view))
    lines = text.splitlines()
    assert "ERRORS" in lines[0] and "REQUESTS" in lines[0] and "auc" in lines[0]
    assert "0.10%" in lines[1] and "4000" in lines[1]
    assert "5.00%" in lines[2]
    assert "1.2.0" in lines[3] and "0.00%" not in lines[3]  # unknown is "-", never 0
    assert "1.2.0: incomplete: fraud/v0" in text
    assert json.loads(json.dumps(view)) == view  # -o json


def test_compare_names_the_versions_that_are_not_there():
    with pytest.raises(ValueError, match="has no version 9.9.9"):
        compare_view("fraud", PROD, ("1.0.0", "9.9.9"))
    assert compare_view("other", PROD) == {"model": "other", "versions": []}


def test_compare_command_prints_json_and_refuses_an_unknown_version(monkeypatch):
    from typer.testing import CliRunner

    from modelversioning.cli.kubectl_models import app
    from modelversioning.cli.models import context

    class Listing:
        namespace = "a"

        def list(self, res, **kw):
            return PROD

    monkeypatch.setattr(context, "Cluster", lambda *a, **k: Listing())
    r = CliRunner().invoke(app, ["compare", "fraud", "1.0.0", "1.1.0", "-o", "json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert [(v["version"], v["production"]["errorRatio"]) for v in got["versions"]] == [
        ("1.0.0", 0.001),
        ("1.1.0", 0.05),
    ]
    r = CliRunner().invoke(app, ["compare", "fraud", "7.0.0"])
    assert r.exit_code == 1 and "has no version 7.0.0" in r.output
    r = CliRunner().invoke(app, ["search", "--where", "served.errorRatio<=0.01", "-o", "json"])
    assert r.exit_code == 0 and [v["version"] for v in json.loads(r.output)] == ["1.0.0"]
