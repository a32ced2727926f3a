"""`kubectl models`: the pure functions the commands prepare and explain with (plain data in, a plan,
a message or view data out), tested without a cluster and without Typer."""

from __future__ import annotations

from datetime import UTC, datetime

from modelversioning.cli.models import views

NOW = datetime(2024, 10, 3, 12, 0, 0, tzinfo=UTC)


def test_a_timestamp_without_a_zone_has_no_age_and_sorts_first():
    """The CLI parses times like the operator (domain.registry.parse_time): no zone, no time."""
    assert views.human_age("2024-10-03T11:00:00Z", NOW) == "60m"
    assert views.human_age("2024-10-03T11:00:00", NOW) == "<none>"
    mv = {
        "spec": {"model": "m", "version": "1.0.0"},
        "status": {
            "history": [
                {"from": None, "to": "candidate", "at": "2024-10-03T10:00:00Z"},
                {"from": "candidate", "to": "staging", "at": "2024-10-03T11:00:00"},
            ]
        },
    }
    assert [r["to"] for r in views.history_rows([mv], "m")] == ["staging", "candidate"]
