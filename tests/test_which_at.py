"""`kubectl models which ENDPOINT --at TIME`: parsing the moment, the pure view, and the command's
output and exit codes against a fake cluster holding an endpoint with a route history."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused
from modelversioning.cli.models.which_views import parse_at, which_at_view
from modelversioning.domain.endpoint_history import Change, Limits, RouteHistory, Served, compact, to_wire
from modelversioning.domain.timestamps import parse_epoch
from test_kubectl_models_commands import FakeCluster, run

A, B = "a" * 64, "b" * 64
T = [parse_epoch(f"2026-12-07T10:0{i}:00Z") or 0.0 for i in range(6)]


def endpoint(h: RouteHistory | None) -> dict[str, Any]:
    status = {"routeHistory": to_wire(h)} if h is not None else {}
    return {"metadata": {"name": "fraud", "namespace": "models", "generation": 3}, "status": status}


def blue_green() -> RouteHistory:
    """blue 2.3.8 from 10:00, 90/10 with green 2.4.1 from 10:01, green alone from 10:02."""
    blue, green = (
        Served("blue", "2.3.8", A, 100, "fraud-blue-1"),
        Served("green", "2.4.1", B, 100, "fraud-green-1"),
    )
    return RouteHistory(
        (
            Change("2026-12-07T10:00:00.000Z", "Initial", "", 1, (blue,)),
            Change("2026-12-07T10:01:00.000Z", "RolloutStep", "step 1", 2,
                   (replace(blue, weight=90), replace(green, weight=10))),
            Change("2026-12-07T10:02:00.000Z", "SpecChange", "", 3, (green,)),
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", T[5]),
        ("-15m", T[5] - 900),
        ("-90s", T[5] - 90),
        ("-1h30m", T[5] - 5400),
        ("-1d", T[5] - 86400),
        ("-0.5s", T[5] - 0.5),
        ("2026-12-07T10:01:00Z", T[1]),
        ("2026-12-07T11:01:00+01:00", T[1]),
        ("2026-12-07T10:01:00.250Z", T[1] + 0.25),
    ],
)
def test_parse_at(text: str, expected: float) -> None:
    assert parse_at(text, T[5]) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["15m", "-15", "-15x", "yesterday", "2026-12-07T10:01:00", ""])
def test_a_bad_at_is_a_usage_error(bad: str) -> None:
    with pytest.raises(Refused) as e:
        parse_at(bad, T[5])
    assert e.value.code == EXIT_USAGE and "RFC 3339" in e.value.message


@pytest.mark.parametrize(
    ("far", "said"),
    [
        ("-100000d", "before 1970"),
        ("1900-01-01T00:00:00Z", "before 1970"),
        ("0001-01-01T00:00:00+01:00", "before 1970"),  # year 0 in UTC: no date prints it
        ("9999-12-31T23:59:59-01:00", "after 9999"),  # year 10000 in UTC
    ],
)
def test_an_at_no_date_can_print_is_a_usage_error_absolute_or_relative(far: str, said: str) -> None:
    """The bound is parse_at's, for both forms: the CLI and the web view's ?at= never reach a date that
    cannot be printed (ValueError: a traceback, a 500)."""
    with pytest.raises(Refused) as e:
        parse_at(far, T[5])
    assert e.value.code == EXIT_USAGE and said in e.value.message


@pytest.mark.parametrize(
    ("at", "versions", "since"),
    [
        (T[0], {"blue": ("2.3.8", 100)}, "2026-12-07T10:00:00.000Z"),  # exactly at the first change
        (T[1] - 0.001, {"blue": ("2.3.8", 100)}, "2026-12-07T10:00:00.000Z"),
        (T[1], {"blue": ("2.3.8", 90), "green": ("2.4.1", 10)}, "2026-12-07T10:01:00.000Z"),
        (T[2] + 3600, {"green": ("2.4.1", 100)}, "2026-12-07T10:02:00.000Z"),  # after the last
    ],
)
def test_the_view_names_versions_digests_weights_and_the_period(
    at: float, versions: dict[str, tuple[str, int]], since: str
) -> None:
    view = which_at_view(endpoint(blue_green()), at)
    assert {v["variant"]: (v["version"], v["weight"]) for v in view["variants"]} == versions
    assert view["from"] == since and not view["coarse"]
    assert all(v["digest"] in (A, B) and v["slot"] for v in view["variants"])


def test_a_moment_just_after_a_change_says_the_gateway_may_still_have_served_the_previous_split() -> None:
    assert "previous" in which_at_view(endpoint(blue_green()), T[1] + 1)["note"]
    assert which_at_view(endpoint(blue_green()), T[1] + 30)["note"] == ""


def test_before_the_record_and_without_a_record_are_refused_with_when_it_begins() -> None:
    with pytest.raises(Refused) as e:
        which_at_view(endpoint(blue_green()), T[0] - 0.001)
    assert e.value.code == EXIT_FAILED and "before the route history" in e.value.message
    assert "2026-12-07T10:00:00.000Z" in e.value.message
    with pytest.raises(Refused) as e:
        which_at_view(endpoint(None), T[0])
    assert e.value.code == EXIT_FAILED and "no route history" in e.value.message


def test_a_compacted_moment_is_answered_coarsely_and_says_so() -> None:
    h = compact(blue_green(), Limits(full=1, coarse=1))
    view = which_at_view(endpoint(h), T[1] + 10)
    assert view["coarse"] and "coarse" in view["note"]
    assert {(v["version"], v["maxWeight"]) for v in view["variants"]} == {("2.3.8", 100), ("2.4.1", 10)}
    assert not which_at_view(endpoint(h), T[2])["coarse"]


def test_the_command_prints_json_and_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(endpoint(blue_green()))
    r = run(monkeypatch, fake, "which", "fraud", "--at", "2026-12-07T10:01:30Z", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [(v["version"], v["weight"]) for v in out["variants"]] == [("2.3.8", 90), ("2.4.1", 10)]
    assert out["cause"] == "RolloutStep"


def test_the_command_table_and_the_refusal_before_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(endpoint(blue_green()))
    r = run(monkeypatch, fake, "which", "fraud", "--at", "2026-12-07T10:02:00Z")
    assert r.exit_code == 0, r.output
    assert "2.4.1" in r.stdout and "2.3.8" not in r.stdout and "SpecChange" in r.stdout
    r = run(monkeypatch, fake, "which", "fraud", "--at", "2026-12-07T09:59:59Z")
    assert r.exit_code == EXIT_FAILED
    assert "before the route history" in r.output
    r = run(monkeypatch, fake, "which", "fraud", "--at", "soon")
    assert r.exit_code == EXIT_USAGE
