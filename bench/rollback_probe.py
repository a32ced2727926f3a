"""Rollback readiness, what it costs (issue #28, part 4). Printed, never asserted.

- ``probe`` vs ``verify``: is the fallback's artifact still there, asked the probe's way (a HEAD of an
  http URI, a stat of a file, in the verifier's worker process as the operator runs it) against a full
  verification of the same bytes (download and hash), on one artifact of ``--mib`` MiB served over HTTP
  on loopback and on disk. The probe is what runs every ``serving.rollbackProbeSeconds`` per fallback
  version; the verification is what "know it is there" would cost without it.
- ``decide``: the pure decision (``rollback_readiness.for_endpoint``) per endpoint reconcile, two
  variants, in microseconds.

    PYTHONPATH=operator python bench/rollback_probe.py [--mib 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import verify_artifact
from modelversioning.artifacts.runner import probe_in_child, verify_in_child
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import rollback_readiness as RR

MiB = 1024 * 1024


def _median(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("H", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def _decide_us(n: int = 20000) -> float:
    mv = P.VersionFacts("m-v2.3.8", "u", "2.3.8", "a" * 64, True, "Verified", "production")
    slot = P.SlotFacts("s", True, True, 2, 2, "ok", ours=True)
    stable = P.VariantFacts("stable", "2.3.8", 0, 2, False, mv, desired=slot)
    canary = P.VariantFacts("canary", "2.4.1", 100, 2, False, mv, desired=slot)
    f = P.EndpointFacts("production", (stable, canary), {"canary": 100}, False, "gatewayAPI", None,
                        frozenset(), {}, True, {}, 0.0, 10.0,
                        fallback_artifact=RR.ArtifactCheck(R.PROBE_PRESENT))  # fmt: skip
    t0 = time.perf_counter()
    for _ in range(n):
        RR.for_endpoint(f)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "model.bin"
        with data.open("wb") as f:
            for _ in range(args.mib // 16 or 1):
                f.write(os.urandom(16 * MiB))
        size = data.stat().st_size
        sha = verify_artifact(data.as_uri(), "0" * 64, policy=ArtifactPolicy(file_roots=[tmp])).actual or ""
        httpd, base = _serve(root)
        policy = ArtifactPolicy(file_roots=[tmp], allowed_private_networks=["127.0.0.0/8"],
                                max_total_bytes=max(size * 2, 1 << 30))  # fmt: skip
        try:
            rows = []
            for label, uri in (("http", f"{base}/model.bin"), ("file", data.as_uri())):
                ask = functools.partial(
                    probe_in_child, uri, policy=policy, expected_size=size, expected_files=1
                )
                probe = _median(ask, args.repeats)
                verify = _median(lambda u=uri: verify_in_child(u, sha, policy=policy, expected_size=size),
                                 max(1, args.repeats // 2))  # fmt: skip
                rows.append((label, probe, verify))
        finally:
            httpd.shutdown()
    print(f"rollback readiness: one artifact of {args.mib} MiB, {os.cpu_count()} CPUs, medians")
    for label, probe, verify in rows:
        print(f"  {label:5s} probe {probe * 1000:8.1f} ms   full verification {verify * 1000:9.1f} ms   "
              f"({verify / probe:,.0f}x)")  # fmt: skip
    print(f"  decide (for_endpoint, 2 variants): {_decide_us():.1f} us per reconcile")


if __name__ == "__main__":
    main()
