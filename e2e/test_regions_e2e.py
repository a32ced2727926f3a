"""Regional rollouts across clusters on GitOps (issue 30), end to end, on kwok nodes (control lane).

Three regions, each a control plane of the harness (kwok nodes) with its own operator (region setting)
and Flux's source-controller + kustomize-controller (built from the Go module proxy, e2e/build-flux.sh),
all syncing one Git repository served by git's http-backend on loopback (git_server.py); one
kubeconfig with a context per region, used by `kubectl-models` as a person would.

- 2.4.1 is rolled out to region 1 by a commit to its overlay; after a (shortened) soak the gate holds,
  `kubectl models wave next --commit` promotes region 2 through Git, Flux applies it there, and
  `which --contexts r1,r2,r3` shows 2.4.1 in regions 1-2 and 2.3.8 in region 3. Printed: Git push ->
  region serving the new version, per region.
- Before the soak is over the wave waits (exit 4) and commits nothing.
- Region 2 made unreachable (its API server stopped): the wave for region 3 waits, says so, commits
  nothing; `which` reports region 2 Unknown (exit 1).

A canary that fails in region 2 under real traffic, with a real analysis, stopping the wave: the node
lane's e2e/test_regions_node_e2e.py (region 2 there is the session's cluster with the real node).
"""

from __future__ import annotations

import json
import time

import pytest

from git_server import GitServer
from regions import (
    NAMES,
    NEW,
    OLD,
    SOAK,
    Region,
    cli,
    file_versions,
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

# Flux is built by the peers build lane (e2e/build-flux.sh, the slowest build): ./dev test runs these
# tests in a session of their own once it is built (conftest.py: lane "peers"), not in the control lane.
pytestmark = pytest.mark.lane("peers")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("regions")
    artifacts = tmp / "artifacts"
    settings = {
        "artifacts": {"fileRoots": [str(artifacts)]},
        "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
        "serving": {"driftCheckSeconds": 30, "drainSeconds": 1},
    }
    regions = [Region(n, tmp, settings) for n in NAMES]
    with started(regions, flux_bin_dir(), flux_crds()):
        yield tmp, artifacts, regions, fleet_kubeconfig(tmp / "kubeconfig", regions)


def test_a_wave_promotes_region_by_region_through_git(fleet) -> None:  # type: ignore[no-untyped-def]
    tmp, artifacts, regions, kc = fleet
    by = {r.name: r for r in regions}
    with GitServer(tmp / "git") as srv:
        overlays = {n: overlay(OLD) for n in NAMES}
        work, plan_file = fleet_repo(srv, tmp, "fleet", "fraud-detector", file_versions(artifacts), overlays)
        for r in regions:
            r.sync(srv.url("fleet.git"))
        for n in NAMES:
            until(lambda n=n: serving(kc, n) == {"2.3.8": 100, "2.4.1": 0}, 300, f"{n} serving 2.3.8")

        def promote(region: str, push: bool = True) -> float:
            t0 = time.monotonic()
            if push:
                git(work, "push", "-q", "origin", "HEAD:main")
            by[region].reconcile_now()  # what the Git host's webhook does
            until(lambda: serving(kc, region) == {"2.3.8": 0, "2.4.1": 100}, 300, f"{region} serving 2.4.1")
            return time.monotonic() - t0

        # region 1: a person's commit (the release)
        release(work, "r1", overlay(NEW), "release fraud-detector 2.4.1 in r1", push=False)
        took_r1 = promote("r1")
        head = git(work, "rev-parse", "HEAD")
        early = cli(kc, "wave", "next", plan_file, "--commit")
        assert early.returncode == 4, early.stdout + early.stderr
        assert "soak" in early.stdout and git(work, "rev-parse", "HEAD") == head
        time.sleep(SOAK)
        step = cli(kc, "wave", "next", plan_file, "--commit")
        assert step.returncode == 0, step.stdout + step.stderr
        assert "Wave-Region: r2" in git(work, "log", "-1", "--format=%B")
        took_r2 = promote("r2")
        print(f"\nGit push -> region serving 2.4.1 at 100% (Flux sync + the operator's rollout): "
              f"r1 {took_r1:.1f}s, r2 {took_r2:.1f}s", flush=True)  # fmt: skip
        which = cli(kc, "which", "fraud-detector", "--contexts", "r1,r2,r3", "-o", "json")
        assert which.returncode == 0, which.stderr
        rows = {r["region"]: r for r in json.loads(which.stdout)["regions"]}
        for n, v in (("r1", "2.4.1"), ("r2", "2.4.1"), ("r3", "2.3.8")):
            live = {x["version"] for x in rows[n]["variants"] if x["effectiveWeight"]}
            assert live == {v} and rows[n]["statusRegion"] == n, rows[n]
        print(cli(kc, "which", "fraud-detector", "--contexts", "r1,r2,r3").stdout, flush=True)

        # region 2 unreachable: the wave for region 3 waits and says so; nothing is committed
        time.sleep(SOAK)
        head = git(work, "rev-parse", "HEAD")
        by["r2"].freeze(True)
        try:
            blocked = cli(kc, "wave", "next", plan_file, "--commit", "--region-timeout", "3")
            unknown = cli(kc, "which", "fraud-detector", "--contexts", "r1,r2,r3", "--region-timeout", "3")
        finally:
            by["r2"].freeze(False)
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        assert "unreachable" in blocked.stdout and "nothing is promoted" in " ".join(blocked.stdout.split())
        assert git(work, "rev-parse", "HEAD") == head and git(work, "status", "--porcelain") == ""
        assert unknown.returncode == 1 and "Unknown" in unknown.stdout
        assert (work / "regions" / "r3" / "endpoint.yaml").read_text() == overlay(OLD)
        # reachable again, soaked: region 3 is promoted
        again = cli(kc, "wave", "next", plan_file, "--commit")
        assert again.returncode == 0, again.stdout + again.stderr
        took_r3 = promote("r3")
        print(f"r3 {took_r3:.1f}s after its wave commit's push", flush=True)
