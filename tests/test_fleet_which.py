"""`kubectl models which ENDPOINT --contexts/--all-contexts/--fleet` and `lineage --contexts` (issue 30,
step 2) against loopback API servers, one per region: per region version, digest, weight, readiness and
rollout; a region that cannot be read is Unknown (exit 1), never healthy; all regions at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from fake_apiserver import Request
from fleet_fixtures import NEW_SHA, change, endpoint, regions, router, version
from modelversioning.cli.models.app import app

NEW = {"stable": ("2.3.8", 0), "canary": ("2.4.1", 100)}
OLD = {"stable": ("2.3.8", 100), "canary": ("2.4.1", 0)}
VERSIONS = [version("2.3.8"), version("2.4.1")]


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def by_region(out: str) -> dict[str, dict]:
    return {r["region"]: r for r in json.loads(out)["regions"]}


def slow(arrivals: list[float]):  # type: ignore[no-untyped-def]
    """A region that takes each request (its arrival time noted) and answers long after the deadline."""

    def route(req: Request) -> tuple[int | str, Any]:
        arrivals.append(time.monotonic())
        time.sleep(6)
        return 200, {}

    return route


def test_which_per_region_and_unknown_is_never_healthy(tmp_path: Path) -> None:
    arrivals: list[float] = []
    answers = {
        "r1": router(endpoint("r1", NEW), VERSIONS),
        "r2": router(endpoint("r2", OLD, phase=None), VERSIONS),
        "r3": "closed",
        "r4": "silent",
        "r5": router(None, []),
        "r6": slow(arrivals),
        "r7": slow(arrivals),
    }
    with regions(tmp_path, answers) as kc:
        res = run("which", "fraud-detector", "--kubeconfig", str(kc), "--contexts", "r6,r4,r7,r1,r2,r3,r5",
                  "--region-timeout", "1.5", "-o", "json")  # fmt: skip
    assert res.exit_code == 1, res.output  # some regions are unknown
    got = by_region(res.stdout)
    served = {n: {v["version"]: v["effectiveWeight"] for v in r["variants"]} for n, r in got.items()}
    assert served["r1"] == {"2.3.8": 0, "2.4.1": 100} and served["r2"] == {"2.3.8": 100, "2.4.1": 0}
    assert got["r1"]["rollout"] == "Succeeded" and got["r1"]["ready"] == "True"
    assert got["r1"]["statusRegion"] == "r1"
    assert [v["digest"] for v in got["r1"]["variants"] if v["effectiveWeight"]] == [NEW_SHA]
    assert (got["r3"]["state"], got["r4"]["state"], got["r5"]["state"]) == ("Unknown", "Unknown", "NotFound")
    for name in ("r4", "r6", "r7"):
        assert "no answer within 1.5s" in got[name]["error"], got[name]
    assert got["r3"]["variants"] == [] and got["r4"]["variants"] == []
    assert sorted(json.loads(res.stdout)["unknown"]) == ["r3", "r4", "r6", "r7"]
    # at once, not one after another: the slow and silent regions come first and the ones after them
    # were still read (in turn, they would get no time left: r1 Unknown), and both slow regions were
    # asked before the first one's deadline passed. Timed on the servers' side, so a loaded machine's
    # slower start does not count (a wall-clock bound on the whole command failed under load 13).
    assert len(arrivals) == 2 and abs(arrivals[0] - arrivals[1]) < 1.5, arrivals


def test_the_table_says_unknown(tmp_path: Path) -> None:
    with regions(tmp_path, {"r1": router(endpoint("r1", NEW), VERSIONS), "r3": "closed"}) as kc:
        res = run("which", "fraud-detector", "--kubeconfig", str(kc), "--all-contexts")
    assert res.exit_code == 1
    assert "Unknown" in res.stdout and "could not be read" in res.stdout and "2.4.1" in res.stdout


def test_all_reachable_exits_0_and_a_fleet_file_names_the_regions(tmp_path: Path) -> None:
    answers = {
        "ctx-a": router(endpoint("us-east", NEW), VERSIONS),
        "ctx-b": router(endpoint("eu-west", OLD), VERSIONS),
    }
    with regions(tmp_path, answers) as kc:
        fleet = tmp_path / "fleet.yaml"
        fleet.write_text(yaml.safe_dump({"kind": "Fleet", "regions": [
            {"name": "us-east", "context": "ctx-a"}, {"name": "eu-west", "context": "ctx-b"}]}))  # fmt: skip
        res = run("which", "fraud-detector", "--kubeconfig", str(kc), "--fleet", str(fleet), "-o", "json")
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(yaml.safe_dump({"kind": "Fleet", "regions": [
            {"name": "us-east", "context": "ctx-b"}, {"name": "eu-west", "context": "ctx-a"}]}))  # fmt: skip
        swapped = run("which", "fraud-detector", "--kubeconfig", str(kc), "--fleet", str(wrong), "-o", "json")
    assert res.exit_code == 0, res.output
    assert list(by_region(res.stdout)) == ["us-east", "eu-west"]
    assert json.loads(swapped.stdout)["mismatched"] == ["us-east", "eu-west"]  # the operator says otherwise


def test_bad_region_options_are_usage_errors(tmp_path: Path) -> None:
    with regions(tmp_path, {"r1": "closed"}) as kc:
        assert run("which", "ep", "--kubeconfig", str(kc), "--contexts", "r1,nope").exit_code == 2
        assert (
            run("which", "ep", "--kubeconfig", str(kc), "--contexts", "r1", "--all-contexts").exit_code == 2
        )
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"kind": "Fleet", "regions": [{"name": "r1"}]}))
        res = run("which", "ep", "--kubeconfig", str(kc), "--fleet", str(bad))
        assert res.exit_code == 2 and "names no cluster" in res.output


def test_which_at_per_region(tmp_path: Path) -> None:
    h1 = [
        change("2026-12-07T10:00:00.000Z", **{"2_3_8": 100}),
        change("2026-12-07T11:00:00.000Z", **{"2_4_1": 100}),
    ]
    h2 = [change("2026-12-07T10:30:00.000Z", **{"2_3_8": 100})]
    answers = {"r1": router(endpoint("r1", NEW, history=h1), VERSIONS),
               "r2": router(endpoint("r2", OLD, history=h2), VERSIONS), "r3": "closed"}  # fmt: skip
    with regions(tmp_path, answers) as kc:
        res = run("which", "fraud-detector", "--kubeconfig", str(kc), "--all-contexts",
                  "--at", "2026-12-07T10:45:00Z", "-o", "json")  # fmt: skip
        later = run("which", "fraud-detector", "--kubeconfig", str(kc), "--contexts", "r1,r2",
                    "--at", "2026-12-07T11:30:00Z", "-o", "json")  # fmt: skip
        early = run("which", "fraud-detector", "--kubeconfig", str(kc), "--contexts", "r1,r2",
                    "--at", "2026-12-07T10:15:00Z", "-o", "json")  # fmt: skip
    got = by_region(res.stdout)
    assert [v["version"] for v in got["r1"]["variants"]] == ["2.3.8"]
    assert [v["version"] for v in got["r2"]["variants"]] == ["2.3.8"]
    assert got["r3"]["state"] == "Unknown" and res.exit_code == 1
    assert [v["version"] for v in by_region(later.stdout)["r1"]["variants"]] == [
        "2.4.1"
    ] and later.exit_code == 0
    assert by_region(early.stdout)["r2"]["state"] == "NotRecorded"  # its record begins later


def test_lineage_per_region(tmp_path: Path) -> None:
    mv = version("2.4.1")
    period = {"endpoint": "fraud-detector", "variant": "canary", "from": "2026-12-07T11:00:00.000Z"}
    served = [{"endpoint": "fraud-detector", "variant": "canary", "weight": 100}]
    mv["status"] = {"stage": "production", "region": "r1", "servedBy": served, "servingHistory": [period]}
    answers = {"r1": router(endpoint("r1", NEW), [mv]), "r2": router(endpoint("r2", OLD), []), "r3": "closed"}
    with regions(tmp_path, answers) as kc:
        res = run(
            "lineage", "fraud-detector", "2.4.1", "--kubeconfig", str(kc), "--all-contexts", "-o", "json"
        )
        table = run("lineage", "fraud-detector", "2.4.1", "--kubeconfig", str(kc), "--all-contexts")
    got = by_region(res.stdout)
    assert (
        got["r1"]["servingHistory"][0]["from"] == "2026-12-07T11:00:00.000Z"
        and got["r1"]["stage"] == "production"
    )
    assert got["r2"]["state"] == "NotFound" and got["r3"]["state"] == "Unknown"
    assert res.exit_code == 1 and "fraud-detector/canary" in table.stdout


def test_a_regions_status_text_cannot_send_terminal_controls(tmp_path: Path) -> None:
    """status.region (any text a cluster returns) is printed with its control characters shown as
    U+FFFD: no ESC sequence of a remote cluster reaches the user's terminal (title, screen, clipboard)."""
    hostile = "r1\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x9b31m"
    with regions(tmp_path, {"r1": router(endpoint(hostile, NEW), VERSIONS)}) as kc:
        res = run("which", "fraud-detector", "--kubeconfig", str(kc), "--contexts", "r1")
    assert "operator says r1\ufffd]52;c;cm0gLXJmIH4=" in res.stdout, res.stdout
    assert not any(c in res.stdout for c in "\x1b\x07\x9b")
