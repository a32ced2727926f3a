"""Every name the operator and `kubectl models` put on the wire, declared once.

Kinds (group/version/plural), annotations, labels, finalizers, response headers, and the registry of
condition/Event reasons with their properties. Operator and CLI both import this module; a test
(tests/test_wire.py) fails on a `"modelversioning.io/..."` literal anywhere else in `operator/`.

This module imports nothing of the project and no third-party package, so the pure layers and a
fast-starting CLI can use it without building the pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "modelversioning.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "models"

# Formats of values on the wire (CRD patterns, admission, the CLI's checks before any work).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_HEX = r"^[a-f0-9]{64}$"
GIT_SHA = r"^[a-f0-9]{7,64}$"


# ---------------------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Resource:
    """One API resource: what a watch, a path or `kubectl get <plural>.<group>` needs."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str = ""
    short_names: tuple[str, ...] = ()
    namespaced: bool = True  # False: cluster-scoped (listed and watched without a namespace)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`<plural>.<group>` as kubectl spells a resource unambiguously."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        """The REST path of a collection (namespace None: across namespaces), an object or a subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        p = f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p


def expected_name(model: str, version: str) -> str:
    """A ModelVersion's name: `<model>-v<version>` (admission refuses any other)."""
    return f"{model}-v{version}"


MODELVERSION = Resource(GROUP, VERSION, "modelversions", "ModelVersion", "modelversion", ("mv",))
MODELENDPOINT = Resource(GROUP, VERSION, "modelendpoints", "ModelEndpoint", "modelendpoint", ("mep",))
MODEL = Resource(GROUP, VERSION, "models", "Model", "model", ("mdl",))
MODELAPPROVAL = Resource(GROUP, VERSION, "modelapprovals", "ModelApproval", "modelapproval", ("mapr",))
MODELPLATFORMPOLICY = Resource(
    GROUP, VERSION, "modelplatformpolicies", "ModelPlatformPolicy", "modelplatformpolicy", ("mpp",), False
)  # cluster-scoped: written by platform admins only, read by the operator
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
# The chart's admission policies and bindings (cluster-scoped, read only): approvals count and
# requested-by is an identity only while the operator observes these enforced (domain.approvals).
_ADM = ("admissionregistration.k8s.io", "v1")
ADMISSION_POLICY = Resource(
    *_ADM, "validatingadmissionpolicies", "ValidatingAdmissionPolicy", namespaced=False
)
ADMISSION_BINDING = Resource(
    *_ADM, "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", namespaced=False
)
APPROVALS_POLICY = f"approvals.{GROUP}"  # policy and binding names (charts/.../files/admission/)
REQUESTED_BY_POLICY = f"requested-by.{GROUP}"
OUR_KINDS = (MODELVERSION, MODELENDPOINT, MODEL, MODELAPPROVAL)

# Kubernetes' own kinds we read or write.
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
SERVICE = Resource("", "v1", "services", "Service")
POD = Resource("", "v1", "pods", "Pod")  # our slots' pods (label selector): what their status says
SECRET = Resource("", "v1", "secrets", "Secret")
EVENT = Resource("", "v1", "events", "Event")

