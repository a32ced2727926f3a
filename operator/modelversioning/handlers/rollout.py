"""The rollout's facts, for the endpoint reconciler's gather: the strategy as the state machine reads
it, status.rollout read back, the manual action annotations, the canary's version and, when a
measurement is due, the measurement the analysis pool finished for it. Nothing is decided here:
``domain.endpoint_rollout.decide_rollout`` decides from these facts.

Prometheus is never queried here: a due measurement is *submitted* to the analysis pool
(``analysis.pool``: its own threads, fair across namespaces) and this reconcile goes on without it;
the finished job re-queues the endpoint and a later reconcile takes its result. A weight edit or a
rollback never waits for a measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

from modelversioning import metrics
from modelversioning.analysis import Inconclusive, PrometheusClient, QueryVars, measure
from modelversioning.analysis.pool import REFUSED, AnalysisPool, Job, Result
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
    pool: AnalysisPool | None = None,
    clock: Callable[[], float] = time.time,
) -> RolloutFacts | None:
    """None without a strategy. When a measurement is due: the pool's finished one for it, or (none
    yet) a job submitted to `pool` and no measurement (without a pool: none)."""
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
    due = RO.analysis_due(inputs(rf)) and c.analysis is not None and spec.variant(c.variant) is not None
    if due and pool is not None:
        got = _measured(pool, _job(rf, body, c, slots, settings, clock))
        if got is None:
            rf = replace(rf, measuring=True)
        else:
            rf = replace(rf, measurements=got.measurements, measured_share=got.share)
    return rf


def _measured(pool: AnalysisPool, job: Job) -> Result | None:
    """The pool's finished measurement of `job`'s ticket, or None after submitting the job. Two dict
    operations under the pool's lock: the time spent here is the reconcile's whole wait for the
    analysis (modelversioning_analysis_reconcile_wait_seconds)."""
    started = time.perf_counter()
    got = pool.take(job.uid, job.ticket)
    if got is None and pool.submit(job) == REFUSED:
        metrics.ANALYSIS_REFUSED.labels(job.namespace).inc()
    metrics.ANALYSIS_RECONCILE_WAIT.observe(time.perf_counter() - started)
    return got


def _job(
    rf: RolloutFacts,
    body: dict[str, Any],
    c: Canary,
    slots: dict[str, tuple[str, str]],
    settings: Settings,
    clock: Callable[[], float],
) -> Job:
    """Every metric of the analysis, to be queried on the pool and judged (analysis.measure). The
    ticket names what it measures: a result is used only while all of it still holds."""
    assert c.analysis is not None and rf.state is not None
    md = body["metadata"]
    cv, cs = slots.get(c.variant, ("", ""))
    bv, bs = slots.get(c.baseline, ("", ""))
    qv = QueryVars(md["namespace"], md["name"], c.variant, cv, cs, c.baseline, bv, bs)
    st = rf.state
    # one measurement per rollout and last analysis; its share travels with the result (a pass
    # counts for a step only at the step's share, a failure counts whatever the share)
    ticket: Hashable = (st.target, st.strategy, st.started_at, st.last_analysis_at, qv)
    a, cfg = c.analysis, settings.analysis
    query = _timed(PrometheusClient(cfg.prometheus_url, cfg.timeout_seconds, cfg.max_answer_bytes).query
                   if cfg.prometheus_url else _unconfigured)  # fmt: skip

    def run() -> tuple[RO.Measurement, ...]:
        return measure(a.metrics, qv, query, clock(), st.started_at)

    share = int(rf.effective.get(c.variant, 0))
    return Job(md["namespace"], md["name"], str(md.get("uid") or ""), ticket, share, run)


def _unconfigured(_q: str) -> float:
    raise Inconclusive("no Prometheus configured (operator setting analysis.prometheusUrl)")


def _timed(query: Callable[[str], float]) -> Callable[[str], float]:
    def timed(promql: str) -> float:
        started = time.perf_counter()
        result = "inconclusive"
        try:
            value = query(promql)
            result = "ok"
            return value
        finally:
            metrics.ANALYSIS_QUERY_SECONDS.labels(result).observe(time.perf_counter() - started)

    return timed
