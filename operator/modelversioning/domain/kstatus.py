"""kstatus conditions (sigs.k8s.io/cli-utils/pkg/kstatus), so GitOps tools judge our objects right.

Flux's health checks use kstatus: for a custom resource it reads `Reconciling` (True: InProgress) and
`Stalled` (True: Failed), besides observedGeneration. Without them a permanently failed object (a
digest mismatch, a failed rollout) looks InProgress forever. Both are "abnormal-true" conditions:
present with status False when all is well.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelversioning.api import wire as R
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond

RECONCILING, STALLED = "Reconciling", "Stalled"

# Degraded reasons of a ModelEndpoint, and failed ArtifactVerified/StageTransition reasons of a
# ModelVersion, that no retry fixes (only a spec change or a person does): the registry's `stalls`.
# AccessDenied is not among them: a missing credentials Secret is retried and may appear.
ENDPOINT_STALLED, VERSION_STALLED = R.ENDPOINT_STALLS, R.VERSION_STALLS


def _get(conds: Iterable[Cond], type_: str) -> Cond | None:
    return next((c for c in conds if c.type == type_), None)


def for_endpoint(conds: Iterable[Cond]) -> tuple[Cond, Cond]:
    conds = list(conds)
    degraded, progressing = _get(conds, "Degraded"), _get(conds, "Progressing")
    if degraded is not None and degraded.status == TRUE and degraded.reason in ENDPOINT_STALLED:
        return (
            Cond(RECONCILING, FALSE, degraded.reason, "stalled: see Stalled"),
            Cond(STALLED, TRUE, degraded.reason, degraded.message),
        )
    if progressing is not None and progressing.status == TRUE:
        return (
            Cond(RECONCILING, TRUE, progressing.reason, progressing.message),
            Cond(STALLED, FALSE, R.NOT_STALLED, "no permanent failure"),
        )
    return (
        Cond(RECONCILING, FALSE, R.RECONCILED, "nothing in progress"),
        Cond(STALLED, FALSE, R.NOT_STALLED, "no permanent failure"),
    )


def for_version(conds: Iterable[Cond]) -> tuple[Cond, Cond]:
    conds = list(conds)
    for type_ in ("Ready", "ArtifactVerified", "StageTransition"):
        c = _get(conds, type_)
        if c is not None and c.status == FALSE and c.reason in VERSION_STALLED:
            return (
                Cond(RECONCILING, FALSE, c.reason, "stalled: see Stalled"),
                Cond(STALLED, TRUE, c.reason, c.message),
            )
    verified, stage = _get(conds, "ArtifactVerified"), _get(conds, "StageTransition")
    busy = [c for c in (verified, stage) if c is not None and (c.status == UNKNOWN or c.status == FALSE)]
    if busy:
        return (
            Cond(RECONCILING, TRUE, busy[0].reason, busy[0].message),
            Cond(STALLED, FALSE, R.NOT_STALLED, "no permanent failure"),
        )
    return (
        Cond(RECONCILING, FALSE, R.RECONCILED, "nothing in progress"),
        Cond(STALLED, FALSE, R.NOT_STALLED, "no permanent failure"),
    )
