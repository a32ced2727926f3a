"""What a ModelEndpoint reconcile knows (facts, gathered from the watch cache and, for a rollout, from
Prometheus) and what its act observed (outcome): plain frozen values, no API types.

gather -> ``EndpointFacts``; ``endpoint_plan.decide(facts)`` -> ``Plan``; act -> ``Outcome``;
``endpoint_status.build_status(facts, plan, outcome)`` -> the whole status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from modelversioning.domain import rollout as RO
from modelversioning.domain.endpoint_history import RouteHistory
from modelversioning.domain.pod_health import PodProblem
from modelversioning.domain.runtime_contract import RuntimeCheck


@dataclass(frozen=True)
class VersionFacts:
    """The ModelVersion a variant's version resolves to, as the watch cache has it."""

    name: str
    uid: str
    version: str
    digest: str  # spec.artifact.sha256
    verified: bool  # ArtifactVerified=True for exactly this digest
    verify_reason: str  # ArtifactVerified's reason (why not, when not verified)
    stage: str | None  # status.stage
    revoked: str | None = None  # the revoked annotation (why): withdrawn at once, whatever the stage
    quarantined: str | None = None  # the quarantine selectors in force (domain.quarantine): as revoked
    trust_json: str | None = (
        None  # its accepted signature's trust anchors (the init container's --trust-json)
    )
    serving_digest: str = ""  # status.servingDigest ("": not recorded yet); reported, never decides
    content_digest: str = ""  # oci://: status.artifact.contentDigest (pinned in the init container)


@dataclass(frozen=True)
class SlotFacts:
    """A slot's Deployment as observed (exists=False: not created yet), and whether the slot is ours.

    A slot takes traffic only when ``ours``: its Deployment AND its Service both exist and carry this
    endpoint's controller ownerReference (controller: true, uid == the endpoint's). The route sends
    traffic to the Service of the slot's name, so a Service (or a Deployment behind it) that someone
    else made with that name is never routed to, however ready its pods look (``conflict`` says whose
    it is)."""

    name: str
    exists: bool = False
    available: bool = False
    ready_replicas: int = 0
    replicas: int = 0  # spec.replicas of the live Deployment
    why: str = "Deployment not created yet"
    ours: bool = False  # Deployment and Service both exist with this endpoint's controller reference
    conflict: str = ""  # a Deployment or Service of the slot's name not controlled by us: which, whose
    pod_problem: PodProblem | None = None  # what its pods' status says is failing (domain.pod_health)


@dataclass(frozen=True)
class Pin:
    """The slot a variant's traffic is pinned to, with what its pods verified."""

    version: str
    uid: str
    digest: str
    slot: str


@dataclass(frozen=True)
class VariantFacts:
    name: str
    version: str
    weight: int
    replicas: int
    mirror: bool
    mv: VersionFacts | None  # None: missing or invalid (see problem)
    problem: tuple[str, str] | None = None  # (reason, message) when the version cannot be served
    desired: SlotFacts | None = None  # the slot spec asks for; None when it cannot be rendered
    pin: Pin | None = None  # from status
    pinned: SlotFacts | None = None  # observed state of pin.slot
    pinned_mv: VersionFacts | None = None  # the ModelVersion named by pin.version, now
    accept_replaced: bool = False  # the user accepted a re-created ModelVersion (annotation)
    below_ok: bool = False  # a rollout's canary may take its bounded share one stage below requiredStage
    min_replicas: int | None = None  # set: replicas follow the share (`replicas` is the count at 100 %)
    mv_name: str = ""  # the ModelVersion's name (<model>-v<version>), also when it does not exist


@dataclass(frozen=True)
class RecordTarget:
    """The canary's ModelVersion as cached, for the rollout record written on it."""

    name: str
    stage: str  # status.stage ("candidate" when it has none yet)
    spec_stage: str  # spec.stage ("candidate" when unset)


