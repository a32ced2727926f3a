"""Pure views for ``kubectl models``: ModelVersion / ModelEndpoint dicts in, plain data out.

Every function here takes the objects as the API server returns them (dicts) and returns
JSON-serialisable data: that data is what ``-o json`` / ``-o yaml`` print, and what
:mod:`.render` turns into rich tables. Nothing here talks to the API server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelversioning.api.routers import DEFAULT_ROUTER
from modelversioning.api.wire import expected_name
from modelversioning.domain.semver import SemVer
from modelversioning.domain.timestamps import parse_rfc3339 as parse_time

Obj = Mapping[str, Any]

NONE = "<none>"


# ---- small helpers ------------------------------------------------------------------------------
def spec_of(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def status_of(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def meta_of(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def condition(obj: Obj, type_: str) -> dict[str, Any] | None:
    for c in status_of(obj).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def version_key(version: str) -> tuple[int, SemVer, str]:
    """Sort key: semantic versions in semver order, anything unparsable first, by text."""
    try:
        return (1, SemVer.parse(version), version)
    except ValueError:
        return (0, SemVer(0, 0, 0), version)


def human_age(ts: str | None, now: datetime | None = None) -> str:
    """kubectl-style age of a timestamp: 45s, 3m12s, 17m, 5h3m, 21h, 3d4h, 12d, 2y."""
    t = parse_time(ts)
    if t is None:
        return NONE
    s = int(((now or datetime.now(UTC)) - t).total_seconds())
    if s < 0:
        s = 0
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def verified_text(mv: Obj) -> str:
    """ArtifactVerified as one word, with the reason when it is not True."""
    c = condition(mv, "ArtifactVerified")
    if c is None:
        return NONE
    if c.get("status") == "True":
        return "True"
    return f"{c.get('status')} ({c.get('reason')})"


def served_by_text(entries: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for e in entries:
        weight = "mirror" if e.get("mirror") else str(e.get("weight", 0))
        parts.append(f"{e.get('endpoint')}/{e.get('variant')}={weight}")
    return ", ".join(parts) or NONE


def dataset_text(dataset: Mapping[str, Any] | None) -> str:
    if not dataset:
        return NONE
    out = str(dataset.get("name", "?"))
    if dataset.get("version"):
        out += f"@{dataset['version']}"
    if dataset.get("sha256"):
        out += f" (sha256:{str(dataset['sha256'])[:12]})"
    return out


def signature_view(verified: Mapping[str, Any], artifact: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the verifier found of the signature (status.artifact.signature) and which trust policies
    accepted it; None: no trust policy applied (nothing checked)."""
    sig = verified.get("signature")
    if not isinstance(sig, Mapping):
        return None
    keys = ("outcome", "method", "signer", "issuer", "notAfter", "acceptedBy", "message")
    return {k: sig.get(k) for k in keys} | {"location": sig.get("uri") or artifact.get("signatureUri")}


def signature_text(sig: Mapping[str, Any] | None) -> str:
    """One line: who signed, how, and who accepted it (or why not)."""
    if not sig:
        return "not checked (no trust policy)"
    if sig.get("outcome") != "Signed":
        return f"{sig.get('outcome')}: {sig.get('message') or ''}".strip()
    issuer = f" (issuer {sig['issuer']})" if sig.get("issuer") else ""
    expires = f", expires {sig['notAfter']}" if sig.get("notAfter") else ""
    accepted = (
        f"accepted by {sig['acceptedBy']}" if sig.get("acceptedBy") else "not accepted by the trust policy"
    )
    return f"{sig.get('method')} {sig.get('signer')}{issuer}{expires}; {accepted}"


def without_managed_fields(obj: Obj) -> dict[str, Any]:
    """An object as `get -o yaml` prints it: metadata.managedFields left out."""
    md = dict(obj.get("metadata") or {})
    md.pop("managedFields", None)
    return {**obj, "metadata": md}


