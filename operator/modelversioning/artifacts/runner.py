"""Running verifications so that none of them can hurt the operator or the other tenants.

* :class:`FairExecutor`: ``workers`` threads; at most ``per_key`` jobs of one key (the namespace)
  run at once, and waiting jobs start round-robin across keys (FIFO within a key). A namespace that
  registers slow artifacts only ever waits behind itself.
* :func:`verify_in_child`: one verification in a worker process (``python -m
  modelversioning.artifacts.worker``: one request at a time, reused for up to RECYCLE_AFTER
  requests, so Python's start and imports are paid once, not per version), with an address-space
  limit (``RLIMIT_AS`` = ``policy.memory_limit_bytes``), a preferred target for the kernel's OOM
  killer (``oom_score_adj`` 1000: a cgroup OOM takes a verifier, never the operator), and killed at
  ``policy.timeout_seconds`` + a grace period. The request (URI, digest, policy, the Secret's data)
  goes in as a JSON line on stdin, never in argv or the environment; the result comes back as a
  JSON line on stdout. A killed worker, or one that ran out of memory, is ``LimitExceeded``
  (permanent) and is never reused.
* :func:`delete_in_child`: retention's deletion (``artifacts.delete.delete_verified``: re-hash, then
  delete exactly the verified objects) as a request of the same workers, with the same limits.
* :func:`probe_in_child`: rollback readiness's probe (``artifacts.probe.probe_artifact``: is a verified
  artifact still at its URI, by a listing, never the bytes) on the same workers, with the same limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from modelversioning.api import wire as W
from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.delete import DeleteResult, delete_verified
from modelversioning.artifacts.errors import TRANSIENT_REASONS, Reason
from modelversioning.artifacts.probe import ProbeResult, probe_artifact
from modelversioning.artifacts.redact import redact_uri
from modelversioning.artifacts.results import VerifyResult
from modelversioning.artifacts.signature import SignatureCheck, TrustMaterial
from modelversioning.artifacts.verify import verify_artifact

GRACE_SECONDS = 10.0

CHILD_STACK_SIZE = 1024 * 1024  # threads of the child; the default 8 MiB would eat the address space


class FairExecutor:
    """A thread pool with a per-key concurrency cap and round-robin start order across keys."""

    def __init__(self, workers: int, per_key: int, name: str = "verify") -> None:
        self.workers = max(1, workers)
        self.per_key = max(1, per_key)
        self._cond = threading.Condition()
        self._queues: OrderedDict[str, deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]] = (
            OrderedDict()
        )
        self._running: dict[str, int] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def submit_for(self, key: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` as a job of ``key``."""
        future: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._queues.setdefault(key, deque()).append((future, fn, args))
            self._cond.notify()
        return future

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """``concurrent.futures.Executor.submit`` shape: a job of the key ``""``."""
        return self.submit_for("", fn, *args)

    def waiting(self, key: str) -> int:
        with self._cond:
            return len(self._queues.get(key) or ())

    def _next(self) -> tuple[str, Future[Any], Callable[..., Any], tuple[Any, ...]] | None:
        for key, queue in self._queues.items():
            if queue and self._running.get(key, 0) < self.per_key:
                future, fn, args = queue.popleft()
                self._queues.move_to_end(key)  # the next job goes to another key first
                if not queue:
                    del self._queues[key]
                self._running[key] = self._running.get(key, 0) + 1
                return key, future, fn, args
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._next()
            key, future, fn, args = job
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as e:  # noqa: BLE001 - delivered through the future
                        future.set_exception(e)
            finally:
                with self._cond:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                    self._cond.notify_all()

    def shutdown(self, wait: bool = False) -> None:
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for future, _, _ in queue:
                    future.cancel()
            self._queues.clear()
            self._cond.notify_all()
        if wait:
            for t in self._threads:
                t.join()


# ---- the child process ----------------------------------------------------------------------------


def _result(uri: str, expected: str, reason: Reason, message: str, seconds: float) -> VerifyResult:
    return VerifyResult(
        reason=reason,
        uri=redact_uri(uri),
        expected=expected,
        actual=None,
        size_bytes=None,
        files=None,
        duration_seconds=seconds,
        message=message,
        transient=reason in TRANSIENT_REASONS,
    )


RECYCLE_AFTER = 200  # jobs per worker process, then a fresh one (bounds what a long-lived one keeps)
MEMORY_ERROR = "MemoryError"


