"""ModelEndpoint: serves pinned ModelVersions as weighted variants (A/B, canary, shadow, blue/green)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from modelversioning.api import routers, wire
from modelversioning.api.common import (
    CONDITIONS_LIST_EXTRA,
    DNS_LABEL,
    ApiModel,
    Condition,
    StatusModel,
    cel,
    validations,
)
from modelversioning.api.modelversion_spec import VariantResources
from modelversioning.api.strategy import RolloutStatus, Strategy
from modelversioning.api.wire import MODELENDPOINT, expected_name
from modelversioning.domain.semver import SEMVER_PATTERN, SemVer
from modelversioning.domain.traffic import validate_declared

KIND, PLURAL, SINGULAR, SHORT_NAMES = (
    MODELENDPOINT.kind,
    MODELENDPOINT.plural,
    MODELENDPOINT.singular,
    list(MODELENDPOINT.short_names),
)

RequiredStage = Literal["candidate", "staging", "production"]
MAX_VARIANTS = 16


class Variant(ApiModel):
    name: str = Field(max_length=40, pattern=DNS_LABEL, description="Variant name, e.g. blue, green, canary.")
    version: str = Field(
        max_length=64,
        description="Exact ModelVersion version of spec.model to serve (pinned; never 'latest').",
        json_schema_extra=validations(
            cel(
                f"self.matches('{SEMVER_PATTERN}')",
                "variant version must be an exact semantic version such as 2.3.8 (no 'latest', no ranges)",
            )
        ),
    )
    weight: int = Field(default=0, ge=0, le=100, description="Share of live traffic, 0..100.")
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Replicas (with minReplicas: at 100 % of traffic)."
    )
    min_replicas: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Replicas follow the variant's share: ceil(replicas * share / 100), at least this many. "
        "Scaled up before the share grows (the share waits for the pods), down only after it shrank.",
    )
    resources: VariantResources | None = Field(
        default=None,
        description="Overrides the ModelVersion's runtime resources. Quantities are checked by the operator "
        "(InvalidSpec), not by CEL: 16 variants x 12 resources would exceed the API server's CEL budget.",
    )

    @field_validator("version")
    @classmethod
    def _pinned(cls, v: str) -> str:
        SemVer.parse(v)
        return v


class Mirror(ApiModel):
    variant: str = Field(max_length=40, description="Variant that receives a copy of live traffic (shadow).")
    percent: int = Field(default=100, ge=0, le=100, description="Share of live requests mirrored, 0..100.")


class ParentRef(ApiModel):
    name: str = Field(max_length=253)
    namespace: str | None = Field(default=None, max_length=63)
    section_name: str | None = Field(default=None, max_length=253)
    group: str | None = Field(default=None, max_length=253)
    kind: str | None = Field(default=None, max_length=63)
    port: int | None = Field(default=None, ge=1, le=65535)


def _routing_rules(schema: dict[str, Any]) -> None:
    """The registered routers' own CEL rules on spec.routing (e.g. istio needs hosts), in registration
    order: each router module declares them (api.routers.RouterIdentity.spec_rules)."""
    rules = [rule for r in routers.identities() for rule in r.spec_rules]
    if rules:
        schema["x-kubernetes-validations"] = rules


def _router_schema(schema: dict[str, Any]) -> None:
    """spec.routing.router: one of the registered routers, described by the route kind each writes."""
    known = routers.identities()
    parts = [f"{r.name} ({r.route.kind})" if r.route else r.name for r in known]
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
    schema["description"] = f"{listed}."
    schema["enum"] = [r.name for r in known]


class Routing(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": _routing_rules}

    router: str = Field(default=routers.DEFAULT_ROUTER, json_schema_extra=_router_schema)
    hosts: list[Annotated[str, Field(max_length=253)]] = Field(default_factory=list, max_length=16)
    gateways: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Istio gateways (istio router)."
    )
    parent_refs: list[ParentRef] = Field(
        default_factory=list, max_length=16, description="Gateway API parents."
    )

    @field_validator("router")
    @classmethod
    def _registered(cls, v: str) -> str:
        known = [r.name for r in routers.identities()]
        if v not in known:
            raise ValueError(f"unknown router {v!r}; known routers: {', '.join(known)}")
        return v


class Toleration(ApiModel):
    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class Placement(ApiModel):
    """Where the model pods run (e.g. a GPU node pool): copied into every variant's pod template."""

    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=16
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=16)


