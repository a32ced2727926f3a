"""Hashing (and writing) a file's bytes while the next ones are read.

:func:`sink` gives the reader of one file a :class:`HashSink` -- a worker thread that hashes each chunk
and writes it to the output (the temporary file of a
:class:`~modelversioning.artifacts.dest_writer.DestWriter`), fed through a queue of at most
``max_queued`` bytes (one chunk's worth, however the store cuts its reads) -- or, for a file of one
chunk, an :class:`InlineSink` that does the same in the reader's thread. The reader reads chunk
``k+1`` from the store while the worker hashes and writes chunk ``k`` (hashlib and file writes release
the GIL on large buffers), so a download runs at the speed of its slowest stage instead of the sum of
the three.

Both give the same digest as hashing in the reader's thread: the same bytes in the same order. Nothing
waits without a bound: while the queue is full or the worker finishes, the reader calls its
``check`` (which raises at the deadline or when the verification is stopped) every
:data:`CHECK_SECONDS`; an error of the worker (a failed write) is raised in the reader at its next
``put`` or at ``digest``; :meth:`HashSink.close` stops the worker, so the caller can remove the
temporary file. Nothing here moves a byte into place: that is the caller's, after the digest matched.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from typing import BinaryIO, Protocol

CHECK_SECONDS = 0.5  # how often a waiting reader checks its deadline and the stop signal
JOIN_SECONDS = 5.0  # how long close() waits for a write in progress

Check = Callable[[], None]


class Sink(Protocol):
    def put(self, chunk: bytes) -> None: ...
    def digest(self) -> str: ...
    def close(self) -> None: ...


class InlineSink:
    """Hash and write each chunk in the caller's thread (a file of one chunk: no thread to start)."""

    def __init__(self, out: BinaryIO | None) -> None:
        self._h = hashlib.sha256()
        self._out = out

    def put(self, chunk: bytes) -> None:
        self._h.update(chunk)
        if self._out is not None:
            self._out.write(chunk)

    def digest(self) -> str:
        return self._h.hexdigest()

    def close(self) -> None:
        pass


class HashSink:
    """Hash and write the chunks given to :meth:`put` in a worker thread (see the module docstring)."""

    def __init__(self, out: BinaryIO | None, check: Check, *, max_queued: int) -> None:
        self._h = hashlib.sha256()
        self._out = out
        self._check = check
        self._max_queued = max_queued  # a chunk is queued when the queue is empty, whatever its size
        self._queued = 0  # bytes
        self._chunks: deque[bytes | None] = deque()  # None: the end of the file
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._done = False  # the worker hashed (and wrote) everything up to the end
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="artifact-sink", daemon=True)
        self._thread.start()

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits while the queue is full. Raises the worker's error, or ``check``'s."""
        with self._cond:
            while self._chunks and self._queued + len(chunk) > self._max_queued and self._error is None:
                self._wait()
            self._raise_error()
            self._chunks.append(chunk)
            self._queued += len(chunk)
            self._cond.notify_all()

    def digest(self) -> str:
        """The sha256 of every chunk, once the worker has hashed (and written) the last one."""
        with self._cond:
            self._chunks.append(None)
            self._cond.notify_all()
            while not self._done and self._error is None:
                self._wait()
            self._raise_error()
        return self._h.hexdigest()

    def close(self) -> None:
        """Stop the worker (queued chunks are dropped) and wait, bounded, for a write in progress."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._queued = 0
            self._cond.notify_all()
        self._thread.join(JOIN_SECONDS)

    def _wait(self) -> None:
        """Wait for the worker, giving ``check`` its say every CHECK_SECONDS (the lock is held)."""
        if not self._cond.wait(CHECK_SECONDS):
            self._cond.release()  # check without the lock: it may take its time
            try:
                self._check()
            finally:
                self._cond.acquire()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    chunk = self._chunks.popleft()
                    self._queued -= len(chunk or b"")
                    self._cond.notify_all()
                if chunk is None:
                    break
                self._h.update(chunk)
                if self._out is not None:
                    self._out.write(chunk)
            with self._cond:
                self._done = True
                self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - raised in the reader's thread
            with self._cond:
                self._error = e
                self._cond.notify_all()


def sink(out: BinaryIO | None, check: Check, size: int | None, chunk_size: int) -> Sink:
    """A :class:`HashSink` for a file of more than one chunk (or of unknown size), else an
    :class:`InlineSink`."""
    if size is not None and size <= chunk_size:
        return InlineSink(out)
    return HashSink(out, check, max_queued=chunk_size)
