"""Hashing and writing while the next bytes are read (artifacts/pipeline.py, through artifacts/hashing.py
and verify_artifact): the digest is the same whatever the chunk boundaries, with or without ``dest``; a
mismatch lays nothing out; the read budget stops the reading mid-stream; a failing write is an error,
never a hang; a verification cancelled mid-stream leaves no temporary file and no thread behind."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, compute_digest, manifest_digest, pipeline, verify_artifact
from modelversioning.artifacts.dest_writer import DestWriter
from modelversioning.artifacts.pipeline import HashSink, InlineSink, sink

CHUNK = 64 * 1024  # the smallest chunk_size the policy allows: many chunks from small files
WRONG = "0" * 64


def _sinks_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "artifact-sink" and t.is_alive()]


@pytest.fixture(autouse=True)
def no_sink_left_behind() -> Iterator[None]:
    yield
    assert _sinks_alive() == []  # close() joined every worker


# ---- the sink itself --------------------------------------------------------------------------------
def _pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    return [*out, data[at:]] if at < len(data) else out


@pytest.mark.parametrize("sizes", [[1], [7, 1, 65536, 65537, 3], [CHUNK] * 5, [1] * 40])
@pytest.mark.parametrize("threaded", [True, False])
def test_digest_and_output_do_not_depend_on_chunk_boundaries(sizes: list[int], threaded: bool) -> None:
    data = os.urandom(300_001)
    out = io.BytesIO()
    s = HashSink(out, lambda: None, max_queued=CHUNK) if threaded else InlineSink(out)
    try:
        for piece in _pieces(data, sizes):
            s.put(piece)
        assert s.digest() == hashlib.sha256(data).hexdigest()
    finally:
        s.close()
    assert out.getvalue() == data


def test_a_file_of_one_chunk_is_hashed_without_a_thread() -> None:
    assert isinstance(sink(None, lambda: None, CHUNK, CHUNK), InlineSink)
    for size in (CHUNK + 1, None):  # more than one chunk, or a size the store does not report
        s = sink(None, lambda: None, size, CHUNK)
        s.close()
        assert isinstance(s, HashSink)


class _FailingOutput(io.BytesIO):
    def write(self, b: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_write_is_raised_in_the_reader_and_stops_it() -> None:
    s = HashSink(_FailingOutput(), lambda: None, max_queued=2 * CHUNK)
    puts = 0
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            s.put(b"x" * CHUNK)
            puts += 1
        s.digest()
    s.close()
    # the worker fails on the first chunk: the reader is told once the queue (2 chunks) is full again
    assert puts <= 3


class _GatedOutput(io.BytesIO):
    """Each write waits until the gate opens (a slow disk)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def write(self, b: Any) -> int:
        assert self.gate.wait(30)
        return super().write(b)


class _Cancelled(Exception):
    pass


def test_a_reader_waiting_on_a_stuck_writer_is_cancelled_and_the_worker_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "CHECK_SECONDS", 0.01)
    gate, cancelled = threading.Event(), threading.Event()

    def check() -> None:
        if cancelled.is_set():
            raise _Cancelled()

    out = _GatedOutput(gate)
    s = HashSink(out, check, max_queued=30)
    a, b, c, d = (bytes([i]) * 10 for i in range(4))
    for piece in (a, b, c, d):  # a is taken by the worker, which waits in its write; b, c, d are queued
        s.put(piece)
    cancelled.set()
    with pytest.raises(_Cancelled):
        s.put(b"e" * 10)  # 30 bytes are queued while the write waits: only the check ends the wait
    gate.set()
    s.close()
    assert out.getvalue() in (a, a + b, a + b + c, a + b + c + d)  # in order, never e


# ---- through verify_artifact -------------------------------------------------------------------------
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


