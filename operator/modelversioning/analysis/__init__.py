"""Canary analysis: PromQL templates (built-in and user-written) and a small Prometheus HTTP client.

No kopf, no kubernetes: the endpoint reconciler calls ``measure`` when the rollout state machine
(``domain.rollout``) says a measurement is due, and gets verdicts back.
"""

from modelversioning.analysis.measure import QueryVars, measure
from modelversioning.analysis.prometheus import Inconclusive, PrometheusClient
from modelversioning.analysis.templates import render_query

__all__ = ["Inconclusive", "PrometheusClient", "QueryVars", "measure", "render_query"]
