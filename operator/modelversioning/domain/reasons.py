"""Every condition/Event reason the reconcilers report, in one place (CamelCase, stable: users and
alerts match on them). Grouped by resource; each with what it means.
"""

from __future__ import annotations

# ---- ModelEndpoint: per variant (status.variants[].reason) -----------------------------------------
ELIGIBLE = "Eligible"  # verified, at the required stage, Deployment Available: takes its share
MISSING_VERSION = "MissingVersion"  # no ModelVersion <model>-v<version> in the namespace
INVALID_VERSION = "InvalidVersion"  # the ModelVersion does not validate (admitted before a rule existed)
ARTIFACT_NOT_VERIFIED = "ArtifactNotVerified"  # ArtifactVerified is not True (yet) for the pinned digest
DIGEST_MISMATCH = "DigestMismatch"  # the artifact's bytes do not hash to spec.artifact.sha256 (permanent)
STAGE_NOT_REACHED = "StageNotReached"  # the version is below requiredStage (a mirror: one stage lower)
SCALED_TO_ZERO = "ScaledToZero"  # replicas: 0 (never eligible; its share goes to the other variants)
DEPLOYMENT_NOT_AVAILABLE = "DeploymentNotAvailable"  # the slot's Deployment is not Available yet
SCALING_UP = "ScalingUp"  # minReplicas: the share grows once the slot has the replicas to carry it
MODEL_VERSION_REPLACED = "ModelVersionReplaced"  # the pinned ModelVersion was re-created (other UID/digest)
CHILD_REJECTED = "ChildRejected"  # the API server refused the slot's Deployment/Service (its message)
CHILD_CONFLICT = "ChildConflict"  # an object of the slot's name exists and is not controlled by us
INVALID_SPEC = "InvalidSpec"  # the spec cannot be served as written (only the operator could tell)

# ---- ModelEndpoint: conditions ---------------------------------------------------------------------
READY = "Ready"  # Ready=True: serving exactly as declared
PROGRESSING = "Progressing"  # Ready=False while a change is under way
CONVERGED = "Converged"  # Progressing=False
ROLLING_OUT = "RollingOut"  # Progressing=True: a variant waits for its new slot
BLOCKED = "Blocked"  # Progressing=True: routes are left alone (see Degraded)
AS_EXPECTED = "AsExpected"  # Degraded=False
NO_ELIGIBLE_VARIANT = "NoEligibleVariant"  # nothing can take traffic; the route keeps what it has
MAJOR_VERSION_MIX = "MajorVersionMix"  # live split across MAJOR versions without allowMajorVersionMix
INVALID_SPLIT = "InvalidSplit"  # declared weights do not form a valid split
ROUTER_DISABLED = "RouterDisabled"  # the router exists but the platform did not enable it
UNKNOWN_ROUTER = "UnknownRouter"  # no router of that name
SCALE_DOWN_HELD = "ScaleDownHeld"  # replicas 0 requested for a slot that still carries traffic
ROUTE_APPLIED = "RouteApplied"  # RoutesReady=True
ROUTE_NOT_APPLIED = "RouteNotApplied"  # RoutesReady=False: routes left unchanged
NO_ROUTER = "NoRouter"  # router none: no route object
MIRROR_UNSUPPORTED = "MirrorUnsupported"  # the router/gateway cannot mirror: the shadow gets no copies
ROLLOUT_PAUSED = "RolloutPaused"  # Progressing=True: a strategy step waits (a duration, or a person)
ROLLOUT_FAILED = "RolloutFailed"  # Degraded=True: the analysis failed; traffic is back on the start weights
ROLLOUT_ABORTED = "RolloutAborted"  # Degraded=True: a person aborted; traffic is back on the start weights

# ---- ModelEndpoint: Events only --------------------------------------------------------------------
TRAFFIC_SHIFTED = "TrafficShifted"  # the effective weights in the route changed
SLOT_DELETED = "SlotDeleted"  # a drained slot (Deployment + Service) was deleted

