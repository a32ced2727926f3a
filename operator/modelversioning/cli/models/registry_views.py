"""Pure views of ``kubectl models search | lineage | approve``: which versions match the filters,
where one came from and where it went (stages, approvals, endpoints, rollouts), and the
ModelApproval to create. Objects in (dicts), view data out; tested without a cluster.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelversioning.api.wire import (
    ARTIFACT_DELETED_ANNOTATION,
    MODELAPPROVAL,
    TAG_LABEL_PREFIX,
    expected_name,
)
from modelversioning.domain.production import aggregate as served_figures

TAG_PREFIX = TAG_LABEL_PREFIX


# ---- search ------------------------------------------------------------------------------------
_WHERE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.:-]*)\s*(>=|<=|==|!=|>|<|=)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}  # fmt: skip


def parse_where(text: str) -> tuple[str, str, float]:
    """``--where METRIC OP NUMBER``; ValueError saying the syntax."""
    m = _WHERE.match(text)
    if m is None:
        raise ValueError(f"{text!r}: use METRIC OP NUMBER, e.g. 'auc>=0.94' (op: >= <= > < == !=)")
    return m.group(1), m.group(2), float(m.group(3))


@dataclass(frozen=True)
class Filters:
    model: str | None = None
    stage: str | None = None
    tags: tuple[str, ...] = ()
    author: str | None = None
    dataset: str | None = None  # NAME, NAME@VERSION or NAME@SHA256 (a prefix of 8+ hex digits will do)
    commit: str | None = None  # a prefix
    where: tuple[tuple[str, str, float], ...] = field(default_factory=tuple)


def matches(mv: Mapping[str, Any], f: Filters) -> bool:
    spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
    lin = spec.get("lineage") or {}
    ds = lin.get("dataset") or {}
    labels = md.get("labels") or {}
    metrics = spec.get("metrics") or {}
    if f.model and spec.get("model") != f.model:
        return False
    if f.stage and (st.get("stage") or "") != f.stage:
        return False
    if any(labels.get(TAG_PREFIX + t) is None for t in f.tags):
        return False
    if f.author and f.author.lower() not in str(lin.get("author") or "").lower():
        return False
    if f.dataset:
        name, _, version = f.dataset.partition("@")
        if ds.get("name") != name or (version and not _same_dataset(ds, version)):
            return False
    if f.commit and not str(lin.get("codeCommit") or "").startswith(f.commit.lower()):
        return False
    served = served_of(mv) if any(k.startswith(SERVED) for k, _, _ in f.where) else {}
    for k, op, v in f.where:
        have = served.get(k.removeprefix(SERVED)) if k.startswith(SERVED) else metrics.get(k)
        if have is None or not _OPS[op](float(have), v):
            return False
    return True


SERVED = "served."  # --where served.<figure>: the version's production record (as in a Model's gates)


def served_of(mv: Mapping[str, Any]) -> dict[str, float]:
    """The version's production figures over its serving periods (domain.production.aggregate); a
    figure its record does not hold (or holds incomplete) is absent, never 0."""
    figures = served_figures((mv.get("status") or {}).get("servingHistory") or [])
    unknown = {f for f, _ in figures.incomplete}
    return {k: v for k, v in figures.values.items() if k not in unknown}


def _same_dataset(ds: Mapping[str, Any], wanted: str) -> bool:
    """``wanted`` is the dataset's version, or its sha256 (``sha256:`` optional; 8+ hex digits)."""
    if ds.get("version") == wanted:
        return True
    digest = wanted.removeprefix("sha256:").lower()
    sha = str(ds.get("sha256") or "").lower()
    return bool(sha) and len(digest) >= 8 and sha.startswith(digest)


