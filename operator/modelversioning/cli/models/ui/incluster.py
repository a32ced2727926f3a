"""The web view in the cluster (the chart's ``ui.enabled``, off by default): the same server, behind the
cluster's authenticating proxy (oauth2-proxy or the ingress's OIDC), acting **as the viewer**.

- Who the viewer is comes from the proxy's identity headers (``X-Forwarded-User``,
  ``X-Forwarded-Groups``, names configurable), believed only on a request that also carries the
  proxy's shared secret header (the value of a Secret only the proxy and the view read, compared in
  constant time). Without it, or with another value: 401, and nothing else of the request is read.
- The viewer must be on the impersonation allowlist (the chart's ``ui.impersonation.users``; the
  groups the proxy names that are not on ``ui.impersonation.groups`` are dropped: RBAC only grants, so
  fewer groups never means more rights). Anyone else: 403, before anything is created for them, so a
  stream of made-up identities allocates nothing.
- Reading: one shared watch cache (the view's ServiceAccount may list/watch our four kinds), filtered
  per viewer by SubjectAccessReviews (may this user, in these groups, ``list`` this kind in this
  namespace?), each answer kept a short time (:class:`AccessReviews`: at most ``max_viewers``
  identities, least recently used dropped first, and ``max_entries`` answers each). Why not one
  cache per viewer: a viewer with rights in a few namespaces cannot LIST across the cluster, so a
  per-viewer cache would need the namespaces anyway, and N viewers would hold N copies and N sets of
  watches; the shared cache costs the API server four watches whatever the number of viewers, and a
  viewer costs one review per (kind, namespace) per ``ttl`` seconds.
- Writing (actions, only with ``ui.readOnly: false``): the same :mod:`..operations` code as
  ``kubectl models``, with a Cluster that impersonates the viewer (``Impersonate-User``, one
  ``Impersonate-Group`` per kept group): the API server's RBAC and our admission policies decide, and
  the actor recorded is the viewer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelversioning.api.wire import MODEL, MODELAPPROVAL, MODELENDPOINT, MODELVERSION, Resource
from modelversioning.cli.models.ui.snapshot import Snapshot

MAX_VIEWERS = 256  # identities whose access reviews are kept (least recently used dropped first)
MAX_ENTRIES = 4096  # answers kept per identity (kinds x namespaces)
# Reviews a viewer's page views may ask (answers not kept) per second, and in one burst: each namespace
# named in a URL is a review, and a made-up one is a new review every time.
PAGE_REVIEWS_PER_SECOND = 5.0
PAGE_REVIEWS_BURST = 20.0
TTL_ALLOWED = 30.0  # seconds an "allowed" answer is kept (a RoleBinding removed shows within this)
TTL_DENIED = 10.0
MAX_NAME = 253
# a user or group name as an identity provider sends it: printable, no separators of our own
_IDENTITY = re.compile(r"^[^\x00-\x1f\x7f,]{1,253}$")


class Untrusted(Exception):
    """A request the view will not act on: ``status`` (401: not from the proxy; 403: not on the list)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


@dataclass(frozen=True)
class Viewer:
    """Who the proxy says is asking, as the view will impersonate them."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "\x00".join((self.user, *self.groups))


@dataclass(frozen=True)
class ProxyTrust:
    """When the proxy's identity headers are believed, and whom the view may act as."""

    secret: bytes
    users: frozenset[str]
    groups: frozenset[str] = frozenset()
    secret_header: str = "X-Proxy-Secret"
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the proxy secret must be at least 16 bytes")

    def viewer(self, headers: Mapping[str, str]) -> Viewer:
        """The viewer the headers name, if they come from the proxy and the allowlist covers them;
        else :class:`Untrusted`. Nothing is allocated before both checks pass."""
        getall = getattr(headers, "getall", None)
        for name in (self.secret_header, self.user_header, self.groups_header):
            # one of each: a client's own X-Forwarded-User ahead of the proxy's (a proxy that appends
            # instead of replacing) must not be the one believed
            if getall is not None and len(getall(name, [])) > 1:
                raise Untrusted(401, f"more than one {name} header")
        given = headers.get(self.secret_header)
        if given is None or not hmac.compare_digest(given.encode("utf-8", "replace"), self.secret):
            raise Untrusted(401, "not from the authenticating proxy")
        user = headers.get(self.user_header, "").strip()
        if not _IDENTITY.match(user):
            raise Untrusted(401, "the proxy named no user")
        if user not in self.users:
            raise Untrusted(403, f"{user} is not on this view's impersonation list (ui.impersonation.users)")
        named = (g.strip() for g in headers.get(self.groups_header, "").split(","))
        return Viewer(user, tuple(sorted({g for g in named if g in self.groups})))


class Throttled(Exception):
    """A viewer's page views asked more access reviews than PAGE_REVIEWS_PER_SECOND allows."""


