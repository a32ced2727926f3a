"""Table tests of the status builder (domain.endpoint_status.build_status: facts, plan and what act
observed -> the whole status), and what GitOps tools make of it: kstatus (Flux, domain.kstatus) and
Argo CD's health script (docs/argocd/health-modelendpoint.lua, run as in test_argocd_health.py).

An API error the operator retries (5xx, 429, no answer) is progress: Reconciling, never Stalled; a
refusal (a 4xx such as 422) stalls. A route that was not written is reported with the split it still
carries, never with the split the plan aimed for."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from endpoint_plan_facts import NEW, facts, mv, pin, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import endpoint_status as S
from modelversioning.domain import kstatus
from modelversioning.domain.conditions import merge_conditions
from modelversioning.domain.endpoint_facts import ApiError
from modelversioning.handlers import endpoint_parse

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from gitops_tools import argocd_health  # noqa: E402

SERVING = facts(
    variant(desired=slot("ep-s"), pin=pin(slot_="ep-s"), pinned=slot("ep-s")),
    previous_weights={"stable": 100}, routed={"ep-s": 100}, owned_slots=frozenset({"ep-s"}),
)  # fmt: skip
# b's version is missing (permanent), stable serves
WITH_MISSING = facts(
    variant(desired=slot("ep-s"), pin=pin(slot_="ep-s"), pinned=slot("ep-s")),
    variant("b", "2.4.0", 0, mv=None, problem=(R.MISSING_VERSION, "ModelVersion m-v2.4.0 does not exist")),
    previous_weights={"stable": 100}, routed={"ep-s": 100}, owned_slots=frozenset({"ep-s"}),
)  # fmt: skip
SLOT_503 = ApiError(R.CHILD_REJECTED, "Deployment ep-s: etcd leader changed", transient=True)
ROUTE_503 = ApiError(R.CHILD_REJECTED, "HTTPRoute ep: etcd leader changed", transient=True)
SLOT_422 = ApiError(R.CHILD_REJECTED, "Deployment ep-s: denied by policy", transient=False)
ROUTE_422 = ApiError(R.CHILD_REJECTED, "HTTPRoute ep: denied by policy", transient=False)

RETRY, REJECTED, APPLIED = R.CHILD_APPLY_RETRYING, R.CHILD_REJECTED, R.ROUTE_APPLIED
OK = P.Outcome(route_message="routed")

# (facts, outcome) -> Ready, Progressing, Degraded, RoutesReady (status, reason); (Reconciling, Stalled);
# Argo CD's health
ERRORS = [
    pytest.param(SERVING, OK,
                 ("True", R.READY), ("False", R.CONVERGED), ("False", R.AS_EXPECTED), ("True", APPLIED),
                 ("False", "False"), "Healthy", id="no-error"),
    pytest.param(SERVING, replace(OK, variant_errors={"stable": SLOT_503}),
                 ("False", RETRY), ("True", RETRY), ("False", R.AS_EXPECTED), ("True", APPLIED),
                 ("True", "False"), "Progressing", id="a-503-on-a-slot"),
    pytest.param(SERVING, P.Outcome(route_error=ROUTE_503),
                 ("False", RETRY), ("True", RETRY), ("False", R.AS_EXPECTED), ("False", RETRY),
                 ("True", "False"), "Progressing", id="b-503-on-the-route"),
    pytest.param(SERVING, replace(OK, variant_errors={"stable": SLOT_422}),
                 ("False", REJECTED), ("False", R.CONVERGED), ("True", REJECTED), ("True", APPLIED),
                 ("False", "True"), "Degraded", id="c-422-on-a-slot"),
    pytest.param(SERVING, P.Outcome(route_error=ROUTE_422),
                 ("False", REJECTED), ("True", R.BLOCKED), ("True", REJECTED), ("False", REJECTED),
                 ("False", "True"), "Degraded", id="422-on-the-route"),
    pytest.param(replace(SERVING, router_problem=(R.ROUTER_DISABLED, "router gateway-api is not enabled")),
                 P.Outcome(),
                 ("False", R.ROUTER_DISABLED), ("True", R.BLOCKED), ("True", R.ROUTER_DISABLED),
                 ("False", R.ROUTE_NOT_APPLIED), ("False", "True"), "Degraded", id="router-disabled"),
    pytest.param(WITH_MISSING, replace(OK, variant_errors={"stable": SLOT_503}),
                 ("False", R.MISSING_VERSION), ("True", RETRY), ("True", R.MISSING_VERSION),
                 ("True", APPLIED), ("False", "True"), "Degraded", id="503-keeps-a-permanent-reason"),
]  # fmt: skip


def built(f: P.EndpointFacts, out: P.Outcome) -> S.EndpointStatus:
    return S.build_status(f, P.decide(f), out)


def cond(st: S.EndpointStatus, type_: str) -> tuple[str, str]:
    c = next(c for c in st.conditions if c.type == type_)
    return c.status, c.reason


def as_object(st: S.EndpointStatus) -> dict[str, Any]:
    """The endpoint as the API server would hold it after the operator's status write."""
    status = {**st.fields, "observedGeneration": 1, "conditions": merge_conditions(None, st.conditions, 1)}
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": "ep", "namespace": "ml", "generation": 1},
        "spec": {"model": "m", "variants": []},
        "status": {k: v for k, v in status.items() if v is not None},
    }


