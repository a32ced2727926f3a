"""Lineage quarantine (issue 28, part 3; domain.quarantine): table tests of the selectors, the match on
lineage, the eligibility decision (a quarantined version is withdrawn like a revoked one, and gets it
back when lifted), the promotion guard, the version's record, and the blast radius a dry run shows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from endpoint_plan_facts import NEW, facts, mv, pin, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import quarantine as Q
from modelversioning.domain.revocation import withdrawal
from modelversioning.domain.stages import Stage, StageGraph
from modelversioning.domain.traffic import VariantInput, effective_split

ORDER = StageGraph().order


# ------------------------------------------------------------------------------------ selectors
@pytest.mark.parametrize(
    ("kind", "raw", "text"),
    [
        ("dataset", "fraud-tx@2026-10-01", "dataset=fraud-tx@2026-10-01"),
        ("dataset", "s3://b/x@y@v2", "dataset=s3://b/x@y@v2"),  # the last @ splits
        ("dataset", "tx@sha256:" + "a" * 64, "dataset=tx@sha256:" + "a" * 64),
        ("commit", " ABCDEF1 ", "commit=abcdef1"),
        ("version", "fraud@2.4.1", "version=fraud@2.4.1"),
    ],
)
def test_a_good_selector_parses_and_prints_as_recorded(kind: str, raw: str, text: str) -> None:
    sel = Q.parse(kind, raw)
    assert sel.text() == text and Q.parse_text(text) == sel


@pytest.mark.parametrize(
    ("kind", "raw", "says"),
    [
        ("dataset", "fraud-tx", "must be NAME@VERSION"),
        ("dataset", "@v1", "must be NAME@VERSION"),
        ("dataset", "tx@", "must be NAME@VERSION"),
        ("dataset", "tx@sha256:abc", "8 to 64 hex"),
        ("dataset", "", "needs a value"),
        ("dataset", "x" * 500 + "@1", "needs a value"),
        ("commit", "abc12", "not a git commit"),
        ("commit", "xyz1234567", "not a git commit"),
        ("version", "2.4.1", "must be NAME@VERSION"),
        ("model", "a@b", "unknown selector kind"),
    ],
)
def test_a_malformed_selector_says_what_is_wrong(kind: str, raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Q.parse(kind, raw)


BUILT = Q.Built("fraud", "2.4.1", "fraud-tx", "2026-10-01", "c" * 64, "0123456789abcdef")


@pytest.mark.parametrize(
    ("kind", "raw", "hit"),
    [
        ("dataset", "fraud-tx@2026-10-01", True),
        ("dataset", "fraud-tx@2026-10-02", False),
        ("dataset", "other@2026-10-01", False),
        ("dataset", "fraud-tx@sha256:" + "c" * 64, True),
        ("dataset", "fraud-tx@sha256:" + "d" * 64, False),
        ("dataset", "fraud-tx@cccccccc", True),  # 8+ hex of its sha256, as search --dataset
        ("dataset", "fraud-tx@ccccccc", False),  # 7: too short to name a digest
        ("commit", "0123456", True),  # abbreviated on the command line
        ("commit", "0123456789abcdef0000", True),  # abbreviated in the lineage
        ("commit", "1123456", False),
        ("version", "fraud@2.4.1", True),
        ("version", "fraud@2.4.10", False),
        ("version", "fraudx@2.4.1", False),
    ],
)
def test_a_selector_matches_on_lineage(kind: str, raw: str, hit: bool) -> None:
    assert Q.matches(Q.parse(kind, raw), BUILT) is hit


def test_a_version_without_a_commit_never_matches_a_commit() -> None:
    assert not Q.matches(Q.parse("commit", "0123456"), replace(BUILT, commit=""))


@pytest.mark.parametrize(
    ("annotation", "selectors", "text"),
    [
        (None, (), None),
        ("", (), None),
        ("[]", (), None),  # the last selector lifted
        ('["dataset=a@1"]', ("dataset=a@1",), "dataset=a@1"),
        ('["dataset=a@1","commit=abcdef1","dataset=a@1"]', ("dataset=a@1", "commit=abcdef1"), None),
        ("bad batch", ("bad batch",), "bad batch"),  # hand-written: still quarantined (fails closed)
        ('{"x": 1}', ('{"x": 1}',), '{"x": 1}'),
    ],
)
def test_the_annotation_in_force(
    annotation: str | None, selectors: tuple[str, ...], text: str | None
) -> None:
    assert Q.in_force(annotation) == selectors
    if text is not None or not selectors:
        assert Q.quarantined(annotation) == text
    assert (
        Q.encode(selectors) is None
        if not selectors
        else Q.in_force(Q.encode(selectors)) == tuple(sorted(selectors))
    )


# ------------------------------------------------------------------ eligibility (domain.revocation)
QUARANTINED = replace(mv(), quarantined="dataset=fraud-tx@2026-10-01")


@pytest.mark.parametrize(
    ("version", "value"),
    [
        pytest.param(QUARANTINED, "quarantined", id="quarantined-at-production"),
        pytest.param(replace(QUARANTINED, stage="staging"), "quarantined", id="quarantined-whatever-stage"),
        pytest.param(replace(QUARANTINED, revoked="CVE"), "revoked", id="revoked-is-more-severe"),
        pytest.param(replace(QUARANTINED, quarantined=None), "", id="lifted"),
    ],
)
def test_withdrawal_of_a_quarantined_version(version: P.VersionFacts, value: str) -> None:
    assert withdrawal(version, Stage.PRODUCTION) == value


SERVED = slot("ep-s")


def serving(
    version: P.VersionFacts, name: str = "stable", weight: int = 100, slot_: str = "ep-s"
) -> P.VariantFacts:
    s = slot(slot_)
    p = pin(version.version, slot_, version.digest, version.uid)
    return variant(name, version.version, weight, mv=version, desired=s, pin=p, pinned=s, pinned_mv=version)


def endpoint(*variants: P.VariantFacts, previous: dict[str, int], **kw: Any) -> P.EndpointFacts:
    owned = frozenset({*(v.desired.name for v in variants if v.desired), "ep-closed"})
    routed = {v.desired.name: previous.get(v.name, 0) for v in variants if v.desired and previous.get(v.name)}
    return facts(*variants, previous_weights=previous, closed_service="ep-closed", owned_slots=owned,
                 routed=routed, **kw)  # fmt: skip


NEWER = replace(mv("2.4.1", digest=NEW, uid="uid-2"), quarantined="dataset=fraud-tx@2026-10-01")
OLDER = mv("2.3.8")


def test_a_quarantined_serving_version_moves_its_traffic_to_the_unaffected_one() -> None:
    """2.4.1 (affected) takes 100 %, 2.3.8 is declared at 0: the operator moves all of it to 2.3.8,
    without a spec change."""
    plan = P.decide(endpoint(serving(NEWER, "canary", 100, "ep-c"), serving(OLDER, "stable", 0),
                             previous={"canary": 100}))  # fmt: skip
    assert not plan.closed and plan.weights == {"canary": 0, "stable": 100}
    d = plan.decision("canary")
    assert not d.eligible and d.reason == R.QUARANTINED and "quarantined" in d.message
    assert [(x.slot, x.weight) for x in plan.destinations] == [("ep-s", 100)]


def test_the_newest_unaffected_eligible_version_takes_what_nothing_else_carries() -> None:
    v237 = mv("2.3.7", digest="d" * 64, uid="uid-3")
    plan = P.decide(endpoint(serving(NEWER, "canary", 100, "ep-c"), serving(v237, "old", 0, "ep-o"),
                             serving(OLDER, "stable", 0), previous={"canary": 100}))  # fmt: skip
    assert plan.weights == {"canary": 0, "old": 0, "stable": 100}


def test_a_quarantine_with_nothing_eligible_left_closes_the_route() -> None:
    plan = P.decide(endpoint(serving(NEWER, "canary", 100, "ep-c"), previous={"canary": 100}))
    assert plan.closed == R.UNAVAILABLE_QUARANTINED and plan.weights == {} and plan.destinations == ()
    assert plan.decision("canary").reason == R.QUARANTINED


def test_a_lifted_quarantine_is_eligible_again() -> None:
    plan = P.decide(endpoint(serving(replace(NEWER, quarantined=None), "canary", 100, "ep-c"),
                             serving(OLDER, "stable", 0), previous={"stable": 100}))  # fmt: skip
    assert plan.decision("canary").eligible and plan.weights == {"canary": 100, "stable": 0}


def test_a_recreated_object_of_the_pinned_name_that_is_quarantined_fails_closed() -> None:
    again = replace(NEWER, uid="uid-9")
    v = replace(serving(NEWER, "canary", 100, "ep-c"), mv=again, pinned_mv=again)
    plan = P.decide(endpoint(v, previous={"canary": 100}))
    assert plan.closed == R.UNAVAILABLE_QUARANTINED


def test_a_quarantined_mirror_gets_no_copies() -> None:
    shadow = variant("shadow", "2.4.1", 0, mirror=True, desired=slot("ep-m"), mv=NEWER)
    plan = P.decide(endpoint(serving(OLDER), shadow, previous={"stable": 100}))
    assert plan.mirror is None and not plan.closed and plan.weights == {"stable": 100}
    assert plan.decision("shadow").reason == R.QUARANTINED


# --------------------------------------------------------------------------------- promotion guard
@pytest.mark.parametrize(
    ("src", "dst", "quarantine", "refused"),
    [
        ("candidate", "staging", "dataset=a@1", True),
        ("staging", "production", "commit=abcdef1", True),
        ("candidate", "validated", "dataset=a@1", True),  # a Model's own stage: not a loss of authority
        ("production", "staging", "dataset=a@1", False),  # a demotion only removes authority
        ("production", "archived", "dataset=a@1", False),
        ("candidate", "staging", None, False),
    ],
)
def test_a_quarantined_version_is_never_promoted(
    src: str, dst: str, quarantine: str | None, refused: bool
) -> None:
    d = Q.promotion_guard(src, dst, quarantine, (*ORDER, "validated"))
    assert (d is not None) is refused
    if d is not None:
        assert not d.allowed and d.reason == R.QUARANTINED and "quarantine lift" in d.message


# ---------------------------------------------------------------------------- the version's record
T1, T2 = "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z"
ON = {"state": "Quarantined", "selectors": ["dataset=a@1"], "reason": "leak", "by": "jane", "at": T1}


@pytest.mark.parametrize(
    ("prev", "mark", "record", "event"),
    [
        pytest.param(None, Q.Mark(), None, "", id="never"),
        pytest.param(None, Q.Mark(("dataset=a@1",), "leak", "jane"), {**ON, "at": T2}, R.QUARANTINED,
                     id="starts"),
        pytest.param(ON, Q.Mark(("dataset=a@1",), "other words", "bob"), ON, "", id="unchanged-selectors"),
        pytest.param(ON, Q.Mark(("commit=abcdef1", "dataset=a@1"), "commit too", "bob"),
                     {"state": "Quarantined", "selectors": ["commit=abcdef1", "dataset=a@1"],
                      "reason": "commit too", "by": "bob", "at": T2}, R.QUARANTINED, id="gains-a-selector"),
        pytest.param(ON, Q.Mark((), "fixed", "bob"),
                     {"state": "Lifted", "selectors": [], "reason": "fixed", "by": "bob", "at": T2},
                     R.QUARANTINE_LIFTED, id="lifted"),
        pytest.param({**ON, "state": "Lifted"}, Q.Mark(), {**ON, "state": "Lifted"}, "", id="lift-kept"),
    ],
)  # fmt: skip
def test_the_record_and_its_events(
    prev: dict[str, Any] | None, mark: Q.Mark, record: dict[str, Any] | None, event: str
) -> None:
    got, events = Q.record(prev, mark, T2)
    assert got == record
    assert [e[1] for e in events] == ([event] if event else [])
    if event:
        assert mark.by in events[0][2] and mark.reason in events[0][2]


# ------------------------------------------------------------------------------------ blast radius
def view(
    ns: str, version: str, dataset: str = "fraud-tx@2026-10-01", sel: tuple[str, ...] = ()
) -> Q.VersionView:
    name, at, dv = dataset.partition("@")
    return Q.VersionView(
        ns, f"fraud-v{version}", Q.Built("fraud", version, name, dv, None, "abcdef1"), "production", sel
    )


def ep(ns: str, name: str, *variants: tuple[str, str, int, int, bool], closed: str = "") -> Q.EndpointView:
    return Q.EndpointView(ns, name, "fraud", tuple(Q.VariantView(*v) for v in variants), closed)


SEL = Q.parse("dataset", "fraud-tx@2026-10-01")
VERSIONS = (
    view("team-a", "2.4.1"),
    view("team-a", "2.3.8", "fraud-tx@2026-09-01"),
    view("team-a", "2.4.0", sel=(SEL.text(),)),  # already under this selector
    view("team-b", "2.4.1"),  # the caller may not write there
)
ENDPOINTS = (
    ep("team-a", "moves", ("canary", "2.4.1", 100, 100, True), ("stable", "2.3.8", 0, 0, True)),
    ep("team-a", "closes", ("only", "2.4.1", 100, 100, True)),
    ep("team-a", "idle", ("stable", "2.3.8", 100, 100, True), ("next", "2.4.1", 0, 0, True)),
    ep("team-a", "untouched", ("stable", "2.3.8", 100, 100, True)),
    ep("team-b", "theirs", ("only", "2.4.1", 100, 100, True)),
)


def test_the_blast_radius_lists_versions_and_endpoints_with_weights_where_the_caller_may_write() -> None:
    r = Q.blast_radius(SEL, VERSIONS, ENDPOINTS, {"team-a": "", "team-b": "you may not patch modelversions"})
    assert [v.name for v in r.versions] == ["fraud-v2.4.0", "fraud-v2.4.1"]
    assert [v.name for v in r.new] == ["fraud-v2.4.1"]
    assert r.skipped == {"team-b": "you may not patch modelversions"}
    hits = {h.endpoint: h for h in r.endpoints}
    assert set(hits) == {"moves", "closes", "idle"}
    assert (hits["moves"].before, hits["moves"].after, hits["moves"].closes) == (
        {"canary": 100},
        {"stable": 100},
        False,
    )
    assert hits["closes"].closes and hits["closes"].after == {} and "quarantined" in hits["closes"].message
    assert (
        not hits["idle"].closes
        and hits["idle"].after == {"stable": 100}
        and "no traffic" in hits["idle"].message
    )


def test_a_namespace_not_checked_is_skipped_never_written() -> None:
    r = Q.blast_radius(SEL, VERSIONS, ENDPOINTS, {})
    assert r.versions == () and r.endpoints == () and set(r.skipped) == {"team-a", "team-b"}


def test_a_selector_matching_nothing_has_no_radius() -> None:
    r = Q.blast_radius(Q.parse("commit", "fffffff"), VERSIONS, ENDPOINTS, {"team-a": ""})
    assert r.versions == () and r.endpoints == () and r.skipped == {}


def test_the_effective_split_gives_uncarried_traffic_to_the_newest_eligible_version() -> None:
    split = effective_split(
        [
            VariantInput("a", "2.10.0", 0, True),
            VariantInput("b", "2.9.0", 0, True),
            VariantInput("x", "3.0.0", 100, False),
        ],
        {"x": 100},
    )
    assert split.weights == {"a": 100, "b": 0, "x": 0}


# ---------------------------------------------------------------- the version reconciler's decision
def test_the_stage_walk_refuses_a_promotion_of_a_quarantined_version_and_records_the_quarantine() -> None:
    from modelversioning.domain.version_plan import decide
    from test_version_plan import NOW, POLICY, STAMP, c, verified_status
    from test_version_plan import facts as version_facts

    mark = Q.Mark(("dataset=fraud-tx@2026-10-01",), "labels leaked", "jane")
    plan = decide(version_facts(requested=Stage.STAGING, quarantine=mark), POLICY, NOW)
    assert plan.status["stage"] == "candidate"
    st = c(plan, "StageTransition")
    assert (st["status"], st["reason"]) == ("False", R.QUARANTINED) and "quarantine lift" in st["message"]
    assert plan.status["quarantine"] == {"state": "Quarantined", "selectors": list(mark.selectors),
                                         "reason": "labels leaked", "by": "jane", "at": STAMP}  # fmt: skip
    assert (("Warning", R.QUARANTINED) in [(e.type, e.reason) for e in plan.events]) and plan.notify_endpoints
    # lifted: the walk goes on, the lift is recorded and the endpoints re-decide
    lifted = Q.Mark((), "false alarm", "bob")
    was = {**verified_status(), "quarantine": plan.status["quarantine"]}
    again = decide(version_facts(requested=Stage.STAGING, quarantine=lifted, status=was), POLICY, NOW)
    assert again.status["stage"] == "staging" and again.status["quarantine"]["state"] == "Lifted"
    assert ("Normal", R.QUARANTINE_LIFTED) in [
        (e.type, e.reason) for e in again.events
    ] and again.notify_endpoints


def test_a_quarantined_version_may_still_be_archived_or_demoted() -> None:
    from modelversioning.domain.version_plan import decide
    from test_version_plan import NOW, POLICY, verified_status
    from test_version_plan import facts as version_facts

    mark = Q.Mark(("commit=abcdef1",), "bad code", "jane")
    for requested in (Stage.STAGING, Stage.ARCHIVED):
        f = version_facts(status=verified_status("production"), requested=requested, quarantine=mark)
        plan = decide(f, POLICY, NOW)
        assert plan.status["stage"] == requested


@pytest.mark.parametrize(
    ("ann", "enforced", "by"),
    [
        ({R.QUARANTINED_BY_ANNOTATION: "jane"}, True, "jane"),
        (
            {R.QUARANTINED_BY_ANNOTATION: "ceo@example.com"},
            False,
            "ceo@example.com (unverified quarantined-by)",
        ),
        ({}, True, f"unknown (no {R.QUARANTINED_BY_ANNOTATION})"),
    ],
)
def test_the_recorded_actor_is_an_identity_only_while_admission_is_observed(
    ann: dict[str, str], enforced: bool, by: str
) -> None:
    from modelversioning.handlers.version_annotations import quarantine_mark

    mark = quarantine_mark({R.QUARANTINED_ANNOTATION: '["commit=abcdef1"]', **ann}, enforced=enforced)
    assert mark == Q.Mark(("commit=abcdef1",), "", by)
