"""The node cache's rules, purely: who may read or fill an entry, and which entries make room.

**Authorization** (:func:`authorize`). The agent (modelversioning.nodecache) serves or accepts the
entry of a digest only for a caller that proves its namespace and whose namespace holds a ModelVersion
of that digest which the operator verified:

==========================================  =======  =====================
the TokenReview / the namespace's versions  status   refusal reason
==========================================  =======  =====================
review could not be made                    503      ReviewFailed
not authenticated (or no token)             401      Unauthenticated
authenticated, audience not ours            401      WrongAudience
not ``system:serviceaccount:<ns>:<name>``   403      NotAServiceAccount
the token's pod is on another node          403      WrongNode
no ModelVersion with ``spec.artifact        403      NoVersionWithDigest
.sha256 == digest`` in ``<ns>``
some, none verified for that digest         403      NotVerified
(ArtifactVerified True and
``status.artifact.digest == digest``)
the verified ones revoked (annotation) or   403      VersionWithdrawn
being deleted (deletionTimestamp)
none of those of the kind asked for         403      WrongKind
(:func:`version_kind`; unknown: none)
one verified, live, of that kind            200      --
==========================================  =======  =====================

The kind matters because a directory's digest is the sha256 of its manifest text: a *file* version
whose bytes are that text has the same digest, and must not read the directory's entry (another
tenant's whole tree) nor fill it.

A digest present on the node is never enough: another tenant's verified version of the same digest
does not count (only the caller's namespace is looked at), so nobody reads a model through the cache
that they could not have fetched with their own version's URI and credentials.

**Eviction** (:func:`make_room`): least recently used first, never an entry being served or being
written, until what is kept plus what comes in fits the size limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from modelversioning.api import wire as R
from modelversioning.domain.conditions import get as get_condition
from modelversioning.domain.oci_ref import is_oci

EntryKind = Literal["file", "directory"]
SA_PREFIX = "system:serviceaccount:"
VERIFIED_CONDITION = "ArtifactVerified"


@dataclass(frozen=True)
class Review:
    """What a TokenReview said about the caller's token (``error``: it could not be made)."""

    authenticated: bool
    username: str = ""
    audiences: tuple[str, ...] = ()
    error: str = ""
    node: str = ""  # the token's pod's node (TokenReview extra, Kubernetes 1.30+); "" when not said


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int  # the HTTP status the agent answers a refusal with (200 when allowed)
    reason: str  # one of wire.CACHE_REFUSALS, "" when allowed
    namespace: str = ""  # the caller's namespace, once known
    version: str = ""  # the ModelVersion that allowed it

    @staticmethod
    def refuse(status: int, reason: str, namespace: str = "") -> Decision:
        return Decision(False, status, reason, namespace)


def caller_namespace(review: Review, node: str = "", audience: str = R.NODE_CACHE_AUDIENCE) -> Decision:
    """The caller's namespace from its TokenReview (allowed), or why it is refused. ``node``: the agent's
    node; a token whose pod runs elsewhere is refused (a token intercepted on one node is no good at
    another's agent). A review that names no node (before Kubernetes 1.30) is not refused for it."""
    if review.error:
        return Decision.refuse(503, R.CACHE_REVIEW_FAILED)
    if not review.authenticated:
        return Decision.refuse(401, R.CACHE_UNAUTHENTICATED)
    if audience not in review.audiences:
        return Decision.refuse(401, R.CACHE_WRONG_AUDIENCE)
    parts = review.username.split(":")
    if not review.username.startswith(SA_PREFIX) or len(parts) != 4 or not parts[2] or not parts[3]:
        return Decision.refuse(403, R.CACHE_NOT_A_POD)
    if node and review.node and review.node != node:
        return Decision.refuse(403, R.CACHE_WRONG_NODE, parts[2])
    return Decision(True, 200, "", parts[2])


