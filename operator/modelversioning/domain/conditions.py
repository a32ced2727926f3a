"""Kubernetes-convention conditions, computed purely.

`lastTransitionTime` changes only when a condition's status flips; reason,
message and observedGeneration may change without moving it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelversioning.domain.timestamps import rfc3339

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


@dataclass(frozen=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str = ""


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    wanted: Iterable[Cond],
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """New conditions list: wanted conditions replace same-type ones; others are kept as they were."""
    now = now or now_rfc3339()
    old = {c.get("type"): dict(c) for c in (existing or [])}
    out: dict[str, dict[str, Any]] = {k: v for k, v in old.items() if isinstance(k, str)}
    for c in wanted:
        prev = old.get(c.type)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == c.status else None
        new: dict[str, Any] = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": ltt or now,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        out[c.type] = new
    return [out[k] for k in sorted(out, key=_order)]


def _order(t: str) -> tuple[int, str]:
    return (0 if t == "Ready" else 1, t)


def get(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (conditions or []) if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    c = get(conditions, type_)
    return bool(c and c.get("status") == TRUE)
