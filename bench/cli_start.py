"""CLI start: how long `kubectl models` takes before it does anything (issue #25). In an incident the
rollback command's own start is most of the time to restore, so this section times, in fresh
processes (the console script's code, `python -c "...main()"`, this checkout's `operator/` first on
the path):

* `kubectl models rollback --help` and `kubectl models --help`, wall time (p50 and max of N runs);
* a real `kubectl models rollback ENDPOINT` against a loopback HTTPS server playing the API server and
  the operator (a kubeconfig with a bearer token and the server's CA points at it): from the process's
  start (just before it is spawned) to the arrival of its FIRST API request (the GET of the endpoint),
  to its PATCH (traffic asked to move: the server then reports the new split at once), and to its exit.
  The endpoint has two eligible variants (stable 0 %, canary 100 %) and router none; a run that does
  not exit 0 having patched stable to 100 % is an error.

Printed numbers, never assertions: the machine is shared (the load average is recorded).

    python bench/cli_start.py [--repeats 20] [--operator-dir DIR]   # DIR: another checkout's operator/
    python bench/run.py --only cli
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.server
import ipaddress
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from modelversioning.domain.merge_patch import apply_merge_patch

REPO = Path(__file__).resolve().parents[1]
# What the `kubectl-models` console script runs.
ENTRY = "import sys; from modelversioning.cli.kubectl_models import main; sys.exit(main())"
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
ENDPOINT = "fraud-detector"


def endpoint() -> dict[str, Any]:
    """The ModelEndpoint rolled back: canary 1.1.0 takes all traffic, stable 1.0.0 is warm at 0 %."""
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": ENDPOINT, "namespace": "models", "resourceVersion": "7", "generation": 3},
        "spec": {
            "model": "fraud",
            "variants": [
                {"name": "stable", "version": "1.0.0", "weight": 0},
                {"name": "canary", "version": "1.1.0", "weight": 100},
            ],
        },
        "status": {
            "effectiveWeights": {"stable": 0, "canary": 100},
            "variants": [{"name": "stable", "eligible": True}, {"name": "canary", "eligible": True}],
        },
    }


def stats(samples: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    out = {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
    }
    if cpu:  # the process's own CPU (user + system): what load on the machine does not inflate
        out["cpu_p50_ms"] = round(statistics.median(cpu), 1)
    return out


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = directory / "server.crt", directory / "server.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_pem, key_pem


class FakeApiServer(http.server.ThreadingHTTPServer):
    """The API server and the operator of one endpoint (see the module's docstring); records when the
    first request and the PATCH of a run arrived."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.first_at: float | None = None
        self.patched_at: float | None = None
        self.requests: list[str] = []
        self.endpoint = endpoint()
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.first_at, self.patched_at, self.requests, self.endpoint = None, None, [], endpoint()

    def answer(self, method: str, path: str, body: Any, now: float) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.first_at = now if self.first_at is None else self.first_at
            self.requests.append(f"{method} {path}")
            base, _, query = path.partition("?")
            ep = self.endpoint
            if base.endswith("/selfsubjectreviews"):
                user = {"username": "bench", "groups": ["system:authenticated"]}
                return 201, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                             "status": {"userInfo": user}}  # fmt: skip
            if base.endswith(f"/modelendpoints/{ENDPOINT}") and method in ("GET", "PATCH"):
                if method == "PATCH":
                    self.patched_at = now
                    ep = self.endpoint = apply_merge_patch(ep, body)
                    ep["metadata"]["resourceVersion"] = str(int(ep["metadata"]["resourceVersion"]) + 1)
                    ep["status"]["effectiveWeights"] = {
                        v["name"]: v["weight"] for v in ep["spec"]["variants"]
                    }
                return 200, ep
            if base.endswith("/modelendpoints") and method == "GET" and "watch" not in query:
                return 200, {
                    "items": [ep],
                    "metadata": {"resourceVersion": ep["metadata"]["resourceVersion"]},
                }
            return 404, {**NOT_FOUND, "message": f"{path} not found"}

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeApiServer

    def setup(self) -> None:
        self.request.do_handshake()
        super().setup()

    def _answer(self) -> None:
        now = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length)) if length else None
        status, obj = self.server.answer(self.command, self.path, sent, now)
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def fake_api_server() -> Iterator[tuple[FakeApiServer, Path]]:
    """The server, running, and a kubeconfig (token + its CA) that points at it."""
    with tempfile.TemporaryDirectory(prefix="mv-bench-cli-") as tmp:
        d = Path(tmp)
        cert, key = _self_signed(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv = FakeApiServer(ctx)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        kubeconfig = d / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(_kubeconfig(srv.url, cert.read_bytes())))  # as kubectl writes it
        try:
            yield srv, kubeconfig
        finally:
            srv.shutdown()
            srv.server_close()


