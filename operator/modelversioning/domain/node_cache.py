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

**Eviction** (:func:`reserve` at an offer's start, :func:`make_room` at its commit): never an entry
being served or being written; each entry is charged to the namespace whose offer stored it, and a
namespace's offers evict only its own entries to stay within its share (``maxBytesPerNamespace``), its
own first and then the least recently used of the others to fit the size limit: one namespace can push
out of the cache at most its share of other namespaces' bytes. Another namespace's entry is evicted only
when verified bytes are committed (they hashed to the digest offered), never at an offer's start: an
offer that fails its hash, is dropped or times out has cost no other namespace anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from modelversioning.api import wire as R
from modelversioning.domain.conditions import get as get_condition
from modelversioning.domain.oci_ref import is_oci

EntryKind = Literal["file", "directory", "oci"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
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
    content: str = ""  # ``oci``: the laid-out files' digest the operator recorded for that version

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
    URI ending in ``/`` a directory, an ``oci://`` URI ``oci`` (its manifest digest names the entry of
    the files it lays out, see :func:`oci_content`); None otherwise. The init container asks for this
    kind; the agent serves a version only this kind."""
    if is_oci(uri):
        return "oci"
    if "://" not in uri:
        return None
    if uri.endswith("/"):
        return "directory"
    return "file" if urlsplit(uri).scheme.lower() in ("http", "https") else None


def version_kind(version: Mapping[str, Any]) -> EntryKind | None:
    """The kind of a version's artifact (None: not known, so no cache): what its URI implies, the rule
    the init container follows (status.artifact does not record a kind)."""
    uri = ((version.get("spec") or {}).get("artifact") or {}).get("uri")
    return expected_kind(uri) if isinstance(uri, str) else None


def oci_content(version: Mapping[str, Any]) -> str:
    """An ``oci://`` version's ``status.artifact.contentDigest``: the digest of the files the operator
    laid out from the pinned manifest (with the version's own URI and credentials), the name of its
    entry on the node ("": not recorded, so no cache). Only the operator writes status (the
    ``status-writers`` admission policy)."""
    got = ((version.get("status") or {}).get("artifact") or {}).get("contentDigest")
    return got if isinstance(got, str) and _HEX64.match(got) else ""


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
        if version_kind(v) != kind:
            continue
        name = str((v.get("metadata") or {}).get("name", ""))
        if kind != "oci":
            return Decision(True, 200, "", ns, name)
        if oci_content(v):
            return Decision(True, 200, "", ns, name, content=oci_content(v))
    if kind == "oci" and any(version_kind(v) == kind for v in live):
        return Decision.refuse(403, R.CACHE_NOT_VERIFIED, ns)  # verified, but no contentDigest recorded
    return Decision.refuse(403, R.CACHE_WRONG_KIND, ns)


# ---------------------------------------------------------------------------------------- eviction


@dataclass(frozen=True)
class Entry:
    """One cache entry as eviction sees it."""

    key: str
    size: int
    last_used: float  # monotonic or wall clock: only the order matters
    busy: bool = False  # being served or being written: never evicted
    owner: str = ""  # the namespace charged for it: the one whose offer stored it ("": nobody's)


FULL, OVER_SHARE = "full", "share"


@dataclass(frozen=True)
class Room:
    evict: tuple[str, ...]  # keys, in the order they go
    fits: bool  # after evicting them, ``incoming`` fits under the limit (and under the share)
    why: str = ""  # not ``fits``: FULL (the cache) or OVER_SHARE (the namespace's share)


def make_room(
    entries: Sequence[Entry],
    limit: int,
    incoming: int,
    *,
    owner: str = "",
    share: int | None = None,
) -> Room:
    """Which entries to evict so that ``incoming`` more bytes, charged to ``owner``, fit.

    1. **The namespace's share** (``share``, bytes; None: no share): what ``owner`` is charged for plus
       ``incoming`` must stay within it, by evicting ``owner``'s own idle entries (least recently used
       first) and never anyone else's. If even evicting all of them would not do, nothing is evicted
       (``OVER_SHARE``).
    2. **The cache's limit**: then, if the cache is still too full, ``owner``'s own remaining idle
       entries go first, and only then other namespaces' idle ones, least recently used first. Since
       ``owner`` never holds more than ``share``, the bytes it can take from everyone else are bounded
       by its share, however many versions it registers and offers.

    Busy entries (served or being written) never go. If even evicting every idle entry would not make
    room, nothing is evicted (``FULL``): the caller refuses the write rather than emptying the cache."""
    if incoming > limit or (share is not None and incoming > share):
        return Room((), False, OVER_SHARE if share is not None and incoming > share else FULL)
    victims: list[str] = []
    total = sum(e.size for e in entries)
    mine = sorted((e for e in entries if e.owner == owner and owner), key=lambda e: (e.last_used, e.key))
    if share is not None and owner:
        held = sum(e.size for e in mine)
        for e in (e for e in mine if not e.busy):
            if held + incoming <= share:
                break
            victims.append(e.key)
            held -= e.size
            total -= e.size
        if held + incoming > share:
            return Room((), False, OVER_SHARE)
    if total + incoming <= limit:
        return Room(tuple(victims), True)
    others = sorted(
        (e for e in entries if not (owner and e.owner == owner)), key=lambda e: (e.last_used, e.key)
    )
    for e in [*mine, *others]:
        if e.busy or e.key in victims:
            continue
        victims.append(e.key)
        total -= e.size
        if total + incoming <= limit:
            return Room(tuple(victims), True)
    return Room((), False, FULL)


@dataclass(frozen=True)
class Reservation:
    evict: tuple[str, ...]  # the offering namespace's own idle entries, evicted at the offer's start
    beyond: int  # bytes staged beyond the limit: room for them is made at commit (:func:`make_room`)
    fits: bool
    why: str = ""  # not ``fits``: FULL or OVER_SHARE


def reserve(
    entries: Sequence[Entry],
    limit: int,
    incoming: int,
    *,
    owner: str = "",
    share: int | None = None,
    staged_beyond: int = 0,
    beyond_limit: int = 0,
) -> Reservation:
    """Room for an offer of ``incoming`` bytes charged to ``owner``, at its start (before a byte of it
    arrived, so before anything is known about them). ``entries`` include the offers being received
    (busy, at their full size); ``staged_beyond``: how many of their bytes are staged beyond ``limit``.

    1. The share as in :func:`make_room` (``owner``'s own idle entries go, never anyone else's).
    2. The limit: free space, then ``owner``'s own idle entries, least recently used first. What still
       does not fit (``beyond``) is received beyond the limit and made room for at commit, from other
       namespaces' idle entries (:func:`make_room`), once the bytes hashed to the digest offered. It is
       taken only if those idle entries could make that room now and if all staged beyond the limit
       stays within ``beyond_limit`` (the disk holds at most ``limit + beyond_limit``); otherwise
       nothing is evicted (``FULL``).

    No entry of another namespace is ever evicted here."""
    if incoming > limit or (share is not None and incoming > share):
        return Reservation((), 0, False, OVER_SHARE if share is not None and incoming > share else FULL)
    mine = sorted((e for e in entries if owner and e.owner == owner), key=lambda e: (e.last_used, e.key))
    victims: list[Entry] = []
    if share is not None and owner:
        held = sum(e.size for e in mine)
        for e in (e for e in mine if not e.busy):
            if held + incoming <= share:
                break
            victims.append(e)
            held -= e.size
        if held + incoming > share:
            return Reservation((), 0, False, OVER_SHARE)
    used = sum(e.size for e in entries) - staged_beyond - sum(e.size for e in victims)
    for e in mine:
        if used + incoming <= limit:
            break
        if not e.busy and e not in victims:
            victims.append(e)
            used -= e.size
    beyond = max(0, used + incoming - limit)
    if beyond:
        idle_others = sum(e.size for e in entries if not e.busy and not (owner and e.owner == owner))
        if beyond > idle_others or staged_beyond + beyond > beyond_limit:
            return Reservation((), 0, False, FULL)
    return Reservation(tuple(e.key for e in victims), beyond, True)
