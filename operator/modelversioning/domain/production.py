"""The production record of a version: what it did while it served, per serving period, pure.

Each period of ``status.servingHistory`` carries a ``production`` summary (docs/design.md, "The
production record"): requests, errors, the error ratio, latency p50/p99 and the Model's KPIs over
``[from, through]``. The summary is built from *segments*: each one is the figures of ``[through,
end]`` (the first one starts at the period's ``from``), added to what is there, so the record never
needs Prometheus to remember further back than one segment and outlives its retention.

- ``due``: which periods need a segment now (an open one every ``interval`` seconds, the first time
  after a share of it in [0.5, 1) fixed per period so that periods opened together do not all come due
  together; a closed one once, ``settle`` seconds after it closed, so the last scrape is in) and when
  to look again;
- ``merge``: a segment's figures into a summary. The gateway's figures (requests, errors, latency
  buckets) go in all together or not at all: a segment that failed leaves ``through`` where it was and
  marks the summary ``incomplete`` with why; the next attempt covers the failed range too. A KPI that
  failed is marked incomplete for the period (its value covers what was measured; never a zero);
- ``give_up``: a closed period that could not be summarised within ``give_up`` seconds is final and
  incomplete (Prometheus will not remember it any better later);
- ``quantile``: ``histogram_quantile``'s interpolation over the accumulated buckets, so p50/p99 are
  those of the whole period, not an average of segments;
- ``aggregate``: a version's figures over all its periods (what ``served.<figure>`` gates and
  ``kubectl models compare`` read).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelversioning.domain.timestamps import parse_rfc3339, rfc3339

MAX_BUCKETS = 40  # latency buckets kept per period (Traefik's default histogram has 5)
MAX_KPIS = 8


@dataclass(frozen=True)
class ProductionPolicy:
    interval: float = 600.0  # an open period's summary is written at most once per this many seconds
    settle: float = 30.0  # a segment ends this long before now (scrapes and rule evaluation lag)
    retry: float = 120.0  # a failed segment is tried again after this long
    give_up: float = (
        86400.0  # a closed period still unsummarised this long after it closed: final, incomplete
    )


@dataclass(frozen=True)
class Segment:
    """One range of one period to measure: [start, end] (``final``: it ends the closed period)."""

    endpoint: str
    variant: str
    period_from: str  # identifies the period (with endpoint and variant)
    start: datetime
    end: datetime
    final: bool
    slots: tuple[str, ...] = ()  # the slots that carried the period (what the gateway's series name)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.endpoint, self.variant, self.period_from)

    @property
    def seconds(self) -> int:
        return max(1, math.ceil((self.end - self.start).total_seconds()))


@dataclass(frozen=True)
class KpiFigures:
    name: str
    numerator: float | None = None
    denominator: float | None = None  # None: the KPI is a count
    error: str | None = None  # why it could not be measured (numerator or denominator)


@dataclass(frozen=True)
class SegmentFigures:
    """What the pool measured for one segment. ``error``: the gateway's figures failed (why)."""

    segment: Segment
    requests: float | None = None
    errors: float | None = None
    buckets: tuple[tuple[str, float], ...] = ()  # (le, count) increases
    kpis: tuple[KpiFigures, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Due:
    segments: tuple[Segment, ...] = ()
    give_up: tuple[tuple[str, str, str], ...] = ()  # periods to close as final and incomplete
    after: float | None = None  # seconds until the next one is due (None: nothing to come)


def _period_key(p: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(p.get("endpoint", "")), str(p.get("variant", "")), str(p.get("from", "")))


def _slots(p: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(x) for x in p.get("slots") or ())


def _next_on_slots(
    p: Mapping[str, Any], to: datetime, periods: Sequence[Mapping[str, Any]]
) -> datetime | None:
    """When another period of this version opened on one of ``p``'s slots at or after ``p`` closed
    (None: none did). A closed period's last segment ends there at the latest: a version that takes
    traffic again within ``settle`` of a close (a quick rollback and re-promote) would otherwise have
    those requests counted in both periods."""
    mine = set(_slots(p))
    starts = (
        parse_rfc3339(q.get("from"))
        for q in periods
        if q is not p and mine & set(_slots(q))
    )
    later = [t for t in starts if t is not None and t >= to]
    return min(later) if later else None


def first_share(key: tuple[str, str, str]) -> float:
    """When an open period's first segment is due, as a share of the interval in [0.5, 1): fixed per
    period (a hash of endpoint, variant and start), so periods that opened together (a fleet created at
    once, an operator's first listing) are summarised spread over half an interval, not all at once."""
    h = int(hashlib.sha256("\0".join(key).encode()).hexdigest()[:8], 16)
    return 0.5 + 0.5 * h / 2**32


def due(
    periods: Sequence[Mapping[str, Any]],
    now: datetime,
    policy: ProductionPolicy,
    failed_ago: float | None = None,
    failures: int = 1,
) -> Due:
    """The segments to measure now, the closed periods to give up on, and when to look again.
    ``failed_ago``: seconds since this version's last segment failed (None: none did), ``failures``:
    how many failed in a row. A closed period is measured again after ``retry`` doubled per failure
    (at most ``interval``), an open one after ``interval`` (its next segment is due then anyway): a
    version whose slots never answered (no data) costs a few queries per interval, not one per retry.
    A period whose summary is final needs nothing, ever:
    an idle cluster (nothing serving, every closed period final) gets no segment and no time to look
    again. A closed period's last segment ends ``settle`` seconds after it closed: the gateway applies
    a route change a moment after it is written, and what the slot served meanwhile is still this
    version's (the segments select this version's slots by name)."""
    segments: list[Segment] = []
    give: list[tuple[str, str, str]] = []
    waits: list[float] = []
    settled = now - timedelta(seconds=policy.settle)
    backoff = min(policy.interval, policy.retry * 2 ** min(max(failures, 1) - 1, 16))
    hold_closed = failed_ago is not None and failed_ago < backoff
    hold_open = failed_ago is not None and failed_ago < policy.interval
    for p in periods:
        summary = p.get("production") or {}
        if summary.get("final"):
            continue
        start = parse_rfc3339(summary.get("through")) or parse_rfc3339(p.get("from"))
        if start is None:
            continue
        to = parse_rfc3339(p.get("to"))
        key = _period_key(p)
        if to is not None:  # closed: one last segment, once the scrapes are in
            end = to + timedelta(seconds=policy.settle)
            again = _next_on_slots(p, to, periods)
            if again is not None and again < end:
                end = again  # its slot served this version again: from then on, the new period's
            settle = timedelta(seconds=policy.settle)
            ready = end + settle if end < to + settle else end
            if now >= to + timedelta(seconds=policy.give_up):
                give.append(key)
            elif now < ready:
                waits.append((ready - now).total_seconds())
            elif hold_closed:
                waits.append(backoff - (failed_ago or 0.0))
            else:
                segments.append(Segment(*key, start, max(start, end), True, _slots(p)))
            continue
        # open: a segment every `interval`; the first one after a share of it that the period spreads
        first = not summary.get("through")
        next_at = start + timedelta(seconds=policy.interval * (first_share(key) if first else 1.0))
        if settled < next_at:
            waits.append(max(1.0, (next_at - settled).total_seconds()))
        elif hold_open:
            waits.append(policy.interval - (failed_ago or 0.0))
        else:
            segments.append(Segment(*key, start, settled, False, _slots(p)))
            waits.append(policy.interval)
    return Due(tuple(segments), tuple(give), max(1.0, min(waits)) if waits else None)


# ------------------------------------------------------------------------------------ merging


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def add_buckets(
    old: Sequence[Mapping[str, Any]], new: Sequence[tuple[str, float]]
) -> list[dict[str, Any]] | None:
    """Accumulated latency buckets (cumulative counts per ``le``, ascending). None: more than
    MAX_BUCKETS (latency is then unknown, never made up)."""
    acc: dict[str, float] = {}
    for b in old:
        acc[str(b["le"])] = float(b["count"])
    for le, count in new:
        key = "+Inf" if math.isinf(_le(le)) else le
        acc[key] = acc.get(key, 0.0) + max(0.0, float(count))
    if len(acc) > MAX_BUCKETS:
        return None
    return [{"le": le, "count": round(c, 3)} for le, c in sorted(acc.items(), key=lambda kv: _le(kv[0]))]


def quantile(q: float, buckets: Sequence[Mapping[str, Any]]) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative buckets: linear interpolation inside the bucket
    holding the rank, from 0 (or the previous bound); the +Inf bucket answers the highest finite bound.
    None: no observations, or no +Inf bucket (not a whole histogram)."""
    bs = sorted(((_le(str(b["le"])), float(b["count"])) for b in buckets), key=lambda x: x[0])
    if not bs or not math.isinf(bs[-1][0]) or bs[-1][1] <= 0:
        return None
    # counts must not go down with le (increases of separate series can, slightly): take the running max
    fixed: list[tuple[float, float]] = []
    top = 0.0
    for le, c in bs:
        top = max(top, c)
        fixed.append((le, top))
    rank = q * fixed[-1][1]
    lower, below = 0.0, 0.0
    for le, c in fixed:
        if c >= rank:
            if math.isinf(le):
                finite = [x for x, _ in fixed if not math.isinf(x)]
                return finite[-1] if finite else None
            if c == below:
                return le
            return lower + (le - lower) * (rank - below) / (c - below)
        lower, below = le, c
    return None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _kpis(old: Sequence[Mapping[str, Any]], new: Sequence[KpiFigures]) -> list[dict[str, Any]]:
    by_name = {str(k.get("name")): dict(k) for k in old}
    for k in new:
        cur = by_name.setdefault(k.name, {"name": k.name})
        if k.error is not None:
            cur["incomplete"] = k.error[:300]  # stays for the period: part of it was not measured
            continue
        cur["numerator"] = round(float(cur.get("numerator", 0.0)) + float(k.numerator or 0.0), 6)
        if k.denominator is not None:
            cur["denominator"] = round(float(cur.get("denominator", 0.0)) + k.denominator, 6)
        value = (
            cur["numerator"] if k.denominator is None else _ratio(cur["numerator"], cur.get("denominator"))
        )
        if value is None:
            cur.pop("value", None)
            cur.setdefault("incomplete", "denominator is 0 (nothing to divide by)")
        else:
            cur["value"] = round(value, 6)
    return [by_name[n] for n in sorted(by_name)][:MAX_KPIS]


def merge(summary: Mapping[str, Any] | None, got: SegmentFigures, source: str) -> dict[str, Any]:
    """The period's summary with one more segment. The gateway's figures of a failed segment change
    nothing but ``incomplete`` (why), so the next attempt covers the range again."""
    out = dict(summary or {})
    out["source"] = source
    if got.error is not None:
        out["incomplete"] = got.error[:512]
        return out
    requests = float(out.get("requests", 0)) + float(got.requests or 0.0)
    errors = float(out.get("errors", 0)) + float(got.errors or 0.0)
    out["requests"], out["errors"] = round(requests), round(errors)
    ratio = _ratio(errors, requests)
    if ratio is None:
        out.pop("errorRatio", None)
    else:
        out["errorRatio"] = round(min(1.0, ratio), 6)
    buckets = add_buckets(out.get("latencyBuckets") or [], got.buckets)
    if buckets is None:
        out.pop("latencyBuckets", None)
        out.pop("latencyP50Seconds", None)
        out.pop("latencyP99Seconds", None)
    else:
        out["latencyBuckets"] = buckets
        for name, q in (("latencyP50Seconds", 0.5), ("latencyP99Seconds", 0.99)):
            v = quantile(q, buckets)
            if v is None:
                out.pop(name, None)
            else:
                out[name] = round(v, 6)
    out["through"] = rfc3339(got.segment.end)
    if got.segment.final:
        out["final"] = True
    kpis = _kpis(out.get("kpis") or [], got.kpis)
    if kpis:
        out["kpis"] = kpis
    bad = [f"kpi {k['name']}: {k['incomplete']}" for k in kpis if k.get("incomplete")]
    if bad:
        out["incomplete"] = "; ".join(bad)[:512]
    else:
        out.pop("incomplete", None)
    return out


def give_up(summary: Mapping[str, Any] | None, stamp: str, source: str) -> dict[str, Any]:
    """A closed period no segment could finish in time: final, and incomplete (with the last reason)."""
    out = dict(summary or {})
    out["source"] = source
    out["final"] = True
    why = out.get("incomplete") or "not measured"
    out["incomplete"] = f"given up at {stamp}: {why}"[:512]
    return out


def apply(
    periods: Sequence[Mapping[str, Any]],
    results: Sequence[SegmentFigures],
    gave_up: Sequence[tuple[str, str, str]],
    stamp: str,
    source: str,
) -> list[dict[str, Any]]:
    """status.servingHistory with the segments merged into their periods (a result for a period that is
    no longer there is dropped) and the given-up periods made final."""
    by_key = {r.segment.key: r for r in results}
    out = []
    for p in periods:
        q = dict(p)
        key = _period_key(p)
        got = by_key.get(key)
        summary = q.get("production")
        if got is not None and (summary or {}).get("through", q.get("from")) == rfc3339(got.segment.start):
            q["production"] = merge(summary, got, source)
        elif key in gave_up:
            q["production"] = give_up(summary, stamp, source)
        out.append(q)
    return out


# ---------------------------------------------------------------------------------- the version

FIGURES = ("requests", "errors", "errorRatio", "latencyP50Seconds", "latencyP99Seconds")


@dataclass(frozen=True)
class Figures:
    """A version's production figures over every period summarised so far."""

    values: Mapping[str, float] = field(default_factory=dict)  # figure (kpi.<name> for KPIs) -> value
    incomplete: tuple[tuple[str, str], ...] = ()  # (figure, why) of what is not (wholly) known
    periods: int = 0  # periods with a summary

    @property
    def requests(self) -> float:
        return float(self.values.get("requests", 0.0))


def aggregate(periods: Sequence[Mapping[str, Any]]) -> Figures:
    """Summed counts, the error ratio of the sums, latency quantiles of the summed buckets, KPI ratios
    of summed numerators and denominators. A figure nothing measured is absent (never 0)."""
    requests = errors = 0.0
    buckets: list[dict[str, Any]] | None = []
    kpis: dict[str, list[float | None]] = {}
    incomplete: list[tuple[str, str]] = []
    n = 0
    for p in periods:
        s = p.get("production")
        if not s:
            continue
        n += 1
        where = f"{p.get('endpoint')}/{p.get('variant')} from {p.get('from')}"
        text = str(s.get("incomplete") or "")
        if text and not text.startswith("kpi "):  # the gateway's figures (KPIs say theirs below)
            incomplete += [(f, f"{where}: {text}") for f in FIGURES]
        incomplete += [
            (f"kpi.{k['name']}", f"{where}: {k['incomplete']}")
            for k in s.get("kpis") or []
            if k.get("incomplete")
        ]
        if "requests" in s:
            requests += float(s["requests"])
            errors += float(s.get("errors", 0))
        if buckets is not None and s.get("latencyBuckets"):
            buckets = add_buckets(buckets, [(str(b["le"]), float(b["count"])) for b in s["latencyBuckets"]])
        for k in s.get("kpis") or []:
            acc = kpis.setdefault(str(k["name"]), [0.0, None])
            if k.get("numerator") is not None and acc[0] is not None:
                acc[0] += float(k["numerator"])
            if k.get("denominator") is not None:
                acc[1] = (acc[1] or 0.0) + float(k["denominator"])
    values: dict[str, float] = {}
    if n and any("requests" in (p.get("production") or {}) for p in periods):
        values["requests"], values["errors"] = requests, errors
        if requests > 0:
            values["errorRatio"] = round(errors / requests, 6)
    if buckets:
        for name, q in (("latencyP50Seconds", 0.5), ("latencyP99Seconds", 0.99)):
            v = quantile(q, buckets)
            if v is not None:
                values[name] = round(v, 6)
    for name, (num, den) in kpis.items():
        v = num if den is None else _ratio(num, den)
        if v is not None:
            values[f"kpi.{name}"] = round(v, 6)
    return Figures(values, tuple(incomplete), n)
