"""Run the operator as a subprocess against a ControlPlane (tests, demo, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# The allocator the image runs the operator with (the Dockerfile's ENV; tests/test_image_env.py keeps
# the two the same), so that memory measured here is the image's: small objects from glibc's malloc
# API (PYTHONMALLOC=malloc), served by jemalloc with one arena, handing freed pages back within a second.
MALLOC_CONF = "background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0"


def allocator_env() -> dict[str, str]:
    """PYTHONMALLOC, LD_PRELOAD and MALLOC_CONF as the image sets them; jemalloc is the Debian package
    libjemalloc2 (installed by e2e/build-node.sh --packages, as ./dev and CI do)."""
    found = sorted(Path("/usr/lib").glob("*/libjemalloc.so.2"))  # /usr/lib/<multiarch triplet>/
    if not found:
        raise RuntimeError(
            "libjemalloc.so.2 not found: the operator runs with jemalloc as its image does "
            "(apt-get install libjemalloc2, or bash e2e/build-node.sh --packages)"
        )
    return {"PYTHONMALLOC": "malloc", "LD_PRELOAD": str(found[0]), "MALLOC_CONF": MALLOC_CONF}


class PortInUse(RuntimeError):
    """The operator could not listen on its metrics port (taken since it was chosen): pick another."""


def terminate(proc: subprocess.Popen[bytes] | None, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; nothing if it is not running."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        settings: dict[str, Any] | None = None,
        metrics_port: int = 0,
        extra_env: dict[str, str] | None = None,
        namespaces: list[str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.dir = Path(tempfile.mkdtemp(prefix="mv-operator-"))
        self.config = self.dir / "config.yaml"
        self.config.write_text(yaml.safe_dump(settings or {}))
        self.log_path = self.dir / "operator.log"
        self.metrics_port = metrics_port
        self.extra_env = extra_env or {}
        self.namespaces = namespaces
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, wait_ready: float = 180.0) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "MODELVERSIONING_CONFIG": str(self.config),
            "PYTHONUNBUFFERED": "1",
            **allocator_env(),  # as the image sets it (Dockerfile): the same memory behaviour
            **self.extra_env,
        }
        args = [
            sys.executable,
            "-m",
            "modelversioning",
            "run",
            "--liveness",
            "",
            "--metrics-port",
            str(self.metrics_port),
        ]
        if self.namespaces:
            for ns in self.namespaces:
                args += ["--namespace", ns]
        else:
            args.append("--all-namespaces")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_start = self.log_path.stat().st_size  # a restart appends: look only at this run
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True
        )
        deadline = time.monotonic() + wait_ready
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()}")
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                text = f.read()
            if b"modelversioning operator started" in text:
                return self
            if b"Address already in use" in text:  # kopf would retry its startup only in 60 s
                terminate(self.proc)
                raise PortInUse(f"metrics port {self.metrics_port} is taken:\n{self.logs()}")
            time.sleep(0.1)
        raise RuntimeError(f"operator did not start within {wait_ready}s:\n{self.logs()}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def metrics(self) -> str:
        """The operator's /metrics page (needs metrics_port set)."""
        import urllib.request

        assert self.metrics_port, "started without a metrics port"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def logs(self, lines: int = 400) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
