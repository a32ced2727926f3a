"""`kubectl models wave status|next PLAN` (issue 30, step 3) against loopback API servers (one per
region) and a real Git working tree: a gate that holds promotes the next region by one commit (or a
patch `git apply` takes); a soak not over, a rolled-back or unreachable region, overlays out of order
or a racing commit change nothing."""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fleet_fixtures import change, endpoint, regions, router, version
from modelversioning.cli.models import wave_git
from modelversioning.cli.models.app import app
from modelversioning.cli.models.errors import Refused
from modelversioning.domain.timestamps import rfc3339_ms
from modelversioning.domain.waves import declared_in

NEW = {"stable": ("2.3.8", 0), "canary": ("2.4.1", 100)}
OLD = {"stable": ("2.3.8", 100), "canary": ("2.4.1", 0)}
VERSIONS = [version("2.3.8"), version("2.4.1")]


def overlay(split: dict[str, tuple[str, int]]) -> str:
    lines = [f"    - {{name: {n}, version: {v}, weight: {w}}}" for n, (v, w) in split.items()]
    return ("# this region's endpoint (kubectl models wave next changes versions and weights only)\n"
            "apiVersion: modelversioning.io/v1alpha1\nkind: ModelEndpoint\nmetadata: {name: fraud-detector}\n"
            "spec:\n  model: fraud-detector\n  variants:\n" + "\n".join(lines) + "\n")  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "fleet-repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "wave@example.com")
    git(r, "config", "user.name", "wave")
    for name, split in (("r1", NEW), ("r2", OLD), ("r3", OLD)):
        (r / "regions" / name).mkdir(parents=True)
        (r / "regions" / name / "endpoint.yaml").write_text(overlay(split))
    plan = {"apiVersion": "modelversioning.io/v1alpha1", "kind": "WavePlan", "metadata": {"name": "fraud"},
            "spec": {"endpoint": "fraud-detector", "namespace": "models", "soak": "30s",
                     "gates": {"stage": "production"},
                     "regions": [{"name": n, "context": n, "overlay": f"regions/{n}/endpoint.yaml"}
                                 for n in ("r1", "r2", "r3")]}}  # fmt: skip
    (r / "wave.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    git(r, "add", "-A")
    git(r, "commit", "-qm", "fleet")
    return r


def soaked(seconds: float, **kw) -> dict:  # type: ignore[no-untyped-def]
    """r1's endpoint serving 2.4.1 at 100% since `seconds` ago (its route history says so)."""
    now = time.time()
    h = [change(rfc3339_ms(now - 600), **{"2_3_8": 100}), change(rfc3339_ms(now - seconds), **{"2_4_1": 100})]
    return endpoint("r1", NEW, history=h, **kw)


def r1_with(**kw):  # type: ignore[no-untyped-def]
    return router(soaked(45, **kw), VERSIONS)


def run(repo: Path, kc: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["wave", *args, str(repo / "wave.yaml"), "--kubeconfig", str(kc),
                                    "--region-timeout", "2"])  # fmt: skip


def test_a_gate_that_holds_promotes_the_next_region_in_one_commit(tmp_path: Path, repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with regions(tmp_path, {"r1": router(soaked(45), VERSIONS), "r2": "closed", "r3": "closed"}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == 0, res.output
    assert git(repo, "rev-parse", "HEAD~1").strip() == base
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["regions/r2/endpoint.yaml"]
    assert declared_in((repo / "regions/r2/endpoint.yaml").read_text(), "r2") == declared_in(
        overlay(NEW), "x"
    )
    assert (repo / "regions/r3/endpoint.yaml").read_text() == overlay(OLD)  # region 3 never changes
    msg = git(repo, "log", "-1", "--format=%B")
    assert "Wave-Region: r2" in msg and f"Wave-Base: {base}" in msg and "Wave-Gate: r1 generation=2" in msg
    assert "region r1 serves 2.4.1 at 100% for 4" in msg
    assert git(repo, "status", "--porcelain") == ""


def test_print_is_a_patch_git_applies(tmp_path: Path, repo: Path) -> None:
    with regions(tmp_path, {"r1": router(soaked(45), VERSIONS)}) as kc:
        res = run(repo, kc, "next", "--print")
    assert res.exit_code == 0, res.output
    assert git(repo, "status", "--porcelain") == ""  # --print changes nothing
    subprocess.run(["git", "-C", str(repo), "apply"], input=res.stdout, text=True, check=True)
    assert declared_in((repo / "regions/r2/endpoint.yaml").read_text(), "r2") == declared_in(
        overlay(NEW), "x"
    )
    assert "# Wave-Region: r2" in res.stdout


@pytest.mark.parametrize(
    ("r1", "code", "says"),
    [
        pytest.param(lambda: router(soaked(10), VERSIONS), 4, "of the 30s soak", id="soak-not-over"),
        pytest.param(lambda: "closed", 1, "r1 is unreachable", id="unreachable"),
        pytest.param(lambda: "silent", 1, "no answer within 2s", id="no-answer"),
        pytest.param(lambda: r1_with(phase="Failed"), 1, "rolled back", id="rolled-back"),
        pytest.param(lambda: r1_with(phase="Progressing"), 4, "Progressing", id="rolling"),
        pytest.param(lambda: r1_with(spec_weights=OLD), 4, "has not applied", id="not-applied"),
        pytest.param(lambda: router(soaked(45), [version("2.3.8"), version("2.4.1", "staging")]), 4,
                     "the gate needs production", id="stage"),
        pytest.param(lambda: router(endpoint("r9", NEW), VERSIONS), 1, "reaches the operator of region r9",
                     id="wrong-cluster"),
    ],
)  # fmt: skip
def test_no_promotion_unless_the_gate_holds(tmp_path: Path, repo: Path, r1, code: int, says: str) -> None:  # type: ignore[no-untyped-def]
    head = git(repo, "rev-parse", "HEAD")
    with regions(tmp_path, {"r1": r1()}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == code, res.output
    assert says in " ".join(res.output.split()), res.output
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""


def test_the_next_wave_waits_for_gitops_in_the_region_just_promoted(tmp_path: Path, repo: Path) -> None:
    (repo / "regions/r2/endpoint.yaml").write_text(overlay(NEW))
    git(repo, "commit", "-qam", "r2 promoted")
    r2 = endpoint("r2", OLD)  # Flux has not applied it yet
    with regions(
        tmp_path, {"r1": router(soaked(45), VERSIONS), "r2": router(r2, VERSIONS), "r3": "closed"}
    ) as kc:
        res = run(repo, kc, "next", "--commit")
        st = CliRunner().invoke(app, ["wave", "status", str(repo / "wave.yaml"), "--kubeconfig", str(kc),
                                      "--region-timeout", "2", "-o", "json"])  # fmt: skip
    assert res.exit_code == 4 and "GitOps has not applied its overlay" in " ".join(res.output.split())
    view = json.loads(st.stdout)
    assert (view["promoted"], view["next"], view["gate"]["verdict"]) == (["r1", "r2"], "r3", "wait")
    assert view["regions"][2]["live"].startswith("Unknown")


def test_overlays_out_of_order_are_refused(tmp_path: Path, repo: Path) -> None:
    (repo / "regions/r3/endpoint.yaml").write_text(overlay(NEW))
    git(repo, "commit", "-qam", "someone promoted r3 by hand")
    with regions(tmp_path, {"r1": router(soaked(45), VERSIONS)}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == 1 and "out of order" in " ".join(res.output.split())


def test_a_complete_wave_has_nothing_to_do(tmp_path: Path, repo: Path) -> None:
    for n in ("r2", "r3"):
        (repo / f"regions/{n}/endpoint.yaml").write_text(overlay(NEW))
    git(repo, "commit", "-qam", "all")
    with regions(tmp_path, {"r1": "closed"}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == 0 and "complete" in res.output


def test_a_bad_plan_is_a_usage_error(tmp_path: Path, repo: Path) -> None:
    plan = yaml.safe_load((repo / "wave.yaml").read_text())
    plan["spec"]["regions"][1]["name"] = "r1"
    (repo / "wave.yaml").write_text(yaml.safe_dump(plan))
    with regions(tmp_path, {"r1": "closed"}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == 2 and "region 'r1' is listed twice" in res.output


def test_racing_commits_are_refused_and_change_nothing(repo: Path) -> None:
    rel = "regions/r2/endpoint.yaml"
    base = git(repo, "rev-parse", "HEAD").strip()
    before, after = overlay(OLD), overlay(NEW)
    # another wave committed first: HEAD moved
    (repo / "regions/r3/endpoint.yaml").write_text(overlay(NEW))
    git(repo, "commit", "-qam", "the other wave")
    with pytest.raises(Refused, match="HEAD moved"):
        wave_git.commit_overlay(repo, rel, base, before, after, "m")
    assert (repo / rel).read_text() == before
    # the overlay has uncommitted changes: refused, the person's edit kept
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / rel).write_text(before + "# edited\n")
    with pytest.raises(Refused, match="changed underneath the wave"):
        wave_git.commit_overlay(repo, rel, base, before, after, "m")
    assert (repo / rel).read_text() == before + "# edited\n" and git(
        repo, "rev-parse", "HEAD"
    ).strip() == base
    (repo / rel).write_text(before)
    # a commit that fails (here: a hook refuses it) leaves the overlay as it was, unstaged
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(Refused):
        wave_git.commit_overlay(repo, rel, base, before, after, "m")
    assert (repo / rel).read_text() == before and git(repo, "status", "--porcelain") == ""


def test_a_symlinked_overlay_or_one_outside_the_repository_is_never_read(tmp_path: Path, repo: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(overlay(NEW))  # a file of the user's, outside the repository
    (repo / "regions" / "r2" / "endpoint.yaml").unlink()
    (repo / "regions" / "r2" / "endpoint.yaml").symlink_to(secret)
    (repo / "regions" / "r3").rename(tmp_path / "r3-outside")
    (repo / "regions" / "r3").symlink_to(tmp_path / "r3-outside")
    for rel in ("regions/r2/endpoint.yaml", "regions/r3/endpoint.yaml"):
        with pytest.raises(Refused, match="symlink or outside"):
            wave_git.read(repo, rel)
    assert wave_git.read(repo, "regions/r1/endpoint.yaml") == overlay(NEW)


def test_a_plan_naming_a_kubeconfig_in_its_repository_is_refused(tmp_path: Path, repo: Path) -> None:
    plan = yaml.safe_load((repo / "wave.yaml").read_text())
    plan["spec"]["regions"][0]["kubeconfig"] = str(repo / "kubeconfig")  # an exec plugin would run
    (repo / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    (repo / "wave.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    with regions(tmp_path, {"r1": "closed"}) as kc:
        res = run(repo, kc, "status")
    assert res.exit_code == 2 and "inside the repository" in res.output, res.output


def test_the_gate_is_read_again_under_the_commit_lock_and_a_rollback_since_refuses(
    tmp_path: Path, repo: Path
) -> None:
    """r1 passes the gate at the first read, and its rollout has Failed (rolled back) by the read made
    under the commit's lock: refused (exit 1, saying so), nothing committed, the overlay untouched. The
    re-read happens while the lock is held (another wave's commit is refused meanwhile)."""
    head = git(repo, "rev-parse", "HEAD")
    reads: list[bool] = []
    good, rolled_back = router(soaked(45), VERSIONS), r1_with(phase="Failed")

    def r1(req):  # type: ignore[no-untyped-def]
        if req.path.endswith("/modelendpoints/fraud-detector"):
            lock = repo / ".git" / wave_git.LOCK_NAME
            held = False
            if lock.exists():
                with open(lock) as fh:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        fcntl.flock(fh, fcntl.LOCK_UN)
                    except BlockingIOError:
                        held = True
            reads.append(held)
        return (good if len(reads) == 1 else rolled_back)(req)

    with regions(tmp_path, {"r1": r1}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert reads == [False, True], reads  # read once to decide, once more under the lock
    assert res.exit_code == 1, res.output
    said = " ".join(res.output.split())
    assert "no longer holds" in said and "r1 rolled back" in said and "nothing was committed" in said, said
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert (repo / "regions/r2/endpoint.yaml").read_text() == overlay(OLD)


def test_the_commit_message_records_the_read_made_under_the_lock(tmp_path: Path, repo: Path) -> None:
    """Both reads pass: the commit rests on the second one (its generation in Wave-Gate)."""
    reads: list[int] = []

    def r1(req):  # type: ignore[no-untyped-def]
        if req.path.endswith("/modelendpoints/fraud-detector"):
            reads.append(1)
        return router(soaked(45, generation=2 + len(reads), observed=2 + len(reads)), VERSIONS)(req)

    with regions(tmp_path, {"r1": r1}) as kc:
        res = run(repo, kc, "next", "--commit")
    assert res.exit_code == 0, res.output
    assert len(reads) == 2 and "Wave-Gate: r1 generation=4" in git(repo, "log", "-1", "--format=%B")
