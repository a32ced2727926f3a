"""Rendering of ``kubectl models rollout status``: the rollout view (:mod:`.rollout_views`) as a rich
renderable (phase, step, weights, the last manual action and each analysis run)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelversioning.cli.models.rollout_views import DONE, last_action_text


def rollout_renderable(view: dict[str, Any]) -> Any:
    head = Text.assemble(
        (f"{view['endpoint']}", "bold"),
        f"  canary {view['canary']} vs {view['baseline']}  ",
        (
            view["phase"],
            "green" if view["phase"] == "Succeeded" else "red" if view["phase"] in DONE else "yellow",
        ),
        f"  step {view['step']}/{view['steps']}",
        f"  failures {view['failures']}  inconclusive {view['inconclusive']}",
    )
    weights = Table(box=None, pad_edge=False)
    for col in ("variant", "declared", "step", "effective", "start"):
        weights.add_column(col)
    for name, d in view["declared"].items():
        weights.add_row(
            name,
            f"{d}%",
            f"{view['stepWeights'].get(name, '-')}",
            f"{view['effective'].get(name, 0)}%",
            f"{view['startWeights'].get(name, '-')}",
        )
    runs = Table(title="analysis", box=None, pad_edge=False)
    for col in ("at", "metric", "value", "baseline", "verdict", "why"):
        runs.add_column(col)
    for m in view["measurements"][-10:]:
        value = "-" if m.get("value") is None else f"{m['value']:.4g}"
        base = "-" if m.get("baseline") is None else f"{m['baseline']:.4g}"
        runs.add_row(
            str(m.get("at", "")), m.get("metric", ""), value, base, m.get("verdict", ""), m.get("message", "")
        )
    return Group(
        head,
        Text(view["message"]),
        Text(last_action_text(view.get("lastAction"))),
        weights,
        runs if view["measurements"] else Text("no measurements yet"),
    )
