"""The `none` router: no route object; each variant is reachable only through its own Service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.render.inputs import RouteInput


class NoneRouter:
    name = "none"
    group = ""
    version = ""
    api_version = ""
    kind = ""
    plural = ""

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
