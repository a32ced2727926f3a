"""The route history (domain.endpoint_history): what is recorded, how it stays bounded, and the pure
answer to "which versions served at time T?" at every boundary."""

from __future__ import annotations

import json

import pytest

from modelversioning.api.modelendpoint import RouteHistory as RouteHistoryModel
from modelversioning.domain.endpoint_history import (
    Change,
    Coarse,
    Limits,
    Mirrored,
    RangeVariant,
    RouteHistory,
    Served,
    compact,
    from_wire,
    record,
    resolve,
    to_wire,
)
from modelversioning.domain.timestamps import parse_epoch, rfc3339_ms

T0 = 1_790_000_000.0  # 2026-09-21T...Z
A, B = "a" * 64, "b" * 64


def at(s: float) -> str:
    return rfc3339_ms(T0 + s)


def change(t: float, *split: tuple[str, str, int], cause: str = "SpecChange", closed: str = "") -> Change:
    served = tuple(
        Served(var, ver, A if ver.startswith("1") else B, w, f"ep-{var}-{ver}") for var, ver, w in split
    )
    return Change(at(t), cause, "", 1, served, None, closed)


def history(*times: float) -> RouteHistory:
    """Changes at `times`, alternating blue 100 / green 100."""
    h = RouteHistory()
    for i, t in enumerate(times):
        c = change(t, ("blue", "1.0.0", 100)) if i % 2 == 0 else change(t, ("green", "2.0.0", 100))
        h = record(h, c, Limits(full=1000, coarse=1000)) or h
    return h


# ------------------------------------------------------------------------------------ resolve

H3 = history(0, 100, 200)  # blue from 0, green from 100, blue from 200


@pytest.mark.parametrize(
    ("t", "kind", "version", "start", "end"),
    [
        (-0.001, "before", None, None, None),  # a millisecond before the first record
        (-3600, "before", None, None, None),
        (0, "exact", "1.0.0", 0, 100),  # exactly at the first change: it is in effect
        (50, "exact", "1.0.0", 0, 100),
        (99.999, "exact", "1.0.0", 0, 100),  # a millisecond before the second change: the first
        (100, "exact", "2.0.0", 100, 200),  # exactly at a change: the new split
        (150, "exact", "2.0.0", 100, 200),
        (200, "exact", "1.0.0", 200, None),  # at the last change
        (10**6, "exact", "1.0.0", 200, None),  # long after the last: still serving
    ],
)
def test_resolve_a_moment_against_full_changes(
    t: float, kind: str, version: str | None, start: float | None, end: float | None
) -> None:
    a = resolve(H3, T0 + t)
    assert a.kind == kind
    assert a.begins == at(0)
    if kind == "exact":
        assert a.change is not None and a.change.split[0].version == version
        assert a.start == at(start or 0)
        assert a.end == (None if end is None else at(end))
    else:
        assert a.change is None


def test_resolve_an_empty_history_says_so() -> None:
    assert resolve(RouteHistory(), T0).kind == "empty"


def test_resolve_inside_compacted_ranges_is_coarse_and_names_every_version_of_the_range() -> None:
    h = compact(history(0, 100, 200, 300, 400), Limits(full=2, coarse=1))
    # 300 and 400 stay in full; 0..300 is one range holding blue and green
    assert [c.at for c in h.changes] == [at(300), at(400)]
    assert len(h.coarse) == 1 and (h.coarse[0].start, h.coarse[0].end) == (at(0), at(300))
    for t in (0, 150, 299.999):
        a = resolve(h, T0 + t)
        assert a.kind == "coarse" and a.range is not None
        assert {v.version for v in a.range.variants} == {"1.0.0", "2.0.0"}
        assert a.range.changes == 3
    assert resolve(h, T0 + 300).kind == "exact"  # the boundary belongs to the full change
    assert resolve(h, T0 - 1).kind == "before"
    assert resolve(h, T0 - 1).begins == at(0)  # compaction keeps when the record begins


# ------------------------------------------------------------------------------------- record


def test_record_adds_nothing_when_the_route_serves_what_was_recorded_last() -> None:
    h = history(0)
    same = change(50, ("blue", "1.0.0", 100), cause="Eligibility")
    assert record(h, same) is None
    # a servingDigest learnt later is not a route change either
    learnt = Served("blue", "1.0.0", A, 100, "ep-blue-1.0.0", "c" * 64)
    later = Change(at(60), "Eligibility", "", 1, (learnt,))
    assert record(h, later) is None


