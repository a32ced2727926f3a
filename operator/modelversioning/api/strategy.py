"""ModelEndpoint spec.strategy: how the declared weights are reached (progressive delivery).

The variants' weights in the spec are the end state. With a canary strategy, the effective weight of
the canary variant climbs through `steps` (setWeight / pause), with an analysis of Prometheus metrics
judging every interval; a failed analysis puts traffic back on the split before the rollout started.
Smaller than Argo Rollouts' canary + AnalysisTemplate and Flagger's Canary: one canary variant, one
baseline, steps, and metrics that are either a built-in template or a PromQL template.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from modelversioning.api.common import DNS_LABEL, ApiModel, StatusModel, cel, validations

DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """'1m30s' -> 90.0 (the same syntax as Go's time.ParseDuration, without negative or ns/us)."""
    if not re.match(DURATION, duration):
        raise ValueError(f"{duration!r} is not a duration such as 30s, 5m or 1h30m")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(duration))


Duration = str  # validated by pattern


class Pause(ApiModel):
    duration: Duration | None = Field(
        default=None,
        pattern=DURATION,
        description="How long to wait (analysis keeps running); absent: until `kubectl models rollout "
        "promote`.",
    )


class Step(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.setWeight) != has(self.pause)", "a step is either setWeight or pause")
        )
    }

    set_weight: int | None = Field(default=None, ge=1, le=100, description="Canary's share of live traffic.")
    pause: Pause | None = None

    @model_validator(mode="after")
    def _one(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step is either setWeight or pause")
        return self


Template = Literal["error-rate", "latency"]
Source = Literal["modelServer", "traefik", "istio"]


class MetricCheck(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.template) != has(self.query)", "a metric has either a template or a query"),
            cel(
                "has(self.max) || has(self.min) || has(self.maxIncreaseOverBaseline)",
                "a metric needs a threshold: max, min or maxIncreaseOverBaseline",
            ),
        )
    }

    name: str = Field(max_length=63, pattern=DNS_LABEL)
    template: Template | None = Field(
        default=None,
        description="Built-in query: error-rate (share of 5xx answers, 0..1) or latency (seconds at "
        "`quantile`) of the variant, from `source`.",
    )
    source: Source = Field(
        default="modelServer",
        description="Whose metrics the template reads: the reference model server's, Traefik's or Istio's.",
    )
    quantile: float = Field(default=0.99, ge=0.01, le=0.999)
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL template; {{namespace}}, {{endpoint}}, {{variant}}, {{version}}, {{service}} "
        "(the variant's slot Service) and {{window}} are replaced. Must return one number.",
    )
    window: Duration = Field(
        default="1m",
        pattern=DURATION,
        description="Range of rate() windows ({{window}}); never longer than the rollout's age, so no "
        "measurement counts traffic from before the rollout started.",
    )
    max: float | None = Field(default=None, description="Fails when the canary's value is above.")
    min: float | None = Field(default=None, description="Fails when the canary's value is below.")
    max_increase_over_baseline: float | None = Field(
        default=None,
        ge=0,
        description="Fails when canary - baseline is above this (the same query for both variants).",
    )

    @model_validator(mode="after")
    def _shape(self) -> MetricCheck:
        if (self.template is None) == (self.query is None):
            raise ValueError("a metric has either a template or a query")
        if self.max is None and self.min is None and self.max_increase_over_baseline is None:
            raise ValueError("a metric needs a threshold: max, min or maxIncreaseOverBaseline")
        return self


# The shortest analysis interval admitted. Every measurement is up to 32 queries on a shared pool of a
# few threads; an interval of "1ms" asked for one on every reconcile. 2 s is as often as a Prometheus
# scraping every second can say anything new (the e2e suites run at 2-3 s); a platform scraping every
# 30 s gains nothing below that, but nothing breaks either.
MIN_INTERVAL_SECONDS = 2


