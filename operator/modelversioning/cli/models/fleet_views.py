"""What serves where (issue 30): pure views of several regions' reads for ``kubectl models which
--contexts/--all-contexts/--fleet`` (now and ``--at``) and ``lineage`` per region, and the live state a
wave gate reads (:func:`observed`). A region that could not be read is ``Unknown``, never healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelversioning.cli.models import views, which_views
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.fleet import Read
from modelversioning.domain.endpoint_history import from_wire
from modelversioning.domain.timestamps import parse_epoch
from modelversioning.domain.waves import Declared, Observed, declared_of

UNKNOWN, NOT_FOUND, KNOWN = "Unknown", "NotFound", "Known"


def _region_head(r: Read[Any]) -> dict[str, Any]:
    return {"region": r.target.region, "context": r.target.context, "seconds": round(r.seconds, 3)}


def _condition(ep: Mapping[str, Any], type_: str) -> str | None:
    c = views.condition(ep, type_)
    return str(c.get("status")) if c else None


def which_region(r: Read[dict[str, Any]], endpoint: str) -> dict[str, Any]:
    """One region's row of ``which --contexts``: version, digest, weight and readiness per variant, the
    endpoint's Ready and rollout phase; Unknown with the error when it could not be read."""
    out = _region_head(r)
    if r.error or r.value is None:
        return out | {"state": UNKNOWN, "error": r.error or "no answer", "variants": []}
    ep = r.value.get("endpoint")
    if ep is None:
        return out | {"state": NOT_FOUND, "error": f"no ModelEndpoint {endpoint} in namespace "
                      f"{r.value.get('namespace')}", "variants": []}  # fmt: skip
    st = views.status_of(ep)
    sv = views.status_view(ep, r.value.get("versions") or [])
    rollout = st.get("rollout") or {}
    return out | {
        "state": KNOWN,
        "statusRegion": st.get("region"),
        "namespace": sv["namespace"],
        "ready": _condition(ep, "Ready"),
        "rollout": rollout.get("phase"),
        "rolloutStep": rollout.get("step"),
        "traffic": st.get("traffic"),
        "variants": [
            {
                k: v.get(k)
                for k in (
                    "name",
                    "version",
                    "digest",
                    "stage",
                    "effectiveWeight",
                    "desiredWeight",
                    "readyReplicas",
                    "replicas",
                    "eligible",
                    "mirror",
                )
            }
            for v in sv["variants"]
        ],  # fmt: skip
    }


def which_fleet(reads: Sequence[Read[dict[str, Any]]], endpoint: str) -> dict[str, Any]:
    regions = [which_region(r, endpoint) for r in reads]
    return {
        "endpoint": endpoint,
        "regions": regions,
        "unknown": [r["region"] for r in regions if r["state"] == UNKNOWN],
        "mismatched": mismatched(regions),
    }


def mismatched(regions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Regions whose operator says it serves another region (status.region): the context reaches the
    wrong cluster, or the operator's setting is wrong."""
    return [
        r["region"]
        for r in regions
        if r.get("statusRegion") and r.get("statusRegion") != r["region"] and r["region"] != r["context"]
    ]


def which_fleet_at(reads: Sequence[Read[dict[str, Any]]], endpoint: str, at: float) -> dict[str, Any]:
    """``which --at`` per region: what served then, from each region's route history; a region whose
    record does not reach back that far says so (its own note), an unreadable one is Unknown."""
    regions: list[dict[str, Any]] = []
    for r in reads:
        out = _region_head(r)
        if r.error or r.value is None:
            regions.append(out | {"state": UNKNOWN, "error": r.error or "no answer"})
            continue
        ep = r.value.get("endpoint")
        if ep is None:
            regions.append(out | {"state": NOT_FOUND, "error": f"no ModelEndpoint {endpoint}"})
            continue
        try:
            view = which_views.which_at_view(ep, at)
        except Refused as e:
            regions.append(out | {"state": "NotRecorded", "error": e.message})
            continue
        regions.append(out | {"state": KNOWN, "statusRegion": views.status_of(ep).get("region")} | view)
    return {
        "endpoint": endpoint,
        "at": regions[0].get("at") if regions and regions[0].get("at") else None,
        "regions": regions,
        "unknown": [x["region"] for x in regions if x["state"] == UNKNOWN],
    }


def lineage_fleet(reads: Sequence[Read[dict[str, Any] | None]], model: str, version: str) -> dict[str, Any]:
    """``lineage --contexts``: per region, the version's stage, who serves it and its serving periods."""
    regions: list[dict[str, Any]] = []
    for r in reads:
        out = _region_head(r)
        if r.error:
            regions.append(out | {"state": UNKNOWN, "error": r.error})
            continue
        if r.value is None:
            regions.append(out | {"state": NOT_FOUND, "error": f"no ModelVersion {model} {version}"})
            continue
        st = views.status_of(r.value)
        regions.append(
            out | {
                "state": KNOWN,
                "statusRegion": st.get("region"),
                "stage": st.get("stage"),
                "digest": (views.spec_of(r.value).get("artifact") or {}).get("sha256"),
                "servedBy": list(st.get("servedBy") or []),
                "servingHistory": list(st.get("servingHistory") or []),
            }
        )  # fmt: skip
    return {
        "model": model,
        "version": version,
        "regions": regions,
        "unknown": [x["region"] for x in regions if x["state"] == UNKNOWN],
    }


# ---------------------------------------------------------------------------- wave gates


def observed(r: Read[dict[str, Any]], version: str) -> Observed:
    """The live state of one region's endpoint, as a wave gate reads it (domain.waves.gate)."""
    region = r.target.region
    if r.error or r.value is None:
        return Observed(region, reachable=False, error=r.error or "no answer")
    ep = r.value.get("endpoint")
    if ep is None:
        return Observed(region, reachable=True, found=False)
    spec, st, md = views.spec_of(ep), views.status_of(ep), views.meta_of(ep)
    try:
        declared: Declared | None = declared_of(spec.get("variants"), f"region {region}")
    except ValueError:
        declared = None
    sv = views.status_view(ep, r.value.get("versions") or [])
    serving = {
        str(v["name"]): (str(v.get("version")), int(v.get("effectiveWeight") or 0))
        for v in sv["variants"]
        if not v.get("mirror")
    }
    history: list[tuple[float, dict[str, int]]] = []
    for c in from_wire(st.get("routeHistory")).changes:
        start = parse_epoch(c.at)
        if start is None:
            continue
        split: dict[str, int] = {}
        for s in c.split:
            split[s.version] = split.get(s.version, 0) + s.weight
        history.append((start, split))
    stage = next(
        (
            views.status_of(m).get("stage")
            for m in r.value.get("versions") or []
            if views.spec_of(m).get("version") == version
        ),
        None,
    )
    return Observed(
        region,
        reachable=True,
        status_region=st.get("region"),
        spec=declared,
        generation=int(md.get("generation") or 0),
        observed_generation=int(st.get("observedGeneration") or 0),
        serving=serving,
        ready={"True": True, "False": False}.get(str(_condition(ep, "Ready"))),
        has_strategy=bool(spec.get("strategy")),
        rollout_phase=(st.get("rollout") or {}).get("phase"),
        history=tuple(history),
        stage=str(stage) if stage else None,
    )
