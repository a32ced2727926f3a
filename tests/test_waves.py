"""Table tests of regional waves (issue 30): the plan's validation (api.fleet), the wave's position
and the gate (domain.waves), and the next-wave patch of an overlay."""

from __future__ import annotations

import pytest
import yaml

from modelversioning.api.fleet import load_plan, load_regions
from modelversioning.domain.waves import (
    Declared,
    GateParams,
    Observed,
    declared_in,
    gate,
    load_document,
    parse_soak,
    position,
    promote_overlay,
    served_since,
)

OLD = Declared((("canary", "2.4.1", 0), ("stable", "2.3.8", 100)))
NEW = Declared((("canary", "2.4.1", 100), ("stable", "2.3.8", 0)))


def plan_doc(**spec):
    base = {
        "endpoint": "fraud-detector",
        "soak": "30s",
        "regions": [
            {"name": "r1", "context": "c1", "overlay": "regions/r1/endpoint.yaml"},
            {"name": "r2", "context": "c2", "overlay": "regions/r2/endpoint.yaml"},
            {"name": "r3", "context": "c3", "overlay": "regions/r3/endpoint.yaml"},
        ],
    }
    base.update(spec)
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "WavePlan",
        "metadata": {"name": "w"},
        "spec": base,
    }


# ---- the plan -----------------------------------------------------------------------------------


def test_a_valid_plan_loads_with_defaults():
    p = load_plan(plan_doc(), "plan.yaml")
    assert [r.name for r in p.spec.regions] == ["r1", "r2", "r3"]
    assert p.soak_seconds == 30 and p.spec.gates.min_weight == 100 and p.spec.gates.rollout_succeeded


def _regions(*changes):
    rs = plan_doc()["spec"]["regions"]
    for i, k, v in changes:
        if v is None:
            rs[i].pop(k)
        else:
            rs[i][k] = v
    return rs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"regions": _regions((1, "context", None))}, "spec.regions.1: region 'r2' names no cluster"),
        ({"regions": _regions((2, "name", "r1"))}, "region 'r1' is listed twice"),
        ({"regions": _regions((2, "context", "c1"))}, "regions 'r1' and 'r3' name the same cluster"),
        ({"regions": _regions((2, "overlay", "regions/r1/endpoint.yaml"))}, "share the overlay"),
        (
            {"regions": _regions((0, "overlay", "../elsewhere.yaml"))},
            "must be a relative path inside the repository",
        ),
        (
            {"regions": _regions((0, "overlay", "/etc/passwd"))},
            "must be a relative path inside the repository",
        ),
        ({"regions": _regions((0, "name", "EU_West"))}, "spec.regions.0.name: String should match pattern"),
        ({"soak": "1 day"}, "spec.soak: soak '1 day' is not a duration"),
        ({"soak": "-5m"}, "is not a duration"),
        ({"regions": _regions()[:1]}, "spec.regions: List should have at least 2 items"),
        ({"surprise": 1}, "spec.surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_plans_are_refused_with_where_and_why(spec, message):
    with pytest.raises(ValueError, match="plan.yaml: ") as e:
        load_plan(plan_doc(**spec), "plan.yaml")
    assert message in str(e.value)


def test_a_fleet_file_is_a_fleet_or_a_plan():
    fleet = {"kind": "Fleet", "regions": [{"name": "a", "context": "x"}, {"name": "b", "context": "y"}]}
    assert [r.context for r in load_regions(fleet, "f")] == ["x", "y"]
    assert [r.name for r in load_regions(plan_doc(), "f")] == ["r1", "r2", "r3"]
    with pytest.raises(ValueError, match="kind must be Fleet or WavePlan"):
        load_regions({"kind": "ConfigMap"}, "f")
    with pytest.raises(ValueError, match="region 'b' names no cluster"):
        load_regions({"kind": "Fleet", "regions": [{"name": "b"}]}, "f")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("24h", 86400), ("2d", 172800), ("1h30m", 5400)]
)
def test_soak_durations(text, seconds):
    assert parse_soak(text) == seconds


# ---- the position -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "promoted", "nxt", "problem"),
    [
        ((NEW, OLD, OLD), ("r1",), 1, ""),
        ((NEW, NEW, OLD), ("r1", "r2"), 2, ""),
        ((NEW, NEW, NEW), ("r1", "r2", "r3"), None, ""),
        ((NEW, OLD, NEW), ("r1", "r3"), None, "region r3 already declares"),
    ],
)
def test_the_wave_position_follows_the_overlays(declared, promoted, nxt, problem):
    p = position(["r1", "r2", "r3"], declared)
    assert (p.promoted, p.next) == (promoted, nxt)
    assert p.previous == (None if nxt is None else nxt - 1)
    assert problem in p.problem and bool(problem) == bool(p.problem)


# ---- the gate -----------------------------------------------------------------------------------

NOW = 10_000.0


def served(**kw):
    base = dict(
        region="r1", reachable=True, status_region="r1", spec=NEW, generation=3, observed_generation=3,
        serving={"canary": ("2.4.1", 100), "stable": ("2.3.8", 0)}, ready=True, has_strategy=True,
        rollout_phase="Succeeded", stage="production",
        history=((NOW - 100, {"2.3.8": 100}), (NOW - 60, {"2.4.1": 10, "2.3.8": 90}),
                 (NOW - 40, {"2.4.1": 100})),
    )  # fmt: skip
    base.update(kw)
    return Observed(**base)