# ----------------------------------------------------------------------------------- annotations
# On a ModelVersion, set by people and tooling (kubectl models, GitOps):
REQUESTED_BY_ANNOTATION = f"{GROUP}/requested-by"  # who asked for a stage change / rollout action
REASON_ANNOTATION = f"{GROUP}/reason"  # why (free text, recorded in status.history)
REQUESTED_STAGE_ANNOTATION = f"{GROUP}/requested-stage"  # the spec.stage the requested-by belongs to
# revoked: "<why>" (kubectl models revoke, with spec.stage archived): every route drops the version at
# once, before (and whatever) its stage walk; never gated, and it lets an archive of a serving version pass
REVOKED_ANNOTATION = f"{GROUP}/revoked"
# On a ModelVersion, written by the operator only (the chart's admission policy enforces it):
PROMOTION_ANNOTATION = f"{GROUP}/rollout-promotion"  # an endpoint's rollout earned the next stage
ROLLOUT_RECORD_ANNOTATION = f"{GROUP}/rollout-record"  # the last rollout outcome for this version
ARCHIVE_ANNOTATION = f"{GROUP}/retention-archive"  # {"specStage", "at", "reason", "by"}
ARTIFACT_DELETED_ANNOTATION = f"{GROUP}/artifact-deleted"  # {"at", "uri", "by", "reason"}
DELETION_PROTECTED_ANNOTATION = f"{GROUP}/deletion-protected"  # refused DELETE (chart's policy)
# On a ModelVersion, written by `kubectl models import` (provenance of an imported version):
IMPORTED_FROM_ANNOTATION = f"{GROUP}/imported-from"
MLFLOW_TRACKING_URI_ANNOTATION = f"{GROUP}/mlflow-tracking-uri"
MLFLOW_MODEL_ANNOTATION = f"{GROUP}/mlflow-model"
MLFLOW_VERSION_ANNOTATION = f"{GROUP}/mlflow-version"
MLFLOW_RUN_ID_ANNOTATION = f"{GROUP}/mlflow-run-id"
MLFLOW_ARTIFACT_ANNOTATION = f"{GROUP}/mlflow-artifact-uri"
VERSION_RULE_ANNOTATION = f"{GROUP}/version-rule"
# On a ModelEndpoint, set by people (kubectl models rollout ...):
ROLLOUT_ACTION_ANNOTATION = f"{GROUP}/rollout-action"  # promote | abort | retry
ROLLOUT_ACTION_ID_ANNOTATION = f"{GROUP}/rollout-action-id"  # a fresh id per request
#   accept-replaced: "<variant>=<sha256 prefix, 12+ hex>[,<variant>=<prefix>...]" accepts a re-created
#   ModelVersion's new digest for that variant.
ACCEPT_REPLACED_ANNOTATION = f"{GROUP}/accept-replaced"
# On a Model the operator created as the registry's record of a model name that had none (value
# CREATED_BY_OPERATOR): a Model with the default policy; a user's later apply of a Model of that name
# adopts it (spec is the user's, status.versions, the record, stays).
CREATED_BY_ANNOTATION = f"{GROUP}/created-by"
CREATED_BY_OPERATOR = "operator"
# On a Model, TEST ONLY (honoured only with the operator setting registry.testClock): "now" for this
# Model's retention, an RFC 3339 time.
TEST_CLOCK_ANNOTATION = f"{GROUP}/test-clock"
# On a slot's pod template: the digest its init container verifies.
SHA256_ANNOTATION = f"{GROUP}/artifact-sha256"
# Every annotation of ours starts with this; the watch cache keeps only these (handlers.store).
ANNOTATION_PREFIX = f"{GROUP}/"

# ---------------------------------------------------------------------------------------- labels
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ENDPOINT = f"{GROUP}/endpoint"
LABEL_VARIANT = f"{GROUP}/variant"
LABEL_MODEL = f"{GROUP}/model"
LABEL_MODEL_VERSION = f"{GROUP}/version"
LABEL_SLOT = f"{GROUP}/slot"  # the per-version child set (Deployment + Service) a pod belongs to
TAG_LABEL_PREFIX = f"tag.{GROUP}/"  # kubectl label mv fraud-v2.4.1 tag.modelversioning.io/best=true
MANAGED_BY = "modelversioning-operator"  # value of LABEL_MANAGED_BY on every child we create

# ------------------------------------------------------------------------------------ finalizers
IN_USE_FINALIZER = f"{GROUP}/in-use"  # on a ModelVersion an endpoint variant serves
# On a ModelEndpoint: its deletion removes the route first, waits for the drain grace, then deletes
# the slots (domain.endpoint_delete); without it, garbage collection takes route and slots at once.
DRAIN_FINALIZER = f"{GROUP}/drain"

