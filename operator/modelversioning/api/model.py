"""Model: one model's policy (stage graph, gates, retention) and memory (every version ever registered).

ModelApproval: one user's approval of one version (by digest) for one stage; the chart's admission
policy makes ``spec.approver`` the authenticated user who created it.
"""

from __future__ import annotations

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
from modelversioning.api.modelversion import STAGE_NAME
from modelversioning.api.trust import TrustPolicy
from modelversioning.api.wire import API_VERSION, MODEL, MODELAPPROVAL
from modelversioning.domain.gates import GATE_PATTERN, MetricGate, TransitionRule
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
                f"self.all(m, m.matches(r'{GATE_PATTERN}'))",
                "a metric gate must read '<metric> <op> <number>' or '<metric> <op> production.<metric> "
                "[+|- <number>]' with op one of >= <= > < ==",
            )
        ),
        max_length=16,
        description="Metric gates: '<metric> <op> <number>' or '<metric> <op> production.<metric> [+|- "
        "<number>]' (op: >= <= > < ==), e.g. 'auc >= production.auc - 0.005', 'latency_p99_ms <= 20'. "
        "Against production: every other version in production now must be matched (none: passes).",
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
