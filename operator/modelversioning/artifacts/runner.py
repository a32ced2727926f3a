"""Running verifications so that none of them can hurt the operator or the other tenants.

* :class:`FairExecutor`: ``workers`` threads; at most ``per_key`` jobs of one key (the namespace)
  run at once, and waiting jobs start round-robin across keys (FIFO within a key). A namespace that
  registers slow artifacts only ever waits behind itself.
* :func:`verify_in_child`: one verification in a child process (``python -m
  modelversioning.artifacts.runner``), with an address-space limit (``RLIMIT_AS`` =
  ``policy.memory_limit_bytes``), a preferred target for the kernel's OOM killer
  (``oom_score_adj`` 1000: a cgroup OOM takes a verifier, never the operator), and killed at
  ``policy.timeout_seconds`` + a grace period. The request (URI, digest, policy, the Secret's data)
  goes in on stdin, never in argv or the environment; the result comes back as JSON on stdout.
  A killed child, or one that ran out of memory, is ``LimitExceeded`` (permanent).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts.errors import TRANSIENT_REASONS, Reason
from modelversioning.artifacts.redact import redact_uri
from modelversioning.artifacts.verify import VerifyResult, verify_artifact

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


def verify_in_child(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    env: Mapping[str, str] | None = None,
) -> VerifyResult:
    """:func:`verify_artifact` in a child process with a memory limit, killed at the deadline."""
    request = {
        "uri": uri,
        "sha256": expected_sha256,
        "policy": policy.model_dump(mode="json", by_alias=True),
        "secret": dict(secret_data) if secret_data is not None else None,
        "expectedSize": expected_size,
    }
    child_env = {**(os.environ if env is None else env), "MALLOC_ARENA_MAX": "2", "PYTHONUNBUFFERED": "1"}
    shown = redact_uri(uri)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelversioning.artifacts.runner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(
            json.dumps(request).encode(), timeout=policy.timeout_seconds + GRACE_SECONDS
        )
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return _result(
            uri,
            expected_sha256,
            Reason.LIMIT_EXCEEDED,
            f"{shown}: LimitExceeded: not verified within artifacts.timeoutSeconds "
            f"({policy.timeout_seconds:g}s); the verifier was stopped",
            time.monotonic() - start,
        )
    seconds = time.monotonic() - start
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return _from_dict(json.loads(lines[-1]))
        except (ValueError, KeyError, TypeError):
            pass
    stderr = err.decode(errors="replace")
    if "MemoryError" in stderr or proc.returncode in (-9, 137):
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
        f"{shown}: FetchFailed: the verifier process failed (exit {proc.returncode})", seconds,
    )  # fmt: skip


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
    )


def _limit_self(memory_limit: int) -> None:
    import resource

    threading.stack_size(CHILD_STACK_SIZE)
    with contextlib.suppress(ValueError, OSError):  # a hard limit below ours: keep it
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:  # not Linux
        f.write("1000")


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    policy = ArtifactPolicy.model_validate(request["policy"])
    _limit_self(policy.memory_limit_bytes)
    try:
        result = verify_artifact(
            request["uri"],
            request["sha256"],
            policy=policy,
            secret_data=request.get("secret"),
            expected_size=request.get("expectedSize"),
        )
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        return 3
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
