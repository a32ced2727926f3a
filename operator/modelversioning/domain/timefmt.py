"""Times as the endpoint's status and annotations carry them (RFC 3339), both ways, purely."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def rfc3339(t: float) -> str:
    """Milliseconds, rounded up: a drain's `since` read back is never earlier than it was (whole
    seconds cut a 1 s grace period to as little as 0.2 s)."""
    t = math.ceil(t * 1000 - 1e-3) / 1000  # (a time read back from milliseconds stays as it is)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(ts: str, default: float = 0.0) -> float:
    """Epoch seconds of an RFC 3339 time; `default` when it does not parse."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
