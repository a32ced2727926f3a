"""Revocation is explicit and fails closed (issue 23, item 6; domain.revocation).

Table tests of the classification (withdrawn vs operational), of the closed-route decision and its
status, of the closed routes each router renders (golden files, checked against the third-party CRDs)
and of the version reconciler's refusal to archive a version that still serves unless it is revoked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from endpoint_plan_facts import NEW, facts, mv, pin, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import endpoint_status as S
from modelversioning.domain.revocation import archive_guard, closure, withdrawal
from modelversioning.domain.stages import Stage
from modelversioning.render import RouteInput, get_router
from test_render import (
    CRD_DIR,
    ENDPOINT,
    ROUTE_CRDS,
    ROUTE_POLICY,
    assert_golden,
    crd_schema,
    endpoint_spec,
    gateway_cel_errors,
    k8s_type_errors,
    schema_errors,
)

SERVED = slot("ep-s")  # stable's slot: Available, ours, the pinned one


def serving(*, stage: str | None = "production", revoked: str | None = None, **kw: Any) -> P.VariantFacts:
    """stable serves 2.3.8 from ep-s (the desired slot is the pinned one); the version as given."""
    version = replace(mv(stage=stage, **kw), revoked=revoked)
    return variant(mv=version, desired=SERVED, pin=pin(slot_="ep-s"), pinned=SERVED, pinned_mv=version)


def endpoint(*variants: P.VariantFacts, previous: dict[str, int] | None = None, **kw: Any) -> P.EndpointFacts:
    prev = {"stable": 100} if previous is None else previous
    base: dict[str, Any] = {"owned_slots": frozenset({"ep-s", "ep-closed"}), "routed": {"ep-s": 100}}
    return facts(*variants, previous_weights=prev, closed_service="ep-closed", **{**base, **kw})


# ------------------------------------------------------------------------------ the classification
@pytest.mark.parametrize(
    ("version", "need", "value"),
    [
        pytest.param(mv(), Stage.PRODUCTION, "", id="production-serves"),
        pytest.param(replace(mv(), revoked="PII"), Stage.PRODUCTION, "revoked", id="revoked-whatever-stage"),
        pytest.param(mv(stage="archived"), Stage.PRODUCTION, "archived", id="archived"),
        pytest.param(mv(stage="archived"), Stage.CANDIDATE, "archived", id="archived-even-for-candidate"),
        pytest.param(mv(stage="staging"), Stage.PRODUCTION, "below-required-stage", id="demoted"),
        pytest.param(mv(stage="staging"), Stage.STAGING, "", id="staging-where-staging-is-enough"),
        pytest.param(mv(stage=None), Stage.PRODUCTION, "", id="no-stage-yet-had-no-authority"),
        pytest.param(mv(verified=False, reason="FetchFailed"), Stage.PRODUCTION, "", id="unverified"),
        pytest.param(None, Stage.PRODUCTION, "", id="no-version"),
    ],
)  # fmt: skip
def test_withdrawal_names_why_a_version_lost_its_authority(
    version: P.VersionFacts | None, need: Stage, value: str
) -> None:
    assert withdrawal(version, need) == value


DOWN = slot("ep-s", available=False)
CANARY_20 = variant("canary", "2.4.1", 20, mv=mv("2.4.1", digest=NEW, uid="uid-2"), desired=slot("ep-c"))
RECREATED_ARCHIVED = mv(uid="uid-9", stage="archived")  # another object of the pinned version's name
RECREATED_REVOKED = replace(mv(uid="uid-9"), revoked="x")

# (facts, closed value, the variant's reason): a withdrawn serving version closes the route when nothing
# else is eligible; an operational reason keeps it on the pods it has, as before
CASES: dict[str, tuple[P.EndpointFacts, str, str]] = {
    "revoked": (endpoint(serving(revoked="CVE-1")), "revoked", R.REVOKED),
    "archived": (endpoint(serving(stage="archived")), "archived", R.WITHDRAWN),
    "demoted": (endpoint(serving(stage="staging")), "below-required-stage", R.WITHDRAWN),
    "revoked-and-archived": (endpoint(serving(stage="archived", revoked="x")), "revoked", R.REVOKED),
    "not-verified-any-more": (
        endpoint(serving(verified=False, reason="FetchFailed")), "", R.ARTIFACT_NOT_VERIFIED
    ),
    "pods-not-ready": (
        endpoint(replace(serving(), desired=DOWN, pinned=DOWN)),
        "",
        R.DEPLOYMENT_NOT_AVAILABLE,
    ),
    "new-version-failing-old-revoked": (
        endpoint(replace(serving(revoked="CVE-1"), version="2.4.1", desired=slot("ep-n", available=False),
                         mv=mv("2.4.1", digest=NEW, uid="uid-2"))),
        "revoked",
        R.REVOKED,
    ),
    "recreated-object-archived-is-replaced-not-withdrawn": (
        endpoint(replace(serving(), pinned_mv=RECREATED_ARCHIVED, mv=RECREATED_ARCHIVED)),
        "",
        R.MODEL_VERSION_REPLACED,
    ),
    "recreated-object-revoked-is-revoked": (
        endpoint(replace(serving(), pinned_mv=RECREATED_REVOKED, mv=RECREATED_REVOKED)),
        "revoked",
        R.REVOKED,
    ),
    "declared-split-invalid-the-route-left-alone-would-keep-it": (
        endpoint(replace(serving(stage="archived"), weight=90), CANARY_20),
        "archived",
        R.WITHDRAWN,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_only_a_withdrawn_serving_version_closes_the_route(case: str) -> None:
    f, closed, reason = CASES[case]
    plan = P.decide(f)
    d = plan.decision("stable")
    assert not d.eligible and d.reason == reason
    assert plan.closed == closed
    if closed:  # written with no destination and no weights: the withdrawn model gets nothing
        assert plan.write_route and plan.destinations == () and plan.weights == {} and not plan.held
        assert d.serving is None and "ep-closed" not in plan.delete and "ep-closed" not in plan.draining
    else:  # held on the pods that verified the pinned digest, as today
        assert plan.held and not plan.write_route and plan.weights == {"stable": 100}


def test_a_withdrawn_variants_share_moves_to_the_eligible_ones() -> None:
    canary = variant("canary", "2.4.1", 10, mv=mv("2.4.1", digest=NEW, uid="uid-2"), desired=slot("ep-c"))
    stable = replace(serving(revoked="CVE-1"), weight=90)
    plan = P.decide(endpoint(stable, canary, previous={"stable": 90, "canary": 10}))
    assert not plan.closed and plan.weights == {"stable": 0, "canary": 100}
    assert [(d.slot, d.weight) for d in plan.destinations] == [("ep-c", 100)]


def test_a_revoked_mirror_gets_no_copies_and_live_traffic_goes_on() -> None:
    shadow = variant("shadow", "2.4.1", 0, mirror=True, desired=slot("ep-m"),
                     mv=replace(mv("2.4.1", digest=NEW, uid="uid-2"), revoked="x"))  # fmt: skip
    plan = P.decide(endpoint(serving(), shadow))
    assert plan.mirror is None and not plan.closed and plan.weights == {"stable": 100}
    assert plan.decision("shadow").reason == R.REVOKED


def test_a_closed_route_stays_closed_until_something_eligible_reopens_it() -> None:
    new = mv("2.4.1", digest=NEW, uid="uid-2")
    fresh = replace(serving(), version="2.4.1", desired=slot("ep-n", available=False), mv=new,
                    pin=None, pinned=None, pinned_mv=None)  # fmt: skip
    waiting = P.decide(endpoint(fresh, previous={}, previous_closed="revoked"))
    assert waiting.closed == "revoked" and waiting.write_route and waiting.destinations == ()
    ready = P.decide(endpoint(replace(fresh, desired=slot("ep-n")), previous={}, previous_closed="revoked"))
    assert not ready.closed and [(d.slot, d.weight) for d in ready.destinations] == [("ep-n", 100)]


def test_a_new_endpoint_of_a_revoked_version_writes_no_route() -> None:
    fresh = replace(serving(revoked="x"), pin=None, pinned=None, pinned_mv=None)
    plan = P.decide(endpoint(fresh, previous={}, routed={}))
    assert not plan.closed and not plan.write_route and plan.decision("stable").reason == R.REVOKED


def test_closure_table() -> None:
    from modelversioning.domain.revocation import Withdrawn

    w = [Withdrawn("a", "archived", "m"), Withdrawn("b", "revoked", "n")]
    assert closure(w, {"a": 50, "b": 50}, True, "") == (w[1].value, closure(w, {"a": 1, "b": 1}, True, "")[1])  # type: ignore[index]
    assert closure(w, {"a": 100}, True, "")[0] == "archived"  # type: ignore[index]  # only what carries
    assert closure(w, {"a": 100}, False, "") is None  # something eligible took the traffic
    assert closure(w, {}, True, "") is None  # the route carries none of them
    assert closure([], {}, True, "below-required-stage")[0] == "below-required-stage"  # type: ignore[index]


# ---------------------------------------------------------------------------------------- status
def test_a_closed_route_says_why_in_status_and_an_event() -> None:
    f = endpoint(serving(revoked="CVE-1"))
    plan = P.decide(f)
    built = S.build_status(f, plan, P.Outcome(route_message="routed"))
    conds = {c.type: (c.status, c.reason) for c in built.conditions}
    assert conds["Ready"] == ("False", R.REVOKED) and conds["Degraded"] == ("True", R.REVOKED)
    degraded = next(c for c in built.conditions if c.type == "Degraded")
    assert f"{R.HEADER_UNAVAILABLE}: revoked" in degraded.message
    assert conds["RoutesReady"] == ("True", R.ROUTE_CLOSED) and conds["Stalled"][0] == "True"
    assert built.fields["effectiveWeights"] == {} and built.fields["closed"]["reason"] == "revoked"
    assert "CVE-1" in built.fields["closed"]["message"] and built.fields["traffic"].endswith("closed:revoked")
    assert ("Warning", R.REVOKED) in {(t, r) for t, r, _ in built.events}
    held = endpoint(serving(verified=False, reason="FetchFailed"))
    kept = S.build_status(held, P.decide(held), P.Outcome(route_message="routed"))
    assert kept.fields["closed"] is None and kept.fields["effectiveWeights"] == {"stable": 100}


def test_a_closed_route_that_was_not_written_reports_what_the_route_still_carries() -> None:
    f = endpoint(serving(stage="archived"))
    out = P.Outcome(route_error=P.ApiError(R.CHILD_REJECTED, "no"))
    built = S.build_status(f, P.decide(f), out)
    assert built.fields["closed"] is None and built.fields["effectiveWeights"] == {"stable": 100}


# ------------------------------------------------------------------------------- closed routes
def closed_input(router: str, value: str = "revoked") -> RouteInput:
    spec = endpoint_spec(router, [("stable", "2.3.8", 100)], None)
    return RouteInput(ENDPOINT, spec, [], policy=ROUTE_POLICY, closed=value)


@pytest.mark.parametrize("router_name", ["istio", "gatewayAPI"])
def test_closed_route_golden_and_valid_for_the_crd(router_name: str) -> None:
    router = get_router(router_name)
    route = router.render(closed_input(router_name))
    assert route is not None
    assert_golden(f"route-{router_name}-closed-revoked", route)
    schema = crd_schema(*ROUTE_CRDS[router_name])
    if schema is None:
        pytest.fail(f"third-party CRDs not found in {CRD_DIR} (set THIRDPARTY_CRDS)")
    assert schema_errors(route, schema) == []
    if router_name == "gatewayAPI":
        assert gateway_cel_errors(route) == []
    assert router.weights(route).get("stable", 0) == 0  # no model behind it


def test_istio_closed_route_answers_503_with_the_header() -> None:
    route = get_router("istio").render(closed_input("istio", "archived"))
    assert route is not None
    (http,) = route["spec"]["http"]
    assert http["directResponse"]["status"] == 503 and "route" not in http and "mirror" not in http
    assert http["headers"]["response"]["set"] == {R.HEADER_UNAVAILABLE: "archived"}


def test_gateway_closed_route_points_only_at_a_service_without_endpoints() -> None:
    router = get_router("gatewayAPI")
    inp = closed_input("gatewayAPI")
    route = router.render(inp)
    assert route is not None
    (rule,) = route["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["fraud-closed"]
    assert rule["filters"][0]["responseHeaderModifier"]["set"] == [
        {"name": R.HEADER_UNAVAILABLE, "value": "revoked"}
    ]
    (svc,) = router.companions(inp)
    assert_golden("service-gatewayAPI-closed", svc)
    assert "selector" not in svc["spec"] and svc["metadata"]["ownerReferences"][0]["controller"] is True
    assert k8s_type_errors(svc, "V1Service") == []
    assert router.companions(closed_input("gatewayAPI", "")) == []
    assert get_router("istio").companions(inp) == []


def test_a_closed_route_takes_no_destination() -> None:
    from modelversioning.render import RenderError

    spec = endpoint_spec("istio", [("stable", "2.3.8", 100)], None)
    target = get_router("istio")  # any router: RouteInput.check refuses it
    with pytest.raises(RenderError, match="closed route"):
        from test_render import model_version, target_for

        t = target_for(ENDPOINT, "stable", model_version("2.3.8"), 100)
        target.render(RouteInput(ENDPOINT, spec, [t], policy=ROUTE_POLICY, closed="revoked"))


# ------------------------------------------------------------- archived while serving: refused
@pytest.mark.parametrize(
    ("dst", "revoked", "serving_", "refused"),
    [
        pytest.param("archived", False, [("ep", 100, False)], True, id="archive-while-serving"),
        pytest.param("archived", False, [("ep", 0, True)], True, id="archive-while-mirrored"),
        pytest.param("archived", True, [("ep", 100, False)], False, id="revocation-passes"),
        pytest.param("archived", False, [("ep", 0, False)], False, id="deployed-at-zero-is-not-serving"),
        pytest.param("archived", False, [], False, id="not-served"),
        pytest.param("staging", False, [("ep", 100, False)], False, id="a-demotion-is-not-refused"),
    ],
)
def test_archive_guard(dst: str, revoked: bool, serving_: list[tuple[str, int, bool]], refused: bool) -> None:
    decision = archive_guard(dst, revoked, serving_)
    assert (decision is not None) is refused
    if decision is not None:
        assert decision.reason == R.ARCHIVE_WHILE_SERVING and "kubectl models revoke" in decision.message
        assert "ModelEndpoint ep" in decision.message


@pytest.mark.parametrize(
    ("serving_", "revoked", "stage", "reason"),
    [
        pytest.param(((100, False),), None, "production", R.ARCHIVE_WHILE_SERVING, id="serving-refused"),
        pytest.param(((100, False),), "CVE-1", "archived", R.IN_EFFECT, id="revoked-walks-at-once"),
        pytest.param(((0, False),), None, "archived", R.IN_EFFECT, id="deployed-at-zero-walks"),
        pytest.param((), None, "archived", R.IN_EFFECT, id="unused-walks"),
    ],
)
def test_the_version_walk_refuses_archived_while_it_serves_unless_revoked(
    serving_: tuple[tuple[int, bool], ...], revoked: str | None, stage: str, reason: str
) -> None:
    from modelversioning.domain.version_facts import Serving
    from modelversioning.domain.version_plan import decide
    from test_version_plan import NOW, POLICY, facts, verified_status

    users = tuple(Serving("ep", "stable", w, m) for w, m in serving_)
    f = facts(status=verified_status("production"), requested=Stage.ARCHIVED, serving=users, revoked=revoked)
    plan = decide(f, POLICY, NOW)
    assert plan.status is not None and plan.status["stage"] == stage
    st = next(c for c in plan.status["conditions"] if c["type"] == "StageTransition")
    assert st["reason"] == reason
    if reason == R.ARCHIVE_WHILE_SERVING:
        assert st["status"] == "False" and "kubectl models revoke" in st["message"]
        assert ("Warning", R.STAGE_TRANSITION_BLOCKED) in [(e.type, e.reason) for e in plan.events]
    assert plan.notify_endpoints is (revoked is not None or stage != "production")
