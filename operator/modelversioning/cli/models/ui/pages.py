"""The web view's pages as data: a :class:`~.cache.Snapshot` (the shared watch cache) in, plain
dicts out, which the templates render (every string escaped there). Pure: no I/O, no clock of its own
(``now`` is passed in); the per-object views are the CLI's own (:mod:`..views`, :mod:`..registry_views`,
:mod:`..rollout_views`, :mod:`..which_views`), so a page says what ``kubectl models`` says.

- fleet: every model with its stages, the endpoints serving it (live split, health, a rollout in
  progress) and what needs attention;
- model: versions (stage, verification, signature, key metrics, approvals), the lineage graph
  (dataset / code commit -> version -> endpoints, with serving periods), stage history, retention;
- endpoint: the live split (status.effectiveWeights, status.variants), the rollout's steps and each
  analysis measurement against its thresholds, past rollouts, which version answered at a moment;
- diff: two versions side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelversioning.api.wire import ARTIFACT_DELETED_ANNOTATION, REVOKED_ANNOTATION, expected_name
from modelversioning.cli.models import registry_views, rollout_views, views, which_views
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.ui.snapshot import Snapshot

Obj = Mapping[str, Any]
STAGES = ("candidate", "validated", "staging", "approved", "production", "archived")
KEY_METRICS = 4  # metrics shown per version in the versions table (all of them on the diff page)


def _ns(o: Obj) -> str:
    return str((o.get("metadata") or {}).get("namespace") or "")


def _name(o: Obj) -> str:
    return str((o.get("metadata") or {}).get("name") or "")


def _model_of(o: Obj) -> str:
    return str((o.get("spec") or {}).get("model") or "")


def _in(objs: Iterable[Obj], ns: str, model: str | None = None) -> list[Obj]:
    return [o for o in objs if _ns(o) == ns and (model is None or _model_of(o) == model)]


# ---- shared pieces ------------------------------------------------------------------------------
def endpoint_health(ep: Obj) -> dict[str, Any]:
    """Ready condition as one word and why; its tone: bad only when kstatus says Stalled."""
    c = views.condition(ep, "Ready")
    if c is None:
        return {"ok": None, "text": "Unknown", "why": "the operator has not reported yet", "tone": "muted"}
    ok = c.get("status") == "True"
    stalled = (views.condition(ep, "Stalled") or {}).get("status") == "True"
    tone = "ok" if ok else "bad" if stalled else "warn"  # not ready but getting there (kstatus Reconciling)
    text = "Ready" if ok else str(c.get("reason") or "NotReady")
    return {"ok": ok, "text": text, "why": c.get("message"), "tone": tone}


def live_split(ep: Obj) -> list[dict[str, Any]]:
    """The split the route has (status.effectiveWeights, status.variants' versions), largest first."""
    st = views.status_of(ep)
    eff = {str(k): int(v) for k, v in (st.get("effectiveWeights") or {}).items()}
    versions = {
        str(v.get("name")): str((v.get("serving") or {}).get("version") or v.get("version") or "")
        for v in st.get("variants") or []
    }
    for v in views.spec_of(ep).get("variants") or []:
        versions.setdefault(str(v.get("name")), str(v.get("version") or ""))
    out = [{"variant": k, "version": versions.get(k, ""), "weight": w} for k, w in eff.items()]
    return sorted(out, key=lambda s: (-int(s["weight"]), str(s["variant"])))


def rollout_summary(ep: Obj) -> dict[str, Any] | None:
    """The rollout of an endpoint with spec.strategy (None without one)."""
    if not (views.spec_of(ep).get("strategy") or {}).get("canary"):
        return None
    v = rollout_views.rollout_view(dict(ep))
    v["inProgress"] = v["phase"] in ("Pending", "Progressing", "Paused") or not v["current"]
    return v


def attention(snap: Snapshot) -> list[dict[str, Any]]:
    """What needs a person: failed verification, pending approvals and blocked promotions, revocations,
    endpoints not ready, rollouts paused, failed or aborted."""
    out: list[dict[str, Any]] = []
    for mv in snap.versions:
        ns, spec, ann = _ns(mv), views.spec_of(mv), (mv.get("metadata") or {}).get("annotations") or {}
        where = {"namespace": ns, "model": spec.get("model"), "version": spec.get("version")}
        verified = views.condition(mv, "ArtifactVerified")
        if verified and verified.get("status") == "False":
            out.append({**where, "what": "verification failed", "why": _why(verified), "kind": "bad"})
        stage = views.condition(mv, "StageTransition")
        if stage and stage.get("status") == "False":
            what = "approval pending" if stage.get("reason") == "ApprovalRequired" else "promotion blocked"
            out.append({**where, "what": what, "why": _why(stage), "kind": "warn"})
        if REVOKED_ANNOTATION in ann:
            out.append({**where, "what": "revoked", "why": str(ann[REVOKED_ANNOTATION]), "kind": "bad"})
    for ep in snap.endpoints:
        where = {"namespace": _ns(ep), "model": _model_of(ep), "endpoint": _name(ep)}
        health = endpoint_health(ep)
        if health["ok"] is False:
            kind = "bad" if health["tone"] == "bad" else "warn"
            out.append({**where, "what": f"endpoint {health['text']}", "why": health["why"], "kind": kind})
        ro = rollout_summary(ep)
        if ro and ro["current"] and ro["phase"] in ("Paused", "Failed", "Aborted"):
            kind = "warn" if ro["phase"] == "Paused" else "bad"
            out.append({**where, "what": f"rollout {ro['phase']}", "why": ro["message"], "kind": kind})
        elif ro and ro["current"] and ro["phase"] == "Progressing" and manual_pause(ep, ro):
            out.append({**where, "what": "rollout waits for promotion", "why": ro["message"], "kind": "warn"})
    return sorted(out, key=lambda a: (a["kind"] != "bad", str(a["namespace"]), str(a.get("model"))))


def manual_pause(ep: Obj, ro: Mapping[str, Any]) -> bool:
    """The rollout stands at a pause without a duration: a person has to promote it."""
    steps = ((views.spec_of(ep).get("strategy") or {}).get("canary") or {}).get("steps") or []
    step = ro.get("step")
    if not isinstance(step, int) or not 0 <= step < len(steps):
        return False
    pause = steps[step].get("pause")
    return isinstance(pause, Mapping) and not pause.get("duration")


def _stage_order(stage: str) -> tuple[int, str]:
    return (STAGES.index(stage), "") if stage in STAGES else (len(STAGES), stage)


def _why(c: Mapping[str, Any]) -> str:
    return f"{c.get('reason') or ''}: {c.get('message') or ''}".strip(": ")


# ---- fleet --------------------------------------------------------------------------------------
def fleet_page(snap: Snapshot, now: datetime | None = None) -> dict[str, Any]:
    """Every model (by namespace): its versions per stage, the endpoints serving it (split, health,
    rollout), and the attention list."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in views.list_rows(snap.versions, now=now):
        rows.setdefault((str(r["namespace"] or ""), str(r["model"] or "")), []).append(r)
    eps: dict[tuple[str, str], list[Obj]] = {}
    for e in snap.endpoints:
        eps.setdefault((_ns(e), _model_of(e)), []).append(e)
    keys = set(rows) | set(eps) | {(_ns(m), _name(m)) for m in snap.models}
    models = []
    for ns, model in sorted(keys):
        mine = rows.get((ns, model), [])
        stages: dict[str, list[str]] = {}
        for r in mine:
            stages.setdefault(str(r["stage"] or "pending"), []).append(str(r["version"]))
        endpoints = []
        for ep in sorted(eps.get((ns, model), []), key=_name):
            ro = rollout_summary(ep)
            endpoints.append(
                {
                    "name": _name(ep),
                    "split": live_split(ep),
                    "health": endpoint_health(ep),
                    "rollout": ro if ro and ro["inProgress"] else None,
                }
            )
        models.append(
            {
                "namespace": ns,
                "model": model,
                "versions": len(mine),
                # the built-in order, then a Model's own stages as found
                "stages": [(s, stages[s]) for s in sorted(stages, key=_stage_order)],
                "endpoints": endpoints,
            }
        )
    return {"models": models, "attention": attention(snap), "errors": dict(snap.errors)}


# ---- model --------------------------------------------------------------------------------------
def model_page(snap: Snapshot, ns: str, model: str, now: datetime | None = None) -> dict[str, Any]:
    mvs = _in(snap.versions, ns, model)
    approvals = _in(snap.approvals, ns, model)
    record = next((m for m in snap.models if _ns(m) == ns and _name(m) == model), None)
    rows = {str(r["name"]): r for r in views.list_rows(mvs, now=now)}
    versions = []
    for mv in sorted(
        mvs, key=lambda m: views.version_key(str(views.spec_of(m).get("version"))), reverse=True
    ):
        version = str(views.spec_of(mv).get("version"))
        lin = registry_views.lineage_view(
            mv, [a for a in approvals if (a.get("spec") or {}).get("version") == version], record
        )
        d = views.describe_view(mv)
        metrics = dict(d["metrics"])
        versions.append(
            {
                **rows[_name(mv)],
                "signature": views.signature_text(d["verification"]["signature"]),
                "keyMetrics": dict(list(metrics.items())[:KEY_METRICS]),
                "approvals": lin["approvals"],
                "retention": retention(mv, lin),
                "lineage": d["lineage"],
                "endpoints": lin["endpoints"],
                "stageCondition": views.condition(mv, "StageTransition"),
            }
        )
    return {
        "namespace": ns,
        "model": model,
        "exists": bool(mvs) or record is not None,
        "versions": versions,
        "history": views.history_rows(mvs, model),
        "graph": lineage_graph(mvs, _in(snap.endpoints, ns, model)),
        "endpoints": sorted(_name(e) for e in _in(snap.endpoints, ns, model)),
        "policy": dict((record or {}).get("spec") or {}),
        "errors": dict(snap.errors),
    }


def retention(mv: Obj, lineage: Mapping[str, Any]) -> str:
    """revoked / archived / artifact deleted / registry record kept, as one phrase."""
    ann = (mv.get("metadata") or {}).get("annotations") or {}
    parts = []
    if REVOKED_ANNOTATION in ann:
        parts.append(f"revoked ({ann[REVOKED_ANNOTATION]})")
    if views.status_of(mv).get("stage") == "archived":
        parts.append("archived")
    if ARTIFACT_DELETED_ANNOTATION in ann:
        parts.append("artifact deleted")
    if lineage.get("registry"):
        parts.append("record kept" if lineage["registry"].get("sameDigest") else "record (other digest)")
    return ", ".join(parts) or "live"


# Lineage graph: three columns (what produced it, versions, endpoints); coordinates in SVG units.
COL_X = (10, 330, 650)
BOX_W, BOX_H, ROW_H = 280, 34, 48


def lineage_graph(mvs: Sequence[Obj], endpoints: Sequence[Obj]) -> dict[str, Any]:
    """Nodes (dataset and code commit, version, endpoint) and edges, laid out in three columns; an
    edge version -> endpoint carries its serving periods (status.servingHistory)."""
    sources: dict[str, dict[str, Any]] = {}
    vnodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    enames = sorted({_name(e) for e in endpoints})
    served: dict[str, list[str]] = {}
    ordered = sorted(mvs, key=lambda m: views.version_key(str(views.spec_of(m).get("version"))))
    for mv in ordered:
        spec, st = views.spec_of(mv), views.status_of(mv)
        lin = dict(spec.get("lineage") or {})
        vid = f"v:{spec.get('version')}"
        vnodes.append({"id": vid, "label": str(spec.get("version")), "sub": str(st.get("stage") or "")})
        ds = views.dataset_text(lin.get("dataset")) if lin.get("dataset") else None
        commit = str(lin.get("codeCommit") or "")[:12] or None
        for label, kind in ((ds, "dataset"), (commit, "commit")):
            if label:
                sid = f"{kind}:{label}"
                sources.setdefault(sid, {"id": sid, "label": label, "sub": kind})
                edges.append({"from": sid, "to": vid, "periods": []})
        periods: dict[str, list[str]] = {}
        for p in st.get("servingHistory") or []:
            periods.setdefault(str(p.get("endpoint")), []).append(
                f"{p.get('from') or '?'} - {p.get('to') or 'now'}"
            )
        for e in st.get("servedBy") or []:
            periods.setdefault(str(e.get("endpoint")), [])
        for ep, ps in periods.items():
            if ep not in enames:
                enames.append(ep)
            served.setdefault(ep, [])
            edges.append({"from": vid, "to": f"e:{ep}", "periods": ps})
    enodes = [{"id": f"e:{e}", "label": e, "sub": "endpoint"} for e in enames]
    columns = (list(sources.values()), vnodes, enodes)
    pos: dict[str, tuple[int, int]] = {}
    for x, col in zip(COL_X, columns, strict=True):
        for i, n in enumerate(col):
            n["x"], n["y"] = x, 10 + i * ROW_H
            pos[n["id"]] = (x, n["y"])
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["from"]], pos[e["to"]]
        e["x1"], e["y1"], e["x2"], e["y2"] = x1 + BOX_W, y1 + BOX_H // 2, x2, y2 + BOX_H // 2
    rows = max((len(c) for c in columns), default=0)
    return {
        "nodes": [n for c in columns for n in c],
        "edges": edges,
        "width": COL_X[-1] + BOX_W + 10,
        "height": max(rows, 1) * ROW_H + 20,
        "boxW": BOX_W,
        "boxH": BOX_H,
    }


# ---- endpoint -----------------------------------------------------------------------------------
def endpoint_page(
    snap: Snapshot, ns: str, name: str, at: str | None = None, now: float = 0.0
) -> dict[str, Any]:
    ep = next((e for e in snap.endpoints if _ns(e) == ns and _name(e) == name), None)
    if ep is None:
        return {"namespace": ns, "name": name, "exists": False, "errors": dict(snap.errors)}
    model = _model_of(ep)
    mvs = _in(snap.versions, ns, model)
    status = views.status_view(ep, mvs)
    ro = rollout_summary(ep)
    past = [
        {**r, "version": views.spec_of(mv).get("version")}
        for mv in mvs
        for r in views.status_of(mv).get("rollouts") or []
        if r.get("endpoint") == name
    ]
    return {
        "namespace": ns,
        "name": name,
        "exists": True,
        "model": model,
        "status": status,
        "split": live_split(ep),
        "health": endpoint_health(ep),
        "rollout": ro,
        "timeline": rollout_timeline(ep, ro) if ro else [],
        "plots": measurement_plots(ep, ro) if ro else [],
        "pastRollouts": sorted(past, key=lambda r: str(r.get("at")), reverse=True),
        "which": which_at(ep, at, now) if at else None,
        "errors": dict(snap.errors),
    }


def which_at(ep: Obj, at: str, now: float) -> dict[str, Any]:
    """`kubectl models which --at`'s view, or its refusal as {"error": ...}."""
    try:
        return which_views.which_at_view(ep, which_views.parse_at(at, now))
    except Refused as e:
        return {"error": e.message}


def rollout_timeline(ep: Obj, ro: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The canary's steps, each done / current / to come."""
    steps = ((views.spec_of(ep).get("strategy") or {}).get("canary") or {}).get("steps") or []
    current = ro.get("step")
    out = []
    for i, s in enumerate(steps):
        if "setWeight" in s:
            text = f"set weight {s['setWeight']}%"
        else:
            dur = (s.get("pause") or {}).get("duration")
            text = f"pause {dur}" if dur else "pause until promoted"
        state = "done" if current is not None and i < current else "current" if i == current else "next"
        if ro.get("phase") == "Succeeded":
            state = "done"
        out.append({"index": i + 1, "text": text, "state": state})
    return out


PLOT_W, PLOT_H, PLOT_PAD = 560, 160, 30


def measurement_plots(ep: Obj, ro: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One plot per analysis metric: the canary's values (and the baseline's) over time as SVG points,
    with its thresholds (max, min, baseline + maxIncreaseOverBaseline) as lines."""
    analysis = ((views.spec_of(ep).get("strategy") or {}).get("canary") or {}).get("analysis") or {}
    checks = {str(m.get("name")): m for m in analysis.get("metrics") or []}
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for m in ro.get("measurements") or []:
        by_metric.setdefault(str(m.get("metric")), []).append(m)
    plots = []
    for metric in sorted(set(checks) | set(by_metric)):
        plots.append(_plot(metric, checks.get(metric) or {}, by_metric.get(metric, [])))
    return plots


def _plot(metric: str, check: Mapping[str, Any], ms: list[Mapping[str, Any]]) -> dict[str, Any]:
    values = [float(m["value"]) for m in ms if isinstance(m.get("value"), int | float)]
    bases = [float(m["baseline"]) for m in ms if isinstance(m.get("baseline"), int | float)]
    thresholds: list[tuple[str, float]] = []
    if isinstance(check.get("max"), int | float):
        thresholds.append(("max", float(check["max"])))
    if isinstance(check.get("min"), int | float):
        thresholds.append(("min", float(check["min"])))
    inc = check.get("maxIncreaseOverBaseline")
    if isinstance(inc, int | float) and bases:
        thresholds.append(("baseline + max increase", bases[-1] + float(inc)))
    every = values + bases + [t for _, t in thresholds]
    lo, hi = (min(every), max(every)) if every else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    n = max(len(ms), 2)

    def x(i: int) -> float:
        return round(PLOT_PAD + i * (PLOT_W - 2 * PLOT_PAD) / (n - 1), 1)

    def y(v: float) -> float:
        return round(PLOT_H - PLOT_PAD - (v - lo) * (PLOT_H - 2 * PLOT_PAD) / (hi - lo), 1)

    points = [
        {"x": x(i), "y": y(float(m["value"])), "value": m["value"], "verdict": m.get("verdict"),
         "at": m.get("at"), "message": m.get("message")}
        for i, m in enumerate(ms) if isinstance(m.get("value"), int | float)
    ]  # fmt: skip
    baseline = [
        {"x": x(i), "y": y(float(m["baseline"]))}
        for i, m in enumerate(ms)
        if isinstance(m.get("baseline"), int | float)
    ]
    return {
        "metric": metric,
        "width": PLOT_W,
        "height": PLOT_H,
        "pad": PLOT_PAD,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "baseline": " ".join(f"{p['x']},{p['y']}" for p in baseline),
        "thresholds": [{"label": lbl, "value": v, "y": y(v)} for lbl, v in thresholds],
        "lo": round(lo, 6),
        "hi": round(hi, 6),
        "count": len(ms),
        "first": ms[0].get("at") if ms else None,
        "last": ms[-1] if ms else None,
    }


# ---- diff ---------------------------------------------------------------------------------------
def diff_page(snap: Snapshot, ns: str, model: str, a: str, b: str) -> dict[str, Any]:
    by_name = {_name(m): m for m in _in(snap.versions, ns, model)}
    versions = sorted((str(views.spec_of(m).get("version")) for m in by_name.values()), key=views.version_key)
    left, right = by_name.get(expected_name(model, a)), by_name.get(expected_name(model, b))
    missing = [v for v, o in ((a, left), (b, right)) if o is None and v]
    view = views.diff_view(left, right) if left is not None and right is not None else None
    return {
        "namespace": ns,
        "model": model,
        "a": a,
        "b": b,
        "versions": versions,
        "missing": missing,
        "diff": view,
        "errors": dict(snap.errors),
    }
