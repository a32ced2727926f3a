"""ModelPlatformPolicy: the platform team's floors for the namespaces it selects (cluster-scoped).

Tenants write ModelVersions, ModelEndpoints, Models and ModelApprovals in their namespaces; only
someone who may write cluster-scoped objects (a platform admin) writes a ModelPlatformPolicy. A
tenant's spec can be stricter than the floors, never looser. Several policies may select one
namespace: each applies (the result is the strictest of them; domain.platform_policy).

Without any policy the operator's own unconditional rules hold (docs/security.md) and retention
deletes nothing: a policy must name the namespace's storage roots first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from modelversioning.api.common import ApiModel, StatusModel, cel
from modelversioning.api.modelendpoint import RequiredStage, Toleration
from modelversioning.api.modelversion_spec import STAGE_NAME
from modelversioning.api.strategy import Source, Template
from modelversioning.api.trust import PlatformTrust
from modelversioning.api.wire import API_VERSION, MODELPLATFORMPOLICY
from modelversioning.domain.platform_policy import ROOT_PATTERN, host_pattern_ok
from modelversioning.domain.registry import DURATION_PATTERN

KIND, PLURAL = MODELPLATFORMPOLICY.kind, MODELPLATFORMPOLICY.plural
SINGULAR, SHORT_NAMES = MODELPLATFORMPOLICY.singular, list(MODELPLATFORMPOLICY.short_names)

_LABEL_VALUE = Annotated[str, Field(max_length=63)]


class LabelSelectorRequirement(ApiModel):
    key: str = Field(max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[_LABEL_VALUE] = Field(default_factory=list, max_length=64)


class LabelSelector(ApiModel):
    """A Kubernetes label selector over the namespace's labels; empty: every namespace."""

    match_labels: dict[str, _LABEL_VALUE] = Field(default_factory=dict, max_length=32)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=16)


class ServingFloor(ApiModel):
    min_required_stage: RequiredStage | None = Field(
        default=None,
        description="Endpoints here serve only versions at this stage or beyond it (in the Model's stage "
        "order), whatever their requiredStage says.",
    )
    pinned_images_from: str | None = Field(
        default=None,
        max_length=32,
        pattern=STAGE_NAME,
        description="A version's runtime image must be pinned by digest (image@sha256:...) to reach this "
        "stage or any beyond it.",
    )
    require_io_signature: bool = Field(
        default=False,
        description="Every ModelVersion must carry an input/output signature (spec.signature or its "
        "artifact's MLmodel); one without is refused (IOSignatureMissing), as a Model's "
        "spec.ioContract.requireSignature does.",
    )
    allowed_tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=32,
        description="The tolerations an endpoint's placement may carry (each must equal one of these; "
        "tolerationSeconds may be lower). Unset: unrestricted; empty: none.",
    )
    allowed_hosts: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None,
        max_length=64,
        description="Hosts an endpoint's routing may claim: exact names or '*.<domain>' (one or more "
        "labels). Unset: unrestricted; empty: none.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str] | None) -> list[str] | None:
        for h in v or []:
            if not host_pattern_ok(h):
                raise ValueError(f"host pattern {h!r} must be a DNS name or '*.' and a DNS name")
        return v


class PromotionCeiling(ApiModel):
    template: Template
    max: float = Field(
        description="A metric of this template earns a promotion only when its own 'max' is at or below."
    )


class AnalysisFloor(ApiModel):
    min_interval: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Measurements here are at least this far apart (the operator's own floor applies too).",
    )
    trusted_sources: list[Source] | None = Field(
        default=None,
        max_length=3,
        description="Whose metrics may earn a promotion (promoteOnSuccess). Unset: traefik and istio; the "
        "canary's own runtime (modelServer) only when listed. A free query never earns a promotion.",
    )
    promotion_ceilings: list[PromotionCeiling] = Field(
        default_factory=list,
        max_length=8,
        description="Per template, the loosest threshold that still earns a promotion.",
    )
    free_queries: Literal["Allowed", "Refused"] = Field(
        default="Allowed",
        description="Refused: an endpoint's analysis may use the built-in templates only (their selectors "
        "are the operator's, matching the endpoint's namespace and Services exactly); a free PromQL query "
        "reads whatever analysis.prometheusUrl serves, other namespaces' series included.",
    )


class ApprovalFloor(ApiModel):
    approver_groups: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None,
        max_length=32,
        description="An approval counts only when the API server recorded its creator in one of these "
        "groups. Unset: any authenticated person other than the version's author and requester.",
    )


class RetentionFloor(ApiModel):
    storage_roots: list[Annotated[str, Field(max_length=1024, pattern=ROOT_PATTERN)]] = Field(
        default_factory=list,
        max_length=16,
        description="URI prefixes (ending in '/') under which retention may delete a version's artifact; "
        "'{namespace}' stands for the namespace. Retention deletes nothing outside them, and nothing at "
        "all in a namespace no policy gives a root.",
    )


class ModelPlatformPolicySpec(ApiModel):
    namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector, description="The namespaces this policy applies to."
    )
    serving: ServingFloor | None = None
    analysis: AnalysisFloor | None = None
    approvals: ApprovalFloor | None = None
    retention: RetentionFloor | None = None
    trust: PlatformTrust | None = Field(
        default=None,
        description="Signed models: from which stage a signature is required and which signers the platform "
        "trusts (every policy that lists signers must trust the signer; docs/security.md).",
    )


class ModelPlatformPolicyStatus(StatusModel):
    pass


class ModelPlatformPolicy(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: Literal["ModelPlatformPolicy"] = "ModelPlatformPolicy"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelPlatformPolicySpec


ROOT_VALIDATIONS = [
    cel(
        "!has(self.spec.retention) || self.spec.retention.storageRoots.all(r, r.endsWith('/'))",
        "a storage root ends with '/'",
    )
]

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Min-Stage", "type": "string", "jsonPath": ".spec.serving.minRequiredStage"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
