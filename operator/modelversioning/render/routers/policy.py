"""Which hosts and gateways a route may claim (settings ``routing``: ``RoutePolicy``).

A ModelEndpoint's author chooses ``routing.hosts`` and ``routing.gateways``; copied verbatim, an
endpoint could claim ``*``, ``kubernetes.default.svc.cluster.local`` or a shared ingress gateway and
take traffic that belongs to others. Checked when the route is rendered (a refusal is a
RenderError: the endpoint is ``InvalidSpec`` and its routes are left alone):

* never ``*`` and never cluster-internal names outside the endpoint's namespace (``<svc>.<other>.svc``,
  ``<svc>.<other>.svc.<domain>``, ``*.svc...``, ``*.cluster.local``);
* with ``policy.allowed_hosts``, every host must match one entry (exact or ``*.suffix``;
  ``{namespace}`` is the endpoint's namespace);
* Istio gateways: ``mesh``, a bare name or ``<own namespace>/<name>`` always; a gateway of another
  namespace only if ``policy.allowed_gateways`` lists it (``ns/name`` or ``ns/*``). The
  VirtualService is exported to its own namespace only, plus the namespaces of those gateways
  (:func:`istio_export_to`), so it never changes routing for other namespaces' sidecars.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelversioning.api.settings import RoutePolicy
from modelversioning.render.inputs import RenderError, RouteInput


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def host_refusal(host: str, namespace: str, policy: RoutePolicy) -> str | None:
    h = host.strip().rstrip(".").lower()
    if h in ("", "*"):
        return f"host {host!r} would claim every host"
    labels = h.split(".")
    if h.endswith(".cluster.local") and "svc" not in labels:
        return f"host {host!r} claims cluster-internal names"
    if "svc" in labels[1:]:
        i = labels.index("svc", 1)
        ns = labels[i - 1] if i >= 2 else "*"
        if ns != namespace:
            return f"host {host!r} is a cluster-internal name of another namespace ({ns})"
    patterns = [
        p.strip().lower().replace("{namespace}", namespace) for p in policy.allowed_hosts if p.strip()
    ]
    if patterns and not any(_matches(h, p) for p in patterns):
        return f"host {host!r} is not in routing.allowedHosts ({', '.join(patterns)})"
    return None


def _gateway_namespace(gateway: str, namespace: str) -> str | None:
    """The namespace of an Istio gateway reference (None: the mesh)."""
    if gateway == "mesh":
        return None
    return gateway.split("/", 1)[0] if "/" in gateway else namespace


def gateway_refusal(gateway: str, namespace: str, policy: RoutePolicy) -> str | None:
    ns = _gateway_namespace(gateway.strip(), namespace)
    if ns is None or ns == namespace:
        return None
    name = gateway.split("/", 1)[1]
    allowed = {g.strip() for g in policy.allowed_gateways}
    if f"{ns}/{name}" in allowed or f"{ns}/*" in allowed:
        return None
    return f"gateway {gateway!r} of namespace {ns} is not in routing.allowedGateways"


def check_route_policy(inp: RouteInput, gateways: Iterable[str] = ()) -> None:
    """Raise RenderError if the endpoint claims hosts or gateways the platform does not allow."""
    ns = inp.endpoint.namespace
    problems = [r for h in inp.spec.routing.hosts if (r := host_refusal(h, ns, inp.policy))]
    problems += [r for g in gateways if (r := gateway_refusal(g, ns, inp.policy))]
    if problems:
        raise RenderError(f"ModelEndpoint {inp.endpoint.name}: " + "; ".join(problems))


def istio_export_to(inp: RouteInput) -> list[str]:
    """``.`` plus the (allowed) namespaces of the gateways the VirtualService binds to."""
    ns = inp.endpoint.namespace
    others = {g for gw in inp.spec.routing.gateways if (g := _gateway_namespace(gw.strip(), ns)) and g != ns}
    return [".", *sorted(others)]
