"""Traffic-split rules: validation of declared weights and the effective split.

A variant's declared weight takes effect only once the variant is eligible
(artifact verified, stage reached, Deployment available). Until then its share
stays with the eligible variants; with none eligible, the last effective split
is kept rather than dropping traffic. When the eligible ones were all declared at 0 and carry nothing
(a withdrawn or quarantined version had it all), the newest eligible version takes it all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelversioning.api import wire as R
from modelversioning.domain.semver import SemVer

TOTAL = 100


@dataclass(frozen=True)
class VariantInput:
    name: str
    version: str
    desired: int
    eligible: bool


@dataclass(frozen=True)
class Split:
    weights: dict[str, int]  # variant name -> effective weight; sums to 100 unless empty
    held: bool  # True when nothing is eligible and the previous split was kept
    reason: str
    message: str


def validate_declared(
    variants: Sequence[tuple[str, str, int]], mirror: str | None, allow_major_mix: bool
) -> list[tuple[str, str]]:
    """Problems with a declared split, as (reason, message): (name, version, weight) per variant.
    Empty list when valid.

    The API server enforces most of these through CEL; the operator checks them
    again so that objects admitted before a rule existed get a clear condition.
    """
    problems: list[tuple[str, str]] = []
    names = [n for n, _, _ in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append((R.INVALID_SPLIT, f"variant names must be unique: {', '.join(dupes)}"))
    if mirror is not None and mirror not in names:
        problems.append((R.INVALID_SPLIT, f"mirror refers to unknown variant {mirror!r}"))
    live = [(n, v, w) for n, v, w in variants if n != mirror]
    total = sum(w for _, _, w in live)
    if live and total != TOTAL:
        problems.append((R.INVALID_SPLIT, f"weights of the live variants add up to {total}, not {TOTAL}"))
    if not allow_major_mix:
        majors: dict[int, list[str]] = {}
        for n, v, w in live:
            if w > 0:
                try:
                    majors.setdefault(SemVer.parse(v).major, []).append(f"{n}={v}")
                except ValueError:
                    continue
        if len(majors) > 1:
            parts = "; ".join(f"v{m}: {', '.join(vs)}" for m, vs in sorted(majors.items()))
            problems.append(
                (
                    R.MAJOR_VERSION_MIX,
                    "traffic is split across incompatible MAJOR versions "
                    f"({parts}); set allowMajorVersionMix: true to allow it",
                )
            )
    return problems


def apportion(
    base: Mapping[str, int | float], order: Sequence[str], total_out: int = TOTAL
) -> dict[str, int]:
    """Scale non-negative shares to integers summing to total_out (largest remainder, stable order)."""
    total = sum(base.values())
    if total <= 0:
        return {}
    exact = {n: base[n] * total_out / total for n in order if n in base}
    floors = {n: int(x) for n, x in exact.items()}
    rest = total_out - sum(floors.values())
    by_remainder = sorted(exact, key=lambda n: (-(exact[n] - floors[n]), order.index(n)))
    for n in by_remainder[:rest]:
        floors[n] += 1
    return floors


def newest(variants: Sequence[VariantInput]) -> VariantInput:
    """The variant of the highest version (SemVer; one that does not parse counts lowest), the first
    of equals in spec order."""
    best, best_v = variants[0], _semver(variants[0].version)
    for v in variants[1:]:
        sv = _semver(v.version)
        if sv is not None and (best_v is None or sv > best_v):
            best, best_v = v, sv
    return best


def _semver(text: str) -> SemVer | None:
    try:
        return SemVer.parse(text)
    except ValueError:
        return None


def effective_split(variants: Sequence[VariantInput], previous: Mapping[str, int] | None) -> Split:
    order = [v.name for v in variants]
    eligible = [v for v in variants if v.eligible]
    prev = {k: int(w) for k, w in (previous or {}).items() if w > 0}
    if not eligible:
        if prev:
            return Split(
                dict(prev),
                True,
                R.NO_ELIGIBLE_VARIANT,
                "no variant is ready to take traffic; keeping the last effective weights",
            )
        return Split({}, True, R.NO_ELIGIBLE_VARIANT, "no variant is ready to take traffic yet")
    base: dict[str, int | float] = {v.name: v.desired for v in eligible if v.desired > 0}
    reason, message = R.AS_DECLARED, "effective weights match the declared weights"
    if not base:
        # Every eligible variant was declared at 0 (e.g. blue/green switch to a
        # variant that is not ready): traffic stays where it was among them.
        base = {v.name: prev[v.name] for v in eligible if prev.get(v.name, 0) > 0}
        reason = R.HELD_ON_READY_VARIANTS
        message = "declared variants are not ready; traffic stays with the ready variants"
        if not base:  # nothing carried either (e.g. a withdrawn version had it all): the newest takes it
            base = {newest(eligible).name: 1}
    weights = apportion(base, order)
    full = {v.name: weights.get(v.name, 0) for v in variants}
    if reason == R.AS_DECLARED and any(full[v.name] != v.desired for v in variants):
        waiting = [v.name for v in variants if not v.eligible and v.desired > 0]
        reason = R.WAITING_FOR_VARIANTS
        message = (
            "traffic of " + ", ".join(waiting) + " stays with the ready variants until they are eligible"
        )
    return Split(full, False, reason, message)
