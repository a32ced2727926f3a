"""Controllers' own Prometheus metrics for the peer comparison (bench/peer.py): a scrape as a snapshot,
the difference of two snapshots, and the wait until every controller is quiet before a block.

A snapshot maps (metric name, sorted label pairs) to the value; scraping reads the text format only
(no OpenMetrics extras), which is what Argo Rollouts, Flagger and the operator serve.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

Key = tuple[str, tuple[tuple[str, str], ...]]
Snapshot = dict[Key, float]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Snapshot:
    out: Snapshot = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = value
    return out


def scrape(url: str, timeout: float = 5.0) -> Snapshot:
    """The metrics at `url`; empty when the process does not answer (not started, or gone)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return parse(r.read().decode(errors="replace"))
    except OSError:
        return {}


def delta(before: Snapshot, after: Snapshot) -> Snapshot:
    """after - before for every series of `after` (a series new in `after` counts from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def value(snap: Snapshot, name: str, **labels: str) -> float:
    """The sum of the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in snap.items() if n == name and want <= set(lab))


# ---------------------------------------------------------------------------------------------- ours
def ours_idle(snap: Snapshot) -> bool:
    """The operator's reconcile work queue has nothing queued and nothing running (a requeue waiting
    for its time, such as an analysis interval, is not work)."""
    keys = "modelversioning_workqueue_keys"
    present = any(n == keys for n, _ in snap)
    return present and value(snap, keys, state="queued") == 0 and value(snap, keys, state="running") == 0


def ours_block(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    d = delta(before, after)
    rec = {
        dict(lab).get("kind", ""): int(v)
        for (n, lab), v in d.items()
        if n == "modelversioning_reconcile_duration_seconds_count" and v
    }
    return {
        "reconciles": rec,
        "queue_after": {
            s: value(after, "modelversioning_workqueue_keys", state=s)
            for s in ("queued", "running", "scheduled")
        },
    }


# ---------------------------------------------------------------------------------------------- quiet
def wait_quiet(
    checks: Mapping[str, Callable[[], bool]],
    timeout: float,
    stable: float = 1.0,
    poll: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Until every check holds at once, and has held for `stable` seconds. Per check, how long it took
    (the last time it went from false to true, since the start); `total_s` the whole wait. A check is
    called at most every `poll` seconds (some are API calls)."""
    t0 = clock()
    since: dict[str, float | None] = dict.fromkeys(checks)
    waited: dict[str, float] = dict.fromkeys(checks, 0.0)
    while True:
        now = clock()
        for name, check in checks.items():
            if check():
                if since[name] is None:
                    since[name] = now
                    waited[name] = now - t0
            else:
                since[name] = None
        held = [s for s in since.values() if s is not None]
        if len(held) == len(checks) and now - max(held) >= stable:
            return {"total_s": round(now - t0, 2), **{f"{k}_s": round(v, 2) for k, v in waited.items()}}
        if now - t0 > timeout:
            late = [k for k, s in since.items() if s is None]
            raise RuntimeError(f"not quiet after {timeout:.0f}s: {late} still busy")
        time.sleep(poll)
