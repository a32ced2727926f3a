"""A Model's own promotion gates, on top of the operator-wide ones (``domain.stages``).

Each transition of a Model's stage graph may name:

- ``lineage``: lineage fields that must be present (``codeCommit``, ``dataset``, ``author``, ...);
- ``metrics``: comparisons such as ``auc >= production.auc - 0.005`` (against every other version
  in production now) or ``latency_p99_ms <= 20`` (a bound), on the version's offline metrics; and
  ``served.<figure> <op> <number> [over <N> requests]`` on the version's own production record
  (``domain.production.aggregate`` of its serving periods), e.g. ``served.errorRatio <= 0.01 over
  1000 requests``. ``served.`` on the left is reserved for this (an offline metric cannot be named
  so); ``production.`` on the right still means "the versions in production now". A record that does
  not hold the figure, holds it incomplete, or counts fewer than N requests blocks
  (``ProductionRecordIncomplete``), never passes;
- ``approvals``: how many distinct people must have approved this version, with this digest and
  serving digest, for the target stage (ModelApproval objects; the API server records who made each
  one). Which approvals count is ``domain.approvals``; the message names those that do not, and why.

``check(src, dst, rules, facts)`` returns the first gate that blocks, with the numbers, or None.
Pure: the handler gathers ``CandidateFacts`` from the watch cache.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from modelversioning.api import wire as R
from modelversioning.domain.stages import Decision

# "<metric> <op> <number>" or "<metric> <op> production.<metric> [+|- <number>]"
METRIC_NAME = r"[A-Za-z_][A-Za-z0-9_.:-]*"
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
GATE_PATTERN = (
    rf"^\s*({METRIC_NAME})\s*(>=|<=|>|<|==)\s*"
    rf"(?:production\.({METRIC_NAME})\s*(?:([+-])\s*({NUMBER}))?|({NUMBER}))\s*$"
)
_GATE_RE = re.compile(GATE_PATTERN)
# "served.<figure> <op> <number> [over <N> requests]": the version's own production record
SERVED_FIGURE = r"requests|errors|errorRatio|latencyP(?:50|99)Seconds|kpi\.[a-z][a-zA-Z0-9_]{0,62}"
SERVED_PATTERN = (
    rf"^\s*served\.({SERVED_FIGURE})\s*(>=|<=|>|<|==)\s*({NUMBER})"
    r"(?:\s+over\s+([0-9]{1,12})\s+requests)?\s*$"
)
SERVED_PREFIX = r"^\s*served\."
_SERVED_RE = re.compile(SERVED_PATTERN)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_NEGATED = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!="}


@dataclass(frozen=True)
class MetricGate:
    """One parsed comparison; ``ref`` set: against production's ``ref`` plus ``offset``."""

    metric: str
    op: str
    bound: float = 0.0
    ref: str | None = None
    offset: float = 0.0
    served: bool = False  # on the version's production record (served.<figure>)
    min_requests: int = 0  # served: the record must count at least this many requests

    @classmethod
    def parse(cls, text: str) -> MetricGate:
        if re.match(SERVED_PREFIX, text):
            s = _SERVED_RE.match(text)
            if s is None:
                raise ValueError(
                    f"production gate {text!r} must read 'served.<figure> <op> <number> [over <N> requests]' "
                    "with figure one of requests, errors, errorRatio, latencyP50Seconds, latencyP99Seconds, "
                    "kpi.<name> and op one of >= <= > < =="
                )
            figure, op, bound, n = s.groups()
            return cls(figure, op, bound=float(bound), served=True, min_requests=int(n or 0))
        m = _GATE_RE.match(text)
        if m is None:
            raise ValueError(
                f"metric gate {text!r} must read '<metric> <op> <number>' or "
                "'<metric> <op> production.<metric> [+|- <number>]' with op one of >= <= > < =="
            )
        metric, op, ref, sign, off, bound = m.groups()
        if ref is not None:
            offset = float(off or 0.0) * (-1 if sign == "-" else 1)
            return cls(metric, op, ref=ref, offset=offset)
        return cls(metric, op, bound=float(bound))

    def __str__(self) -> str:
        if self.served:
            over = f" over {self.min_requests} requests" if self.min_requests else ""
            return f"served.{self.metric} {self.op} {_num(self.bound)}{over}"
        if self.ref is None:
            return f"{self.metric} {self.op} {_num(self.bound)}"
        off = f" {'-' if self.offset < 0 else '+'} {_num(abs(self.offset))}" if self.offset else ""
        return f"{self.metric} {self.op} production.{self.ref}{off}"


@dataclass(frozen=True)
class TransitionRule:
    """The gates of one hop (``src`` None: from any stage) of a Model's graph."""

    dst: str
    src: str | None = None
    lineage: tuple[str, ...] = ()
    metrics: tuple[MetricGate, ...] = ()
    approvals: int = 0

    def applies(self, src: str, dst: str) -> bool:
        return self.dst == dst and self.src in (None, src)


