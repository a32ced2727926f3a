"""Names, labels, annotations, owner references and response headers of every rendered object.

The single place that decides how children of a ModelEndpoint are named and
labelled; every renderer (and the handler, when it looks children up) uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from modelversioning.api.modelendpoint import KIND as ENDPOINT_KIND
from modelversioning.api.wire import (  # re-exported: the renderers name them through naming
    API_VERSION as API_VERSION,
)
from modelversioning.api.wire import CLOSED_SERVICE_SUFFIX
from modelversioning.api.wire import (
    HEADER_MODEL as HEADER_MODEL,
)
from modelversioning.api.wire import (
    HEADER_SHA256 as HEADER_SHA256,
)
from modelversioning.api.wire import (
    HEADER_VARIANT as HEADER_VARIANT,
)
from modelversioning.api.wire import (
    HEADER_VERSION as HEADER_VERSION,
)
from modelversioning.api.wire import (
    LABEL_COMPONENT as LABEL_COMPONENT,
)
from modelversioning.api.wire import (
    LABEL_ENDPOINT as LABEL_ENDPOINT,
)
from modelversioning.api.wire import (
    LABEL_INSTANCE as LABEL_INSTANCE,
)
from modelversioning.api.wire import (
    LABEL_MANAGED_BY as LABEL_MANAGED_BY,
)
from modelversioning.api.wire import (
    LABEL_MODEL as LABEL_MODEL,
)
from modelversioning.api.wire import (
    LABEL_MODEL_VERSION as LABEL_MODEL_VERSION,
)
from modelversioning.api.wire import (
    LABEL_NAME as LABEL_NAME,
)
from modelversioning.api.wire import (
    LABEL_SLOT as LABEL_SLOT,
)
from modelversioning.api.wire import (
    LABEL_VARIANT as LABEL_VARIANT,
)
from modelversioning.api.wire import (
    LABEL_VERSION as LABEL_VERSION,
)
from modelversioning.api.wire import (
    MANAGED_BY as MANAGED_BY,
)
from modelversioning.api.wire import (
    RESPONSE_HEADERS as RESPONSE_HEADERS,
)
from modelversioning.api.wire import (
    SHA256_ANNOTATION as SHA256_ANNOTATION,
)
from modelversioning.render.values import EndpointRef, VariantTarget

MAX_NAME = 63  # DNS-1035 label (Service names) and label values
HASH_LEN = 8
CLUSTER_DOMAIN = "cluster.local"

COMPONENT_SERVER = "model-server"
COMPONENT_ROUTE = "router"

SLOT_HASH_LEN = 10

ANNOTATION_SHA256 = SHA256_ANNOTATION

PORT_NAME = "http"  # the server's container port, the Service port and its targetPort

SHA_PREFIX_LEN = 12

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:HASH_LEN]


def _shorten(clean: str, raw: str, strip: str) -> str:
    head = clean[: MAX_NAME - HASH_LEN - 1].rstrip(strip)
    return f"{head}-{_digest(raw)}" if head else _digest(raw)


def dns_label(raw: str) -> str:
    """`raw` if it is a valid DNS-1035 label, else a deterministic valid one: sanitized,
    truncated and suffixed with a hash of `raw` (so distinct inputs stay distinct)."""
    if len(raw) <= MAX_NAME and _DNS_1035.match(raw):
        return raw
    clean = re.sub(r"[^a-z0-9-]", "-", raw.lower())
    if not clean[:1].isalpha():
        clean = "mv-" + clean
    return _shorten(clean, raw, "-")


def label_value(raw: str) -> str:
    """`raw` if it is a valid label value, else truncated + hash suffixed (deterministic)."""
    if len(raw) <= MAX_NAME and _LABEL_VALUE.match(raw):
        return raw
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", raw).lstrip("-_.")
    return _shorten(clean, raw, "-_.")


def child_name(endpoint: str, variant: str) -> str:
    """Human-readable prefix of a variant's children: `<endpoint>-<variant>` (not unique on its own:
    ``chat`` + ``bot-blue`` and ``chat-bot`` + ``blue`` give the same prefix; see slot_name)."""
    return dns_label(f"{endpoint}-{variant}")


def template_hash(template: Any) -> str:
    """Stable hash of a pod template (canonical JSON), like a ReplicaSet's pod-template-hash."""
    return hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def slot_name(endpoint: str, variant: str, pod_template_hash: str) -> str:
    """Name of the Deployment and Service serving one pod template of one variant:
    `<endpoint>-<variant>-<hash>` where the hash covers (endpoint, variant, pod template), so
    names never collide across endpoints or versions, and a different template (another version,
    digest, image, resources, operator settings) is always a new Deployment, never a rolling update
    of pods that carry traffic."""
    h = hashlib.sha256(f"{endpoint}\0{variant}\0{pod_template_hash}".encode()).hexdigest()[:SLOT_HASH_LEN]
    prefix = child_name(endpoint, variant)[: MAX_NAME - SLOT_HASH_LEN - 1].rstrip("-")
    return f"{prefix}-{h}"


def route_name(endpoint: str) -> str:
    """Name of the VirtualService / HTTPRoute of an endpoint: the endpoint's own name."""
    return endpoint


def closed_service_name(endpoint: str) -> str:
    """The selector-less Service (no endpoints) a closed gatewayAPI route points to: `<endpoint>-closed`.
    A slot's name always ends in a hash, so it never takes this name."""
    return dns_label(f"{endpoint}{CLOSED_SERVICE_SUFFIX}")


def service_host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}"


def selector_labels(slot: str) -> dict[str, str]:
    """Pod selector of one slot (Deployment and Service): the slot name is unique in the namespace."""
    return {LABEL_SLOT: slot}


def variant_labels(endpoint: str, variant: str, model: str, version: str) -> dict[str, str]:
    """Labels of a variant's Deployment, pod template and Service."""
    return {
        LABEL_NAME: model,
        LABEL_INSTANCE: child_name(endpoint, variant),
        LABEL_VERSION: label_value(version),
        LABEL_COMPONENT: COMPONENT_SERVER,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_ENDPOINT: label_value(endpoint),
        LABEL_VARIANT: variant,
        LABEL_MODEL: model,
        LABEL_MODEL_VERSION: label_value(version),
    }


def endpoint_labels(endpoint: str, model: str) -> dict[str, str]:
    """Labels of objects that belong to the endpoint as a whole (the route)."""
    return {
        LABEL_NAME: model,
        LABEL_INSTANCE: label_value(endpoint),
        LABEL_COMPONENT: COMPONENT_ROUTE,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_ENDPOINT: label_value(endpoint),
        LABEL_MODEL: model,
    }


def artifact_annotations(sha256: str) -> dict[str, str]:
    return {ANNOTATION_SHA256: sha256}


def owner_references(endpoint: EndpointRef) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": ENDPOINT_KIND,
            "name": endpoint.name,
            "uid": endpoint.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def metadata(
    name: str,
    endpoint: EndpointRef,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": endpoint.namespace, "labels": labels}
    if annotations:
        out["annotations"] = annotations
    out["ownerReferences"] = owner_references(endpoint)
    return out


def response_headers(target: VariantTarget) -> list[tuple[str, str]]:
    """The response headers every routed destination sets, in a fixed order. The
    x-endpoint-variant header is also how routers read the variant back from a route."""
    return [
        (HEADER_MODEL, target.model),
        (HEADER_VERSION, target.version),
        (HEADER_SHA256, target.sha256[:SHA_PREFIX_LEN]),
        (HEADER_VARIANT, target.variant),
    ]
