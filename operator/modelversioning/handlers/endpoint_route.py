"""The route side of a ModelEndpoint: what its routes carry as observed (gather), and its act: write
the route the plan decided (weighted destinations, or a closed route and the objects it needs), never
over an object that is not ours, and delete the routes of the routers the endpoint does not use (any
more)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.domain.endpoint_facts import ApiError
from modelversioning.domain.endpoint_plan import Plan
from modelversioning.handlers import endpoint_parse as parse
from modelversioning.handlers.kube import ROUTE_RESOURCES, Conflict, Kube, PreconditionFailed
from modelversioning.handlers.store import Store
from modelversioning.render import EndpointRef, RenderError, RouteInput, VariantTarget
from modelversioning.render.routers import UnknownRouter, get_router, router_names

# create, or put back what drifted (desired, the cached object of that name; True: written)
Write = Callable[[dict[str, Any], dict[str, Any] | None], bool]
Current = Callable[[dict[str, Any]], dict[str, Any] | None]  # the cached object of desired's name
Seen = dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> a cached object as gather read it
Result = tuple[ApiError | None, str, Exception | None]  # (why not written, description, retry)


@dataclass(frozen=True)
class RouteFacts:
    ref: EndpointRef
    spec: ModelEndpointSpec
    router_problem: tuple[str, str] | None


def observed(
    store: Store, settings: Settings, ref: EndpointRef, router_name: str, seen: Seen
) -> tuple[dict[str, int], bool, tuple[str, str] | None]:
    """(Service -> weight in the observed routes, are those complete?, router problem); `seen` gets
    the routes as read (gather)."""
    enabled = settings.serving.enabled_routers
    problem = None
    try:
        get_router(router_name)
        if router_name not in enabled:
            problem = (
                R.ROUTER_DISABLED,
                f"router {router_name!r} is not enabled in this operator (enabled: {', '.join(enabled)})",
            )
    except UnknownRouter as e:
        problem = (R.UNKNOWN_ROUTER, str(e))
    routed: dict[str, int] = {}
    known = problem is None
    resources = dict(ROUTE_RESOURCES.items())  # the router registry read once
    for rname in router_names():
        res = resources.get(rname)
        if res is None or rname not in enabled:
            continue  # not watched
        for route in store.owned(res.kind, ref.namespace, ref.uid):
            seen[(res.kind, route["metadata"]["name"])] = route
            if not store.is_observed(res.kind, ref.namespace, route["metadata"]["name"]):
                known = False  # our last write is not visible through the watch yet
            for svc, w in get_router(rname).services(route).items():
                routed[svc] = routed.get(svc, 0) + w
    return routed, known, problem


def route_input(f: RouteFacts, plan: Plan, settings: Settings) -> RouteInput:
    """What the router renders: the plan's destinations and mirror, or a closed route (no destination)."""
    spec = f.spec
    dests = [
        VariantTarget(d.variant, d.slot, spec.model, d.version, d.digest, d.weight) for d in plan.destinations
    ]
    m = plan.mirror
    mirror = VariantTarget(m.variant, m.slot, spec.model, m.version, m.digest, 0) if m else None
    pct = spec.mirror.percent if spec.mirror else 0
    return RouteInput(f.ref, spec, dests, mirror, pct, policy=settings.routing, closed=plan.closed)


def write_route(
    kube: Kube, store: Store, settings: Settings, f: RouteFacts, plan: Plan, write: Write, current: Current
) -> Result:
    """Write the route if the plan says so (a closed route's companions first); delete routes of other
    routers. A declared problem leaves every route alone, unless the route must close (a withdrawn
    version would keep its share)."""
    name = f.spec.routing.router
    if (plan.declared_problems and not plan.closed) or f.router_problem is not None:
        return None, "", None  # leave every route alone
    router = get_router(name)
    if plan.write_route:
        inp = route_input(f, plan, settings)
        try:
            desired = router.render(inp)
            companions = router.companions(inp)
        except RenderError as e:
            return ApiError(R.INVALID_SPEC, str(e)), "", None
        for obj in [*companions, *([desired] if desired is not None else [])]:
            written, problem, retry = _write_owned(f.ref, obj, write, current(obj))
            if problem is not None:  # a companion that is not ours: the route is not pointed at it
                return problem, "", retry
            if written and obj is desired:
                metrics.ROUTE_UPDATES.labels(f.ref.namespace, f.ref.name, name).inc()
    for rname, res in ROUTE_RESOURCES.items():
        if rname != name and rname in settings.serving.enabled_routers:
            for obj in store.owned(res.kind, f.ref.namespace, f.ref.uid):
                # the watch's DELETED event removes it from the cache: until then it still counts
                # as pointing at its slots, so they are not deleted under a gateway that uses it
                kube.delete(res, f.ref.namespace, obj["metadata"]["name"])
    return None, router.describe(), None


def _write_owned(
    ref: EndpointRef, desired: dict[str, Any], write: Write, actual: dict[str, Any] | None
) -> tuple[bool, ApiError | None, Exception | None]:
    """(written, problem, API error worth a retry); `actual`: the cached object of that name. Never
    over an object of that name that is not ours; what the API server refuses becomes the endpoint's
    condition, not an exception that would leave status (and every later change, rollback included)
    waiting behind it."""
    md = desired["metadata"]
    taken = parse.taken(ref.uid, actual)
    if taken:
        return False, ApiError(R.CHILD_CONFLICT, f"{taken}; the route is not written"), None
    try:
        return write(desired, actual), None, None
    except PreconditionFailed as e:  # deleted (maybe re-created) since gather: decided again on retry
        return False, ApiError(R.CHILD_APPLY_RETRYING, str(e), transient=True), e
    except Conflict:
        msg = f"{desired['kind']} {md['name']} already exists and is not ours; the route is not written"
        return False, ApiError(R.CHILD_CONFLICT, msg), None
    except ApiException as e:
        msg = f"{desired['kind']} {md['name']}: {parse.api_message(e)}"
        transient = parse.transient(e)
        return False, ApiError(R.CHILD_REJECTED, msg, transient), (e if transient else None)