@dataclass(frozen=True)
class RolloutFacts:
    """Everything the rollout state machine (domain.rollout) decides from, gathered in one place:
    status.rollout, the manual action annotations, the canary's version and the measurement that was
    due this reconcile (finished on the analysis pool, each with its time), or that it is running."""

    endpoint: str
    plan: RO.Plan  # spec.strategy.canary, as the state machine reads it
    declared: Mapping[str, int]  # spec weights of the live variants (the end state)
    target: str  # target_hash of the declared live variants
    strategy: str  # strategy_hash of spec.strategy
    effective: Mapping[str, int]  # status.effectiveWeights (what the route carries)
    now: float
    state: RO.State | None  # status.rollout, read back
    action: RO.Action | None = None  # the rollout-action annotations
    canary_stage: str | None = None  # status.stage of the canary's desired version
    canary_verified: bool = False
    required_stage: str = "production"
    measurements: tuple[RO.Measurement, ...] = ()  # finished on the analysis pool (analysis_due said so)
    measured_share: int | None = None  # the canary's share while they were taken
    measuring: bool = False  # a due measurement is queued or running on the analysis pool
    promote_on_success: bool = False
    promotion_refused: str | None = None  # why a success here earns no promotion (platform policy)
    record_on: RecordTarget | None = None  # None: the canary's ModelVersion is not in the cache
    # the canary's runtime checked against its version's signature (domain.runtime_contract; None: not
    # asked, the Model's spec.ioContract.checkRuntimeMetadata is off or the version has no signature)
    runtime: RuntimeCheck | None = None


@dataclass(frozen=True)
class ArtifactCheck:
    """What the last probe of the fallback's artifact found (artifacts.probe; domain.rollback_readiness)."""

    state: str  # wire.PROBE_* ; "": no answer yet
    message: str = ""


@dataclass(frozen=True)
class EndpointFacts:
    required_stage: str
    variants: tuple[VariantFacts, ...]
    previous_weights: Mapping[str, int]  # status.effectiveWeights
    allow_major_mix: bool
    router: str
    router_problem: tuple[str, str] | None  # (reason, message): unknown or disabled router
    owned_slots: frozenset[str]  # names of every Deployment/Service the endpoint controls
    routed: Mapping[str, int]  # Service -> weight in the routes observed through the watch
    routes_known: bool  # False: a route kind we cannot see, or a route write not yet observed
    draining: Mapping[str, float]  # slot -> since (epoch seconds), from status
    now: float
    drain_seconds: float
    mirror_supported: bool = True  # the router can mirror here (Gateway API: the implementation's)
    writes_route: bool = True  # False: no route object (none); weights and mirror are not applied
    why_no_mirror: str = ""  # with mirror_supported False: why (the router says)
    rollout: RolloutFacts | None = None  # with a spec.strategy
    previous_conditions: Mapping[str, tuple[str, str]] = field(
        default_factory=dict
    )  # type -> (status, reason)
    mirror_percent: int = 0  # spec.mirror.percent
    previous_closed: str = ""  # status.closed.reason: the route answers 503 (x-model-unavailable) now
    closed_service: str = ""  # the Service a closed route points to (gatewayAPI), kept while closed
    generation: int = 0  # metadata.generation (the route history names the spec it served)
    observed_generation: int = 0  # status.observedGeneration: the generation the last reconcile saw
    history: RouteHistory = RouteHistory()  # status.routeHistory (a report: it decides nothing routed)
    region: str | None = None  # the operator's region: status.region (None: not written)
    fallback_artifact: ArtifactCheck = ArtifactCheck("")  # the fallback's artifact probe (RollbackReady)


class ApiError(NamedTuple):
    """What the API server (or a renderer) refused, as act observed it."""

    reason: str  # ChildRejected, ChildConflict, InvalidSpec
    message: str
    transient: bool = False  # retried by the operator (5xx, 429, no answer): not a refusal for good


def api_error(raw: tuple[str, str] | ApiError) -> ApiError:
    return raw if isinstance(raw, ApiError) else ApiError(raw[0], raw[1])


@dataclass(frozen=True)
class Outcome:
    """What act could not do: API errors per variant, and a route that was not written."""

    variant_errors: Mapping[str, tuple[str, str] | ApiError] = field(default_factory=dict)  # name -> error
    # the route was not written (RenderError: InvalidSpec; an object of its name that is not ours:
    # ChildConflict; refused by the API server: ChildRejected, transient or not)
    route_error: tuple[str, str] | ApiError | None = None
    route_message: str = ""  # router.describe() when the route was written
    deleted: tuple[str, ...] = ()
    route_written_at: float | None = None  # epoch seconds the route write returned (None: not written)
