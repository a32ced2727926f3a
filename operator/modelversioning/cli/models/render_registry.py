"""Rendering of ``kubectl models search | lineage``: the registry views (:mod:`.registry_views`) as
rich tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table

from modelversioning.cli.models.views import signature_text


def search_table(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    cols = ["NAMESPACE", "MODEL", "VERSION", "STAGE", "AUTHOR", "DATASET", "COMMIT", "METRICS", "TAGS"]
    for c in cols:
        t.add_column(c)
    for r in rows:
        figures = {f"served.{k}": v for k, v in (r.get("served") or {}).items()}
        shown = {k: r["metrics"][k] for k in (metric_names or r["metrics"]) if k in r["metrics"]}
        shown |= {k: figures[k] for k in metric_names if k in figures}
        t.add_row(
            str(r["namespace"]), str(r["model"]), str(r["version"]), str(r["stage"] or "<none>"),
            str(r["author"] or "<none>"), str(r["dataset"]), str(r["codeCommit"] or "")[:10],
            " ".join(f"{k}={v:g}" for k, v in shown.items()), ",".join(r["tags"]) or "<none>",
        )  # fmt: skip
    return t


_FIGURES = (
    ("REQUESTS", "requests", "{:.0f}"),
    ("ERRORS", "errorRatio", "{:.2%}"),
    ("P50", "latencyP50Seconds", "{:.3f}s"),
    ("P99", "latencyP99Seconds", "{:.3f}s"),
)


def compare_table(view: Mapping[str, Any]) -> Group:
    """Versions side by side: stage, offline metrics, production figures (``-`` unknown, never 0),
    KPIs; what is incomplete below the table."""
    rows = view["versions"]
    metrics = sorted({k for r in rows for k in r["metrics"]})
    kpis = sorted({k for r in rows for k in r["production"] if k.startswith("kpi.")})
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in ["VERSION", "STAGE", *metrics, *(h for h, _, _ in _FIGURES), *(k.upper() for k in kpis)]:
        t.add_column(c)
    for r in rows:
        p = r["production"]
        t.add_row(
            str(r["version"]),
            str(r["stage"] or "<none>"),
            *(f"{r['metrics'][m]:g}" if m in r["metrics"] else "-" for m in metrics),
            *(fmt.format(p[k]) if k in p else "-" for _, k, fmt in _FIGURES),
            *(f"{p[k]:g}" if k in p else "-" for k in kpis),
        )
    notes = [f"{r['version']}: incomplete: {why}" for r in rows for why in r["incomplete"]]
    return Group(t, *notes) if notes else Group(t)


def lineage_renderable(v: Mapping[str, Any]) -> Group:
    lin = v["producedBy"]
    ds = lin.get("dataset") or {}
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    none = "<none>"
    art = v["artifact"]
    gone = "  (deleted from storage)" if art["deleted"] else ""
    hyper = " ".join(f"{a}={b}" for a, b in (lin.get("hyperparameters") or {}).items())
    trained = (
        f"{lin.get('trainedAt') or none} by {lin.get('author') or none} with {lin.get('framework') or none}"
    )
    for k, val in (
        ("Model", f"{v['model']} {v['version']}  ({v['stage'] or none})"),
        ("Code", f"{lin.get('codeRepository') or none} @ {lin.get('codeCommit')}"),
        ("Dataset", f"{ds.get('name')} {ds.get('version') or ''} {str(ds.get('sha256') or '')[:12]}".strip()),  # noqa: E501
        ("Trained", trained),
        ("Hyperparameters", hyper or none),
        ("Artifact", f"{art['uri']} sha256:{art['sha256'][:12]}{gone}"),
        ("Signed", signature_text(v.get("signature"))),
        ("Metrics", " ".join(f"{a}={b:g}" for a, b in v["metrics"].items())),
        ("First registered", (v["registry"] or {}).get("firstSeen") or "<no Model>"),
    ):  # fmt: skip
        head.add_row(k, str(val))
    parts: list[Any] = [head]
    stages = Table(title="Stages", box=None, header_style="bold", title_justify="left")
    for c in ("FROM", "TO", "AT", "ACTOR", "APPROVED BY", "REASON"):
        stages.add_column(c)
    for h in v["stages"]:
        stages.add_row(
            h.get("from") or "(new)",
            h.get("to", ""),
            h.get("at", ""),
            h.get("actor", ""),
            ",".join(h.get("approvedBy") or []),
            h.get("reason", ""),
        )
    parts.append(stages)
    if v["approvals"]:
        ap = Table(title="Approvals", box=None, header_style="bold", title_justify="left")
        for c in ("STAGE", "APPROVER", "AT", "COMMENT"):
            ap.add_column(c)
        for a in v["approvals"]:
            ap.add_row(str(a["stage"]), str(a["approver"]), str(a["at"]), str(a.get("comment") or ""))
        parts.append(ap)
    ep = Table(title="Endpoints", box=None, header_style="bold", title_justify="left")
    for c in ("ENDPOINT", "WHEN", "UNTIL", "WHAT"):
        ep.add_column(c)
    for e in v["endpoints"]:
        ep.add_row(str(e["endpoint"]), str(e["at"]), str(e.get("until") or ""), str(e["what"]))
    if not v["endpoints"]:
        ep.add_row("<none>", "", "", "")
    parts.append(ep)
    return Group(*parts)