@pytest.mark.parametrize(
    "other",
    [
        change(50, ("blue", "1.0.0", 90), ("green", "2.0.0", 10)),  # a weight
        Change(at(50), "x", "", 1, (Served("blue", "1.0.0", B, 100, "ep-blue-1.0.0"),)),  # a digest
        Change(at(50), "x", "", 1, (Served("blue", "1.0.0", A, 100, "ep-blue-other"),)),  # a slot
        change(50, cause="Closed", closed="revoked"),  # closed
        Change(at(50), "x", "", 1, H3.changes[0].split, Mirrored("m", "2.0.0", B, 10, "s")),  # a mirror
    ],
)
def test_record_adds_every_change_of_the_split_as_served(other: Change) -> None:
    h = record(history(0), other)
    assert h is not None and h.last == other and len(h.changes) == 2


# ---------------------------------------------------------------------------------- compaction


def test_the_newest_changes_stay_in_full_and_older_ones_become_ranges() -> None:
    limits = Limits(full=3, coarse=100)
    h = RouteHistory()
    for i in range(10):
        h = record(h, change(i * 10, ("blue", "1.0.0", 100 - i), ("green", "2.0.0", i)), limits) or h
    assert [c.at for c in h.changes] == [at(70), at(80), at(90)]
    ranges = [(r.start, r.end, r.changes) for r in h.coarse]
    assert ranges == [(at(i * 10), at(i * 10 + 10), 1) for i in range(7)]


def test_coarse_ranges_merge_the_fewest_changes_first_so_older_ranges_are_coarser() -> None:
    limits = Limits(full=1, coarse=4)
    h = RouteHistory()
    for i in range(40):
        h = record(h, change(i, ("blue", "1.0.0", i + 1)), limits) or h
    assert len(h.changes) == 1 and len(h.coarse) == 4
    counts = [r.changes for r in h.coarse]
    assert sum(counts) == 39  # nothing lost: every change is in a range or in full
    assert counts == sorted(counts, reverse=True)  # oldest coarsest
    # contiguous, and the last range ends where the full change begins
    assert all(a.end == b.start for a, b in zip(h.coarse, h.coarse[1:], strict=False))
    assert h.coarse[-1].end == h.changes[0].at and h.coarse[0].start == at(0)
    # a merged range keeps each served version once, with its highest weight
    assert h.coarse[0].variants == (RangeVariant("blue", "1.0.0", A, counts[0]),)  # weights 1..counts[0]


def test_the_record_stays_under_its_byte_budget_and_keeps_the_current_split_in_full() -> None:
    limits = Limits(full=20, coarse=12, max_bytes=4096)
    wide = [(f"v{i}", f"1.0.{i}", 1) for i in range(16)]
    h = RouteHistory()
    for i in range(30):
        h = record(h, change(i, *wide[:15], (f"x{i}", "2.0.0", 85)), limits) or h
    size = len(json.dumps(to_wire(h), separators=(",", ":")))
    assert size <= 4096
    assert h.last is not None and h.last.at == at(29)  # the current split is always in full
    assert resolve(h, T0 + 29).kind == "exact"


def test_a_range_keeps_at_most_range_variants_and_says_it_is_truncated() -> None:
    limits = Limits(full=1, coarse=1, range_variants=3)
    h = RouteHistory()
    for i in range(6):
        h = record(h, change(i, (f"v{i}", "1.0.0", 100)), limits) or h
    assert len(h.coarse) == 1 and len(h.coarse[0].variants) == 3 and h.coarse[0].truncated


# ---------------------------------------------------------------------------------------- wire


def test_the_wire_form_round_trips_and_validates_against_the_crd_model() -> None:
    h = compact(history(0, 100, 200, 300), Limits(full=2, coarse=5))
    h = (
        record(
            h,
            Change(
                at(400),
                "RolloutStep",
                "step 1",
                3,
                (Served("blue", "1.0.0", A, 90, "s1", "d" * 64),),
                Mirrored("shadow", "2.0.0", B, 10, "s2"),
            ),  # fmt: skip
        )
        or h
    )
    wire = to_wire(h)
    assert from_wire(wire) == h
    model = RouteHistoryModel.model_validate(wire)
    assert model.to_k8s() == wire  # every field written is in the schema (nothing pruned)
    assert from_wire(json.loads(json.dumps(wire))) == h


def test_a_malformed_record_reads_as_empty_entries_never_an_error() -> None:
    h = from_wire({"changes": [{"at": 5, "split": [{"weight": "x"}]}, "junk"], "coarse": None})
    assert len(h.changes) == 1 and h.changes[0].split[0].weight == 0
    assert from_wire(None) == RouteHistory()
    assert resolve(from_wire({"changes": [{"at": "not a time"}]}), T0).kind == "exact"


def test_times_are_milliseconds_and_a_recorded_time_resolves_to_its_own_change() -> None:
    h = history(0, 0.001, 0.002)
    for c in h.changes:
        t = parse_epoch(c.at)
        assert t is not None and resolve(h, t).change == c
    assert isinstance(Coarse, type)
