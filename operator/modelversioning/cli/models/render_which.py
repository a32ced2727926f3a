"""Rendering of ``kubectl models which ENDPOINT --at TIME``: the view of :mod:`.which_views` as a rich
renderable (the moment, the period it falls in and why it began, then one row per version)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def which_at_renderable(view: dict[str, Any]) -> Any:
    until = view.get("until") or "now"
    head = Text.assemble((view["endpoint"], "bold"), f" at {view['at']}: ")
    if view["coarse"]:
        head.append(f"one or more of these served between {view['from']} and {until}", style="yellow")
    else:
        head.append(f"served from {view['from']} until {until}")
        head.append(f" ({view['cause']}{': ' + view['detail'] if view.get('detail') else ''})", style="dim")
    parts: list[Any] = [head]
    if view.get("closed"):
        parts.append(Text(f"closed: every request was answered 503 ({view['closed']})", style="red"))
    table = Table(box=None, pad_edge=False)
    weight = "max weight" if view["coarse"] else "weight"
    for col in ("variant", "version", weight, "sha256", "slot"):
        table.add_column(col)
    for v in view["variants"]:
        w = v["maxWeight"] if view["coarse"] else v["weight"]
        mirror = " (mirror)" if v.get("mirror") else ""
        table.add_row(v["variant"] + mirror, v["version"], f"{w}%", v["digest"][:12], v.get("slot") or "-")
    m = view.get("mirror")
    if m:
        table.add_row(f"{m['variant']} (mirror)", m["version"], f"{m['percent']}% copies", m["digest"][:12],
                      m["slot"])  # fmt: skip
    if view["variants"] or m:
        parts.append(table)
    if view.get("note"):
        parts.append(Text(view["note"], style="yellow"))
    return Group(*parts)
