"""Typed API of the modelversioning.io/v1alpha1 resources: the single source of truth.

The CRD YAML in crds/ and in the chart is generated from these models
(see `modelversioning.api.crdgen`).
"""

from modelversioning.api.common import API_VERSION, GROUP, VERSION, Condition
from modelversioning.api.modelendpoint import ModelEndpoint, ModelEndpointSpec, ModelEndpointStatus
from modelversioning.api.modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ModelEndpoint",
    "ModelEndpointSpec",
    "ModelEndpointStatus",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
]