_LIVE = "self.variants.filter(v, !has(self.mirror) || v.name != self.mirror.variant)"


class ModelEndpointSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.variants.all(a, self.variants.filter(b, b.name == a.name).size() == 1)",
                "variant names must be unique",
                field_path=".variants",
            ),
            cel(
                f"{_LIVE}.map(v, v.weight).sum() == 100",
                "weights of the live (non-mirror) variants must add up to 100",
                field_path=".variants",
            ),
            cel(
                "!has(self.mirror) || self.variants.exists(v, v.name == self.mirror.variant)",
                "mirror.variant must name one of spec.variants",
                field_path=".mirror.variant",
            ),
            cel(
                "!has(self.strategy) || (self.variants.exists(v, v.name == self.strategy.canary.variant) && "
                "self.variants.exists(v, v.name == self.strategy.canary.baseline))",
                "strategy.canary.variant and strategy.canary.baseline must name variants of spec.variants",
                field_path=".strategy.canary",
            ),
            cel(
                "!has(self.strategy) || !has(self.mirror) || "
                "(self.mirror.variant != self.strategy.canary.variant "
                "&& self.mirror.variant != self.strategy.canary.baseline)",
                "the mirror variant cannot be the canary or the baseline of the strategy",
                field_path=".strategy.canary",
            ),
            cel(
                "!has(self.mirror) || self.variants.all(v, v.name != self.mirror.variant || v.weight == 0)",
                "the mirror variant only receives copies of traffic; its weight must be 0",
                field_path=".mirror.variant",
            ),
        )
    }

    model: str = Field(max_length=63, pattern=DNS_LABEL)
    variants: list[Variant] = Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    mirror: Mirror | None = None
    routing: Routing = Field(default_factory=Routing)
    required_stage: RequiredStage = Field(
        default="production",
        description="Lowest stage a version must have reached to take live traffic (a mirror: one stage lower).",  # noqa: E501
    )
    allow_major_version_mix: bool = Field(
        default=False, description="Allow splitting live traffic across different MAJOR versions."
    )
    port: int = Field(default=80, ge=1, le=65535, description="Port of the per-variant Services.")
    placement: Placement | None = Field(
        default=None, description="nodeSelector and tolerations of the model pods."
    )
    strategy: Strategy | None = Field(
        default=None,
        description="How the declared weights are reached: a canary whose share climbs through steps, "
        "judged by Prometheus metrics. Without it, declared weights apply as soon as variants are eligible.",
    )

    @model_validator(mode="after")
    def _split(self) -> ModelEndpointSpec:
        problems = [
            message
            for _reason, message in validate_declared(
                [(v.name, v.version, v.weight) for v in self.variants],
                self.mirror.variant if self.mirror else None,
                allow_major_mix=True,  # the operator reports MAJOR mixing as a condition, not a parse error
            )
        ]
        if self.mirror is not None:
            for v in self.variants:
                if v.name == self.mirror.variant and v.weight != 0:
                    problems.append(
                        "the mirror variant only receives copies of traffic; its weight must be 0"
                    )
        if self.strategy is not None:
            names = {v.name for v in self.variants}
            c = self.strategy.canary
            missing = [n for n in (c.variant, c.baseline) if n not in names]
            if missing:
                problems.append(f"strategy names unknown variants: {', '.join(missing)}")
            if self.mirror is not None and self.mirror.variant in (c.variant, c.baseline):
                problems.append("the mirror variant cannot be the canary or the baseline of the strategy")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def version_name(self, variant: Variant) -> str:
        return expected_name(self.model, variant.version)


class ServingPin(StatusModel):
    version: str
    model_version_uid: str
    digest: str
    slot: str


class VariantStatus(StatusModel):
    name: str
    version: str
    model_version: str | None = None
    desired_weight: int = Field(ge=0, le=100)
    effective_weight: int = Field(ge=0, le=100)
    mirror: bool | None = None
    replicas: int | None = None
    ready_replicas: int = 0
    artifact_verified: bool = False
    stage: str | None = None
    eligible: bool = False
    reason: str | None = None
    message: str | None = None
    digest: str | None = None
    serving: ServingPin | None = Field(
        default=None,
        description="The slot (per-version Deployment + Service) that carries this variant's traffic now, "
        "pinned to the ModelVersion UID and digest it was verified with.",
    )


class DrainingSlot(StatusModel):
    name: str = Field(description="Deployment and Service of a slot that no longer carries traffic.")
    since: str = Field(description="When the observed routes first stopped pointing at it (RFC 3339).")


