"""The `none` router: no route object; each variant is reachable only through its own Service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.api.routers import Capabilities, RouterIdentity
from modelversioning.render.inputs import RouteInput
from modelversioning.render.routers.base import RouterBase


class NoneRouter(RouterBase):
    identity = RouterIdentity(
        name="none",
        route=None,
        capabilities=Capabilities(
            writes_route=False,
            can_mirror=False,
            response_headers=False,
            why_no_mirror="the none router writes no route object",
        ),
    )

    def render(self, inp: RouteInput) -> dict[str, Any] | None:
        return None

    def weights(self, route: Mapping[str, Any]) -> dict[str, int]:
        return {}

    def services(self, route: Mapping[str, Any]) -> dict[str, int]:
        return {}

    def describe(self) -> str:
        return (
            "none: traffic is not split; no route object is written and each variant is reachable only "
            "through the Service of the slot that serves it (status.variants[].serving.slot); weights and "
            "mirror are not applied"
        )
