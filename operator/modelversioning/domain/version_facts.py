"""The values a ModelVersion decision works on (gather -> decide -> act): what the handler gathers
(``VersionFacts`` with its ``VerifierFacts``, ``Serving`` and ``RegistryFacts``), the operator's
``VersionPolicy``, and the ``VersionPlan`` that ``domain.version_plan.decide`` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.gates import CandidateFacts, TransitionRule
from modelversioning.domain.io_contract import Known
from modelversioning.domain.production import ProductionPolicy, Segment, SegmentFigures
from modelversioning.domain.quarantine import Mark
from modelversioning.domain.runtime_catalog import EXPLICIT, Resolution
from modelversioning.domain.stages import Stage, StageGraph
from modelversioning.domain.trust import TrustFacts

# status.history keeps the latest HISTORY_LIMIT entries; an older entry leaves as an Event (reason
# HistoryTrimmed, with the whole entry), so the audit trail continues wherever Events are shipped.
HISTORY_LIMIT = 50
# status.artifact.contents lists at most this many laid-out files of an oci:// artifact (by path); the
# whole list is bound by status.artifact.contentDigest and, above all, by the manifest digest.
CONTENTS_LIMIT = 100

# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class VerifyResult:
    """A finished fetch-and-hash of the artifact."""

    reason: str  # R.VERIFIED or why not
    message: str
    transient: bool  # retrying later may help
    actual: str | None = None  # the digest read
    size_bytes: int | None = None
    files: int | None = None  # a directory/prefix: how many files the manifest covers
    layout: str | None = None  # oci://: oras, modelkit, modelpack or image
    content_digest: str | None = None  # oci://: the laid-out files' digest as a directory
    contents: tuple[tuple[str, str, int], ...] = ()  # oci://: (path, sha256, size) of each file, by path
    # what the verifier found of the signature (status.artifact.signature; None: no trust policy applied)
    signature: Mapping[str, Any] | None = None
    # the I/O signature the artifact carries (status.artifact.ioSignature; None: none found)
    io_signature: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.reason == R.VERIFIED


@dataclass(frozen=True)
class VerifierFacts:
    """The verifier's bookkeeping for this object (same UID), read at gather time."""

    running: bool = False
    result: VerifyResult | None = None  # the last finished attempt, if not forgotten
    result_generation: int = 0  # the generation that attempt was started for
    failures: int = 0  # consecutive transient failures
    age: float = 0.0  # seconds since the result came in
    running_for: float = 0.0  # seconds since a worker began the running attempt (0: it waits for one)
    # seconds since the running attempt was asked for, its wait for a worker included (a new version's
    # first attempt is asked for at its first look: how long it has gone without a status since)
    waited_for: float = 0.0
    fresh: bool = False  # the result came in since the last reconcile (its attempt's Event is due)


@dataclass(frozen=True)
class Serving:
    """One endpoint variant that names this version (status.servedBy)."""

    endpoint: str
    variant: str
    weight: int
    mirror: bool = False
    slot: str = ""  # the slot that carries its traffic now (status.variants[].serving.slot); not in servedBy

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": self.endpoint, "variant": self.variant, "weight": self.weight}
        if self.mirror:
            out["mirror"] = True
        return out


@dataclass(frozen=True)
class RegistryFacts:
    """What the version's Model says (domain.registry, domain.gates): its graph and gates, and the
    registry's verdicts. No Model: the operator's graph and gates, and a Model (the record) to create."""

    graph: StageGraph | None = None  # the Model's stage graph (None: the operator's)
    rules: tuple[TransitionRule, ...] = ()
    candidate: CandidateFacts | None = None  # what the Model's gates look at
    reused: str | None = None  # this version number was registered with another digest: why (permanent)
    artifact_deleted: str | None = None  # retention deleted the artifact from storage: when, by whom
    # the policy that refuses deleting this version once past candidate (the deletion-protected
    # annotation's value); None: its policy allows the deletion
    deletion_policy: str | None = None
    # the record (the Model's status.versions) does not hold this version and digest yet: why the
    # version cannot be verified (Ready) until it does (None: recorded, or nothing to wait for)
    pending: str | None = None
    create_model: bool = False  # no Model of this name: the operator creates the record


@dataclass(frozen=True)
class ContractFacts:
    """What the I/O contract rule needs (gathered by handlers.contract)."""

    declared: Mapping[str, Any] | None = None  # spec.signature as written (None: none)
    # the accepted contracts of the model's other versions, and those not decided yet (``pending``:
    # being verified; a version they are the baseline of waits, so two applied together are compared)
    known: tuple[Known, ...] = ()
    require: bool = False  # a version without a signature is refused (requireSignature)
    required_by: str = ""  # which policy requires it (for the message)


