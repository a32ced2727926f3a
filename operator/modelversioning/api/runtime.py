"""The runtime catalog: ModelRuntime (namespaced) and ClusterModelRuntime (cluster-scoped).

Field-compatible with KServe's ServingRuntime / ClusterServingRuntime (serving.kserve.io/v1alpha1) for
the fields the operator uses: ``supportedModelFormats`` (name, version, autoSelect, priority),
``containers`` (one: name, image, command, args, env, ports, resources, readinessProbe.httpGet.path),
``protocolVersions`` and ``disabled``. ``kubectl models runtimes convert`` turns KServe's manifests into
these and lists what it leaves out.

A ModelVersion names one (``spec.runtimeRef``) or gets one chosen by its format (``spec.format``, else
``lineage.framework``); what it resolved to is kept in its ``status.resolvedRuntime`` for good
(``ResolvedRuntime``), so a later edit of the catalog never changes what an approved version runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from modelversioning.api.common import DNS_LABEL, ApiModel, StatusModel
from modelversioning.api.modelversion_spec import DEFAULT_PORT, FORMAT_NAME, EnvVar, Resources, RuntimeKind
from modelversioning.api.wire import CLUSTERMODELRUNTIME, MODELRUNTIME

KIND, PLURAL, SINGULAR, SHORT_NAMES = (
    MODELRUNTIME.kind,
    MODELRUNTIME.plural,
    MODELRUNTIME.singular,
    list(MODELRUNTIME.short_names),
)
CLUSTER_KIND, CLUSTER_PLURAL, CLUSTER_SINGULAR, CLUSTER_SHORT_NAMES = (
    CLUSTERMODELRUNTIME.kind,
    CLUSTERMODELRUNTIME.plural,
    CLUSTERMODELRUNTIME.singular,
    list(CLUSTERMODELRUNTIME.short_names),
)

# What a runtime resolves to (its port, protocol and health path) is decided in domain.runtime_catalog.


class SupportedModelFormat(ApiModel):
    name: str = Field(max_length=63, pattern=FORMAT_NAME, description="Format name, e.g. sklearn, xgboost.")
    version: str | None = Field(
        default=None, max_length=32, description='Format version (KServe: the major version), e.g. "1".'
    )
    auto_select: bool | None = Field(
        default=None, description="Chosen for a version that names only its format (no runtimeRef)."
    )
    priority: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Higher wins among auto-selected runtimes (KServe's)."
    )


class ContainerPort(ApiModel):
    name: str | None = Field(default=None, max_length=15)
    container_port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class HttpGet(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}  # port, scheme: the operator sets them

    path: str | None = Field(default=None, max_length=256)


class ReadinessProbe(ApiModel):
    # the operator sets timings and port itself: only httpGet.path is read (the converter warns)
    model_config = ApiModel.model_config | {"extra": "ignore"}

    http_get: HttpGet | None = None


class RuntimeContainer(ApiModel):
    name: str = Field(default="kserve-container", max_length=63, pattern=DNS_LABEL)
    image: str = Field(max_length=1024, description="Serving image (pin by digest: image@sha256:...).")
    command: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=32)
    args: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=64)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    ports: list[ContainerPort] = Field(
        default_factory=list, max_length=4, description=f"The first is served (default {DEFAULT_PORT})."
    )
    resources: Resources | None = None
    readiness_probe: ReadinessProbe | None = None


class ModelRuntimeSpec(ApiModel):
    supported_model_formats: list[SupportedModelFormat] = Field(
        default_factory=list, max_length=64, description="The model formats this runtime serves."
    )
    containers: list[RuntimeContainer] = Field(
        min_length=1, max_length=1, description="The model server (one container, as KServe's predictor)."
    )
    protocol_versions: list[Literal["v1", "v2", "grpc-v1", "grpc-v2"]] = Field(
        default_factory=list,
        max_length=4,
        description="Inference protocols it speaks (KServe's names); the first HTTP one is recorded "
        "(default v1).",
    )
    disabled: bool | None = Field(
        default=None, description="Never chosen, and a runtimeRef to it is refused."
    )

    @field_validator("protocol_versions")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("protocolVersions: each at most once")
        return v


class ModelRuntimeStatus(StatusModel):
    observed_generation: int | None = None


class ModelRuntime(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = "modelversioning.io/v1alpha1"
    kind: RuntimeKind = "ModelRuntime"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelRuntimeSpec
    status: ModelRuntimeStatus | None = None


def _formats_column() -> dict[str, Any]:
    return {"name": "Formats", "type": "string", "jsonPath": ".spec.supportedModelFormats[*].name"}


PRINTER_COLUMNS: list[dict[str, Any]] = [
    _formats_column(),
    {"name": "Protocols", "type": "string", "jsonPath": ".spec.protocolVersions"},
    {"name": "Image", "type": "string", "jsonPath": ".spec.containers[0].image"},
    {"name": "Disabled", "type": "boolean", "jsonPath": ".spec.disabled"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
