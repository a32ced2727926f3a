"""Pure decisions of ``kubectl models quarantine`` and ``unquarantine``: the selector from the options,
the views of the listed objects, the patches (one per affected ModelVersion, with the caller as the
recorded actor), the Git change that makes it permanent, and every message. Objects in (dicts), data,
text or :class:`Refused` out; no API access here (``commands/quarantine.py`` talks to the cluster).

The rules themselves (what matches, the blast radius, what the operator then does) are
``domain.quarantine``'s; docs/design.md, "Lineage quarantine".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelversioning.api.wire import (
    HEADER_UNAVAILABLE,
    QUARANTINE_REASON_ANNOTATION,
    QUARANTINED_ANNOTATION,
    QUARANTINED_BY_ANNOTATION,
    UNAVAILABLE_QUARANTINED,
    UNAVAILABLE_STATUS,
)
from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused
from modelversioning.cli.models.views import meta_of, spec_of, status_of
from modelversioning.domain import quarantine as Q

EXIT_NO_MATCH = 4  # the selector matched no version (nothing written)
MAX_REASON = 1024


def selector_of(dataset: str | None, commit: str | None, version: str | None) -> Q.Selector:
    given = [
        (k, v) for k, v in (("dataset", dataset), ("commit", commit), ("version", version)) if v is not None
    ]
    if len(given) != 1:
        raise Refused(
            "give exactly one of --dataset NAME@VERSION, --commit SHA, --version MODEL@VERSION", EXIT_USAGE
        )
    try:
        return Q.parse(*given[0])
    except ValueError as e:
        raise Refused(str(e), EXIT_USAGE) from None


def reason_of(reason: str | None, verb: str = "quarantined") -> str:
    text = (reason or "").strip()
    if not text:
        raise Refused(f"--reason is required: say why it is {verb} (it is recorded)", EXIT_USAGE)
    return text[:MAX_REASON]


# ----------------------------------------------------------------------------------------- views
def version_view(obj: Mapping[str, Any]) -> Q.VersionView | None:
    """A listed ModelVersion as the selectors see it (None: no model/version in its spec)."""
    md, spec = meta_of(obj), spec_of(obj)
    model, version = str(spec.get("model") or ""), str(spec.get("version") or "")
    if not model or not version:
        return None
    lineage = spec.get("lineage") or {}
    ds = lineage.get("dataset") or {}
    built = Q.Built(
        model,
        version,
        str(ds.get("name") or ""),
        ds.get("version"),
        ds.get("sha256"),
        str(lineage.get("codeCommit") or ""),
    )
    selectors = Q.in_force((md.get("annotations") or {}).get(QUARANTINED_ANNOTATION))
    stage = status_of(obj).get("stage")
    return Q.VersionView(str(md.get("namespace") or ""), str(md.get("name") or ""), built, stage, selectors)


def endpoint_view(obj: Mapping[str, Any]) -> Q.EndpointView:
    md, spec, st = meta_of(obj), spec_of(obj), status_of(obj)
    effective = {str(k): int(v or 0) for k, v in (st.get("effectiveWeights") or {}).items()}
    eligible = {str(v.get("name")): bool(v.get("eligible")) for v in st.get("variants") or []}
    mirror = ((spec.get("mirror") or {}).get("variant")) or None
    variants = tuple(
        Q.VariantView(
            str(v.get("name")),
            str(v.get("version")),
            int(v.get("weight") or 0),
            effective.get(str(v.get("name")), 0),
            eligible.get(str(v.get("name")), False),
            str(v.get("name")) == mirror,
        )
        for v in spec.get("variants") or []
    )
    closed = str((st.get("closed") or {}).get("reason") or "")
    return Q.EndpointView(
        str(md.get("namespace") or ""),
        str(md.get("name") or ""),
        str(spec.get("model") or ""),
        variants,
        closed,
    )


# --------------------------------------------------------------------------------------- patches
def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return meta_of(obj).get("annotations") or {}


def quarantine_patch(obj: Mapping[str, Any], sel: Q.Selector, reason: str, actor: str) -> dict[str, Any]:
    """JSON merge patch: the selector added to those in force, the reason and the caller (the chart's
    admission policy refuses a quarantined-by that is not the authenticated user). The resourceVersion
    read makes it fail (409) rather than lose a selector another quarantine added meanwhile."""
    have = Q.in_force(_annotations(obj).get(QUARANTINED_ANNOTATION))
    return _patch(obj, Q.encode([*have, sel.text()]), reason, actor)


def lift_patch(obj: Mapping[str, Any], sel: Q.Selector, reason: str, actor: str) -> dict[str, Any]:
    """The selector removed; with none left the annotation goes (the version is eligible again)."""
    have = Q.in_force(_annotations(obj).get(QUARANTINED_ANNOTATION))
    return _patch(obj, Q.encode(s for s in have if s != sel.text()), reason, actor)


def _patch(obj: Mapping[str, Any], selectors: str | None, reason: str, actor: str) -> dict[str, Any]:
    md: dict[str, Any] = {
        "annotations": {
            QUARANTINED_ANNOTATION: selectors,
            QUARANTINE_REASON_ANNOTATION: reason,
            QUARANTINED_BY_ANNOTATION: actor,
        }
    }
    if rv := meta_of(obj).get("resourceVersion"):
        md["resourceVersion"] = rv
    return {"metadata": md}


def lifted_by(obj: Mapping[str, Any], sel: Q.Selector) -> bool:
    return sel.text() in Q.in_force(_annotations(obj).get(QUARANTINED_ANNOTATION))


# ----------------------------------------------------------------------------------- the Git change
def git_change(ep: Mapping[str, Any], hit: Q.Hit) -> dict[str, Any] | None:
    """The endpoint manifest's spec without the affected variants, at the weights the operator now
    routes (``hit.after``): the change to commit so that a later lift, or a new object, changes nothing.
    None when nothing eligible would remain (there is no manifest to write: pin an unaffected version)."""
    if hit.closes:
        return None
    spec = spec_of(ep)
    kept = [dict(v) for v in spec.get("variants") or [] if v.get("name") not in hit.affected]
    mirror = (spec.get("mirror") or {}).get("variant")
    for v in kept:
        if v.get("name") != mirror:
            v["weight"] = int(hit.after.get(str(v.get("name")), 0))
    change: dict[str, Any] = {"spec": {"variants": kept}}
    if mirror in hit.affected:
        change["spec"]["mirror"] = None
    return change


# ---------------------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class Outcome:
    """What the command did (or would do: dry run)."""

    selector: str
    reason: str
    dry_run: bool
    radius: Q.Radius
    written: tuple[str, ...] = ()  # namespace/name patched
    changes: Mapping[str, dict[str, Any] | None] | None = None  # namespace/endpoint -> Git change
    settled: Mapping[str, Mapping[str, int]] | None = None  # namespace/endpoint -> weights observed after


def nothing_matched(sel: Q.Selector, where: str) -> Refused:
    return Refused(f"no ModelVersion in {where} matches {sel.text()}: nothing quarantined", EXIT_NO_MATCH)


def nothing_writable(sel: Q.Selector, radius: Q.Radius) -> Refused:
    why = "; ".join(f"{ns}: {w}" for ns, w in radius.skipped.items())
    return Refused(
        f"{sel.text()} matches versions only in namespaces where you may not change endpoints and versions "
        f"({why}): nothing quarantined",
        EXIT_FAILED,
    )


def data(o: Outcome, verb: str = "quarantine") -> dict[str, Any]:
    r = o.radius
    return {
        "selector": o.selector,
        "action": verb,
        "reason": o.reason,
        "dryRun": o.dry_run,
        "versions": [
            {"namespace": v.namespace, "name": v.name, "stage": v.stage, "new": v in r.new}
            for v in r.versions
        ],
        "endpoints": [
            {
                "namespace": h.namespace,
                "name": h.endpoint,
                "affectedVariants": list(h.affected),
                "weightsBefore": dict(h.before),
                "weightsAfter": dict(h.after),
                "closes": h.closes,
                "message": h.message,
                **(
                    {"observed": dict(o.settled.get(f"{h.namespace}/{h.endpoint}") or {})}
                    if o.settled
                    else {}
                ),
                **(
                    {"gitChange": o.changes.get(f"{h.namespace}/{h.endpoint}")}
                    if o.changes is not None
                    else {}
                ),
            }
            for h in r.endpoints
        ],
        "skippedNamespaces": dict(r.skipped),
        "written": list(o.written),
    }


def _weights(w: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {v}%" for n, v in w.items() if v > 0) or "none"


def text(o: Outcome) -> str:
    r = o.radius
    head = "would quarantine" if o.dry_run else "quarantined"
    lines = [f"{o.selector}: {head} {len(r.new)} version(s) ({o.reason})"]
    for v in r.versions:
        mark = "" if v in r.new else " (already under this selector)"
        lines.append(f"  {v.namespace}/{v.name} stage {v.stage or '-'}{mark}")
    for ns, why in r.skipped.items():
        lines.append(f"  skipped namespace {ns}: {why}; nothing is quarantined there")
    if r.endpoints:
        lines.append("endpoints serving them:")
    for h in r.endpoints:
        key = f"{h.namespace}/{h.endpoint}"
        lines.append(
            f"  {key} [{', '.join(h.affected)}]: {_weights(h.before)} -> {_weights(h.after)}: {h.message}"
        )
        if o.settled is not None and key in o.settled:
            lines.append(f"    observed now: {_weights(o.settled[key])}")
        if h.closes:
            lines.append(
                f"    WARNING: nothing eligible remains; the route answers {UNAVAILABLE_STATUS} with "
                f"{HEADER_UNAVAILABLE}: {UNAVAILABLE_QUARANTINED}"
            )
    if o.changes:
        lines.append(
            "make it permanent in Git (merge into each endpoint's manifest; the operator wrote no spec):"
        )
        for key, change in o.changes.items():
            if change is None:
                lines.append(
                    f"  {key}: no unaffected variant remains: pin an unaffected version, or remove it"
                )
            else:
                import json

                lines.append(f"  {key}: {json.dumps(change, separators=(',', ':'))}")
    return "\n".join(lines)


def lift_text(
    sel: Q.Selector,
    reason: str,
    dry_run: bool,
    rows: Sequence[tuple[str, tuple[str, ...]]],
    skipped: Mapping[str, str],
) -> str:
    head = "would lift" if dry_run else "lifted"
    lines = [f"{sel.text()}: {head} on {len(rows)} version(s) ({reason})"]
    for name, rest in rows:
        state = (
            f"still quarantined by {', '.join(rest)}"
            if rest
            else "eligible again (the operator decides its routes)"
        )
        lines.append(f"  {name}: {state}")
    for ns, why in skipped.items():
        lines.append(f"  skipped namespace {ns}: {why}; nothing is lifted there")
    return "\n".join(lines)
