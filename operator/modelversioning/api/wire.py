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
# The runtime catalog (api.runtime): field-compatible with KServe's ServingRuntime/ClusterServingRuntime;
# a namespaced ModelRuntime is seen only by the versions of its namespace.
MODELRUNTIME = Resource(GROUP, VERSION, "modelruntimes", "ModelRuntime", "modelruntime", ("mrt",))
CLUSTERMODELRUNTIME = Resource(
    GROUP, VERSION, "clustermodelruntimes", "ClusterModelRuntime", "clustermodelruntime", ("cmrt",), False
)  # cluster-scoped: written by platform admins, seen by every namespace
RUNTIME_KINDS = (MODELRUNTIME, CLUSTERMODELRUNTIME)  # namespaced first: the order auto-selection prefers
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
# refuses the DELETE of a ModelVersion whose status.servedBy names an endpoint: while the operator
# observes it enforced it adds no in-use finalizer (domain.version_plan.finalizers_for)
IN_USE_POLICY = f"in-use.{GROUP}"
OUR_KINDS = (MODELVERSION, MODELENDPOINT, MODEL, MODELAPPROVAL)

# Kubernetes' own kinds we read or write.
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
SERVICE = Resource("", "v1", "services", "Service")
POD = Resource("", "v1", "pods", "Pod")  # our slots' pods (label selector): what their status says
SECRET = Resource("", "v1", "secrets", "Secret")
CONFIGMAP = Resource("", "v1", "configmaps", "ConfigMap")  # trust roots by reference (read by name)
EVENT = Resource("", "v1", "events", "Event")
# Who the API server says the caller is (`kubectl models` records it as who asked); created, never stored.
SELF_SUBJECT_REVIEW = Resource(
    "authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", namespaced=False
)
# May the caller do this? (`kubectl models quarantine` asks before a write for someone: reading a namespace
# is not writing it); created, never stored. The write itself still goes with the caller's credentials.
SELF_SUBJECT_ACCESS_REVIEW = Resource(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False
)
# May this user (and groups) do this? The in-cluster web view asks it, as its ServiceAccount, for the viewer
# its authenticating proxy names, before showing a namespace's objects from its shared cache; never stored.
SUBJECT_ACCESS_REVIEW = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)

# ----------------------------------------------------------------------------------- annotations
# On a ModelVersion, set by people and tooling (kubectl models, GitOps):
REQUESTED_BY_ANNOTATION = f"{GROUP}/requested-by"  # who asked for a stage change / rollout action
REASON_ANNOTATION = f"{GROUP}/reason"  # why (free text, recorded in status.history)
REQUESTED_STAGE_ANNOTATION = f"{GROUP}/requested-stage"  # the spec.stage the requested-by belongs to
# revoked: "<why>" (kubectl models revoke, with spec.stage archived): every route drops the version at
# once, before (and whatever) its stage walk; never gated, and it lets an archive of a serving version pass
REVOKED_ANNOTATION = f"{GROUP}/revoked"
# Lineage quarantine (kubectl models quarantine; domain.quarantine), written with the caller's own
# credentials, never by the operator, never in spec (a GitOps self-heal leaves annotations it does not
# manage alone):
#   quarantined: a JSON list of the selectors in force ("dataset=NAME@VERSION", "commit=SHA",
#     "version=MODEL@VERSION"); present and non-empty: withdrawn from every route at once and no
#     promotion, until the last selector is lifted (the annotation is then removed)
#   quarantine-reason: why (the last quarantine or lift); quarantined-by: who made that change (the
#     chart's requested-by admission policy: the authenticated user, or the write is refused)
QUARANTINED_ANNOTATION = f"{GROUP}/quarantined"
QUARANTINE_REASON_ANNOTATION = f"{GROUP}/quarantine-reason"
QUARANTINED_BY_ANNOTATION = f"{GROUP}/quarantined-by"
QUARANTINE_ANNOTATIONS = (QUARANTINED_ANNOTATION, QUARANTINE_REASON_ANNOTATION, QUARANTINED_BY_ANNOTATION)
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
# kubectl's client-side apply record (not ours: never written; dropped from what we keep and show)
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

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
UNAVAILABLE_QUARANTINED = "quarantined"  # the version is under a lineage quarantine
UNAVAILABLE_ARCHIVED = "archived"  # its stage is archived
UNAVAILABLE_BELOW_STAGE = "below-required-stage"  # demoted below the endpoint's requiredStage
UNAVAILABLE_VALUES = (  # most severe first
    UNAVAILABLE_REVOKED,
    UNAVAILABLE_QUARANTINED,
    UNAVAILABLE_ARCHIVED,
    UNAVAILABLE_BELOW_STAGE,
)
CLOSED_SERVICE_SUFFIX = "-closed"  # gatewayAPI: the selector-less Service a closed HTTPRoute points to
# The request id a client sends (or an edge in front of the gateway sets); the gateway forwards it and
# its access log keeps it, so "request X was served by version Y" joins the access log (X -> the slot
# Service that answered, at a time) with the endpoint's status.routeHistory (slot -> version, digest).
# Traefik and Gateway API generate none and cannot echo one in the response; Envoy (Istio) generates
# it when absent (docs/design.md, "Point-in-time answers").
HEADER_REQUEST_ID = "x-request-id"

