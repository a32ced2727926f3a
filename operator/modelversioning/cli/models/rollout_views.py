"""Pure views and requests of ``kubectl models rollout``: a ModelEndpoint's progressive rollout as
view data, whether it is finished, and the annotations that ask the operator for an action
(promote/abort/retry), never an edit of the spec (GitOps-safe). No API access here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.api.wire import (
    REQUESTED_BY_ANNOTATION,
    ROLLOUT_ACTION_ANNOTATION,
    ROLLOUT_ACTION_ID_ANNOTATION,
)

DONE = ("Succeeded", "Failed", "Aborted")


def rollout_view(ep: dict[str, Any]) -> dict[str, Any]:
    spec, st = ep.get("spec") or {}, ep.get("status") or {}
    strategy = (spec.get("strategy") or {}).get("canary") or {}
    ro = st.get("rollout") or {}
    declared = {v["name"]: int(v.get("weight", 0)) for v in spec.get("variants") or []}
    effective = {k: int(v) for k, v in (st.get("effectiveWeights") or {}).items()}
    generation = (ep.get("metadata") or {}).get("generation")
    return {
        "endpoint": (ep.get("metadata") or {}).get("name"),
        "canary": strategy.get("variant"),
        "baseline": strategy.get("baseline"),
        "phase": ro.get("phase", "None" if not strategy else "Pending"),
        "step": ro.get("step"),
        "steps": len(strategy.get("steps") or []),
        "message": ro.get("message", ""),
        "declared": declared,
        "stepWeights": ro.get("weights") or {},
        "effective": effective,
        "startWeights": ro.get("startWeights") or {},
        "failures": ro.get("failures", 0),
        "inconclusive": ro.get("inconclusive", 0),
        "measurements": ro.get("measurements") or [],
        "lastAction": ro.get("lastAction"),
        # the operator has seen the current spec: a phase from before `kubectl apply` is not the answer
        "current": generation is None or st.get("observedGeneration") == generation,
    }


def finished(view: dict[str, Any]) -> bool:
    return bool(view["current"]) and view["phase"] in DONE


def last_action_text(a: dict[str, Any] | None) -> str:
    if not a:
        return "last action: none"
    done = "" if a.get("applied", True) else " (not applied)"
    return f"last action: {a.get('kind')} by {a.get('by')} at {a.get('at')}{done}: {a.get('message', '')}"


def watch_exit(view: dict[str, Any], endpoint: str, timeout: float) -> tuple[int, str | None]:
    """`status -w`'s exit code once it stops watching (0 Succeeded, 1 Failed/Aborted, 3 still going)
    and the error to print, if any."""
    if not finished(view):
        return 3, f"error: the rollout of {endpoint} is still {view['phase']} after {timeout:g}s"
    return (0 if view["phase"] == "Succeeded" else 1), None


def action_patch(kind: str, action_id: str, who: str) -> dict[str, Any]:
    """The merge patch asking the operator for ``kind`` once (a fresh id), as ``who``."""
    return {
        "metadata": {
            "annotations": {
                ROLLOUT_ACTION_ANNOTATION: kind,
                ROLLOUT_ACTION_ID_ANNOTATION: action_id,
                REQUESTED_BY_ANNOTATION: who,
            }
        }
    }


def handled(obj: Mapping[str, Any] | None, action_id: str) -> bool:
    """The operator's status says it handled this very request."""
    ro = ((obj or {}).get("status") or {}).get("rollout") or {}
    return bool(ro.get("handledAction") == action_id)


def action_outcome(kind: str, who: str, endpoint: str, view: dict[str, Any]) -> tuple[list[str], bool]:
    """(the lines to print, whether the action was applied) once the operator handled it."""
    last = view.get("lastAction") or {}
    lines = [
        f"{kind} by {who}: {endpoint} is {view['phase']} at step {view['step']}/{view['steps']}",
        last.get("message") or view["message"],
    ]
    return lines, last.get("applied") is not False
