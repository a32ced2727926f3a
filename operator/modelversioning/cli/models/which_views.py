"""``kubectl models which ENDPOINT --at TIME``: which versions (digests, weights, slots) served at a
moment, from the endpoint's status.routeHistory (domain.endpoint_history.resolve), as a view (pure:
a dict for -o json/yaml and the table).

TIME is RFC 3339 with a time zone (``2026-12-07T10:03:00Z``, ``...+01:00``), or relative to now:
``-15m``, ``-90s``, ``-2h``, ``-1d``, ``-1h30m``, or ``now``. A moment before the record begins, or an
endpoint with no record, is refused (exit 1) with when the record begins; a moment inside a compacted
range is answered with every version of the range and says the answer is coarse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelversioning.api.wire import ROUTE_CAUSE_INITIAL
from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused
from modelversioning.domain.endpoint_history import Answer, from_wire, resolve
from modelversioning.domain.timestamps import parse_epoch, parse_rfc3339, rfc3339_ms

_RELATIVE = re.compile(r"^-((?:\d+(?:\.\d+)?[smhd])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# a moment this close after a change: the gateway may still have served the previous split (a route
# write reaches Traefik's routing within ~2 s, README "Data plane")
SETTLE_SECONDS = 5.0
_LAST = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a date prints


def parse_at(text: str, now: float) -> float:
    """Epoch seconds of ``--at`` (RFC 3339 with a zone, ``-<n>[smhd]...`` before ``now``, or ``now``)."""
    s = text.strip()
    if s == "now":
        return now
    m = _RELATIVE.match(s)
    if m:
        return _printable(now - sum(float(n) * _UNIT[u] for n, u in _PART.findall(m.group(1))), text)
    t = parse_rfc3339(s)
    if t is None:
        raise Refused(
            f"--at {text!r}: not a time; give RFC 3339 with a time zone (2026-12-07T10:03:00Z) or a "
            "time before now such as -15m, -2h, -1h30m, -90s",
            EXIT_USAGE,
        )
    return _printable(t.timestamp(), text)


def _printable(at: float, text: str) -> float:
    """``at``, when a record can reach it and a date prints it (in UTC: 1970 to the end of 9999)."""
    if not at >= 0:  # before 1970 (or not a number)
        raise Refused(f"--at {text!r}: before 1970; give a time in the endpoint's record", EXIT_USAGE)
    if at > _LAST:
        raise Refused(f"--at {text!r}: after 9999 (UTC); give a time in the endpoint's record", EXIT_USAGE)
    return at


def which_at_view(ep: Mapping[str, Any], at: float) -> dict[str, Any]:
    """What served ``ep`` at epoch seconds ``at``; Refused (exit 1) before the record begins."""
    md, status = ep.get("metadata") or {}, ep.get("status") or {}
    name = f"{md.get('namespace', '')}/{md.get('name', '')}".lstrip("/")
    answer = resolve(from_wire(status.get("routeHistory")), at)
    moment = rfc3339_ms(at)
    if answer.kind == "empty":
        raise Refused(
            f"ModelEndpoint {name} has no route history (status.routeHistory): nothing was served through "
            "a route since this operator began recording, or its router writes no route",
            EXIT_FAILED,
        )
    if answer.kind == "before":
        raise Refused(
            f"{moment} is before the route history of ModelEndpoint {name} begins ({answer.begins}): "
            "which versions served then is not recorded",
            EXIT_FAILED,
        )
    view: dict[str, Any] = {
        "endpoint": name,
        "at": moment,
        "coarse": answer.kind == "coarse",
        "from": answer.start,
        "until": answer.end,
        "recordBegins": answer.begins,
    }
    view |= _coarse(answer) if answer.kind == "coarse" else _exact(answer)
    view["note"] = _note(answer, at)
    return view


def _exact(a: Answer) -> dict[str, Any]:
    c = a.change
    assert c is not None
    out: dict[str, Any] = {
        "cause": c.cause,
        "detail": c.detail,
        "generation": c.generation,
        "variants": [
            {"variant": s.variant, "version": s.version, "digest": s.digest,
             "servingDigest": s.serving_digest, "weight": s.weight, "slot": s.slot}
            for s in c.split
        ],
        "mirror": None,
        "closed": c.closed or None,
    }  # fmt: skip
    if c.mirror is not None:
        m = c.mirror
        out["mirror"] = {"variant": m.variant, "version": m.version, "digest": m.digest,
                         "percent": m.percent, "slot": m.slot}  # fmt: skip
    return out


def _coarse(a: Answer) -> dict[str, Any]:
    r = a.range
    assert r is not None
    return {
        "changes": r.changes,
        "variants": [
            {"variant": v.variant, "version": v.version, "digest": v.digest, "maxWeight": v.max_weight,
             "mirror": v.mirror}
            for v in r.variants
        ],
        "closed": r.closed or None,
        "truncated": r.truncated,
    }  # fmt: skip


def _note(a: Answer, at: float) -> str:
    if a.kind == "coarse":
        assert a.range is not None
        more = " (and more: the range's list is truncated)" if a.range.truncated else ""
        return (
            f"coarse: {a.range.changes} changes between {a.start} and {a.end} were compacted; each version "
            f"listed{more} served at some moment of that range with at most the weight shown, the exact "
            "split at this moment is no longer recorded"
        )
    assert a.change is not None
    start = parse_epoch(a.start)
    if start is None or a.change.cause == ROUTE_CAUSE_INITIAL or at - start >= SETTLE_SECONDS:
        return ""
    return (
        f"{at - start:.3f}s after a recorded change: the gateway may still have answered with the previous "
        "split (a route write takes effect within seconds)"
    )
