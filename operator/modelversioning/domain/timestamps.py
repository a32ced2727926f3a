"""RFC 3339 timestamps as the API server writes them: whole seconds, UTC as "Z"."""

from __future__ import annotations

from datetime import datetime
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
