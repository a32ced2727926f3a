"""What each status PATCH of a new ModelVersion changed (bench/version_status.py): Request-level
audit-log lines in, a label per PATCH and versions by sequence out, without a cluster."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import version_status as vs  # noqa: E402

OP = vs.OPERATOR_USER
_ids = itertools.count()


def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": "m", "lastTransitionTime": "t"}


def line(
    name: str,
    status: dict[str, Any] | None,
    second: int,
    *,
    code: int = 200,
    user: str = OP,
    ns: str = "bench",
) -> bytes:
    ev: dict[str, Any] = {
        "auditID": f"id-{next(_ids)}",
        "stage": "ResponseComplete",
        "verb": "patch",
        "user": {"username": user},
        "objectRef": {"resource": "modelversions", "subresource": "status", "namespace": ns, "name": name},
        "responseStatus": {"code": code},
        "stageTimestamp": f"2026-12-08T01:00:{second:02d}.000000Z",
    }
    if status is not None:
        ev["requestObject"] = {"status": status}
    return json.dumps(ev).encode() + b"\n"


PENDING = {"conditions": [cond("ArtifactVerified", "Unknown", "RecordPending")], "stage": "candidate"}
VERIFIED = {  # a merge patch carries every key of the new status
    "conditions": [cond("ArtifactVerified", "True", "Verified"), cond("Ready", "True", "Ready")],
    "stage": "production",
    "artifact": {"digest": "a"},
}
SERVED = {**VERIFIED, "servedBy": [{"endpoint": "ep", "variant": "stable", "weight": 0}]}
WEIGHTED = {**VERIFIED, "servedBy": [{"endpoint": "ep", "variant": "stable", "weight": 90}]}


def test_each_patch_is_labelled_by_what_it_changed_and_versions_grouped_by_sequence() -> None:
    lines = [
        line("a", PENDING, 1),
        line("b", VERIFIED, 2),
        line("a", VERIFIED, 7),  # RecordPending, then verified and walked
        line("b", SERVED, 9),  # its endpoint's in-use record
        line("c", SERVED, 3),
        line("c", WEIGHTED, 8),
        line("d", VERIFIED, 4),
        line("d", VERIFIED, 5, code=409),  # refused
        line("x", VERIFIED, 5, user="someone"),  # not the operator's
        line("y", VERIFIED, 5, ns="other"),  # not the fleet's
        b'{"verb": "patch", "objectRef": {"resource": "models", "subresource": "status"}}\n',
    ]
    patches = vs.status_patches(lines, OP, "bench")
    seqs = vs.sequences(patches)
    assert seqs == {
        "bench/a": ["AV new RecordPending", "AV Verified+Ready+artifact+stage"],
        "bench/b": ["AV new Verified", "servedBy"],
        "bench/c": ["AV new Verified+servedBy", "servedBy"],
        "bench/d": ["AV new Verified", "refused 409"],
    }
    got = vs.breakdown(seqs, vs.gaps(patches))
    assert (got["versions"], got["status_patches"], got["per_version"]) == (4, 8, 2.0)
    # b's and c's servedBy writes are their endpoints'; a's second write and d's refused one are their own
    assert (got["own_per_version"], got["endpoint_caused_per_version"]) == (1.5, 0.5)
    by = {r["sequence"]: (r["versions"], r["span_max"]) for r in got["by_sequence"]}
    assert by["AV new RecordPending | AV Verified+Ready+artifact+stage"] == (1, 6.0)
    assert by["AV new Verified | servedBy"] == (1, 7.0)


def test_a_patch_logged_without_its_body_is_counted_but_not_labelled() -> None:
    seqs = vs.sequences(vs.status_patches([line("a", None, 1)], OP, "bench"))
    assert seqs == {"bench/a": ["?"]}


def test_only_what_an_endpoint_writes_counts_as_caused_by_it() -> None:
    assert vs.endpoint_caused("servedBy+servingHistory") and vs.endpoint_caused("InUse+servedBy")
    assert not vs.endpoint_caused("AV new Verified+servedBy")  # a first status is the version's own
    assert not vs.endpoint_caused("AV Verified+stage+servedBy")
    assert not vs.endpoint_caused("refused 409")
