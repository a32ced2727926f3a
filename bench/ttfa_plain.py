"""The baseline of the time-to-first-answer benchmark: a plain Deployment, no operator (pure: dicts).

Its pod template is ours (the operator's rendered Deployment for the same ModelVersion: the same model
server container, readiness probe, volumes, security contexts and placement) with one difference: the
init container downloads the same file from the same artifact server with Python's urllib, without
hashing it. A plain Service and an HTTPRoute on the same Gateway send it its traffic; a new version is
a rolling update of that one Deployment (the Service's pods change, the route does not).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

APP_LABEL = "app"
VERSION_LABEL = "ttfa-version"
INIT_NAME = "download"
# argv: URL, destination file. Python's urllib in the operator's own image: no hash, no policy.
DOWNLOAD = (
    "import shutil, sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1]) as r, open(sys.argv[2], 'wb') as f:\n"
    "    shutil.copyfileobj(r, f, 1 << 20)\n"
)


def plain_template(ours: Mapping[str, Any], name: str, version: str, url: str) -> dict[str, Any]:
    """The pod template of the plain Deployment `name` from our rendered Deployment `ours`: our labels
    and annotations dropped, our init container replaced by a urllib download into the same volume."""
    template = copy.deepcopy(dict(ours["spec"]["template"]))
    spec = template["spec"]
    ours_init = spec["initContainers"][0]
    mount = next(m for m in ours_init["volumeMounts"] if m["mountPath"] != "/tmp")
    basename = url.rstrip("/").rsplit("/", 1)[-1]
    spec["initContainers"] = [
        {
            "name": INIT_NAME,
            "image": ours_init["image"],
            "imagePullPolicy": ours_init.get("imagePullPolicy", "IfNotPresent"),
            "command": ["python", "-c", DOWNLOAD, url, f"{mount['mountPath']}/{basename}"],
            "volumeMounts": [dict(m) for m in ours_init["volumeMounts"]],
            "securityContext": dict(ours_init.get("securityContext") or {}),
        }
    ]
    template["metadata"] = {"labels": {APP_LABEL: name, VERSION_LABEL: version}}
    return template


def plain_objects(
    ours: Mapping[str, Any],
    name: str,
    namespace: str,
    version: str,
    url: str,
    host: str,
    parent_ref: Mapping[str, Any],
    port: int = 80,
    replicas: int = 1,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Deployment, Service, HTTPRoute) of the plain baseline serving `version` from `url`."""
    md = {"name": name, "namespace": namespace, "labels": {APP_LABEL: name}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": copy.deepcopy(md),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {APP_LABEL: name}},
            "strategy": copy.deepcopy(ours["spec"]["strategy"]),  # maxSurge 1, maxUnavailable 0: ours
            "template": plain_template(ours, name, version, url),
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": copy.deepcopy(md),
        "spec": {
            "selector": {APP_LABEL: name},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": copy.deepcopy(md),
        "spec": {
            "parentRefs": [dict(parent_ref)],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": name, "port": port}]}],
        },
    }
    return deployment, service, route
