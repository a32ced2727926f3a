"""The operator's on-request heap report (handlers/heapreport.py, used by the benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

from modelversioning.handlers import heapreport


def test_a_report_names_the_biggest_allocation_sites(tmp_path: Path) -> None:
    out = tmp_path / "heap.txt"
    tracemalloc.start(2)
    try:
        keep = [bytearray(1 << 20) for _ in range(4)]  # 4 MiB from this line
        heapreport.report(str(out), "test")
    finally:
        tracemalloc.stop()
    text = out.read_text()
    assert text.startswith("=== ") and "test traced" in text and "rss" in text
    assert "test_heapreport.py" in text  # this file's allocation is listed
    assert len(keep) == 4


def test_sigusr2_appends_a_report_only_when_asked(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "heap.txt"
    monkeypatch.delenv("MODELVERSIONING_HEAP_REPORT", raising=False)
    heapreport.install()  # not asked: no handler
    assert signal.getsignal(signal.SIGUSR2) in (signal.SIG_DFL, None)
    monkeypatch.setenv("MODELVERSIONING_HEAP_REPORT", str(out))
    heapreport.install()
    tracemalloc.start()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    assert "SIGUSR2 traced" in out.read_text()


def test_without_tracemalloc_a_report_still_says_where_the_heap_is(tmp_path: Path) -> None:
    out = tmp_path / "heap.txt"
    assert not tracemalloc.is_tracing()
    heapreport.report(str(out), "plain")
    line = out.read_text()
    assert "plain rss" in line and "malloc arena" in line and "traced" not in line  # glibc here


JEMALLOC = sorted(Path("/usr/lib").glob("*/libjemalloc.so.2"))


def test_under_jemalloc_the_report_reads_its_statistics_and_the_purge_hands_pages_back() -> None:
    """As the image runs it (LD_PRELOAD, PYTHONMALLOC=malloc): live bytes are counted, and after a big
    object is freed, release_memory's purge takes the resident size down at once (no decay wait)."""
    assert JEMALLOC, "libjemalloc2 is not installed (bash e2e/build-node.sh --packages)"
    code = (
        "from modelversioning.handlers import heapreport as h, memory\n"
        "keep = [bytes(1000) for _ in range(65536)]\n"  # 64 MiB of small objects
        "a = h.jemalloc_info()\n"
        "del keep\n"
        "memory.hand_back_freed_pages()\n"
        "b = h.jemalloc_info()\n"
        "print(h.heap_summary().split(',')[0], round(a['allocated']), round(b['allocated']),"
        " round(a['resident']), round(b['resident']))\n"
    )
    env = {**os.environ, "LD_PRELOAD": str(JEMALLOC[0]), "PYTHONMALLOC": "malloc",
           "MALLOC_CONF": "narenas:1,dirty_decay_ms:60000,muzzy_decay_ms:60000"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    words = out.stdout.split()
    assert words[:2] == ["jemalloc", "allocated"], out.stdout
    before, after, res_before, res_after = (int(w) for w in words[-4:])
    assert before >= 64 and after < before - 50, out.stdout  # the small objects were counted, then freed
    assert res_after < res_before - 50, out.stdout  # purged at once although decay would wait a minute