class _Worker:
    """A verifier process (``python -m modelversioning.artifacts.worker <memory limit>``) that runs
    one request at a time: a JSON line in on stdin, a JSON line out on stdout. Starting Python and
    importing the verifier costs about a second of CPU; a worker pays it once, not per version."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.jobs = 0
        self.timed_out = False
        env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelversioning.artifacts.worker", str(memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )

    def ask(self, request: dict[str, Any], timeout: float) -> str | None:
        """The worker's answer line; None when it did not answer within ``timeout`` (it is then
        killed) or died first."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.jobs += 1
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.timed_out = True
            self.kill()
            return None
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        return line or None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


def _take(memory_limit: int) -> _Worker:
    with _IDLE_LOCK:
        while _IDLE:
            w = _IDLE.pop()
            if w.alive() and w.memory_limit == memory_limit:
                return w
            w.kill()
    return _Worker(memory_limit)


def _give_back(w: _Worker) -> None:
    if not w.alive():
        return
    if w.jobs >= RECYCLE_AFTER:
        w.close()
        return
    with _IDLE_LOCK:
        _IDLE.append(w)


def verify_in_child(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    trust: TrustMaterial | None = None,
) -> VerifyResult:
    """:func:`verify_artifact` in a worker process with a memory limit, killed at the deadline."""
    request = {
        "uri": uri,
        "sha256": expected_sha256,
        "policy": policy.model_dump(mode="json", by_alias=True),
        "secret": dict(secret_data) if secret_data is not None else None,
        "expectedSize": expected_size,
        "trust": trust.to_dict() if trust is not None else None,
    }
    shown = redact_uri(uri)
    start = time.monotonic()
    worker = _take(policy.memory_limit_bytes)
    out = worker.ask(request, policy.timeout_seconds + GRACE_SECONDS)
    seconds = time.monotonic() - start
    if out is not None and out != MEMORY_ERROR:
        try:
            result = _from_dict(json.loads(out))
        except (ValueError, KeyError, TypeError):
            worker.kill()  # garbled: not trusted with another request
        else:
            if result.reason is Reason.LIMIT_EXCEEDED:
                worker.close()  # it came near its limits: the next request gets a fresh one
            else:
                _give_back(worker)
            return result
    if worker.timed_out:
        return _result(
            uri,
            expected_sha256,
            Reason.LIMIT_EXCEEDED,
            f"{shown}: LimitExceeded: not verified within artifacts.timeoutSeconds "
            f"({policy.timeout_seconds:g}s); the verifier was stopped",
            seconds,
        )
    worker.close()  # a MemoryError (it exits), died, or garbled
    code = worker.proc.returncode
    if out == MEMORY_ERROR or code in (-9, 137):
        return _result(
            uri,
            expected_sha256,
            Reason.LIMIT_EXCEEDED,
            f"{shown}: LimitExceeded: the verifier exceeded artifacts.memoryLimitBytes "
            f"({policy.memory_limit_bytes} bytes) and was stopped",
            seconds,
        )
    return _result(
        uri, expected_sha256, Reason.FETCH_FAILED,
        f"{shown}: FetchFailed: the verifier process failed (exit {code})", seconds,
    )  # fmt: skip


def delete_in_child(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    expected_files: int | None = None,
    dry_run: bool = False,
) -> DeleteResult:
    """:func:`~modelversioning.artifacts.delete.delete_verified` in a worker process, with
    verification's limits: the memory limit, maxFiles, maxTotalBytes, and killed after two
    ``timeoutSeconds`` (listing and hashing, then deleting) + a grace period. Never in the operator."""
    request = {
        "op": "delete",
        "uri": uri,
        "sha256": expected_sha256,
        "policy": policy.model_dump(mode="json", by_alias=True),
        "secret": dict(secret_data) if secret_data is not None else None,
        "expectedSize": expected_size,
        "expectedFiles": expected_files,
        "dryRun": dry_run,
    }
    shown = redact_uri(uri)
    worker = _take(policy.memory_limit_bytes)
    out = worker.ask(request, 2 * policy.timeout_seconds + GRACE_SECONDS)
    if out is not None and out != MEMORY_ERROR:
        try:
            result = DeleteResult.from_dict(json.loads(out))
        except (ValueError, KeyError, TypeError):
            worker.kill()
        else:
            if result.refused:
                worker.close()  # it may have come near its limits: the next request gets a fresh one
            else:
                _give_back(worker)
            return result
    if worker.timed_out:
        return DeleteResult(
            False,
            f"{shown}: LimitExceeded: not checked and deleted within artifacts.timeoutSeconds "
            f"({policy.timeout_seconds:g}s, twice); the worker was stopped",
            refused=True,
        )
    worker.close()
    if out == MEMORY_ERROR or worker.proc.returncode in (-9, 137):
        return DeleteResult(
            False,
            f"{shown}: LimitExceeded: the worker exceeded artifacts.memoryLimitBytes "
            f"({policy.memory_limit_bytes} bytes) and was stopped",
            refused=True,
        )
    return DeleteResult(False, f"{shown}: the worker process failed (exit {worker.proc.returncode})")