def verified_for(version: Mapping[str, Any], digest: str) -> bool:
    """The operator verified this ModelVersion, and what it verified is ``digest``."""
    status = version.get("status") or {}
    condition = get_condition(status.get("conditions"), VERIFIED_CONDITION) or {}
    recorded = (status.get("artifact") or {}).get("digest")
    return condition.get("status") == "True" and recorded == digest


def expected_kind(uri: str) -> EntryKind | None:
    """The kind of the artifact at ``uri`` when the URI alone says it: an http(s) URI is one file, a
    URI ending in ``/`` a directory; None otherwise (and for ``oci://``). The init container asks for
    this kind; the agent serves a version only this kind."""
    if is_oci(uri) or "://" not in uri:
        return None
    if uri.endswith("/"):
        return "directory"
    return "file" if urlsplit(uri).scheme.lower() in ("http", "https") else None


def version_kind(version: Mapping[str, Any]) -> EntryKind | None:
    """The kind of a version's artifact (None: not known, so no cache): what its URI implies, the rule
    the init container follows (status.artifact does not record a kind)."""
    uri = ((version.get("spec") or {}).get("artifact") or {}).get("uri")
    return expected_kind(uri) if isinstance(uri, str) else None


def withdrawn(version: Mapping[str, Any]) -> bool:
    """Revoked (the annotation, whatever its value) or being deleted."""
    md = version.get("metadata") or {}
    return R.REVOKED_ANNOTATION in (md.get("annotations") or {}) or bool(md.get("deletionTimestamp"))


def authorize(
    review: Review, kind: str, digest: str, versions: Iterable[Mapping[str, Any]], node: str = ""
) -> Decision:
    """May the caller of ``review`` read (or fill) the entry ``kind``-``digest``? ``versions``: the
    ModelVersions of the caller's namespace (the agent lists that namespace only, once it is known;
    anything from another namespace is ignored here too)."""
    who = caller_namespace(review, node)
    if not who.allowed:
        return who
    ns = who.namespace
    mine = [
        v
        for v in versions
        if (v.get("metadata") or {}).get("namespace") == ns
        and ((v.get("spec") or {}).get("artifact") or {}).get("sha256") == digest
    ]
    if not mine:
        return Decision.refuse(403, R.CACHE_NO_VERSION, ns)
    verified = [v for v in mine if verified_for(v, digest)]
    if not verified:
        return Decision.refuse(403, R.CACHE_NOT_VERIFIED, ns)
    live = [v for v in verified if not withdrawn(v)]
    if not live:
        return Decision.refuse(403, R.CACHE_WITHDRAWN, ns)
    for v in live:
        if version_kind(v) == kind:
            return Decision(True, 200, "", ns, str((v.get("metadata") or {}).get("name", "")))
    return Decision.refuse(403, R.CACHE_WRONG_KIND, ns)


# ---------------------------------------------------------------------------------------- eviction


@dataclass(frozen=True)
class Entry:
    """One cache entry as eviction sees it."""

    key: str
    size: int
    last_used: float  # monotonic or wall clock: only the order matters
    busy: bool = False  # being served or being written: never evicted


@dataclass(frozen=True)
class Room:
    evict: tuple[str, ...]  # keys, least recently used first
    fits: bool  # after evicting them, ``incoming`` fits under the limit


def make_room(entries: Sequence[Entry], limit: int, incoming: int) -> Room:
    """Which entries to evict so that ``incoming`` more bytes fit under ``limit``: least recently used
    first, busy ones never. ``fits`` is False (and nothing is evicted) when even evicting every idle
    entry would not make room: the caller refuses the write rather than emptying the cache for nothing."""
    total = sum(e.size for e in entries)
    if total + incoming <= limit:
        return Room((), True)
    if incoming > limit:
        return Room((), False)
    victims: list[str] = []
    for e in sorted((e for e in entries if not e.busy), key=lambda e: (e.last_used, e.key)):
        victims.append(e.key)
        total -= e.size
        if total + incoming <= limit:
            return Room(tuple(victims), True)
    return Room((), False)
