"""Pure decisions of ``kubectl models revoke``: the patch to send, where a revocation stands and every
message the command prints. Objects in (dicts), data, a message or :class:`Refused` out; no API access
here (``commands/lifecycle.py`` talks to the cluster).

A revocation is one write on the ModelVersion: the annotation ``modelversioning.io/revoked`` (the
reason) with spec.stage archived and who asked. The operator honours the annotation at once: every
endpoint drops the version from its route in its next route update (a route with nothing else eligible
closes: 503 with ``x-model-unavailable: revoked``), and the stage walk to archived is not refused for a
version that still serves, as a plain archive is. It only removes authority, so it is never gated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api.wire import (
    HEADER_UNAVAILABLE,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
    REVOKED_ANNOTATION,
    UNAVAILABLE_REVOKED,
    UNAVAILABLE_STATUS,
)
from modelversioning.cli.models.errors import EXIT_TIMEOUT, EXIT_USAGE, Refused
from modelversioning.cli.models.views import status_of

ARCHIVED = "archived"
MAX_REASON = 1024  # the history entry's limit (the operator cuts a longer one)


def revoke_reason(reason: str | None) -> str:
    """The reason, required: it is what every closed route's status and the history say."""
    text = (reason or "").strip()
    if not text:
        raise Refused("--reason is required: say why the version is revoked (it is recorded)", EXIT_USAGE)
    return text[:MAX_REASON]


def revoke_patch(actor: str, reason: str) -> dict[str, Any]:
    """JSON merge patch: the revoked annotation, spec.stage archived, and who asked and why."""
    return {
        "metadata": {
            "annotations": {
                REVOKED_ANNOTATION: reason,
                REQUESTED_BY_ANNOTATION: actor,
                REQUESTED_STAGE_ANNOTATION: ARCHIVED,
                REASON_ANNOTATION: f"revoked: {reason}",
            }
        },
        "spec": {"stage": ARCHIVED},
    }


def routing(mv: Mapping[str, Any] | None) -> tuple[str, ...]:
    """`endpoint/variant` of every route that still sends this version traffic (status.servedBy: a
    weight, or mirrored copies)."""
    served = status_of(mv or {}).get("servedBy") or []
    return tuple(
        f"{s.get('endpoint')}/{s.get('variant')}"
        for s in served
        if int(s.get("weight") or 0) > 0 or s.get("mirror")
    )


@dataclass(frozen=True)
class RevokeState:
    done: bool
    stage: str | None  # status.stage now
    routed: tuple[str, ...]  # endpoint/variant still routing it


def revoke_state(mv: Mapping[str, Any] | None) -> RevokeState:
    """Done once no route sends the version anything and its stage is archived."""
    stage = status_of(mv or {}).get("stage")
    routed = routing(mv)
    return RevokeState(not routed and stage == ARCHIVED, stage, routed)


def revoke_data(name: str, reason: str, before: tuple[str, ...], state: RevokeState | None) -> dict[str, Any]:
    """What the command prints with -o yaml/json."""
    return {
        "modelVersion": name,
        "revoked": True,
        "reason": reason,
        "stage": state.stage if state else None,
        "pulledFrom": list(before),
        "stillRouted": list(state.routed) if state else None,
        "result": "done" if state and state.done else "requested",
    }


def revoke_text(name: str, reason: str, before: tuple[str, ...], state: RevokeState | None) -> str:
    where = ", ".join(before) or "no endpoint"
    head = f"{name} revoked ({reason}); pulled from {where}"
    if state is None:
        return f"{head}: requested; the operator drops it from every route in its next route update"
    return (
        f"{head}; stage {state.stage}. A route with nothing else eligible answers {UNAVAILABLE_STATUS} "
        f"with {HEADER_UNAVAILABLE}: {UNAVAILABLE_REVOKED}"
    )


def revoke_timeout(name: str, timeout: float, last: RevokeState | None) -> Refused:
    where = ""
    if last is not None:
        where = f"; stage is {last.stage}, still routed by {', '.join(last.routed) or 'none'}"
    return Refused(
        f"timed out after {timeout:g}s waiting for every route to drop {name}{where}", EXIT_TIMEOUT
    )
