"""The ClusterIP Service of one variant; routers send traffic to it by name."""

from __future__ import annotations

from typing import Any

from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion import ModelVersionSpec
from modelversioning.render import naming
from modelversioning.render.inputs import EndpointRef, check_pin


def render_service(
    endpoint: EndpointRef, spec: ModelEndpointSpec, variant: Variant, version: ModelVersionSpec
) -> dict[str, Any]:
    """v1 Service `<endpoint>-<variant>`: spec.port -> the server's named port `http`."""
    check_pin(endpoint, spec, variant, version)
    labels = naming.variant_labels(endpoint.name, variant.name, version.model, version.version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.metadata(naming.child_name(endpoint.name, variant.name), endpoint, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector_labels(endpoint.name, variant.name),
            "ports": [
                {
                    "name": naming.PORT_NAME,
                    "appProtocol": "http",
                    "port": spec.port,
                    "targetPort": naming.PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
