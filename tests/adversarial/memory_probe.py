"""Peak memory of one verification of a prefix with many objects (the numbers in README.md).

    .venv/bin/python tests/adversarial/memory_probe.py [N] [--max-files M] [--timeout S]

Serves N generated 1-byte objects from a fake S3 endpoint on loopback (tests/adversarial/fakes3.py)
and verifies ``s3://bucket/many/`` in a child process, then prints the child's resident memory
after importing the verifier (baseline), its peak, the outcome and the time taken.
``PYTHONPATH=<other checkout>/operator`` measures another version of the code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes3 import FakeS3  # noqa: E402

CHILD = r"""
import json, resource, sys, time
def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import verify_artifact
base = rss_mib()
args = json.loads(sys.argv[1])
fields = set(ArtifactPolicy.model_fields)
kw = {"timeout_seconds": args["timeout"], "allow_private_networks": True}
if "max_files" in fields:
    kw["max_files"] = args["max_files"]
t0 = time.monotonic()
r = verify_artifact("s3://bucket/many/", "0" * 64, policy=ArtifactPolicy(**kw),
                    secret_data={"AWS_ENDPOINT_URL": args["endpoint"]})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1),
                  "over_baseline_mib": round(peak - base, 1), "reason": r.reason.value,
                  "seconds": round(time.monotonic() - t0, 1), "message": r.message[:200]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--max-files", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()
    with FakeS3(count=a.n) as s3:
        arg = json.dumps({"endpoint": s3.endpoint_url, "max_files": a.max_files, "timeout": a.timeout})
        out = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            sys.exit(1)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["objects"] = a.n
        res["requests"] = len(s3.requests)
        print(json.dumps(res))


if __name__ == "__main__":
    main()
