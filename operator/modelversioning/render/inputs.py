"""What the renderers are given: small frozen value objects, built by the handler.

The renderers never decide anything about traffic: the handler computes the
effective weights (``modelversioning.domain.traffic``) and passes them in as
``VariantTarget`` destinations; a renderer only turns them into manifests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import RoutePolicy
from modelversioning.render.values import EndpointRef, VariantTarget


class RenderError(ValueError):
    """The inputs cannot be rendered (an object that bypassed validation, or a spec that only the
    renderer can judge, e.g. a hostname a router's API would refuse). Permanent for that spec."""


def check_pin(
    endpoint: EndpointRef, spec: ModelEndpointSpec, variant: Variant, version: ModelVersionSpec
) -> None:
    """Raise RenderError unless `version` is the ModelVersion that `variant` pins."""
    if version.model != spec.model or version.version != variant.version:
        raise RenderError(
            f"variant {variant.name} of {endpoint.name} pins {spec.model} {variant.version}, "
            f"but was given ModelVersion {version.model} {version.version}"
        )


@dataclass(frozen=True)
class RouteInput:
    """Everything a router needs for one ModelEndpoint.

    `destinations` may contain a variant that was just removed from the spec but
    still carries traffic, and weight-0 entries (kept so that switching back is a
    pure weight edit). Their weights must add up to 100.
    """

    endpoint: EndpointRef
    spec: ModelEndpointSpec
    destinations: list[VariantTarget]
    mirror: VariantTarget | None = None
    mirror_percent: int = 0
    policy: RoutePolicy = field(default_factory=RoutePolicy)  # the platform's host/gateway allow-lists
    # set: the route is closed (domain.revocation): no destination, no mirror; every request is answered
    # UNAVAILABLE_STATUS with the header x-model-unavailable: <closed>
    closed: str = ""

    def check(self) -> None:
        """Raise RenderError when the destinations cannot form a valid route."""
        where = f"ModelEndpoint {self.endpoint.name}"
        if self.closed:
            if self.destinations or self.mirror is not None:
                raise RenderError(f"{where}: a closed route has no destinations and no mirror")
            return
        if not self.destinations:
            raise RenderError(f"{where}: no destinations to route traffic to")
        names = [d.variant for d in self.destinations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RenderError(f"{where}: duplicate destinations {', '.join(dupes)}")
        negative = [d.variant for d in self.destinations if d.weight < 0]
        if negative:
            raise RenderError(f"{where}: negative weight for {', '.join(negative)}")
        total = sum(d.weight for d in self.destinations)
        if total != 100:
            raise RenderError(f"{where}: destination weights add up to {total}, not 100")
        if self.mirror is not None and not 0 <= self.mirror_percent <= 100:
            raise RenderError(f"{where}: mirror percent {self.mirror_percent} is not in 0..100")
