"""The ModelVersion's spec: one pinned, immutable version of one model, with its lineage, its runtime
(explicit, by reference, or from the catalog) and its I/O signature. The status is in
``api.modelversion_status``; the kind (the root object, its CRD's columns and rules) in
``api.modelversion``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from modelversioning.api.artifact import NO_USERINFO, Artifact, no_credentials_in_uri
from modelversioning.api.common import (
    DNS_LABEL,
    GIT_SHA,
    SHA256_HEX,
    ApiModel,
    StatusModel,
    cel,
    validations,
)
from modelversioning.domain.semver import SEMVER_PATTERN, SemVer

# The built-in stages are candidate, staging, production, archived; a Model may define its own.
STAGE_NAME = r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$"
StageName = Annotated[str, Field(max_length=32, pattern=STAGE_NAME)]

# Keys of free-form maps: bounded, so one object cannot hold megabytes of names.
_KEYS_BOUNDED = cel("self.all(k, size(k) <= 253)", "keys must be at most 253 characters")


def _bounded_keys(value: dict[str, Any], what: str) -> dict[str, Any]:
    long = [k[:40] for k in value if len(k) > 253]
    if long:
        raise ValueError(f"{what}: keys must be at most 253 characters ({', '.join(long)}...)")
    return value


# Fields of lineage that must be present before a version can reach production.
PRODUCTION_LINEAGE = ("codeRepository", "codeCommit", "dataset", "trainedAt", "author", "framework")


class Dataset(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.version) || has(self.sha256)", "lineage.dataset needs a version and/or a sha256")
        )
    }

    name: str = Field(max_length=253)
    version: str | None = Field(default=None, max_length=128)
    sha256: str | None = Field(default=None, max_length=64, pattern=SHA256_HEX)
    uri: str | None = Field(default=None, max_length=2048, json_schema_extra=validations(NO_USERINFO))

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return no_credentials_in_uri(v, "lineage.dataset.uri")

    @model_validator(mode="after")
    def _identity(self) -> Dataset:
        if self.version is None and self.sha256 is None:
            raise ValueError("lineage.dataset needs a version and/or a sha256")
        return self


Scalar = str | int | float | bool


class Lineage(ApiModel):
    code_repository: str | None = Field(
        default=None, max_length=2048, json_schema_extra=validations(NO_USERINFO)
    )
    code_commit: str = Field(
        max_length=64,
        description="Git commit of the training code (hex).",
        json_schema_extra=validations(
            cel(f"self.matches('{GIT_SHA}')", "lineage.codeCommit must be a hex git commit sha (7-64 chars)")
        ),
    )
    dataset: Dataset
    hyperparameters: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=256,
        # values are free scalars (x-kubernetes-preserve-unknown-fields), which CRD CEL rules cannot
        # type: nesting and long strings are refused by the chart's admission policy (spec-limits)
        # and by the operator
        description="Scalars only (string, number, boolean); strings up to 256 characters.",
    )
    trained_at: str | None = Field(default=None, max_length=64, json_schema_extra={"format": "date-time"})
    author: str | None = Field(default=None, max_length=256)
    framework: str | None = Field(default=None, max_length=128)
    environment: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=validations(_KEYS_BOUNDED),
        description="Training environment, e.g. python, cuda, baseImage (digest).",
    )

    @field_validator("code_repository")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        return no_credentials_in_uri(v, "lineage.codeRepository")

    @field_validator("hyperparameters")
    @classmethod
    def _hyper(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        long = [k for k, x in v.items() if isinstance(x, str) and len(x) > 256]
        if long:
            names = ", ".join(k[:40] for k in long)
            raise ValueError(f"lineage.hyperparameters: string values up to 256 characters ({names})")
        return _bounded_keys(v, "lineage.hyperparameters")

    @field_validator("environment")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _bounded_keys(v, "lineage.environment")

    @field_validator("code_commit")
    @classmethod
    def _commit(cls, v: str) -> str:
        import re

        if not re.match(GIT_SHA, v):
            raise ValueError("lineage.codeCommit must be a hex git commit sha (7-64 chars)")
        return v

    @field_validator("trained_at")
    @classmethod
    def _rfc3339(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parsed = datetime.fromisoformat(v)
            except ValueError as e:
                raise ValueError(f"lineage.trainedAt {v!r} is not an RFC 3339 timestamp") from e
            if parsed.tzinfo is None:
                raise ValueError(f"lineage.trainedAt {v!r} needs a time zone (e.g. Z)")
        return v

    def missing_for_production(self) -> list[str]:
        data = self.to_k8s()
        return [f"lineage.{f}" for f in PRODUCTION_LINEAGE if not data.get(f)]


Quantity = int | str
# A Kubernetes resource.Quantity (the API server's own syntax): "500m", "2Gi", "1e3", 4; not "2 Gi".
QUANTITY_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_QUANTITIES = validations(
    cel(
        "self.all(k, isQuantity(string(self[k])))",
        "resource quantities must use Kubernetes quantity syntax, e.g. 500m, 2Gi, 4 (no spaces)",
    )
)


class Resources(ApiModel):
    # at most 12 resource names each: keeps the isQuantity rule within the API server's CEL cost budget
    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=12, json_schema_extra=_QUANTITIES)
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=12, json_schema_extra=_QUANTITIES)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, v: dict[str, Quantity]) -> dict[str, Quantity]:
        bad = [f"{k}={q!r}" for k, q in v.items() if not _QUANTITY_RE.match(str(q))]
        if bad:
            raise ValueError("not Kubernetes quantities (e.g. 500m, 2Gi, 4; no spaces): " + ", ".join(bad))
        return v


class VariantResources(ApiModel):
    """Resources of a ModelEndpoint variant: the same syntax, checked by the operator only."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=12)
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=12)

    _quantities = field_validator("requests", "limits")(Resources._quantities.__func__)  # type: ignore[attr-defined]