def search_rows(mvs: Sequence[Mapping[str, Any]], f: Filters) -> list[dict[str, Any]]:
    rows = []
    for mv in mvs:
        if not matches(mv, f):
            continue
        spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
        lin = spec.get("lineage") or {}
        ds = lin.get("dataset") or {}
        labels = md.get("labels") or {}
        rows.append(
            {
                "namespace": md.get("namespace"),
                "model": spec.get("model"),
                "version": spec.get("version"),
                "stage": st.get("stage"),
                "author": lin.get("author"),
                "dataset": f"{ds.get('name')}@{ds.get('version') or str(ds.get('sha256', ''))[:12]}",
                "codeCommit": lin.get("codeCommit"),
                "metrics": dict(spec.get("metrics") or {}),
                "served": served_of(mv),
                "tags": sorted(k.removeprefix(TAG_PREFIX) for k in labels if k.startswith(TAG_PREFIX)),
            }
        )
    return sorted(rows, key=lambda r: (str(r["namespace"]), str(r["model"]), _semver_key(str(r["version"]))))


def _semver_key(v: str) -> tuple[Any, ...]:
    core, _, pre = v.partition("-")
    return (*(int(p) if p.isdigit() else 0 for p in core.split(".")), 0 if pre else 1, pre)


# ---- compare -----------------------------------------------------------------------------------
_PERIOD_FIELDS = (
    "requests", "errors", "errorRatio", "latencyP50Seconds", "latencyP99Seconds", "through", "final",
    "incomplete", "kpis",
)  # fmt: skip


def compare_view(
    model: str, mvs: Sequence[Mapping[str, Any]], versions: Sequence[str] = ()
) -> dict[str, Any]:
    """``kubectl models compare MODEL [VERSIONS]``: the versions side by side, offline (spec.metrics) and
    in production (the record of their serving periods, summed: domain.production.aggregate). ValueError
    naming the versions asked for that are not there."""
    mine = [mv for mv in mvs if (mv.get("spec") or {}).get("model") == model]
    have = {str((mv.get("spec") or {}).get("version")): mv for mv in mine}
    missing = [v for v in versions if v not in have]
    if missing:
        raise ValueError(
            f"model {model} has no version {', '.join(missing)} (versions: {', '.join(have) or 'none'})"
        )
    rows = []
    for v in sorted(versions or have, key=_semver_key):
        mv = have[v]
        figures = served_figures((mv.get("status") or {}).get("servingHistory") or [])
        periods = (mv.get("status") or {}).get("servingHistory") or []
        rows.append(
            {
                "version": v,
                "stage": (mv.get("status") or {}).get("stage"),
                "metrics": dict((mv.get("spec") or {}).get("metrics") or {}),
                "production": dict(figures.values),
                "incomplete": sorted({why for _, why in figures.incomplete}),
                "periods": [
                    {
                        "endpoint": p.get("endpoint"),
                        "variant": p.get("variant"),
                        "from": p.get("from"),
                        **({"to": p["to"]} if p.get("to") else {}),
                        **{k: p["production"][k] for k in _PERIOD_FIELDS if k in (p.get("production") or {})},
                    }
                    for p in periods
                ],
            }
        )  # fmt: skip
    return {"model": model, "versions": rows}


# ---- lineage -----------------------------------------------------------------------------------
def lineage_view(
    mv: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]], model: Mapping[str, Any] | None
) -> dict[str, Any]:
    spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
    art = spec.get("artifact") or {}
    verified = st.get("artifact") or {}
    ann = md.get("annotations") or {}
    digest = str(art.get("sha256", ""))
    mine = [a for a in approvals if (a.get("spec") or {}).get("sha256") == digest]
    record = next(
        (
            r
            for r in ((model or {}).get("status") or {}).get("versions") or []
            if r.get("version") == spec.get("version")
        ),
        None,
    )
    return {
        "model": spec.get("model"),
        "version": spec.get("version"),
        "namespace": md.get("namespace"),
        "producedBy": dict(spec.get("lineage") or {}),
        "artifact": {
            "uri": art.get("uri"),
            "sha256": digest,
            "verifiedAt": verified.get("verifiedAt"),
            "deleted": ARTIFACT_DELETED_ANNOTATION in ann,
        },
        # what the verifier found of its signature and who accepted it (views.signature_text shows it)
        "signature": dict(verified["signature"]) if isinstance(verified.get("signature"), dict) else None,
        "metrics": dict(spec.get("metrics") or {}),
        "registry": (
            {
                "firstSeen": record.get("firstSeen"),
                "digest": record.get("digest"),
                "sameDigest": record.get("digest") == digest,
            }
            if record
            else None
        ),
        "stage": st.get("stage"),
        "stages": [
            {k: h.get(k) for k in ("from", "to", "at", "actor", "reason", "approvedBy") if h.get(k)}
            for h in st.get("history") or []
        ],
        "approvals": sorted(
            (
                {
                    "stage": (a.get("spec") or {}).get("stage"),
                    "approver": (a.get("spec") or {}).get("approver"),
                    "at": (a.get("metadata") or {}).get("creationTimestamp"),
                    "comment": (a.get("spec") or {}).get("comment"),
                }
                for a in mine
            ),
            key=lambda a: str(a["at"]),
        ),
        "servedBy": list(st.get("servedBy") or []),
        "servingHistory": list(st.get("servingHistory") or []),
        "endpoints": _endpoint_story(st),
        "rollouts": list(st.get("rollouts") or []),
    }


