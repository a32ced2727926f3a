"""Regional waves as Git changes (issue 30): the pure decisions of ``kubectl models wave``.

- :func:`position`: where a wave stands, from what each region's overlay (in Git) declares: the first
  region's overlay is the target (a person promoted it, by a pull request); the next region is the
  first one after it whose overlay does not declare the target yet.
- :func:`gate`: may the next region be promoted? From the previous region's live state as read
  (:class:`Observed`), fail closed: unreachable is ``unknown`` (no promotion), a failed, aborted or
  rolling-back rollout is ``refuse``, anything not there yet (GitOps has not applied the overlay, the
  rollout runs, the soak is not over, not Ready) is ``wait``; only ``pass`` promotes.
- :func:`promote_overlay`: the next region's overlay text with the target's versions and weights,
  changing only those values (comments and layout kept), checked by reading it back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

_SOAK = re.compile(r"^((\d+)(d|h|m|s))+$")
_SOAK_PART = re.compile(r"(\d+)(d|h|m|s)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_soak(text: str) -> float:
    """'30s', '15m', '24h', '2d', '1h30m' -> seconds; ValueError otherwise."""
    s = str(text).strip()
    if not _SOAK.match(s):
        raise ValueError(
            f"soak {text!r} is not a duration: give whole numbers with d, h, m or s (24h, 1h30m, 90s)"
        )
    return float(sum(int(n) * _UNIT[u] for n, u in _SOAK_PART.findall(s)))


# ---------------------------------------------------------------------------- what Git declares


@dataclass(frozen=True)
class Declared:
    """spec.variants as an overlay (or a live spec) declares them: (name, version, weight), by name."""

    variants: tuple[tuple[str, str, int], ...]

    @property
    def version(self) -> str:
        """The version the declared split puts most traffic on (the wave's version)."""
        by_version: dict[str, int] = {}
        for _, version, weight in self.variants:
            by_version[version] = by_version.get(version, 0) + weight
        return max(by_version.items(), key=lambda kv: (kv[1], kv[0]))[0] if by_version else ""

    def text(self) -> str:
        return ", ".join(f"{n}={v}@{w}%" for n, v, w in self.variants)


def declared_of(variants: Any, where: str) -> Declared:
    """A Declared from a spec.variants list; ValueError naming ``where`` when it is none."""
    if not isinstance(variants, list) or not variants:
        raise ValueError(f"{where}: spec.variants is missing or empty")
    out = []
    for i, v in enumerate(variants):
        if not isinstance(v, Mapping) or not v.get("name") or not v.get("version"):
            raise ValueError(f"{where}: spec.variants[{i}] needs a name and a version")
        out.append((str(v["name"]), str(v["version"]), int(v.get("weight", 0))))
    return Declared(tuple(sorted(out)))


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases: a plan and its overlays are a shared repository's files, and a few nested
    aliases (a "billion laughs") expand exponentially when a value is turned into text."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not accepted here",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        return super().compose_node(parent, index)


def load_documents(text: str) -> list[Any]:
    """The YAML documents of a wave plan or overlay (yaml.YAMLError on an alias, like any bad YAML)."""
    return list(yaml.load_all(text, Loader=_NoAliases))  # noqa: S506 - a SafeLoader


def load_document(text: str) -> Any:
    """The one YAML document of a wave plan or Fleet file, without aliases (yaml.safe_load otherwise)."""
    return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader


def overlay_doc(text: str, where: str) -> tuple[int, dict[str, Any]]:
    """(index, document) of the one YAML document of an overlay file with spec.variants."""
    try:
        docs = load_documents(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {e}") from None
    found = [
        (i, d)
        for i, d in enumerate(docs)
        if isinstance(d, dict) and isinstance((d.get("spec") or {}).get("variants"), list)
    ]
    if len(found) != 1:
        raise ValueError(
            f"{where}: needs exactly one document with spec.variants (a ModelEndpoint or a patch of one), "
            f"found {len(found)}"
        )
    return found[0]


def declared_in(text: str, where: str) -> Declared:
    return declared_of(overlay_doc(text, where)[1]["spec"]["variants"], where)


@dataclass(frozen=True)
class Position:
    """Where a wave stands. ``next``/``previous``: indexes into the plan's regions (None when the wave
    is complete, or refused: ``problem`` says why)."""

    target: Declared
    promoted: tuple[str, ...]  # regions whose overlay declares the target, in order
    next: int | None
    previous: int | None
    problem: str = ""


def position(names: Sequence[str], declared: Sequence[Declared]) -> Position:
    """The wave's position from each region's overlay, in plan order (declared[0]: the target)."""
    target = declared[0]
    has = [d == target for d in declared]
    promoted = tuple(n for n, h in zip(names, has, strict=True) if h)
    nxt = next((i for i, h in enumerate(has) if not h), None)
    if nxt is None:
        return Position(target, promoted, None, None)
    ahead = [names[i] for i in range(nxt + 1, len(names)) if has[i]]
    if ahead:
        return Position(
            target, promoted, None, None,
            f"region {', '.join(ahead)} already declares {target.text()} while {names[nxt]} (earlier in the "
            "plan) does not: another wave or a person changed the overlays out of order; refusing to go on",
        )  # fmt: skip
    return Position(target, promoted, nxt, nxt - 1)


# ------------------------------------------------------------------------- what a region serves


@dataclass(frozen=True)
class Observed:
    """One region's endpoint as read live (kubectl models which --contexts reads the same)."""

    region: str
    reachable: bool
    error: str = ""  # why it could not be read (unreachable, forbidden, no answer in time)
    found: bool = True  # the endpoint exists there
    status_region: str | None = None  # status.region (the operator's region setting)
    spec: Declared | None = None  # the live spec.variants
    generation: int = 0
    observed_generation: int = 0
    serving: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # variant -> (version, weight)
    ready: bool | None = None
    has_strategy: bool = False
    rollout_phase: str | None = None  # status.rollout.phase
    history: tuple[tuple[float, Mapping[str, int]], ...] = ()  # (start, version -> weight), oldest first
    stage: str | None = None  # status.stage of the ModelVersion of the wave's version there

    def weight_of(self, version: str) -> int:
        return sum(w for v, w in self.serving.values() if v == version)


Verdict = Literal["pass", "wait", "refuse", "unknown"]


@dataclass(frozen=True)
class GateParams:
    soak_seconds: float = 0.0
    min_weight: int = 100
    rollout_succeeded: bool = True
    ready: bool = True
    stage: str | None = None


@dataclass(frozen=True)
class Gate:
    verdict: Verdict
    reasons: tuple[str, ...]
    since: float | None = None  # since when the region serves the version at the weight (epoch s)


def served_since(
    history: Sequence[tuple[float, Mapping[str, int]]], version: str, weight: int
) -> float | None:
    """The start of the latest unbroken run of recorded splits giving ``version`` at least ``weight``
    up to now (None: the latest split does not; a compacted range is never counted: the soak counts
    from exactly recorded changes only)."""
    since = None
    for start, split in reversed(history):
        if split.get(version, 0) < weight:
            break
        since = start
    return since


def gate(prev: Observed, target: Declared, p: GateParams, now: float) -> Gate:
    """May the region after ``prev`` be promoted to ``target``? Fail closed: every doubt is not pass."""
    r = prev.region
    if not prev.reachable:
        return Gate(
            "unknown",
            (f"region {r} is unreachable ({prev.error}): its state is unknown, so nothing is promoted",),
        )
    if not prev.found:
        return Gate("wait", (f"region {r} has no such endpoint (yet)",))
    if prev.status_region and prev.status_region != r:
        return Gate("refuse", (
            f"the context of region {r} reaches the operator of region {prev.status_region} (status.region): "
            "fix the plan's context",
        ))  # fmt: skip
    if prev.rollout_phase in ("Failed", "Aborted"):
        return Gate("refuse", (
            f"region {r} rolled back: its rollout is {prev.rollout_phase}; the wave stops here "
            "(fix or retry there first)",
        ))  # fmt: skip
    version = target.version
    waits: list[str] = []
    if prev.spec != target:
        live = prev.spec.text() if prev.spec else "nothing"
        waits.append(
            f"region {r} declares {live}, not yet {target.text()} (GitOps has not applied its overlay)"
        )
    elif prev.observed_generation < prev.generation:
        waits.append(f"region {r}'s operator has not seen generation {prev.generation} yet")
    if prev.has_strategy and p.rollout_succeeded and prev.rollout_phase != "Succeeded":
        waits.append(f"region {r}'s rollout is {prev.rollout_phase or 'not started'}, not Succeeded")
    if p.ready and prev.ready is not True:
        waits.append(f"region {r}'s endpoint is not Ready")
    weight = prev.weight_of(version)
    if weight < p.min_weight:
        waits.append(f"region {r} serves {version} at {weight}%, the gate needs {p.min_weight}%")
    if p.stage and prev.stage != p.stage:
        waits.append(f"{version} is {prev.stage or 'unknown'} in region {r}, the gate needs {p.stage}")
    since = served_since(prev.history, version, p.min_weight) if weight >= p.min_weight else None
    if weight >= p.min_weight:
        if since is None:
            waits.append(f"region {r}'s route history does not record since when it serves {version}")
        elif now - since < p.soak_seconds:
            left = p.soak_seconds - (now - since)
            waits.append(
                f"region {r} has served {version} for {now - since:.0f}s of the {p.soak_seconds:.0f}s "
                f"soak ({left:.0f}s left)"
            )
    if waits:
        return Gate("wait", tuple(waits), since)
    soaked = f" for {now - since:.0f}s" if since is not None else ""
    ready = ", Ready" if prev.ready else ""
    why = f"region {r} serves {version} at {weight}%{soaked}{ready}, rollout {prev.rollout_phase or 'none'}"
    return Gate("pass", (why,), since)


# ---------------------------------------------------------------------------- the Git change

_ITEM = re.compile(r"^(\s*)-\s")


def promote_overlay(text: str, target: Declared, where: str) -> str:
    """``text`` (an overlay) with its spec.variants' versions and weights set to ``target``'s: only those
    values change when the variants are the same names (flow or block style); otherwise the document is
    written again (comments of that document are lost). ValueError when the result would not declare
    the target, or the overlay is not one."""
    index, doc = overlay_doc(text, where)
    declared_of(doc["spec"]["variants"], where)  # a broken overlay is refused, never rewritten
    names = {str(v.get("name")) for v in doc["spec"]["variants"] if isinstance(v, Mapping)}
    if names == {n for n, _, _ in target.variants} and len(load_documents(text)) == 1:
        edited = _edit_values(text, target)
        if edited is not None and _same_but_variants(text, edited, target, where):
            return edited
    docs = load_documents(text)
    by_name = {n: (v, w) for n, v, w in target.variants}
    kept = [v for v in doc["spec"]["variants"] if isinstance(v, dict) and str(v.get("name")) in by_name]
    have = {str(v.get("name")) for v in kept}
    for v in kept:
        v["version"], v["weight"] = by_name[str(v["name"])]
    kept += [{"name": n, "version": ver, "weight": w} for n, (ver, w) in by_name.items() if n not in have]
    doc["spec"]["variants"] = kept
    docs[index] = doc
    out = yaml.safe_dump_all(docs, sort_keys=False)
    if declared_in(out, where) != target:  # pragma: no cover - a bug, never a half-written overlay
        raise ValueError(f"{where}: the promoted overlay would not declare {target.text()}")
    return out


def _edit_values(text: str, target: Declared) -> str | None:
    lines = text.splitlines(keepends=True)
    by_name = {n: (v, w) for n, v, w in target.variants}
    starts = [i for i, ln in enumerate(lines) if _ITEM.match(ln)]
    done: set[str] = set()
    for si, start in enumerate(starts):
        indent = len(_ITEM.match(lines[start]).group(1))  # type: ignore[union-attr]
        end = next(
            (j for j in range(start + 1, len(lines))
             if lines[j].strip() and (len(lines[j]) - len(lines[j].lstrip())) <= indent),
            len(lines),
        )  # fmt: skip
        chunk = "".join(lines[start:end])
        m = re.search(r"\bname:\s*[\"']?([A-Za-z0-9_.-]+)[\"']?", chunk)
        if m is None or m.group(1) not in by_name or m.group(1) in done:
            continue
        version, weight = by_name[m.group(1)]
        new, nv = re.subn(
            r"(\bversion:\s*)([\"']?)[A-Za-z0-9.+_-]+\2", rf"\g<1>\g<2>{version}\g<2>", chunk, count=1
        )
        new, nw = re.subn(r"(\bweight:\s*)\d+", rf"\g<1>{weight}", new, count=1)
        if nv != 1:
            return None
        if nw != 1 and weight != 0:
            return None  # no weight written (0 by default) and one is needed: rewrite the document
        lines[start:end] = [new]
        # the span was replaced by one string: later starts are still valid, the list length changed
        shift = (end - start) - 1
        starts[si + 1 :] = [s - shift for s in starts[si + 1 :]]
        done.add(m.group(1))
    return "".join(lines) if done == set(by_name) else None


def _same_but_variants(before: str, after: str, target: Declared, where: str) -> bool:
    try:
        a, b = load_document(before), load_document(after)
        if declared_in(after, where) != target:
            return False
    except (ValueError, yaml.YAMLError):
        return False

    def rest(doc: Any) -> Any:
        variants = doc["spec"].pop("variants")
        return doc, sorted(
            sorted((k, str(x)) for k, x in v.items() if k not in ("version", "weight")) for v in variants
        )

    return bool(rest(a) == rest(b))
