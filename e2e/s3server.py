"""A real S3-compatible server for tests: versitygw (posix backend) on a loopback port.

    with S3Server.start() as s3:          # finds versitygw, picks a free port, waits until it answers
        s3.create_bucket("models")
        s3.put("models/m/model.onnx", b"...")
        verify_artifact("s3://models/m/model.onnx", sha, secret_data=s3.secret_data())

The binary comes from ``$VERSITYGW``, else ``$MV_BIN_DIR/versitygw``, else the bin directory that
``e2e/build-control-plane.sh`` prints on its last stdout line (it builds once, then returns at
once). A missing binary raises :class:`S3ServerError` -- tests using it fail, never skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = E2E_DIR / "build-control-plane.sh"


class S3ServerError(RuntimeError):
    pass


def find_versitygw() -> Path:
    explicit = os.environ.get("VERSITYGW")
    if explicit:
        path = Path(explicit)
    elif os.environ.get("MV_BIN_DIR"):
        path = Path(os.environ["MV_BIN_DIR"]) / "versitygw"
    else:
        try:
            res = subprocess.run(
                ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, timeout=3 * 3600
            )
        except subprocess.TimeoutExpired as e:
            raise S3ServerError(f"{BUILD_SCRIPT.name} did not finish") from e
        lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
        if res.returncode != 0 or not lines:
            raise S3ServerError(f"{BUILD_SCRIPT.name} failed (exit {res.returncode}); versitygw unavailable")
        path = Path(lines[-1]) / "versitygw"
    if not os.access(path, os.X_OK):
        raise S3ServerError(f"versitygw not found at {path} (run: bash {BUILD_SCRIPT})")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    os.setpgrp()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class S3Server:
    """One versitygw process serving a temporary directory (each top-level dir is a bucket)."""

    def __init__(self, binary: Path, *, access_key: str | None = None, secret_key: str | None = None) -> None:
        self.binary = binary
        self.access_key = access_key or "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = "us-east-1"
        self.root = Path(tempfile.mkdtemp(prefix="mv-s3-"))
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        self.log_path = self.root / "versitygw.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def start(cls, binary: Path | None = None, timeout: float = 30.0) -> S3Server:
        server = cls(binary or find_versitygw())
        try:
            server._start(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _start(self, timeout: float) -> None:
        last = ""
        for _attempt in range(3):  # the port may be taken between choosing and binding it
            self.port = _free_port()
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROOT_", "VGW_"))}
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "--access",
                    self.access_key,
                    "--secret",
                    self.secret_key,
                    "--region",
                    self.region,
                    "--port",
                    f"127.0.0.1:{self.port}",
                    "--quiet",
                    "posix",
                    str(self.data_dir),
                ],  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return
                time.sleep(0.1)
            last = self.tail()
            self._terminate()
        raise S3ServerError(f"versitygw did not come up on 127.0.0.1:{self.port}:\n{last}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # 403 for an anonymous request: it is serving
        except (OSError, ValueError):
            return False

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
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- clients --------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def secret_data(self, **overrides: str) -> dict[str, str]:
        """What a Secret referenced by artifact.secretRef would hold (decoded)."""
        data = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            # the credentials are bound to this endpoint (artifacts.credentials: required)
            "MODELVERSIONING_CREDENTIAL_HOSTS": "127.0.0.1",
        }
        data.update(overrides)
        return data

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            endpoint_url=self.endpoint_url,
            skip_instance_cache=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().mkdir(name)

    def put(self, path: str, data: bytes) -> None:
        """Upload ``data`` to ``bucket/key``."""
        self.filesystem().pipe_file(path, data)