# The annotation a user sets on a ModelEndpoint to accept a re-created ModelVersion's new digest:
#   modelversioning.io/accept-replaced: "<variant>=<sha256 prefix, 12+ hex>[,<variant>=<prefix>...]"
ACCEPT_ANNOTATION = "modelversioning.io/accept-replaced"

# ---- ModelVersion: condition ArtifactVerified (also the Warning Event's reason when it fails) -----
# (DIGEST_MISMATCH above: permanent for the generation; INVALID_SPEC and READY above: Ready)
VERIFIED = "Verified"  # the artifact was read in full and hashes to spec.artifact.sha256
VERIFYING = "Verifying"  # a fetch-and-hash is running (status Unknown)
NOT_FOUND = "NotFound"  # nothing at the URI (yet); retried with backoff
FETCH_FAILED = "FetchFailed"  # network or store error while reading; retried with backoff
ACCESS_DENIED = "AccessDenied"  # credentials missing or refused (a missing Secret is retried)
URI_REFUSED = "URIRefused"  # the artifact policy does not allow this URI (or these credentials there)
LIMIT_EXCEEDED = "LimitExceeded"  # timeoutSeconds/maxFiles/maxTotalBytes/memoryLimitBytes reached (permanent)
SIZE_MISMATCH = "SizeMismatch"  # the bytes read differ from spec.artifact.sizeBytes (permanent)

# ---- ModelVersion: condition StageTransition (ARTIFACT_NOT_VERIFIED above: a gate) ------------
IN_EFFECT = "InEffect"  # status.stage equals spec.stage
TRANSITION_NOT_ALLOWED = "TransitionNotAllowed"  # no path in the stage graph to the requested stage
LINEAGE_INCOMPLETE = "LineageIncomplete"  # production needs every lineage field it names
PROMOTED = "Promoted"  # a hop up candidate -> staging -> production (a decision, not written)
MOVED = "Moved"  # any other allowed hop, e.g. production -> archived (a decision, not written)
METRIC_GATE_FAILED = "MetricGateFailed"  # a Model's metric gate refused (message: the numbers)
APPROVAL_REQUIRED = "ApprovalRequired"  # a Model's transition needs more distinct ModelApprovals

# ---- ModelVersion: conditions InUse and Deleting ----------------------------------------------
SERVED = "Served"  # InUse=True: an endpoint variant names this version (servedBy lists them)
NOT_SERVED = "NotServed"  # InUse=False: no endpoint names this version
IN_USE = "InUse"  # Deleting=False: deletion is held by the in-use finalizer

# ---- ModelVersion: status.history and Events --------------------------------------------------
REGISTERED = "Registered"  # history: the first entry, when the version enters candidate
ARTIFACT_VERIFIED = "ArtifactVerified"  # Event (Normal): the artifact was verified
STAGE_CHANGED = "StageChanged"  # Event (Normal): one hop made, with its actor and reason
STAGE_TRANSITION_BLOCKED = "StageTransitionBlocked"  # Event (Warning): a gate or the graph refused
HISTORY_TRIMMED = "HistoryTrimmed"  # Event (Normal): a status.history entry beyond the cap, kept here
DELETION_HELD = "DeletionHeld"  # Event (Warning): deletion waits until no endpoint uses it

# ---- The registry (Model): ArtifactVerified=False reasons on a ModelVersion, and Events ----------
VERSION_REUSED = "VersionReused"  # the version number was registered before with another digest (permanent)
RETENTION = "Retention"  # history actor/reason: a Model's retention archived the version
ARTIFACT_DELETED = "ArtifactDeleted"  # retention deleted the artifact from storage; the record is kept
ARTIFACT_DELETE_FAILED = "ArtifactDeleteFailed"  # Event (Warning): retention could not delete it (retried)
ARTIFACT_DELETE_DUE = "ArtifactDeleteDue"  # Event (Normal): dry run; this artifact would be deleted now
ARCHIVE_DUE = "ArchiveDue"  # Event (Normal) on the Model: retention archives a version
MODEL_RECORDED = "Recorded"  # Model condition Ready=True: every version is recorded
INVALID_POLICY = "InvalidPolicy"  # Model condition Ready=False: the policy cannot be applied as written
