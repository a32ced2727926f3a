"""The route history of a ModelEndpoint: every change of the split as served that the operator
observed, bounded and compacted, and the pure answer to "which versions served at time T?".

The record lives in the endpoint's ``status.routeHistory`` (api.modelendpoint.RouteHistory is its
schema; docs/design.md, "Point-in-time answers", says why status):

- ``changes``: the newest changes in full, oldest first. Each is the split *as served* from ``at``
  until the next change: per live variant its version, the artifact digest its pods verified, the
  version's servingDigest when it had one, its weight and the slot (the Service the route sends it
  to, which the gateway's access log names); the mirror; or ``closed`` (503, x-model-unavailable).
  Plus why it changed (``cause``, one of wire.ROUTE_CAUSES, and a ``detail``) and the endpoint's
  generation.
- ``coarse``: older changes merged into time ranges ``[start, end)``, oldest first: every variant,
  version and digest that served at some moment of the range, with its highest weight; the exact
  split at a given moment in the range is no longer known (an answer there says it is coarse).

Bounds (``Limits``): at most ``full`` changes in full; beyond that the oldest becomes a coarse range
of its own, and beyond ``coarse`` ranges two adjacent ranges merge: the pair holding the fewest
changes together whose merged range holds no more than its older neighbour (``_cheapest_pair``), so
ranges get coarser with age, like the digits of a binary counter. The whole record also stays under
``max_bytes`` of JSON: a 16-variant endpoint keeps fewer changes in full, and should one range and the
current split still not fit, the ranges go (the record then begins later; an answer before it says
so). The current split is always kept in full. At the defaults the record is at most 48 KiB, well
under etcd's 1.5 MiB object limit; a two-variant endpoint's is ~16 KiB after 500 changes.

``record`` returns None when the split as served is the one recorded last: a reconcile that changes
nothing on the route adds nothing (and so writes nothing). Times are RFC 3339 with milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from modelversioning.domain.timestamps import parse_epoch

FULL_CHANGES = 20
COARSE_RANGES = 12
MAX_BYTES = 48 * 1024
MAX_RANGE_VARIANTS = 32  # distinct (variant, version, digest) kept per coarse range


@dataclass(frozen=True)
class Limits:
    full: int = FULL_CHANGES
    coarse: int = COARSE_RANGES
    max_bytes: int = MAX_BYTES
    range_variants: int = MAX_RANGE_VARIANTS


@dataclass(frozen=True)
class Served:
    """One live variant as the route served it."""

    variant: str
    version: str
    digest: str  # the artifact sha256 its pods verified (the pinned digest)
    weight: int
    slot: str  # the Service (and Deployment) of its slot: what the gateway's access log names
    serving_digest: str = ""  # the version's status.servingDigest when recorded ("": none)


@dataclass(frozen=True)
class Mirrored:
    variant: str
    version: str
    digest: str
    percent: int
    slot: str


@dataclass(frozen=True)
class Change:
    at: str  # RFC 3339 (ms): when the route write that made this split returned (or was observed)
    cause: str  # one of wire.ROUTE_CAUSES
    detail: str = ""
    generation: int = 0  # the endpoint's metadata.generation then
    split: tuple[Served, ...] = ()  # live variants with weight > 0, by variant name
    mirror: Mirrored | None = None
    closed: str = ""  # the route answered 503 with x-model-unavailable: <closed>

    def same_route(self, other: Change) -> bool:
        """The same split as served (a servingDigest learnt later is not a route change)."""
        return _route_key(self) == _route_key(other)


def _route_key(c: Change) -> tuple[Any, ...]:
    split = tuple((s.variant, s.version, s.digest, s.weight, s.slot) for s in c.split)
    return split, c.mirror, c.closed


@dataclass(frozen=True)
class RangeVariant:
    variant: str
    version: str
    digest: str
    max_weight: int  # the highest weight it had in the range (mirror: 0)
    mirror: bool = False


@dataclass(frozen=True)
class Coarse:
    start: str  # the first merged change's `at`
    end: str  # the next entry's start: the range is [start, end)
    changes: int  # how many changes were merged
    variants: tuple[RangeVariant, ...] = ()  # every one that served at some moment of the range
    closed: bool = False  # the route was closed at some moment of the range
    truncated: bool = False  # more than Limits.range_variants distinct ones: only the first are kept


@dataclass(frozen=True)
class RouteHistory:
    changes: tuple[Change, ...] = ()  # oldest first
    coarse: tuple[Coarse, ...] = ()  # oldest first, all before changes[0]

    @property
    def last(self) -> Change | None:
        return self.changes[-1] if self.changes else None

    @property
    def begins(self) -> str | None:
        """When the record begins (its first change, merged or not)."""
        if self.coarse:
            return self.coarse[0].start
        return self.changes[0].at if self.changes else None


# ------------------------------------------------------------------------------------- record


def record(history: RouteHistory, change: Change, limits: Limits = Limits()) -> RouteHistory | None:
    """The history with ``change`` appended and compacted; None when the route serves what the last
    change recorded (nothing to record, nothing to write)."""
    last = history.last
    if last is not None and last.same_route(change):
        return None
    return compact(replace(history, changes=(*history.changes, change)), limits)


def compact(h: RouteHistory, limits: Limits = Limits()) -> RouteHistory:
    """Within the limits: the oldest full changes become coarse ranges (the newest change always stays
    in full), and the coarse ranges merge down to ``limits.coarse`` (and while over ``max_bytes``)."""
    changes, coarse = list(h.changes), list(h.coarse)

    def too_big() -> bool:
        return _size(changes, coarse) > limits.max_bytes

    while len(changes) > max(1, limits.full) or (len(changes) > 1 and too_big()):
        oldest = changes.pop(0)
        coarse.append(_coarsened(oldest, changes[0].at, limits))
    while len(coarse) > limits.coarse or (len(coarse) > 1 and too_big()):
        i = _cheapest_pair(coarse)
        coarse[i : i + 2] = [_merged(coarse[i], coarse[i + 1], limits)]
    if coarse and too_big():  # one range and the current split are still too big: the record begins later
        coarse.clear()
    return RouteHistory(tuple(changes), tuple(coarse))


def _size(changes: Sequence[Change], coarse: Sequence[Coarse]) -> int:
    return len(json.dumps(to_wire(RouteHistory(tuple(changes), tuple(coarse))), separators=(",", ":")))


def _cheapest_pair(coarse: Sequence[Coarse]) -> int:
    """Index of the adjacent pair to merge: of the pairs whose merged range holds no more changes than
    its older neighbour (the oldest pair always qualifies), the one holding the fewest, the newest on
    a tie. Ranges then hold non-increasing counts from the oldest to the newest: older is coarser."""
    best, best_sum = 0, coarse[0].changes + coarse[1].changes
    for i in range(1, len(coarse) - 1):
        total = coarse[i].changes + coarse[i + 1].changes
        if total <= coarse[i - 1].changes and total <= best_sum:
            best, best_sum = i, total
    return best


def _coarsened(c: Change, end: str, limits: Limits) -> Coarse:
    served = [RangeVariant(s.variant, s.version, s.digest, s.weight) for s in c.split]
    if c.mirror is not None:
        m = c.mirror
        served.append(RangeVariant(m.variant, m.version, m.digest, 0, mirror=True))
    return _bounded(Coarse(c.at, end, 1, tuple(served), closed=bool(c.closed)), limits)


def _merged(a: Coarse, b: Coarse, limits: Limits) -> Coarse:
    by_key: dict[tuple[str, str, str, bool], RangeVariant] = {}
    for v in (*a.variants, *b.variants):
        key = (v.variant, v.version, v.digest, v.mirror)
        old = by_key.get(key)
        by_key[key] = v if old is None or v.max_weight > old.max_weight else old
    merged = Coarse(
        a.start, b.end, a.changes + b.changes, tuple(by_key.values()), a.closed or b.closed,
        a.truncated or b.truncated,
    )  # fmt: skip
    return _bounded(merged, limits)


def _bounded(c: Coarse, limits: Limits) -> Coarse:
    if len(c.variants) <= limits.range_variants:
        return c
    return replace(c, variants=c.variants[: limits.range_variants], truncated=True)


# -------------------------------------------------------------------------------------- resolve

Kind = Literal["empty", "before", "exact", "coarse"]


@dataclass(frozen=True)
class Answer:
    """What served at a moment: ``exact`` (``change`` served from ``start`` until ``end``, None:
    still serving), ``coarse`` (``range``: one or more of its variants served, exact split unknown),
    ``before`` (the record begins at ``begins``, after that moment) or ``empty`` (no record)."""

    kind: Kind
    start: str | None = None
    end: str | None = None
    change: Change | None = None
    range: Coarse | None = None
    begins: str | None = None


def resolve(history: RouteHistory, t: float) -> Answer:
    """The entry in effect at epoch seconds ``t``: each entry covers [its start, the next's start);
    a moment exactly at a change gets the new split; the last change covers everything after it."""
    begins = history.begins
    if begins is None:
        return Answer("empty")
    if t < _epoch(begins):
        return Answer("before", begins=begins)
    for i, c in enumerate(history.changes):
        end = history.changes[i + 1].at if i + 1 < len(history.changes) else None
        if _epoch(c.at) <= t and (end is None or t < _epoch(end)):
            return Answer("exact", c.at, end, change=c, begins=begins)
    for r in history.coarse:
        if _epoch(r.start) <= t < _epoch(r.end):
            return Answer("coarse", r.start, r.end, range=r, begins=begins)
    # a gap between the coarse ranges and the first change cannot be made by compact(); an edited
    # record can: the latest entry that began before t answers, coarsely
    earlier = [r for r in history.coarse if _epoch(r.start) <= t]
    r = earlier[-1]
    return Answer("coarse", r.start, r.end, range=r, begins=begins)


def _epoch(ts: str) -> float:
    t = parse_epoch(ts)
    return float("-inf") if t is None else t


# ------------------------------------------------------------------------------------------- wire


def to_wire(h: RouteHistory) -> dict[str, Any]:
    """status.routeHistory as written (camelCase; empty values left out)."""
    return {
        "changes": [_change_wire(c) for c in h.changes],
        "coarse": [_coarse_wire(r) for r in h.coarse],
    }


def _change_wire(c: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"at": c.at, "cause": c.cause, "generation": c.generation}
    if c.detail:
        out["detail"] = c.detail
    out["split"] = [_drop_empty({
        "variant": s.variant, "version": s.version, "digest": s.digest, "weight": s.weight,
        "slot": s.slot, "servingDigest": s.serving_digest,
    }) for s in c.split]  # fmt: skip
    if c.mirror is not None:
        m = c.mirror
        out["mirror"] = {"variant": m.variant, "version": m.version, "digest": m.digest,
                         "percent": m.percent, "slot": m.slot}  # fmt: skip
    if c.closed:
        out["closed"] = c.closed
    return out


def _coarse_wire(r: Coarse) -> dict[str, Any]:
    out: dict[str, Any] = {"start": r.start, "end": r.end, "changes": r.changes}
    out["variants"] = [
        _drop_empty({"variant": v.variant, "version": v.version, "digest": v.digest,
                     "maxWeight": v.max_weight, "mirror": v.mirror or None})
        for v in r.variants
    ]  # fmt: skip
    if r.closed:
        out["closed"] = True
    if r.truncated:
        out["truncated"] = True
    return out


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def from_wire(raw: Mapping[str, Any] | None) -> RouteHistory:
    """status.routeHistory as read back (anything malformed in an entry is read as empty: the record
    is a report, never an input to what is routed)."""
    raw = raw if isinstance(raw, Mapping) else {}
    changes = tuple(_change(c) for c in raw.get("changes") or [] if isinstance(c, Mapping))
    coarse = tuple(_coarse(r) for r in raw.get("coarse") or [] if isinstance(r, Mapping))
    return RouteHistory(changes, coarse)


def _change(c: Mapping[str, Any]) -> Change:
    m = c.get("mirror")
    mirror = (
        Mirrored(str(m.get("variant", "")), str(m.get("version", "")), str(m.get("digest", "")),
                 _int(m.get("percent")), str(m.get("slot", "")))
        if isinstance(m, Mapping) else None
    )  # fmt: skip
    split = tuple(
        Served(str(s.get("variant", "")), str(s.get("version", "")), str(s.get("digest", "")),
               _int(s.get("weight")), str(s.get("slot", "")), str(s.get("servingDigest", "")))
        for s in c.get("split") or [] if isinstance(s, Mapping)
    )  # fmt: skip
    return Change(
        str(c.get("at", "")), str(c.get("cause", "")), str(c.get("detail", "")), _int(c.get("generation")),
        split, mirror, str(c.get("closed", "")),
    )  # fmt: skip


def _coarse(r: Mapping[str, Any]) -> Coarse:
    variants = tuple(
        RangeVariant(str(v.get("variant", "")), str(v.get("version", "")), str(v.get("digest", "")),
                     _int(v.get("maxWeight")), bool(v.get("mirror")))
        for v in r.get("variants") or [] if isinstance(v, Mapping)
    )  # fmt: skip
    return Coarse(
        str(r.get("start", "")), str(r.get("end", "")), _int(r.get("changes")), variants,
        bool(r.get("closed")), bool(r.get("truncated")),
    )  # fmt: skip


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0
