"""Routers own their identity and capabilities (api.routers, render/routers): what Gateway API can do is
read from the GatewayClass of each parent (GEP-2162 supportedFeatures) with the operator setting as the
override, and a router added by one registration line appears everywhere a router must: the CRD, the
settings, the chart's list, the watches, the cache, the plan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from modelversioning.api import crdgen
from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ModelEndpointSpec, ParentRef
from modelversioning.api.routers import Capabilities, RouterIdentity, routing_rule
from modelversioning.api.settings import Serving, Settings
from modelversioning.api.wire import Resource
from modelversioning.handlers import kube, listing, platform, runtime, store, watch, wiring
from modelversioning.handlers.store import Store
from modelversioning.render.inputs import RouteInput
from modelversioning.render.routers import (
    ParentFeatures,
    Platform,
    RouterBase,
    chart_routers,
    get_router,
    register,
    unregister,
)
from modelversioning.render.routers.base import accumulate, route_manifest, variant_key
from modelversioning.render.routers.gatewayapi import (
    MIRROR_FEATURE,
    gateway_capabilities,
    parent_gateway,
    published_features,
)
from test_endpoint_reconciler import NS, OLD, World

SETTING = (
    "the platform has not declared HTTPRouteRequestMirror support, operator setting "
    "serving.gatewayApiFeatures"
)
M = frozenset({MIRROR_FEATURE})
SHADOWED = [{"name": "stable", "version": "2.3.8", "weight": 100}, {"name": "shadow", "version": "3.0.0"}]
OTHER = frozenset({"HTTPRouteHostRewrite"})


def parent(name: str, features: frozenset[str] | None) -> ParentFeatures:
    return ParentFeatures(f"ml/{name}", f"GatewayClass of-{name}", features)


# ----------------------------------------------------------------------- Gateway API: pure decision


@pytest.mark.parametrize(
    ("parents", "declared", "mirror", "why"),
    [
        # nothing published: the operator setting decides (the message the setting always gave)
        ((), frozenset(), False, SETTING),
        ((), M, True, ""),
        ((parent("gw", None),), frozenset(), False, SETTING),
        ((parent("gw", None),), M, True, ""),
        # published: the implementation's own list wins over the setting, both ways
        ((parent("gw", M),), frozenset(), True, ""),
        ((parent("gw", OTHER),), M, False, "GatewayClass of-gw of Gateway ml/gw does not list"),
        ((parent("gw", M | OTHER),), frozenset(), True, ""),
        # every parent must support it: one rule serves them all
        ((parent("a", M), parent("b", M)), frozenset(), True, ""),
        ((parent("a", M), parent("b", OTHER)), M, False, "of Gateway ml/b does not list"),
        ((parent("a", M), parent("b", None)), frozenset(), False, SETTING),
        ((parent("a", M), parent("b", None)), M, True, ""),
    ],
)
def test_gateway_api_mirror_follows_published_features_then_the_setting(
    parents: tuple[ParentFeatures, ...], declared: frozenset[str], mirror: bool, why: str
) -> None:
    caps = gateway_capabilities(Platform(parents, declared))
    assert (caps.writes_route, caps.response_headers, caps.can_mirror) == (True, True, mirror)
    assert why in caps.why_no_mirror and bool(caps.why_no_mirror) == (not mirror)


@pytest.mark.parametrize(
    ("status", "features"),
    [
        ({}, None),  # not published (an implementation without GEP-2162, or not reported yet)
        ({"supportedFeatures": None}, None),
        ({"supportedFeatures": []}, None),
        ({"supportedFeatures": [{"name": "Gateway"}, {"name": MIRROR_FEATURE}]}, {"Gateway", MIRROR_FEATURE}),
        ({"supportedFeatures": ["Gateway", MIRROR_FEATURE]}, {"Gateway", MIRROR_FEATURE}),  # before v1.1
        ({"supportedFeatures": [{"name": ""}, {}]}, None),
    ],
)
def test_published_features_reads_both_shapes_of_supported_features(
    status: dict[str, Any], features: set[str] | None
) -> None:
    assert published_features({"status": status}) == (None if features is None else frozenset(features))


def test_parent_gateway_names_gateways_only() -> None:
    routing = ModelEndpointSpec.model_validate(
        {
            "model": "m",
            "variants": [{"name": "a", "version": "1.0.0", "weight": 100}],
            "routing": {
                "router": "gatewayAPI",
                "parentRefs": [
                    {"name": "gw"},
                    {"name": "shared", "namespace": "infra"},
                    {"name": "gw2", "group": "gateway.networking.k8s.io", "kind": "Gateway"},
                    {"name": "svc", "group": "", "kind": "Service"},  # a mesh parent (GAMMA)
                    {"name": "x", "group": "other.example.com", "kind": "Gateway"},
                ],
            },
        }
    ).routing
    got = [parent_gateway(r, NS) for r in routing.parent_refs]
    assert got == [(NS, "gw"), ("infra", "shared"), (NS, "gw2"), None, None]


# ---------------------------------------------------------------------------- gather (watch cache)


def put_gateway(s: Store, gateway: str, cls: str, features: list[Any] | None) -> None:
    """A Gateway of class `cls` in NS, and the class publishing `features` (None: no supportedFeatures)."""
    status = {} if features is None else {"supportedFeatures": features}
    s.upsert("GatewayClass", {"kind": "GatewayClass", "metadata": {"name": cls, "resourceVersion": "1"},
                              "status": status})  # fmt: skip
    md = {"name": gateway, "namespace": NS, "resourceVersion": "1"}
    s.upsert("Gateway", {"kind": "Gateway", "metadata": md, "spec": {"gatewayClassName": cls}})


def gateway_world(*classes: tuple[str, list[Any] | None]) -> Store:
    s = Store()
    for name, features in classes:
        put_gateway(s, f"gw-{name}", name, features)
    return s


def spec(router: str, *gateways: str) -> ModelEndpointSpec:
    routing: dict[str, Any] = {"router": router, "hosts": ["a.example.com"]}
    if gateways:
        routing["parentRefs"] = [{"name": g} for g in gateways]
    return ModelEndpointSpec.model_validate(
        {"model": "m", "variants": [{"name": "a", "version": "1.0.0", "weight": 100}], "routing": routing}
    )


def settings(*features: str) -> Settings:
    return Settings(serving=Serving(gateway_api_features=list(features)))


def test_gather_reads_each_parents_gateway_class_from_the_cache() -> None:
    s = gateway_world(("eg", [{"name": MIRROR_FEATURE}]), ("traefik", [{"name": "Gateway"}]), ("old", None))

    def mirror(router: str, *gws: str, declared: tuple[str, ...] = ()) -> bool:
        return platform.capabilities(s, spec(router, *gws), NS, settings(*declared)).can_mirror

    assert mirror("gatewayAPI", "gw-eg")  # published: no setting needed
    assert not mirror("gatewayAPI", "gw-traefik", declared=(MIRROR_FEATURE,))  # published without it
    assert not mirror("gatewayAPI", "gw-old") and mirror("gatewayAPI", "gw-old", declared=(MIRROR_FEATURE,))
    assert not mirror("gatewayAPI", "gw-missing") and mirror(
        "gatewayAPI", "gw-missing", declared=(MIRROR_FEATURE,)
    )
    assert not mirror("gatewayAPI", "gw-eg", "gw-traefik")
    why = platform.capabilities(s, spec("gatewayAPI", "gw-traefik"), NS, settings()).why_no_mirror
    assert why == (
        f"GatewayClass traefik of Gateway {NS}/gw-traefik does not list {MIRROR_FEATURE} in "
        "status.supportedFeatures"
    )
    # other routers do not depend on the platform; an unknown one can do nothing
    assert (
        platform.capabilities(s, spec("istio"), NS, settings()) == get_router("istio").identity.capabilities
    )
    none = platform.capabilities(s, spec("none"), NS, settings())
    assert (none.writes_route, none.can_mirror, none.response_headers) == (False, False, False)
    unknown = spec("none").model_copy(
        update={"routing": spec("none").routing.model_copy(update={"router": "x"})}
    )
    assert platform.capabilities(s, unknown, NS, settings()) == platform.UNKNOWN
    # seen from another namespace, the Gateway's class is not named (the tenant learns only the answer)
    far = spec("gatewayAPI", "gw-traefik")
    far = far.model_copy(
        update={
            "routing": far.routing.model_copy(
                update={"parent_refs": [ParentRef(name="gw-traefik", namespace=NS)]}
            )
        }
    )
    across = platform.capabilities(s, far, "team-b", settings())
    assert not across.can_mirror and "GatewayClass traefik" not in across.why_no_mirror, across.why_no_mirror
    assert across.why_no_mirror.startswith(f"the GatewayClass of Gateway {NS}/gw-traefik does not list")
    assert [(p.parent, p.source) for p in platform.gateway_parents(s, far, "team-b")] == [
        (f"{NS}/gw-traefik", "")
    ]


def test_a_gateway_class_publishing_mirror_gets_a_mirror_without_the_setting() -> None:
    """Reconciler level: the same endpoint and setting, only the GatewayClass's status differs."""

    def mirrored(features: list[Any] | None) -> tuple[bool, tuple[str, str]]:
        w = World()
        put_gateway(w.store, "gw", "eg", features)  # the endpoint's parentRefs: [{name: gw}]
        w.version("2.3.8", OLD)
        w.version("3.0.0", OLD, stage="staging")
        w.endpoint(SHADOWED, mirror={"variant": "shadow", "percent": 10})
        w.settle()
        filters = w.route()["spec"]["rules"][0].get("filters") or []
        return any(f["type"] == "RequestMirror" for f in filters), w.cond("Degraded")[:2]

    assert mirrored([{"name": MIRROR_FEATURE}]) == (True, ("False", R.AS_EXPECTED))
    assert mirrored([{"name": "Gateway"}]) == (False, ("True", R.MIRROR_UNSUPPORTED))
    assert mirrored(None) == (False, ("True", R.MIRROR_UNSUPPORTED))  # nothing published, nothing declared


