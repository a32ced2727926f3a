"""The benchmark's count of the operator's writes (bench/writes.py): audit-log lines and listed Events
in, writes by object kind and cause out, without a cluster."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import writes  # noqa: E402

OP = "system:serviceaccount:mv-system:mv-operator"


def audit(
    verb: str,
    resource: str,
    sub: str = "",
    user: str = OP,
    audit_id: str = "",
    stage: str = "ResponseComplete",
) -> bytes:
    ref: dict[str, Any] = {"resource": resource, "namespace": "bench", "name": "x"}
    if sub:
        ref["subresource"] = sub
    ev = {"auditID": audit_id or f"{verb}-{resource}-{sub}-{user}", "stage": stage, "verb": verb,
          "user": {"username": user}, "objectRef": ref}  # fmt: skip
    return json.dumps(ev).encode()


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        pytest.param(
            [audit("patch", "modelversions", "status")],
            {("ModelVersion", "patch modelversions/status"): 1},
            id="status-patch",
        ),  # fmt: skip
        pytest.param(
            [audit("patch", "modelversions")], {("ModelVersion", "patch modelversions"): 1}, id="patch"
        ),
        pytest.param([audit("create", "deployments")], {("Deployment", "create deployments"): 1}, id="child"),
        pytest.param(
            [audit("get", "modelversions"), audit("watch", "pods"), audit("list", "events")],
            {},
            id="reads-are-not-writes",
        ),  # fmt: skip
        pytest.param([audit("patch", "modelversions", "status", user="admin")], {}, id="someone-else"),
        pytest.param(
            [audit("create", "events"), audit("patch", "events")], {}, id="events-counted-by-reason"
        ),
        pytest.param(
            [
                audit("patch", "models", "status", audit_id="a", stage="RequestReceived"),
                audit("patch", "models", "status", audit_id="a"),
                audit("patch", "models", "status", audit_id="b"),
            ],
            {("Model", "patch models/status"): 2},
            id="one-request-logged-per-stage-counts-once",
        ),  # fmt: skip
        pytest.param([b"", b"not json {", b'{"broken": '], {}, id="junk-lines"),
        pytest.param([audit("create", "widgets")], {("widgets", "create widgets"): 1}, id="unknown-resource"),
    ],
)
def test_audit_writes_by_kind_and_cause(lines: list[bytes], want: dict[tuple[str, str], int]) -> None:
    assert writes.audit_writes(lines, OP) == Counter(want)


def test_the_audit_logs_event_writes_are_the_cross_check() -> None:
    lines = [audit("create", "events", audit_id="1"), audit("create", "events", audit_id="1"),
             audit("patch", "events", audit_id="2"), audit("create", "events", user="kwok", audit_id="3"),
             audit("patch", "modelversions", audit_id="4")]  # fmt: skip
    assert writes.audit_event_writes(lines, OP) == 2


def event(kind: str, reason: str, count: int | None = 1, component: str = writes.OPERATOR_COMPONENT) -> dict:
    ev: dict[str, Any] = {
        "involvedObject": {"kind": kind},
        "reason": reason,
        "source": {"component": component},
    }
    if count is not None:
        ev["count"] = count
    return ev


def test_events_are_counted_by_kind_and_reason_as_often_as_they_were_written() -> None:
    listed = [
        event("ModelVersion", "StageChanged"),
        event("ModelVersion", "StageChanged"),
        event("ModelVersion", "NotFound", count=5),  # a POST and four PATCHes of its series
        event("ModelEndpoint", "TrafficShifted", count=None),  # no count: one write
        event("Deployment", "ScalingReplicaSet", component="deployment-controller"),  # not ours
        {
            "involvedObject": {"kind": "ModelVersion"},
            "reason": "X",
            "reportingComponent": "modelversioning-operator",
        },
    ]
    assert writes.event_counts(listed) == Counter({
        ("ModelVersion", "Event StageChanged"): 2,
        ("ModelVersion", "Event NotFound"): 5,
        ("ModelEndpoint", "Event TrafficShifted"): 1,
        ("ModelVersion", "Event X"): 1,
    })  # fmt: skip


def test_since_subtracts_what_was_there_before_and_never_goes_below_zero() -> None:
    before = Counter({("ModelVersion", "Event NotFound"): 3, ("ModelVersion", "Event Gone"): 2,
                      ("ModelVersion", "Event Expired"): 5})  # fmt: skip
    after = Counter({("ModelVersion", "Event NotFound"): 7, ("ModelEndpoint", "Event TrafficShifted"): 1,
                     ("ModelVersion", "Event Expired"): 1})  # fmt: skip
    assert writes.since(after, before) == Counter(
        {("ModelVersion", "Event NotFound"): 4, ("ModelEndpoint", "Event TrafficShifted"): 1}
    )


def test_summary_per_new_object() -> None:
    w = Counter({
        ("ModelVersion", "patch modelversions/status"): 12,
        ("ModelVersion", "Event StageChanged"): 10,
        ("ModelEndpoint", "patch modelendpoints/status"): 4,
        ("ModelEndpoint", "patch modelendpoints"): 2,
        ("Deployment", "create deployments"): 4,
        ("Service", "create services"): 4,
        ("VirtualService", "create virtualservices"): 2,
        ("Model", "create models"): 2,
        ("Model", "patch models/status"): 3,
    })  # fmt: skip
    s = writes.summary(w, {"ModelVersion": 10, "ModelEndpoint": 2})
    assert (s["total"], s["events"]) == (43, 10)
    assert s["per_new_version"] == 2.2 and s["registry_per_new_version"] == 0.5
    assert s["per_new_endpoint"] == 3.0 and s["children_per_new_endpoint"] == 5.0
    rows = {(r["kind"], r["cause"]): (r["writes"], r["per_object"]) for r in s["by_cause"]}
    assert rows[("ModelVersion", "patch modelversions/status")] == (12, 1.2)
    assert rows[("Deployment", "create deployments")] == (4, 2.0)  # per endpoint: its children
    assert rows[("Model", "create models")] == (2, None)  # no Model was created by the benchmark
    assert [r["writes"] for r in s["by_cause"]] == sorted((r["writes"] for r in s["by_cause"]), reverse=True)
    text = "\n".join(writes.lines(s))
    assert "per new ModelVersion 2.2 (+ 0.5 on its Model), per new ModelEndpoint 3.0 (+ 5.0 children)" in text
    assert "patch modelversions/status" in text


def test_summary_of_nothing_created() -> None:
    s = writes.summary(Counter(), {})
    assert s["total"] == 0 and s["per_new_version"] is None and s["by_cause"] == []


@pytest.mark.parametrize(
    ("cpu", "by_user", "want"),
    [
        (
            72.5,
            {"kube-controller-manager": 5768, "serviceaccount:mv-system:mv-operator": 4771, "admin": 1200},
            "kube-apiserver: 72.5 CPU s for 11739 writes = 6.18 ms per write (the operator's: 4771, 41 %)",
        ),
        (10.0, {}, "kube-apiserver CPU per write: n/a (no CPU figure or no writes logged)"),
        (None, {"admin": 3}, "kube-apiserver CPU per write: n/a (no CPU figure or no writes logged)"),
    ],
)
def test_apiserver_cost_line(cpu: float | None, by_user: dict[str, int], want: str) -> None:
    assert writes.apiserver_cost_line(cpu, by_user, "serviceaccount:mv-system:mv-operator") == want
