"""The value objects renderers are given (built by the handler); no logic, no imports of our own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointRef:
    """The ModelEndpoint that owns every rendered child (names, labels, ownerReferences)."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class VariantTarget:
    """One routed destination (or the mirror destination) with the weight the handler decided.

    `service` is the Service of the slot (per-version Deployment + Service) that serves the
    variant now; `version` and `sha256` are what that slot's pods verified and serve."""

    variant: str
    service: str
    model: str
    version: str
    sha256: str
    weight: int