# ---- list ---------------------------------------------------------------------------------------
def list_rows(
    mvs: Iterable[Obj], model: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One row per ModelVersion (optionally of one model), sorted by namespace, model, semver."""
    rows: list[dict[str, Any]] = []
    for mv in mvs:
        spec, st, md = spec_of(mv), status_of(mv), meta_of(mv)
        if model is not None and spec.get("model") != model:
            continue
        verified = condition(mv, "ArtifactVerified")
        rows.append(
            {
                "namespace": md.get("namespace"),
                "name": md.get("name"),
                "model": spec.get("model"),
                "version": spec.get("version"),
                "requestedStage": spec.get("stage", "candidate"),
                "stage": st.get("stage"),
                "verified": (verified or {}).get("status"),
                "verifiedReason": (verified or {}).get("reason"),
                "verifiedText": verified_text(mv),
                "servedBy": [dict(e) for e in st.get("servedBy") or []],
                "created": md.get("creationTimestamp"),
                "age": human_age(md.get("creationTimestamp"), now),
            }
        )
    rows.sort(
        key=lambda r: (str(r["namespace"] or ""), str(r["model"] or ""), version_key(str(r["version"])))
    )
    return rows


# ---- history --------------------------------------------------------------------------------------
def history_rows(mvs: Iterable[Obj], model: str) -> list[dict[str, Any]]:
    """Every stage transition and every finished rollout of every version of `model`, oldest first
    (the audit view). Each row has `event`: `stage` (from, to, actor, reason) or `rollout` (endpoint,
    result; the endpoint as actor, the analysis as reason).

    Entries of the same second keep their recorded order within a version, a rollout before the
    stage change it led to; across versions they are ordered by version.
    """
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def key(at: str, version: str, kind: int, i: int) -> tuple[Any, ...]:
        t = parse_time(at)
        return (t.timestamp() if t else 0.0, version_key(version), kind, i)

    for mv in mvs:
        spec = spec_of(mv)
        if spec.get("model") != model:
            continue
        version = str(spec.get("version"))
        for i, r in enumerate(status_of(mv).get("rollouts") or []):
            at = str(r.get("at", ""))
            row = {
                "at": at,
                "version": version,
                "event": "rollout",
                "from": None,
                "to": None,
                "actor": f"ModelEndpoint/{r.get('endpoint', '')}",
                "reason": r.get("message", ""),
                "endpoint": r.get("endpoint"),
                "result": r.get("result"),
            }
            rows.append((key(at, version, 0, i), row))
        for i, h in enumerate(status_of(mv).get("history") or []):
            at = str(h.get("at", ""))
            rows.append(
                (
                    key(at, version, 1, i),
                    {
                        "at": at,
                        "version": version,
                        "event": "stage",
                        "from": h.get("from"),
                        "to": h.get("to"),
                        "actor": h.get("actor", ""),
                        "reason": h.get("reason", ""),
                    },
                )
            )
    rows.sort(key=lambda kv: kv[0])
    return [r for _, r in rows]


# ---- get / describe ---------------------------------------------------------------------------------
def describe_view(mv: Obj) -> dict[str, Any]:
    """Everything `describe` shows, grouped by section."""
    spec, st, md = spec_of(mv), status_of(mv), meta_of(mv)
    lineage = dict(spec.get("lineage") or {})
    art = dict(spec.get("artifact") or {})
    verified = condition(mv, "ArtifactVerified")
    verified_art = dict(st.get("artifact") or {})
    return {
        "name": md.get("name"),
        "namespace": md.get("namespace"),
        "model": spec.get("model"),
        "version": spec.get("version"),
        "requestedStage": spec.get("stage", "candidate"),
        "stage": st.get("stage"),
        "description": spec.get("description"),
        "created": md.get("creationTimestamp"),
        "artifact": {
            "uri": art.get("uri"),
            "sha256": art.get("sha256"),
            "format": art.get("format"),
            "sizeBytes": art.get("sizeBytes"),
            "secretRef": (art.get("secretRef") or {}).get("name"),
        },
        "verification": {
            "status": (verified or {}).get("status"),
            "reason": (verified or {}).get("reason"),
            "message": (verified or {}).get("message"),
            "digest": verified_art.get("digest"),
            "verifiedAt": verified_art.get("verifiedAt"),
            "sizeBytes": verified_art.get("sizeBytes"),
            "files": verified_art.get("files"),
            "matches": bool(verified_art.get("digest")) and verified_art.get("digest") == art.get("sha256"),
            "signature": signature_view(verified_art, art),
        },
        "lineage": {
            "codeRepository": lineage.get("codeRepository"),
            "codeCommit": lineage.get("codeCommit"),
            "dataset": dataset_text(lineage.get("dataset")),
            "datasetUri": (lineage.get("dataset") or {}).get("uri"),
            "trainedAt": lineage.get("trainedAt"),
            "author": lineage.get("author"),
            "framework": lineage.get("framework"),
            "environment": dict(lineage.get("environment") or {}),
        },
        "hyperparameters": dict(lineage.get("hyperparameters") or {}),
        "metrics": dict(spec.get("metrics") or {}),
        # an explicit runtime, else the catalog runtime it resolved to (with its protocol and source)
        "runtime": dict(spec.get("runtime") or st.get("resolvedRuntime") or {}),
        "history": [dict(h) for h in st.get("history") or []],
        "conditions": [dict(c) for c in st.get("conditions") or []],
        "servedBy": [dict(e) for e in st.get("servedBy") or []],
        "rollouts": [dict(r) for r in st.get("rollouts") or []],
        "quarantine": dict(st.get("quarantine") or {}),  # the operator's record (kubectl models quarantine)
    }


# ---- status / which -----------------------------------------------------------------------------
def status_view(
    ep: Obj, mvs: Iterable[Obj], route_weights: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Per variant: desired vs effective (and routed) weight, readiness, eligibility, and the exact
    version, digest and lineage serving it (joined with the endpoint's ModelVersions)."""
    spec, st, md = spec_of(ep), status_of(ep), meta_of(ep)
    ctx = _EndpointContext(
        model=str(spec.get("model", "")),
        by_name={meta_of(m).get("name"): m for m in mvs},
        effective={k: int(v) for k, v in (st.get("effectiveWeights") or {}).items()},
        mirror=dict(spec.get("mirror") or {}),
        route_weights=route_weights,
    )
    st_variants = {v.get("name"): dict(v) for v in st.get("variants") or []}
    variants: list[dict[str, Any]] = []
    seen: set[str] = set()
    for v in spec.get("variants") or []:
        name = str(v.get("name"))
        seen.add(name)
        variants.append(
            _variant_entry(
                ctx,
                name,
                str(v.get("version")),
                int(v.get("weight", 0)),
                int(v.get("replicas", 1)),
                st_variants.get(name, {}),
            )
        )
    for name, vs in st_variants.items():  # removed from the spec but still draining traffic
        if name not in seen and name is not None:
            entry = _variant_entry(ctx, str(name), str(vs.get("version", "")), 0, vs.get("replicas"), vs)
            entry["removed"] = True
            variants.append(entry)
    return {
        "endpoint": md.get("name"),
        "namespace": md.get("namespace"),
        "model": ctx.model,
        "router": (spec.get("routing") or {}).get("router", DEFAULT_ROUTER),
        "traffic": st.get("traffic"),
        "observedGeneration": st.get("observedGeneration"),
        "generation": md.get("generation"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")} for c in st.get("conditions") or []
        ],
        "variants": variants,
    }


@dataclass(frozen=True)
class _EndpointContext:
    model: str
    by_name: Mapping[Any, Obj]  # ModelVersion name -> object
    effective: Mapping[str, int]
    mirror: Mapping[str, Any]
    route_weights: Mapping[str, int] | None


def _variant_entry(
    ctx: _EndpointContext, name: str, version: str, desired: int, replicas: int | None, vs: dict[str, Any]
) -> dict[str, Any]:
    desired_version = version
    served = dict(vs.get("serving") or {})
    if served.get("version"):  # the slot that carries the variant's traffic now (may lag the spec)
        version = str(served["version"])
    mv_name = expected_name(ctx.model, version) if served.get("version") else (
        vs.get("modelVersion") or expected_name(ctx.model, version)
    )  # fmt: skip
    mv = ctx.by_name.get(mv_name)
    mv_spec, mv_st = (spec_of(mv), status_of(mv)) if mv else ({}, {})
    lineage = dict(mv_spec.get("lineage") or {})
    is_mirror = name == ctx.mirror.get("variant")
    eff = 0 if is_mirror else int(vs.get("effectiveWeight", ctx.effective.get(name, 0)))
    routed = ctx.route_weights
    return {
        "name": name,
        "version": version,
        "desiredVersion": desired_version,
        "modelVersion": mv_name,
        "mirror": is_mirror,
        "mirrorPercent": int(ctx.mirror.get("percent", 100)) if is_mirror else None,
        "desiredWeight": desired,
        "effectiveWeight": eff,
        "routeWeight": None if routed is None or is_mirror else int(routed.get(name, 0)),
        "replicas": replicas if replicas is not None else vs.get("replicas"),
        "readyReplicas": int(vs.get("readyReplicas", 0)),
        "eligible": bool(vs.get("eligible", False)),
        "reason": vs.get("reason"),
        "message": vs.get("message"),
        "stage": mv_st.get("stage") or vs.get("stage"),
        "digest": served.get("digest") or (mv_spec.get("artifact") or {}).get("sha256") or vs.get("digest"),
        "verifiedDigest": (mv_st.get("artifact") or {}).get("digest"),
        "found": mv is not None,
        "lineage": {
            "codeRepository": lineage.get("codeRepository"),
            "codeCommit": lineage.get("codeCommit"),
            "dataset": dataset_text(lineage.get("dataset")) if lineage.get("dataset") else None,
            "trainedAt": lineage.get("trainedAt"),
            "author": lineage.get("author"),
        },
    }


# ---- diff -----------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        if not value and prefix:
            return
        for k in sorted(value):
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    elif isinstance(value, list):
        if value and all(isinstance(e, Mapping) and "name" in e for e in value):
            for e in value:  # env: [{name, value}] -> env.NAME
                rest = {k: v for k, v in e.items() if k != "name"}
                _flatten(f"{prefix}.{e['name']}", rest.get("value", "") if len(rest) <= 1 else rest, out)
        elif value:
            out[prefix] = " ".join(str(e) for e in value)
    elif value is not None:
        out[prefix] = value


def _section(spec: Mapping[str, Any], status: Mapping[str, Any], section: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if section == "lineage":
        lineage = {k: v for k, v in (spec.get("lineage") or {}).items() if k != "hyperparameters"}
        _flatten("", lineage, out)
    elif section == "hyperparameters":
        _flatten("", (spec.get("lineage") or {}).get("hyperparameters") or {}, out)
    elif section == "metrics":
        _flatten("", spec.get("metrics") or {}, out)
    elif section == "runtime":
        _flatten("", spec.get("runtime") or status.get("resolvedRuntime") or {}, out)
    elif section == "artifact":
        art = {k: v for k, v in (spec.get("artifact") or {}).items()}
        _flatten("", art, out)
    elif section == "stage":
        out["requested"] = spec.get("stage", "candidate")
        if status.get("stage"):
            out["current"] = status.get("stage")
    return out


DIFF_SECTIONS = ("lineage", "hyperparameters", "metrics", "runtime", "artifact", "stage")


def diff_rows(a: Obj, b: Obj) -> list[dict[str, Any]]:
    """Side by side: one row per (section, key) present in either version.

    ``change`` is "" (same), "*" (changed), "+" (only in b) or "-" (only in a); metrics carry a
    numeric ``delta`` = b - a.
    """
    rows: list[dict[str, Any]] = []
    for section in DIFF_SECTIONS:
        left = _section(spec_of(a), status_of(a), section)
        right = _section(spec_of(b), status_of(b), section)
        for key in sorted(
            set(left) | set(right), key=lambda k: (k.count("."), k) if section == "lineage" else k
        ):
            va, vb = left.get(key), right.get(key)
            change = "" if va == vb else "+" if key not in left else "-" if key not in right else "*"
            delta: float | None = None
            if (
                section == "metrics"
                and isinstance(va, int | float)
                and isinstance(vb, int | float)
                and not isinstance(va, bool)
                and not isinstance(vb, bool)
            ):
                delta = round(float(vb) - float(va), 12)
            rows.append(
                {
                    "section": section,
                    "key": key,
                    "a": va,
                    "b": vb,
                    "change": change,
                    "changed": change != "",
                    "delta": delta,
                }
            )
    return rows


def diff_view(a: Obj, b: Obj) -> dict[str, Any]:
    sa, sb = spec_of(a), spec_of(b)
    return {
        "model": sa.get("model"),
        "a": sa.get("version"),
        "b": sb.get("version"),
        "rows": diff_rows(a, b),
    }