@pytest.mark.parametrize(
    ("f", "out", "ready", "progressing", "degraded", "routes", "kstatus_", "argocd"), ERRORS
)
def test_a_retried_error_is_progress_and_a_refusal_stalls(
    f: P.EndpointFacts, out: P.Outcome, ready: Any, progressing: Any, degraded: Any, routes: Any,
    kstatus_: tuple[str, str], argocd: str,
) -> None:  # fmt: skip
    st = built(f, out)
    assert cond(st, "Ready") == ready
    assert cond(st, "Progressing") == progressing
    assert cond(st, "Degraded") == degraded
    assert cond(st, "RoutesReady") == routes
    reconciling, stalled = kstatus.for_endpoint(st.conditions)  # Flux's view, from what we report
    assert (reconciling.status, stalled.status) == kstatus_
    assert (cond(st, "Reconciling")[0], cond(st, "Stalled")[0]) == kstatus_  # and what we write says so
    for lua in ("lua5.4", "lua5.1"):
        assert argocd_health(as_object(st), lua)["status"] == argocd, lua


@pytest.mark.parametrize(
    ("err", "reason"), [(SLOT_503, R.CHILD_APPLY_RETRYING), (SLOT_422, R.CHILD_REJECTED)], ids=["503", "422"]
)
def test_the_variant_says_why_and_keeps_its_traffic(err: ApiError, reason: str) -> None:
    st = built(SERVING, P.Outcome({"stable": err}, route_message="routed"))
    (v,) = st.fields["variants"]
    assert v["reason"] == reason and err.message in v["message"] and "traffic stays on 2.3.8" in v["message"]
    assert v["serving"]["slot"] == "ep-s" and st.fields["effectiveWeights"] == {"stable": 100}


def test_a_retried_error_warns_once_and_a_refusal_warns_with_its_reason() -> None:
    out = P.Outcome({"stable": SLOT_503}, route_message="routed")
    warnings = [e[:2] for e in built(SERVING, out).events if e[0] == "Warning"]
    assert warnings == [("Warning", R.CHILD_APPLY_RETRYING)]
    retried = replace(SERVING, previous_conditions={"Ready": ("False", R.CHILD_APPLY_RETRYING)})
    again = S.build_status(retried, P.decide(retried), out)
    assert [e for e in again.events if e[0] == "Warning"] == []  # not on every retry
    refused = built(SERVING, P.Outcome({"stable": SLOT_422}, route_message="routed"))
    assert [e[:2] for e in refused.events if e[0] == "Warning"] == [("Warning", R.CHILD_REJECTED)]


# ---------------------------------------------- a route not written: the split the route still has
TWO = facts(
    variant("a", weight=0, desired=slot("ep-a"), pin=pin(slot_="ep-a"), pinned=slot("ep-a")),
    variant("b", weight=100, version="2.4.0", mv=mv("2.4.0"), desired=slot("ep-b")),
    previous_weights={"a": 100}, routed={"ep-a": 100}, owned_slots=frozenset({"ep-a"}),
)  # fmt: skip
KEPT = "a@2.3.8=100,b@2.4.0=0"  # status.traffic while the route keeps the previous split