class FakeQueue:
    def __init__(self) -> None:
        self.added: list[tuple[tuple[str, str, str], bool]] = []

    def add(self, key: tuple[str, str, str], low: bool = False) -> None:
        self.added.append((key, low))


def test_a_change_of_what_the_cache_keeps_of_a_platform_object_requeues_the_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op = SimpleNamespace(store=Store(), queue=FakeQueue())
    monkeypatch.setattr(runtime, "OP", op)
    for name in ("a", "b"):
        op.store.upsert(
            "ModelEndpoint", {"metadata": {"name": name, "namespace": NS, "resourceVersion": "1"}}
        )
    handler = platform.read_event("GatewayClass", runtime.current, watch.track)

    def event(type_: str | None, rv: str, features: list[str], conditions: str = "Accepted") -> list[Any]:
        status = {"conditions": [{"type": conditions}], "supportedFeatures": [{"name": f} for f in features]}
        body = {"kind": "GatewayClass", "metadata": {"name": "eg", "resourceVersion": rv}, "status": status}
        op.queue.added.clear()
        asyncio.run(handler(event={"type": type_, "object": body}, body=body))
        return op.queue.added

    endpoints = [(("ModelEndpoint", NS, "a"), True), (("ModelEndpoint", NS, "b"), True)]
    assert event("ADDED", "1", [MIRROR_FEATURE]) == endpoints  # new: low priority, like a drift check
    assert event(None, "1", [MIRROR_FEATURE]) == []  # kopf's listing of what the cache holds
    assert event("MODIFIED", "2", [MIRROR_FEATURE], conditions="Programmed") == []  # status the cache drops
    assert event("MODIFIED", "3", ["Gateway"]) == endpoints  # the features changed
    assert event("DELETED", "4", ["Gateway"]) == endpoints
    assert op.store.get("GatewayClass", "", "eg") is None


