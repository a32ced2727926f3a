"""One analysis run: every metric of a canary strategy, measured and judged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelversioning.analysis.prometheus import Inconclusive
from modelversioning.analysis.templates import Vars, builtin, render_query
from modelversioning.api.strategy import MetricCheck, seconds
from modelversioning.domain.rollout import FAILED_M, INCONCLUSIVE, PASSED, Measurement, measure_window


@dataclass(frozen=True)
class QueryVars:
    namespace: str
    endpoint: str
    canary: str
    canary_version: str
    canary_service: str
    baseline: str
    baseline_version: str
    baseline_service: str


def _query(m: MetricCheck) -> str:
    if m.query is not None:
        return m.query
    assert m.template is not None
    return builtin(m.template, m.source, m.quantile)


def measure(
    metrics: list[MetricCheck],
    qv: QueryVars,
    query: Callable[[str], float],
    now: float,
    started_at: float | None = None,
) -> tuple[Measurement, ...]:
    """Every metric, judged. With `started_at` (the rollout's start) no rate window reaches back
    before it: {{window}} becomes the shorter of the metric's window and the rollout's age."""
    out = []
    for m in metrics:
        w = seconds(m.window)
        window = f"{int(measure_window(w, now, started_at))}s" if started_at is not None else m.window
        canary = Vars(qv.namespace, qv.endpoint, qv.canary, qv.canary_version, qv.canary_service, window)
        try:
            value = query(render_query(_query(m), canary))
            base = None
            if m.max_increase_over_baseline is not None:
                b = Vars(
                    qv.namespace, qv.endpoint, qv.baseline, qv.baseline_version, qv.baseline_service, window
                )
                try:
                    base = query(render_query(_query(m), b))
                except Inconclusive as e:
                    raise Inconclusive(f"baseline: {e}") from e
        except Inconclusive as e:
            out.append(Measurement(m.name, INCONCLUSIVE, None, None, str(e)[:500], now))
            continue
        out.append(_judge(m, value, base, now))
    return tuple(out)


def _judge(m: MetricCheck, value: float, base: float | None, now: float) -> Measurement:
    why = []
    if m.max is not None and value > m.max:
        why.append(f"{value:.4g} > max {m.max:g}")
    if m.min is not None and value < m.min:
        why.append(f"{value:.4g} < min {m.min:g}")
    if (
        m.max_increase_over_baseline is not None
        and base is not None
        and value - base > m.max_increase_over_baseline
    ):
        why.append(f"{value:.4g} - baseline {base:.4g} > {m.max_increase_over_baseline:g}")
    return Measurement(m.name, FAILED_M if why else PASSED, value, base, "; ".join(why), now)
