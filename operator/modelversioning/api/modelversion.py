"""ModelVersion: one pinned, immutable version of one model, with its lineage. The kind: its root object,
the CRD's printer columns and root rules; the spec is in ``api.modelversion_spec``, the status in
``api.modelversion_status``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from modelversioning.api.common import ApiModel, cel
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.modelversion_status import ModelVersionStatus
from modelversioning.api.wire import MODELVERSION, expected_name

KIND, PLURAL, SINGULAR, SHORT_NAMES = (
    MODELVERSION.kind,
    MODELVERSION.plural,
    MODELVERSION.singular,
    list(MODELVERSION.short_names),
)


class ModelVersion(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = "modelversioning.io/v1alpha1"
    kind: Literal["ModelVersion"] = "ModelVersion"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None

    @model_validator(mode="after")
    def _name(self) -> ModelVersion:
        name = self.metadata.get("name")
        want = expected_name(self.spec.model, self.spec.version)
        if name is not None and name != want:
            raise ValueError(f"metadata.name must be {want!r} (<model>-v<version>), got {name!r}")
        return self


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
    {"name": "Requested", "type": "string", "jsonPath": ".spec.stage", "priority": 1},
    {
        "name": "Verified",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="ArtifactVerified")].status',
    },
    {"name": "Digest", "type": "string", "jsonPath": ".spec.artifact.sha256", "priority": 1},
    # the catalog runtime a version without spec.runtime resolved to (kubectl get mv -o wide)
    {"name": "Runtime", "type": "string", "jsonPath": ".status.resolvedRuntime.source.name", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

ROOT_VALIDATIONS = [
    cel(
        "self.metadata.name == self.spec.model + '-v' + self.spec.version",
        message_expression="'metadata.name must be ' + self.spec.model + '-v' + self.spec.version + "
        "' (<model>-v<version>), so that a model version is unique in its namespace'",
    )
]