def test_a_gateway_change_requeues_only_the_endpoints_whose_parent_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a tenant who may create Gateways must not make every endpoint of the cluster re-run
    op = SimpleNamespace(store=Store(), queue=FakeQueue())
    monkeypatch.setattr(runtime, "OP", op)
    refs = {
        "mine": [{"name": "gw"}],  # same namespace
        "across": [{"name": "gw", "namespace": NS}],  # from another namespace, naming it explicitly
        "other": [{"name": "other-gw"}],
        "mesh": [{"name": "gw", "kind": "Service", "group": ""}],  # not a Gateway
        "none": [],
    }
    for name, parent_refs in refs.items():
        ns = "team-b" if name == "across" else NS
        body = {
            "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
            "spec": {"routing": {"router": "gatewayAPI", "parentRefs": parent_refs}},
        }
        op.store.upsert("ModelEndpoint", body)
    handler = platform.read_event("Gateway", runtime.current, watch.track)
    body = {"kind": "Gateway", "metadata": {"name": "gw", "namespace": NS, "resourceVersion": "2"},
            "spec": {"gatewayClassName": "eg"}}  # fmt: skip
    asyncio.run(handler(event={"type": "ADDED", "object": body}, body=body))
    assert sorted(k for k, _ in op.queue.added) == [
        ("ModelEndpoint", NS, "mine"),
        ("ModelEndpoint", "team-b", "across"),
    ]