# ------------------------------------------------------------------------------- route history
# status.routeHistory.changes[].cause of a ModelEndpoint: why the split as served changed
# (domain.endpoint_history.cause_of; most specific first).
ROUTE_CAUSE_INITIAL = "Initial"  # the first split this operator recorded for the endpoint
ROUTE_CAUSE_CLOSED = "Closed"  # a withdrawn version carried traffic, nothing eligible: 503 (detail: why)
ROUTE_CAUSE_REOPENED = "Reopened"  # a closed route serves again
ROUTE_CAUSE_WITHDRAWN = "Withdrawn"  # a revoked / quarantined / archived / demoted version's share moved
ROUTE_CAUSE_ROLLBACK = "RolloutRollback"  # a rollout failed its analysis or was aborted: back to its start
ROUTE_CAUSE_ROLLOUT_STEP = "RolloutStep"  # a rollout moved to its next step (or finished)
ROUTE_CAUSE_SPEC_CHANGE = "SpecChange"  # the endpoint's spec changed: a weight edit, a version, a rollback
ROUTE_CAUSE_ELIGIBILITY = "Eligibility"  # same spec: a version or slot became (in)eligible, capacity
ROUTE_CAUSES = (
    ROUTE_CAUSE_INITIAL,
    ROUTE_CAUSE_CLOSED,
    ROUTE_CAUSE_REOPENED,
    ROUTE_CAUSE_WITHDRAWN,
    ROUTE_CAUSE_ROLLBACK,
    ROUTE_CAUSE_ROLLOUT_STEP,
    ROUTE_CAUSE_SPEC_CHANGE,
    ROUTE_CAUSE_ELIGIBILITY,
)


# ------------------------------------------------------------------------------- rollback readiness
# A ModelEndpoint's advisory condition: could its fallback (the variant `kubectl models rollback` moves
# traffic to) take all live traffic now (domain.rollback_readiness; reasons in api/reasons.py)? Never
# Degraded, never Stalled; and the gauge modelversioning_endpoint_rollback_ready{namespace,endpoint,reason}.
ROLLBACK_READY_CONDITION = "RollbackReady"
# What an artifact probe (artifacts.probe: a HEAD/stat/list of the verified URI, never the bytes) found.
PROBE_PRESENT = "Present"  # there, with the verified size and file count
PROBE_MISSING = "Missing"  # nothing at the URI
PROBE_CHANGED = "Changed"  # something there, but not the verified size or file count
PROBE_UNREACHABLE = "Unreachable"  # the store did not answer (or refused to): not known
PROBE_STATES = (PROBE_PRESENT, PROBE_MISSING, PROBE_CHANGED, PROBE_UNREACHABLE)
# `kubectl models drill`: a drill's two writes carry these annotations (with requested-by and reason),
# so a person (or the drill after an interruption) sees that an endpoint is mid-drill and what to restore.
DRILL_ANNOTATION = f"{GROUP}/drill"  # JSON: {"id", "restore": spec.variants as found, "started"}
# Markers of an object a GitOps controller manages (it would put the declared spec back mid-drill):
# Argo CD's tracking annotation and default tracking label, Flux's kustomize and helm labels.
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id",)
GITOPS_LABELS = (
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
)

