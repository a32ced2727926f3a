"""The lifecycle stage machine and its promotion gates.

`spec.stage` is a request; `status.stage` is what is in effect. A transition is
made only if the graph allows it and every gate passes. Deciding is pure: the
handler gathers the facts, `decide_transition` says yes or no with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelversioning.api import wire as R


class Stage(StrEnum):
    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# Rank used for "has reached" comparisons (archived is not "above" production
# for serving purposes: an archived version never takes live traffic).
RANK: dict[Stage, int] = {Stage.CANDIDATE: 0, Stage.STAGING: 1, Stage.PRODUCTION: 2, Stage.ARCHIVED: -1}

DEFAULT_GRAPH: dict[str, frozenset[str]] = {
    Stage.CANDIDATE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED, Stage.STAGING}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}


@dataclass(frozen=True)
class StageGraph:
    """Allowed hops between stages. The four built-in stages always exist; a Model may add its own
    (e.g. ``validated``, ``approved``): ``order`` lists every stage in the order it is shown and walked."""

    edges: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_GRAPH))
    order: tuple[str, ...] = tuple(s.value for s in Stage)

    @classmethod
    def from_config(cls, edges: Mapping[str, Iterable[str]], order: Iterable[str] = ()) -> StageGraph:
        names = [s.value for s in Stage]
        for name in [*order, *edges, *(d for dsts in edges.values() for d in dsts)]:
            if name not in names:
                names.append(name)
        if order:  # the given order first, then any built-in stage it left out
            given = list(dict.fromkeys(order))
            names = given + [n for n in names if n not in given]
        parsed: dict[str, frozenset[str]] = {s: frozenset() for s in names}
        for src, dsts in edges.items():
            parsed[str(src)] = frozenset(str(d) for d in dsts)
        return cls(parsed, tuple(names))

    def allows(self, src: str, dst: str) -> bool:
        return dst in self.edges.get(src, frozenset())

    def allowed_from(self, src: str) -> list[str]:
        return sorted(self.edges.get(src, frozenset()), key=self.index)

    def index(self, stage: str) -> int:
        return self.order.index(stage) if stage in self.order else len(self.order)

    def knows(self, stage: str) -> bool:
        return stage in self.edges


def has_reached(stage: str, required: Stage) -> bool:
    """True when `stage` is at or beyond `required` on the path to production. A Model's own stages
    (not built in) carry no serving rights: they count as a candidate."""
    if stage not in RANK or stage == Stage.ARCHIVED:
        return required == Stage.CANDIDATE and stage != Stage.ARCHIVED
    return RANK[Stage(stage)] >= RANK[required]


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


# Stages that need nothing: every other stage (built-in or a Model's own) needs ArtifactVerified=True.
UNGATED = frozenset({Stage.CANDIDATE.value, Stage.ARCHIVED.value})


def decide_transition(current: str, requested: str, facts: GateFacts, graph: StageGraph) -> Decision:
    """The operator-wide gates: the graph, a verified artifact above candidate, complete lineage for
    production. A Model's own gates (``domain.gates``) come on top of these, never instead."""
    if current == requested:
        return Decision(True, R.IN_EFFECT, f"stage {current} is in effect")
    if not graph.allows(current, requested):
        allowed = ", ".join(str(s) for s in graph.allowed_from(current)) or "none"
        return Decision(
            False,
            R.TRANSITION_NOT_ALLOWED,
            f"{current} -> {requested} is not an allowed transition (from {current}: {allowed})",
        )
    if requested not in UNGATED and not facts.artifact_verified:
        return Decision(
            False,
            R.ARTIFACT_NOT_VERIFIED,
            f"{requested} requires ArtifactVerified=True; the artifact has not been verified",
        )
    if requested == Stage.PRODUCTION and not facts.lineage_complete:
        missing = ", ".join(facts.missing_lineage) or "lineage"
        return Decision(
            False, R.LINEAGE_INCOMPLETE, f"production requires complete lineage; missing: {missing}"
        )
    up = requested != Stage.ARCHIVED and graph.index(requested) > graph.index(current)
    return Decision(True, R.PROMOTED if up else R.MOVED, f"{current} -> {requested}")


def next_hop(graph: StageGraph, src: str, dst: str) -> str | None:
    """First hop of the shortest allowed path src -> dst (None if unreachable or already there)."""
    frontier: list[tuple[str, str | None]] = [(src, None)]
    seen = {src}
    while frontier:
        nxt: list[tuple[str, str | None]] = []
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
