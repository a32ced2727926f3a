"""Table tests of the ModelEndpoint decisions (domain.endpoint_plan), without a cluster.

Each case under "Why" of the serving-correctness issue is a row here: the facts a reconcile would
gather, and what the plan must (and must never) do with traffic.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from endpoint_plan_facts import (
    EDIT_FACTS,
    EDITED,
    NEW,
    OLD,
    cond,
    facts,
    mv,
    pin,
    report,
    slot,
    variant,
)
from modelversioning.api import wire as R
from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import endpoint_status as S


def test_version_edit_keeps_traffic_on_the_verified_slot() -> None:
    plan = P.decide(EDIT_FACTS)
    d = plan.decision("stable")
    assert d.apply  # the new slot is created beside the old one...
    assert d.serving == pin()  # ...but traffic stays on the old one
    assert [(x.slot, x.version, x.digest, x.weight) for x in plan.destinations] == [
        ("ep-stable-old", "2.3.8", OLD, 100)
    ]
    assert plan.delete == ()
    assert "traffic stays on 2.3.8" in d.message and d.reason == R.ARTIFACT_NOT_VERIFIED
    rep = report(EDIT_FACTS, plan)
    assert cond(rep, "Progressing") == ("True", R.ROLLING_OUT)
    assert cond(rep, "Ready")[0] == "False"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"verified": True, "stage": "candidate"}, R.STAGE_NOT_REACHED),
        ({"verified": True, "stage": "production"}, R.DEPLOYMENT_NOT_AVAILABLE),  # new slot not Available
        ({"verified": False, "verify_reason": "DigestMismatch"}, R.DIGEST_MISMATCH),
    ],
)
def test_every_unmet_gate_keeps_traffic_on_the_old_slot(change: dict[str, object], reason: str) -> None:
    new_mv = replace(EDITED.mv, **change)  # type: ignore[arg-type]
    f = replace(EDIT_FACTS, variants=(replace(EDITED, mv=new_mv),))
    plan = P.decide(f)
    assert [x.slot for x in plan.destinations] == ["ep-stable-old"]
    assert plan.decision("stable").reason == reason


NO_SLOT_TABLE = [
    # every ArtifactVerified reason a ModelVersion can carry, and whether a slot is created for it
    (R.URI_REFUSED, False),  # the pod enforces the same policy: never a Deployment for it
    (R.DIGEST_MISMATCH, False),  # the pod would fetch the wrong bytes only to fail
    (R.SIZE_MISMATCH, False),
    (R.LIMIT_EXCEEDED, False),  # the pod runs under the same limits
    (R.ACCESS_DENIED, False),  # the same Secret, bound to the same hosts: the init container crash-loops
    (R.VERSION_REUSED, False),  # refused for good by the registry
    (R.ARTIFACT_DELETED, False),  # nothing left to fetch
    # oci:// refused for good: the pod verifies the same pinned manifest and layers
    *[(r, False) for r in (R.TAG_WITHOUT_DIGEST, R.MANIFEST_DIGEST_MISMATCH, R.LAYER_DIGEST_MISMATCH)],
    *[(r, False) for r in (R.UNSUPPORTED_ARTIFACT_LAYOUT, R.UNSAFE_ARCHIVE)],
    # signed models: refused by the trust policy, and the init container checks the same anchors
    (R.SIGNATURE_MISSING, False),
    (R.SIGNATURE_INVALID, False),
    (R.SIGNER_NOT_TRUSTED, False),
    (R.SIGNATURE_DIGEST_MISMATCH, False),
    (R.CERTIFICATE_EXPIRED, False),
    # the I/O contract: a MINOR/PATCH that breaks it, or no signature where one is required (immutable)
    (R.IO_SIGNATURE_CHANGED, False),
    (R.IO_SIGNATURE_MISSING, False),
    (R.VERIFYING, True),  # pending: the slot is prepared while the operator verifies
    (R.NOT_FOUND, True),  # transient: may be uploaded later
    (R.FETCH_FAILED, True),  # transient: network or store
]


@pytest.mark.parametrize(("verify_reason", "deployed"), NO_SLOT_TABLE)
def test_no_slot_for_a_permanent_verification_failure(verify_reason: str, deployed: bool) -> None:
    """issue 14, finding 5: Deployments were rendered for versions whose URI was refused (and, found
    later, for an AccessDenied one, whose init container can only crash-loop)."""
    new_mv = replace(EDITED.mv, verified=False, verify_reason=verify_reason)
    f = replace(EDIT_FACTS, variants=(replace(EDITED, mv=new_mv),))
    plan = P.decide(f)
    assert plan.decision("stable").apply is deployed
    assert [x.slot for x in plan.destinations] == ["ep-stable-old"]  # traffic stays where it was
    assert "ep-stable-old" not in plan.delete


def test_the_no_slot_table_covers_every_verification_outcome() -> None:
    """A new reason must be decided here (the table above), not fall through to "deploy"."""
    from modelversioning.artifacts.errors import TRANSIENT_REASONS, Reason

    decided = {reason for reason, _ in NO_SLOT_TABLE}
    permanent = {r.value for r in Reason if r not in TRANSIENT_REASONS and r is not Reason.VERIFIED}
    assert permanent <= P.NO_SLOT_REASONS, permanent - P.NO_SLOT_REASONS
    assert {r.value for r in Reason if r is not Reason.VERIFIED} <= decided
    assert {reason for reason, deployed in NO_SLOT_TABLE if not deployed} == P.NO_SLOT_REASONS


def test_traffic_moves_in_one_write_once_the_new_slot_is_eligible() -> None:
    ready = replace(EDITED, mv=mv("2.4.1", digest=NEW, uid="uid-2"), desired=slot("ep-stable-new"))
    f = replace(EDIT_FACTS, variants=(ready,), owned_slots=frozenset({"ep-stable-old", "ep-stable-new"}))
    plan = P.decide(f)
    assert [(x.slot, x.version, x.weight) for x in plan.destinations] == [("ep-stable-new", "2.4.1", 100)]
    assert plan.decision("stable").serving == P.Pin("2.4.1", "uid-2", NEW, "ep-stable-new")
    # the route we observe still points at the old slot: it is not deleted in this reconcile
    assert plan.delete == () and plan.draining == {}
    assert cond(report(f, plan), "Ready") == ("True", R.READY)


def test_old_slot_drains_only_after_the_observed_route_left_it_plus_grace() -> None:
    moved = replace(
        EDITED, mv=mv("2.4.1", digest=NEW, uid="uid-2"), desired=slot("ep-stable-new"),
        pin=P.Pin("2.4.1", "uid-2", NEW, "ep-stable-new"), pinned=slot("ep-stable-new"),
        pinned_mv=mv("2.4.1", digest=NEW, uid="uid-2"),
    )  # fmt: skip
    owned = frozenset({"ep-stable-old", "ep-stable-new"})
    # our route write is not visible through the watch yet: nothing is deleted
    f = facts(moved, owned_slots=owned, routed={"ep-stable-old": 100}, routes_known=False)
    assert P.decide(f).delete == () and P.decide(f).draining == {}
    # the watch shows the new route: the grace period starts
    f = replace(f, routed={"ep-stable-new": 100}, routes_known=True)
    plan = P.decide(f)
    assert plan.delete == () and plan.draining == {"ep-stable-old": 1000.0} and plan.requeue_after == 10.0
    # 4 s later: still waiting
    plan = P.decide(replace(f, draining={"ep-stable-old": 1000.0}, now=1004.0))
    assert plan.delete == () and plan.requeue_after == pytest.approx(6.0)
    # grace over: deleted
    plan = P.decide(replace(f, draining={"ep-stable-old": 1000.0}, now=1010.0))
    assert plan.delete == ("ep-stable-old",) and plan.draining == {}


def test_a_weight_zero_reference_still_counts_as_routed() -> None:
    moved = variant(
        desired=slot("ep-stable-new"), pin=pin(slot_="ep-stable-new"), pinned=slot("ep-stable-new")
    )
    f = facts(moved, owned_slots=frozenset({"ep-stable-old", "ep-stable-new"}),
              routed={"ep-stable-new": 100, "ep-stable-old": 0})  # fmt: skip
    assert P.decide(f).delete == () and P.decide(f).draining == {}


def test_unknown_route_state_deletes_nothing() -> None:
    f = facts(variant(desired=slot("s")), owned_slots=frozenset({"s", "orphan"}), routes_known=False)
    plan = P.decide(replace(f, drain_seconds=0))
    assert plan.delete == () and plan.draining == {}
    assert P.decide(replace(f, routes_known=True, drain_seconds=0)).delete == ("orphan",)


# ------------------------------------------------------------------------------------- replicas: 0


def test_replicas_zero_under_traffic_is_held() -> None:
    v = variant(replicas=0, desired=slot("ep-stable-s", replicas=2), pin=pin(slot_="ep-stable-s"),
                pinned=slot("ep-stable-s", replicas=2))  # fmt: skip
    f = facts(v, previous_weights={"stable": 100}, owned_slots=frozenset({"ep-stable-s"}),
              routed={"ep-stable-s": 100})  # fmt: skip
    plan = P.decide(f)
    d = plan.decision("stable")
    assert d.replicas == 2 and d.held_scale and not d.eligible
    assert plan.held and not plan.write_route  # the only variant: the route keeps what it has
    rep = report(f, plan)
    assert cond(rep, "Degraded") == ("True", R.SCALE_DOWN_HELD)
    assert any(e[1] == R.SCALE_DOWN_HELD for e in rep.events)


def test_replicas_zero_moves_traffic_first_then_scales_down() -> None:
    a = variant("a", weight=50, replicas=0, desired=slot("ep-a", replicas=1), pin=pin(slot_="ep-a"),
                pinned=slot("ep-a"))  # fmt: skip
    b = variant("b", weight=50, desired=slot("ep-b"), pin=pin(slot_="ep-b"), pinned=slot("ep-b"))
    f = facts(a, b, previous_weights={"a": 50, "b": 50}, owned_slots=frozenset({"ep-a", "ep-b"}),
              routed={"ep-a": 50, "ep-b": 50})  # fmt: skip
    plan = P.decide(f)
    assert plan.decision("a").replicas == 1  # held while the observed route sends it traffic
    assert {x.slot: x.weight for x in plan.destinations} == {"ep-b": 100}
    later = P.decide(replace(f, routed={"ep-b": 100}))
    assert later.decision("a").replicas == 0 and not later.decision("a").held_scale


# --------------------------------------------------------------------------------- digest pinning


def test_recreated_version_keeps_traffic_on_the_pinned_pods() -> None:
    recreated = mv("2.3.8", digest=NEW, uid="uid-9")
    v = variant(mv=recreated, desired=slot("ep-stable-evil"), pin=pin(), pinned=slot("ep-stable-old"),
                pinned_mv=recreated)  # fmt: skip
    f = facts(v, previous_weights={"stable": 100}, owned_slots=frozenset({"ep-stable-old"}),
              routed={"ep-stable-old": 100})  # fmt: skip
    plan = P.decide(f)
    d = plan.decision("stable")
    assert not d.apply  # no pods are ever started for the new digest
    assert d.serving == pin() and d.reason == R.MODEL_VERSION_REPLACED
    assert [(x.slot, x.digest) for x in plan.destinations] == [("ep-stable-old", OLD)]
    rep = report(f, plan)
    assert cond(rep, "Degraded") == ("True", R.MODEL_VERSION_REPLACED)
    assert ("Warning", R.MODEL_VERSION_REPLACED) in {(e[0], e[1]) for e in rep.events}
    assert R.ACCEPT_REPLACED_ANNOTATION in d.message
    # the user accepts the new digest explicitly: the new slot is deployed, and takes traffic when eligible
    accepted = P.decide(replace(f, variants=(replace(v, accept_replaced=True),)))
    assert accepted.decision("stable").apply
    assert accepted.decision("stable").serving == P.Pin("2.3.8", "uid-9", NEW, "ep-stable-evil")


def test_same_bytes_new_uid_is_still_reported() -> None:
    v = variant(mv=mv(uid="uid-9"), desired=slot("ep-stable-old"), pin=pin(), pinned=slot("ep-stable-old"))
    plan = P.decide(facts(v, routed={"ep-stable-old": 100}, owned_slots=frozenset({"ep-stable-old"})))
    assert plan.decision("stable").reason == R.MODEL_VERSION_REPLACED


def test_demoted_previous_version_loses_its_fallback() -> None:
    """An archived pinned version is withdrawn: with nothing else eligible the route closes (it used to
    be held on the archived version: issue 23, revocation fails open)."""
    v = replace(EDITED, pinned_mv=mv("2.3.8", stage="archived"))
    plan = P.decide(replace(EDIT_FACTS, variants=(v,)))
    assert not plan.decision("stable").eligible and not plan.held
    assert plan.closed == R.UNAVAILABLE_ARCHIVED and plan.write_route and plan.destinations == ()


# ------------------------------------------------------------------------- one bad variant, others go


def test_api_error_on_one_variant_does_not_block_the_route() -> None:
    a = variant("a", weight=0, desired=slot("ep-a"), pin=pin(slot_="ep-a"), pinned=slot("ep-a"))
    b = variant("b", weight=100, version="2.4.0", mv=mv("2.4.0"), desired=P.SlotFacts("ep-b"))
    f = facts(
        a, b, previous_weights={"a": 100, "b": 0}, routed={"ep-a": 100}, owned_slots=frozenset({"ep-a"})
    )
    plan = P.decide(f)
    # b's slot was refused by the API server: b never becomes Available; rollback to a still works
    out = P.Outcome(
        {"b": (R.CHILD_REJECTED, 'Deployment "ep-b" is invalid: quantities must match')}, None, "ok"
    )
    rep = report(f, plan, out)
    assert {x.slot: x.weight for x in plan.destinations} == {"ep-a": 100}
    assert cond(rep, "Degraded") == ("True", R.CHILD_REJECTED)
    assert "quantities must match" in next(c for c in rep.conditions if c.type == "Degraded").message
    assert next(d for d in rep.variants if d.name == "b").reason == R.CHILD_REJECTED


def test_route_render_error_is_permanent_invalid_spec() -> None:
    f = facts(variant(desired=slot("s")))
    plan = P.decide(f)
    bad = (R.INVALID_SPEC, "not valid HTTPRoute hostnames: 10.0.0.1:8080")
    rep = report(f, plan, P.Outcome(route_error=bad))
    assert cond(rep, "Degraded") == ("True", R.INVALID_SPEC)
    assert cond(rep, "RoutesReady") == ("False", R.INVALID_SPEC)
    assert cond(rep, "Ready")[0] == "False"


def test_conflict_reason_is_reported() -> None:
    f = facts(variant(desired=P.SlotFacts("s")))
    rep = report(f, P.decide(f), P.Outcome({"stable": (R.CHILD_CONFLICT, "Service s exists")}))
    assert cond(rep, "Degraded") == ("True", R.CHILD_CONFLICT)


# ------------------------------------------------------------------------------- routes left alone


def test_major_mix_leaves_routes_alone() -> None:
    a = variant("a", weight=50, desired=slot("ep-a"))
    b = variant("b", version="3.0.0", weight=50, mv=mv("3.0.0"), desired=slot("ep-b"))
    f = facts(a, b, previous_weights={"a": 100})
    plan = P.decide(f)
    assert not plan.write_route and plan.weights == {"a": 100}
    assert cond(report(f, plan), "Degraded") == ("True", R.MAJOR_VERSION_MIX)


def test_disabled_router_leaves_routes_alone_and_deletes_nothing() -> None:
    f = facts(variant(desired=slot("s")), router_problem=(R.ROUTER_DISABLED, "not enabled"),
              routes_known=False, owned_slots=frozenset({"s", "old"}))  # fmt: skip
    plan = P.decide(f)
    assert not plan.write_route and plan.delete == ()
    assert cond(report(f, plan), "Degraded") == ("True", R.ROUTER_DISABLED)


def test_nothing_eligible_at_first_writes_no_route() -> None:
    f = facts(variant(mv=mv(verified=False, reason="Verifying"), desired=P.SlotFacts("s")))
    plan = P.decide(f)
    assert plan.held and not plan.write_route and plan.destinations == ()
    rep = report(f, plan)
    assert cond(rep, "RoutesReady") == ("False", R.NO_ELIGIBLE_VARIANT)
    assert not [e for e in rep.events if e[0] == "Warning"]  # waiting for a first version: no Warning


def test_traffic_with_nowhere_to_go_is_a_warning() -> None:
    f = facts(variant(mv=mv(verified=False, reason="Verifying"), desired=P.SlotFacts("s")),
              previous_weights={"stable": 100})  # fmt: skip
    rep = report(f, P.decide(f))
    assert ("Warning", R.NO_ELIGIBLE_VARIANT) in [(e[0], e[1]) for e in rep.events]


def test_missing_version_is_permanent_and_never_routed() -> None:
    v = variant(mv=None, problem=(R.MISSING_VERSION, "ModelVersion m-v2.3.8 does not exist"))
    f = facts(v, variant("b", weight=0, desired=slot("ep-b")))
    plan = P.decide(replace(f, variants=(replace(v, weight=100), f.variants[1])))
    assert not plan.decision("stable").apply
    assert all(x.variant != "stable" for x in plan.destinations)


# ----------------------------------------------------------------------------------- canary, mirror


def test_canary_waits_then_takes_its_share() -> None:
    stable = variant(weight=90, desired=slot("ep-s"), pin=pin(slot_="ep-s"), pinned=slot("ep-s"))
    canary = variant("canary", "2.4.1", 10, mv=mv("2.4.1", stage="staging"), desired=slot("ep-c"))
    f = facts(stable, canary, previous_weights={"stable": 100})
    plan = P.decide(f)
    assert {x.slot: x.weight for x in plan.destinations} == {"ep-s": 100}
    promoted = replace(canary, mv=mv("2.4.1"))
    plan = P.decide(replace(f, variants=(stable, promoted)))
    assert {x.slot: x.weight for x in plan.destinations} == {"ep-s": 90, "ep-c": 10}


def test_mirror_needs_one_stage_lower_and_is_not_a_weighted_destination() -> None:
    live = variant(desired=slot("ep-s"))
    shadow = replace(variant("shadow", "3.0.0-rc.1", 0, mv=mv("3.0.0-rc.1", stage="staging"),
                             desired=slot("ep-sh")), mirror=True)  # fmt: skip
    plan = P.decide(facts(live, shadow))
    assert plan.mirror is not None and plan.mirror.slot == "ep-sh"
    assert [x.slot for x in plan.destinations] == ["ep-s"]
    candidate = replace(shadow, mv=mv("3.0.0-rc.1", stage="candidate"))
    assert P.decide(facts(live, candidate)).mirror is None


def test_removed_variant_slot_is_drained_not_kept() -> None:
    f = facts(variant(desired=slot("ep-s"), pin=pin(slot_="ep-s"), pinned=slot("ep-s")),
              owned_slots=frozenset({"ep-s", "ep-gone"}), routed={"ep-s": 100, "ep-gone": 0})  # fmt: skip
    plan = P.decide(f)
    assert plan.delete == () and "ep-gone" not in plan.draining  # still referenced (weight 0)
    plan = P.decide(replace(f, routed={"ep-s": 100}, drain_seconds=0))
    assert plan.delete == ("ep-gone",)


def test_scaling_up_the_serving_slot_keeps_its_traffic() -> None:
    scaling = P.SlotFacts("ep-s", True, False, 1, 3, "1/3 replicas available", ours=True)
    v = variant(replicas=3, desired=scaling, pin=pin(slot_="ep-s"), pinned=scaling)
    plan = P.decide(facts(v, previous_weights={"stable": 100}, routed={"ep-s": 100}))
    assert plan.decision("stable").eligible and [x.slot for x in plan.destinations] == ["ep-s"]
    # a new slot with the same state is not eligible: it needs all its replicas first
    fresh = variant(replicas=3, desired=scaling)
    assert not P.decide(facts(fresh)).decision("stable").eligible
    # and a serving slot with no ready pod at all is not eligible either
    down = P.SlotFacts("ep-s", True, False, 0, 3, "0/3 replicas available", ours=True)
    dead = variant(replicas=3, desired=down, pin=pin(slot_="ep-s"), pinned=down)
    assert not P.decide(facts(dead, routed={"ep-s": 100})).decision("stable").eligible


def test_mirror_is_left_out_where_the_gateway_cannot_mirror() -> None:
    live = variant(desired=slot("ep-s"))
    shadow = replace(variant("shadow", "3.0.0-rc.1", 0, mv=mv("3.0.0-rc.1", stage="staging"),
                             desired=slot("ep-sh")), mirror=True)  # fmt: skip
    f = facts(live, shadow, mirror_supported=False)
    plan = P.decide(f)
    assert plan.mirror is None and [x.slot for x in plan.destinations] == ["ep-s"]
    assert cond(report(f, plan), "Degraded") == ("True", R.MIRROR_UNSUPPORTED)


def test_the_routers_capabilities_decide_not_its_name() -> None:
    live = variant(desired=slot("ep-s"))
    shadow = replace(variant("shadow", "3.0.0-rc.1", 0, mv=mv("3.0.0-rc.1", stage="staging"),
                             desired=slot("ep-sh")), mirror=True)  # fmt: skip
    # a router that writes no route object (whatever its name): nothing is written, RoutesReady says so,
    # and the declared split and mirror are kept for status as they are (none of it is applied)
    f = facts(live, shadow, router="plain", writes_route=False, mirror_supported=False)
    plan = P.decide(f)
    assert not plan.write_route and plan.mirror is not None and plan.mirror.slot == "ep-sh"
    rep = report(f, plan)
    assert cond(rep, "RoutesReady") == ("True", R.NO_ROUTER)
    assert cond(rep, "Degraded") == ("False", R.AS_EXPECTED)
    # a router that writes one but cannot mirror here says why
    f = facts(live, shadow, router="plain", mirror_supported=False, why_no_mirror="GatewayClass x lacks it")
    plan = P.decide(f)
    assert plan.write_route and plan.mirror is None
    degraded = next(c for c in report(f, plan).conditions if c.type == "Degraded")
    why = "router plain cannot mirror here (GatewayClass x lacks it): variant shadow gets no copies"
    assert degraded.message == why


def test_replicas_follow_the_share_and_the_share_waits_for_the_pods() -> None:
    stable = variant(weight=90, replicas=10, desired=slot("ep-s", replicas=10), pin=pin(slot_="ep-s"),
                     pinned=slot("ep-s", replicas=10))  # fmt: skip
    small = P.SlotFacts("ep-c", True, True, 1, 1, "Deployment is available", ours=True)
    canary = replace(variant("canary", "2.4.1", 10, mv=mv("2.4.1"), desired=small, pin=pin("2.4.1", "ep-c"),
                             pinned=small), replicas=10, min_replicas=1)  # fmt: skip
    f = facts(stable, canary, previous_weights={"stable": 100, "canary": 0})
    plan = P.decide(f)
    # at 10 % the canary needs ceil(10 * 10 / 100) = 1 replica: it has it, it takes its share
    assert plan.decision("canary").replicas == 1 and plan.weights == {"stable": 90, "canary": 10}
    # to 50 %: 5 replicas first; until they are ready the share stays where it was
    half = replace(canary, weight=50)
    plan = P.decide(replace(f, variants=(replace(stable, weight=50), half),
                            previous_weights={"stable": 90, "canary": 10}))  # fmt: skip
    assert plan.decision("canary").replicas == 5 and plan.weights == {"stable": 90, "canary": 10}
    assert plan.decision("canary").reason == R.SCALING_UP
    ready5 = P.SlotFacts("ep-c", True, True, 5, 5, "Deployment is available", ours=True)
    ready_half = replace(half, desired=ready5, pinned=ready5)
    plan = P.decide(replace(f, variants=(replace(stable, weight=50), ready_half),
                            previous_weights={"stable": 90, "canary": 10}))  # fmt: skip
    assert plan.weights == {"stable": 50, "canary": 50}
    # back down to 10 %: the share shrinks first, the replicas only once it has
    down = replace(canary, desired=ready5, pinned=ready5)
    plan = P.decide(replace(f, variants=(stable, down), previous_weights={"stable": 50, "canary": 50}))
    assert plan.weights == {"stable": 90, "canary": 10} and plan.decision("canary").replicas == 5
    later = P.decide(replace(f, variants=(stable, down), previous_weights={"stable": 90, "canary": 10}))
    assert later.decision("canary").replicas == 1


def test_a_models_own_stage_carries_no_serving_rights() -> None:
    # a Model may define stages such as "approved": they count as candidate, never as production
    f = facts(variant(mv=mv(stage="approved"), desired=slot("s")))
    plan = P.decide(f)
    assert not plan.decision("stable").eligible and plan.decision("stable").reason == R.STAGE_NOT_REACHED


def test_a_live_rollout_overrides_ready_and_kstatus_follows() -> None:
    f = facts(variant(desired=slot("s"), pin=pin(slot_="s"), pinned=slot("s")), routed={"s": 100})
    rep = report(f, P.decide(f))
    assert cond(rep, "Ready")[0] == "True"
    rolling = (
        S.Cond("Ready", "False", "RollingOut", "step 1"),
        S.Cond("Progressing", "True", "RollingOut", "step 1"),
    )
    done = S.finish_report(rep, rolling, (("Normal", "RolloutStep", "step 1"),))
    assert cond(done, "Ready") == ("False", "RollingOut") and cond(done, "Reconciling") == (
        "True",
        "RollingOut",
    )
    assert cond(done, "Stalled")[0] == "False" and ("Normal", "RolloutStep", "step 1") in done.events
    assert cond(S.finish_report(rep, (), ()), "Reconciling")[0] == "False"


def test_a_route_not_written_reports_the_split_and_pins_the_route_still_has() -> None:
    a = variant("a", weight=0, desired=slot("ep-a"), pin=pin(slot_="ep-a"), pinned=slot("ep-a"))
    b = variant("b", weight=100, version="2.4.0", mv=mv("2.4.0"), desired=slot("ep-b"))
    f = facts(a, b, previous_weights={"a": 100}, routed={"ep-a": 100}, owned_slots=frozenset({"ep-a"}))
    plan = P.decide(f)
    assert plan.weights == {"a": 0, "b": 100} and plan.decision("b").serving is not None
    refused = P.Outcome(route_error=(R.CHILD_REJECTED, "HTTPRoute ep: denied"))
    # the status builder reports what the route still carries (the plan itself is not re-planned)
    weights, serving = S.carried(f, plan, refused)
    assert weights == {"a": 100} and plan.write_route
    assert serving["a"] == a.pin and serving["b"] is None
    rep = report(f, plan, refused)
    assert [d.serving for d in rep.variants] == [a.pin, None]
    assert cond(rep, "Degraded") == ("True", R.CHILD_REJECTED)
    assert not [e for e in rep.events if e[1] == R.TRAFFIC_SHIFTED]
    st = S.build_status(f, plan, refused)
    assert st.fields["effectiveWeights"] == {"a": 100} and st.weights == {"a": 100}