# ------------------------------------------------------------------------------------ node cache
# The node-local cache of verified artifacts (modelversioning.nodecache, docs/design.md "Node cache").
# The audience of the projected ServiceAccount token a model pod's init container shows the agent, which
# the agent checks with a TokenReview (a token for the API server, or for anything else, is refused).
NODE_CACHE_AUDIENCE = f"{GROUP}/node-cache"
# What a TokenReview says about a bound token's pod (Kubernetes 1.30+): the node it was scheduled to.
TOKEN_NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
TOKEN_REVIEW = Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False)
# Why the agent refused a request: the body of its answer and the `reason` label of
# modelversioning_node_cache_refusals_total.
CACHE_UNAUTHENTICATED = "Unauthenticated"  # no token, or the TokenReview did not authenticate it
CACHE_WRONG_AUDIENCE = "WrongAudience"  # a valid token, but not issued for NODE_CACHE_AUDIENCE
CACHE_NOT_A_POD = "NotAServiceAccount"  # authenticated, but not as a ServiceAccount (no namespace)
CACHE_WRONG_NODE = "WrongNode"  # the token's pod runs on another node (a token shown at the wrong agent)
CACHE_NO_VERSION = "NoVersionWithDigest"  # the caller's namespace has no ModelVersion with that sha256
CACHE_NOT_VERIFIED = "NotVerified"  # it has, but none whose ArtifactVerified is True for that digest
CACHE_WITHDRAWN = "VersionWithdrawn"  # the verified ones are revoked or being deleted
CACHE_WRONG_KIND = "WrongKind"  # the kind asked for is not its version's (or that kind is not known)
CACHE_REVIEW_FAILED = "ReviewFailed"  # the API server could not be asked (refused: never a guess)
CACHE_ENTRY_CORRUPT = "EntryCorrupt"  # an entry's bytes no longer hash to its digest: dropped, not served
CACHE_OFFER_MISMATCH = "OfferMismatch"  # offered bytes that do not hash to the digest offered: not stored
CACHE_MALFORMED = "Malformed"  # a request or an offer the agent cannot read
CACHE_FULL = "CacheFull"  # no room: every entry that would have to go is being served or written
CACHE_SHARE_EXCEEDED = "ShareExceeded"  # the offering namespace's share is full of entries in use
CACHE_TOO_LARGE = "TooLarge"  # an offer's Content-Length is over the largest entry the cache takes
CACHE_BUSY = "Busy"  # every request slot is taken (503): the reader fetches from the origin
CACHE_REFUSALS = (
    CACHE_UNAUTHENTICATED, CACHE_WRONG_AUDIENCE, CACHE_NOT_A_POD, CACHE_WRONG_NODE, CACHE_NO_VERSION,
    CACHE_NOT_VERIFIED, CACHE_WITHDRAWN, CACHE_WRONG_KIND, CACHE_REVIEW_FAILED, CACHE_ENTRY_CORRUPT,
    CACHE_OFFER_MISMATCH, CACHE_MALFORMED, CACHE_FULL, CACHE_TOO_LARGE, CACHE_BUSY, CACHE_SHARE_EXCEEDED,
)  # fmt: skip


# ---------------------------------------------------------------------------------------- reasons
# Declared in api/reasons.py (the registry and its properties), named from here like every other
# name on the wire.
from modelversioning.api.reasons import *  # noqa: E402, F403
