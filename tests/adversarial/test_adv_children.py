"""Issue 23, item 4 (foreign children): slot names are predictable (<endpoint>-<variant>-<hash of the
pod template>), and a tenant who made a Deployment and a Service of that name, with our labels so the
operator's watch sees them and pods that are Ready, got 100 % of the endpoint's live traffic, every
response stamped with the verified model's x-model-sha256: the conflict was reported, but the variant
stayed eligible on the foreign Deployment's readiness. Here the facts are built from those objects by
the same function gather uses, and the route plan must give that slot nothing."""

from __future__ import annotations

from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.handlers.endpoint_parse import slot_state

EP_UID = "uid-of-the-endpoint"
SLOT = "fraud-stable-5d2c9a1f0b"  # the name the endpoint's renderer gives the variant's slot
OURS = "fraud-canary-7e3b11aa42"
LABELS = {R.LABEL_MANAGED_BY: R.MANAGED_BY, R.LABEL_ENDPOINT: "fraud", R.LABEL_SLOT: SLOT}


def child(kind: str, name: str, owner_uid: str | None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "team-a", "uid": f"{kind}-{name}", "labels": LABELS}
    if owner_uid is not None:
        md["ownerReferences"] = [
            {"apiVersion": "modelversioning.io/v1alpha1", "kind": "ModelEndpoint", "name": "fraud",
             "uid": owner_uid, "controller": True, "blockOwnerDeletion": True},
        ]  # fmt: skip
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {**md, "generation": 3}}
    if kind == "Deployment":
        body["spec"] = {"replicas": 2}
        available = [{"type": "Available", "status": "True"}]
        body["status"] = {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                          "availableReplicas": 2, "conditions": available}  # fmt: skip
    return body


def variant(name: str, version: str, weight: int, desired: P.SlotFacts) -> P.VariantFacts:
    mv = P.VersionFacts(
        f"fraud-v{version}", f"uid-{version}", version, "a" * 64, True, "Verified", "production"
    )
    return P.VariantFacts(name, version, weight, 2, False, mv, desired=desired)


def facts(*variants: P.VariantFacts) -> P.EndpointFacts:
    return P.EndpointFacts(
        required_stage="production", variants=variants, previous_weights={}, allow_major_mix=False,
        router="gatewayAPI", router_problem=None, owned_slots=frozenset({OURS}), routed={},
        routes_known=True, draining={}, now=1000.0, drain_seconds=10.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("deployment_owner", "service_owner"),
    [
        pytest.param(None, None, id="no-owner-reference"),
        pytest.param("uid-of-another-endpoint", "uid-of-another-endpoint", id="another-endpoints-children"),
        pytest.param(EP_UID, None, id="our-deployment-their-service"),
    ],
)
def test_a_foreign_deployment_and_service_with_the_slot_name_get_no_traffic(
    deployment_owner: str | None, service_owner: str | None
) -> None:
    foreign = slot_state(
        EP_UID, SLOT, child("Deployment", SLOT, deployment_owner), child("Service", SLOT, service_owner)
    )
    ours = slot_state(EP_UID, OURS, child("Deployment", OURS, EP_UID), child("Service", OURS, EP_UID))
    assert foreign.conflict and not foreign.ours and ours.ours

    # the only variant: nothing is eligible, so no route is written (none existed: none appears)
    alone = P.decide(facts(variant("stable", "1.4.0", 100, foreign)))
    assert not alone.decision("stable").eligible and alone.decision("stable").reason == R.CHILD_CONFLICT
    assert alone.destinations == () and not alone.write_route and alone.weights.get("stable", 0) == 0

    # beside an eligible variant: all of the traffic goes there, the foreign slot gets 0 and no backend
    both = P.decide(facts(variant("stable", "1.4.0", 90, foreign), variant("canary", "1.4.1", 10, ours)))
    assert both.weights == {"stable": 0, "canary": 100}
    assert [(d.slot, d.weight) for d in both.destinations] == [(OURS, 100)]
    assert SLOT not in {d.slot for d in both.destinations} and both.mirror is None
