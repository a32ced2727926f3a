"""Hashing the files of a :class:`~modelversioning.artifacts.listing.ReadPlan` into a Digest.

Bytes are hashed while they are read, ``policy.chunk_size`` at a time, and (with a
:class:`~modelversioning.artifacts.dest_writer.DestWriter`) written out at the same time, by a worker
thread while the next chunk is read (:mod:`~modelversioning.artifacts.pipeline`). The
files of a directory are hashed by ``policy.max_workers`` threads pulling from one list (at most
three chunks in memory per file being read: the one read, one queued, the one hashed); the first error
stops every worker. No more than the read budget
(:func:`~modelversioning.artifacts.limits.read_budget`) is read in all, nothing after the
deadline, and a file whose byte count differs from the size the store reported is never a digest
(:class:`~modelversioning.artifacts.errors.TruncatedReadError`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.dest_writer import DestWriter
from modelversioning.artifacts.errors import TruncatedReadError
from modelversioning.artifacts.io_signature import MAX_MLMODEL_BYTES, is_mlmodel, read_signature
from modelversioning.artifacts.limits import deadline_exceeded, limit_exceeded, read_budget
from modelversioning.artifacts.listing import Entry, ReadPlan
from modelversioning.artifacts.manifest import manifest_digest
from modelversioning.artifacts.pipeline import sink
from modelversioning.artifacts.results import Digest, FileDigest

ProgressCallback = Callable[[int, int | None], None]


class _Progress:
    """Bytes read so far (all files), reported to the callback; serialized across the workers."""

    def __init__(self, callback: ProgressCallback | None, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._callback:
            self._callback(0, self._total)

    def add(self, n: int) -> int:
        with self._lock:
            self._done += n
            if self._callback:
                self._callback(self._done, self._total)
            return self._done


class _Stopped(Exception):
    """Another file failed (or the deadline passed): this one stops without an error of its own."""


@dataclass
class _Hashing:
    """What every file of one artifact is hashed with (shared by the worker threads)."""

    plan: ReadPlan
    policy: ArtifactPolicy
    deadline: float
    shown: str
    budget: int  # bytes that may be read in all
    progress: _Progress
    writer: DestWriter | None
    stop: threading.Event = field(default_factory=threading.Event)
    # the bytes of a model directory's MLmodel file (its I/O signature), kept while it is hashed
    mlmodel: dict[str, bytes] = field(default_factory=dict)

    def file(self, entry: Entry) -> FileDigest:
        """sha256 of one file; never reads past ``budget`` bytes in total (all files, ``progress``).
        The bytes are hashed and written by a :mod:`~modelversioning.artifacts.pipeline` sink while
        the next ones are read."""
        out_path = self.writer.path_for(entry.rel) if self.writer else None
        n = 0
        chunk_size = self.policy.chunk_size
        keep = bytearray() if is_mlmodel(entry.rel) else None
        with contextlib.ExitStack() as stack:  # closed in reverse: the file read, the sink, the output
            out = stack.enter_context(open(out_path, "wb")) if out_path is not None else None
            hashed = sink(out, self.check, entry.size, chunk_size)
            stack.callback(hashed.close)
            f = stack.enter_context(self.plan.fs.open(entry.path, "rb", **self.plan.open_kwargs))
            while True:
                self.check()
                chunk = f.read(chunk_size)
                if not chunk:
                    break
                n += len(chunk)
                if self.progress.add(len(chunk)) > self.budget:
                    raise limit_exceeded(self.shown, f"read more than the allowed {self.budget} bytes")
                hashed.put(chunk)
                if keep is not None and len(keep) <= MAX_MLMODEL_BYTES:
                    keep += chunk[: MAX_MLMODEL_BYTES + 1 - len(keep)]
            sha256 = hashed.digest()
        if entry.size is not None and n != entry.size:
            what = "truncated" if n < entry.size else "longer than reported"
            raise TruncatedReadError(f"{entry.rel}: read {n} of {entry.size} bytes ({what})")
        if keep is not None:
            self.mlmodel[entry.rel] = bytes(keep)
        return FileDigest(entry.rel, sha256, n)

    def check(self) -> None:
        """Raise when another file failed (``_Stopped``) or the deadline passed (LimitExceeded)."""
        if self.stop.is_set():
            raise _Stopped()
        if time.monotonic() > self.deadline:
            timeout = self.policy.timeout_seconds
            raise limit_exceeded(self.shown, f"not verified within artifacts.timeoutSeconds ({timeout:g}s)")


def hash_plan(
    plan: ReadPlan,
    policy: ArtifactPolicy,
    *,
    deadline: float,
    shown: str,
    expected_size: int | None,
    progress: ProgressCallback | None,
    writer: DestWriter | None,
) -> Digest:
    """The digest of the planned files: a file's sha256, or a directory's manifest digest."""
    sizes = [e.size for e in plan.entries]
    total = sum(s for s in sizes if s is not None) if None not in sizes else None
    budget = read_budget(policy, expected_size)
    tracker = _Progress(progress, total)
    tracker.start()
    if writer:
        writer.prepare(plan.kind, [e.rel for e in plan.entries])
    job = _Hashing(plan, policy, deadline, shown, budget, tracker, writer)

    if len(plan.entries) == 1 and plan.kind == "file":
        file_digest = job.file(plan.entries[0])
        return Digest(file_digest.sha256, "file", file_digest.size_bytes, 1, (file_digest,))
    done = _hash_in_parallel(job)
    return Digest(
        manifest_digest((d.path, d.sha256) for d in done),
        "directory",
        sum(d.size_bytes for d in done),
        len(done),
        tuple(done),
        io_signature=read_signature(job.mlmodel),
    )


def _hash_in_parallel(job: _Hashing) -> list[FileDigest]:
    """Every file of ``job.plan``, in its order, hashed by a fixed set of workers pulling the next
    file: no future (or thread) per file. The first error stops the others and is raised."""
    entries = job.plan.entries
    results: list[FileDigest | None] = [None] * len(entries)
    errors: list[BaseException] = []
    next_index = iter(range(len(entries)))
    lock = threading.Lock()

    def work() -> None:
        while not job.stop.is_set():
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = job.file(entries[i])
            except BaseException as e:  # noqa: BLE001 - the first error is raised below
                if not isinstance(e, _Stopped):
                    with lock:
                        errors.append(e)
                job.stop.set()
                return

    workers = [
        threading.Thread(target=work, name="artifact-hash", daemon=True)
        for _ in range(max(1, min(job.policy.max_workers, len(entries))))
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(0.0, job.deadline - time.monotonic()) + 5.0)
    if any(t.is_alive() for t in workers):
        job.stop.set()
        raise deadline_exceeded(job.shown, job.policy)
    if errors:
        raise errors[0]
    done = [d for d in results if d is not None]
    assert len(done) == len(entries)
    return done
