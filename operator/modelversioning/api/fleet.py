"""Regions of a fleet and wave plans (issue 30): small YAML documents kept in Git, read by
``kubectl models which --fleet FILE`` and ``kubectl models wave status|next PLAN``; never CRDs (no
cluster stores them: a wave plan spans clusters, and Git is where the fleet's intent lives).

A **Fleet** names the regions and how to reach each one: a kubeconfig context (the reader's own
kubeconfig, or the ``kubeconfig`` file named). A **WavePlan** is a Fleet in order plus, per region, the
overlay file in the Git repository that pins what that region serves, the soak time, and the gates that
must hold in the previous region before the next one is promoted::

    apiVersion: modelversioning.io/v1alpha1
    kind: WavePlan
    metadata: {name: fraud-detector}
    spec:
      endpoint: fraud-detector          # the ModelEndpoint, same name in every region
      namespace: models
      soak: 24h                         # how long the previous region must have served it
      gates: {minWeight: 100, rolloutSucceeded: true, ready: true, stage: production}
      regions:                          # in wave order; the first is promoted by a person (a PR)
        - {name: us-east, context: us-east, overlay: regions/us-east/endpoint.yaml}
        - {name: eu-west, context: eu-west, overlay: regions/eu-west/endpoint.yaml}
        - {name: ap-south, context: ap-south, overlay: regions/ap-south/endpoint.yaml}

Validation errors name the region and the field (a region with no cluster, duplicate regions or
contexts, an overlay outside the repository, a bad duration).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from modelversioning.api.wire import DNS_LABEL
from modelversioning.domain.waves import parse_soak

API_VERSION = "modelversioning.io/v1alpha1"


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Region(_Doc):
    name: str = Field(max_length=63, pattern=DNS_LABEL, description="The region, e.g. eu-west.")
    context: str | None = Field(
        default=None,
        min_length=1,
        description="The kubeconfig context that reaches the region's cluster (the reader's own).",
    )
    kubeconfig: str | None = Field(
        default=None,
        min_length=1,
        description="A kubeconfig file for this region (default: --kubeconfig, $KUBECONFIG, ~/.kube/config).",
    )

    @model_validator(mode="after")
    def _has_a_cluster(self) -> Region:
        if not self.context:
            raise ValueError(
                f"region {self.name!r} names no cluster: "
                "give the kubeconfig context that reaches it (context:)"
            )
        return self


class WaveRegion(Region):
    overlay: str = Field(
        min_length=1,
        description="The file (relative to the Git repository's root) that pins what this region serves: "
        "a ModelEndpoint manifest or patch with spec.variants, applied by the region's GitOps engine.",
    )

    @field_validator("overlay")
    @classmethod
    def _inside_the_repository(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or "\\" in v:
            raise ValueError(f"overlay {v!r} must be a relative path inside the repository, without '..'")
        return str(p)


def _unique(regions: list[Any]) -> None:
    seen: dict[str, str] = {}
    for r in regions:
        if r.name in seen:
            raise ValueError(f"region {r.name!r} is listed twice")
        seen[r.name] = r.name
    contexts: dict[tuple[str | None, str | None], str] = {}
    for r in regions:
        key = (r.kubeconfig, r.context)
        if key in contexts:
            raise ValueError(
                f"regions {contexts[key]!r} and {r.name!r} name the same cluster (context {r.context!r}): "
                "one cluster per region"
            )
        contexts[key] = r.name


class Fleet(_Doc):
    api_version: Literal["modelversioning.io/v1alpha1"] = "modelversioning.io/v1alpha1"
    kind: Literal["Fleet"] = "Fleet"
    metadata: dict[str, Any] = Field(default_factory=dict)
    regions: list[Region] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Fleet:
        _unique(self.regions)
        return self


class Gates(_Doc):
    """What must hold in the previous region (read live, with the reader's kubeconfig) before the next
    region is promoted. Always, whatever these say: the region answered, its status names the region
    the plan expects (when it names one), the operator has seen the endpoint's current spec, that spec
    declares what the previous region's overlay declares, and no rollout there is failed, aborted or
    rolling back."""

    min_weight: int = Field(
        default=100, ge=1, le=100, description="The share the new version must carry there (percent)."
    )
    rollout_succeeded: bool = Field(
        default=True, description="With a spec.strategy there: its rollout must have Succeeded."
    )
    ready: bool = Field(default=True, description="The endpoint's Ready condition must be True.")
    stage: str | None = Field(
        default=None,
        max_length=63,
        description="The ModelVersion there must be at this stage (e.g. production); unset: not checked.",
    )


class WaveSpec(_Doc):
    endpoint: str = Field(
        max_length=253, pattern=DNS_LABEL, description="The ModelEndpoint, in every region."
    )
    namespace: str | None = Field(
        default=None, max_length=63, pattern=DNS_LABEL, description="Its namespace (default: -n / context)."
    )
    soak: str = Field(
        default="0s",
        description="How long the previous region must have served the new version (at gates.minWeight) "
        "before the next one is promoted: 30s, 15m, 24h, 2d, 1h30m.",
    )
    gates: Gates = Field(default_factory=Gates)
    regions: list[WaveRegion] = Field(min_length=2)

    @field_validator("soak")
    @classmethod
    def _soak(cls, v: str) -> str:
        parse_soak(v)  # ValueError with the accepted forms
        return v

    @model_validator(mode="after")
    def _unique(self) -> WaveSpec:
        _unique(self.regions)
        overlays: dict[str, str] = {}
        for r in self.regions:
            if r.overlay in overlays:
                raise ValueError(
                    f"regions {overlays[r.overlay]!r} and {r.name!r} share the overlay {r.overlay!r}"
                )
            overlays[r.overlay] = r.name
        return self


class WavePlan(_Doc):
    api_version: Literal["modelversioning.io/v1alpha1"] = "modelversioning.io/v1alpha1"
    kind: Literal["WavePlan"] = "WavePlan"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: WaveSpec

    @property
    def soak_seconds(self) -> float:
        return parse_soak(self.spec.soak)


def error_text(source: str, e: ValidationError) -> str:
    """One line per problem, each naming where it is (regions[1].context: ...)."""
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}: {where + ': ' if where else ''}{msg}")
    return "\n".join(lines)


def load_regions(doc: Any, source: str) -> list[Region]:
    """The regions of a Fleet or a WavePlan document (``--fleet`` takes either). ValueError with
    :func:`error_text` when it is neither or does not validate."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: not a YAML mapping (a Fleet or a WavePlan)")
    kind = doc.get("kind")
    try:
        if kind == "WavePlan":
            return list(WavePlan.model_validate(doc).spec.regions)
        if kind == "Fleet":
            return list(Fleet.model_validate(doc).regions)
    except ValidationError as e:
        raise ValueError(error_text(source, e)) from None
    raise ValueError(f"{source}: kind must be Fleet or WavePlan, got {kind!r}")


def load_plan(doc: Any, source: str) -> WavePlan:
    if not isinstance(doc, dict) or doc.get("kind") != "WavePlan":
        raise ValueError(f"{source}: not a WavePlan (kind: WavePlan)")
    try:
        return WavePlan.model_validate(doc)
    except ValidationError as e:
        raise ValueError(error_text(source, e)) from None
