"""Operator settings: one typed model per concern, loaded from a YAML file and/or environment.

The chart renders these from its values into a ConfigMap mounted at
/etc/modelversioning/config.yaml (MODELVERSIONING_CONFIG points at it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from modelversioning.api import routers
from modelversioning.api.artifact_policy import ArtifactPolicy as ArtifactPolicy  # re-exported
from modelversioning.api.artifact_policy import SettingsBase
from modelversioning.api.wire import DNS_LABEL

DEFAULT_STAGE_GRAPH: dict[str, list[str]] = {
    "candidate": ["staging", "archived"],
    "staging": ["production", "archived"],
    "production": ["archived", "staging"],
    "archived": ["staging"],
}


_Settings = SettingsBase


class Verification(_Settings):
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    recheck_seconds: float = Field(
        default=0.0, ge=0, description="Re-verify verified artifacts this often (0=never)."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Verifications running at once.")
    per_namespace: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Verifications of one namespace running at once (the others of that namespace wait, "
        "so one namespace cannot starve the others).",
    )


class Serving(_Settings):
    init_image: str = Field(
        default="ghcr.io/modelversioning/modelversioning-operator:0.1.0",
        description="Image of the artifact-verifying init container (the operator image).",
    )
    init_image_pull_policy: str = "IfNotPresent"
    model_mount_path: str = "/models"
    enabled_routers: list[str] = Field(
        default_factory=routers.names,
        description="Routers endpoints may use (spec.routing.router); default: every registered router "
        "(api.routers). The chart derives it from routers.<name>.enabled.",
    )
    drift_check_seconds: float = Field(default=60.0, gt=0)
    rollback_probe_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How often the artifact of each endpoint's fallback is probed (a HEAD, stat or listing "
        "of its verified URI on the verification pool, never the bytes) for the RollbackReady condition; "
        "once per version however many endpoints fall back to it, checked at the drift check. 0: never "
        "(the artifact is then not part of RollbackReady).",
    )
    reconcile_workers: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Reconciles running at once. A reconcile spends most of its time waiting for the API "
        "server (a few ms of CPU around each write), so a new fleet converges faster with more of them; the "
        "periodic drift check uses one at a time whatever this is.",
    )
    gateway_api_features: list[str] = Field(
        default_factory=list,
        description="Extended Gateway API features the platform's implementation supports, as named in "
        "GatewayClass status.supportedFeatures (e.g. HTTPRouteRequestMirror), for implementations that do "
        "not publish them: the features a parent Gateway's GatewayClass publishes (GEP-2162) are used when "
        "it publishes any, this list otherwise. A mirror is written into an HTTPRoute only when every parent "
        "supports HTTPRouteRequestMirror: some implementations (Traefik 3.7) answer 500 to every request "
        "of a rule with a filter they do not support.",
    )
    drain_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Grace period between the observed routes no longer pointing at a slot "
        "(Deployment + Service of one version) and its deletion, for in-flight requests and gateways "
        "that apply routes late.",
    )
    not_ready_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a slot's model server may run without passing its readiness probe before the "
        "endpoint reports it (Degraded=True/RuntimeNotReady, a Warning Event). Reporting only: traffic goes "
        "to ready pods whatever this is. Raise it for runtimes that load large models slowly.",
    )
    node_cache_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The port of the node cache agent (the chart's nodeCache DaemonSet) on each node's IP. "
        "Set: every model pod's init container asks its node's agent for the pinned digest before "
        "fetching (showing a projected ServiceAccount token), hashes what it gets like the origin's bytes, "
        "and offers what it fetched; an absent agent costs a refused connection (or a few seconds). "
        "Changing it changes the pod template: every slot is rolled once. Unset: no cache (the default).",
    )


class RoutePolicy(_Settings):
    """Which hosts and gateways an endpoint's route may claim (checked when the route is rendered; a
    refusal is a permanent InvalidSpec and the route is left alone).

    Always refused: the bare wildcard ``*`` and cluster-internal names of other namespaces
    (``svc.other``, ``svc.other.svc``, ``svc.other.svc.cluster.local``, ``kubernetes.default...``).
    An Istio VirtualService is exported only to its own namespace (``exportTo: ["."]``) plus the
    namespaces of the allowed gateways it names, so it never changes routing for other namespaces.
    """

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="If non-empty, routing.hosts must match one entry: exact or '*.suffix'; "
        "'{namespace}' stands for the endpoint's namespace (e.g. '*.{namespace}.models.example.com').",
    )
    allowed_gateways: list[str] = Field(
        default_factory=list,
        description="Istio gateways of other namespaces an endpoint may bind to, as 'namespace/name' "
        "(or 'namespace/*'). Gateways of the endpoint's own namespace and 'mesh' are always allowed.",
    )


class AnalysisSettings(_Settings):
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus HTTP API base URL for canary analysis (e.g. http://prometheus:9090). Set by "
        "the platform, not per endpoint, so a tenant cannot point the operator at arbitrary URLs.",
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Total deadline of one query: connecting, the answer's headers and every byte of it "
        "(not per read). Past it the measurement is inconclusive.",
    )
    max_answer_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=64 << 20,
        description="Largest answer to one query, in bytes; a larger one is refused (inconclusive) "
        "while it is read. A query that returns one number answers a few hundred bytes.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Measurements running at once, on threads of their own: a reconcile never runs or "
        "waits for a query, it submits a measurement and returns.",
    )
    per_namespace: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Measurements of one namespace running at once (jobs start round-robin across "
        "namespaces, so one namespace's slow queries only ever wait behind themselves).",
    )
    queued_per_namespace: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Measurements of one namespace waiting to run; past it an endpoint's measurement is "
        "not queued (its rollout waits and it asks again at its next reconcile).",
    )


class ProductionSettings(_Settings):
    """The production record (docs/design.md): per serving period, from analysis.prometheusUrl (none: off)."""

    interval_seconds: float = Field(
        default=600.0,
        ge=60,
        le=86400,
        description="An open serving period's summary is measured and written at most once per this many "
        "seconds (the write budget: one status write per serving version per interval, with every period "
        "of the version in it).",
    )
    settle_seconds: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="A segment ends this long before now, and a closed period is summarised this long after "
        "it closed (scrape interval and the gateway's route lag).",
    )
    retry_seconds: float = Field(
        default=120.0,
        ge=5,
        le=86400,
        description="A segment that failed (Prometheus down) is tried again after this.",
    )
    give_up_seconds: float = Field(
        default=86400.0,
        ge=60,
        description="A closed period still not summarised this long after it closed becomes final and "
        "incomplete (a Warning Event says so).",
    )


class RegistrySettings(_Settings):
    allow_artifact_deletion: bool = Field(
        default=False,
        description="Let a Model's retention (artifactDeletion: Enabled) delete artifacts from storage. "
        "Off: deletions due are only reported (as with DryRun).",
    )
    protect_versions_without_model: bool = Field(
        default=False,
        description="Protect ModelVersions past candidate that have no Model from deletion too (the "
        "annotation modelversioning.io/deletion-protected, enforced by the chart's admission policy). "
        "Off: only a Model's spec.deletionPolicy protects its versions.",
    )
    retention_check_seconds: float = Field(
        default=3600, gt=0, description="How often each Model's retention is looked at, at most."
    )
    test_clock: bool = Field(
        default=False,
        description="TEST ONLY: honour the modelversioning.io/test-clock annotation on a Model (its "
        "retention's 'now'). Never enable it in a real cluster: whoever can annotate a Model could age "
        "its versions.",
    )


class AdmissionSettings(_Settings):
    """What the operator may assume about the chart's admission policies (files/admission/)."""

    enforced: bool = Field(
        default=False,
        description="What the chart installed (it derives it from admission.enabled and "
        "admission.validationActions; do not set it by hand). Informational only: the operator trusts "
        "modelversioning.io/requested-by and counts ModelApprovals only while it observes the chart's "
        "ValidatingAdmissionPolicyBindings denying in the cluster (handlers/admission.py), so deleting a "
        "binding (break-glass) takes effect at once and no setting can claim enforcement.",
    )