def test_verify_and_compute_digest_agree_with_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    expected: dict[str, str] = {}
    for size in SIZES:
        data = os.urandom(size)
        (src / f"f{size}.bin").write_bytes(data)
        expected[f"f{size}.bin"] = hashlib.sha256(data).hexdigest()
    policy = ArtifactPolicy(file_roots=[str(tmp_path)], chunk_size=CHUNK)
    for name, sha in expected.items():
        uri = (src / name).as_uri()
        assert compute_digest(uri, policy=policy).sha256 == sha  # the operator's verification
        r = verify_artifact(uri, sha, policy=policy, dest=tmp_path / "one" / name)  # the init container's
        assert r.ok, r.message
        assert (tmp_path / "one" / name / name).read_bytes() == (src / name).read_bytes()
    tree = manifest_digest(sorted(expected.items()))
    assert compute_digest(src.as_uri() + "/", policy=policy).sha256 == tree
    r = verify_artifact(src.as_uri() + "/", tree, policy=policy, dest=tmp_path / "tree")
    assert r.ok and sorted(p.name for p in (tmp_path / "tree").iterdir()) == sorted(expected)


def test_a_mismatch_of_a_many_chunk_file_lays_nothing_out(tmp_path: Path) -> None:
    big = tmp_path / "model.bin"
    big.write_bytes(os.urandom(10 * CHUNK + 3))
    policy = ArtifactPolicy(file_roots=[str(tmp_path)], chunk_size=CHUNK)
    out = tmp_path / "out"
    r = verify_artifact(big.as_uri(), WRONG, policy=policy, dest=out)
    assert r.reason is Reason.DIGEST_MISMATCH
    assert r.actual == hashlib.sha256(big.read_bytes()).hexdigest()
    assert list(out.iterdir()) == []


class _StreamFS(AbstractFileSystem):
    """One file of ``chunks`` chunks of CHUNK bytes, of a size it does not report; records each read."""

    protocol = "streamtest"
    chunks = 10
    reads: list[int] = []

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return {"name": path, "size": None, "type": "file"}

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return _Stream(type(self))


class _Stream(io.RawIOBase):
    def __init__(self, fs: type[_StreamFS]) -> None:
        self.fs, self.left = fs, fs.chunks

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        self.fs.reads.append(n or 0)
        if self.left == 0:
            return b""
        self.left -= 1
        return bytes([self.left % 256]) * CHUNK


@pytest.fixture
def streamfs() -> Iterator[type[_StreamFS]]:
    fsspec.register_implementation("streamtest", _StreamFS, clobber=True)
    _StreamFS.reads, _StreamFS.chunks = [], 10
    yield _StreamFS


STREAM = ArtifactPolicy(allowed_schemes=["streamtest"], chunk_size=CHUNK)


def test_the_read_budget_stops_the_stream_mid_way(streamfs: type[_StreamFS], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = verify_artifact(
        "streamtest://b/model.bin", WRONG, policy=STREAM, dest=out, expected_size=2 * CHUNK + 1
    )
    assert r.reason is Reason.LIMIT_EXCEEDED and "read more than the allowed" in r.message, r.message
    assert len(streamfs.reads) == 3  # the third chunk went past the budget: nothing read after it
    assert list(out.iterdir()) == []


def test_a_failing_write_fails_the_verification(
    streamfs: type[_StreamFS], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DestWriter, "path_for", lambda self, rel: Path("/dev/full"))  # ENOSPC on write
    sha = hashlib.sha256(b"".join(bytes([i % 256]) * CHUNK for i in reversed(range(10)))).hexdigest()
    out = tmp_path / "out"
    r = verify_artifact("streamtest://b/model.bin", sha, policy=STREAM, dest=out)
    assert r.reason is Reason.FETCH_FAILED and "No space left on device" in r.message, r.message
    assert len(streamfs.reads) < streamfs.chunks  # stopped at the error, not at the end of the file
    assert list(out.iterdir()) == []


def test_a_verification_cancelled_mid_stream_leaves_no_temporary_file(
    streamfs: type[_StreamFS], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    seen: list[list[str]] = []

    def progress(done: int, total: int | None) -> None:
        if done >= 2 * CHUNK:  # mid-stream: the temporary file is there
            seen.append([p.name for p in out.iterdir()])
            raise _Cancelled()

    r = verify_artifact("streamtest://b/model.bin", WRONG, policy=STREAM, dest=out, progress=progress)
    assert not r.ok and r.reason is Reason.FETCH_FAILED
    assert len(seen) == 1 and len(seen[0]) == 1 and ".mv-partial-" in seen[0][0]
    assert list(out.iterdir()) == []