@pytest.mark.parametrize(
    ("out", "weights", "b_slot", "traffic"),
    [
        pytest.param(
            P.Outcome(route_message="routed"),
            {"a": 0, "b": 100},
            "ep-b",
            "a@2.3.8=0,b@2.4.0=100",
            id="written",
        ),  # fmt: skip
        pytest.param(P.Outcome(route_error=ROUTE_422), {"a": 100}, None, KEPT, id="refused"),
        pytest.param(P.Outcome(route_error=ROUTE_503), {"a": 100}, None, KEPT, id="retried"),
        pytest.param(
            P.Outcome(route_error=(R.INVALID_SPEC, "hostnames")), {"a": 100}, None, KEPT, id="render-error"
        ),  # fmt: skip
        pytest.param(
            P.Outcome(route_error=(R.CHILD_CONFLICT, "not ours")), {"a": 100}, None, KEPT, id="foreign-route"
        ),  # fmt: skip
    ],
)
def test_the_status_never_reports_more_traffic_than_the_route_carries(
    out: P.Outcome, weights: dict[str, int], b_slot: str | None, traffic: str
) -> None:
    plan = P.decide(TWO)
    assert plan.weights == {"a": 0, "b": 100} and plan.write_route  # what the plan aimed for
    st = S.build_status(TWO, plan, out)
    assert st.fields["effectiveWeights"] == weights == st.weights
    a, b = st.fields["variants"]
    assert a["serving"]["slot"] == "ep-a" and (b.get("serving") or {}).get("slot") == b_slot
    assert (a["effectiveWeight"], b["effectiveWeight"]) == (weights.get("a", 0), weights.get("b", 0))
    assert st.fields["traffic"] == traffic
    assert [d.serving.slot if d.serving else None for d in st.variants] == ["ep-a", b_slot]  # the metrics'
    shifted = [e for e in st.events if e[1] == R.TRAFFIC_SHIFTED]
    assert bool(shifted) is (b_slot is not None)


# the variant moved to 2.4.0 (slot ep-new eligible) while the route still sends it to 2.3.8 (ep-old)
MOVING = facts(
    variant(version="2.4.0", mv=mv("2.4.0", digest=NEW, uid="uid-2"), desired=slot("ep-new"),
            pin=pin(slot_="ep-old"), pinned=slot("ep-old")),
    previous_weights={"stable": 100}, routed={"ep-old": 100}, owned_slots=frozenset({"ep-old", "ep-new"}),
)  # fmt: skip


@pytest.mark.parametrize(
    "left_alone",
    [
        pytest.param({"router_problem": (R.ROUTER_DISABLED, "istio is off")}, id="router-problem"),
        pytest.param({"variants": (replace(MOVING.variants[0], weight=90),)}, id="declared-problem"),
    ],
)  # fmt: skip
def test_a_route_left_alone_is_reported_with_the_slots_it_still_carries(left_alone: dict[str, Any]) -> None:
    """A declared problem or the router's leaves every route alone: status (and so servedBy, the in-use
    finalizers, retention's references) names the pinned slot the route still sends to, never the new
    slot the plan would have moved the variant to."""
    f = replace(MOVING, **left_alone)
    plan = P.decide(f)
    assert not plan.write_route and plan.decision("stable").serving.slot == "ep-new"  # what it aimed for
    st = S.build_status(f, plan, P.Outcome())
    (v,) = st.fields["variants"]
    assert v["serving"]["slot"] == "ep-old" and v["serving"]["version"] == "2.3.8"
    assert [d.serving.slot if d.serving else None for d in st.variants] == ["ep-old"]  # the metrics'
    assert st.fields["traffic"] == "stable@2.3.8=100" and st.weights == {"stable": 100}
    assert S.serving_changed({"effectiveWeights": {"stable": 100}, "variants": [v]}, st.fields) is False


# ------------------------------------- when the ModelVersions' servedBy and in-use finalizers follow
def _status(weights: dict[str, int], *variants: tuple[str, str, str | None]) -> dict[str, Any]:
    """An endpoint status: effective weights and (name, version, serving version) per variant."""
    return {
        "effectiveWeights": weights,
        "variants": [
            {"name": n, "version": v, **({"serving": {"version": s}} if s else {})} for n, v, s in variants
        ],
    }


BEFORE = _status({"a": 90, "b": 10}, ("a", "2.3.8", "2.3.8"), ("b", "2.4.0", "2.4.0"))


@pytest.mark.parametrize(
    ("new", "changed"),
    [
        pytest.param(BEFORE, False, id="same"),
        pytest.param(_status({"a": 80, "b": 20}, ("a", "2.3.8", "2.3.8"), ("b", "2.4.0", "2.4.0")), True,
                     id="weights"),
        pytest.param(_status({"a": 90, "b": 10}, ("a", "2.3.8", "2.3.8"), ("b", "2.4.1", "2.4.1")), True,
                     id="a-variant-now-served-by-another-version"),
        pytest.param(_status({"a": 90, "b": 10}, ("a", "2.3.8", "2.3.8"), ("b", "2.4.1", "2.4.0")), True,
                     id="a-variant-declares-another-version"),
        pytest.param(_status({"a": 90, "b": 10}, ("a", "2.3.8", "2.3.8"), ("b", "2.4.0", None)), True,
                     id="a-variant-no-longer-served"),
    ],
)  # fmt: skip
def test_serving_changed_when_the_weights_or_the_served_versions_change(
    new: dict[str, Any], changed: bool
) -> None:
    """The endpoint re-enqueues its model's ModelVersions when this says so: a version that starts
    serving at unchanged weights must get its servedBy and in-use finalizer at once."""
    assert S.serving_changed(BEFORE, new) is changed


