"""Lineage quarantine, decided purely: which versions a selector affects, what a quarantine does to a
version's authority, and the blast radius a dry run shows (docs/design.md, "Lineage quarantine").

A quarantine is a mark on each affected ModelVersion (the annotation ``modelversioning.io/quarantined``:
a JSON list of the selectors in force), written by ``kubectl models quarantine`` with the caller's own
credentials. It is a withdrawal (``domain.revocation``): the version loses its traffic at once, whatever
object has its name (fails closed), and a route with nothing else eligible closes with
``x-model-unavailable: quarantined``. Unlike a revocation it writes no spec (no ``spec.stage``), so a
GitOps self-heal cannot undo it, and it is reversible: lifting the last selector makes the version
eligible again. While it holds, the stage walk refuses every hop that is not a loss of authority
(``promotion_guard``), whoever asks for it (a person, GitOps, a rollout's grant).

Selectors: ``dataset=NAME@VERSION`` (spec.lineage.dataset; the value may also be 8+ hex digits of
its sha256, ``sha256:`` optional, as ``kubectl models search --dataset``), ``commit=SHA``
(spec.lineage.codeCommit; 7 to 64 hex, either side may be abbreviated: a prefix of the other matches,
which can only quarantine more, never less) and ``version=MODEL@VERSION``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.stages import Decision, Stage
from modelversioning.domain.traffic import VariantInput, effective_split

KINDS = ("dataset", "commit", "version")
_HEX = re.compile(r"^[0-9a-f]{7,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{8,64}$")
MAX_SELECTORS = 16  # selectors in force on one version (the annotation stays small)
MAX_SELECTOR = 400  # characters of one selector (a dataset name is at most 253, its version 128)


@dataclass(frozen=True, order=True)
class Selector:
    kind: str  # dataset | commit | version
    name: str  # the dataset's or the model's name ("" for a commit)
    value: str  # the dataset version (or sha256:HEX), the commit, the model version

    def text(self) -> str:
        if self.kind == "commit":
            return f"commit={self.value}"
        return f"{self.kind}={self.name}@{self.value}"


def parse(kind: str, raw: str) -> Selector:
    """A selector from a command line option (``kind``: dataset | commit | version) or ValueError
    saying what is wrong and what a good one looks like."""
    text = (raw or "").strip()
    if kind not in KINDS:
        raise ValueError(f"unknown selector kind {kind!r}: one of {', '.join(KINDS)}")
    if not text or len(text) > MAX_SELECTOR:
        raise ValueError(f"--{kind} needs a value of 1 to {MAX_SELECTOR} characters")
    if kind == "commit":
        sha = text.lower()
        if not _HEX.match(sha):
            raise ValueError(f"--commit {text!r} is not a git commit (7 to 64 hex characters)")
        return Selector("commit", "", sha)
    name, at, value = text.rpartition("@")
    if not at or not name or not value:
        example = "fraud-transactions@2026-10-01" if kind == "dataset" else "fraud-detector@2.4.1"
        raise ValueError(f"--{kind} {text!r} must be NAME@VERSION, e.g. {example}")
    if kind == "dataset" and value.startswith("sha256:"):
        if not _DIGEST.match(value[7:].lower()):
            raise ValueError(f"--dataset {text!r}: sha256: must be followed by 8 to 64 hex characters")
        value = value.lower()
    return Selector(kind, name, value)


def parse_text(text: str) -> Selector:
    """A selector as recorded (``Selector.text``)."""
    kind, eq, rest = text.partition("=")
    if not eq:
        raise ValueError(f"{text!r} is not KIND=VALUE")
    return parse(kind, rest)


def in_force(annotation: str | None) -> tuple[str, ...]:
    """The selectors an annotation value holds (a JSON list of strings), as recorded. Anything else
    that is not empty (hand-written, a bare reason) still quarantines: fails closed, as itself."""
    if annotation is None or not annotation.strip():
        return ()
    try:
        loaded = json.loads(annotation)
    except ValueError:
        return (annotation.strip()[:MAX_SELECTOR],)
    if isinstance(loaded, list) and all(isinstance(s, str) for s in loaded):
        return tuple(dict.fromkeys(s for s in loaded if s.strip()))
    return (annotation.strip()[:MAX_SELECTOR],)


def quarantined(annotation: str | None) -> str | None:
    """The quarantine as VersionFacts carry it: the selectors in force, joined, or None (not under one).
    A present annotation that holds no selector (``[]``) is no quarantine."""
    selectors = in_force(annotation)
    return ", ".join(selectors) if selectors else None


def encode(selectors: Iterable[str]) -> str | None:
    """The annotation value for ``selectors`` (None: remove the annotation)."""
    kept = sorted(dict.fromkeys(selectors))
    return json.dumps(kept, separators=(",", ":")) if kept else None


# ------------------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Built:
    """What a version was built from (its spec), as the selectors see it."""

    model: str
    version: str
    dataset: str = ""
    dataset_version: str | None = None
    dataset_sha256: str | None = None
    commit: str = ""


def matches(sel: Selector, b: Built) -> bool:
    if sel.kind == "version":
        return (b.model, b.version) == (sel.name, sel.value)
    if sel.kind == "commit":
        have = b.commit.lower()
        return bool(have) and (have.startswith(sel.value) or sel.value.startswith(have))
    if b.dataset != sel.name:
        return False
    if b.dataset_version == sel.value:
        return True
    digest = sel.value.removeprefix("sha256:").lower()  # as `search --dataset`: 8+ hex of its sha256
    sha = (b.dataset_sha256 or "").lower()
    return bool(sha) and _DIGEST.match(digest) is not None and sha.startswith(digest)


# ----------------------------------------------------------------------------- the stage walk


def promotion_guard(src: str, dst: str, quarantine: str | None, order: Sequence[str]) -> Decision | None:
    """A hop of a quarantined version: only a loss of authority passes (to archived, or to a stage
    earlier in the graph's order); any other hop is refused until the quarantine is lifted, whoever
    asks (spec.stage, a rollout's grant)."""
    if quarantine is None or dst == Stage.ARCHIVED:
        return None
    rank = {s: i for i, s in enumerate(order)}
    if src in rank and dst in rank and rank[dst] < rank[src]:
        return None
    return Decision(
        False,
        R.QUARANTINED,
        f"the version is quarantined ({quarantine}): no promotion until the quarantine is lifted "
        "(kubectl models quarantine lift ...)",
    )


# ------------------------------------------------------------------------------- blast radius


@dataclass(frozen=True)
class VersionView:
    namespace: str
    name: str  # the ModelVersion's name
    built: Built
    stage: str | None = None
    selectors: tuple[str, ...] = ()  # quarantine selectors already in force


@dataclass(frozen=True)
class VariantView:
    name: str
    version: str  # spec version (the ModelVersion <model>-v<version>)
    desired: int  # spec weight
    effective: int  # status.effectiveWeights (0: none)
    eligible: bool  # status.variants[].eligible
    mirror: bool = False


@dataclass(frozen=True)
class EndpointView:
    namespace: str
    name: str
    model: str
    variants: tuple[VariantView, ...]
    closed: str = ""  # status.closed.reason


@dataclass(frozen=True)
class Hit:
    """An endpoint that serves (or declares) an affected version: its split before and after."""

    namespace: str
    endpoint: str
    affected: tuple[str, ...]  # variant names whose version is affected
    before: Mapping[str, int]  # effective weights now
    after: Mapping[str, int]  # effective weights once the affected variants are ineligible
    closes: bool  # nothing eligible would remain for the traffic: 503, x-model-unavailable: quarantined
    message: str


@dataclass(frozen=True)
class Radius:
    versions: tuple[VersionView, ...]  # affected, newly or already
    new: tuple[VersionView, ...]  # affected and not yet under this selector
    endpoints: tuple[Hit, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # namespace -> why nothing is done there


def affected(sel: Selector, versions: Iterable[VersionView]) -> tuple[VersionView, ...]:
    return tuple(sorted((v for v in versions if matches(sel, v.built)), key=lambda v: (v.namespace, v.name)))


def endpoint_hit(ep: EndpointView, names: frozenset[str]) -> Hit | None:
    """What quarantining the ModelVersions ``names`` (of ep's namespace) does to ``ep``: None when it
    has no variant of them. The after-split is the operator's rule (``domain.traffic``) over the
    variants eligible now minus the affected ones."""
    hit = tuple(v.name for v in ep.variants if f"{ep.model}-v{v.version}" in names)
    if not hit:
        return None
    before = {v.name: v.effective for v in ep.variants if v.effective > 0}
    live = [v for v in ep.variants if not v.mirror]
    inputs = [VariantInput(v.name, v.version, v.desired, v.eligible and v.name not in hit) for v in live]
    split = effective_split(inputs, before)
    carried = any(before.get(n, 0) > 0 for n in hit)
    closes = split.held and (carried or bool(ep.closed))
    after = {} if closes else {n: w for n, w in split.weights.items() if w > 0}
    if closes:
        message = (
            f"nothing eligible remains: the route closes ({R.UNAVAILABLE_STATUS} with "
            f"{R.HEADER_UNAVAILABLE}: {R.UNAVAILABLE_QUARANTINED})"
        )
    elif not carried:
        message = "declares an affected version that takes no traffic now"
    else:
        message = "traffic moves to " + ", ".join(f"{n} {w}%" for n, w in after.items())
    return Hit(ep.namespace, ep.name, hit, before, after, closes, message)


def blast_radius(
    sel: Selector,
    versions: Iterable[VersionView],
    endpoints: Iterable[EndpointView],
    writable: Mapping[str, str],
) -> Radius:
    """Every version ``sel`` affects, every endpoint serving one (with its split before and after),
    and the namespaces where nothing is done: ``writable`` maps a namespace to "" when the caller may
    change endpoints and versions there, else why not."""
    hit = affected(sel, versions)
    spaces = sorted({v.namespace for v in hit})
    skipped = {ns: why for ns in spaces if (why := writable.get(ns, "not checked"))}
    mine = tuple(v for v in hit if v.namespace not in skipped)
    names: dict[str, frozenset[str]] = {}
    for v in mine:
        names[v.namespace] = names.get(v.namespace, frozenset()) | {v.name}
    hits = tuple(
        h
        for ep in sorted(endpoints, key=lambda e: (e.namespace, e.name))
        if ep.namespace in names and (h := endpoint_hit(ep, names[ep.namespace])) is not None
    )
    new = tuple(v for v in mine if sel.text() not in v.selectors)
    return Radius(mine, new, hits, skipped)


# ------------------------------------------------------------------ the version's record of it


@dataclass(frozen=True)
class Mark:
    """The quarantine annotations of a ModelVersion, as gathered (``by`` already marked unverified
    when the admission policy that makes it an identity is not observed enforced)."""

    selectors: tuple[str, ...] = ()
    reason: str = ""
    by: str = ""

    @property
    def text(self) -> str | None:
        """The selectors in force, joined (None: not quarantined)."""
        return ", ".join(self.selectors) if self.selectors else None


REASON_MAX, ACTOR_MAX = 1024, 512  # the CRD's limits (api.modelversion_status.QuarantineRecord)


def record(
    prev: Mapping[str, Any] | None, mark: Mark, stamp: str
) -> tuple[dict[str, Any] | None, tuple[tuple[str, str, str], ...]]:
    """status.quarantine from the annotations (``mark``) and the status as stored (``prev``), and the
    Events (type, reason, message) the change is worth: a quarantine that starts or changes its
    selectors (Warning Quarantined), the last one lifted (Normal QuarantineLifted). A lift stays
    recorded (state Lifted, who and why) until the next quarantine."""
    was = dict(prev or {})
    reason, by = mark.reason[:REASON_MAX], (mark.by or "unknown")[:ACTOR_MAX]
    if mark.selectors:
        selectors = [s[:MAX_SELECTOR] for s in mark.selectors[:MAX_SELECTORS]]  # the CRD's limits
        if was.get("state") == "Quarantined" and list(was.get("selectors") or []) == selectors:
            return was, ()
        now: dict[str, Any] = {
            "state": "Quarantined",
            "selectors": selectors,
            "reason": reason,
            "by": by,
            "at": stamp,
        }
        message = f"quarantined by {by} ({', '.join(selectors)}): {reason or 'no reason given'}"
        return now, (("Warning", R.QUARANTINED, message),)
    if was.get("state") == "Quarantined":
        lifted: dict[str, Any] = {"state": "Lifted", "selectors": [], "reason": reason, "by": by, "at": stamp}
        message = f"quarantine lifted by {by}: {reason or 'no reason given'}"
        return lifted, (("Normal", R.QUARANTINE_LIFTED, message),)
    return (was or None), ()