# ------------------------------------------------------------------- a router added by one line


FAKE_ROUTE = Resource("fake.example.com", "v1", "fakeroutes", "FakeRoute")
FAKE_READ = Resource("fake.example.com", "v1", "fakeplatforms", "FakePlatform", namespaced=False)


class FakeRouter(RouterBase):
    """A test-only router: a FakeRoute lists each destination's Service and weight (and a mirror)."""

    def __init__(self, can_mirror: bool) -> None:
        why = "" if can_mirror else "fake routes cannot mirror"
        self.identity = RouterIdentity(
            name="fake",
            route=FAKE_ROUTE,
            capabilities=Capabilities(True, can_mirror, response_headers=False, why_no_mirror=why),
            reads=(FAKE_READ,),
            spec_rules=(routing_rule("fake", "size(self.hosts) <= 1", "the fake router takes one host"),),
        )

    def render(self, inp: RouteInput) -> dict[str, Any] | None:
        inp.check()
        spec: dict[str, Any] = {"backends": [{"service": t.service, "variant": t.variant, "weight": t.weight}
                                             for t in inp.destinations]}  # fmt: skip
        if inp.mirror is not None:
            spec["mirror"] = inp.mirror.service
        return route_manifest(self, inp, spec)

    def weights(self, route: Mapping[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in route["spec"]["backends"]:
            accumulate(out, variant_key({"x-endpoint-variant": b["variant"]}, b["service"]), b["weight"])
        return out

    def services(self, route: Mapping[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in route["spec"]["backends"]:
            accumulate(out, b["service"], b["weight"])
        if route["spec"].get("mirror"):
            accumulate(out, route["spec"]["mirror"], 0)
        return out

    def describe(self) -> str:
        return "fake: a FakeRoute"


@contextlib.contextmanager
def fake_router(can_mirror: bool = False) -> Iterator[None]:
    register(FakeRouter(can_mirror))  # the one line a new router adds to render/routers/__init__.py
    try:
        yield
    finally:
        unregister("fake")


@pytest.fixture
def fake() -> Iterator[None]:
    with fake_router():
        yield


@pytest.mark.usefixtures("fake")
def test_a_registered_router_is_in_the_crd_the_settings_and_the_chart() -> None:
    crd = crdgen.all_crds()["modelversioning.io_modelendpoints.yaml"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    router = schema["routing"]["properties"]["router"]
    assert router["enum"] == ["istio", "gatewayAPI", "none", "fake"]
    assert (
        router["description"] == "istio (VirtualService), gatewayAPI (HTTPRoute), none or fake (FakeRoute)."
    )
    rules = schema["routing"]["x-kubernetes-validations"]
    assert rules[-1] == {
        "message": "the fake router takes one host",
        "rule": "self.router != 'fake' || size(self.hosts) <= 1",
    }
    assert Settings().serving.enabled_routers == ["istio", "gatewayAPI", "none", "fake"]
    assert (
        ModelEndpointSpec.model_validate(
            {
                "model": "m",
                "variants": [{"name": "a", "version": "1.0.0", "weight": 100}],
                "routing": {"router": "fake"},
            }
        ).routing.router
        == "fake"
    )
    assert chart_routers().endswith(
        "fake:\n  group: fake.example.com\n  version: v1\n  kind: FakeRoute\n  plural: fakeroutes\n  reads:\n"
        "  - group: fake.example.com\n    version: v1\n    kind: FakePlatform\n    plural: fakeplatforms\n"
        "    namespaced: false\n"
    )


def test_a_removed_router_is_gone_again() -> None:
    with fake_router():
        assert "fake" in kube.ROUTE_RESOURCES
    assert "fake" not in kube.ROUTE_RESOURCES and "FakeRoute" not in store.PROJECTION
    assert "fake" not in Settings().serving.enabled_routers
    with pytest.raises(ValueError, match="unknown router 'fake'"):
        ModelEndpointSpec.model_validate(
            {
                "model": "m",
                "variants": [{"name": "a", "version": "1.0.0", "weight": 100}],
                "routing": {"router": "fake"},
            }
        )


@pytest.mark.usefixtures("fake")
def test_a_registered_router_is_watched_listed_cached_and_written(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kube.ROUTE_RESOURCES["fake"] == FAKE_ROUTE and kube.resource_of("FakeRoute") == FAKE_ROUTE
    assert store.PROJECTION["FakeRoute"] == store.PROJECTION["HTTPRoute"]  # kept like any route object
    watched: list[tuple[str, Any, Any]] = []

    def event(group: str, version: str, plural: str, **kw: Any) -> Any:
        watched.append((plural, kw.get("labels"), kw.get("id")))
        return lambda fn: fn

    monkeypatch.setattr(wiring.kopf.on, "event", event)
    wiring.register_children(Settings())
    assert ("fakeroutes", wiring.MANAGED, "fakeroute_event") in watched  # our objects: label-selected
    assert ("fakeplatforms", None, "fakeplatform_read") in watched  # the platform's: whole
    before = len(watched)
    wiring.register_children(Settings(serving=Serving(enabled_routers=["none"])))
    # a disabled router: not watched
    assert [w[0] for w in watched[before:]] == ["deployments", "services", "pods"]
    listed: list[tuple[str, str | None, str | None]] = []

    class Lister:
        def list_pages(
            self, res: Resource, ns: str | None, sel: str | None, page: int
        ) -> Iterator[list[Any]]:
            listed.append((res.plural, ns, sel))
            yield []

    monkeypatch.setenv("MODELVERSIONING_NAMESPACES", "a,b")
    monkeypatch.setattr(listing, "release_memory", lambda: None)
    listing.prime_store(SimpleNamespace(settings=Settings(), kube=Lister(), store=Store()))  # type: ignore[arg-type]
    selector = "app.kubernetes.io/managed-by=modelversioning-operator"
    assert [x for x in listed if x[0] == "fakeroutes"] == [
        ("fakeroutes", "a", selector),
        ("fakeroutes", "b", selector),
    ]
    assert [x for x in listed if x[0] == "fakeplatforms"] == [("fakeplatforms", None, None)]  # cluster-scoped


@pytest.mark.parametrize("can_mirror", [False, True])
def test_the_plan_honours_a_registered_routers_capabilities(can_mirror: bool) -> None:
    with fake_router(can_mirror):
        w = World()
        w.version("2.3.8", OLD)
        w.version("3.0.0", OLD, stage="staging")
        w.endpoint(SHADOWED, router="fake", mirror={"variant": "shadow", "percent": 10})
        w.settle()
        route = w.api.objects[("FakeRoute", "ep")]
        assert [b["variant"] for b in route["spec"]["backends"]] == ["stable"]
        assert ("mirror" in route["spec"]) is can_mirror
        degraded = w.cond("Degraded")
        assert w.status()["router"] == "fake" and w.cond("RoutesReady")[:2] == ("True", R.ROUTE_APPLIED)
    if can_mirror:
        assert degraded[:2] == ("False", R.AS_EXPECTED)
    else:
        why = "router fake cannot mirror here (fake routes cannot mirror): variant shadow gets no copies"
        assert degraded == ("True", R.MIRROR_UNSUPPORTED, why)
