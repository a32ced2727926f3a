"""Rendering of the fleet views (:mod:`.fleet_views`): one row per region and variant; an unknown
region is red and says why, never a blank that reads as healthy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def _table(*cols: str) -> Table:
    t = Table(box=None, pad_edge=False)
    for c in cols:
        t.add_column(c)
    return t


def _region_cell(r: Mapping[str, Any]) -> Text:
    text = Text(str(r["region"]), style="bold")
    if r.get("statusRegion") and r["statusRegion"] != r["region"]:
        text.append(f" (operator says {r['statusRegion']})", style="yellow")
    return text


def which_fleet_renderable(view: Mapping[str, Any]) -> Group:
    t = _table("REGION", "VARIANT", "VERSION", "WEIGHT", "READY", "STAGE", "SHA256", "ROLLOUT", "ENDPOINT")
    for r in view["regions"]:
        if r["state"] != "Known":
            t.add_row(_region_cell(r), "-", "-", "-", "-", "-", "-", "-",
                      Text(f"{r['state']}: {r.get('error')}", style="red"))  # fmt: skip
            continue
        rollout = r.get("rollout") or "-"
        if rollout in ("Failed", "Aborted"):
            rollout = Text(rollout, style="red")
        for i, v in enumerate(r["variants"] or [{}]):
            weight = "mirror" if v.get("mirror") else f"{v.get('effectiveWeight', 0)}%"
            t.add_row(
                _region_cell(r) if i == 0 else "",
                str(v.get("name", "-")),
                Text(str(v.get("version", "-")), style="bold" if v.get("effectiveWeight") else ""),
                weight,
                f"{v.get('readyReplicas', 0)}/{v.get('replicas') if v.get('replicas') is not None else '?'}",
                str(v.get("stage") or "-"),
                str(v.get("digest") or "-")[:12],
                rollout if i == 0 else "",
                Text(
                    f"Ready={r.get('ready') or 'Unknown'}",
                    style="green" if r.get("ready") == "True" else "red",
                )
                if i == 0
                else "",
            )
    parts: list[Any] = [Text(f"{view['endpoint']}: what serves where", style="bold"), t]
    if view.get("unknown"):
        parts.append(Text(f"unknown: {', '.join(view['unknown'])} could not be read; what they serve is not "
                          "known (exit 1)", style="red"))  # fmt: skip
    if view.get("mismatched"):
        parts.append(Text(f"the operator of {', '.join(view['mismatched'])} reports another region "
                          "(status.region): check the contexts", style="yellow"))  # fmt: skip
    return Group(*parts)


def which_fleet_at_renderable(view: Mapping[str, Any]) -> Group:
    t = _table("REGION", "VARIANT", "VERSION", "WEIGHT", "SHA256", "FROM", "UNTIL")
    for r in view["regions"]:
        if r["state"] != "Known":
            t.add_row(
                _region_cell(r), "-", "-", "-", "-", "-", Text(f"{r['state']}: {r.get('error')}", style="red")
            )
            continue
        for i, v in enumerate(r.get("variants") or [{}]):
            w = v.get("maxWeight") if r.get("coarse") else v.get("weight")
            first = i == 0
            t.add_row(
                _region_cell(r) if first else "",
                str(v.get("variant", "-")),
                str(v.get("version", "-")),
                f"{'<=' if r.get('coarse') else ''}{w}%",
                str(v.get("digest") or "-")[:12],
                str(r.get("from") or "-") if first else "",
                str(r.get("until") or "now") if first else "",
            )
    parts: list[Any] = [Text(f"{view['endpoint']} at {view.get('at') or '?'}", style="bold"), t]
    if view.get("unknown"):
        parts.append(Text(f"unknown: {', '.join(view['unknown'])} could not be read (exit 1)", style="red"))
    return Group(*parts)


def lineage_fleet_renderable(view: Mapping[str, Any]) -> Group:
    t = _table("REGION", "STAGE", "ENDPOINT/VARIANT", "FROM", "TO")
    for r in view["regions"]:
        if r["state"] != "Known":
            t.add_row(_region_cell(r), "-", Text(f"{r['state']}: {r.get('error')}", style="red"), "-", "-")
            continue
        periods = r.get("servingHistory") or [{}]
        for i, p in enumerate(periods):
            ev = (
                f"{p['endpoint']}/{p['variant']}{' (mirror)' if p.get('mirror') else ''}"
                if p
                else "never served"
            )
            t.add_row(_region_cell(r) if i == 0 else "", str(r.get("stage") or "-") if i == 0 else "", ev,
                      str(p.get("from") or "-"), str(p.get("to") or ("serving" if p else "-")))  # fmt: skip
    parts: list[Any] = [
        Text(f"{view['model']} {view['version']}: serving periods per region", style="bold"),
        t,
    ]
    if view.get("unknown"):
        parts.append(Text(f"unknown: {', '.join(view['unknown'])} could not be read (exit 1)", style="red"))
    return Group(*parts)
