"""Writing a ModelEndpoint's children and routes: create what is missing, put back what drifted, on the
object observed only (its UID), never an object another controller owns. Read-your-writes: what was
written goes into the Store at once (not yet observed)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from modelversioning.handlers.drift import diff, in_sync
from modelversioning.handlers.endpoint_route import Seen
from modelversioning.handlers.kube import Kube
from modelversioning.handlers.store import Store

log = logging.getLogger(__name__)

__all__ = ["current", "write"]


def current(store: Store, seen: Seen, desired: dict[str, Any]) -> dict[str, Any] | None:
    """The cached object of `desired`'s kind and name: the copy gather read while the cache still
    holds that version (unchanged, it is the same object; one read of the cache less)."""
    md = desired["metadata"]
    kind, ns, name = desired["kind"], md["namespace"], md["name"]
    read = seen.get((kind, name))
    at = (read or {}).get("metadata", {}).get("resourceVersion")
    if at is not None and store.rv(kind, ns, name) == str(at):
        return read
    return store.get(kind, ns, name)


def write(
    kube: Kube,
    store: Store,
    desired: dict[str, Any],
    actual: dict[str, Any] | None,
    sending: Callable[[], None] | None = None,
) -> bool:
    """Create, or put back what drifted (`actual`: the cached object of that name). Never touches
    an object another controller owns."""
    md = desired["metadata"]
    if actual is not None and in_sync(desired, actual):
        return False
    if sending is not None:
        sending()
    if actual is None:
        written = kube.create(desired)
    else:
        # on the object we observed only (its UID): one deleted and re-created meanwhile is not ours
        uid = (actual.get("metadata") or {}).get("uid")
        try:
            written = kube.apply({**desired, "metadata": {**md, "uid": uid}} if uid else desired)
        finally:  # once the request went out: a route write does not wait for the log line
            log.info("%s %s/%s drifted (%s); applying", desired["kind"], md["namespace"], md["name"],
                     ", ".join(diff(desired, actual)[:5]))  # fmt: skip
    store.upsert(desired["kind"], written, observed=False)  # read-your-writes, not yet observed
    return True