# ------------------------------------------------------------------------------- response headers
HEADER_MODEL = "x-model-name"
HEADER_VERSION = "x-model-version"
HEADER_SHA256 = "x-model-sha256"
HEADER_VARIANT = "x-endpoint-variant"
RESPONSE_HEADERS = (HEADER_MODEL, HEADER_VERSION, HEADER_SHA256, HEADER_VARIANT)
# A closed route (a withdrawn version carried traffic and nothing eligible remains) answers
# UNAVAILABLE_STATUS with this header saying why, never the withdrawn model (domain.revocation).
HEADER_UNAVAILABLE = "x-model-unavailable"
UNAVAILABLE_STATUS = 503
UNAVAILABLE_REVOKED = "revoked"  # the version carries the revoked annotation
UNAVAILABLE_ARCHIVED = "archived"  # its stage is archived
UNAVAILABLE_BELOW_STAGE = "below-required-stage"  # demoted below the endpoint's requiredStage
UNAVAILABLE_VALUES = (UNAVAILABLE_REVOKED, UNAVAILABLE_ARCHIVED, UNAVAILABLE_BELOW_STAGE)  # most severe first
CLOSED_SERVICE_SUFFIX = "-closed"  # gatewayAPI: the selector-less Service a closed HTTPRoute points to


# --------------------------------------------------------------------------------------- reasons
# Every condition/Event reason the operator reports (CamelCase, stable: users and alerts match on
# them), with its properties. `reason()` registers one and returns the plain string, so code compares
# and writes strings while the tables below are derived from one declaration.

ENDPOINT_VARIANT = "ModelEndpoint status.variants[].reason"
ENDPOINT_CONDITION = "ModelEndpoint condition"
ENDPOINT_EVENT = "ModelEndpoint Event"
ROUTE_SPLIT = "ModelEndpoint route split (RoutesReady message)"
VERSION_VERIFIED = "ModelVersion ArtifactVerified"
VERSION_STAGE = "ModelVersion StageTransition"
VERSION_CONDITION = "ModelVersion condition"
VERSION_EVENT = "ModelVersion Event / status.history"
MODEL_CONDITION = "Model condition"
MODEL_EVENT = "Model Event"
KSTATUS = "kstatus condition Reconciling / Stalled (every kind)"


@dataclass(frozen=True)
class ReasonInfo:
    name: str
    where: tuple[str, ...]  # the conditions / Events that carry it
    meaning: str
    # kstatus Stalled (Flux) and Argo CD Degraded: as a ModelEndpoint's Degraded reason, or as the
    # reason of a ModelVersion's failed ArtifactVerified/StageTransition
    stalls_endpoint: bool = False
    stalls_version: bool = False
    permanent: bool = False  # a variant with it is bad until its spec changes (no retry fixes it)
    transient: bool = False  # the operator retries by itself; reported as progressing, never stalled
    no_slot: bool = False  # a version failing verification with it never gets a slot (Deployment)


REASONS: dict[str, ReasonInfo] = {}


def reason(name: str, *where: str, meaning: str, **props: bool) -> str:
    if name in REASONS:
        raise ValueError(f"reason {name} declared twice")
    REASONS[name] = ReasonInfo(name, where, meaning, **props)
    return name


