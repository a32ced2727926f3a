import pytest

from modelversioning.domain import conditions as cond
from modelversioning.domain.conditions import Cond
from modelversioning.domain.semver import InvalidVersion, SemVer, is_valid
from modelversioning.domain.stages import (
    GateFacts,
    Stage,
    StageGraph,
    decide_transition,
    has_reached,
    one_below,
)
from modelversioning.domain.traffic import VariantInput, effective_split, validate_declared


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0",
        "1.2.3",
        "2.3.8",
        "10.20.30",
        "2.4.0-rc.1",
        "1.0.0-alpha.beta.1",
        "1.0.0-0.3.7",
        "1.0.0-x-y-z.--",
    ],
)
def test_semver_valid(text):
    assert is_valid(text)
    assert str(SemVer.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "1.2",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "v1.2.3",
        "1.2.3+build.5",
        "1.2.3-RC1",
        "1.2.3-01",
        "latest",
        "",
        "1.2.3-",
        "1.2.3.4",
    ],
)
def test_semver_invalid(text):
    assert not is_valid(text)
    with pytest.raises(InvalidVersion):
        SemVer.parse(text)


def test_semver_build_metadata_message():
    with pytest.raises(InvalidVersion, match="build metadata"):
        SemVer.parse("1.2.3+abc")