@dataclass(frozen=True)
class CandidateFacts:
    """What the gates look at, as observed."""

    version: str
    digest: str
    lineage: Mapping[str, object]  # spec.lineage as stored (camelCase keys)
    metrics: Mapping[str, float]
    production: tuple[tuple[str, Mapping[str, float]], ...] = ()  # other versions in production now
    approvals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # stage -> approvers that count
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # stage -> "who (why not)"
    # the version's production record (domain.production.aggregate): figure -> value, and what of it is
    # incomplete, as (figure, why); a figure absent is unknown, never 0
    served: Mapping[str, float] = field(default_factory=dict)
    served_incomplete: tuple[tuple[str, str], ...] = ()


def check(src: str, dst: str, rules: tuple[TransitionRule, ...], facts: CandidateFacts) -> Decision | None:
    """The first of the Model's gates on src -> dst that blocks (lineage, metrics, approvals), or None."""
    for rule in rules:
        if not rule.applies(src, dst):
            continue
        missing = [f"lineage.{f}" for f in rule.lineage if not facts.lineage.get(f)]
        if missing:
            return Decision(
                False, R.LINEAGE_INCOMPLETE, f"{src} -> {dst} requires {', '.join(missing)} (missing)"
            )
        failed = [why for g in rule.metrics if not g.served and (why := metric_failure(g, facts)) is not None]
        served = [got for g in rule.metrics if g.served and (got := served_failure(g, facts)) is not None]
        if failed or any(not missing for missing, _ in served):
            why = "; ".join(failed + [w for _, w in served])
            return Decision(False, R.METRIC_GATE_FAILED, f"{src} -> {dst} blocked by metric gate: {why}")
        if served:
            why = "; ".join(w for _, w in served)
            return Decision(False, R.PRODUCTION_RECORD_INCOMPLETE, f"{src} -> {dst} blocked: {why}")
        have = facts.approvals.get(dst, ())
        if len(have) < rule.approvals:
            who = f" ({', '.join(have)})" if have else ""
            nope = facts.refused.get(dst, ())
            more = f" and {len(nope) - 5} more" if len(nope) > 5 else ""
            not_counted = f"; not counted: {', '.join(nope[:5])}{more}" if nope else ""
            return Decision(
                False,
                R.APPROVAL_REQUIRED,
                f"{src} -> {dst} needs {rule.approvals} distinct approvals of {facts.version} "
                f"(sha256 {facts.digest[:12]}) for {dst}; has {len(have)}{who}{not_counted}",
            )
    return None


def metric_failure(gate: MetricGate, facts: CandidateFacts) -> str | None:
    """Why ``gate`` fails for the candidate, with the numbers (None: it passes)."""
    if gate.metric not in facts.metrics:
        return f"{gate.metric} is not among the version's metrics (gate {gate})"
    value = float(facts.metrics[gate.metric])
    test = _OPS[gate.op]
    if gate.ref is None:
        if test(value, gate.bound):
            return None
        return f"{gate.metric} {_num(value)} {_NEGATED[gate.op]} {_num(gate.bound)}"
    for version, metrics in facts.production:  # against every version in production now
        if gate.ref not in metrics:
            return f"production {version} has no {gate.ref} to compare with (gate {gate})"
        ref = float(metrics[gate.ref])
        if not test(value, ref + gate.offset):
            off = f" {'-' if gate.offset < 0 else '+'} {_num(abs(gate.offset))}" if gate.offset else ""
            return f"{gate.metric} {_num(value)} {_NEGATED[gate.op]} production {_num(ref)}{off} ({version})"
    return None  # nothing in production: nothing to be worse than


def served_failure(gate: MetricGate, facts: CandidateFacts) -> tuple[bool, str] | None:
    """Why a ``served.`` gate blocks: (True, why) when the record cannot tell (missing, incomplete,
    too few requests), (False, why) when the figure is known and fails the bound; None: it passes."""
    incomplete = [why for fig, why in facts.served_incomplete if fig == gate.metric]
    if incomplete:
        more = f" (and {len(incomplete) - 1} more)" if len(incomplete) > 1 else ""
        return True, f"served.{gate.metric} is incomplete: {incomplete[0]}{more} (gate {gate})"
    if gate.metric not in facts.served:
        return True, f"served.{gate.metric}: the production record has no such figure yet (gate {gate})"
    requests = float(facts.served.get("requests", 0.0))
    if requests < gate.min_requests:
        return True, f"served.requests {_num(requests)} < {gate.min_requests} needed (gate {gate})"
    value = float(facts.served[gate.metric])
    if _OPS[gate.op](value, gate.bound):
        return None
    return False, f"served.{gate.metric} {_num(value)} {_NEGATED[gate.op]} {_num(gate.bound)} (gate {gate})"


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.3g}"
