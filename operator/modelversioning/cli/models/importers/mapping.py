"""Pure mapping rules of ``kubectl models import``: which semantic version an MLflow version
becomes, which stage it requests, and what a missing piece of lineage is called.

Semantic version (first rule that applies):

1. ``--version-map N=X.Y.Z``: MLflow version N becomes X.Y.Z (explicit, wins over everything).
2. ``--version-from tag:KEY``: the value of the tag KEY on the MLflow model version, else on its
   run (a leading ``v`` is dropped: ``v2.4.1`` -> ``2.4.1``). A version without that tag is an
   error naming the version and the tag.
3. ``--version-from mlflow`` (default): MLflow version N becomes ``MAJOR.N.0`` with MAJOR from
   ``--major`` (default 1). MLflow versions of one registered model are retrains behind the same
   interface, which is what MINOR means here (MAJOR = breaking input/output change); keeping one
   MAJOR lets an endpoint canary between them (mixing MAJORs in one endpoint is refused unless
   allowed). A breaking version is given its own MAJOR with ``--version-map``.

Stage: ``--stage-from-alias ALIAS=STAGE`` (repeatable): a version holding ALIAS requests STAGE;
the first mapping (in the order given) that matches wins; other versions request ``--stage``
(default candidate).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.register_plan import STAGES
from modelversioning.domain.semver import InvalidVersion, SemVer

EXIT_USAGE = 2


@dataclass(frozen=True)
class VersionRule:
    """How MLflow's integer versions become semantic versions (see the module docstring)."""

    source: str = "mlflow"  # "mlflow" or "tag"
    tag: str | None = None
    major: int = 1
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, version_from: str, major: int, version_map: Sequence[str]) -> VersionRule:
        """From the options; Refused (exit 2) on bad syntax or a map target that is not SemVer."""
        overrides: dict[str, str] = {}
        for item in version_map:
            n, eq, target = item.partition("=")
            n, target = n.strip(), target.strip().removeprefix("v")
            if not eq or not re.fullmatch(r"\d+", n) or not target:
                raise Refused(
                    f"--version-map {item!r}: expected MLFLOW_VERSION=X.Y.Z, e.g. 3=2.0.0", EXIT_USAGE
                )
            _semver_or_refuse(target, f"--version-map {item!r}")
            overrides[str(int(n))] = target
        if major < 0:
            raise Refused(f"--major {major}: must be 0 or more", EXIT_USAGE)
        if version_from == "mlflow":
            return cls("mlflow", None, major, overrides)
        kind, colon, key = version_from.partition(":")
        if kind == "tag" and colon and key.strip():
            return cls("tag", key.strip(), major, overrides)
        raise Refused(
            f"--version-from {version_from!r}: expected 'mlflow' (version N -> {major}.N.0) or 'tag:KEY' "
            "(the semantic version is the value of a model version or run tag)",
            EXIT_USAGE,
        )

    def describe(self) -> str:
        if self.source == "tag":
            return f"the semantic version is tag {self.tag!r} of the MLflow model version (else of its run)"
        return f"MLflow version N -> {self.major}.N.0"

    def map(
        self, mlflow_version: str, version_tags: Mapping[str, str], run_tags: Mapping[str, str]
    ) -> tuple[str | None, str]:
        """(semantic version or None, how it was chosen / why it could not be)."""
        n = str(int(mlflow_version)) if mlflow_version.isdigit() else mlflow_version
        if n in self.overrides:
            return self.overrides[n], f"--version-map {n}={self.overrides[n]}"
        if self.source == "tag":
            assert self.tag is not None
            for where, tags in (("model version tag", version_tags), ("run tag", run_tags)):
                if tags.get(self.tag):
                    value = tags[self.tag].strip().removeprefix("v")
                    try:
                        SemVer.parse(value)
                    except InvalidVersion as e:
                        return None, f"{where} {self.tag}={tags[self.tag]!r} is not a semantic version ({e})"
                    return value, f"{where} {self.tag}={tags[self.tag]}"
            return None, (
                f"no tag {self.tag!r} on MLflow version {n} or its run (set it in MLflow with "
                f"MlflowClient().set_model_version_tag(name, '{n}', '{self.tag}', 'X.Y.Z'), or pass "
                f"--version-map {n}=X.Y.Z)"
            )
        return f"{self.major}.{n}.0", f"MLflow version {n} -> {self.major}.{n}.0 (--version-from mlflow)"


def _semver_or_refuse(value: str, what: str) -> None:
    try:
        SemVer.parse(value)
    except InvalidVersion as e:
        raise Refused(f"{what}: {e}", EXIT_USAGE) from None


def parse_alias_stages(items: Iterable[str]) -> list[tuple[str, str]]:
    """``ALIAS=STAGE`` pairs, in the order given; Refused (exit 2) on bad syntax or stage."""
    out: list[tuple[str, str]] = []
    for item in items:
        alias, eq, stage = item.partition("=")
        alias, stage = alias.strip(), stage.strip().lower()
        if not eq or not alias:
            raise Refused(f"--stage-from-alias {item!r}: expected ALIAS=STAGE, e.g. champion=production", 2)
        if stage not in STAGES:
            raise Refused(f"--stage-from-alias {item!r}: stage must be one of {', '.join(STAGES)}", 2)
        out.append((alias, stage))
    return out


def stage_for(
    aliases: Iterable[str], alias_stages: Sequence[tuple[str, str]], default: str
) -> tuple[str, str]:
    """(stage, why) for a version holding ``aliases``."""
    held = set(aliases)
    for alias, stage in alias_stages:
        if alias in held:
            return stage, f"alias {alias} -> {stage}"
    return default, f"no mapped alias -> {default}"


def model_name(mlflow_name: str) -> str:
    """A DNS label from an MLflow registered model name ('Fraud Detector_v2' -> 'fraud-detector-v2')."""
    name = re.sub(r"[^a-z0-9]+", "-", mlflow_name.lower()).strip("-")
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class Missing:
    """One missing piece of lineage: the ModelVersion field and where it would come from."""

    field: str
    source: str

    def __str__(self) -> str:
        return f"{self.field} ({self.source})"


def missing_message(label: str, missing: Sequence[Missing]) -> str:
    lines = [f"{label}: incomplete lineage, nothing imported; missing:"]
    lines += [f"  - {m}" for m in missing]
    return "\n".join(lines)
