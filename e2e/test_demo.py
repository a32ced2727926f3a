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
CHATBOT = "chatbot.example.com"


def printed_responses(out: str) -> list[tuple[str, str, str | None]]:
    """(Host, caption, x-model-version) of every `curl -si` response the demo printed, in order."""
    found: list[tuple[str, str, str | None]] = []
    caption = ""
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("# "):
            caption = text[2:]
        elif text.startswith("$ curl -si"):
            host = re.search(r"-H 'Host: ([^']+)'", text)
            found.append((host.group(1) if host else "", caption, None))
        elif text.startswith("x-model-version: ") and found and found[-1][2] is None:
            found[-1] = (found[-1][0], found[-1][1], text.split(": ", 1)[1])
    return found


@pytest.mark.timeout(1800)
def test_demo_plays_the_seed_story_with_real_traffic():
    proc = subprocess.run([sys.executable, str(DEMO), "--once"], capture_output=True, text=True, timeout=1700)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-6000:]
    assert "not every endpoint became Ready" not in out
    assert "stable@2.3.8=90,canary@2.4.1=10" in out
    # a real response, through Traefik, naming the version that answered
    assert re.search(r"^ *x-model-version: 2\.(3\.8|4\.1)$", out, re.M), out[-3000:]
    # support-chatbot's printed responses (curl -si): 2.4.1 -> `kubectl models rollback` -> 2.3.8, then
    # 2.3.8 before the canary, 2.4.1 during it, 2.3.8 after the automatic rollback
    chatbot = [(caption, version) for host, caption, version in printed_responses(out) if host == CHATBOT]
    assert [v for _, v in chatbot] == ["2.4.1", "2.3.8", "2.3.8", "2.4.1", "2.3.8"], chatbot
    assert [c.split(":")[0] for c, _ in chatbot] == [
        "before the rollback", "after the rollback", "before the rollout", "during the canary",
        "after the automatic rollback",
    ], chatbot  # fmt: skip
    assert "$ kubectl models rollback support-chatbot" in out
    assert "rolled back support-chatbot to blue (2.3.8)" in out, out[-6000:]
    # the automatic rollback: 2.4.1 answered (some 500s) during the canary, then only 2.3.8 again
    assert "status.rollout: Failed" in out and "error-rate=" in out
    timeline = [line for line in out.splitlines() if line.strip().startswith("t=")]
    assert any("2.4.1" in line for line in timeline), timeline
    assert "2.4.1" not in timeline[-1] and "200 2.3.8" in timeline[-1], timeline[-3:]
