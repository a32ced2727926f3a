"""The README's main-job command (`./dev demo --once` runs e2e/demo.py --once): its own control plane with
a real node, Traefik and Prometheus, the operator, examples/ applied, real responses through the gateway
that say which version answered, and the seed story's automatic rollback under traffic."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent / "demo.py"


@pytest.mark.timeout(1800)
def test_demo_plays_the_seed_story_with_real_traffic():
    proc = subprocess.run([sys.executable, str(DEMO), "--once"], capture_output=True, text=True, timeout=1700)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-6000:]
    assert "not every endpoint became Ready" not in out
    assert "stable@2.3.8=90,canary@2.4.1=10" in out
    # a real response, through Traefik, naming the version that answered
    assert re.search(r"^x-model-version: 2\.(3\.8|4\.1)$", out, re.M), out[-3000:]
    # the automatic rollback: 2.4.1 answered (some 500s) during the canary, then only 2.3.8 again
    assert "status.rollout: Failed" in out and "error-rate=" in out
    timeline = [line for line in out.splitlines() if line.strip().startswith("t=")]
    assert any("2.4.1" in line for line in timeline), timeline
    assert "2.4.1" not in timeline[-1] and "200 2.3.8" in timeline[-1], timeline[-3:]