@dataclass
class AccessReviews:
    """Per viewer, the answers of SubjectAccessReviews, kept ``ttl`` seconds; bounded in identities
    (LRU) and in answers per identity. ``ask(viewer, verb, resource, namespace)`` asks the API server."""

    ask: Callable[[Viewer, str, Resource, str], bool]
    max_viewers: int = MAX_VIEWERS
    max_entries: int = MAX_ENTRIES
    ttl_allowed: float = TTL_ALLOWED
    ttl_denied: float = TTL_DENIED
    clock: Callable[[], float] = time.monotonic
    requests: int = 0  # reviews asked of the API server (the benchmark prints them)
    kept: int = 0  # answers served from memory
    _by_viewer: OrderedDict[str, dict[tuple[str, str, str], tuple[bool, float]]] = field(
        default_factory=OrderedDict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)  # (tokens, at)
    rate: float = PAGE_REVIEWS_PER_SECOND
    burst: float = PAGE_REVIEWS_BURST

    def __len__(self) -> int:
        return len(self._by_viewer)

    def allowed(
        self, viewer: Viewer, verb: str, res: Resource, namespace: str, limited: bool = False
    ) -> bool:
        """``limited``: a review a page view asks for a namespace named in its URL; one that is not kept
        costs a token of the viewer's bucket, and none left raises Throttled (the same for a namespace
        that holds objects and one that does not: the answer's path and timing say nothing of which)."""
        key, now = (verb, res.plural, namespace), self.clock()
        with self._lock:
            answers = self._by_viewer.get(viewer.key)
            if answers is not None:
                self._by_viewer.move_to_end(viewer.key)
                hit = answers.get(key)
                if hit is not None and hit[1] > now:
                    self.kept += 1
                    return hit[0]
            if limited:
                self._take(viewer.key, now)
        try:
            ok = bool(self.ask(viewer, verb, res, namespace))
        except Exception:  # noqa: BLE001 - an unanswered review denies (and is kept briefly: no storm)
            ok = False
        with self._lock:
            self.requests += 1
            answers = self._by_viewer.setdefault(viewer.key, {})
            self._by_viewer.move_to_end(viewer.key)
            while len(self._by_viewer) > self.max_viewers:
                self._by_viewer.popitem(last=False)
            if len(answers) >= self.max_entries:
                answers.pop(next(iter(answers)))
            answers[key] = (ok, now + (self.ttl_allowed if ok else self.ttl_denied))
        return ok


    def _take(self, who: str, now: float) -> None:
        """Under the lock: one token of ``who``'s bucket (bounded in identities like the answers)."""
        tokens, at = self._buckets.pop(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[who] = (tokens, now)
            raise Throttled(f"more than {self.rate:g} access reviews a second for pages of namespaces")
        self._buckets[who] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_viewers:
            self._buckets.popitem(last=False)


KIND_OF_PAGE = {"models": MODELVERSION, "endpoints": MODELENDPOINT}


def visible(snap: Snapshot, viewer: Viewer, reviews: AccessReviews) -> Snapshot:
    """The snapshot as ``viewer`` may see it: each kind's objects only in the namespaces where the API
    server says they may ``list`` that kind (one review per kind and namespace, kept)."""

    def keep(res: Resource, objs: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
        namespaces = {str((o.get("metadata") or {}).get("namespace") or "") for o in objs}
        ok = {ns for ns in namespaces if reviews.allowed(viewer, "list", res, ns)}
        return tuple(o for o in objs if str((o.get("metadata") or {}).get("namespace") or "") in ok)

    return replace(
        snap,
        versions=keep(MODELVERSION, snap.versions),
        endpoints=keep(MODELENDPOINT, snap.endpoints),
        models=keep(MODEL, snap.models),
        approvals=keep(MODELAPPROVAL, snap.approvals),
    )


BY_PLURAL = {r.plural: r for r in (MODELVERSION, MODELENDPOINT, MODEL, MODELAPPROVAL)}


def sees_change(
    viewer: Viewer, reviews: AccessReviews, pairs: frozenset[tuple[str, str]], kinds: frozenset[str]
) -> bool:
    """Does a change of these (plural, namespace) pairs concern ``viewer``: may they list that kind in
    one of those namespaces (the reviews ``visible`` asks, kept)? A kind listed again (the cache's
    start, a watch that expired) concerns everyone; it says nothing of any namespace."""
    if kinds:
        return True
    return any(
        reviews.allowed(viewer, "list", BY_PLURAL[plural], ns)
        for plural, ns in sorted(pairs)
        if plural in BY_PLURAL
    )


def csrf_for(token: str, viewer: Viewer) -> str:
    """The CSRF field of this viewer's forms (a page of another origin cannot read it)."""
    return hmac.new(token.encode(), b"csrf\x00" + viewer.key.encode(), hashlib.sha256).hexdigest()
