"""The ModelEndpoint's reasons: per variant, its conditions, what a slot's pods report, RollbackReady, the
effective split, its Events and its rollout's Events.

Declared in the one registry (``api.reason_registry``); ``api.reasons`` re-exports every name here
(and ``api.wire`` re-exports ``api.reasons``): code imports a reason from ``api.reasons`` or names it as
``wire.X``. Imports nothing of the project but the registry's machinery.
"""

from __future__ import annotations

from modelversioning.api.reason_registry import (
    ENDPOINT_CONDITION,
    ENDPOINT_EVENT,
    ENDPOINT_VARIANT,
    ROLLBACK_READY,
    ROUTE_SPLIT,
    VERSION_CONDITION,
    VERSION_EVENT,
    VERSION_STAGE,
    VERSION_VERIFIED,
    reason,
)

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
del _EV, _EC
