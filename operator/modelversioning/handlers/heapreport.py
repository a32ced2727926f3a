"""Where the operator's memory is, on request (for benchmarks and memory investigations).

Off unless MODELVERSIONING_HEAP_REPORT names a file and the process runs with tracemalloc on
(PYTHONTRACEMALLOC=N, N frames per allocation). Then each SIGUSR2 appends one report to that file:
the traced total, RSS, and the biggest allocation sites grouped by their innermost N frames.
"""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from typing import Any

TOP = 40


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def report(path: str, label: str = "") -> None:
    if not tracemalloc.is_tracing():
        return
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"))
    )
    stats = snap.statistics("traceback")
    traced = sum(s.size for s in stats)
    with open(path, "a") as out:
        out.write(
            f"=== {time.strftime('%H:%M:%S')} {label} traced {traced / 2**20:.1f} MiB, "
            f"rss {_rss_mib():.1f} MiB, {len(stats)} sites\n"
        )
        for s in stats[:TOP]:
            out.write(f"{s.size / 2**20:8.2f} MiB {s.count:9d} blocks\n")
            for frame in s.traceback.format()[-2 * min(len(s.traceback), 6) :]:
                out.write(f"      {frame}\n")


def install() -> None:
    path = os.environ.get("MODELVERSIONING_HEAP_REPORT")
    if not path:
        return

    def on_signal(_sig: int, _frame: Any) -> None:
        report(path, "SIGUSR2")

    signal.signal(signal.SIGUSR2, on_signal)
