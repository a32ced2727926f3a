"""domain.timestamps: the one RFC 3339 writer and reader the domain and the conditions use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelversioning.domain.conditions import now_rfc3339
from modelversioning.domain.timestamps import parse_rfc3339, rfc3339


def test_written_to_the_second_with_z_for_utc():
    assert rfc3339(datetime(2024, 7, 2, 10, 0, 5, 999_999, tzinfo=UTC)) == "2024-07-02T10:00:05Z"
    assert rfc3339(datetime(2024, 7, 2, 12, 0, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "2024-07-02T12:00:05+02:00"
    )


def test_now_of_the_conditions_is_written_the_same_way():
    got = now_rfc3339()
    assert got.endswith("Z") and "." not in got
    assert parse_rfc3339(got) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-02T10:00:05Z", datetime(2024, 7, 2, 10, 0, 5, tzinfo=UTC)),
        ("2024-07-02T12:00:05+02:00", datetime(2024, 7, 2, 10, 0, 5, tzinfo=UTC)),
        ("2024-07-02T10:00:05.250Z", datetime(2024, 7, 2, 10, 0, 5, 250_000, tzinfo=UTC)),
    ],
)
def test_read_back(text, expected):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", [None, "", "yesterday", "2024-07-02T10:00:05", 1719914405])
def test_not_a_zoned_timestamp_reads_as_none(text):
    assert parse_rfc3339(text) is None


def test_round_trip():
    t = datetime(2024, 7, 2, 10, 0, 5, tzinfo=UTC)
    assert parse_rfc3339(rfc3339(t)) == t
