"""The registry of every condition/Event reason the operator reports, with its properties.

Part of the wire vocabulary: ``api.wire`` re-exports every name here, so code names a reason as
``wire.READY`` (or ``R.READY``) wherever it is declared. Like ``wire``, this module imports nothing of
the project but the registry's machinery (``api.reason_registry``), and no third-party package.
"""

from __future__ import annotations

# The registry (api.reason_registry) and every reason declared in it; `reason()` registers one and
# returns the plain string, so code compares and writes strings while the tables below are derived
# from one declaration.
from modelversioning.api.reason_registry import ENDPOINT_CONDITION as ENDPOINT_CONDITION
from modelversioning.api.reason_registry import ENDPOINT_EVENT as ENDPOINT_EVENT
from modelversioning.api.reason_registry import ENDPOINT_VARIANT as ENDPOINT_VARIANT
from modelversioning.api.reason_registry import KSTATUS as KSTATUS
from modelversioning.api.reason_registry import MODEL_CONDITION as MODEL_CONDITION
from modelversioning.api.reason_registry import MODEL_EVENT as MODEL_EVENT
from modelversioning.api.reason_registry import REASONS as REASONS
from modelversioning.api.reason_registry import RETIRED as RETIRED
from modelversioning.api.reason_registry import ROLLBACK_READY as ROLLBACK_READY
from modelversioning.api.reason_registry import ROUTE_SPLIT as ROUTE_SPLIT
from modelversioning.api.reason_registry import VERSION_CONDITION as VERSION_CONDITION
from modelversioning.api.reason_registry import VERSION_EVENT as VERSION_EVENT
from modelversioning.api.reason_registry import VERSION_STAGE as VERSION_STAGE
from modelversioning.api.reason_registry import VERSION_VERIFIED as VERSION_VERIFIED
from modelversioning.api.reason_registry import ReasonInfo as ReasonInfo
from modelversioning.api.reason_registry import reason as reason

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
    digest_mismatch=True,
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
QUARANTINED = reason(
    "Quarantined",
    _EV,
    _EC,
    ENDPOINT_EVENT,
    VERSION_STAGE,
    VERSION_EVENT,
    meaning="the version is under a lineage quarantine (kubectl models quarantine: its dataset, code "
    "commit or version): as Revoked for its traffic, and no promotion until the quarantine is lifted",
    permanent=True,
    stalls_endpoint=True,
    stalls_version=True,
)
QUARANTINE_LIFTED = reason(
    "QuarantineLifted",
    VERSION_EVENT,
    meaning="the last lineage quarantine of the version was lifted (kubectl models quarantine lift): "
    "eligible and promotable again",
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
# fmt: off
RUNTIME_SIGNATURE_MISMATCH = reason("RuntimeSignatureMismatch", _EC, meaning="Ready=False: the canary's "
                                    "runtime (OIP metadata) serves other I/O than its signature: held at 0%")
RUNTIME_CONTRACT_PENDING = reason("RuntimeContractPending", _EC, meaning="Progressing=True: the canary is "
                                  "held at 0% until its runtime's OIP metadata is read and matches")
# fmt: on
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
# ---- ModelEndpoint: RollbackReady (domain.rollback_readiness), advisory: the endpoint's fallback (the
# variant `kubectl models rollback` moves traffic to) could take all live traffic now. Never Degraded,
# never Stalled; the first failing check is the reason, the message names every one.
_RR = ROLLBACK_READY
# fmt: off
FALLBACK_READY = reason("FallbackReady", _RR, meaning="True: the fallback is verified, eligible, the same "
                        "MAJOR, its artifact is at its URI, its image resolved and its slot has ready pods")
NOTHING_SERVING = reason("NothingServing", _RR, meaning="Unknown: no live variant takes traffic: nothing "
                         "to fall back from")
NO_FALLBACK = reason("NoFallback", _RR, meaning="False: no live variant runs a version below the newest one "
                     "serving (keep the previous version as a variant at weight 0)")
FALLBACK_MAJOR_MISMATCH = reason("FallbackMajorMismatch", _RR, meaning="False: the fallback's MAJOR differs "
                                 "from what serves (a breaking I/O change for clients)")
FALLBACK_WITHDRAWN = reason("FallbackWithdrawn", _RR, meaning="False: the fallback's version is revoked, "
                            "archived or below requiredStage")
FALLBACK_NOT_VERIFIED = reason("FallbackNotVerified", _RR, meaning="False: the fallback's ModelVersion is "
                               "missing, invalid or not ArtifactVerified=True for its digest")
FALLBACK_ARTIFACT_MISSING = reason("FallbackArtifactMissing", _RR, meaning="False: the fallback's artifact "
                                   "is no longer at its URI, or its size or file count changed")
FALLBACK_ARTIFACT_UNCHECKED = reason("FallbackArtifactUnchecked", _RR, meaning="False: the store did not "
                                     "answer whether the fallback's artifact is still there (Unknown: not "
                                     "probed yet)")
FALLBACK_IMAGE_UNRESOLVABLE = reason("FallbackImageUnresolvable", _RR, meaning="False: the fallback's pods "
                                     "cannot pull its runtime image")
FALLBACK_NOT_WARM = reason("FallbackNotWarm", _RR, meaning="False: the fallback's slot has no ready pod "
                           "(not deployed, scaled to 0, not available, or not ours)")
# fmt: on
del _RR
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
# ---- ModelVersion: ArtifactVerified of an oci:// artifact (artifacts.oci_fetch)
TAG_WITHOUT_DIGEST = reason(
    "TagWithoutDigest",
    _VV,
    meaning="an oci:// URI without @sha256:<manifest digest> (a tag moves); admission refuses it too, and "
    "`kubectl models register` resolves a tag to its digest",
    no_slot=True,
    stalls_version=True,
)
MANIFEST_DIGEST_MISMATCH = reason(
    "ManifestDigestMismatch",
    _VV,
    meaning="the registry's manifest does not hash to the digest the oci:// URI pins",
    no_slot=True,
    stalls_version=True,
    digest_mismatch=True,
)
LAYER_DIGEST_MISMATCH = reason(
    "LayerDigestMismatch",
    _VV,
    meaning="a layer of the pinned manifest does not hash to its descriptor's digest (or is not its size); "
    "nothing of it was laid out",
    no_slot=True,
    stalls_version=True,
    digest_mismatch=True,
)
UNSUPPORTED_ARTIFACT_LAYOUT = reason(
    "UnsupportedArtifactLayout",
    _VV,
    meaning="the pinned manifest is not a layout the verifier lays out (an index, an unknown or zstd media "
    "type, foreign URLs, a digest other than sha256, no layers)",
    no_slot=True,
    stalls_version=True,
)
UNSAFE_ARCHIVE = reason(
    "UnsafeArchive",
    _VV,
    meaning="a tar layer holds an entry that would leave the model directory (an absolute path, '..', a "
    "link out) or a device/FIFO; nothing was laid out",
    no_slot=True,
    stalls_version=True,
)
# ---- ModelVersion: condition StageTransition
_VS = VERSION_STAGE
# Signed models (domain.trust): ArtifactVerified False at or beyond the trust policy's requiredFrom, and
# StageTransition False for a promotion into it; no slot (the init container checks the same).
_SIG = {"no_slot": True, "stalls_version": True}
SIGNATURE_MISSING = reason(
    "SignatureMissing", _VV, _VS, meaning="a signature is required; there is none at its location", **_SIG
)
SIGNATURE_INVALID = reason(
    "SignatureInvalid", _VV, _VS, meaning="the signature bundle is malformed, truncated or tampered", **_SIG
)
SIGNER_NOT_TRUSTED = reason(
    "SignerNotTrusted", _VV, _VS, meaning="signed by a key or identity a trust policy does not accept", **_SIG
)
SIGNATURE_DIGEST_MISMATCH = reason(
    "SignatureDigestMismatch", _VV, _VS, meaning="a valid signature over other files or digests", **_SIG
)
CERTIFICATE_EXPIRED = reason(
    "CertificateExpired", _VV, _VS, meaning="the signing certificate (or its chain) has expired", **_SIG
)
SIGNED = reason("Signed", _VV, meaning="status.artifact.signature.outcome: a valid signature over the files")
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
PRODUCTION_RECORD_INCOMPLETE = reason(
    "ProductionRecordIncomplete",
    _VS,
    VERSION_EVENT,
    meaning="a served.<figure> gate cannot be judged: the production record lacks the figure, holds it "
    "incomplete or counts too few requests (StageTransition); as a Warning Event: a closed serving "
    "period's summary was given up incomplete (status.servingHistory[].production.incomplete says why)",
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
STAGE_CHANGED = reason(
    "StageChanged",
    VERSION_EVENT,
    meaning="Event (Normal): the hops one walk made, with actor and reason (and the verification that "
    "allowed them, when it came in the same write)",
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
# ---- The I/O contract (domain.io_contract): ArtifactVerified, Events and status.ioSignature.contract
_IO = {"no_slot": True, "stalls_version": True}
# fmt: off
IO_SIGNATURE_CHANGED = reason("IOSignatureChanged", _VV, VERSION_EVENT, **_IO, meaning="a MINOR/PATCH "
                              "changes the I/O of the previous release of its MAJOR (the message names them)")
IO_SIGNATURE_MISSING = reason("IOSignatureMissing", _VV, VERSION_EVENT, **_IO,
                              meaning="no I/O signature, and the Model's requireSignature asks for one")
IO_CONTRACT_PENDING = reason("IOContractPending", _VV, meaning="verified, waiting for the previous release's "
                             "I/O signature to be decided (Unknown)")
IO_SIGNATURE_CHECKED = reason("IOSignatureChecked", VERSION_CONDITION, meaning="the baseline's I/O is kept")
IO_SIGNATURE_NOT_CHECKED = reason("IOSignatureNotChecked", VERSION_CONDITION,
                                  meaning="no signature, or no earlier release of the MAJOR with one")
# fmt: on
MODEL_RECORDED = reason("Recorded", MODEL_CONDITION, meaning="Ready=True: every version is recorded")
INVALID_POLICY = reason("InvalidPolicy", MODEL_CONDITION, meaning="Ready=False: the policy cannot be applied")
del _EV, _EC, _VV, _VS, _IO

# The runtime catalog's reasons are declared in their own module (re-exported by api.wire too): before
# the tables below, so that they count in them.
from modelversioning.api import runtime_reasons as runtime_reasons  # noqa: E402

# The derived tables (one declaration above, several readers).
ENDPOINT_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_endpoint)
VERSION_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_version)
PERMANENT = frozenset(n for n, i in REASONS.items() if i.permanent)
TRANSIENT = frozenset(n for n, i in REASONS.items() if i.transient)
# the I/O contract's refusals and wait: the bytes themselves were verified (not fetched again for them)
CONTRACT_REASONS = frozenset({IO_SIGNATURE_CHANGED, IO_SIGNATURE_MISSING, IO_CONTRACT_PENDING})
NO_SLOT = frozenset(n for n, i in REASONS.items() if i.no_slot)
DIGEST_MISMATCHES = frozenset(n for n, i in REASONS.items() if i.digest_mismatch)