class Settings(_Settings):
    region: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="The name of the region (the cluster) this operator runs in, e.g. eu-west: one cluster "
        "per region, each with its own operator (docs/design.md, Regions). Set: every ModelVersion and "
        "ModelEndpoint status carries it once (status.region: its servedBy, servingHistory and routeHistory "
        "are this region's), and modelversioning_operator_info{region} is exported. Unset: neither "
        "(a single-cluster operator, as before).",
    )
    artifacts: ArtifactPolicy = Field(default_factory=ArtifactPolicy)
    verification: Verification = Field(default_factory=Verification)
    serving: Serving = Field(default_factory=Serving)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    production: ProductionSettings = Field(default_factory=ProductionSettings)
    routing: RoutePolicy = Field(default_factory=RoutePolicy)
    stage_graph: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_STAGE_GRAPH))
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        """The settings of ``path`` (else ``$MODELVERSIONING_CONFIG``; neither: the defaults).

        A named file that does not exist is an error, never the defaults: a mistyped mount must
        not silently turn the artifact policy into the built-in one (fail closed)."""
        path = path or os.environ.get("MODELVERSIONING_CONFIG")
        data: Any = {}
        if path:
            import yaml  # only with a file: the init container gets its policy as JSON

            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except FileNotFoundError:
                raise FileNotFoundError(f"settings file {path} does not exist") from None
            if not isinstance(data, dict):
                raise ValueError(f"settings file {path} must contain a mapping")
        return cls.model_validate(data)
