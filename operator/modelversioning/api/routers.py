"""The router registry: which routers exist, what each writes and reads, and what it can do.

A router is one module in render/routers/ (its renderer, with its identity: a ``RouterIdentity``) plus
one line in render/routers/__init__.py that registers it. Registering puts the identity here, where
every layer can read it:

* api/modelendpoint.py: the enum of spec.routing.router, the description of that field and each
  router's own CEL rules on spec.routing (``spec_rules``), assembled when the schema is generated
  (``modelversioning gen-crds``); the check of spec.routing.router when a spec is validated;
* api/settings.py: the default of serving.enabledRouters (every registered router);
* handlers/: the route resource each router writes (watched and written) and the platform objects
  it reads (``reads``: watched, never written);
* the chart: files/routers.yaml, generated from the registry (RBAC, serving.enabledRouters).

Why a registry filled by the router modules rather than a table here: a router module renders
manifests, so it lives in render/, above api/ in the import-linter layers, and api/ may not import
it. This module imports nothing but api.wire; the router modules import it (downward) to register.
It is read when a schema is generated, a spec validated or the settings loaded, never while api/ is
being imported, so the models do not depend on import order. Whatever generates or validates
endpoints (the operator, ``modelversioning gen-crds``, tests) imports modelversioning.render.routers
first. ``identities()`` raises when no router is registered: a CRD without its enum would be wrong
silently. (The settings' default is the one reader that tolerates an empty registry: the
artifact-verifying init container loads the settings and routes nothing.)
"""

from __future__ import annotations

from dataclasses import dataclass

from modelversioning.api.wire import Resource

DEFAULT_ROUTER = "none"  # spec.routing.router when omitted (render/routers/none.py)


@dataclass(frozen=True)
class Capabilities:
    """What a router can do. Everything that used to compare router names reads one of these."""

    writes_route: bool  # False: no route object; each variant is reached through its own Service
    can_mirror: bool  # can send a copy of live traffic to the mirror variant
    response_headers: bool  # sets the x-model-* and x-endpoint-variant response headers (api.wire)
    why_no_mirror: str = ""  # with can_mirror False: why, for the MirrorUnsupported condition


@dataclass(frozen=True)
class RouterIdentity:
    """A router as the API, the settings, the watches and the chart see it."""

    name: str  # the value of spec.routing.router
    route: Resource | None  # the route object it writes (named after the endpoint); None: none
    capabilities: Capabilities  # wherever it runs; Router.capabilities(platform) may narrow them
    reads: tuple[Resource, ...] = ()  # platform objects it reads: watched (list/watch), never written
    spec_rules: tuple[dict[str, str], ...] = ()  # CEL rules on spec.routing (routing_rule)

    def __post_init__(self) -> None:
        if self.capabilities.writes_route != (self.route is not None):
            raise ValueError(f"router {self.name}: capabilities.writes_route must say whether it has a route")


def routing_rule(router: str, condition: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One x-kubernetes-validations entry on spec.routing that applies to `router` only."""
    rule = {"rule": f"self.router != '{router}' || {condition}", "message": message}
    if field_path:
        rule["fieldPath"] = field_path
    return rule


_REGISTRY: dict[str, RouterIdentity] = {}


def register(identity: RouterIdentity) -> None:
    """Add a router (render.routers.register does it). A second router of the same name is refused."""
    old = _REGISTRY.get(identity.name)
    if old is not None and old != identity:
        raise ValueError(f"a router named {identity.name!r} is already registered")
    _REGISTRY[identity.name] = identity


def unregister(name: str) -> None:
    """Remove a router (tests that register a router of their own)."""
    _REGISTRY.pop(name, None)


def identities() -> tuple[RouterIdentity, ...]:
    """Every registered router, in registration order."""
    if not _REGISTRY:
        raise RuntimeError("no router is registered: import modelversioning.render.routers first")
    return tuple(_REGISTRY.values())


def names() -> list[str]:
    """The registered routers' names (empty before any registered: see the module's docstring)."""
    return list(_REGISTRY)


def identity(name: str) -> RouterIdentity | None:
    return _REGISTRY.get(name)


__all__ = [
    "DEFAULT_ROUTER",
    "Capabilities",
    "RouterIdentity",
    "identities",
    "identity",
    "names",
    "register",
    "routing_rule",
    "unregister",
]