def test_semver_ordering_follows_spec():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.3.8",
        "2.4.1",
        "10.0.0",
    ]
    parsed = [SemVer.parse(t) for t in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert SemVer.parse("2.3.8") < SemVer.parse("2.4.1")


def test_bump_kind():
    assert SemVer.parse("2.3.8").bump_kind(SemVer.parse("3.0.0")) == "major"
    assert SemVer.parse("2.3.8").bump_kind(SemVer.parse("2.4.0")) == "minor"
    assert SemVer.parse("2.3.8").bump_kind(SemVer.parse("2.3.9")) == "patch"
    assert SemVer.parse("2.3.8").bump_kind(SemVer.parse("2.3.8")) == "none"


OK = GateFacts(artifact_verified=True, lineage_complete=True)
G = StageGraph()


@pytest.mark.parametrize(
    "src,dst",
    [
        ("candidate", "staging"),
        ("staging", "production"),
        ("production", "archived"),
        ("archived", "staging"),
        ("production", "staging"),
        ("candidate", "archived"),
    ],
)
def test_allowed_transitions(src, dst):
    d = decide_transition(Stage(src), Stage(dst), OK, G)
    assert d.allowed, d


@pytest.mark.parametrize(
    "src,dst",
    [
        ("candidate", "production"),
        ("archived", "production"),
        ("staging", "candidate"),
        ("archived", "candidate"),
    ],
)
def test_refused_transitions(src, dst):
    d = decide_transition(Stage(src), Stage(dst), OK, G)
    assert not d.allowed
    assert d.reason == "TransitionNotAllowed"
    assert src in d.message and dst in d.message


def test_gates():
    unverified = GateFacts(artifact_verified=False, lineage_complete=True)
    d = decide_transition(Stage.CANDIDATE, Stage.STAGING, unverified, G)
    assert (d.allowed, d.reason) == (False, "ArtifactNotVerified")
    no_lineage = GateFacts(True, False, ("lineage.author",))
    d = decide_transition(Stage.STAGING, Stage.PRODUCTION, no_lineage, G)
    assert (d.allowed, d.reason) == (False, "LineageIncomplete")
    assert "lineage.author" in d.message
    # archiving needs no gate
    assert decide_transition(Stage.CANDIDATE, Stage.ARCHIVED, unverified, G).allowed


def test_configured_stricter_graph():
    g = StageGraph.from_config(
        {"candidate": ["staging"], "staging": ["production"], "production": ["archived"]}
    )
    assert not decide_transition(Stage.PRODUCTION, Stage.STAGING, OK, g).allowed
    assert not decide_transition(Stage.ARCHIVED, Stage.STAGING, OK, g).allowed


def test_has_reached_and_one_below():
    assert has_reached(Stage.PRODUCTION, Stage.STAGING)
    assert not has_reached(Stage.STAGING, Stage.PRODUCTION)
    assert not has_reached(Stage.ARCHIVED, Stage.CANDIDATE)
    assert one_below(Stage.PRODUCTION) is Stage.STAGING
    assert one_below(Stage.CANDIDATE) is Stage.CANDIDATE


def V(name, desired, eligible, version="2.3.8"):
    return VariantInput(name, version, desired, eligible)


def test_split_as_declared():
    s = effective_split([V("stable", 90, True), V("canary", 10, True)], None)
    assert s.weights == {"stable": 90, "canary": 10}
    assert s.reason == "AsDeclared" and not s.held


def test_split_waits_for_unready_canary():
    s = effective_split([V("stable", 90, True), V("canary", 10, False)], {"stable": 100})
    assert s.weights == {"stable": 100, "canary": 0}
    assert s.reason == "WaitingForVariants" and "canary" in s.message


def test_split_blue_green_switch_holds_on_ready_blue():
    s = effective_split([V("blue", 0, True), V("green", 100, False)], {"blue": 100, "green": 0})
    assert s.weights == {"blue": 100, "green": 0}
    assert s.reason == "HeldOnReadyVariants"


def test_split_nothing_ready_keeps_last_weights():
    s = effective_split([V("a", 50, False), V("b", 50, False)], {"a": 70, "old": 30})
    assert s.held and s.weights == {"a": 70, "old": 30}


def test_split_nothing_ever_ready():
    s = effective_split([V("a", 100, False)], None)
    assert s.held and s.weights == {}


def test_split_rounds_to_100():
    s = effective_split([V("a", 33, True), V("b", 33, True), V("c", 34, False)], None)
    assert sum(s.weights.values()) == 100
    assert s.weights["c"] == 0 and s.weights["a"] == 50 and s.weights["b"] == 50


def test_validate_declared():
    assert validate_declared([("a", "2.3.8", 90), ("b", "2.4.1", 10)], None, False) == []
    assert "add up to 95" in validate_declared([("a", "2.3.8", 90), ("b", "2.4.1", 5)], None, False)[0][1]
    assert "unique" in validate_declared([("a", "2.3.8", 50), ("a", "2.4.1", 50)], None, False)[0][1]
    assert "unknown variant" in validate_declared([("a", "2.3.8", 100)], "shadow", False)[0][1]
    mix = validate_declared([("a", "2.3.8", 50), ("b", "3.0.0", 50)], None, False)
    assert mix and mix[0][0] == "MajorVersionMix" and "MAJOR" in mix[0][1]
    assert validate_declared([("a", "2.3.8", 50), ("b", "3.0.0", 50)], None, True) == []
    # weight 0 on another major (blue/green across majors) is fine
    assert validate_declared([("a", "2.3.8", 100), ("b", "3.0.0", 0)], None, False) == []
    # the mirror does not count as live traffic
    assert validate_declared([("a", "2.3.8", 100), ("m", "3.0.0", 0)], "m", False) == []


def test_conditions_keep_transition_time_unless_status_flips():
    c1 = cond.merge_conditions(None, [Cond("Ready", "False", "Waiting", "x")], 1, now="2024-01-01T00:00:00Z")
    c2 = cond.merge_conditions(c1, [Cond("Ready", "False", "Other", "y")], 2, now="2024-01-02T00:00:00Z")
    assert c2[0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    assert c2[0]["reason"] == "Other" and c2[0]["observedGeneration"] == 2
    c3 = cond.merge_conditions(c2, [Cond("Ready", "True", "Ready", "")], 2, now="2024-01-03T00:00:00Z")
    assert c3[0]["lastTransitionTime"] == "2024-01-03T00:00:00Z"


def test_conditions_ready_first_and_others_kept():
    c = cond.merge_conditions(
        [{"type": "Zeta", "status": "True", "reason": "r", "lastTransitionTime": "t"}],
        [Cond("Alpha", "True", "a"), Cond("Ready", "True", "r")],
        1,
        now="n",
    )
    assert [x["type"] for x in c] == ["Ready", "Alpha", "Zeta"]
