"""The artifact init container on the host (issue #25, time to first answer): `modelversioning
verify-artifact` run as the pod runs it (the arguments render/deployment.py renders: --dest,
--output json, --env-credentials secret, --policy-json, --size-bytes) against the plain Deployment's
init container (bench/ttfa_plain.py: a urllib copy, no hash), both fresh processes fetching the same
random file from a local ThreadingHTTPServer (sendfile from the page cache), writing into a temp
directory on disk. No image, no cluster.

Per size and method: wall time (spawn -> exit), the process's CPU (user + system), the time from its
spawn to its first HTTP request's arrival at the server (the start cost: Python, imports, the policy),
and MiB/s (size / wall). Runs are interleaved (machine drift hits both); p50 and best reported.
Printed, never asserted: the machine is shared (the load average is recorded).

    python bench/init_start.py [--sizes 256,1024] [--repeats 3] [--dir DIR] [--operator-dir DIR]
    python bench/run.py --only init
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import resource
import shutil
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ttfa_plain import DOWNLOAD  # noqa: E402 - the plain Deployment's init container

MiB = 1024 * 1024
METHODS = ("verify_artifact", "plain_copy")
NAME = "model.bin"


class ArtifactServer(http.server.ThreadingHTTPServer):
    """Serves one directory; records when each request arrived (time.monotonic()) and its method."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = str(directory)
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.arrivals = []

    def first(self, method: str | None = None) -> float | None:
        with self.lock:
            times = [t for t, m in self.arrivals if method is None or m == method]
        return min(times) if times else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: ArtifactServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=args[2].directory, **kwargs)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        with self.server.lock:
            self.server.arrivals.append((time.monotonic(), self.command))
        return ok

    def copyfile(self, source: Any, outputfile: Any) -> None:
        outputfile.flush()
        self.connection.sendfile(source)  # the server is never the bottleneck

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def artifact_server(directory: Path) -> Iterator[ArtifactServer]:
    srv = ArtifactServer(directory)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _write_random(path: Path, mib: float) -> str:
    """A file of random bytes; its sha256."""
    h = hashlib.sha256()
    left = int(mib * MiB)
    with path.open("wb") as f:
        while left > 0:
            block = os.urandom(min(16 * MiB, left))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def policy_json() -> str:
    """What the operator renders into the pod (its default policy), loopback allowed for the server."""
    from modelversioning.api.settings import ArtifactPolicy
    from modelversioning.render.deployment import policy_json as render

    return render(ArtifactPolicy(allowed_private_networks=["127.0.0.1/32"]))


def commands(url: str, sha: str, size: int, dest: Path) -> dict[str, list[str]]:
    """The two init containers' commands, in this interpreter."""
    ours = [
        sys.executable, "-m", "modelversioning", "verify-artifact", url, "--sha256", sha, "--dest", str(dest),
        "--output", "json", "--env-credentials", "secret", "--policy-json", policy_json(),
        "--size-bytes", str(size),
    ]  # fmt: skip
    plain = [sys.executable, "-c", DOWNLOAD, url, str(dest / NAME)]
    return {"verify_artifact": ours, "plain_copy": plain}


def child_env(operator_dir: Path, pycache: Path) -> dict[str, str]:
    """As installed: bytecode compiled once (into `pycache`, not the checkout), never per run."""
    drop = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "MODELVERSIONING_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(operator_dir), PYTHONPYCACHEPREFIX=str(pycache))
    return env


