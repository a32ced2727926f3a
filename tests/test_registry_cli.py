"""`kubectl models search | lineage | approve`: the pure views, and the commands' output formats."""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from modelversioning.cli.models.commands.registry import parse_where
from modelversioning.cli.models.registry_views import Filters, approval_body, lineage_view, search_rows
from modelversioning.cli.models.render import to_text
from modelversioning.cli.models.render_registry import lineage_renderable, search_table

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
