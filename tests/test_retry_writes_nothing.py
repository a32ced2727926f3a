"""A retry that changes nothing writes nothing: a version whose artifact store is unreachable, retried
with backoff, and an endpoint waiting for it. Two decisions for the same failing facts at other times
and attempts make byte-identical status, and the reconcilers skip the patch (the attempts are Events)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.version_facts import VerifierFacts, VerifyResult, VersionFacts, VersionPolicy
from modelversioning.domain.version_plan import decide
from test_endpoint_reconciler import NEW, NS, World, serving_one

T0 = datetime(2024, 7, 2, 10, 0, 0, tzinfo=UTC)
ERR = "https://models.example.com/m/2.4.0: FetchFailed: connection refused"


def version_status(
    prev: dict[str, Any], failures: int, age: float, at: datetime, msg: str = ERR
) -> dict[str, Any]:
    """The canary version's status as its reconciler decides it after `failures` failed attempts."""
    res = VerifyResult(R.FETCH_FAILED, msg, transient=True)
    f = VersionFacts(
        name="m-v2.4.0",
        generation=1,
        status=prev,
        model="m",
        version="2.4.0",
        digest=NEW,
        shown_uri="https://models.example.com/m/2.4.0",
        verifier=VerifierFacts(result=res, result_generation=1, failures=failures, age=age, fresh=True),
    )
    plan = decide(f, VersionPolicy(), at)
    assert plan.status is not None
    return plan.status


def test_the_versions_status_is_byte_identical_across_attempts_and_time() -> None:
    first = version_status({}, 1, 0.0, T0)
    again = [
        version_status(first, 2, 0.0, T0 + timedelta(seconds=6)),
        version_status(first, 7, 120.0, T0 + timedelta(minutes=15)),
        version_status(first, 9, 1.0, T0 + timedelta(hours=2), msg=ERR + " (10.0.0.7:443)"),
    ]
    assert {json.dumps(s, sort_keys=True) for s in again} == {json.dumps(first, sort_keys=True)}


def test_an_endpoint_waiting_on_it_writes_its_status_once() -> None:
    w = World()
    serving_one(w)
    w.version("2.4.0", NEW, verified=False)
    body = w.store.get("ModelVersion", NS, "m-v2.4.0")
    body["status"] = version_status({}, 1, 0.0, T0)
    w.store.upsert("ModelVersion", body)
    w.endpoint(
        [
            {"name": "stable", "version": "2.3.8", "weight": 90},
            {"name": "canary", "version": "2.4.0", "weight": 10},
        ]
    )
    w.settle()
    canary = next(v for v in w.status()["variants"] if v["name"] == "canary")
    assert (canary["eligible"], canary["reason"]) == (False, R.ARTIFACT_NOT_VERIFIED)
    assert "FetchFailed" in canary["message"]
    w.api.writes.clear()
    for attempt, later in ((2, 6), (5, 600), (8, 3600)):  # retries: the version's reconcile decides again
        body = copy.deepcopy(w.store.get("ModelVersion", NS, "m-v2.4.0"))
        new = version_status(body["status"], attempt, 0.0, T0 + timedelta(seconds=later))
        assert new == body["status"]  # so its reconciler skips the patch (status_changed is False)
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1000 * attempt)
        w.store.upsert("ModelVersion", body)  # even if something else touched it, the endpoint re-decides
        w.now += later
        w.settle()
    assert [x for x in w.api.writes if x[1] == "ModelEndpoint"] == []
