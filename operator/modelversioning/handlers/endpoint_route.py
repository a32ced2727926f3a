"""The route side of a ModelEndpoint's act: write the route the plan decided (weighted destinations, or
a closed route and the objects it needs), never over an object that is not ours, and delete the routes
of the routers the endpoint does not use (any more)."""

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
from modelversioning.render.routers import get_router

Write = Callable[[dict[str, Any]], bool]  # create, or put back what drifted (True: written)
Result = tuple[ApiError | None, str, Exception | None]  # (why not written, description, retry)


@dataclass(frozen=True)
class RouteFacts:
    ref: EndpointRef
    spec: ModelEndpointSpec
    router_problem: tuple[str, str] | None


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
    kube: Kube, store: Store, settings: Settings, f: RouteFacts, plan: Plan, write: Write
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
            written, problem, retry = _write_owned(f.ref, store, obj, write)
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
    ref: EndpointRef, store: Store, desired: dict[str, Any], write: Write
) -> tuple[bool, ApiError | None, Exception | None]:
    """(written, problem, API error worth a retry). Never over an object of that name that is not
    ours; what the API server refuses becomes the endpoint's condition, not an exception that would
    leave status (and every later change, rollback included) waiting behind it."""
    md = desired["metadata"]
    taken = parse.taken(ref.uid, store.get(desired["kind"], md["namespace"], md["name"]))
    if taken:
        return False, ApiError(R.CHILD_CONFLICT, f"{taken}; the route is not written"), None
    try:
        return write(desired), None, None
    except PreconditionFailed as e:  # deleted (maybe re-created) since gather: decided again on retry
        return False, ApiError(R.CHILD_APPLY_RETRYING, str(e), transient=True), e
    except Conflict:
        msg = f"{desired['kind']} {md['name']} already exists and is not ours; the route is not written"
        return False, ApiError(R.CHILD_CONFLICT, msg), None
    except ApiException as e:
        msg = f"{desired['kind']} {md['name']}: {parse.api_message(e)}"
        transient = parse.transient(e)
        return False, ApiError(R.CHILD_REJECTED, msg, transient), (e if transient else None)
