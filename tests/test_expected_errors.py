"""Failures a retry resolves by itself (a 409 conflict, a 404 of an object deleted meanwhile, a create in
a namespace being deleted) are logged at debug and counted; everything else is an ERROR with its
traceback. handlers.kube.expected_api_error classifies, the work queue logs and counts."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.handlers.kube import Conflict, expected_api_error
from modelversioning.handlers.workqueue import EXPECTED_ESCALATE_AFTER, WorkQueue

KEY = ("ModelVersion", "team-a", "fraud-v1")


def api_error(status: int, details: dict[str, Any] | None = None) -> ApiException:
    e = ApiException(status=status, reason="x")
    e.body = json.dumps({"kind": "Status", "code": status, **({"details": details} if details else {})})
    return e


def conflict() -> Conflict:
    try:
        raise Conflict("PATCH /x: conflict") from api_error(409)
    except Conflict as c:
        return c


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (conflict(), 409),
        (api_error(409), 409),
        (api_error(404, {"name": "fraud-v1", "kind": "modelversions"}), 404),
        (api_error(404), None),  # no object named: a resource type not served (a missing CRD)
        (api_error(403, {"name": "x", "causes": [{"reason": "NamespaceTerminating"}]}), 403),
        (api_error(403, {"name": "x"}), None),  # RBAC: needs a person
        (api_error(500), None),
        (api_error(422, {"name": "x"}), None),
        (RuntimeError("boom"), None),
    ],
)
def test_which_api_errors_are_expected(error: BaseException, code: int | None) -> None:
    assert expected_api_error(error) == code


def _count(code: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "modelversioning_expected_api_errors_total", {"code": code, "kind": "ModelVersion"}
    )
    return value or 0.0


def _queue() -> WorkQueue:
    q = WorkQueue(lambda key: None, expected=expected_api_error)
    q._loop = asyncio.new_event_loop()  # paused (never started): _failed schedules no retry
    return q


def test_expected_errors_are_debug_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    q = _queue()
    before = _count("404"), _count("409")
    with caplog.at_level(logging.DEBUG, logger="modelversioning.handlers.workqueue"):
        q._failed(KEY, api_error(404, {"name": "fraud-v1"}))
        q._failed(KEY, conflict())
    assert (_count("404"), _count("409")) == (before[0] + 1, before[1] + 1)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert all(r.exc_info is None for r in caplog.records)
    assert (
        "HTTP 404" in caplog.records[0].getMessage() and "team-a/fraud-v1" in caplog.records[0].getMessage()
    )
    q._loop.close()


def test_other_errors_are_errors_with_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    q = _queue()
    before = _count("404")
    with caplog.at_level(logging.DEBUG, logger="modelversioning.handlers.workqueue"):
        for e in (RuntimeError("boom"), api_error(404)):  # a bug; a CRD that is not installed
            try:
                raise e
            except Exception as raised:
                q._failed(KEY, raised)
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert all(r.exc_info is not None for r in caplog.records)
    assert _count("404") == before
    q._loop.close()


def test_an_expected_error_that_persists_becomes_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    q = _queue()
    with caplog.at_level(logging.DEBUG, logger="modelversioning.handlers.workqueue"):
        for _ in range(EXPECTED_ESCALATE_AFTER):
            q._failed(KEY, conflict())
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.DEBUG] * (EXPECTED_ESCALATE_AFTER - 1) + [logging.WARNING]
    assert caplog.records[-1].exc_info is None
    q._loop.close()
