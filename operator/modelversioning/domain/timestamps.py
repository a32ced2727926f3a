"""RFC 3339 timestamps, both ways, purely: whole seconds as the API server writes them (conditions,
history), milliseconds where a duration is measured from them (a drain's `since`, a rollout step)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any


def rfc3339(t: datetime) -> str:
    """``t`` to the second, "Z" for UTC (e.g. 2024-05-01T12:00:00Z)."""
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(ts: Any) -> datetime | None:
    """The time ``ts`` names, or None: empty, not a timestamp, or without a time zone (it could not be
    compared with an aware time)."""
    if not ts or not isinstance(ts, str):
        return None
    try:
        t = datetime.fromisoformat(ts)  # reads "Z" (Python 3.11)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def rfc3339_ms(t: float) -> str:
    """Epoch seconds to milliseconds, rounded up: a drain's `since` read back is never earlier than it
    was (whole seconds cut a 1 s grace period to as little as 0.2 s)."""
    t = math.ceil(t * 1000 - 1e-3) / 1000  # (a time read back from milliseconds stays as it is)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_epoch(ts: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time, or None: empty or not a timestamp."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def epoch(ts: str, default: float = 0.0) -> float:
    """Epoch seconds of an RFC 3339 time; `default` when it does not parse."""
    t = parse_epoch(ts)
    return default if t is None else t
