"""What a ModelVersion's annotations say, read as facts for its reconciler's gather: who asked for the
stage (``stage_actor``), the stage a rollout granted (``grant_from``), the rollout record on it
(``rollouts_from``) and the lineage quarantine mark (``quarantine_mark``). Pure reads of the object; what
they mean is decided in ``domain/`` (``domain.version_stage``, ``domain.quarantine``)."""

from __future__ import annotations

import json
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.wire import (
    PROMOTION_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
    ROLLOUT_RECORD_ANNOTATION,
)
from modelversioning.domain.quarantine import Mark, in_force
from modelversioning.domain.stages import Stage
from modelversioning.domain.version_stage import Grant

__all__ = ["UNATTRIBUTED", "grant_from", "quarantine_mark", "rollouts_from", "stage_actor"]


def grant_from(annotations: dict[str, Any]) -> Grant | None:
    raw = annotations.get(PROMOTION_ANNOTATION)
    if not raw:
        return None
    try:
        g = json.loads(raw)
        return Grant(Stage(g["to"]), Stage(g["from"]), Stage(g["specStage"]), str(g["by"]), str(g["reason"]))
    except (ValueError, KeyError, TypeError):
        return None


def rollouts_from(annotations: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    raw = annotations.get(ROLLOUT_RECORD_ANNOTATION)
    if not raw:
        return ()
    try:
        rec = json.loads(raw)
    except ValueError:
        return ()
    return (rec,) if isinstance(rec, dict) and rec.get("endpoint") and rec.get("at") else ()


UNATTRIBUTED = f"unknown (no {REQUESTED_BY_ANNOTATION} for this stage)"


def stage_actor(body: dict[str, Any], requested: str, *, enforced: bool = False) -> str:
    """Who asked for `requested`: the requested-by annotation when it was given for that stage.

    ``enforced`` (observed now: the chart's requested-by policy is bound and denies; handlers.admission):
    every change of spec.stage by anyone but the operator carried requested-by == the authenticated
    user, so the annotation is an identity; without it the actor is UNATTRIBUTED, never a field manager
    (a name the client chooses: ``--field-manager=ceo@example.com``, or a later server-side apply of
    the same stage, would be recorded). Not enforced (no admission, or its binding deleted as
    break-glass): the annotation is any string, marked unverified, and the field manager that last
    wrote spec.stage is the fallback, marked unverified too."""
    md = body.get("metadata") or {}
    ann = md.get("annotations") or {}
    who = ann.get(REQUESTED_BY_ANNOTATION)
    if who and ann.get(REQUESTED_STAGE_ANNOTATION, requested) == requested:
        return str(who) if enforced else f"{who} (unverified requested-by)"
    if enforced:
        return UNATTRIBUTED
    best: tuple[str, str] | None = None
    for mf in md.get("managedFields") or []:
        fields = (mf.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:stage" in fields:
            t = mf.get("time") or ""
            if best is None or t >= best[0]:
                op = mf.get("operation", "").lower()
                best = (t, f"{mf.get('manager', 'unknown')} ({op}; unverified field manager)")
    return best[1] if best else "unknown"


def quarantine_mark(ann: dict[str, Any], enforced: bool) -> Mark:
    """The quarantine annotations as a Mark (domain.quarantine). quarantined-by is an identity only while
    the chart's requested-by policy is observed enforced (it refuses a change of the quarantine
    annotations that does not name the authenticated user); otherwise it is any string, marked so."""
    who = str(ann.get(R.QUARANTINED_BY_ANNOTATION) or "")
    if who and not enforced:
        who = f"{who} (unverified quarantined-by)"
    return Mark(
        in_force(ann.get(R.QUARANTINED_ANNOTATION)),
        str(ann.get(R.QUARANTINE_REASON_ANNOTATION) or ""),
        who or f"unknown (no {R.QUARANTINED_BY_ANNOTATION})",
    )
