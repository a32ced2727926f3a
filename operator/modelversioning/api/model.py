"""Model: one model's policy (stage graph, gates, retention) and memory (every version ever registered).

ModelApproval: one user's approval of one version (by digest) for one stage; the chart's admission
policy makes ``spec.approver`` the authenticated user who created it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from modelversioning.api.common import (
    CONDITIONS_LIST_EXTRA,
    DNS_LABEL,
    SHA256_HEX,
    ApiModel,
    Condition,
    StatusModel,
    cel,
    validations,
)
from modelversioning.api.modelversion_spec import STAGE_NAME
from modelversioning.api.trust import TrustPolicy
from modelversioning.api.wire import API_VERSION, MODEL, MODELAPPROVAL
from modelversioning.domain.gates import (
    GATE_PATTERN,
    SERVED_PATTERN,
    SERVED_PREFIX,
    MetricGate,
    TransitionRule,
)
from modelversioning.domain.registry import DURATION_PATTERN, Retention, parse_duration
from modelversioning.domain.stages import DEFAULT_GRAPH, Stage, StageGraph

KIND, PLURAL, SINGULAR, SHORT_NAMES = MODEL.kind, MODEL.plural, MODEL.singular, list(MODEL.short_names)

APPROVAL_KIND, APPROVAL_PLURAL = MODELAPPROVAL.kind, MODELAPPROVAL.plural
APPROVAL_SINGULAR, APPROVAL_SHORT_NAMES = MODELAPPROVAL.singular, list(MODELAPPROVAL.short_names)


LINEAGE_FIELDS = (
    "codeRepository", "codeCommit", "dataset", "hyperparameters",
    "trainedAt", "author", "framework", "environment",
)  # fmt: skip


class Transition(ApiModel):
    from_: str = Field(alias="from", max_length=32, pattern=STAGE_NAME, description="Source stage.")
    to: str = Field(max_length=32, pattern=STAGE_NAME, description="Target stage.")
    lineage: list[Literal[LINEAGE_FIELDS]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=8, description="Lineage fields the version must have for this hop."
    )
    metrics: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        json_schema_extra=validations(
            cel(
                # a conditional: the API server's cost estimate takes the dearer branch, not both
                f"self.all(m, m.matches(r'{SERVED_PREFIX}') ? m.matches(r'{SERVED_PATTERN}') "
                f": m.matches(r'{GATE_PATTERN}'))",
                "a metric gate must read '<metric> <op> <number>', '<metric> <op> production.<metric> "
                "[+|- <number>]' or 'served.<figure> <op> <number> [over <N> requests]' with op one of "
                ">= <= > < ==",
            )
        ),
        max_length=16,
        description="Metric gates: '<metric> <op> <number>' or '<metric> <op> production.<metric> [+|- "
        "<number>]' (op: >= <= > < ==), e.g. 'auc >= production.auc - 0.005', 'latency_p99_ms <= 20'. "
        "Against production: every other version in production now must be matched (none: passes). "
        "'served.<figure> <op> <number> [over <N> requests]' judges the version's own production record "
        "(figures: requests, errors, errorRatio, latencyP50Seconds, latencyP99Seconds, kpi.<name>), e.g. "
        "'served.errorRatio <= 0.01 over 1000 requests'; a record without the figure blocks.",
    )
    approvals: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Distinct users who must approve (ModelApproval) this hop's target.",
    )

    @field_validator("metrics")
    @classmethod
    def _gates(cls, v: list[str]) -> list[str]:
        for text in v:
            MetricGate.parse(text)
        return v


class RetentionSpec(ApiModel):
    archive_after: str | None = Field(
        default=None,
        max_length=16,
        pattern=DURATION_PATTERN,
        description="Archive a version out of production longer than this (e.g. 180d). A version never in "
        "production counts from its registration.",
    )
    delete_artifacts_after: str | None = Field(
        default=None,
        max_length=16,
        pattern=DURATION_PATTERN,
        description="Delete the artifact of an archived version out of production longer than this (e.g. "
        "730d); the ModelVersion and its record are kept.",
    )
    keep_previous_production: int = Field(
        default=2, ge=0, le=100, description="The most recent previous production versions never touched."
    )
    artifact_deletion: Literal["Disabled", "DryRun", "Enabled"] = Field(
        default="Disabled",
        description="DryRun: an Event says what would be deleted. Enabled: deleted, if the operator setting "
        "registry.allowArtifactDeletion allows it and the artifact policy allows the URI.",
    )

    def rules(self) -> Retention:
        return Retention(
            parse_duration(self.archive_after) if self.archive_after else None,
            parse_duration(self.delete_artifacts_after) if self.delete_artifacts_after else None,
            self.keep_previous_production,
            self.artifact_deletion,
        )


class DeletionPolicySpec(ApiModel):
    allow_past_candidate: bool = Field(
        default=False,
        description="Let users delete a ModelVersion past candidate (staging, production, archived, a "
        "custom stage). Default: refused by the chart's admission policy (deletion.modelversioning.io); "
        "archived is the normal end state. A candidate (or a version archived straight from candidate) "
        "may always be deleted; its record stays in status.versions.",
    )
    allow_model_deletion: bool = Field(
        default=False,
        description="Let users delete this Model while status.versions holds records. Default: refused "
        "(the records are what keeps a version number from being reused with other weights).",
    )


class IOContractPolicy(ApiModel):
    require_signature: bool = Field(
        default=False,
        description="Refuse a version that has no input/output signature (spec.signature or its artifact's "
        "MLmodel) instead of accepting it with the contract not checked.",
    )
    check_runtime_metadata: bool = Field(
        default=False,
        description="During a canary, compare the runtime's Open Inference Protocol model metadata "
        "(GET /v2/models/{name}) with the version's recorded signature before it takes traffic; a mismatch "
        "holds the canary at 0%. Only for runtimes that speak OIP.",
    )


# A KPI reads the model's own series, never a query: a metric name and exact label values. The
# operator writes the PromQL, with namespace="<the Model's namespace>" always added; a tenant cannot
# name the namespace label, a reserved label (__name__ ...) or anything that is not a metric name.
KPI_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$"
KPI_LABEL = r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$"
KPI_NAME = r"^[a-z][a-zA-Z0-9_]{0,62}$"
KPI_VARIABLES = ("endpoint", "variant", "version", "model")


class SeriesSelector(ApiModel):
    metric: str = Field(
        pattern=KPI_METRIC, max_length=200, description="A counter's name, e.g. shop_conversions_total."
    )
    labels: dict[str, Annotated[str, Field(max_length=253)]] = Field(
        default_factory=dict,
        max_length=8,
        description="Exact label values (=). A value may be {{endpoint}}, {{variant}}, {{version}} or "
        "{{model}} (the serving period's). The namespace label is the operator's: always the Model's "
        "namespace.",
        json_schema_extra=validations(
            cel(
                f"self.all(k, k.matches(r'{KPI_LABEL}') && k != 'namespace')",
                "label names must be Prometheus label names (no leading _), and not namespace: the operator "
                "scopes every KPI to the Model's namespace",
            )
        ),
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(KPI_LABEL, k) or k == "namespace":
                raise ValueError(
                    f"label {k[:40]!r}: must be a Prometheus label name without a leading _, and not "
                    "namespace (the operator scopes every KPI to the Model's namespace)"
                )
        return v


class Kpi(ApiModel):
    name: str = Field(
        pattern=KPI_NAME,
        max_length=63,
        description="Its name in the record and in gates (served.kpi.<name>).",
    )
    numerator: SeriesSelector = Field(description="The counter whose increase over the period is counted.")
    denominator: SeriesSelector | None = Field(
        default=None,
        description="Divide by this counter's increase (a rate, e.g. conversions per prediction).",
    )


class ProductionSpec(ApiModel):
    source: Literal["traefik", "istio", "modelServer"] = Field(
        default="traefik",
        description="Where requests, errors and latency come from: the gateway's per-Service metrics "
        "(traefik, istio: what the gateway saw) or the model server's own (modelServer: what the runtime "
        "reports of itself).",
    )
    kpis: list[Kpi] = Field(
        default_factory=list,
        max_length=8,
        description="Business figures summarised per serving period, from the model's own counters in its "
        "namespace.",
        json_schema_extra=validations(
            cel("self.all(k, self.exists_one(j, j.name == k.name))", "KPI names must be unique")
        ),
    )

    @field_validator("kpis")
    @classmethod
    def _unique(cls, v: list[Kpi]) -> list[Kpi]:
        names = [k.name for k in v]
        if len(set(names)) != len(names):
            raise ValueError("KPI names must be unique")
        return v


class ModelSpec(ApiModel):
    description: str | None = Field(default=None, max_length=4096)
    stages: list[Annotated[str, Field(max_length=32, pattern=STAGE_NAME)]] = Field(
        default_factory=list,
        max_length=16,
        description="This model's stages in order (default: candidate, staging, production, archived). Must "
        "include candidate and production; archived is always added. Only staging and production carry "
        "serving rights on endpoints; other stages count as candidate.",
        json_schema_extra=validations(
            cel(
                "size(self) == 0 || ('candidate' in self && 'production' in self)",
                "stages must include candidate and production",
            )
        ),
    )
    transitions: list[Transition] = Field(
        default_factory=list,
        max_length=64,
        description="The allowed hops and their gates (default: the operator's stage graph, no extra gates). "
        "Any stage may always be archived. The operator's own gates (a verified artifact above candidate, "
        "complete lineage for production) always apply too.",
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    deletion_policy: DeletionPolicySpec = Field(default_factory=DeletionPolicySpec)
    io_contract: IOContractPolicy = Field(
        default_factory=IOContractPolicy,
        description="The SemVer I/O contract (docs/design.md): MINOR/PATCH keep the inputs/outputs.",
    )
    production: ProductionSpec = Field(
        default_factory=ProductionSpec,
        description="The production record: where its request figures come from and the KPIs summarised "
        "per serving period (docs/design.md, The production record).",
    )
    trust: TrustPolicy | None = Field(
        default=None,
        description="Signed models: which signers are trusted and from which stage a signature is required "
        "(docs/security.md, Signed models).",
    )

    @model_validator(mode="after")
    def _known_stages(self) -> ModelSpec:
        known = set(self.stages) | {s.value for s in Stage} if self.stages else {s.value for s in Stage}
        for t in self.transitions:
            for s in (t.from_, t.to):
                if s not in known:
                    raise ValueError(f"transition {t.from_} -> {t.to}: stage {s!r} is not in stages")
        if self.trust is not None and self.trust.required_from and self.trust.required_from not in known:
            raise ValueError(f"trust.requiredFrom: stage {self.trust.required_from!r} is not in stages")
        return self

    def graph(self, default: StageGraph) -> StageGraph:
        """This model's graph: its transitions (else the operator's), plus any stage -> archived."""
        edges: dict[str, set[str]] = {}
        if self.transitions:
            for t in self.transitions:
                edges.setdefault(t.from_, set()).add(t.to)
        else:
            for src, dsts in (default.edges or DEFAULT_GRAPH).items():
                edges.setdefault(src, set()).update(dsts)
        order = [*self.stages, Stage.ARCHIVED.value] if self.stages else list(default.order)
        for s in order:
            if s != Stage.ARCHIVED:
                edges.setdefault(s, set()).add(Stage.ARCHIVED.value)
        return StageGraph.from_config(edges, dict.fromkeys(order))

    def rules(self) -> tuple[TransitionRule, ...]:
        return tuple(
            TransitionRule(
                t.to,
                t.from_,
                tuple(t.lineage),
                tuple(MetricGate.parse(m) for m in t.metrics),
                t.approvals,
            )
            for t in self.transitions
            if t.lineage or t.metrics or t.approvals
        )


class VersionRecord(StatusModel):
    version: str = Field(max_length=64)
    digest: str = Field(max_length=64, description="sha256 it was first registered with; never changes.")
    first_seen: str = Field(json_schema_extra={"format": "date-time"})
    uid: str | None = Field(default=None, max_length=64)
    stage: str | None = Field(default=None, max_length=32)
    artifact: Literal["Present", "Deleted"] | None = None
    ever_production: bool | None = None
    signature_digest: str | None = Field(
        default=None,
        max_length=64,
        description="sha256 of its accepted I/O signature (status.ioSignature.digest); never changes.",
    )
    removed_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="The ModelVersion was deleted."
    )


class RefusedDeletion(StatusModel):
    version: str = Field(max_length=64)
    reason: str = Field(max_length=64)
    message: str = Field(max_length=1024)


class ModelStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTRA)
    versions: list[VersionRecord] = Field(
        default_factory=list, max_length=10000, description="Every version ever registered (never removed)."
    )
    production: list[str] = Field(default_factory=list, max_length=100, description="Versions in production.")
    pending_deletions: list[str] = Field(
        default_factory=list,
        max_length=10000,
        description="Dry run: versions whose artifact would be deleted.",
    )
    refused_deletions: list[RefusedDeletion] = Field(
        default_factory=list,
        max_length=10000,
        description="Due deletions retention refuses: the version does not provably own the artifact.",
    )


class Model(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: Literal["Model"] = "Model"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelSpec = Field(default_factory=ModelSpec)
    status: ModelStatus | None = None


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Production", "type": "string", "jsonPath": ".status.production"},
    {"name": "Stages", "type": "string", "jsonPath": ".spec.stages", "priority": 1},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
ROOT_VALIDATIONS = [
    cel(
        "self.metadata.name.matches('" + DNS_LABEL + "') && size(self.metadata.name) <= 63",
        "a Model's name is the model name of its ModelVersions (a DNS label)",
    )
]


# ---- ModelApproval -----------------------------------------------------------------------------


class ModelApprovalSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("self == oldSelf", "an approval cannot be changed; create another")
        )
    }

    model: str = Field(max_length=63, pattern=DNS_LABEL)
    version: str = Field(max_length=64)
    sha256: str = Field(
        max_length=64,
        pattern=SHA256_HEX,
        description="The digest approved: an approval of other weights counts not.",
    )
    serving_digest: str = Field(
        max_length=64,
        pattern=SHA256_HEX,
        description="The version's status.servingDigest approved (artifact digest, runtime image, "
        "command, args, env, ...): an approval of a version re-created to serve otherwise counts not.",
    )
    stage: str = Field(
        max_length=32, pattern=STAGE_NAME, description="The stage this approves the version for."
    )
    approver: str = Field(
        max_length=512,
        description="Who approves: must be the user who creates the object (admission policy). It "
        "counts only for a person other than the version's author and the stage change's requester.",
    )
    approver_groups: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        max_length=64,
        description="The approver's groups as the API server authenticated them (admission policy: each "
        "one must be a group of the creator); a platform policy's approverGroups are checked against them.",
    )
    comment: str | None = Field(default=None, max_length=1024)


class ModelApprovalStatus(StatusModel):
    pass


class ModelApproval(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: Literal["ModelApproval"] = "ModelApproval"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelApprovalSpec


APPROVAL_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
    {"name": "Stage", "type": "string", "jsonPath": ".spec.stage"},
    {"name": "Approver", "type": "string", "jsonPath": ".spec.approver"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