class ClosedRoute(StatusModel):
    reason: str = Field(
        description="The x-model-unavailable value: revoked, quarantined, archived, below-required-stage."
    )
    message: str = Field(description="Which variants lost their version's authority, and why.")


_TIME: dict[str, Any] = {"format": "date-time"}


class ServedVariant(StatusModel):
    variant: str
    version: str
    digest: str = Field(description="Artifact sha256 its pods verified (the pinned digest).")
    serving_digest: str | None = Field(
        default=None, description="The version's status.servingDigest when recorded (if it had one)."
    )
    weight: int = Field(ge=0, le=100)
    slot: str = Field(
        description="The slot's Service the route sent it to (what a gateway access log names)."
    )


class MirroredVariant(StatusModel):
    variant: str
    version: str
    digest: str
    percent: int = Field(ge=0, le=100)
    slot: str


class RouteChange(StatusModel):
    at: str = Field(
        json_schema_extra=_TIME,
        description="When the route write making this split returned (or the operator observed it); it "
        "served from then until the next change's `at`.",
    )
    cause: str = Field(description=f"Why: {', '.join(wire.ROUTE_CAUSES)}.")
    detail: str | None = Field(default=None, max_length=256)
    generation: int = Field(default=0, description="The endpoint's metadata.generation then.")
    split: list[ServedVariant] = Field(
        default_factory=list, description="Live variants with a weight > 0, as served."
    )
    mirror: MirroredVariant | None = None
    closed: str | None = Field(default=None, description="The route answered 503 with x-model-unavailable.")


class RangeVariant(StatusModel):
    variant: str
    version: str
    digest: str
    max_weight: int = Field(ge=0, le=100, description="Its highest weight in the range.")
    mirror: bool | None = None


class CoarseRange(StatusModel):
    start: str = Field(json_schema_extra=_TIME)
    end: str = Field(json_schema_extra=_TIME, description="Exclusive: the next entry's start.")
    changes: int = Field(ge=1, description="How many changes were merged into this range.")
    variants: list[RangeVariant] = Field(
        default_factory=list, description="Every one that served at some moment of the range."
    )
    closed: bool | None = None
    truncated: bool | None = None


class RouteHistory(StatusModel):
    """Every change of the split as served that the operator observed (domain.endpoint_history)."""

    changes: list[RouteChange] = Field(
        default_factory=list, description="The newest changes in full, oldest first."
    )
    coarse: list[CoarseRange] = Field(
        default_factory=list,
        description="Older changes merged into time ranges, oldest first; the exact split at a moment "
        "in one is no longer known.",
    )


class ModelEndpointStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTRA)
    variants: list[VariantStatus] = Field(default_factory=list)
    effective_weights: dict[str, int] = Field(
        default_factory=dict, description="Weights the routes carry now (variant -> weight)."
    )
    traffic: str | None = Field(default=None, description="Summary for kubectl, e.g. 'stable=90,canary=10'.")
    router: str | None = None
    region: str | None = Field(
        default=None,
        max_length=63,
        description="The region (cluster) whose operator wrote this status (the operator's region setting): "
        "the variants, rollout and routeHistory are this region's. Absent: no region set.",
    )
    draining: list[DrainingSlot] = Field(
        default_factory=list, description="Slots waiting out the drain grace period before deletion."
    )
    rollout: RolloutStatus | None = Field(default=None, description="Progress of spec.strategy.")
    closed: ClosedRoute | None = Field(
        default=None,
        description="Set while the route is closed: a withdrawn (revoked, quarantined, archived, demoted) "
        "version carried traffic and nothing eligible remains; every request is answered 503 with "
        "x-model-unavailable.",
    )
    route_history: RouteHistory | None = Field(
        default=None,
        description="Every change of the split as served (versions, digests, weights, slots; why), "
        "bounded: `kubectl models which ENDPOINT --at TIME` answers from it.",
    )


class ModelEndpoint(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = "modelversioning.io/v1alpha1"
    kind: Literal["ModelEndpoint"] = "ModelEndpoint"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelEndpointSpec
    status: ModelEndpointStatus | None = None


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Traffic", "type": "string", "jsonPath": ".status.traffic"},
    {"name": "Router", "type": "string", "jsonPath": ".spec.routing.router", "priority": 1},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

ROOT_VALIDATIONS: list[dict[str, str]] = []
