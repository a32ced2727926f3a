"""A regional wave stopped by a canary that fails in region 2 under real traffic (issue 30, node lane).

Region 2 is the session's cluster with the real node: the operator there (given the region setting
r2), Traefik and the session's Prometheus (conftest.py's ``dataplane``). Regions 1 and 3 are control
planes of the harness with kwok nodes and operators of their own, started at once. Flux in each region
syncs one Git repository served by git's http-backend on loopback (regions.py, git_server.py).

2.4.1 is released in region 1 (a commit), soaks, and `kubectl models wave next --commit` promotes region
2 through Git. Region 2's overlay carries its own strategy: a canary at 50 % judged by the error-rate
analysis (Prometheus over Traefik's metrics). 2.4.1's model server answers half its requests with
errors (the reference model server's fault knob): clients through Traefik get them, the analysis fails
the rollout, the operator puts the route back on 2.3.8 (the responses' x-model-version), `wave next`
refuses ("rolled back") and region 3's overlay never changes; `which --contexts` shows region 2 on
2.3.8. Printed: the wave's commit -> region 2's canary answering, the failure seen -> clients back on
2.3.8.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from typing import Any

import pytest

from dataplane_harness import DataPlane
from git_server import GitServer
from helpers import Objects, model_version
from images import OPERATOR_IMAGE
from regions import (
    NAMES,
    NEW,
    NS,
    OLD,
    SOAK,
    Region,
    cli,
    fleet_kubeconfig,
    fleet_repo,
    flux_bin_dir,
    flux_crds,
    git,
    overlay,
    release,
    serving,
    started,
    until,
)

pytestmark = pytest.mark.timeout(2400)  # a session's first node test also waits for its setup
HOST = "regions.models.example.com"
BODY = b'{"inputs": [1, 2, 3]}'
ERROR_RATE = "0.5"  # the share of 2.4.1's answers that are 500s
# region 2's own strategy: 50 % to the canary, then a pause long enough for the analysis to judge it
ERRORS = {"name": "errors", "template": "error-rate", "window": "10s", "max": 0.05}
ANALYSED = {"canary": {"variant": "canary", "baseline": "stable",
                       "steps": [{"setWeight": 50}, {"pause": {"duration": "60s"}}],
                       "analysis": {"interval": "3s", "metrics": [ERRORS]}}}  # fmt: skip


def served_versions(dp: DataPlane) -> list[dict[str, Any]]:
    """2.3.8 and 2.4.1 (production), artifacts served on the node's address, run by the reference model
    server; 2.4.1's answers fail at ERROR_RATE (the same release in every region: only region 2 runs
    it with traffic)."""
    out = []
    for v in ("2.3.8", "2.4.1"):
        data = f"fraud-detector {v} weights {secrets.token_hex(4)}\n".encode()
        uri, sha = dp.art.put(f"regions/fraud-detector/{v}/model.bin", data)
        mv = model_version("fraud-detector", v, uri, sha, stage="production")
        env = [{"name": "MODEL_SERVER_ERROR_RATE", "value": ERROR_RATE}] if v == "2.4.1" else []
        mv["spec"]["runtime"] = {"image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"],
                                 "port": 8080, "healthPath": "/healthz", "env": env}  # fmt: skip
        out.append(mv)
    return out


@pytest.fixture(scope="module")
def fleet(dataplane, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("regions-node")
    settings = {
        # the artifacts are served on the real node's address (10.250.0.1)
        "artifacts": {"allowedPrivateNetworks": ["10.0.0.0/8"]},
        "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
        "serving": {"driftCheckSeconds": 30, "drainSeconds": 1},
    }
    r1, r3 = (Region(n, tmp, settings) for n in ("r1", "r3"))
    r2 = Region("r2", tmp, {}, cp=dataplane.cluster, op=dataplane.operator)
    regions = [r1, r2, r3]
    with started(regions, flux_bin_dir(), flux_crds()):
        yield tmp, regions, fleet_kubeconfig(tmp / "kubeconfig", regions)


def test_a_canary_failing_under_real_traffic_in_region_2_rolls_back_and_stops_the_wave(  # type: ignore[no-untyped-def]
    fleet, dataplane, kube
):
    tmp, regions, kc = fleet
    dp: DataPlane = dataplane
    by = {r.name: r for r in regions}
    r2_spec = {
        "routing": {"router": "gatewayAPI", "hosts": [HOST], "parentRefs": [dp.gw.parent_ref()]},
        "placement": dp.placement,
    }
    with GitServer(tmp / "git") as srv, dp.gw.traffic(host=HOST, body=BODY, threads=2, interval=0.02) as loop:
        overlays = {"r1": overlay(OLD), "r2": overlay(OLD, strategy=ANALYSED, **r2_spec), "r3": overlay(OLD)}
        work, plan_file = fleet_repo(srv, tmp, "fleet", "fraud-detector", served_versions(dp), overlays)
        for r in regions:
            r.sync(srv.url("fleet.git"))
        until(lambda: serving(kc, "r1") == {"2.3.8": 100, "2.4.1": 0}, 300, "r1 serving 2.3.8")
        # the release in region 1 (a person's commit) soaks while region 2 starts its pods on the real node
        release(work, "r1", overlay(NEW), "release fraud-detector 2.4.1 in r1")
        by["r1"].reconcile_now()
        for n, want in (("r1", {"2.3.8": 0, "2.4.1": 100}), ("r2", {"2.3.8": 100, "2.4.1": 0}),
                        ("r3", {"2.3.8": 100, "2.4.1": 0})):  # fmt: skip
            until(lambda n=n, want=want: serving(kc, n) == want, 300, f"{n} serving {want}")
        loop.wait_until(lambda s: s.status == 200 and s.version == "2.3.8", settle=20, timeout=120)
        # the gate in region 1 holds once the soak is over: the wave promotes region 2 through Git
        step = until(lambda: (lambda p: p if p.returncode != 4 else None)(
            cli(kc, "wave", "next", plan_file, "--commit")), SOAK + 60, "r1's soak", interval=1)  # fmt: skip
        assert step.returncode == 0, step.stdout + step.stderr
        t_commit = time.monotonic()
        assert "Wave-Region: r2" in git(work, "log", "-1", "--format=%B")
        r2_overlay = (work / "regions" / "r2" / "endpoint.yaml").read_text()
        assert "error-rate" in r2_overlay and "gatewayAPI" in r2_overlay  # versions and weights only
        git(work, "push", "-q", "origin", "HEAD:main")
        by["r2"].reconcile_now()  # what the Git host's webhook does
        t_canary = loop.wait_until(lambda s: s.version == "2.4.1", since=t_commit, settle=1, timeout=120)
        r2 = Objects(kube, NS)  # region 2's endpoint, read directly: when its rollout fails, to 0.1 s

        def rollout() -> dict[str, Any]:
            return dict((r2.mep("fraud-detector").get("status") or {}).get("rollout") or {})

        failed = until(lambda: (lambda ro: ro if ro.get("phase") == "Failed" else None)(rollout()), 180,
                       "r2's rollout failing", interval=0.1)  # fmt: skip
        t_failed = time.monotonic()
        t_back = loop.wait_until(
            lambda s: s.status == 200 and s.version == "2.3.8", since=t_failed, settle=40
        )
        time.sleep(2)  # and it stays there
        after = loop.since(t_back)
        from_canary = [s for s in loop.since(t_commit) if s.version == "2.4.1"]
        print(
            f"\nregion 2: the wave's commit -> its canary answering real requests {t_canary - t_commit:.1f}s "
            f"(push, Flux sync, the operator's rollout, Traefik); the failure seen -> clients all on 2.3.8 "
            f"{t_back - t_failed:.1f}s (rollout Failed {t_failed - t_canary:.1f}s after the canary's first "
            f"answer); 2.4.1 answered {Counter(s.status for s in from_canary)}",
            flush=True,
        )
        # real traffic met the fault: the canary's errors came from 2.4.1, and never after the rollback
        assert any(s.status >= 500 for s in from_canary), Counter(s.status for s in from_canary)
        assert after and all(s.status == 200 and s.version == "2.3.8" for s in after), after[-5:]
        ms = [(m.get("verdict"), m.get("value")) for m in failed.get("measurements") or []]
        print(f"r2 rolled back: {failed.get('message')}; measurements {ms}", flush=True)
        assert "errors=" in str(failed.get("message")), failed

        # the wave stops: region 2 rolled back, region 3 never changes
        head = git(work, "rev-parse", "HEAD")
        stopped = cli(kc, "wave", "next", plan_file, "--commit")
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        assert "rolled back" in stopped.stdout
        assert git(work, "rev-parse", "HEAD") == head and git(work, "status", "--porcelain") == ""
        assert (work / "regions" / "r3" / "endpoint.yaml").read_text() == overlays["r3"]
        which = cli(kc, "which", "fraud-detector", "--contexts", ",".join(NAMES), "-o", "json")
        assert which.returncode == 0, which.stdout + which.stderr
        rows = {r["region"]: r for r in json.loads(which.stdout)["regions"]}
        for n, v in (("r1", "2.4.1"), ("r2", "2.3.8"), ("r3", "2.3.8")):
            live = {x["version"] for x in rows[n]["variants"] if x["effectiveWeight"]}
            assert live == {v} and rows[n]["statusRegion"] == n, rows[n]
        assert rows["r2"]["rollout"] == "Failed", rows["r2"]
        print(cli(kc, "which", "fraud-detector", "--contexts", ",".join(NAMES)).stdout, flush=True)