# -------------------------------------------------------------- which API errors are retried
@pytest.mark.parametrize(
    ("status", "transient"),
    [(None, True), (500, True), (503, True), (504, True), (429, True),
     (400, False), (403, False), (404, False), (409, False), (422, False)],
)  # fmt: skip
def test_which_api_errors_the_operator_retries(status: int | None, transient: bool) -> None:
    assert endpoint_parse.transient(ApiException(status=status)) is transient


def test_the_reconciler_reports_a_503_on_a_new_slot_as_progress_and_moves_once_it_passes() -> None:
    from test_endpoint_reconciler import NEW, NS, World, _slot_names, serving_one

    w = World()
    old = serving_one(w)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    (new,) = _slot_names(w, "stable", "2.4.1")
    w.api.reject[new], w.api.reject_status = "etcd leader changed", 503
    with pytest.raises(ApiException):
        w.rec.reconcile(NS, "ep")  # retried by the work queue, after the status is written
    (v,) = w.status()["variants"]
    assert v["reason"] == R.CHILD_APPLY_RETRYING and v["serving"]["slot"] == old
    assert w.cond("Progressing")[:2] == ("True", R.CHILD_APPLY_RETRYING)
    assert w.cond("Degraded")[0] == "False" and w.cond("Stalled")[0] == "False"
    assert w.cond("Reconciling")[0] == "True"
    assert w.routed() == {old: ("2.3.8", 100)}
    del w.api.reject[new]  # the API server is back: the retry creates the slot, traffic moves
    w.settle()
    assert w.routed() == {new: ("2.4.1", 100)} and w.cond("Ready")[0] == "True"


@pytest.mark.parametrize(
    ("previous", "closed", "posted"),
    [
        pytest.param({}, "", False, id="first-split-of-a-new-endpoint"),
        pytest.param({"stable": 0}, "", True, id="traffic-back-on-a-variant-at-0"),
        pytest.param({}, R.REVOKED, True, id="a-closed-route-opens-again"),
    ],
)
def test_traffic_shifted_is_for_live_traffic_not_the_first_split(
    previous: dict[str, int], closed: str, posted: bool
) -> None:
    """Issue #25: a new endpoint's first route is no shift (its Ready condition says that it serves)."""
    f = facts(
        variant(desired=slot("ep-s")),
        previous_weights=previous,
        previous_closed=closed,
        owned_slots=frozenset({"ep-s"}),
    )
    plan = P.decide(f)
    assert plan.weights == {"stable": 100} and plan.write_route
    st = S.build_status(f, plan, OK)
    assert st.fields["effectiveWeights"] == {"stable": 100}
    shifted = [e for e in st.events if e[1] == R.TRAFFIC_SHIFTED]
    assert bool(shifted) is posted


def _st(ready: str, reason: str, message: str, gen: int = 1, **variant: Any) -> dict[str, Any]:
    conds = [
        {"type": "Ready", "status": ready, "reason": reason, "message": message, "observedGeneration": gen}
    ]
    var = {"name": "stable", "reason": "DeploymentNotAvailable", "message": message, "readyReplicas": 0}
    return {"observedGeneration": gen, "conditions": conds, "variants": [{**var, **variant}]}


NOT_YET = _st("False", R.NO_ELIGIBLE_VARIANT, "Deployment not created yet")


@pytest.mark.parametrize(
    ("new", "skipped"),
    [
        pytest.param(
            _st("False", R.NO_ELIGIBLE_VARIANT, "0/1 replicas available"), True, id="a-message-only"
        ),
        pytest.param(_st("False", R.PROGRESSING, "0/1 replicas available"), False, id="a-reason"),
        pytest.param(_st("Unknown", R.NO_ELIGIBLE_VARIANT, "x"), False, id="a-condition-status"),
        pytest.param(_st("False", R.NO_ELIGIBLE_VARIANT, "x", readyReplicas=1), False, id="a-variant-field"),
        pytest.param(_st("False", R.NO_ELIGIBLE_VARIANT, "x", gen=2), False, id="a-new-generation"),
        pytest.param(_st("True", R.READY, "serving as declared"), False, id="ready-now"),
        pytest.param({**NOT_YET, "effectiveWeights": {"stable": 100}}, False, id="traffic"),
    ],
)
def test_progress_messages_alone_are_not_worth_a_status_write(new: dict[str, Any], skipped: bool) -> None:
    """Issue #25: a new endpoint's status is written when its state changes, not for each progress message."""
    assert S.progress_only(NOT_YET, new) is skipped
    ready = _st("True", R.READY, "serving as declared")
    assert not S.progress_only(ready, _st("True", R.READY, "serving as declared, again"))  # Ready: always