def probe_in_child(
    uri: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    expected_files: int | None = None,
) -> ProbeResult:
    """:func:`~modelversioning.artifacts.probe.probe_artifact` in a worker process, with verification's
    limits (the memory limit, maxFiles, killed after ``timeoutSeconds`` + a grace period). Never in the
    operator: a hostile store's answer (a huge listing, endless headers) costs a worker, not the operator."""
    request = {
        "op": "probe",
        "uri": uri,
        "policy": policy.model_dump(mode="json", by_alias=True),
        "secret": dict(secret_data) if secret_data is not None else None,
        "expectedSize": expected_size,
        "expectedFiles": expected_files,
    }
    shown = redact_uri(uri)
    worker = _take(policy.memory_limit_bytes)
    out = worker.ask(request, policy.timeout_seconds + GRACE_SECONDS)
    if out is not None and out != MEMORY_ERROR:
        try:
            result = ProbeResult.from_dict(json.loads(out))
        except (ValueError, KeyError, TypeError):
            worker.kill()
        else:
            _give_back(worker)
            return result
    if worker.timed_out:
        return ProbeResult(
            W.PROBE_UNREACHABLE,
            f"{shown}: not answered within artifacts.timeoutSeconds ({policy.timeout_seconds:g}s)",
        )
    worker.close()
    return ProbeResult(
        W.PROBE_UNREACHABLE, f"{shown}: the worker process failed (exit {worker.proc.returncode})"
    )


def _from_dict(d: Mapping[str, Any]) -> VerifyResult:
    return VerifyResult(
        reason=Reason(d["reason"]),
        uri=str(d["uri"]),
        expected=str(d["expected"]),
        actual=d.get("actual"),
        size_bytes=d.get("sizeBytes"),
        files=d.get("files"),
        duration_seconds=float(d.get("durationSeconds") or 0.0),
        message=str(d["message"]),
        transient=bool(d["transient"]),
        kind=d.get("kind"),
        written_to=d.get("writtenTo"),
        layout=d.get("layout"),
        content_digest=d.get("contentDigest"),
        contents=VerifyResult.contents_from(d.get("contents")),
        signature=SignatureCheck.from_dict(d["signature"]) if d.get("signature") else None,
        io_signature=d["ioSignature"] if isinstance(d.get("ioSignature"), dict) else None,
    )


def _limit_self(memory_limit: int) -> None:
    import resource

    threading.stack_size(CHILD_STACK_SIZE)
    with contextlib.suppress(ValueError, OSError):  # a hard limit below ours: keep it
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:  # not Linux
        f.write("1000")


def _probe(request: Mapping[str, Any]) -> ProbeResult:
    return probe_artifact(
        request["uri"],
        policy=ArtifactPolicy.model_validate(request["policy"]),
        secret_data=request.get("secret"),
        expected_size=request.get("expectedSize"),
        expected_files=request.get("expectedFiles"),
    )


def _delete(request: Mapping[str, Any]) -> DeleteResult:
    return delete_verified(
        request["uri"],
        request["sha256"],
        policy=ArtifactPolicy.model_validate(request["policy"]),
        secret_data=request.get("secret"),
        expected_size=request.get("expectedSize"),
        expected_files=request.get("expectedFiles"),
        dry_run=bool(request.get("dryRun")),
    )


def main(argv: list[str] | None = None) -> int:
    """The worker: limits first, then one JSON request per line until stdin closes."""
    args = sys.argv[1:] if argv is None else argv
    _limit_self(int(args[0]))
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            if request.get("op") == "delete":  # retention: delete exactly the verified objects
                answer = json.dumps(_delete(request).to_dict())
            elif request.get("op") == "probe":  # rollback readiness: is it still there (no bytes read)
                answer = json.dumps(_probe(request).to_dict())
            else:
                result = verify_artifact(
                    request["uri"],
                    request["sha256"],
                    policy=ArtifactPolicy.model_validate(request["policy"]),
                    secret_data=request.get("secret"),
                    expected_size=request.get("expectedSize"),
                    trust=TrustMaterial.from_dict(request["trust"]) if request.get("trust") else None,
                )
                answer = json.dumps(result.to_dict())
        except MemoryError:
            answer = MEMORY_ERROR
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
        if answer == MEMORY_ERROR:
            return 3  # its heap may be in any state: the next request gets a fresh worker
    return 0
