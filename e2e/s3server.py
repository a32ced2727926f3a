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

import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from childserver import ChildServer

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


class S3Server(ChildServer):
    """One versitygw process serving a temporary directory (each top-level dir is a bucket)."""

    what = "versitygw"
    error = S3ServerError
    poll_seconds = 0.1

    def __init__(self, binary: Path, *, access_key: str | None = None, secret_key: str | None = None) -> None:
        self.binary = binary
        self.access_key = access_key or "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = "us-east-1"
        self.root = Path(tempfile.mkdtemp(prefix="mv-s3-"))
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        super().__init__(self.root / "versitygw.log")

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

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROOT_", "VGW_"))}
        argv = [
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
        ]  # fmt: skip
        return argv, env

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # 403 for an anonymous request: it is serving
        except (OSError, ValueError):
            return False

    def _cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

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
