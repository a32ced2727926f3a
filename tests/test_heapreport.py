"""The operator's on-request heap report (handlers/heapreport.py, used by the benchmarks)."""

from __future__ import annotations

import os
import signal
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