P = GateParams(soak_seconds=30, stage="production")


@pytest.mark.parametrize(
    ("observed", "params", "verdict", "reason"),
    [
        (served(), P, "pass", "serves 2.4.1 at 100% for 40s"),
        (
            served(reachable=False, error="connection refused"),
            P,
            "unknown",
            "unreachable (connection refused)",
        ),
        (served(rollout_phase="Failed"), P, "refuse", "rolled back: its rollout is Failed"),
        (served(rollout_phase="Aborted"), P, "refuse", "rolled back"),
        (served(status_region="r9"), P, "refuse", "reaches the operator of region r9"),
        (served(), GateParams(soak_seconds=60), "wait", "40s of the 60s soak (20s left)"),
        (served(spec=OLD), P, "wait", "GitOps has not applied its overlay"),
        (served(observed_generation=2), P, "wait", "has not seen generation 3"),
        (served(rollout_phase="Progressing"), P, "wait", "rollout is Progressing, not Succeeded"),
        (served(rollout_phase="Progressing"), GateParams(rollout_succeeded=False), "pass", ""),
        (served(ready=False), P, "wait", "not Ready"),
        (served(ready=None), P, "wait", "not Ready"),
        (
            served(serving={"canary": ("2.4.1", 50), "stable": ("2.3.8", 50)}),
            P,
            "wait",
            "at 50%, the gate needs 100%",
        ),
        (
            served(serving={"canary": ("2.4.1", 50), "stable": ("2.3.8", 50)}),
            GateParams(min_weight=50),
            "pass",
            "",
        ),
        (served(stage="staging"), P, "wait", "2.4.1 is staging in region r1, the gate needs production"),
        (served(history=()), P, "wait", "does not record since when"),
        (served(found=False), P, "wait", "has no such endpoint"),
        (served(status_region=None), P, "pass", ""),  # an operator without a region: not a refusal
        (served(has_strategy=False, rollout_phase=None), P, "pass", ""),
    ],
)
def test_the_gate_fails_closed(observed, params, verdict, reason):
    g = gate(observed, NEW, params, NOW)
    assert g.verdict == verdict, g.reasons
    assert reason in " ".join(g.reasons)


@pytest.mark.parametrize(
    ("history", "since"),
    [
        (((1.0, {"a": 100}), (2.0, {"a": 100}), (3.0, {"a": 100})), 1.0),
        (((1.0, {"a": 100}), (2.0, {"b": 100}), (3.0, {"a": 100})), 3.0),
        (((1.0, {"a": 100}), (2.0, {"a": 50, "b": 50})), None),
        ((), None),
    ],
)
def test_served_since_is_the_latest_unbroken_run(history, since):
    assert served_since(history, "a", 100) == since


# ---- the next-wave patch ------------------------------------------------------------------------

FLOW = """\
# eu-west: what this region serves (promoted by kubectl models wave next)
apiVersion: modelversioning.io/v1alpha1
kind: ModelEndpoint
metadata: {name: fraud-detector}
spec:
  model: fraud-detector
  variants:
    - {name: stable, version: 2.3.8, weight: 100}   # the old one
    - {name: canary, version: 2.4.1, weight: 0}
  routing: {router: none}
"""

BLOCK = """\
apiVersion: modelversioning.io/v1alpha1
kind: ModelEndpoint
metadata:
  name: fraud-detector
spec:
  model: fraud-detector
  variants:
  - name: stable
    version: "2.3.8"
    weight: 100
    replicas: 3
  - name: canary
    version: 2.3.8
    weight: 0
  routing:
    router: gatewayAPI
    parentRefs:
    - name: canary
"""


@pytest.mark.parametrize("text", [FLOW, BLOCK])
def test_the_patch_changes_only_versions_and_weights(text):
    out = promote_overlay(text, NEW, "o.yaml")
    assert declared_in(out, "o.yaml") == NEW
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) in (2, 3, 4) and all("version" in b or "weight" in b for _, b in changed)
    assert [ln.partition("#")[2] for ln in out.splitlines()] == [
        ln.partition("#")[2] for ln in text.splitlines()
    ]
    assert yaml.safe_load(out)["spec"]["routing"] == yaml.safe_load(text)["spec"]["routing"]


def test_a_patch_with_other_variant_names_rewrites_the_document():
    text = FLOW.replace("name: canary", "name: next")
    out = promote_overlay(text, NEW, "o.yaml")
    assert declared_in(out, "o.yaml") == NEW and yaml.safe_load(out)["spec"]["routing"] == {"router": "none"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("spec: {}\n", "exactly one document with spec.variants"), ("a: [\n", "not valid YAML"),
     ("spec:\n  variants: [{name: a}]\n", "needs a name and a version")],
)  # fmt: skip
def test_a_bad_overlay_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        promote_overlay(text, NEW, "o.yaml")


BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "spec:\n  variants:\n    - {name: stable, version: *f, weight: 100}\n"
)


def test_an_overlay_with_aliases_is_refused_before_anything_expands_them() -> None:
    """A "billion laughs" in a shared overlay (here a million: three levels more are 10^9 strings when
    the version is turned into text, and the test would take the machine down without the fix)."""
    with pytest.raises(ValueError, match="not valid YAML: .*aliases"):
        declared_in(BOMB, "regions/eu/endpoint.yaml")
    with pytest.raises(yaml.YAMLError, match="aliases"):
        load_document("kind: WavePlan\nmetadata: &m {name: x}\nother: *m\n")
