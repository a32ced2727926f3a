"""The router interface: how desired traffic becomes a route object, and how it is read back.

A router turns a RouteInput (weighted destinations decided by the handler, an
optional mirror) into the manifest of one route object named after the endpoint,
and reads the variant -> weight split back from such an object (live or desired)
for verification and drift detection.

Variants are recovered from a route through the `x-endpoint-variant` response
header that every destination sets (naming.HEADER_VARIANT). A destination without
that header (a hand-edited route) is reported under its backend Service name, so
it never silently matches a variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from modelversioning.api import wire as R
from modelversioning.api.routers import Capabilities, RouterIdentity
from modelversioning.render import naming
from modelversioning.render.inputs import RouteInput


class UnknownRouter(ValueError):
    """No router of that name exists."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown router {name!r}; known routers: {', '.join(self.known)}")


@dataclass(frozen=True)
class ParentFeatures:
    """What the implementation behind one parent (Gateway) of a route says it supports."""

    parent: str  # "<namespace>/<name>" of the Gateway
    source: str  # where the features were read, for messages ("GatewayClass eg"); "" when unknown
    features: frozenset[str] | None  # published features; None: none published, or not visible


@dataclass(frozen=True)
class Platform:
    """What the platform says it supports, for routers whose capabilities depend on the implementation
    (Gateway API: GatewayClass status.supportedFeatures, GEP-2162). Gathered by handlers/platform.py."""

    parents: tuple[ParentFeatures, ...] = ()  # one per parent the route attaches to
    declared: frozenset[str] = frozenset()  # operator setting serving.gatewayApiFeatures (the override)


@runtime_checkable
class Router(Protocol):
    """One way of splitting traffic between the per-version Services of the variants of an endpoint.

    Its identity (name, route resource, platform reads, capabilities, CEL rules) is one
    api.routers.RouterIdentity; the properties below read it (RouterBase). For a router that writes no
    route object (`none`) render() returns None and the resource attributes are empty strings.
    """

    identity: RouterIdentity

    @property
    def name(self) -> str: ...  # as in spec.routing.router

    @property
    def group(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def api_version(self) -> str: ...  # "<group>/<version>"

    @property
    def kind(self) -> str: ...

    @property
    def plural(self) -> str: ...

    @property
    def writes_route(self) -> bool: ...  # False: no route object (render() returns None)

    @property
    def can_mirror(self) -> bool: ...  # wherever it runs; capabilities() says whether here

    @property
    def response_headers(self) -> bool: ...  # sets the x-model-* response headers

    def capabilities(self, platform: Platform) -> Capabilities:
        """What it can do on this platform (the identity's capabilities unless the implementation
        matters, as for Gateway API)."""
        ...

    def render(self, inp: RouteInput) -> dict[str, Any] | None:
        """The desired route manifest (named naming.route_name(endpoint)), or None."""
        ...

    def weights(self, route: Mapping[str, Any]) -> dict[str, int]:
        """variant -> weight of the routed (non-mirror) destinations of a route object."""
        ...

    def services(self, route: Mapping[str, Any]) -> dict[str, int]:
        """Service name -> weight of every backend a route object sends traffic (or mirror copies) to.
        Used to decide when a slot no longer receives anything and may be deleted."""
        ...

    def describe(self) -> str:
        """One sentence for humans (CLI, conditions) saying how this router splits traffic (the
        endpoint's status adds the mirror, only when the route has one)."""
        ...

    def companions(self, inp: RouteInput) -> list[dict[str, Any]]:
        """Other objects the route needs, written before it (a closed gatewayAPI route: the Service it
        points to); each is controlled by the endpoint."""
        ...


class RouterBase:
    """The Router properties that come from the identity; a router module subclasses it and sets
    `identity`, then implements render/weights/services/describe (and capabilities if the platform
    matters)."""

    identity: RouterIdentity

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def group(self) -> str:
        return self.identity.route.group if self.identity.route else ""

    @property
    def version(self) -> str:
        return self.identity.route.version if self.identity.route else ""

    @property
    def api_version(self) -> str:
        return self.identity.route.api_version if self.identity.route else ""

    @property
    def kind(self) -> str:
        return self.identity.route.kind if self.identity.route else ""

    @property
    def plural(self) -> str:
        return self.identity.route.plural if self.identity.route else ""

    @property
    def writes_route(self) -> bool:
        return self.identity.capabilities.writes_route

    @property
    def can_mirror(self) -> bool:
        return self.identity.capabilities.can_mirror

    @property
    def response_headers(self) -> bool:
        return self.identity.capabilities.response_headers

    def capabilities(self, platform: Platform) -> Capabilities:
        return self.identity.capabilities

    def companions(self, inp: RouteInput) -> list[dict[str, Any]]:
        return []


def closed_body(inp: RouteInput) -> str:
    """The body a closed route answers with (the header says the same, for machines)."""
    return (
        f"ModelEndpoint {inp.endpoint.namespace}/{inp.endpoint.name}: no model may answer "
        f"({R.HEADER_UNAVAILABLE}: {inp.closed}); see the endpoint's status.closed\n"
    )


def route_metadata(inp: RouteInput) -> dict[str, Any]:
    """metadata of the route object: endpoint name, endpoint labels, endpoint as controller owner."""
    labels = naming.endpoint_labels(inp.endpoint.name, inp.spec.model)
    return naming.metadata(naming.route_name(inp.endpoint.name), inp.endpoint, labels)


def route_manifest(router: Router, inp: RouteInput, spec: dict[str, Any]) -> dict[str, Any]:
    """The full route object: apiVersion/kind of `router`, endpoint metadata, `spec`."""
    return {
        "apiVersion": router.api_version,
        "kind": router.kind,
        "metadata": route_metadata(inp),
        "spec": spec,
    }


def variant_key(headers: Mapping[str, Any], service: str) -> str:
    """Variant of a destination: its x-endpoint-variant header, else its Service name."""
    value = {str(k).lower(): v for k, v in headers.items()}.get(naming.HEADER_VARIANT)
    return value if isinstance(value, str) and value else service


def accumulate(weights: dict[str, int], key: str, weight: int) -> None:
    weights[key] = weights.get(key, 0) + weight
