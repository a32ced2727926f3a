"""status.rollout both ways: read back into the state machine's ``State`` (gather) and written from
it (the status builder). A restarted operator reads exactly what it wrote, so it resumes at the same
step with the same weights."""

from __future__ import annotations

from typing import Any

from modelversioning.domain import rollout as RO
from modelversioning.domain.timestamps import parse_epoch, rfc3339_ms


def _ts(t: float | None) -> str | None:
    return None if t is None else rfc3339_ms(t)


def state_from(raw: Any) -> RO.State | None:
    if not isinstance(raw, dict) or not raw.get("target"):
        return None
    ms = tuple(
        RO.Measurement(
            str(m.get("metric", "")),
            str(m.get("verdict", RO.INCONCLUSIVE)),
            m.get("value"),
            m.get("baseline"),
            str(m.get("message", "")),
            parse_epoch(m.get("at")) or 0.0,
        )
        for m in raw.get("measurements") or []
    )
    return RO.State(
        target=str(raw["target"]),
        phase=str(raw.get("phase", RO.PROGRESSING)),
        step=int(raw.get("step", 0)),
        step_started_at=parse_epoch(raw.get("stepStartedAt")) or 0.0,
        started_at=parse_epoch(raw.get("startedAt")) or 0.0,
        start_weights={k: int(v) for k, v in (raw.get("startWeights") or {}).items()},
        weights={k: int(v) for k, v in (raw.get("weights") or {}).items()},
        failures=int(raw.get("failures", 0)),
        inconclusive=int(raw.get("inconclusive", 0)),
        last_analysis_at=parse_epoch(raw.get("lastAnalysisAt")),
        passed_since_step=bool(raw.get("passedSinceStep", False)),
        measurements=ms,
        handled_action=raw.get("handledAction"),
        message=str(raw.get("message", "")),
        promoted=raw.get("promoted"),
        strategy=raw.get("strategy"),
        last_action=_last_action(raw.get("lastAction")),
    )


def _last_action(raw: Any) -> RO.LastAction | None:
    if not isinstance(raw, dict) or not raw.get("kind"):
        return None
    return RO.LastAction(
        str(raw["kind"]),
        str(raw.get("by", "unknown")),
        parse_epoch(raw.get("at")) or 0.0,
        bool(raw.get("applied", True)),
        str(raw.get("message", "")),
    )


def status_of(st: RO.State, promoted: bool | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": st.target,
        "phase": st.phase,
        "step": st.step,
        "stepStartedAt": _ts(st.step_started_at),
        "startedAt": _ts(st.started_at),
        "startWeights": dict(st.start_weights),
        "weights": dict(st.weights),
        "failures": st.failures,
        "inconclusive": st.inconclusive,
        "lastAnalysisAt": _ts(st.last_analysis_at),
        "passedSinceStep": st.passed_since_step,
        "measurements": [
            {
                "metric": m.metric,
                "at": _ts(m.at),
                "verdict": m.verdict,
                "value": m.value,
                "baseline": m.baseline,
                "message": m.message[:1024],
            }
            for m in st.measurements
        ],
        "handledAction": st.handled_action,
        "lastAction": None
        if st.last_action is None
        else {
            "kind": st.last_action.kind,
            "by": st.last_action.actor,
            "at": _ts(st.last_action.at),
            "applied": st.last_action.applied,
            "message": st.last_action.message[:1024],
        },
        "strategy": st.strategy,
        "message": st.message[:2048],
        "promoted": promoted,
    }
    return {k: v for k, v in out.items() if v is not None}