class EnvVar(ApiModel):
    name: str = Field(max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = Field(default="", max_length=4096)


class Runtime(ApiModel):
    image: str = Field(max_length=1024, description="Serving container image (pin by digest in production).")
    command: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=32)
    args: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=64)
    port: int = Field(default=8080, ge=1, le=65535)
    health_path: str | None = Field(
        default=None, max_length=256, description="HTTP readiness path; a TCP check on the port when absent."
    )
    resources: Resources | None = None
    env: list[EnvVar] = Field(default_factory=list, max_length=64)


# ---- the runtime catalog (api.runtime): what a version names, and what it resolved to for good
RuntimeKind = Literal["ModelRuntime", "ClusterModelRuntime"]
FORMAT_NAME = r"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$"
DEFAULT_PORT = 8080  # Runtime's default, and KServe's when a runtime's container lists no port


class RuntimeRef(ApiModel):
    kind: RuntimeKind | None = Field(
        default=None,
        description="ModelRuntime (in this namespace) or ClusterModelRuntime; absent: a ModelRuntime of "
        "this name if there is one, else the ClusterModelRuntime (KServe's lookup).",
    )
    name: str = Field(max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


class ModelFormat(ApiModel):
    name: str = Field(max_length=63, pattern=FORMAT_NAME, description="e.g. sklearn (KServe's format names).")
    version: str | None = Field(default=None, max_length=32, description='e.g. "1" (KServe: the major).')


class RuntimeSource(StatusModel):
    kind: RuntimeKind
    name: str = Field(max_length=253)
    uid: str = Field(default="", max_length=64)
    generation: int = 0


class ResolvedRuntime(StatusModel):
    """What a version without spec.runtime resolved from the catalog, kept for good: a later edit of
    the catalog never changes it (a new version picks the edit up); the serving digest covers it."""

    image: str = Field(max_length=1024)
    command: list[str] = Field(default_factory=list, max_length=32)
    args: list[str] = Field(default_factory=list, max_length=64)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    protocol: str = Field(default="v1", max_length=16, description="v1 or v2 (the Open Inference Protocol).")
    health_path: str | None = Field(default=None, max_length=256)
    resources: Resources | None = None
    source: RuntimeSource

    def as_runtime(self) -> Runtime:
        """The Runtime the version serves with (render uses it as it uses an explicit spec.runtime)."""
        return Runtime(
            image=self.image,
            command=list(self.command),
            args=list(self.args),
            port=self.port,
            health_path=self.health_path,
            resources=self.resources,
            env=list(self.env),
        )


class TensorSpec(ApiModel):
    name: str = Field(max_length=256)
    dtype: str = Field(max_length=64)
    shape: list[int] = Field(default_factory=list, max_length=16)


class Signature(ApiModel):
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=256)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=256)


