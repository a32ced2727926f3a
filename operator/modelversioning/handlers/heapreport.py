"""Where the operator's memory is, on request (for benchmarks and memory investigations).

Off unless MODELVERSIONING_HEAP_REPORT names a file. Then each SIGUSR2 appends one report to that
file: RSS and the allocator's heap (jemalloc's statistics, or glibc's mallinfo2), which tells live
memory from memory freed but not handed back; and with tracemalloc on (PYTHONTRACEMALLOC=N, N frames per
allocation) the traced total and the biggest allocation sites grouped by their innermost N frames.
"""

from __future__ import annotations

import ctypes
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes' own declaration
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )  # fmt: skip
    ]


def malloc_info() -> dict[str, float] | None:
    """glibc's heap in MiB: `arena` (heap from brk/arenas), `in_use`, `free` (freed, still mapped),
    `mmapped` (large blocks); None where there is no glibc mallinfo2 (musl, macOS, glibc < 2.33)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    mi = fn()
    mib = 2**20
    return {"arena": mi.arena / mib, "in_use": mi.uordblks / mib, "free": mi.fordblks / mib,
            "mmapped": mi.hblkhd / mib}  # fmt: skip


def jemalloc_mallctl() -> Any | None:
    """jemalloc's mallctl(name, oldp, oldlenp, newp, newlen) when jemalloc is the allocator (the image
    preloads it), else None."""
    try:
        fn = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def jemalloc_info() -> dict[str, float] | None:
    """jemalloc's heap in MiB (when it is the allocator, as in the image): `allocated` (live),
    `active` (pages holding live objects), `resident`, `retained` (unmapped, kept as address space)."""
    mallctl = jemalloc_mallctl()
    if mallctl is None:
        return None
    epoch = ctypes.c_uint64(1)
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))  # refresh the statistics
    out: dict[str, float] = {}
    for key in ("allocated", "active", "resident", "retained"):
        value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        if mallctl(f"stats.{key}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
            return None  # built without statistics
        out[key] = value.value / 2**20
    return out


def heap_summary() -> str:
    je = jemalloc_info()
    if je:
        return (
            f"jemalloc allocated {je['allocated']:.1f} MiB, active {je['active']:.1f}, "
            f"resident {je['resident']:.1f}, retained {je['retained']:.1f}"
        )
    mi = malloc_info()
    if mi:
        return (
            f"malloc arena {mi['arena']:.1f} MiB (in use {mi['in_use']:.1f}, free {mi['free']:.1f}), "
            f"mmapped {mi['mmapped']:.1f} MiB"
        )
    return "no allocator statistics"


def report(path: str, label: str = "") -> None:
    heap = heap_summary()
    if not tracemalloc.is_tracing():
        with open(path, "a") as out:
            out.write(f"=== {time.strftime('%H:%M:%S')} {label} rss {_rss_mib():.1f} MiB, {heap}\n")
        return
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"))
    )
    stats = snap.statistics("traceback")
    traced = sum(s.size for s in stats)
    with open(path, "a") as out:
        out.write(
            f"=== {time.strftime('%H:%M:%S')} {label} traced {traced / 2**20:.1f} MiB, "
            f"rss {_rss_mib():.1f} MiB, {heap}, {len(stats)} sites\n"
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
