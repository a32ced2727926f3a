"""What retention may delete: only what a version provably owns (pure; issue 23, item 3).

A due deletion that every other rule allows (``model_plan.unsafe``, the mode) is still refused unless

1. its URI lies strictly under a storage root the namespace's ModelPlatformPolicies name
   (``Floors.storage_root_of``; no policy, no root: nothing is deleted in the namespace);
2. the version was verified: ``status.artifact.digest`` (written by the operator only) is the
   version's ``spec.artifact.sha256`` and ``ArtifactVerified`` is True; and
3. no other ModelVersion of ANY namespace whose artifact is not recorded deleted has a URI that
   equals, contains or lies inside this one, compared in one spelling per object
   (``overlap_key``: scheme aliases folded, ``file://localhost/`` as ``file:///``, percent-escapes
   decoded, the trailing ``/`` ignored).

What passes is then re-checked where the bytes are (``artifacts.delete.delete_verified``, in the
bounded verifier worker): the objects still hash to the verified digest, and exactly those objects
are deleted. The handler computes ``overlaps`` over the whole watch cache; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from modelversioning.domain.platform_policy import Floors, canonical_uri

SHOWN_OVERLAPS = 3  # named in a refusal; the rest are counted


@dataclass(frozen=True)
class Verified:
    """What a ModelVersion's status records of its verified artifact."""

    digest: str  # status.artifact.digest
    condition_true: bool  # ArtifactVerified is True (Verified)
    size_bytes: int | None = None
    files: int | None = None


@dataclass(frozen=True)
class Owned:
    """A deletion retention may hand to the worker: the root it lies under, what it must hash to."""

    root: str
    sha256: str
    size_bytes: int | None
    files: int | None


def overlap_key(uri: str) -> str | None:
    """One spelling for comparing URIs (None: it cannot be read as a URI at all)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    if scheme.lower() == "file" and rest.lower().startswith("localhost/"):
        rest = rest[len("localhost") :]
    folded = canonical_uri(f"{scheme}://{unquote(rest)}")
    return folded.rstrip("/") if folded is not None else None


def overlaps(a: str, b: str) -> bool:
    """Do the URI keys ``a`` and ``b`` name the same object, or does one contain the other?"""
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def overlapping(uri: str, others: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The labels of ``others`` ((label, uri) pairs) whose URI overlaps ``uri``; a URI that cannot be
    read in one spelling overlaps everything (it cannot be shown not to)."""
    mine = overlap_key(uri)
    out = []
    for label, other in others:
        theirs = overlap_key(other)
        if mine is None or theirs is None or overlaps(mine, theirs):
            out.append(label)
    return tuple(sorted(out))


def ownership(
    uri: str, sha256: str, verified: Verified | None, floors: Floors, others: tuple[str, ...], namespace: str
) -> Owned | str:
    """What the version provably owns (``Owned``), or why retention may not delete it (str)."""
    if canonical_uri(uri) is None or overlap_key(uri) is None:
        return f"the URI {uri!r} has no single spelling ('.', '..', empty segments or escaped '/')"
    root = floors.storage_root_of(uri)
    if root is None and not floors.storage_roots:
        return (
            f"no ModelPlatformPolicy names a retention.storageRoots for namespace {namespace}: "
            "retention deletes nothing there"
        )
    if root is None:
        roots = ", ".join(sorted({r for rs in floors.storage_roots for r in rs}))
        return f"the URI is not strictly under a storage root of namespace {namespace} ({roots})"
    if verified is None or not verified.digest:
        return "never verified: status.artifact records no verified digest"
    if verified.digest != sha256 or not verified.condition_true:
        return (
            f"not verified as sha256 {sha256[:12]}: status.artifact.digest is {verified.digest[:12]}, "
            f"ArtifactVerified is {'True' if verified.condition_true else 'not True'}"
        )
    if others:
        named = ", ".join(others[:SHOWN_OVERLAPS])
        more = f" and {len(others) - SHOWN_OVERLAPS} more" if len(others) > SHOWN_OVERLAPS else ""
        return f"its URI equals, contains or lies inside the artifact URI of {named}{more}"
    return Owned(root, sha256, verified.size_bytes, verified.files)
