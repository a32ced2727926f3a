"""A server the harness runs as a child process on a free port (versitygw, docker-registry): started with
retries (the port may be taken between choosing and binding it), ready when it answers, stopped with the
harness (it dies with its parent), its log's tail in every error."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    os.setpgrp()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildServer:
    """Subclasses set ``log_path`` and ``host``, and say how to run (``_command``), when the server is up
    (``_answers``) and what to remove when it stops (``_cleanup``)."""

    host = "127.0.0.1"
    what = "server"
    error: type[Exception] = RuntimeError
    poll_seconds = 0.05

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """argv and environment, once ``self.port`` is chosen."""
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """What to remove after the process is gone (temporary directories)."""

    def _start(self, timeout: float) -> None:
        last = ""
        for _attempt in range(3):  # the port may be taken between choosing and binding it
            self.port = free_port(self.host)
            argv, env = self._command()
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    preexec_fn=die_with_parent,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return
                time.sleep(self.poll_seconds)
            last = self.tail()
            self._terminate()
        raise self.error(f"{self.what} did not come up on {self.host}:{self.port}:\n{last}")

    def _terminate(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self._terminate()
        self._cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
