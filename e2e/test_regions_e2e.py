"""Regional rollouts across clusters on GitOps (issue 30), end to end.

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
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from git_server import GitServer
from helpers import make_artifact, model_endpoint, model_version
from regions import Region, fleet_kubeconfig, flux_bin_dir, flux_crds

BIN = Path(sys.executable).parent / "kubectl-models"
NAMES = ("r1", "r2", "r3")
SOAK = 8
OLD = [
    {"name": "stable", "version": "2.3.8", "weight": 100},
    {"name": "canary", "version": "2.4.1", "weight": 0},
]
NEW = [
    {"name": "stable", "version": "2.3.8", "weight": 0},
    {"name": "canary", "version": "2.4.1", "weight": 100},
]
# Flux is built by the peers build lane (e2e/build-flux.sh, the slowest build): ./dev test runs these
# tests in a session of their own once it is built (conftest.py: lane "peers"), not in the control lane.
pytestmark = pytest.mark.lane("peers")
STRATEGY = {"canary": {"variant": "canary", "baseline": "stable",
                       "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def cli(kc: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "--kubeconfig", str(kc), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def overlay(variants: list[dict[str, Any]], endpoint: str = "fraud-detector",
            strategy: dict[str, Any] = STRATEGY) -> str:  # fmt: skip
    ep = model_endpoint(endpoint, "fraud-detector", variants, strategy=strategy)
    ep["metadata"]["namespace"] = "models"
    return yaml.safe_dump(ep, sort_keys=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("regions")
    artifacts = tmp / "artifacts"
    flux_bin, crds = flux_bin_dir(), flux_crds()
    settings = {
        "artifacts": {"fileRoots": [str(artifacts)]},
        "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
        "serving": {"driftCheckSeconds": 30, "drainSeconds": 1},
    }
    regions = [Region(n, tmp, settings) for n in NAMES]
    # one after the other, from this thread: the harness's processes die with the thread that started
    # them (PR_SET_PDEATHSIG), so a starter thread would take its region down when it ends
    t0 = time.monotonic()
    errors: list[BaseException] = []
    for r in regions:
        try:
            r.start(flux_bin, crds)
        except BaseException as e:  # noqa: BLE001 - reported below, after the others are stopped
            errors.append(e)
            break
    print(
        f"three regions (control plane, operator, Flux) started in {time.monotonic() - t0:.1f}s", flush=True
    )
    try:
        if errors:
            raise errors[0]
        yield tmp, artifacts, regions, fleet_kubeconfig(tmp / "kubeconfig", regions)
    finally:
        for r in regions:
            print(r.logs())
            r.stop()


def region_row(kc: Path, region: str, endpoint: str = "fraud-detector") -> dict[str, Any]:
    p = cli(kc, "which", endpoint, "--contexts", region, "-o", "json")
    return dict(json.loads(p.stdout)["regions"][0]) if p.returncode == 0 else {}


def serving(kc: Path, region: str, endpoint: str = "fraud-detector") -> dict[str, int]:
    """version -> weight served in `region` now, read with `which --contexts` (a settled rollout)."""
    row = region_row(kc, region, endpoint)
    out: dict[str, int] = {}
    for v in row.get("variants") or []:
        out[v["version"]] = out.get(v["version"], 0) + int(v.get("effectiveWeight") or 0)
    return out if row.get("rollout") in (None, "Succeeded") and row.get("ready") == "True" else {}


def until(fn, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def fleet_repo(
    srv: GitServer, tmp: Path, artifacts: Path, repo: str, endpoint: str, overlays: dict[str, str]
) -> tuple[Path, str]:
    """A working tree of `repo` (pushed): base/ (the two ModelVersions), regions/<r>/ (`overlays[r]`)
    and waves/<endpoint>.yaml; returns (work tree, plan file)."""
    srv.create(f"{repo}.git")
    work = tmp / f"work-{repo}"
    git(tmp, "clone", "-q", srv.url(f"{repo}.git"), str(work))
    git(work, "config", "user.email", "wave@example.com")
    git(work, "config", "user.name", "wave")
    versions = []
    for v in ("2.3.8", "2.4.1"):
        uri, sha = make_artifact(artifacts, "fraud-detector", v)
        mv = model_version("fraud-detector", v, uri, sha, stage="production")
        mv["metadata"]["namespace"] = "models"
        versions.append(mv)
    (work / "base").mkdir()
    (work / "base" / "versions.yaml").write_text(yaml.safe_dump_all(versions))
    (work / "base" / "kustomization.yaml").write_text("resources: [versions.yaml]\n")
    for n in NAMES:
        d = work / "regions" / n
        d.mkdir(parents=True)
        (d / "kustomization.yaml").write_text("resources: [../../base, endpoint.yaml]\n")
        (d / "endpoint.yaml").write_text(overlays[n])
    plan = {"apiVersion": "modelversioning.io/v1alpha1", "kind": "WavePlan",
            "metadata": {"name": endpoint},
            "spec": {"endpoint": endpoint, "namespace": "models", "soak": f"{SOAK}s",
                     "gates": {"stage": "production"},
                     "regions": [{"name": n, "context": n, "overlay": f"regions/{n}/endpoint.yaml"}
                                 for n in NAMES]}}  # fmt: skip
    (work / "waves").mkdir()
    plan_file = work / "waves" / f"{endpoint}.yaml"
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    git(work, "add", "-A")
    git(work, "commit", "-qm", f"fleet: {endpoint} on 2.3.8 everywhere")
    git(work, "push", "-q", "origin", "HEAD:main")
    return work, str(plan_file)


def test_a_wave_promotes_region_by_region_through_git(fleet) -> None:  # type: ignore[no-untyped-def]
    tmp, artifacts, regions, kc = fleet
    by = {r.name: r for r in regions}
    with GitServer(tmp / "git") as srv:
        overlays = {n: overlay(OLD) for n in NAMES}
        work, plan_file = fleet_repo(srv, tmp, artifacts, "fleet", "fraud-detector", overlays)
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
        (work / "regions" / "r1" / "endpoint.yaml").write_text(overlay(NEW))
        git(work, "commit", "-qam", "release fraud-detector 2.4.1 in r1")
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


# region 2's own, stricter strategy: an analysis its operator cannot pass (no Prometheus is configured
# there, so every measurement is inconclusive, and past inconclusiveLimit the rollout fails and rolls
# back: the operator's own fail-closed analysis, not a metric made up by the test)
STRICT = {"canary": {**STRATEGY["canary"], "analysis": {
    "interval": "2s", "inconclusiveLimit": 0, "onInconclusive": "fail",
    "metrics": [{"name": "errors", "template": "error-rate", "max": 0.01}]}}}  # fmt: skip


def test_a_region_that_rolls_back_stops_the_wave(fleet) -> None:  # type: ignore[no-untyped-def]
    tmp, artifacts, regions, kc = fleet
    by = {r.name: r for r in regions}
    ep = "scorer"
    with GitServer(tmp / "git-scorer") as srv:
        overlays = {"r1": overlay(OLD, ep), "r2": overlay(OLD, ep, STRICT), "r3": overlay(OLD, ep)}
        work, plan_file = fleet_repo(srv, tmp, artifacts, "scorer", ep, overlays)
        for r in regions:
            r.sync(srv.url("scorer.git"), name="scorer")
        for n in NAMES:
            until(lambda n=n: serving(kc, n, ep) == {"2.3.8": 100, "2.4.1": 0}, 300, f"{n} serving 2.3.8")
        (work / "regions" / "r1" / "endpoint.yaml").write_text(overlay(NEW, ep))
        git(work, "commit", "-qam", "release 2.4.1 in r1")
        git(work, "push", "-q", "origin", "HEAD:main")
        by["r1"].reconcile_now("scorer")
        until(lambda: serving(kc, "r1", ep) == {"2.3.8": 0, "2.4.1": 100}, 300, "r1 serving 2.4.1")
        time.sleep(SOAK)
        step = cli(kc, "wave", "next", plan_file, "--commit")
        assert step.returncode == 0, step.stdout + step.stderr
        r2_overlay = (work / "regions" / "r2" / "endpoint.yaml").read_text()
        assert "inconclusiveLimit" in r2_overlay  # the wave changed versions and weights only
        git(work, "push", "-q", "origin", "HEAD:main")
        by["r2"].reconcile_now("scorer")
        failed = until(lambda: (lambda row: row if row.get("rollout") == "Failed" else None)(
            region_row(kc, "r2", ep)), 300, "r2's rollout failing")  # fmt: skip

        def r2_weights() -> dict[str, int]:
            return {
                v["version"]: v["effectiveWeight"] for v in region_row(kc, "r2", ep).get("variants") or []
            }

        until(lambda: r2_weights().get("2.3.8") == 100, 120, "r2 rolled back to 2.3.8")
        print(f"r2 rolled back: {failed.get('traffic')}", flush=True)
        head = git(work, "rev-parse", "HEAD")
        stopped = cli(kc, "wave", "next", plan_file, "--commit")
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        assert "rolled back" in stopped.stdout
        assert git(work, "rev-parse", "HEAD") == head
        assert (work / "regions" / "r3" / "endpoint.yaml").read_text() == overlays["r3"]  # never changes
        assert serving(kc, "r3", ep) == {"2.3.8": 100, "2.4.1": 0}
