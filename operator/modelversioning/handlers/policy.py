"""The platform's floors as the reconcilers gather them: ModelPlatformPolicies and namespace labels
from the watch cache, resolved by domain.platform_policy. The watches here only cache and requeue."""

from __future__ import annotations

from typing import Any

import kopf

from modelversioning.api.wire import MODELPLATFORMPOLICY, NAMESPACE
from modelversioning.handlers.admission import WATCHED

# the gather helper lives with the reconcilers' shared gather code (this module imports the runtime,
# which imports every reconciler: the reconcilers stay independent, pyproject's contract)
from modelversioning.handlers.modelfacts import floors as floors
from modelversioning.handlers.runtime import current
from modelversioning.handlers.watch import track

__all__ = ["floors", "namespace_event", "policy_event"]  # floors: gathered in handlers.modelfacts

_KINDS = (("ModelEndpoint", False), ("Model", False), ("ModelVersion", True))


async def policy_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """A policy changed (or its selector did): every object may be concerned; queue them all, low."""
    if (seen := track(MODELPLATFORMPOLICY.kind, event, body)) is None:
        return
    op = seen[0]
    for kind, _low in _KINDS:
        for ns, name in op.store.keys(kind):
            op.queue.add((kind, ns, name), low=True)


async def namespace_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """A namespace's labels changed: the policies selecting it may have; queue what lives there."""
    name = body.get("metadata", {}).get("name", "")
    before = _labels(current().store.get(NAMESPACE.kind, "", name))
    if (seen := track(NAMESPACE.kind, event, body)) is None:
        return
    op, _ns, _name, alive = seen
    if alive and _labels(body) == before:
        return
    for kind, low in _KINDS:
        for ns, obj in op.store.keys(kind, name):
            op.queue.add((kind, ns, obj), low=low)


def _labels(body: Any) -> dict[str, str]:
    return dict(((body or {}).get("metadata") or {}).get("labels") or {})


def admission_event(kind: str) -> Any:
    """The handler for the chart's ValidatingAdmissionPolicies or their bindings (by name; the
    cluster's others are ignored): re-decide every ModelVersion (handlers.admission.observed)."""

    async def handler(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if body.get("metadata", {}).get("name") not in WATCHED:
            return
        if (seen := track(kind, event, body)) is None:
            return
        op = seen[0]
        for ns, name in op.store.keys("ModelVersion"):
            op.queue.add(("ModelVersion", ns, name), low=True)  # each reconcile reads the cache anew

    return handler
