"""A slot takes traffic only when both its children are ours (issue #23 item 4).

The route sends a variant's traffic to the Service of its slot's name, a name anyone in the namespace
can predict. A Deployment or Service of that name that does not carry this endpoint's controller
reference is a ChildConflict: the variant is not eligible (its share goes to the other eligible
variants, or the route is left as it is), however ready the foreign pods look. A slot counts as
serving only with both children ours, and a child is written (apply) or deleted only as the object we
observed (its UID).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from endpoint_plan_facts import NEW, facts, mv, pin, report, slot, variant
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.handlers import endpoint_parse as parse
from modelversioning.handlers.kube import PreconditionFailed
from test_endpoint_reconciler import NS, World, serving_one

UID = "ep-uid"
FOREIGN = "Service ep-s already exists and is controlled by nobody we know; it is never routed to"


def taken(name: str = "ep-s", why: str = FOREIGN) -> P.SlotFacts:
    return P.SlotFacts(name, True, False, 0, 0, why, ours=False, conflict=why.split(";")[0])


def routed(plan: P.Plan) -> dict[str, int]:
    return {d.slot: d.weight for d in plan.destinations}


# ----------------------------------------------------------------------------- the decision, table
@pytest.mark.parametrize(
    ("desired", "eligible", "reason"),
    [
        pytest.param(slot("ep-s"), True, R.ELIGIBLE, id="both-children-ours"),
        pytest.param(taken(), False, R.CHILD_CONFLICT, id="a-foreign-child-of-the-slots-name"),
        pytest.param(
            replace(slot("ep-s"), ours=False), False, R.DEPLOYMENT_NOT_AVAILABLE, id="our-service-missing"
        ),
    ],
)
def test_only_a_slot_whose_children_are_both_ours_is_eligible(
    desired: P.SlotFacts, eligible: bool, reason: str
) -> None:
    plan = P.decide(facts(variant(desired=desired)))
    d = plan.decision("stable")
    assert (d.eligible, d.reason) == (eligible, reason)
    assert routed(plan) == ({"ep-s": 100} if eligible else {})
    assert plan.write_route is eligible  # nothing eligible: the route is left exactly as it is


def test_a_foreign_slot_gives_its_share_to_the_eligible_variant() -> None:
    stable = variant(weight=50, desired=slot("ep-s"))
    canary = variant("canary", "2.4.1", 50, mv=mv("2.4.1", digest=NEW, uid="u2"), desired=taken("ep-c"))
    plan = P.decide(facts(stable, canary))
    assert routed(plan) == {"ep-s": 100}
    assert plan.weights == {"stable": 100, "canary": 0}
    assert plan.decision("canary").reason == R.CHILD_CONFLICT


def test_the_conflict_is_reported_with_the_object_and_warned_once() -> None:
    f = facts(variant(desired=taken()))
    rep = report(f, P.decide(f))
    degraded = next(c for c in rep.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", R.CHILD_CONFLICT)
    assert "Service ep-s" in degraded.message
    assert [e[:2] for e in rep.events] == [("Warning", R.CHILD_CONFLICT)]


@pytest.mark.parametrize(
    "pinned",
    [
        pytest.param(taken(), id="its-service-re-created-by-someone-else"),
        pytest.param(replace(slot("ep-s"), ours=False), id="its-service-gone"),
    ],
)
def test_a_pinned_slot_that_is_no_longer_ours_does_not_keep_the_traffic(pinned: P.SlotFacts) -> None:
    """The pinned slot was ours; its Service is gone, or was re-created by someone else. The new
    version is not verified yet: the variant has no slot to be served by."""
    edited = variant(
        version="2.4.1",
        mv=mv("2.4.1", digest=NEW, uid="u2", verified=False, stage="candidate", reason="Verifying"),
        desired=P.SlotFacts("ep-new"),
        pin=pin(slot_="ep-s"),
        pinned=pinned,
        pinned_mv=mv(),
    )
    plan = P.decide(facts(edited, previous_weights={"stable": 100}, routed={"ep-s": 100}))
    assert not plan.decision("stable").eligible and plan.decision("stable").serving is None
    assert routed(plan) == {} and not plan.write_route
    # with the pinned slot ours, the traffic stays on it (the row above differs only in that)
    ours = P.decide(facts(replace(edited, pinned=slot("ep-s")), previous_weights={"stable": 100}))
    assert routed(ours) == {"ep-s": 100}


def test_a_serving_slot_that_loses_its_service_is_not_still_serving() -> None:
    """Scaling up the slot that serves (not Available, some pods ready) keeps its traffic only while
    both its children are ours."""
    scaling = P.SlotFacts("ep-s", True, False, 1, 3, "1/3 replicas available", ours=True)
    v = variant(desired=scaling, pin=pin(slot_="ep-s"), pinned=scaling)
    assert P.decide(facts(v)).decision("stable").eligible
    no_service = replace(scaling, ours=False)
    plan = P.decide(facts(replace(v, desired=no_service, pinned=no_service)))
    assert not plan.decision("stable").eligible and routed(plan) == {}


# ------------------------------------------------------------------- what gather reads, table
def _obj(kind: str, owner: str | None, ready: bool = True) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "ep-s", "namespace": NS, "uid": f"{kind}-{owner}", "generation": 1}
    if owner is not None:
        md["ownerReferences"] = [
            {"apiVersion": "modelversioning.io/v1alpha1", "kind": "ModelEndpoint", "name": "x",
             "uid": owner, "controller": True},
        ]  # fmt: skip
    body: dict[str, Any] = {"kind": kind, "metadata": md, "spec": {"replicas": 1}}
    if kind == "Deployment" and ready:
        available = [{"type": "Available", "status": "True"}]
        body["status"] = {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1,
                          "availableReplicas": 1, "conditions": available}  # fmt: skip
    return body


@pytest.mark.parametrize(
    ("dep_owner", "svc_owner", "ours", "conflict"),
    [
        pytest.param(UID, UID, True, "", id="both-ours"),
        pytest.param(UID, None, False, "Service ep-s", id="service-without-controller-ref"),
        pytest.param("other-uid", UID, False, "Deployment ep-s", id="deployment-of-another-endpoint"),
        pytest.param(UID, "missing", False, "", id="service-absent"),
        pytest.param("missing", UID, False, "", id="deployment-absent"),
    ],
)
def test_slot_state_requires_our_controller_reference_on_both(
    dep_owner: str, svc_owner: str | None, ours: bool, conflict: str
) -> None:
    dep = None if dep_owner == "missing" else _obj("Deployment", dep_owner)
    svc = None if svc_owner == "missing" else _obj("Service", svc_owner)
    st = parse.slot_state(UID, "ep-s", dep, svc)
    assert st.ours is ours
    assert st.conflict.startswith(conflict) and bool(st.conflict) is bool(conflict)
    if conflict:  # nothing of a foreign slot counts, however ready its pods are
        assert (st.available, st.ready_replicas) == (False, 0)


# -------------------------------------------------------------------- the reconciler, end to end
def _labelled_foreign(w: World, kind: str, name: str) -> dict[str, Any]:
    """A copy of our child with the same name and labels (so the watch sees it) but no owner."""
    ours = {n: o for (k, n), o in w.api.objects.items() if k == kind}
    body = copy.deepcopy(ours[name])
    body["metadata"].pop("ownerReferences", None)
    body["metadata"]["uid"] = f"theirs-{kind}"
    return body


def test_a_foreign_deployment_and_service_with_the_slot_name_never_get_traffic() -> None:
    """A tenant made the Deployment and Service of the slot's name (with our labels, ready pods)
    before the operator did: the route is never written to them."""
    w = World()
    w.version("2.3.8", "a" * 64)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    w.reconcile()  # renders the slot; take its name, then let a tenant hold both children
    name = next(n for (k, n) in w.api.objects if k == "Deployment")
    foreign = {k: _labelled_foreign(w, k, name) for k in ("Deployment", "Service")}
    w.api.objects = {k: o for k, o in w.api.objects.items() if k[0] not in ("Deployment", "Service")}
    w.api.objects.update({(k, name): o for k, o in foreign.items()})
    w.watch()
    w.settle()
    assert ("HTTPRoute", "ep") not in w.api.objects  # nothing eligible: no route at all
    assert w.status()["effectiveWeights"] == {}
    st = w.status()["variants"][0]
    assert (st["eligible"], st["reason"]) == (False, R.CHILD_CONFLICT) and "serving" not in st
    assert w.api.objects[("Service", name)]["metadata"]["uid"] == "theirs-Service"  # left alone


def test_a_child_recreated_by_someone_else_after_gather_is_not_taken_over() -> None:
    """The Service we observed as ours drifted; between gather and act it was deleted and re-created
    by someone else. The apply carries the observed UID: refused, reported as a retry, not written."""
    w = World()
    svc = serving_one(w)
    cached = w.store.get("Service", NS, svc)
    assert cached is not None
    cached["spec"]["ports"] = []  # a hand edit, observed: the reconcile puts it back (apply)
    w.store.upsert("Service", cached, observed=True)
    theirs = {**copy.deepcopy(w.api.objects[("Service", svc)])}
    theirs["metadata"] = {**theirs["metadata"], "uid": "theirs", "ownerReferences": []}
    w.api.objects[("Service", svc)] = theirs  # not yet seen by the watch
    with pytest.raises(PreconditionFailed):  # the work queue retries with backoff
        w.reconcile()
    assert w.api.objects[("Service", svc)] is theirs and theirs["metadata"]["ownerReferences"] == []
    assert ("apply", "Service", svc) not in w.api.writes
    assert w.cond("Ready")[:2] == ("False", R.CHILD_APPLY_RETRYING)
    w.watch()  # the watch shows the re-created Service: a conflict, and no traffic to it
    w.reconcile()
    assert w.status()["variants"][0]["reason"] == R.CHILD_CONFLICT


def test_a_drained_slot_deletes_only_the_children_that_are_still_ours() -> None:
    """The old slot drains; meanwhile someone replaced its Service with their own (observed). The
    drain deletes our Deployment, by its UID, and leaves their Service alone."""
    w = World()
    old = serving_one(w)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.settle()
    assert old not in w.routed() and old in w.deployments()  # draining
    w.api.objects[("Service", old)] = _labelled_foreign(w, "Service", old)
    w.watch()
    w.now += 60  # past the grace
    w.settle()
    assert old not in w.deployments()
    assert w.api.objects[("Service", old)]["metadata"]["uid"] == "theirs-Service"
    assert ("delete", "Service", old) not in w.api.writes