_EV, _EC = ENDPOINT_VARIANT, ENDPOINT_CONDITION
# ---- ModelEndpoint: per variant (status.variants[].reason)
ELIGIBLE = reason(
    "Eligible", _EV, meaning="verified, at the required stage, Deployment Available: takes its share"
)
MISSING_VERSION = reason(
    "MissingVersion",
    _EV,
    _EC,
    meaning="no ModelVersion <model>-v<version> in the namespace",
    permanent=True,
    stalls_endpoint=True,
)
INVALID_VERSION = reason(
    "InvalidVersion",
    _EV,
    _EC,
    meaning="the ModelVersion does not validate",
    permanent=True,
    stalls_endpoint=True,
)
ARTIFACT_NOT_VERIFIED = reason(
    "ArtifactNotVerified",
    _EV,
    VERSION_STAGE,
    meaning="ArtifactVerified is not True (yet) for the pinned digest",
)
DIGEST_MISMATCH = reason(
    "DigestMismatch",
    _EV,
    _EC,
    VERSION_VERIFIED,
    meaning="the artifact's bytes do not hash to spec.artifact.sha256",
    permanent=True,
    no_slot=True,
    stalls_endpoint=True,
    stalls_version=True,
)
STAGE_NOT_REACHED = reason(
    "StageNotReached", _EV, meaning="the version is below requiredStage (a mirror: one lower)"
)
REVOKED = reason(
    "Revoked",
    _EV,
    _EC,
    ENDPOINT_EVENT,
    meaning="the version serving the variant was revoked: no traffic; with nothing else eligible the route "
    "is closed (503, x-model-unavailable)",
    permanent=True,
    stalls_endpoint=True,
)
WITHDRAWN = reason(
    "Withdrawn",
    _EV,
    _EC,
    ENDPOINT_EVENT,
    meaning="the version serving the variant was archived or demoted below requiredStage: as Revoked",
    permanent=True,
    stalls_endpoint=True,
)
SCALED_TO_ZERO = reason("ScaledToZero", _EV, meaning="replicas: 0; its share goes to the other variants")
DEPLOYMENT_NOT_AVAILABLE = reason(
    "DeploymentNotAvailable", _EV, meaning="the slot's Deployment is not Available yet"
)
SCALING_UP = reason("ScalingUp", _EV, meaning="minReplicas: the share grows once the slot has the replicas")
MODEL_VERSION_REPLACED = reason(
    "ModelVersionReplaced",
    _EV,
    _EC,
    meaning="the pinned ModelVersion was re-created (other UID/digest)",
    stalls_endpoint=True,
    permanent=True,
)
CHILD_REJECTED = reason(
    "ChildRejected",
    _EV,
    _EC,
    meaning="the API server refused a slot's Deployment/Service or the route (its message)",
    stalls_endpoint=True,
    permanent=True,
)
CHILD_APPLY_RETRYING = reason(
    "ChildApplyRetrying",
    _EV,
    _EC,
    meaning="a write of a slot's Deployment/Service or of the route failed in a way the operator retries "
    "with backoff (5xx, 429, no answer): Progressing=True, never stalled",
    transient=True,
)
CHILD_CONFLICT = reason(
    "ChildConflict",
    _EV,
    _EC,
    meaning="an object of the slot's or route's name exists and is not controlled by us",
    permanent=True,
    stalls_endpoint=True,
)
INVALID_SPEC = reason(
    "InvalidSpec",
    _EV,
    _EC,
    VERSION_CONDITION,
    meaning="the spec cannot be served as written (only the operator could tell)",
    stalls_endpoint=True,
    stalls_version=True,
    permanent=True,
)
POLICY_VIOLATION = reason(
    "PolicyViolation",
    _EV,
    _EC,
    meaning="the spec claims more than the platform's ModelPlatformPolicy allows (a host, a toleration); "
    "nothing of it is applied and what serves now keeps serving",
    stalls_endpoint=True,
    permanent=True,
)
# ---- ModelEndpoint: conditions
READY = reason(
    "Ready", _EC, VERSION_CONDITION, meaning="Ready=True: serving exactly as declared / ready to serve"
)
PROGRESSING = reason("Progressing", _EC, meaning="Ready=False while a change is under way")
CONVERGED = reason("Converged", _EC, meaning="Progressing=False")
ROLLING_OUT = reason("RollingOut", _EC, meaning="Progressing=True: a variant waits for its new slot")
BLOCKED = reason("Blocked", _EC, meaning="Progressing=True: routes are left alone (see Degraded)")
AS_EXPECTED = reason("AsExpected", _EC, meaning="Degraded=False")
NO_ELIGIBLE_VARIANT = reason(
    "NoEligibleVariant", _EC, ROUTE_SPLIT, meaning="nothing can take traffic; the route keeps what it has"
)
MAJOR_VERSION_MIX = reason(
    "MajorVersionMix",
    _EC,
    meaning="live split across MAJOR versions without allowMajorVersionMix",
    stalls_endpoint=True,
)
INVALID_SPLIT = reason(
    "InvalidSplit", _EC, meaning="declared weights do not form a valid split", stalls_endpoint=True
)
ROUTER_DISABLED = reason(
    "RouterDisabled",
    _EC,
    meaning="the router exists but the platform did not enable it",
    stalls_endpoint=True,
)
UNKNOWN_ROUTER = reason("UnknownRouter", _EC, meaning="no router of that name", stalls_endpoint=True)
SCALE_DOWN_HELD = reason(
    "ScaleDownHeld", _EC, meaning="replicas 0 requested for a slot that still carries traffic"
)
ROUTE_APPLIED = reason("RouteApplied", _EC, meaning="RoutesReady=True")
ROUTE_CLOSED = reason("RouteClosed", _EC, meaning="RoutesReady=True: the route answers 503 (see Degraded)")
ROUTE_NOT_APPLIED = reason("RouteNotApplied", _EC, meaning="RoutesReady=False: routes left unchanged")
NO_ROUTER = reason("NoRouter", _EC, meaning="router none: no route object")
MIRROR_UNSUPPORTED = reason(
    "MirrorUnsupported",
    _EC,
    meaning="the router/gateway cannot mirror: the shadow gets no copies",
    stalls_endpoint=True,
)
ROLLOUT_PAUSED = reason(
    "RolloutPaused", _EC, meaning="Progressing=True: a strategy step waits (a duration, or a person)"
)
ROLLOUT_FAILED = reason(
    "RolloutFailed",
    _EC,
    meaning="Degraded=True: the analysis failed; traffic back on the start",
    stalls_endpoint=True,
)
ROLLOUT_ABORTED = reason(
    "RolloutAborted",
    _EC,
    meaning="Degraded=True: a person aborted; traffic back on the start",
    stalls_endpoint=True,
)
# ---- ModelEndpoint: what a slot's pods report (domain.pod_health), as Degraded's reason (DigestMismatch
# too: the verify-artifact init container refused the bytes). Not permanent: the variant's eligibility
# and the route are unchanged (traffic stays on verified ready pods); the kubelet keeps retrying.
IMAGE_PULL_FAILED = reason(
    "ImagePullFailed", _EC, ENDPOINT_EVENT, meaning="Degraded=True: a slot's pod cannot pull an image"
)
CRASH_LOOP = reason(
    "CrashLoop", _EC, ENDPOINT_EVENT, meaning="Degraded=True: a slot's container keeps exiting"
)
RUNTIME_NOT_READY = reason(
    "RuntimeNotReady",
    _EC,
    ENDPOINT_EVENT,
    meaning="Degraded=True: a slot's model server runs but its readiness probe has not passed within "
    "serving.notReadySeconds",
)
ARTIFACT_CHECK_FAILED = reason(
    "ArtifactCheckFailed",
    _EC,
    ENDPOINT_EVENT,
    meaning="Degraded=True: a slot's verify-artifact init container failed for another reason than a digest "
    "mismatch (its termination message: the verifier's reason and message)",
)
# ---- ModelEndpoint: the effective split (domain.traffic), in RoutesReady's message and Events
AS_DECLARED = reason("AsDeclared", ROUTE_SPLIT, meaning="effective weights match the declared weights")
HELD_ON_READY_VARIANTS = reason(
    "HeldOnReadyVariants",
    ROUTE_SPLIT,
    meaning="declared variants are not ready; traffic stays with the ready variants",
)
WAITING_FOR_VARIANTS = reason(
    "WaitingForVariants",
    ROUTE_SPLIT,
    meaning="a declared variant is not eligible; its share stays with the ready variants",
)
# ---- ModelEndpoint: Events only
TRAFFIC_SHIFTED = reason(
    "TrafficShifted", ENDPOINT_EVENT, meaning="the effective weights in the route changed"
)
SLOT_DELETED = reason(
    "SlotDeleted", ENDPOINT_EVENT, meaning="a drained slot (Deployment + Service) was deleted"
)