def one_run(
    srv: ArtifactServer, argv: list[str], env: dict[str, str], dest: Path, sha: str
) -> dict[str, float]:
    """One init container: wall, CPU and spawn -> first request (s); the file it left must hash right."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    srv.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=900)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    first = srv.first()
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"{argv[1:4]} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    h = hashlib.sha256()
    with (dest / NAME).open("rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    if h.hexdigest() != sha:
        raise RuntimeError(f"{argv[1:4]} left a file that does not hash to the artifact's sha256")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "first_request": first - t0}


def summarize(mib: float, runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"mib": mib, "n": len(runs[METHODS[0]])}
    for method, samples in runs.items():
        m: dict[str, Any] = {}
        for key in ("wall", "cpu", "first_request"):
            values = [s[key] for s in samples]
            m[f"{key}_p50_s"] = round(statistics.median(values), 3)
            m[f"{key}_best_s"] = round(min(values), 3)
        m["mib_s_p50"] = round(mib / m["wall_p50_s"], 1)
        m["mib_s_best"] = round(mib / m["wall_best_s"], 1)
        out[method] = m
    ours, plain = out["verify_artifact"], out["plain_copy"]
    out["wall_ratio_p50"] = round(ours["wall_p50_s"] / plain["wall_p50_s"], 2)
    out["cpu_ratio_p50"] = round(ours["cpu_p50_s"] / plain["cpu_p50_s"], 2)
    out["start_extra_s"] = round(ours["first_request_p50_s"] - plain["first_request_p50_s"], 3)
    return out


def run(
    sizes_mib: list[float],
    repeats: int,
    log: Callable[[str], None],
    base_dir: str | None = None,
    operator_dir: Path | None = None,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mv-bench-init-", dir=base_dir)).resolve()
    out: dict[str, Any] = {"repeats": repeats, "cpus": len(os.sched_getaffinity(0)), "sizes": {}}
    try:
        env = child_env(operator_dir or HERE.parent / "operator", tmp / "pycache")
        served, dest = tmp / "served", tmp / "dest"
        served.mkdir()
        with artifact_server(served) as srv:
            for mib in sizes_mib:
                sha = _write_random(served / NAME, mib)
                argvs = commands(f"{srv.url}/{NAME}", sha, int(mib * MiB), dest)
                for argv in argvs.values():  # warm-up, untimed: bytecode, the page cache
                    one_run(srv, argv, env, dest, sha)
                runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
                for _ in range(repeats):
                    for method, argv in argvs.items():
                        runs[method].append(one_run(srv, argv, env, dest, sha))
                out["sizes"][f"{mib:g}"] = summary = summarize(mib, runs)
                for line in lines(summary):
                    log(f"init: {line}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def lines(s: dict[str, Any]) -> list[str]:
    ours, plain = s["verify_artifact"], s["plain_copy"]

    def one(name: str, m: dict[str, Any]) -> str:
        return (
            f"{name}: wall {m['wall_p50_s']}s (best {m['wall_best_s']}), {m['mib_s_p50']} MiB/s, "
            f"CPU {m['cpu_p50_s']}s, first request at {m['first_request_p50_s']}s"
        )

    return [
        f"{s['mib']:g} MiB " + one("verify-artifact", ours),
        f"{s['mib']:g} MiB " + one("plain copy", plain),
        f"{s['mib']:g} MiB verify-artifact / plain: wall x{s['wall_ratio_p50']}, CPU x{s['cpu_ratio_p50']}, "
        f"start +{s['start_extra_s']}s (n={s['n']})",
    ]


def rows(section: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows for bench/run.py's table: printed, never a target."""
    out = []
    for size, s in section.get("sizes", {}).items():
        ours, plain = s["verify_artifact"], s["plain_copy"]
        out.append(
            (
                f"{size} MiB: verify-artifact / plain copy, wall p50 (s)",
                f"{ours['wall_p50_s']} / {plain['wall_p50_s']}",
                f"x{s['wall_ratio_p50']}; MiB/s {ours['mib_s_p50']} / {plain['mib_s_p50']}; n={s['n']}",
            )
        )
        out.append(
            (
                f"{size} MiB:   CPU p50 (s); start -> first request p50 (s)",
                f"{ours['cpu_p50_s']} / {plain['cpu_p50_s']}; "
                f"{ours['first_request_p50_s']} / {plain['first_request_p50_s']}",
                f"CPU x{s['cpu_ratio_p50']}, start +{s['start_extra_s']}s",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,1024", help="artifact sizes in MiB, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="directory for the temp files (default: $TMPDIR)")
    ap.add_argument("--operator-dir", type=Path, default=None, help="another checkout's operator/")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",") if x.strip()]
    run(sizes, args.repeats, lambda m: print(m, flush=True), args.dir, args.operator_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
