"""The operator's heap: few malloc arenas, freed pages handed back to the system after a listing,
and the garbage collector kept off the fleet's long-lived state (frozen) except at chosen times."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import time
from typing import Any

from modelversioning.handlers import heapreport

log = logging.getLogger("modelversioning")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own heap (up to 8 per core), and a burst of work
    spread over the reconcile and verification threads leaves each of them holding freed pages; the
    GIL serialises our allocations anyway, so a couple of heaps are enough."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to limit
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX


def release_memory() -> None:
    """Hand the memory freed by the startup LIST (full objects, decoded pages) back to the system:
    glibc keeps freed heap pages otherwise, and the process would stay as big as its peak. Then move
    what is alive now (kopf's per-object state of the whole fleet, the cache) out of the collector's
    reach: a full collection walks every tracked object while holding the GIL, and at 10,000 / 2,000
    the occasional one stalled everything, a weight change included. Those objects are still freed
    when their last reference goes; only a reference cycle among them would stay."""
    gc.collect()
    hand_back_freed_pages()
    gc.freeze()


def hand_back_freed_pages() -> None:
    """jemalloc (the image's allocator, LD_PRELOAD): purge every arena's unused pages now rather than
    after its decay time; glibc's malloc: malloc_trim. Neither (musl, macOS): nothing to do."""
    mallctl = heapreport.jemalloc_mallctl()
    if mallctl is not None:
        mallctl(b"arena.4096.purge", None, None, None, 0)  # 4096: MALLCTL_ARENAS_ALL
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


SLOW_GC_SECONDS = 0.1
_gc_started: list[float] = []


def watch_gc() -> None:
    """Install the collector hook below (once)."""
    if _watch_gc not in gc.callbacks:
        gc.callbacks.append(_watch_gc)


def _watch_gc(phase: str, info: dict[str, Any]) -> None:
    """After each full collection, freeze what survived it: the next one walks only what was
    allocated since (a restart's listing of 22,000 objects made 74 full collections of 0.1-0.5 s each,
    every one walking everything listed so far). And log a collection that held the GIL for long (a
    pause every reconcile and watch event waited for)."""
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
        return
    took = time.perf_counter() - _gc_started[0] if _gc_started else 0.0  # the collection, not the freeze
    if info.get("generation") == 2:
        gc.freeze()
    if took >= SLOW_GC_SECONDS:
        log.warning(
            "garbage collection of generation %s took %.2fs (%d objects frozen)",
            info.get("generation"), took, gc.get_freeze_count(),
        )  # fmt: skip


UNFREEZE_EVERY = 60  # drift checks between full collections of the frozen heap (an hour by default)


def freeze_heap(cycle: int) -> None:
    """Each drift check: collect the young generations (cheap) and freeze what survives, so a full
    collection never walks the fleet's long-lived state at a random moment. Every UNFREEZE_EVERY-th
    check, one full collection of everything instead (reference cycles among frozen objects that
    became garbage are freed there, at a time of our choosing)."""
    if cycle % UNFREEZE_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()
