"""Semantic Versioning 2.0 (MAJOR.MINOR.PATCH[-prerelease]); build metadata is refused.

For models: MAJOR = breaking input/output contract, MINOR = retrain, PATCH = config/threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-z-][0-9a-z-]*)"
# The same expression is used by the CRD's CEL rule (RE2 syntax) and by Python.
# "[.]" instead of "\." so the pattern can sit inside a CEL string literal unescaped.
SEMVER_PATTERN = rf"^({_NUM})[.]({_NUM})[.]({_NUM})(?:-({_PRE_ID}(?:[.]{_PRE_ID})*))?$"
_SEMVER_RE = re.compile(SEMVER_PATTERN)


class InvalidVersion(ValueError):
    pass


@total_ordering
@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        m = _SEMVER_RE.match(text)
        if not m:
            if "+" in text:
                raise InvalidVersion(f"{text!r}: build metadata (+...) is not allowed in a model version")
            raise InvalidVersion(
                f"{text!r} is not a semantic version MAJOR.MINOR.PATCH[-prerelease] "
                "(lowercase, no leading zeros), e.g. 2.3.8 or 2.4.0-rc.1"
            )
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A version without prerelease sorts after any prerelease of the same core.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def bump_kind(self, newer: SemVer) -> str:
        """What kind of change leads from self to newer: major, minor, patch, prerelease or none."""
        if newer.major != self.major:
            return "major"
        if newer.minor != self.minor:
            return "minor"
        if newer.patch != self.patch:
            return "patch"
        if newer.prerelease != self.prerelease:
            return "prerelease"
        return "none"


def is_valid(text: str) -> bool:
    return bool(_SEMVER_RE.match(text))