def _immutable(field: str, optional: bool = False) -> dict[str, str]:
    rule = (
        f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"  # noqa: E501
        if optional
        else f"self.{field} == oldSelf.{field}"
    )
    return cel(
        rule,
        message_expression=(
            f"'ModelVersion ' + oldSelf.version + ' is immutable (spec.{field} changed); register a new version'"  # noqa: E501
        ),
        reason="FieldValueForbidden",
    )


_IMMUTABLE_RULES = [
    _immutable("model"),
    _immutable("version"),
    _immutable("artifact"),
    _immutable("lineage"),
    _immutable("metrics"),
    _immutable("runtime", optional=True),
    _immutable("runtimeRef", optional=True),
    _immutable("format", optional=True),
    _immutable("signature", optional=True),
]
# The runtime: explicit (spec.runtime), by reference (spec.runtimeRef), or chosen by format
# (spec.format, else lineage.framework) from the catalog (api.runtime, domain.runtime_catalog).
RUNTIME_EXCLUSIVE = (
    "spec.runtime and spec.runtimeRef are exclusive: give the serving image in spec.runtime, or name a "
    "ModelRuntime/ClusterModelRuntime in spec.runtimeRef"
)
RUNTIME_NEEDED = (
    "a version needs a runtime: spec.runtime (image, command, port), spec.runtimeRef (a ModelRuntime or "
    "ClusterModelRuntime), or a model format a catalog runtime supports (spec.format or lineage.framework)"
)
_RUNTIME_RULES = [
    cel("!(has(self.runtime) && has(self.runtimeRef))", RUNTIME_EXCLUSIVE),
    cel(
        "has(self.runtime) || has(self.runtimeRef) || has(self.format) || has(self.lineage.framework)",
        RUNTIME_NEEDED,
    ),
]


class ModelVersionSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(*_IMMUTABLE_RULES, *_RUNTIME_RULES)
    }

    model: str = Field(max_length=63, pattern=DNS_LABEL, description="Model name (DNS label).")
    version: str = Field(
        max_length=64,
        description="Semantic version MAJOR.MINOR.PATCH[-prerelease]: MAJOR = breaking input/output "
        "change, MINOR = retrain, PATCH = config/threshold.",
        json_schema_extra=validations(
            cel(
                f"self.matches('{SEMVER_PATTERN}')",
                "version must be a semantic version MAJOR.MINOR.PATCH[-prerelease] (lowercase, no build "
                "metadata), e.g. 2.3.8",
            )
        ),
    )
    artifact: Artifact
    lineage: Lineage
    metrics: dict[str, float] = Field(
        min_length=1,
        max_length=128,
        description="Evaluation metrics, e.g. auc, f1, latency_p99_ms.",
        json_schema_extra=validations(_KEYS_BOUNDED),
    )
    runtime: Runtime | None = Field(
        default=None, description="Explicit serving container; absent: resolved from the runtime catalog."
    )
    runtime_ref: RuntimeRef | None = Field(
        default=None, description="A catalog runtime by name (exclusive with runtime)."
    )
    format: ModelFormat | None = Field(
        default=None,
        description="The model's format (default: lineage.framework): picks a catalog runtime that supports "
        "it (autoSelect, highest priority, this namespace's before the cluster's, then by name), and is "
        "checked against runtimeRef's formats.",
    )
    signature: Signature | None = None
    stage: StageName = Field(
        default="candidate",
        description="Requested lifecycle stage; the operator moves status.stage when the gates pass.",
    )
    description: str | None = Field(default=None, max_length=4096)

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        SemVer.parse(v)
        return v

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, v: dict[str, float]) -> dict[str, float]:
        return _bounded_keys(v, "metrics")

    @model_validator(mode="after")
    def _runtime_rules(self) -> ModelVersionSpec:
        if self.runtime is not None and self.runtime_ref is not None:
            raise ValueError(RUNTIME_EXCLUSIVE)
        if (
            self.runtime is None
            and self.runtime_ref is None
            and self.format is None
            and self.lineage.framework is None
        ):
            raise ValueError(RUNTIME_NEEDED)
        return self

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)
