"""The rollout's facts, for the endpoint reconciler's gather: the strategy as the state machine reads
it, status.rollout read back, the manual action annotations, the canary's version and, when a
measurement is due, the measurements (Prometheus is queried here, in gather; each result carries its
time). Nothing is decided here: ``domain.endpoint_rollout.decide_rollout`` decides from these facts.
"""

from __future__ import annotations

from dataclasses import replace
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
from modelversioning.domain.endpoint_facts import RecordTarget, RolloutFacts
from modelversioning.domain.endpoint_rollout import inputs
from modelversioning.domain.rollout_status import state_from


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


def _action(annotations: dict[str, Any]) -> RO.Action | None:
    kind = str(annotations.get(ROLLOUT_ACTION_ANNOTATION, ""))
    aid = str(annotations.get(ROLLOUT_ACTION_ID_ANNOTATION, ""))
    if kind not in ("promote", "abort", "retry") or not aid:
        return None
    return RO.Action(kind, aid, str(annotations.get(REQUESTED_BY_ANNOTATION, "unknown")))


def rollout_facts(
    body: dict[str, Any],
    spec: ModelEndpointSpec,
    versions: dict[str, tuple[str | None, bool]],  # variant -> (stage, verified) of its desired version
    slots: dict[str, tuple[str, str]],  # variant -> (serving version, serving slot) from status
    settings: Settings,
    now: float,
    record_on: RecordTarget | None = None,
) -> RolloutFacts | None:
    """None without a strategy. Measures (queries Prometheus) only when a measurement is due."""
    if spec.strategy is None:
        return None
    c = spec.strategy.canary
    md = body.get("metadata") or {}
    status = body.get("status") or {}
    mirror = spec.mirror.variant if spec.mirror else None
    live = [v for v in spec.variants if v.name != mirror]
    stage, verified = versions.get(c.variant, (None, False))
    rf = RolloutFacts(
        endpoint=str(md.get("name", "")),
        plan=plan_of(c),
        declared={v.name: v.weight for v in live},
        target=RO.target_hash([(v.name, v.version, v.weight) for v in live]),
        strategy=RO.strategy_hash(
            spec.strategy.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        ),
        effective={k: int(v) for k, v in (status.get("effectiveWeights") or {}).items()},
        now=now,
        state=state_from(status.get("rollout")),
        action=_action(md.get("annotations") or {}),
        canary_stage=stage,
        canary_verified=verified,
        required_stage=spec.required_stage,
        promote_on_success=c.promote_on_success,
        record_on=record_on,
    )
    if RO.analysis_due(inputs(rf)) and c.analysis is not None and spec.variant(c.variant) is not None:
        rf = replace(rf, measurements=_measure(rf, body, c, slots, settings))
    return rf


def _measure(
    rf: RolloutFacts, body: dict[str, Any], c: Canary, slots: dict[str, tuple[str, str]], settings: Settings
) -> tuple[RO.Measurement, ...]:
    """Every metric of the analysis, queried now and judged (analysis.measure; its bounds and the
    client's timeout as they are)."""
    assert c.analysis is not None
    md = body["metadata"]
    cv, cs = slots.get(c.variant, ("", ""))
    bv, bs = slots.get(c.baseline, ("", ""))
    qv = QueryVars(md["namespace"], md["name"], c.variant, cv, cs, c.baseline, bv, bs)
    url = settings.analysis.prometheus_url

    def unconfigured(_q: str) -> float:
        raise Inconclusive("no Prometheus configured (operator setting analysis.prometheusUrl)")

    query = PrometheusClient(url, settings.analysis.timeout_seconds).query if url else unconfigured
    started = rf.state.started_at if rf.state is not None else None
    return measure(c.analysis.metrics, qv, query, rf.now, started)
