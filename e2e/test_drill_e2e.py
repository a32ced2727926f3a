"""Rollback readiness and drills on the real data plane (issue #28, part 4): real pods on the real node,
real traffic through Traefik, the operator probing the fallback's artifact on the harness's artifact
server.

- An endpoint serving 1.1.0 with 1.0.0 kept at weight 0 is `RollbackReady=True/FallbackReady`.
- `kubectl models drill` (the real CLI, a subprocess, the test's kubeconfig) rolls back to 1.0.0 and
  forward again while sending requests through Traefik, and reports the time to restore; the endpoint
  ends exactly as found, and an outside observer (this test's own traffic) sees 0 non-2xx.
- The fallback's artifact is deleted from the store: `RollbackReady` goes `False/FallbackArtifactMissing`
  (the endpoint stays Ready, still serving 1.1.0), and a drill is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, wait_for
from test_dataplane import Load, endpoint, live_on, register

pytestmark = pytest.mark.timeout(1800)
OPERATOR_SRC = Path(__file__).resolve().parents[1] / "operator"
PROBE_SECONDS = 3


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


@pytest.fixture
def fast_probes(dp: DataPlane) -> Iterator[None]:
    """The operator probes fallbacks every few seconds, and its drift check runs often enough to ask
    (defaults: 300 s and 30 s here); restored after."""
    original = dp.operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg.setdefault("serving", {}).update({"rollbackProbeSeconds": PROBE_SECONDS, "driftCheckSeconds": 5})
    dp.operator.config.write_text(yaml.safe_dump(cfg))
    dp.operator.restart()
    try:
        yield
    finally:
        dp.operator.config.write_text(original)
        dp.operator.restart()


def kubectl_models(
    cluster: Any, ns: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(OPERATOR_SRC)}
    for k in ("KUBECONFIG", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        env.pop(k, None)
    cli = [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
    cmd = [*cli, "--kubeconfig", str(cluster.kubeconfig), "-n", ns, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def rollback_ready(objs: Objects, name: str) -> tuple[str, str, str]:
    c = next((c for c in (objs.mep(name).get("status") or {}).get("conditions") or []
              if c["type"] == "RollbackReady"), {})  # fmt: skip
    return str(c.get("status")), str(c.get("reason")), str(c.get("message"))


def served(objs: Objects, name: str) -> tuple[Any, Any]:
    ep = objs.mep(name)
    return ep["spec"], {k: v for k, v in (ep["metadata"].get("annotations") or {}).items()
                        if k.startswith("modelversioning.io/")}  # fmt: skip


def test_a_drill_reports_the_time_to_restore_and_readiness_follows_the_fallback_artifact(  # type: ignore[no-untyped-def]
    dp, objs, cluster, fast_probes
):
    register(dp, objs, "drill", "1.0.0")
    register(dp, objs, "drill", "1.1.0")
    objs.create(endpoint(dp, "drill", "drill", [
        {"name": "stable", "version": "1.0.0", "weight": 0},
        {"name": "canary", "version": "1.1.0", "weight": 100},
    ]))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("drill"), "Ready", "True"), 300, "Ready on real pods")
    wait_for(lambda: rollback_ready(objs, "drill")[:2] == ("True", "FallbackReady"), 120,
             "RollbackReady=True: 1.0.0 verified, warm, its artifact probed")  # fmt: skip
    print("RollbackReady:", rollback_ready(objs, "drill")[2])
    found = served(objs, "drill")
    wait_for(lambda: live_on(dp, {"1.1.0": 1}), 60, "Traefik routes the host: 1.1.0 answers")

    # ---- the drill, under this test's own traffic as an outside observer
    with Load(dp) as load:
        wait_for(lambda: len(load.log) > 20, 60, "load running")
        started = time.time()
        traffic = ("--url", f"{dp.gw.url}/v1/predict", "--host", dp.host, "--data", '{"inputs": [1, 2, 3]}')
        p = kubectl_models(cluster, objs.ns, "drill", "drill", *traffic, "--hold", "2", "-o", "json")
        assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        time.sleep(1)
    report = json.loads(p.stdout)
    print(json.dumps(report, indent=1))
    rb, fw = report["rollback"], report["forward"]
    assert (
        report["restored"] is True and report["fallback"]["version"] == "1.0.0" and report["from"] == "1.1.0"
    )
    assert report["timeToRestoreSeconds"] is not None and 0 <= report["timeToRestoreSeconds"] < 30
    assert rb["versions"].get("1.0.0", 0) > 0 and fw["versions"].get("1.1.0", 0) > 0
    assert rb["errors"] == 0 and fw["errors"] == 0
    assert fw["firstAnswerSeconds"] is not None and rb["allAnswersSeconds"] >= rb["firstAnswerSeconds"]
    during = load.since(started)
    codes = Counter(x[1] for x in during)
    seen = Counter(x[3] for x in during if x[1] == 200)
    print(f"observer: {dict(codes)} {dict(seen)}")
    assert set(codes) == {200} and {"1.0.0", "1.1.0"} <= set(seen)
    assert served(objs, "drill") == found  # spec and our annotations exactly as found
    wait_for(lambda: rollback_ready(objs, "drill")[:2] == ("True", "FallbackReady"), 60, "ready again")

    # ---- the store loses the fallback's artifact
    (dp.art.root / f"{objs.ns}/drill/1.0.0/model.bin").unlink()
    t0 = time.monotonic()
    wait_for(lambda: rollback_ready(objs, "drill")[:2] == ("False", "FallbackArtifactMissing"), 120,
             "RollbackReady=False/FallbackArtifactMissing")  # fmt: skip
    print(f"readiness went false {time.monotonic() - t0:.1f} s after the artifact was deleted: "
          f"{rollback_ready(objs, 'drill')[2]}")  # fmt: skip
    ep = objs.mep("drill")
    assert cond_is(ep, "Ready", "True") and cond_is(ep, "Degraded", "False")  # advisory: still serving
    refused = kubectl_models(cluster, objs.ns, "drill", "drill", "--hold", "0")
    assert refused.returncode == 1 and "is not RollbackReady (FallbackArtifactMissing" in refused.stderr, (
        refused.stderr
    )
    assert served(objs, "drill") == found