def _kubeconfig(server: str, ca_pem: bytes) -> dict[str, Any]:
    ca = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "bench", "user": {"token": "bench-token"}}],
        "contexts": [
            {"name": "bench", "context": {"cluster": "bench", "user": "bench", "namespace": "models"}}
        ],
    }


def cli_env(operator_dir: Path, pycache: Path) -> dict[str, str]:
    """As installed: bytecode compiled once (into `pycache`, not the checkout), never per run."""
    drop = ("KUBECONFIG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(operator_dir), PYTHONPYCACHEPREFIX=str(pycache), COLUMNS="100")
    return env


def _spawn(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """The finished process and the CPU it used (user + system, ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def _help_ms(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) of one run that must succeed, in ms."""
    t0 = time.perf_counter()
    proc, cpu = _spawn(argv, env)
    wall = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[3:]} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return wall, cpu


def _rollback_ms(srv: FakeApiServer, argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """One real rollback: start -> first API request, -> its PATCH, -> exit, and its CPU, in ms."""
    srv.reset()
    t0 = time.monotonic()
    proc, cpu = _spawn(argv, env)
    t_exit = time.monotonic()
    weights = {v["name"]: v["weight"] for v in srv.endpoint["spec"]["variants"]}
    if proc.returncode != 0 or srv.first_at is None or srv.patched_at is None or weights["stable"] != 100:
        err = proc.stderr.decode()[-2000:]
        raise RuntimeError(f"rollback against the fake API server: exit {proc.returncode}, {weights}: {err}")
    ms = {"first_request": srv.first_at - t0, "patch": srv.patched_at - t0, "rollback_exit": t_exit - t0}
    return {k: v * 1000 for k, v in ms.items()} | {"cpu": cpu}


LABELS = {  # key -> what the table says
    "rollback_help": "kubectl models rollback --help",
    "help": "kubectl models --help",
    "first_request": "rollback ENDPOINT: start -> first API request",
    "patch": "rollback ENDPOINT: start -> its PATCH",
    "rollback_exit": "rollback ENDPOINT: start -> exit",
}


def run(repeats: int, log: Callable[[str], None], operator_dir: Path | None = None) -> dict[str, Any]:
    cli = [sys.executable, "-c", ENTRY]
    wall: dict[str, list[float]] = {key: [] for key in LABELS}
    cpu: dict[str, list[float]] = {key: [] for key in LABELS}  # a rollback's, whole, under rollback_exit
    with fake_api_server() as (srv, kubeconfig):
        env = cli_env(operator_dir or REPO / "operator", kubeconfig.parent / "pycache")
        helps = {"rollback_help": [*cli, "rollback", "--help"], "help": [*cli, "--help"]}
        rollback = [*cli, "--kubeconfig", str(kubeconfig), "rollback", ENDPOINT]
        for argv in helps.values():  # warm-up, untimed: compiles the bytecode once
            _help_ms(argv, env)
        _rollback_ms(srv, rollback, env)
        for _ in range(repeats):  # interleaved, so that drift in machine load hits every measurement
            for key, argv in helps.items():
                ms, used = _help_ms(argv, env)
                wall[key].append(ms)
                cpu[key].append(used)
            run_ms = _rollback_ms(srv, rollback, env)
            for key in ("first_request", "patch", "rollback_exit"):
                wall[key].append(run_ms[key])
            cpu["rollback_exit"].append(run_ms["cpu"])
        first_path = srv.requests[0] if srv.requests else ""
    out: dict[str, Any] = {key: stats(wall[key], cpu[key]) for key in LABELS}
    out.update(repeats=repeats, first_request_path=first_path, loadavg_1m=round(os.getloadavg()[0], 2))
    for metric, value, note in rows(out):
        log(f"cli: {metric}: {value} ({note})")
    return out


def rows(section: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows for bench/run.py's table: printed, never a target."""
    out = []
    for key, label in LABELS.items():
        st = section.get(key) or {}
        note = f"n={st.get('n')}" + (f", CPU p50 {st['cpu_p50_ms']} ms" if "cpu_p50_ms" in st else "")
        out.append((f"{label}: p50 / max (ms)", f"{st.get('p50_ms')} / {st.get('max_ms')}", note))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20, help="runs of each command (default 20)")
    ap.add_argument(
        "--operator-dir", type=Path, help="the operator/ directory to run (default: this checkout's)"
    )
    args = ap.parse_args(argv)
    out = run(args.repeats, lambda m: print(m, file=sys.stderr, flush=True), args.operator_dir)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
