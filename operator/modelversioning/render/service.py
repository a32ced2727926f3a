"""The ClusterIP Service of one slot (one version of one variant); routers send traffic to it by name."""

from __future__ import annotations

from typing import Any

from modelversioning.render import naming


def render_service(deployment: dict[str, Any], port: int) -> dict[str, Any]:
    """v1 Service named like the slot's Deployment, selecting exactly that Deployment's pods:
    `port` (the endpoint's spec.port) -> the server's named port `http`."""
    md = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "labels": dict(md["labels"]),
            "ownerReferences": [dict(o) for o in md["ownerReferences"]],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(deployment["spec"]["selector"]["matchLabels"]),
            "ports": [
                {
                    "name": naming.PORT_NAME,
                    "appProtocol": "http",
                    "port": port,
                    "targetPort": naming.PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
