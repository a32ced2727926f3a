"""The lifecycle stage machine and its promotion gates.

`spec.stage` is a request; `status.stage` is what is in effect. A transition is
made only if the graph allows it and every gate passes. Deciding is pure: the
handler gathers the facts, `decide_transition` says yes or no with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelversioning.domain import reasons as R


class Stage(StrEnum):
    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# Rank used for "has reached" comparisons (archived is not "above" production
# for serving purposes: an archived version never takes live traffic).
RANK: dict[Stage, int] = {Stage.CANDIDATE: 0, Stage.STAGING: 1, Stage.PRODUCTION: 2, Stage.ARCHIVED: -1}

DEFAULT_GRAPH: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED, Stage.STAGING}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}


@dataclass(frozen=True)
class StageGraph:
    edges: Mapping[Stage, frozenset[Stage]] = field(default_factory=lambda: dict(DEFAULT_GRAPH))

    @classmethod
    def from_config(cls, edges: Mapping[str, Iterable[str]]) -> StageGraph:
        parsed: dict[Stage, frozenset[Stage]] = {s: frozenset() for s in Stage}
        for src, dsts in edges.items():
            parsed[Stage(src)] = frozenset(Stage(d) for d in dsts)
        return cls(parsed)

    def allows(self, src: Stage, dst: Stage) -> bool:
        return dst in self.edges.get(src, frozenset())

    def allowed_from(self, src: Stage) -> list[Stage]:
        return sorted(self.edges.get(src, frozenset()), key=lambda s: list(Stage).index(s))


def has_reached(stage: Stage, required: Stage) -> bool:
    """True when `stage` is at or beyond `required` on the path to production."""
    if stage is Stage.ARCHIVED:
        return False
    return RANK[stage] >= RANK[required]


def one_below(stage: Stage) -> Stage:
    order = [Stage.CANDIDATE, Stage.STAGING, Stage.PRODUCTION]
    if stage not in order:
        return stage
    return order[max(0, order.index(stage) - 1)]


@dataclass(frozen=True)
class GateFacts:
    """What the handler observed; everything the decision needs."""

    artifact_verified: bool
    lineage_complete: bool
    missing_lineage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # CamelCase, for a condition
    message: str


def decide_transition(current: Stage, requested: Stage, facts: GateFacts, graph: StageGraph) -> Decision:
    if current == requested:
        return Decision(True, R.IN_EFFECT, f"stage {current} is in effect")
    if not graph.allows(current, requested):
        allowed = ", ".join(str(s) for s in graph.allowed_from(current)) or "none"
        return Decision(
            False,
            R.TRANSITION_NOT_ALLOWED,
            f"{current} -> {requested} is not an allowed transition (from {current}: {allowed})",
        )
    if requested in (Stage.STAGING, Stage.PRODUCTION) and not facts.artifact_verified:
        return Decision(
            False,
            R.ARTIFACT_NOT_VERIFIED,
            f"{requested} requires ArtifactVerified=True; the artifact has not been verified",
        )
    if requested is Stage.PRODUCTION and not facts.lineage_complete:
        missing = ", ".join(facts.missing_lineage) or "lineage"
        return Decision(
            False, R.LINEAGE_INCOMPLETE, f"production requires complete lineage; missing: {missing}"
        )
    return Decision(
        True, R.PROMOTED if RANK[requested] > RANK[current] else R.MOVED, f"{current} -> {requested}"
    )


def next_hop(graph: StageGraph, src: Stage, dst: Stage) -> Stage | None:
    """First hop of the shortest allowed path src -> dst (None if unreachable or already there)."""
    frontier: list[tuple[Stage, Stage | None]] = [(src, None)]
    seen = {src}
    while frontier:
        nxt: list[tuple[Stage, Stage | None]] = []
        for node, first in frontier:
            for n in graph.allowed_from(node):
                if n in seen:
                    continue
                hop = first or n
                if n == dst:
                    return hop
                seen.add(n)
                nxt.append((n, hop))
        frontier = nxt
    return None
