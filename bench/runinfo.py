"""Helpers of bench/run.py: the machine's description, --set parsing, the memory curve, the results file."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import yaml


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_mib"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return info


def operator_settings(pairs: list[str]) -> dict[str, Any]:
    """--set serving.reconcileWorkers=16 --set verification.workers=4 -> nested settings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def memory_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": steps}
    for prev, cur in zip(steps, steps[1:], strict=False):
        d_obj = (cur["versions"] + cur["endpoints"]) - (prev["versions"] + prev["endpoints"])
        if d_obj > 0:
            cur["kib_per_object"] = round((cur["rss_mib"] - prev["rss_mib"]) * 1024 / d_obj, 2)
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        d_obj = (last["versions"] + last["endpoints"]) - (first["versions"] + first["endpoints"])
        growth = (last["rss_mib"] - first["rss_mib"]) * 1024
        out["kib_per_object"] = round(growth / d_obj, 2) if d_obj else 0.0
    return out


def memory_steps(spec: str) -> list[tuple[int, int]]:
    """--memory-steps '2000:400,5000:1000' -> [(2000, 400), (5000, 1000)]."""
    steps = []
    for part in (spec or "").split(","):
        if part.strip():
            v, _, e = part.partition(":")
            steps.append((int(v), int(e or 0)))
    return steps


class Results:
    """The results file, written after every section (a run cut short keeps what it measured)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "sections": {}, "setup": {}, "targets": []}

    def section(self, name: str, value: dict[str, Any]) -> None:
        self.data["sections"][name] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(self.data), indent=2, sort_keys=False) + "\n")
        tmp.replace(self.path)


def _clean(x: Any) -> Any:
    """NaN/inf are not JSON: null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x
