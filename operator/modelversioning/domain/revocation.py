"""Withdrawal and revocation: when a version has lost its authority to serve, and what a route does then.

Why a variant is ineligible falls in one of two classes:

- *withdrawn*: the version that carries its traffic was revoked (the revoked annotation, set by
  ``kubectl models revoke`` together with spec.stage archived; honoured at once, before the stage walk
  records anything), or quarantined (``domain.quarantine``: its lineage is bad; no spec is written, and
  lifting it gives the authority back), or its stage is archived, or it was demoted below what the
  variant needs (requiredStage; a mirror or a bounded canary one lower). Authority is gone: its
  traffic never stays.
- *operational*: anything else (not verified yet, a store that changed, pods not ready, a child
  conflict, a failing new slot). The pods that verified the pinned digest keep the traffic they have,
  and the endpoint reports Degraded, as before.

A withdrawn variant's share goes to the other eligible variants (``domain.traffic``). When nothing
eligible remains, the route would be held as it is; if it still carries a withdrawn variant's share
(or was closed already), it is *closed* instead: it answers ``UNAVAILABLE_STATUS`` with the header
``x-model-unavailable: <why>`` (revoked, quarantined, archived, below-required-stage) and reaches no model.

The version reconciler's side: archiving a version that an endpoint routes traffic to is refused
(``ArchiveWhileServing``) unless it is a revocation (``archive_guard``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelversioning.api import wire as R
from modelversioning.domain.endpoint_facts import VariantFacts, VersionFacts
from modelversioning.domain.stages import Decision, Stage, has_reached


def pulled(mv: VersionFacts) -> str:
    """Revoked or quarantined: counted on whatever object has the version's name now (fails closed);
    an x-model-unavailable value or ""."""
    if mv.revoked is not None:
        return R.UNAVAILABLE_REVOKED
    if mv.quarantined is not None:
        return R.UNAVAILABLE_QUARANTINED
    return ""


def pulled_message(mv: VersionFacts) -> str:
    if mv.revoked is not None:
        return f"{mv.name} was revoked: {mv.revoked}"
    return f"{mv.name} is quarantined: {mv.quarantined}"


def withdrawal(mv: VersionFacts | None, need: Stage) -> str:
    """Why ``mv`` may no longer take traffic that needs stage ``need``: an x-model-unavailable value,
    or "" (not withdrawn; a version without a stage yet never had authority to lose)."""
    if mv is None:
        return ""
    if value := pulled(mv):
        return value
    if mv.stage == Stage.ARCHIVED:
        return R.UNAVAILABLE_ARCHIVED
    if mv.stage is not None and not has_reached(mv.stage, need):
        return R.UNAVAILABLE_BELOW_STAGE
    return ""


def serving_withdrawal(v: VariantFacts, need: Stage) -> str:
    """Withdrawal of the version that carries the variant's traffic now (its pinned slot). A revocation
    counts on whatever ModelVersion has that name now; a stage only on the very object that was pinned
    (a re-created one is ModelVersionReplaced: its pods still run the digest verified when pinned)."""
    pin, mv = v.pin, v.pinned_mv
    if pin is None or v.pinned is None or not v.pinned.exists or mv is None:
        return ""
    if value := pulled(mv):
        return value
    if (mv.uid, mv.digest) != (pin.uid, pin.digest):
        return ""
    return withdrawal(mv, need)


def reason_of(value: str) -> str:
    """The condition/variant reason for an x-model-unavailable value."""
    named = {R.UNAVAILABLE_REVOKED: R.REVOKED, R.UNAVAILABLE_QUARANTINED: R.QUARANTINED}
    return named.get(value, R.WITHDRAWN)


def most_severe(values: Iterable[str]) -> str:
    present = set(values)
    return next((v for v in R.UNAVAILABLE_VALUES if v in present), "")


@dataclass(frozen=True)
class Withdrawn:
    """A variant whose serving version was withdrawn, as the closure decision sees it."""

    name: str
    value: str  # x-model-unavailable value
    message: str


def closure(
    withdrawn: Sequence[Withdrawn],
    previous_weights: Mapping[str, int],
    kept: bool,
    previous_closed: str,
) -> tuple[str, str] | None:
    """(x-model-unavailable value, message) when the route must close, else None.

    ``kept``: the route would otherwise keep what it carries (nothing is eligible, a canary below the
    stage cannot take the rest, or the declared split is invalid). It closes when what it keeps gives a
    withdrawn variant a share, and stays closed while nothing eligible reopens it."""
    if not kept:
        return None
    carrying = [w for w in withdrawn if int(previous_weights.get(w.name, 0)) > 0]
    if not carrying and not previous_closed:
        return None
    named = carrying or list(withdrawn)
    value = most_severe(w.value for w in named) or previous_closed
    why = "; ".join(f"{w.name}: {w.message}" for w in named) or "no variant is eligible yet"
    return value, (
        f"{why}; nothing eligible can take the traffic: the route answers {R.UNAVAILABLE_STATUS} with "
        f"{R.HEADER_UNAVAILABLE}: {value}"
    )


def archive_guard(dst: str, revoked: bool, serving: Sequence[tuple[str, int, bool]]) -> Decision | None:
    """A hop to archived while an endpoint routes traffic to the version ((endpoint, weight, mirror)
    of status.servedBy): refused unless it is a revocation, which pulls it from every route first."""
    if dst != Stage.ARCHIVED or revoked:
        return None
    users = sorted({e for e, weight, mirror in serving if weight > 0 or mirror})
    if not users:
        return None
    return Decision(
        False,
        R.ARCHIVE_WHILE_SERVING,
        f"ModelEndpoint {', '.join(users)} still route traffic to this version; archiving it would "
        "leave them serving an archived model. Move their traffic first, or pull it from every route at "
        "once with `kubectl models revoke <model> <version> --reason ...` (their routes close with "
        f"{R.UNAVAILABLE_STATUS} where nothing else is eligible)",
    )
