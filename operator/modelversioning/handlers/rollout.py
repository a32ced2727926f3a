"""The rollout side of the endpoint reconciler: gather the rollout's facts (status, annotations,
stages, measurements when due), run the pure state machine (domain.rollout) and hand back the step
weights the traffic plan should aim for. Kept apart so the endpoint handler stays small.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from modelversioning.analysis import Inconclusive, PrometheusClient, QueryVars, measure
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.api.strategy import Canary, seconds
from modelversioning.api.wire import (
    REQUESTED_BY_ANNOTATION,
    ROLLOUT_ACTION_ANNOTATION,
    ROLLOUT_ACTION_ID_ANNOTATION,
)
from modelversioning.domain import rollout as RO
from modelversioning.domain.conditions import Cond


@dataclass(frozen=True)
class RolloutResult:
    weights: dict[str, int]  # step weights: replace the declared weights in the traffic plan
    below_ok: str | None  # the canary variant may take traffic one stage below requiredStage
    status: dict[str, Any]  # status.rollout
    events: tuple[tuple[str, str, str], ...]
    conditions: tuple[Cond, ...]  # override Ready/Progressing/Degraded while a rollout is not done
    requeue_after: float | None
    outcome: RO.Outcome


def _ts(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(s: Any) -> float | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def plan_of(c: Canary) -> RO.Plan:
    steps = tuple(
        RO.StepSpec(weight=s.set_weight)
        if s.set_weight is not None
        else RO.StepSpec(
            pause_seconds=seconds(s.pause.duration) if s.pause and s.pause.duration else None,
            manual=not (s.pause and s.pause.duration),
        )
        for s in c.steps
    )
    a = c.analysis
    return RO.Plan(
        canary=c.variant,
        baseline=c.baseline,
        steps=steps,
        analysis=a is not None,
        interval=seconds(a.interval) if a else 30.0,
        failure_limit=a.failure_limit if a else 0,
        inconclusive_limit=a.inconclusive_limit if a else 0,
        pause_on_inconclusive=bool(a and a.on_inconclusive == "pause"),
        max_weight_below_stage=c.max_weight_below_stage,
    )


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
            _epoch(m.get("at")) or 0.0,
        )
        for m in raw.get("measurements") or []
    )
    return RO.State(
        target=str(raw["target"]),
        phase=str(raw.get("phase", RO.PROGRESSING)),
        step=int(raw.get("step", 0)),
        step_started_at=_epoch(raw.get("stepStartedAt")) or 0.0,
        started_at=_epoch(raw.get("startedAt")) or 0.0,
        start_weights={k: int(v) for k, v in (raw.get("startWeights") or {}).items()},
        weights={k: int(v) for k, v in (raw.get("weights") or {}).items()},
        failures=int(raw.get("failures", 0)),
        inconclusive=int(raw.get("inconclusive", 0)),
        last_analysis_at=_epoch(raw.get("lastAnalysisAt")),
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
        _epoch(raw.get("at")) or 0.0,
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


def _action(annotations: dict[str, Any]) -> RO.Action | None:
    kind = str(annotations.get(ROLLOUT_ACTION_ANNOTATION, ""))
    aid = str(annotations.get(ROLLOUT_ACTION_ID_ANNOTATION, ""))
    if kind not in ("promote", "abort", "retry") or not aid:
        return None
    return RO.Action(kind, aid, str(annotations.get(REQUESTED_BY_ANNOTATION, "unknown")))


def plan_rollout(
    body: dict[str, Any],
    spec: ModelEndpointSpec,
    versions: dict[str, tuple[str | None, bool]],  # variant -> (stage, verified) of its desired version
    slots: dict[str, tuple[str, str]],  # variant -> (serving version, serving slot) from status
    settings: Settings,
    now: float | None = None,
) -> RolloutResult | None:
    """None without a strategy. Measures (queries Prometheus) only when a measurement is due."""
    if spec.strategy is None:
        return None
    now = time.time() if now is None else now
    c = spec.strategy.canary
    plan = plan_of(c)
    status = body.get("status") or {}
    mirror = spec.mirror.variant if spec.mirror else None
    live = [v for v in spec.variants if v.name != mirror]
    declared = {v.name: v.weight for v in live}
    canary = spec.variant(c.variant)
    stage, verified = versions.get(c.variant, (None, False))
    below = RO.below_stage_allowed(stage, verified, spec.required_stage, c.max_weight_below_stage)
    inp = RO.Inputs(
        plan=plan,
        declared=declared,
        target=RO.target_hash([(v.name, v.version, v.weight) for v in live]),
        effective={k: int(v) for k, v in (status.get("effectiveWeights") or {}).items()},
        canary_below_stage=below,
        now=now,
        state=state_from(status.get("rollout")),
        action=_action((body.get("metadata") or {}).get("annotations") or {}),
        strategy=RO.strategy_hash(
            spec.strategy.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        ),
    )
    if RO.analysis_due(inp) and c.analysis is not None and canary is not None:
        inp = _measured(inp, body, spec, c, slots, settings, now)
    out = RO.advance(inp)
    weights = dict(out.weights)
    if below:
        weights = RO.cap_below_stage(weights, c.variant, c.baseline, c.max_weight_below_stage or 0)
    prev = state_from(status.get("rollout"))
    promoted = out.state.promoted if out.state.promoted is not None else (prev.promoted if prev else None)
    return RolloutResult(
        weights=weights,
        below_ok=c.variant if below else None,
        status=status_of(out.state, promoted),
        events=out.events,
        conditions=RO.conditions_of(out.state),
        requeue_after=out.requeue_after,
        outcome=out,
    )


def _measured(
    inp: RO.Inputs,
    body: dict[str, Any],
    spec: ModelEndpointSpec,
    c: Canary,
    slots: dict[str, tuple[str, str]],
    settings: Settings,
    now: float,
) -> RO.Inputs:
    assert c.analysis is not None
    md = body["metadata"]
    cv, cs = slots.get(c.variant, ("", ""))
    bv, bs = slots.get(c.baseline, ("", ""))
    qv = QueryVars(md["namespace"], md["name"], c.variant, cv, cs, c.baseline, bv, bs)
    url = settings.analysis.prometheus_url

    def unconfigured(_q: str) -> float:
        raise Inconclusive("no Prometheus configured (operator setting analysis.prometheusUrl)")

    query = PrometheusClient(url, settings.analysis.timeout_seconds).query if url else unconfigured
    started = inp.state.started_at if inp.state is not None else None
    ms = measure(c.analysis.metrics, qv, query, now, started)
    return replace(inp, measurements=ms)
