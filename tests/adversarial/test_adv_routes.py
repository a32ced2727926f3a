"""Issue 14, finding 8 (routes): an endpoint's author chose hosts and gateways and the operator
copied them verbatim (an endpoint claimed kubernetes.default.svc.cluster.local, '*' and a shared
gateway). Each refusal below was rendered as asked by the code as it landed."""

from __future__ import annotations

import pytest

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import RoutePolicy
from modelversioning.render import EndpointRef, RenderError, RouteInput, VariantTarget, get_router

EP = EndpointRef("fraud", "team-a", "uid-1")
TARGET = VariantTarget("stable", "fraud-stable-abc", "fraud", "1.0.0", "a" * 64, 100)


def istio(
    hosts: list[str], gateways: list[str] | None = None, policy: RoutePolicy | None = None
) -> RouteInput:
    spec = ModelEndpointSpec.model_validate(
        {
            "model": "fraud",
            "variants": [{"name": "stable", "version": "1.0.0", "weight": 100}],
            "routing": {"router": "istio", "hosts": hosts, "gateways": gateways or []},
        }
    )
    return RouteInput(EP, spec, [TARGET], policy=policy or RoutePolicy())


@pytest.mark.parametrize(
    "host",
    [
        "*",
        "kubernetes.default.svc.cluster.local",
        "payments.team-b.svc.cluster.local",
        "payments.team-b.svc",
        "*.svc.cluster.local",
        "*.cluster.local",
    ],
)
def test_hosts_of_other_namespaces_and_everything_are_refused(host: str) -> None:
    with pytest.raises(RenderError, match="host"):
        get_router("istio").render(istio([host]))


def test_own_namespace_and_ordinary_hosts_are_fine() -> None:
    vs = get_router("istio").render(istio(["fraud.team-a.svc.cluster.local", "fraud.models.example.com"]))
    assert vs is not None


def test_shared_gateway_needs_the_platforms_consent() -> None:
    with pytest.raises(RenderError, match="allowedGateways"):
        get_router("istio").render(istio(["fraud.example.com"], ["istio-system/public"]))
    allowed = RoutePolicy(allowed_gateways=["istio-system/*"])
    vs = get_router("istio").render(istio(["fraud.example.com"], ["istio-system/public"], allowed))
    assert vs is not None and vs["spec"]["exportTo"] == [".", "istio-system"]


def test_virtualservice_stays_in_its_namespace() -> None:
    vs = get_router("istio").render(istio(["fraud.example.com"], ["mesh", "team-gw", "team-a/other"]))
    assert vs is not None and vs["spec"]["exportTo"] == ["."]


def test_host_allow_list_with_namespace_placeholder() -> None:
    policy = RoutePolicy(allowed_hosts=["*.{namespace}.models.example.com"])
    assert get_router("istio").render(istio(["fraud.team-a.models.example.com"], policy=policy)) is not None
    with pytest.raises(RenderError, match="allowedHosts"):
        get_router("istio").render(istio(["fraud.team-b.models.example.com"], policy=policy))


def test_gateway_api_hosts_are_checked_too() -> None:
    spec = ModelEndpointSpec.model_validate(
        {
            "model": "fraud",
            "variants": [{"name": "stable", "version": "1.0.0", "weight": 100}],
            "routing": {"router": "gatewayAPI", "hosts": ["*.cluster.local"], "parentRefs": [{"name": "gw"}]},
        }
    )
    with pytest.raises(RenderError, match="cluster-internal"):
        get_router("gatewayAPI").render(RouteInput(EP, spec, [TARGET]))