# ---- ModelEndpoint: the rollout's Events (domain.rollout)
ROLLOUT_STARTED = reason("RolloutStarted", ENDPOINT_EVENT, meaning="a canary rollout began its first step")
ROLLOUT_STEP = reason("RolloutStep", ENDPOINT_EVENT, meaning="a step is done; the next one begins")
ROLLOUT_SUCCEEDED = reason(
    "RolloutSucceeded", ENDPOINT_EVENT, meaning="the canary reached its declared weight"
)
ROLLOUT_RETRIED = reason(
    "RolloutRetried", ENDPOINT_EVENT, meaning="a person retried a failed or aborted rollout"
)
ROLLOUT_PROMOTED = reason(
    "RolloutPromoted", ENDPOINT_EVENT, meaning="a person promoted the rollout past a pause"
)
# ---- kstatus conditions Reconciling / Stalled (both kinds; domain.kstatus)
RECONCILED = reason("Reconciled", KSTATUS, meaning="Reconciling=False: nothing in progress")
NOT_STALLED = reason("NotStalled", KSTATUS, meaning="Stalled=False: no permanent failure")

# ---- ModelVersion: condition ArtifactVerified (also the Warning Event's reason when it fails)
_VV = VERSION_VERIFIED
VERIFIED = reason("Verified", _VV, meaning="the artifact was read in full and hashes to spec.artifact.sha256")
VERIFYING = reason("Verifying", _VV, meaning="a fetch-and-hash is running (status Unknown)")
NOT_FOUND = reason("NotFound", _VV, meaning="nothing at the URI (yet); retried with backoff", transient=True)
FETCH_FAILED = reason(
    "FetchFailed", _VV, meaning="network or store error while reading; retried with backoff", transient=True
)
ACCESS_DENIED = reason(
    "AccessDenied", _VV, meaning="credentials missing or refused (a missing Secret is retried)", no_slot=True
)
URI_REFUSED = reason(
    "URIRefused",
    _VV,
    meaning="the artifact policy does not allow this URI (or these credentials)",
    stalls_version=True,
    no_slot=True,
)
LIMIT_EXCEEDED = reason(
    "LimitExceeded",
    _VV,
    meaning="timeoutSeconds/maxFiles/maxTotalBytes/memoryLimitBytes reached",
    no_slot=True,
    stalls_version=True,
)
SIZE_MISMATCH = reason(
    "SizeMismatch",
    _VV,
    meaning="the bytes read differ from spec.artifact.sizeBytes",
    no_slot=True,
    stalls_version=True,
)
# ---- ModelVersion: condition StageTransition
_VS = VERSION_STAGE
IN_EFFECT = reason("InEffect", _VS, meaning="status.stage equals spec.stage")
TRANSITION_NOT_ALLOWED = reason(
    "TransitionNotAllowed",
    _VS,
    meaning="no path in the stage graph to the requested stage",
    stalls_version=True,
)
LINEAGE_INCOMPLETE = reason(
    "LineageIncomplete", _VS, meaning="production needs every lineage field it names", stalls_version=True
)
PROMOTED = reason("Promoted", VERSION_EVENT, meaning="a hop up candidate -> staging -> production")
MOVED = reason("Moved", VERSION_EVENT, meaning="any other allowed hop, e.g. production -> archived")
METRIC_GATE_FAILED = reason(
    "MetricGateFailed", _VS, meaning="a Model's metric gate refused (message: the numbers)"
)
ARCHIVE_WHILE_SERVING = reason(
    "ArchiveWhileServing",
    _VS,
    meaning="archived is refused while an endpoint routes traffic to the version (use kubectl models revoke)",
    stalls_version=True,
)
APPROVAL_REQUIRED = reason(
    "ApprovalRequired", _VS, meaning="a Model's transition needs more distinct ModelApprovals that count"
)
IMAGE_NOT_PINNED = reason(
    "ImageNotPinned",
    _VS,
    meaning="the platform's policy requires runtime.image@sha256:<digest> from this stage",
    stalls_version=True,
)
# ---- ModelVersion: conditions InUse and Deleting
SERVED = reason("Served", VERSION_CONDITION, meaning="InUse=True: an endpoint variant names this version")
NOT_SERVED = reason("NotServed", VERSION_CONDITION, meaning="InUse=False: no endpoint names this version")
IN_USE = reason(
    "InUse", VERSION_CONDITION, meaning="Deleting=False: deletion is held by the in-use finalizer"
)
# ---- ModelVersion: status.history and Events
REGISTERED = reason(
    "Registered", VERSION_EVENT, meaning="history: the first entry, when the version enters candidate"
)
ARTIFACT_VERIFIED = reason(
    "ArtifactVerified", VERSION_EVENT, meaning="Event (Normal): the artifact was verified"
)
STAGE_CHANGED = reason(
    "StageChanged", VERSION_EVENT, meaning="Event (Normal): one hop made, with actor and reason"
)
STAGE_TRANSITION_BLOCKED = reason(
    "StageTransitionBlocked", VERSION_EVENT, meaning="Event (Warning): a gate or the graph refused"
)
HISTORY_TRIMMED = reason(
    "HistoryTrimmed", VERSION_EVENT, meaning="Event (Normal): a history entry beyond the cap"
)
DELETION_HELD = reason(
    "DeletionHeld", VERSION_EVENT, meaning="Event (Warning): deletion waits until no endpoint uses it"
)
# ---- The registry (Model)
VERSION_REUSED = reason(
    "VersionReused", _VV, meaning="the version number was registered before with another digest", no_slot=True
)
RECORD_PENDING = reason(
    "RecordPending",
    _VV,
    meaning="verified, waiting for the Model's status.versions to record this version and digest (Unknown)",
)
MODEL_CREATED = reason(
    "ModelCreated",
    VERSION_EVENT,
    meaning="Event (Normal): the operator created the Model (default policy) that records the versions",
)
RETENTION = reason(
    "Retention", VERSION_EVENT, meaning="history actor/reason: a Model's retention archived the version"
)
ARTIFACT_DELETED = reason(
    "ArtifactDeleted",
    _VV,
    MODEL_EVENT,
    VERSION_EVENT,
    meaning="retention deleted the artifact from storage; record kept (Event (Normal) on both)",
    no_slot=True,
)
ARTIFACT_DELETE_FAILED = reason(
    "ArtifactDeleteFailed",
    MODEL_CONDITION,
    VERSION_EVENT,
    meaning="Ready=False / Event (Warning) on the version: retention could not delete it (retried)",
)
ARTIFACT_DELETE_DUE = reason(
    "ArtifactDeleteDue",
    MODEL_EVENT,
    meaning="Event (Normal) on the Model: dry run; this artifact would be deleted now (once per version)",
)
ARTIFACT_DELETE_REFUSED = reason(
    "ArtifactDeleteRefused",
    MODEL_EVENT,
    VERSION_EVENT,
    meaning="Event (Warning) on the version and status.refusedDeletions: retention will not delete an "
    "artifact the version does not provably own (no storage root, outside it, never verified, a URI "
    "overlapping another registered one, the digest changed, a limit); nothing deleted",
)
ARCHIVE_DUE = reason(
    "ArchiveDue", MODEL_EVENT, meaning="Event (Normal) on the Model: retention archives a version"
)
MODEL_RECORDED = reason("Recorded", MODEL_CONDITION, meaning="Ready=True: every version is recorded")
INVALID_POLICY = reason("InvalidPolicy", MODEL_CONDITION, meaning="Ready=False: the policy cannot be applied")
del _EV, _EC, _VV, _VS

# The derived tables (one declaration above, several readers).
ENDPOINT_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_endpoint)
VERSION_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_version)
PERMANENT = frozenset(n for n, i in REASONS.items() if i.permanent)
TRANSIENT = frozenset(n for n, i in REASONS.items() if i.transient)
NO_SLOT = frozenset(n for n, i in REASONS.items() if i.no_slot)