@dataclass(frozen=True)
class ProductionFacts:
    """The production record's inputs (domain.production): what the measurement pool finished for this
    version, and when a segment last failed."""

    source: str = "traefik"  # the Model's spec.production.source
    results: tuple[SegmentFigures, ...] = ()
    failed_ago: float | None = None  # seconds since a segment of this version last failed (None: none)
    failures: int = 0  # segments of this version that failed in a row


@dataclass(frozen=True)
class VersionFacts:
    """Everything a decision about one ModelVersion needs, as observed."""

    name: str
    generation: int
    status: Mapping[str, Any]  # status as stored (conditions, stage, history, artifact)
    invalid: str | None = None  # the spec does not validate: why (nothing else is decided)
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    model: str = ""
    version: str = ""
    requested: str = Stage.CANDIDATE  # spec.stage (a built-in stage or one of the Model's)
    digest: str = ""  # spec.artifact.sha256
    shown_uri: str = ""  # spec.artifact.uri, redacted for messages
    missing_lineage: tuple[str, ...] = ()  # lineage fields production needs and the spec lacks
    actor: str = "unknown"  # who requested spec.stage
    why: str = ""  # the reason given for the request
    serving: tuple[Serving, ...] = ()
    # the chart's in-use admission policy is enforced (observed: bound, denying): the API server refuses
    # the DELETE of a version whose status.servedBy names an endpoint, so no in-use finalizer is added
    in_use_policy: bool = False
    verifier: VerifierFacts = field(default_factory=VerifierFacts)
    rollouts: tuple[Mapping[str, Any], ...] = ()  # outcomes endpoints recorded (annotation), newest last
    protected: str | None = None  # the deletion-protected annotation as stored
    revoked: str | None = None  # the revoked annotation (why): archived passes while it serves
    quarantine: Mark = field(default_factory=Mark)  # the quarantine annotations (domain.quarantine)
    registry: RegistryFacts = field(default_factory=RegistryFacts)
    serving_digest: str = ""  # domain.approvals.serving_digest(spec): what approvals bind to
    image: str = ""  # spec.runtime.image, else the resolved runtime's ("" while unresolved)
    # the catalog runtime of a version without spec.runtime (domain.runtime_catalog.resolve, decided at
    # gather time from the catalog, since the serving digest approvals bind covers it)
    runtime: Resolution = EXPLICIT
    pinned_images_from: tuple[str, ...] = ()  # the platform policies' stages that need image@sha256
    # a slot's pod read other bytes than this verified digest (its init container refused them): the
    # sha256 it found; the verified record is fetched and hashed again now, whatever its age
    recheck: str | None = None
    trust: TrustFacts = field(default_factory=TrustFacts)  # the trust policies that apply (domain.trust)
    contract: ContractFacts = field(default_factory=ContractFacts)  # I/O contract (domain.version_contract)
    production: ProductionFacts = field(default_factory=ProductionFacts)  # the production record's results


@dataclass(frozen=True)
class VersionPolicy:
    """The operator's settings the decisions use."""

    graph: StageGraph = field(default_factory=StageGraph)
    recheck_seconds: float = 0.0  # 0: a verified digest is never re-fetched
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    history_limit: int = HISTORY_LIMIT
    region: str | None = None  # the operator's region: status.region (None: not written)
    production: ProductionPolicy | None = None  # the production record (None: no Prometheus, off)


# ---------------------------------------------------------------------------------------- plan


class VerifyAction(StrEnum):
    NONE = "none"  # leave the verifier alone (running, held, or not needed)
    START = "start"  # start a fetch-and-hash now
    FORGET = "forget"  # drop the bookkeeping (the answer is in the status now)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A stage hop made or refused (for the transitions counter)."""

    src: str
    dst: str
    outcome: str  # made | blocked


@dataclass(frozen=True)
class VersionPlan:
    status: dict[str, Any] | None = None  # the whole new status; None: leave it alone
    events: tuple[Event, ...] = ()
    finalizers: tuple[str, ...] | None = None  # the new list; None: unchanged
    annotations: Mapping[str, str | None] = field(default_factory=dict)  # to change (None: remove)
    verify: VerifyAction = VerifyAction.NONE
    requeue_after: float | None = None  # look again (a transient failure's backoff)
    notify_endpoints: bool = False  # stage or verification changed: endpoints re-decide eligibility
    transitions: tuple[Transition, ...] = ()
    warning: str | None = None  # worth a log line, nothing to write
    create_model: str | None = None  # create this Model (the registry's record; 409: it exists, fine)
    measure: tuple[Segment, ...] = ()  # production record segments to submit to the measurement pool