class Analysis(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                f"!has(self.interval) || duration(self.interval) >= duration('{MIN_INTERVAL_SECONDS}s')",
                f"analysis.interval must be at least {MIN_INTERVAL_SECONDS}s",
            )
        )
    }

    interval: Duration = Field(
        default="30s",
        max_length=32,  # bounds the CEL rule's cost too
        pattern=DURATION,
        description="Time between measurements (at least 2s); the first is taken one interval after the "
        "rollout started.",
    )
    failure_limit: int = Field(
        default=0, ge=0, le=100, description="Failed measurements tolerated; one more fails the rollout."
    )
    inconclusive_limit: int = Field(
        default=2,
        ge=0,
        le=100,
        description="Inconclusive measurements (Prometheus unreachable, a query error, no data) tolerated.",
    )
    on_inconclusive: Literal["fail", "pause"] = Field(
        default="fail", description="Past inconclusiveLimit: fail (roll back) or pause for a person."
    )
    metrics: list[MetricCheck] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _floor(self) -> Analysis:
        if seconds(self.interval) < MIN_INTERVAL_SECONDS:
            raise ValueError(
                f"analysis.interval must be at least {MIN_INTERVAL_SECONDS}s (got {self.interval}): "
                "measurements run on a small shared pool"
            )
        return self


class Canary(ApiModel):
    variant: str = Field(max_length=40, pattern=DNS_LABEL, description="The variant whose share climbs.")
    baseline: str = Field(
        max_length=40, pattern=DNS_LABEL, description="The variant that gives up the share (and is compared)."
    )
    steps: list[Step] = Field(min_length=1, max_length=32)
    analysis: Analysis | None = None
    promote_on_success: bool = Field(
        default=False,
        description="On success, promote the canary's ModelVersion one stage (recorded in its history with "
        "the endpoint as actor and the analysis summary as reason).",
    )
    max_weight_below_stage: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Lets a version one stage below requiredStage take at most this share while the analysis "
        "passes (it must be promoted, e.g. by promoteOnSuccess, to take more). Needs analysis.",
    )


class Strategy(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.canary.variant != self.canary.baseline",
                "strategy.canary.variant and baseline must be different variants",
            ),
            cel(
                "!has(self.canary.maxWeightBelowStage) || has(self.canary.analysis)",
                "maxWeightBelowStage needs an analysis: a lower stage earns traffic only by measurement",
            ),
        )
    }

    canary: Canary

    @model_validator(mode="after")
    def _rules(self) -> Strategy:
        if self.canary.variant == self.canary.baseline:
            raise ValueError("strategy.canary.variant and baseline must be different variants")
        if self.canary.max_weight_below_stage is not None and self.canary.analysis is None:
            raise ValueError("maxWeightBelowStage needs an analysis")
        return self


# ----------------------------------------------------------------------------------------- status


class Measurement(StatusModel):
    metric: str
    at: str
    verdict: Literal["Passed", "Failed", "Inconclusive"]
    value: float | None = None
    baseline: float | None = None
    message: str = Field(default="", max_length=1024)


class RolloutAction(StatusModel):
    kind: Literal["promote", "abort", "retry"]
    by: str = Field(description="Who asked (the requested-by annotation the CLI sets).")
    at: str
    applied: bool = Field(description="False when it did not apply to the rollout's phase at the time.")
    message: str = Field(default="", max_length=1024, description="What it did, or why it did nothing.")


class RolloutStatus(StatusModel):
    target: str = Field(description="Hash of the declared variants this rollout is heading for.")
    phase: Literal["Progressing", "Paused", "Succeeded", "Failed", "Aborted"]
    step: int = Field(ge=0, description="Index of the current step (= len(steps) once complete).")
    step_started_at: str | None = None
    started_at: str | None = None
    start_weights: dict[str, int] = Field(
        default_factory=dict, description="The split before the rollout: where a failure returns."
    )
    weights: dict[str, int] = Field(default_factory=dict, description="The split this step asks for.")
    failures: int = 0
    inconclusive: int = 0
    last_analysis_at: str | None = None
    passed_since_step: bool = False
    measurements: list[Measurement] = Field(default_factory=list, max_length=20)
    handled_action: str | None = Field(default=None, description="Id of the last manual action handled.")
    last_action: RolloutAction | None = Field(
        default=None, description="The last manual action handled: kind, who, when, what it did."
    )
    strategy: str | None = Field(
        default=None, description="Hash of the spec.strategy this rollout runs under (a change starts anew)."
    )
    message: str = Field(default="", max_length=2048)
    promoted: bool | None = None


__all__ = [
    "Analysis",
    "Canary",
    "MetricCheck",
    "RolloutAction",
    "RolloutStatus",
    "Step",
    "Strategy",
    "seconds",
]
