"""domain.pod_health: what a slot's pods say, read from their status only (table tests)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.domain.pod_health import probe_text, slot_health, verifier_report

NOW = 10_000.0
STARTED = "1970-01-01T02:45:00Z"  # 9,900 s: 100 s before NOW
EXPECTED, FOUND = "a" * 64, "f" * 64
MISMATCH = json.dumps({"ok": False, "reason": "DigestMismatch", "expected": EXPECTED, "actual": FOUND,
                       "message": "m: DigestMismatch: the bytes read do not hash"})  # fmt: skip


def pod(name: str = "p-1", init: dict[str, Any] | None = None, server: dict[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"phase": extra.pop("phase", "Pending")}
    if init is not None:
        status["initContainerStatuses"] = [{"name": "verify-artifact", "ready": False, **init}]
    if server is not None:
        status["containerStatuses"] = [{"name": "model-server", "image": "ex/srv:1", **server}]
    return {"metadata": {"name": name, **extra}, "status": status}


def terminated(code: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


LAYER_MISMATCH = json.dumps(
    {"reason": "LayerDigestMismatch", "expected": EXPECTED, "message": "u: LayerDigestMismatch: layer 0"}
)
CASES = [
    (
        "init refuses the digest",
        [pod(init={"state": terminated(1, "log line\n" + MISMATCH)})],
        R.DIGEST_MISMATCH,
        FOUND,
    ),
    (
        "the refusal seen while the kubelet backs off",
        [
            pod(
                init={
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": terminated(1, MISMATCH),
                }
            )
        ],
        R.DIGEST_MISMATCH,
        FOUND,
    ),
    (
        "the refusal seen while the init container runs again",
        [pod(init={"state": {"running": {"startedAt": STARTED}}, "lastState": terminated(1, MISMATCH)})],
        R.DIGEST_MISMATCH,
        FOUND,
    ),
    (
        "init refuses an oci:// layer (no sha256 found: the layer's digest is in the message)",
        [pod(init={"state": terminated(1, LAYER_MISMATCH)})],
        R.DIGEST_MISMATCH,
        "LayerDigestMismatch: u: LayerDigestMismatch: layer 0",
    ),
    (
        "another verifier failure",
        [
            pod(
                init={
                    "state": terminated(3, json.dumps({"reason": "FetchFailed", "message": "503 from store"}))
                }
            )
        ],
        R.ARTIFACT_CHECK_FAILED,
        "FetchFailed: 503 from store",
    ),
    (
        "no JSON: exit code and last log line",
        [pod(init={"state": terminated(2, "a\nboom\n")})],
        R.ARTIFACT_CHECK_FAILED,
        "exited with code 2 (Error): boom",
    ),
    (
        "init image cannot be pulled",
        [pod(init={"image": "ex/init:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}})],
        R.IMAGE_PULL_FAILED,
        "ex/init:1",
    ),
    (
        "server image cannot be pulled",
        [
            pod(
                init={"ready": True, "state": terminated(0)},
                server={"state": {"waiting": {"reason": "ErrImagePull"}}},
            )
        ],
        R.IMAGE_PULL_FAILED,
        "cannot pull image ex/srv:1",
    ),
    (
        "crash loop back-off",
        [
            pod(
                server={
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": terminated(137, "", "OOMKilled"),
                }
            )
        ],
        R.CRASH_LOOP,
        "code 137 (OOMKilled)",
    ),
    (
        "restarted, running again, not ready",
        [
            pod(
                server={
                    "ready": False,
                    "restartCount": 1,
                    "state": {"running": {"startedAt": STARTED}},
                    "lastState": terminated(1, "Traceback\nValueError: no model"),
                }
            )
        ],
        R.CRASH_LOOP,
        "ValueError: no model",
    ),
    (
        "running, not ready past the bound",
        [pod(server={"ready": False, "restartCount": 0, "state": {"running": {"startedAt": STARTED}}})],
        R.RUNTIME_NOT_READY,
        "GET /healthz on port http",
    ),
]


@pytest.mark.parametrize(("case", "pods", "reason", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_failing_pod_is_reported_with_the_pods_own_words(case, pods, reason, says):
    h = slot_health(pods, NOW, 60.0, "GET /healthz on port http")
    assert h.problem is not None and h.problem.reason == reason, case
    assert says in h.problem.message or says == h.problem.found
    assert "p-1" in h.problem.message


def test_the_digest_found_is_kept_for_the_re_verification():
    h = slot_health([pod(init={"state": terminated(1, MISMATCH)})], NOW, 60.0)
    assert h.problem is not None and h.problem.found == FOUND
    assert FOUND in h.problem.message and EXPECTED in h.problem.message


@pytest.mark.parametrize(
    "pods",
    [
        [],
        [
            pod(
                init={"ready": True, "state": terminated(0)},
                server={"ready": True, "restartCount": 0, "state": {"running": {"startedAt": STARTED}}},
            )
        ],
        # a serving pod that restarted once and is ready again
        [
            pod(
                server={
                    "ready": True,
                    "restartCount": 1,
                    "state": {"running": {"startedAt": STARTED}},
                    "lastState": terminated(1),
                }
            )
        ],
        # init container still verifying; a pod being pulled for the first time
        [pod(init={"state": {"running": {"startedAt": STARTED}}})],
        [pod(server={"state": {"waiting": {"reason": "ContainerCreating"}}})],
        # terminating and finished pods are not read
        [pod(init={"state": terminated(1, MISMATCH)}, deletionTimestamp="1970-01-01T00:00:00Z")],
        [pod(init={"state": terminated(1, MISMATCH)}, phase="Failed")],
    ],
    ids=["none", "healthy", "ready-after-a-restart", "verifying", "creating", "terminating", "failed-phase"],
)
def test_healthy_or_not_yet_judged_pods_report_nothing(pods):
    assert slot_health(pods, NOW, 60.0).problem is None


def test_a_not_ready_pod_short_of_the_bound_is_looked_at_again_when_due():
    p = pod(server={"ready": False, "restartCount": 0, "state": {"running": {"startedAt": STARTED}}})
    h = slot_health([p], NOW, 150.0)
    assert h.problem is None and h.recheck_after == pytest.approx(50.0)
    assert slot_health([p], NOW + 50.0, 150.0).problem is not None


def test_the_first_problem_in_order_wins_and_pods_are_read_by_name():
    crash = pod("p-a", server={"ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}}})
    refused = pod("p-b", init={"state": terminated(1, MISMATCH)})
    h = slot_health([crash, refused], NOW, 60.0)
    assert h.problem is not None and h.problem.reason == R.DIGEST_MISMATCH
    other = pod("p-0", init={"state": terminated(1, MISMATCH)})
    h = slot_health([refused, other], NOW, 60.0)
    assert h.problem is not None and "p-0" in h.problem.message


def test_messages_hold_no_count_or_age_so_a_retry_writes_nothing():
    def crashing(restarts: int) -> dict[str, Any]:
        waiting = {"waiting": {"reason": "CrashLoopBackOff"}}
        return pod(
            server={"ready": False, "restartCount": restarts, "state": waiting, "lastState": terminated(1)}
        )

    assert slot_health([crashing(3)], NOW, 60.0) == slot_health([crashing(9)], NOW + 300, 60.0)
    p = pod(server={"ready": False, "restartCount": 0, "state": {"running": {"startedAt": STARTED}}})
    assert slot_health([p], NOW, 60.0) == slot_health([p], NOW + 500, 60.0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [(MISMATCH, "DigestMismatch"), ("noise\n" + MISMATCH + "\n", "DigestMismatch"), ("not json", None),
     ('{"a": 1}', None), ("", None)],
)  # fmt: skip
def test_the_verifiers_report_is_its_last_json_line(text, reason):
    doc = verifier_report(text)
    assert (doc or {}).get("reason") == reason


@pytest.mark.parametrize(
    ("probe", "text"),
    [({"httpGet": {"path": "/v2/health", "port": "http"}}, "GET /v2/health on port http"),
     ({"tcpSocket": {"port": "http"}}, "TCP port http"), (None, ""), ({}, "")],
)  # fmt: skip
def test_probe_text(probe, text):
    assert probe_text(probe) == text