def _endpoint_story(st: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which endpoints served it and when: the rollouts it took part in, the periods an endpoint variant
    routed traffic to it (status.servingHistory; an open one with today's weight), and where it is
    deployed now without traffic (status.servedBy at 0%). Oldest first, "now" last."""
    out = [
        {"endpoint": r.get("endpoint"), "at": r.get("at"), "what": f"rollout {r.get('result')}"}
        for r in st.get("rollouts") or []
    ]
    weights = {(s.get("endpoint"), s.get("variant")): s.get("weight") for s in st.get("servedBy") or []}
    open_ = set()
    for p in st.get("servingHistory") or []:
        key = (p.get("endpoint"), p.get("variant"))
        what = f"{'mirrored by' if p.get('mirror') else 'served by'} variant {p.get('variant')}"
        if not p.get("to"):
            open_.add(key)
            if key in weights:
                what += f", at {weights[key]}% now"
        out.append(
            {"endpoint": p.get("endpoint"), "at": p.get("from"), "until": p.get("to") or "now", "what": what}
        )
    out += [
        {
            "endpoint": s.get("endpoint"),
            "at": "now",
            "what": f"variant {s.get('variant')} at {s.get('weight')}%",
        }
        for s in st.get("servedBy") or []
        if (s.get("endpoint"), s.get("variant")) not in open_
    ]
    return sorted(out, key=lambda e: (e["at"] == "now", str(e["at"])))


# ---- approve -----------------------------------------------------------------------------------
def approval_body(
    model: str,
    version: str,
    sha256: str,
    stage: str,
    user: str,
    comment: str | None,
    serving_digest: str = "",
    groups: Sequence[str] = (),
) -> dict[str, Any]:
    """A ModelApproval of exactly this digest and serving digest (the version's status.servingDigest),
    as ``user`` with the groups the API server authenticated (admission checks both)."""
    who = hashlib.sha256(user.encode()).hexdigest()[:10]
    spec: dict[str, Any] = {
        "model": model,
        "version": version,
        "sha256": sha256,
        "servingDigest": serving_digest,
        "stage": stage,
        "approver": user,
    }
    if groups:
        spec["approverGroups"] = list(groups)[:64]
    if comment:
        spec["comment"] = comment
    # one per user, stage and serving digest: a re-created version is approved anew, not "already"
    name = f"{expected_name(model, version)}-{stage}-{who}-{serving_digest[:8]}".rstrip("-")
    return {
        "apiVersion": MODELAPPROVAL.api_version,
        "kind": MODELAPPROVAL.kind,
        "metadata": {"name": name[:253]},
        "spec": spec,
    }


def approval_outcome(body: Mapping[str, Any], result: str) -> dict[str, Any]:
    """What approve prints (-o yaml/json): the approval's spec and whether it was new."""
    spec = body["spec"]
    return {
        "model": spec["model"],
        "version": spec["version"],
        "sha256": spec["sha256"],
        "servingDigest": spec.get("servingDigest", ""),
        "stage": spec["stage"],
        "approver": spec["approver"],
        "result": result,
    }


def approval_text(data: Mapping[str, Any]) -> str:
    return (
        f"{data['model']} {data['version']} (sha256 {str(data['sha256'])[:12]}) {data['result']} for "
        f"{data['stage']} by {data['approver']}"
    )
