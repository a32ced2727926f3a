"""Rendering of ``kubectl models`` views: rich tables for humans (YAML/JSON and the console itself:
:mod:`.terminal`).

Pure: view data (from :mod:`.views` / :mod:`.actions`) in, rich renderables out.
User data is always wrapped in :class:`rich.text.Text`, never parsed as console markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from modelversioning.cli.models.actions import RollbackPlan
from modelversioning.cli.models.views import NONE, served_by_text, signature_text


def _s(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def cell(value: Any, style: str = "") -> Text:
    return Text(_s(value), style=style)


def _table(*columns: str, title: str | None = None) -> Table:
    t = Table(
        box=None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 3, 0, 0),
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
    )
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def _kv(rows: Iterable[tuple[str, Any]]) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(Text(k + ":"), v if isinstance(v, Text) else cell(v))
    return t


def _heading(text: str) -> Text:
    return Text(text, style="bold underline")


def _cond_style(status: Any) -> str:
    return {"True": "green", "False": "red", "Unknown": "yellow"}.get(str(status), "")


def _stage_step(entry: Mapping[str, Any]) -> str:
    if entry.get("event") == "rollout":
        return f"rollout {entry.get('result')} on {entry.get('endpoint')}"
    return f"{entry.get('from') or '(new)'} -> {entry.get('to')}"


# ---- list -------------------------------------------------------------------------------------------
def list_table(rows: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> Table:
    cols = ["MODEL", "VERSION", "REQUESTED", "STAGE", "VERIFIED", "SERVED BY", "AGE"]
    t = _table(*(["NAMESPACE", *cols] if all_namespaces else cols))
    for r in rows:
        pending = r.get("stage") != r.get("requestedStage")
        cells = [
            cell(r.get("model")),
            cell(r.get("version"), "bold"),
            cell(r.get("requestedStage"), "yellow" if pending else ""),
            cell(r.get("stage")),
            cell(r.get("verifiedText"), _cond_style(r.get("verified"))),
            cell(served_by_text(r.get("servedBy") or [])),
            cell(r.get("age")),
        ]
        t.add_row(*([cell(r.get("namespace")), *cells] if all_namespaces else cells))
    return t


# ---- history ----------------------------------------------------------------------------------------
def history_table(rows: Sequence[Mapping[str, Any]], with_version: bool = True) -> Table:
    cols = (
        ["TIME", "VERSION", "FROM -> TO", "ACTOR", "REASON"]
        if with_version
        else ["TIME", "FROM -> TO", "ACTOR", "REASON"]
    )
    t = _table(*cols)
    for r in rows:
        cells = [cell(r.get("at"))]
        if with_version:
            cells.append(cell(r.get("version"), "bold"))
        rollout = r.get("event") == "rollout"
        style = {"Failed": "red", "Aborted": "yellow"}.get(str(r.get("result")), "") if rollout else ""
        cells += [cell(_stage_step(r), style), cell(r.get("actor")), cell(r.get("reason"))]
        t.add_row(*cells)
    return t


# ---- get / describe ---------------------------------------------------------------------------------
def _conditions_table(conds: Sequence[Mapping[str, Any]]) -> Table:
    t = _table("TYPE", "STATUS", "REASON", "MESSAGE")
    for c in conds:
        t.add_row(
            cell(c.get("type")),
            cell(c.get("status"), _cond_style(c.get("status"))),
            cell(c.get("reason")),
            cell(c.get("message")),
        )
    return t


def _mapping_table(data: Mapping[str, Any], key: str, value: str) -> Table:
    t = _table(key, value)
    for k in sorted(data):
        t.add_row(cell(k), cell(data[k]))
    return t


def describe_renderable(v: Mapping[str, Any]) -> Group:
    def section(title: str, body: RenderableType) -> list[RenderableType]:
        return [Text(""), _heading(title), body]

    def table_or(key: str, table: Callable[[], RenderableType], empty: str = NONE) -> RenderableType:
        return table() if v.get(key) else Text(empty)

    parts: list[RenderableType] = [
        _overview_kv(v),
        *section("Artifact", _artifact_kv(v["artifact"], v["verification"])),
        *section("Lineage", _lineage_kv(v["lineage"])),
        *section(
            "Hyperparameters",
            table_or("hyperparameters", lambda: _mapping_table(v["hyperparameters"], "NAME", "VALUE")),
        ),
        *section("Metrics", table_or("metrics", lambda: _mapping_table(v["metrics"], "METRIC", "VALUE"))),
        *section("Runtime", _runtime_kv(v.get("runtime") or {})),
        *section(
            "Stage history", table_or("history", lambda: history_table(v["history"], with_version=False))
        ),
        *section("Conditions", table_or("conditions", lambda: _conditions_table(v["conditions"]))),
        *section(
            "Served by",
            table_or("servedBy", lambda: _served_table(v["servedBy"]), "no endpoint serves this version"),
        ),
        *section("Rollouts", table_or("rollouts", lambda: _rollouts_table(v["rollouts"]))),
    ]
    return Group(*parts)


def _overview_kv(v: Mapping[str, Any]) -> Table:
    stage = Text(_s(v.get("stage")))
    if v.get("requestedStage") != v.get("stage"):
        stage.append(f" (requested: {v.get('requestedStage')})", style="yellow")
    return _kv(
        [
            ("Name", v.get("name")),
            ("Namespace", v.get("namespace")),
            ("Model", v.get("model")),
            ("Version", v.get("version")),
            ("Stage", stage),
            ("Created", v.get("created")),
            *([("Description", v["description"])] if v.get("description") else []),
            *([("Quarantine", _quarantine(v["quarantine"]))] if v.get("quarantine") else []),
        ]
    )


def _quarantine(q: Mapping[str, Any]) -> Text:
    """status.quarantine: in force (red: no traffic, no promotion) or the last lift."""
    if q.get("state") == "Quarantined":
        text = f"{', '.join(q.get('selectors') or [])} by {q.get('by')} at {q.get('at')}: {q.get('reason')}"
        return Text(text, style="red")
    return Text(f"lifted by {q.get('by')} at {q.get('at')}: {q.get('reason')}")


def _artifact_kv(art: Mapping[str, Any], ver: Mapping[str, Any]) -> Table:
    verified = Text(_s(ver.get("status")), style=_cond_style(ver.get("status")))
    if ver.get("reason"):
        verified.append(f" ({ver['reason']})")
    return _kv(
        [
            ("URI", art.get("uri")),
            ("sha256", art.get("sha256")),
            ("Format", art.get("format")),
            ("Size (declared)", art.get("sizeBytes")),
            *([("Credentials", f"Secret {art['secretRef']}")] if art.get("secretRef") else []),
            ("Verified", verified),
            ("Verified digest", ver.get("digest")),
            ("Verified at", ver.get("verifiedAt")),
            ("Size (verified)", ver.get("sizeBytes")),
            ("Files", ver.get("files")),
            *([("Signature", signature_text(ver["signature"]))] if ver.get("signature") else []),
            *(
                [("Message", ver.get("message"))]
                if ver.get("message") and ver.get("status") != "True"
                else []
            ),
        ]
    )


def _lineage_kv(lin: Mapping[str, Any]) -> Table:
    return _kv(
        [
            ("Code repository", lin.get("codeRepository")),
            ("Code commit", lin.get("codeCommit")),
            ("Dataset", lin.get("dataset")),
            *([("Dataset URI", lin["datasetUri"])] if lin.get("datasetUri") else []),
            ("Trained at", lin.get("trainedAt")),
            ("Author", lin.get("author")),
            ("Framework", lin.get("framework")),
            *[(f"Environment {k}", val) for k, val in sorted((lin.get("environment") or {}).items())],
        ]
    )


def _rollouts_table(rows: list[Mapping[str, Any]]) -> Table:
    t = _table("AT", "ENDPOINT", "RESULT", "ANALYSIS")
    for r in rows:
        t.add_row(
            str(r.get("at", "")),
            str(r.get("endpoint", "")),
            str(r.get("result", "")),
            str(r.get("message", "")),
        )
    return t


def _runtime_kv(rt: Mapping[str, Any]) -> Table:
    rows: list[tuple[str, Any]] = [("Image", rt.get("image")), ("Port", rt.get("port", 8080))]
    if rt.get("healthPath"):
        rows.append(("Health path", rt["healthPath"]))
    if rt.get("command"):
        rows.append(("Command", " ".join(rt["command"])))
    if rt.get("args"):
        rows.append(("Args", " ".join(rt["args"])))
    for kind in ("requests", "limits"):
        res = (rt.get("resources") or {}).get(kind) or {}
        if res:
            rows.append((kind.capitalize(), ", ".join(f"{k}={val}" for k, val in sorted(res.items()))))
    for e in rt.get("env") or []:
        rows.append((f"Env {e.get('name')}", e.get("value", "")))
    src = rt.get("source") or {}
    if src:  # resolved from the catalog (status.resolvedRuntime)
        rows.append(("Protocol", rt.get("protocol")))
        rows.append(("From", f"{src.get('kind')} {src.get('name')} (generation {src.get('generation')})"))
    return _kv(rows)


def _served_table(entries: Sequence[Mapping[str, Any]]) -> Table:
    t = _table("ENDPOINT", "VARIANT", "WEIGHT")
    for e in entries:
        t.add_row(
            cell(e.get("endpoint")),
            cell(e.get("variant")),
            cell("mirror" if e.get("mirror") else f"{e.get('weight', 0)}%"),
        )
    return t


# ---- status / which ---------------------------------------------------------------------------------
def _traffic(v: Mapping[str, Any]) -> str:
    if v.get("mirror"):
        return f"mirror {v.get('mirrorPercent', 100)}%"
    return f"{v.get('effectiveWeight', 0)}%"


def status_renderable(view: Mapping[str, Any]) -> Group:
    serving = _serving_table(view)
    parts: list[RenderableType] = [_status_header(view), Text(""), _variants_table(view), Text("")]
    parts.append(serving if serving.row_count else Text("no variant carries live traffic"))
    return Group(*parts)


def _status_header(view: Mapping[str, Any]) -> Table:
    conds = {c["type"]: c for c in view.get("conditions") or []}
    ready = conds.get("Ready")
    ready_text = Text(_s((ready or {}).get("status")), style=_cond_style((ready or {}).get("status")))
    if ready and ready.get("status") != "True":
        ready_text.append(f" ({ready.get('reason')}: {ready.get('message')})")
    return _kv(
        [
            ("Endpoint", f"{view.get('endpoint')} (namespace {view.get('namespace')})"),
            ("Model", view.get("model")),
            ("Router", view.get("router")),
            ("Traffic", view.get("traffic")),
            ("Ready", ready_text),
            *[
                (t, Text(f"{c.get('status')} ({c.get('reason')})", style=_cond_style(c.get("status"))))
                for t, c in conds.items()
                if t != "Ready"
            ],
        ]
    )


def _variants_table(view: Mapping[str, Any]) -> Table:
    show_route = any(v.get("routeWeight") is not None for v in view.get("variants") or [])
    route_col = ["ROUTED"] if show_route else []
    cols = ["VARIANT", "VERSION", "STAGE", "DESIRED", "EFFECTIVE", *route_col, "READY", "ELIGIBLE", "REASON"]
    variants = _table(*cols, title="Variants")
    for v in view.get("variants") or []:
        name = Text(_s(v.get("name")))
        if v.get("mirror"):
            name.append(" (mirror)", style="cyan")
        if v.get("removed"):
            name.append(" (removed)", style="yellow")
        row = [
            name,
            cell(v.get("version"), "bold"),
            cell(v.get("stage")),
            cell("-" if v.get("mirror") else f"{v.get('desiredWeight', 0)}%"),
            cell(_traffic(v), "bold" if v.get("effectiveWeight") else ""),
        ]
        if show_route:
            row.append(cell("-" if v.get("routeWeight") is None else f"{v['routeWeight']}%"))
        replicas = v.get("replicas") if v.get("replicas") is not None else "?"
        row += [
            cell(f"{v.get('readyReplicas', 0)}/{replicas}"),
            cell("yes" if v.get("eligible") else "no", "green" if v.get("eligible") else "red"),
            cell(v.get("reason") if v.get("eligible") else f"{v.get('reason')}: {v.get('message')}"),
        ]
        variants.add_row(*row)
    return variants


def _serving_table(view: Mapping[str, Any]) -> Table:
    serving = _table(
        "TRAFFIC",
        "VARIANT",
        "VERSION",
        "DIGEST (sha256)",
        "CODE COMMIT",
        "DATASET",
        "TRAINED AT",
        title="Serving (who answers each share of traffic)",
    )
    for v in view.get("variants") or []:
        if not v.get("mirror") and not v.get("effectiveWeight"):
            continue
        lin = v.get("lineage") or {}
        digest = Text(_s(v.get("digest")))
        if v.get("digest") and v.get("verifiedDigest") and v["verifiedDigest"] != v["digest"]:
            digest.append(f" (verified {v['verifiedDigest']})", style="red")
        serving.add_row(
            cell(_traffic(v), "bold"),
            cell(v.get("name")),
            cell(v.get("version"), "bold"),
            digest,
            cell(lin.get("codeCommit")),
            cell(lin.get("dataset")),
            cell(lin.get("trainedAt")),
        )
    return serving


# ---- diff -------------------------------------------------------------------------------------------
def _delta(d: float | None, a: Any) -> str:
    if d is None:
        return ""
    out = f"{d:+.6g}"
    if isinstance(a, int | float) and not isinstance(a, bool) and a:
        out += f" ({d / abs(float(a)) * 100:+.1f}%)"
    return out


def diff_table(view: Mapping[str, Any], changed_only: bool = False) -> Table:
    t = _table(
        "",
        "SECTION",
        "KEY",
        str(view.get("a")),
        str(view.get("b")),
        "DELTA",
        title=f"{view.get('model')}: {view.get('a')} -> {view.get('b')}",
    )
    styles = {"*": "yellow", "+": "green", "-": "red"}
    for r in view.get("rows") or []:
        if changed_only and not r.get("changed"):
            continue
        style = styles.get(r.get("change", ""), "")
        t.add_row(
            Text(r.get("change") or "", style=style),
            cell(r.get("section")),
            cell(r.get("key"), style),
            cell(r.get("a")),
            cell(r.get("b"), style),
            Text(_delta(r.get("delta"), r.get("a")), style=style),
        )
    return t


# ---- promote / rollback -----------------------------------------------------------------------------
def history_entries_table(entries: Sequence[Mapping[str, Any]]) -> Table:
    return history_table(entries, with_version=False)


def rollback_table(
    plan: RollbackPlan, versions: Mapping[str, str], observed: Mapping[str, int] | None
) -> Table:
    t = _table("VARIANT", "VERSION", "BEFORE", "AFTER")
    after = observed if observed is not None else plan.after
    for name in plan.after:
        style = "bold green" if name == plan.target else ""
        t.add_row(
            cell(name, style),
            cell(versions.get(name)),
            cell(f"{plan.before.get(name, 0)}%"),
            cell(f"{after.get(name, 0)}%", style),
        )
    return t


def weights_text(weights: Mapping[str, int] | None) -> str:
    if not weights:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(weights.items()))
