"""The ModelVersion's status: stage and history, the verified artifact, what serves it (servedBy, rollouts,
servingHistory with the production record), the quarantine, the I/O signature and the resolved runtime."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modelversioning.api.artifact import VerifiedArtifact
from modelversioning.api.common import CONDITIONS_LIST_EXTRA, Condition, StatusModel
from modelversioning.api.modelversion_spec import ResolvedRuntime, StageName, TensorSpec


class HistoryEntry(StatusModel):
    from_: str | None = Field(default=None, alias="from", max_length=32)
    to: str = Field(max_length=32)
    at: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(default="", max_length=1024)
    actor: str = Field(default="", max_length=512)
    approved_by: list[str] | None = Field(
        default=None, max_length=10, description="The approvers (ModelApproval) this hop needed."
    )


class ServedBy(StatusModel):
    endpoint: str = Field(max_length=253)
    variant: str = Field(max_length=63)
    weight: int = Field(ge=0, le=100)
    mirror: bool | None = None


class RolloutRecord(StatusModel):
    endpoint: str = Field(max_length=253)
    result: str = Field(max_length=32, description="Succeeded, Failed or Aborted.")
    at: str = Field(json_schema_extra={"format": "date-time"})
    message: str = Field(default="", max_length=1024)


class LatencyBucket(StatusModel):
    le: str = Field(max_length=32, description="Upper bound in seconds (+Inf: all).")
    count: float = Field(ge=0, description="Requests at most that slow (cumulative).")


class KpiFigure(StatusModel):
    name: str = Field(max_length=63)
    numerator: float | None = None
    denominator: float | None = Field(default=None, description="Absent: the KPI is a count.")
    value: float | None = Field(
        default=None, description="numerator / denominator (or the count); absent: unknown."
    )
    incomplete: str | None = Field(
        default=None, max_length=300, description="Why part of the period was not measured (never a zero)."
    )


class ProductionSummary(StatusModel):
    """What the version did in one serving period, from the gateway's metrics and the Model's KPIs
    (docs/design.md, "The production record")."""

    source: str = Field(
        max_length=32, description="Where the request figures come from: traefik, istio, modelServer."
    )
    through: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="The figures cover [from, through]. Absent: nothing measured yet.",
    )
    final: bool | None = Field(
        default=None, description="The period is closed and its summary will not change."
    )
    requests: int | None = Field(default=None, ge=0)
    errors: int | None = Field(default=None, ge=0, description="Answered 5xx.")
    error_ratio: float | None = Field(default=None, ge=0, le=1)
    latency_p50_seconds: float | None = Field(default=None, ge=0)
    latency_p99_seconds: float | None = Field(default=None, ge=0)
    latency_buckets: list[LatencyBucket] = Field(default_factory=list, max_length=40)
    kpis: list[KpiFigure] = Field(default_factory=list, max_length=8)
    incomplete: str | None = Field(
        default=None,
        max_length=512,
        description="Why some figures are missing or cover part of the period (Prometheus down, a query "
        "that answered nothing): absent figures are unknown, never 0.",
    )


class ServingPeriod(StatusModel):
    endpoint: str = Field(max_length=253)
    variant: str = Field(max_length=63)
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Absent: still serving."
    )
    mirror: bool | None = None
    slots: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="The slots (Deployment + Service) that carried the period's traffic (the latest 8).",
    )
    production: ProductionSummary | None = Field(
        default=None, description="Requests, errors, latency and KPIs of the period (the production record)."
    )


class QuarantineRecord(StatusModel):
    state: str = Field(max_length=16, description="Quarantined, or Lifted (the last quarantine was lifted).")
    selectors: list[Annotated[str, Field(max_length=400)]] = Field(
        default_factory=list,
        max_length=16,
        description="The lineage selectors in force "
        "(dataset=NAME@VERSION, commit=SHA, version=MODEL@VERSION).",
    )
    reason: str = Field(default="", max_length=1024)
    by: str = Field(
        default="",
        max_length=512,
        description="Who quarantined or lifted it (modelversioning.io/quarantined-by: the authenticated user "
        "while the chart's requested-by admission policy is observed enforced, else marked unverified).",
    )
    at: str = Field(json_schema_extra={"format": "date-time"})


class ContractRecord(StatusModel):
    reason: str = Field(
        max_length=64,
        description="IOSignatureChecked, IOSignatureNotChecked, "
        "IOSignatureChanged, IOSignatureMissing or IOContractPending.",
    )
    message: str = Field(default="", max_length=2048)
    baseline: str | None = Field(default=None, max_length=64, description="The version compared with.")


class IOSignatureStatus(StatusModel):
    source: str = Field(max_length=300, description="spec.signature, or where in the artifact it was read.")
    digest: str = Field(max_length=64, description="sha256 of the canonical signature (all its tensors).")
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=64)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=64)
    truncated: bool | None = Field(default=None, description="More than 64 tensors a side: the first 64.")
    contract: ContractRecord | None = None


class ModelVersionStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTRA)
    stage: StageName | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    artifact: VerifiedArtifact | None = None
    serving_digest: str | None = Field(
        default=None,
        max_length=64,
        description="sha256 of what decides what serves (artifact digest, runtime image, command, args, "
        "env, port, healthPath, resources; a resolved runtime whole, with its protocol and source): what a "
        "ModelApproval must name to count.",
    )
    resolved_runtime: ResolvedRuntime | None = Field(
        default=None,
        description="The catalog runtime a version without spec.runtime resolved to (once, for good).",
    )
    io_signature: IOSignatureStatus | None = Field(
        default=None,
        description="The input/output signature the I/O contract was checked with, its source, and the "
        "verdict of the SemVer rule (docs/design.md, The I/O contract).",
    )
    region: str | None = Field(
        default=None,
        max_length=63,
        description="The region (cluster) whose operator wrote this status (the operator's region setting): "
        "servedBy, rollouts and servingHistory are this region's endpoints. Absent: no region set.",
    )
    served_by: list[ServedBy] = Field(default_factory=list)
    quarantine: QuarantineRecord | None = Field(
        default=None,
        description="The lineage quarantine (kubectl models quarantine): in force, or the last one lifted.",
    )
    rollouts: list[RolloutRecord] = Field(
        default_factory=list,
        max_length=10,
        description="Outcomes of progressive rollouts this version took part in (newest last).",
    )
    serving_history: list[ServingPeriod] = Field(
        default_factory=list,
        max_length=20,
        description="When an endpoint variant routed traffic to this version (weight > 0, or mirrored), "
        "oldest first; the latest 20 periods (an open one is always kept).",
    )
