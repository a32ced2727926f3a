"""Pure decisions of ``kubectl models drill``: when a drill is refused, the record it keeps on the
endpoint (so an interrupted drill can always be put back), the patches of its two steps, and what the
traffic it sent says (time to the first answer of the fallback, and back).

A drill is ``kubectl models rollback`` (the same plan: :func:`..actions.plan_rollback`) followed by its
inverse. Its first write carries, in the same merge patch (one atomic change), the annotation
``modelversioning.io/drill``: the id, the declared weights of every variant as found and the previous
values of the requested-by and reason annotations it overwrites. The second write puts those back and
removes the annotation. Whatever interrupts the drill between the two writes (Ctrl-C, an error, a lost
connection, a killed process), the endpoint itself says what to restore, and ``kubectl models drill
ENDPOINT --restore`` (or the drill's own ``finally``) does it; a restore never overwrites a spec that
someone else changed during the drill (it refuses and says what it found).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelversioning.api.wire import (
    DRILL_ANNOTATION,
    GITOPS_ANNOTATIONS,
    GITOPS_LABELS,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    ROLLBACK_READY_CONDITION,
)
from modelversioning.cli.models.actions import RollbackPlan, live_variants
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.views import condition, meta_of, spec_of, status_of

RESTORED_ANNOTATIONS = (REQUESTED_BY_ANNOTATION, REASON_ANNOTATION)


def gitops_marker(ep: Mapping[str, Any]) -> str | None:
    """The annotation or label saying a GitOps controller manages the endpoint (None: none seen)."""
    md = meta_of(ep)
    ann, labels = md.get("annotations") or {}, md.get("labels") or {}
    for key in GITOPS_ANNOTATIONS:
        if key in ann:
            return f"annotation {key}"
    for key in GITOPS_LABELS:
        if key in labels:
            return f"label {key}={labels[key]}"
    return None


def refusal(ep: Mapping[str, Any], *, force: bool, gitops_ok: bool) -> str | None:
    """Why this endpoint must not be drilled now (None: it may)."""
    name = meta_of(ep).get("name")
    record = (meta_of(ep).get("annotations") or {}).get(DRILL_ANNOTATION)
    if record:
        return (
            f"ModelEndpoint {name} is mid-drill (annotation {DRILL_ANNOTATION}: an earlier drill was "
            f"interrupted); put it back first: kubectl models drill {name} --restore"
        )
    marker = gitops_marker(ep)
    if marker is not None and not gitops_ok:
        return (
            f"ModelEndpoint {name} is managed by GitOps ({marker}): a drill writes the spec twice and a "
            "self-heal would put the declared weights back mid-drill (and void the measurement). Pause "
            "the self-heal first (Argo CD: turn off automated selfHeal on the Application; Flux: flux "
            "suspend kustomization ...), then pass --gitops-ok; the drill ends with the spec as it is in Git"
        )
    phase = (status_of(ep).get("rollout") or {}).get("phase")
    if phase in ("Progressing", "Paused") and not force:
        return (
            f"ModelEndpoint {name} is mid-rollout ({phase}); a drill now would move its canary: pass --force"
        )
    ready = condition(ep, ROLLBACK_READY_CONDITION)
    if (ready is None or ready.get("status") != "True") and not force:
        said = (
            f"{ready.get('reason')}: {ready.get('message')}" if ready else "not reported by the operator yet"
        )
        return (
            f"ModelEndpoint {name} is not RollbackReady ({said}); a drill would find that out under real "
            "traffic. Fix it first, or pass --force"
        )
    return None


def declared(ep: Mapping[str, Any]) -> dict[str, int]:
    """The declared weight of every live variant (the mirror's is not a traffic weight)."""
    return {str(v["name"]): int(v.get("weight", 0)) for v in live_variants(ep)}


def record(ep: Mapping[str, Any], plan: RollbackPlan, drill_id: str, started: str) -> dict[str, Any]:
    """What the endpoint keeps while the drill runs: enough to put it back without the drill."""
    ann = meta_of(ep).get("annotations") or {}
    return {
        "id": drill_id,
        "started": started,
        "target": plan.target,
        "weights": declared(ep),  # as found: what the restore puts back
        "drilled": dict(plan.after),  # what the drill wrote: a restore only undoes exactly this
        "annotations": {k: ann.get(k) for k in RESTORED_ANNOTATIONS},
    }


def start_patch(rollback_patch: Mapping[str, Any], rec: Mapping[str, Any]) -> dict[str, Any]:
    """The rollback's own patch (weights, resourceVersion, requested-by, reason) plus the record."""
    md = dict(rollback_patch.get("metadata") or {})
    md["annotations"] = {**(md.get("annotations") or {}), DRILL_ANNOTATION: json.dumps(rec, sort_keys=True)}
    return {**rollback_patch, "metadata": md}


def read_record(ep: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = (meta_of(ep).get("annotations") or {}).get(DRILL_ANNOTATION)
    if not raw:
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        raise Refused(
            f"annotation {DRILL_ANNOTATION} is not the JSON a drill writes: {raw[:200]!r}"
        ) from None
    if not isinstance(rec, dict) or not isinstance(rec.get("weights"), dict):
        raise Refused(f"annotation {DRILL_ANNOTATION} has no weights to restore: {raw[:200]!r}")
    return rec


def restored_annotations(rec: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """requested-by and reason as the drill found them (None: removed), unless requested-by named
    another user: a spec change in someone else's name is what the requested-by admission policy
    refuses (and would be a lie), so then they name ``actor`` and the drill."""
    previous = rec.get("annotations") or {}
    who = previous.get(REQUESTED_BY_ANNOTATION)
    if who is None or who == actor:
        return {k: previous.get(k) for k in RESTORED_ANNOTATIONS}
    why = f"drill {rec.get('id')}: restored as found (the last change before it was by {who})"
    return {REQUESTED_BY_ANNOTATION: actor, REASON_ANNOTATION: why[:1024]}


def restore_patch(ep: Mapping[str, Any], rec: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """The merge patch that puts the endpoint back as the drill found it: the declared weights (only
    if they are still exactly what the drill wrote, or already back as found), the annotations the
    drill overwrote (``restored_annotations``), the drill's record removed. Guarded by the current
    resourceVersion. Refused when someone else changed the weights meanwhile."""
    name = meta_of(ep).get("name")
    now = declared(ep)
    found = {str(k): int(v) for k, v in rec["weights"].items()}
    drilled = {str(k): int(v) for k, v in (rec.get("drilled") or {}).items()}
    md: dict[str, Any] = {
        "resourceVersion": meta_of(ep).get("resourceVersion"),
        "annotations": {**restored_annotations(rec, actor), DRILL_ANNOTATION: None},
    }
    if now == found:  # already back (a restore that got this far, or a GitOps sync): the record only
        return {"metadata": md}
    if now != drilled or set(now) != set(found):
        raise Refused(
            f"ModelEndpoint {name}'s weights changed during the drill ({_fmt(drilled)} written by the drill, "
            f"{_fmt(now)} now): not overwritten. To restore by hand: weights {_fmt(found)}, then remove the "
            f"annotation {DRILL_ANNOTATION}"
        )
    variants = []
    for v in spec_of(ep).get("variants") or []:
        nv = dict(v)
        if str(v.get("name")) in found:
            nv["weight"] = found[str(v["name"])]
        variants.append(nv)
    return {"spec": {"variants": variants}, "metadata": md}


def _fmt(w: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(w.items())) or "none"


# ---- what the traffic says --------------------------------------------------------------------------
Sample = tuple[float, int, str]  # (monotonic seconds, HTTP status or 0 for no answer, x-model-version)


@dataclass(frozen=True)
class Leg:
    """One step of the drill (rollback, or forward): from its patch to the route and the answers."""

    to: str  # the version traffic moves to
    routed_seconds: float | None  # the route (or status) sent 100 % as planned
    first_answer_seconds: float | None  # the first answer of `to` (None: no traffic, or none came)
    last_other_seconds: float | None  # from then on every answer is `to` (its first after the last other)
    requests: int = 0
    errors: int = 0  # non-2xx or no answer
    versions: dict[str, int] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "routedSeconds": _r(self.routed_seconds),
            "firstAnswerSeconds": _r(self.first_answer_seconds),
            "allAnswersSeconds": _r(self.last_other_seconds),
            "requests": self.requests,
            "errors": self.errors,
            "versions": dict(sorted(self.versions.items())),
        }


def _r(x: float | None) -> float | None:
    return round(x, 3) if x is not None else None


def leg(samples: Sequence[Sample], start: float, end: float, to: str, routed: float | None) -> Leg:
    """The samples sent in [start, end) read as one step to version ``to``."""
    mine = [s for s in samples if start <= s[0] < end]
    ok = [(t - start, v) for t, code, v in mine if 200 <= code < 300]
    first = next((t for t, v in ok if v == to), None)
    last = max((t for t, v in ok if v != to), default=None)  # the last answer of another version
    # from the first answer of `to` after that one on, every answer is `to`
    every = first if last is None else next((t for t, v in ok if v == to and t > last), None)
    versions: dict[str, int] = {}
    for _, code, v in mine:
        if 200 <= code < 300:
            versions[v or "?"] = versions.get(v or "?", 0) + 1
    errors = sum(1 for _, code, _ in mine if not 200 <= code < 300)
    return Leg(to, routed, first, every, len(mine), errors, versions)


@dataclass(frozen=True)
class Report:
    endpoint: str
    drill_id: str
    fallback: str  # variant
    fallback_version: str
    primary_version: str
    rollback: Leg
    forward: Leg | None  # None: not restored (interrupted and the restore failed)
    restored: bool
    traffic: str  # "sent <url>" or "none (route only)"
    notes: tuple[str, ...] = ()

    def data(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "drill": self.drill_id,
            "fallback": {"variant": self.fallback, "version": self.fallback_version},
            "from": self.primary_version,
            "timeToRestoreSeconds": _r(self.rollback.first_answer_seconds),
            "rollback": self.rollback.data(),
            "forward": self.forward.data() if self.forward else None,
            "restored": self.restored,
            "traffic": self.traffic,
            "notes": list(self.notes),
        }

    def text(self) -> str:
        def line(name: str, lg: Leg | None) -> str:
            if lg is None:
                return f"  {name}: not done"
            first = f"{lg.first_answer_seconds:.3f}s" if lg.first_answer_seconds is not None else "-"
            every = f"{lg.last_other_seconds:.3f}s" if lg.last_other_seconds is not None else "-"
            routed = f"{lg.routed_seconds:.3f}s" if lg.routed_seconds is not None else "-"
            return (
                f"  {name} -> {lg.to}: routed {routed}, first answer {first}, every answer {every}; "
                f"{lg.requests} requests, {lg.errors} errors"
            )

        head = (
            f"drill {self.drill_id} of {self.endpoint}: {self.primary_version} -> {self.fallback} "
            f"({self.fallback_version}) and back; traffic: {self.traffic}"
        )
        ttr = self.rollback.first_answer_seconds
        tail = (
            f"time to restore: {ttr:.3f}s"
            if ttr is not None
            else "time to restore: not measured (no traffic)"
        )
        state = "endpoint restored as found" if self.restored else "endpoint NOT restored: see above"
        return "\n".join([head, line("rollback", self.rollback), line("forward", self.forward), tail, state,
                          *self.notes])  # fmt: skip
