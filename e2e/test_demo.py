"""The README's main-job command (`./dev demo --once` runs e2e/demo.py --once): its own control plane,
the operator, examples/ applied, every endpoint Ready, and the seed story's rollback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent / "demo.py"


def test_demo_runs_the_examples_end_to_end():
    proc = subprocess.run([sys.executable, str(DEMO), "--once"], capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "stable@2.3.8=90,canary@2.4.1=10" in out
    assert "live@2.3.8=100,mirror:shadow@3.0.0-rc.1=25%" in out
    assert "rolled back support-chatbot to blue (2.3.8)" in out
    assert "blue@2.3.8=100,green@2.4.1=0" in out
    assert "not every endpoint became Ready" not in out
