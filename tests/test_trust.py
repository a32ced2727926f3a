"""The trust decision for signed models (domain.trust), table-tested, and how it makes up a version's
ArtifactVerified and stage walk (domain.version_plan.decide); the trust policies read from the API
(handlers.trust.trust_plan)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelversioning.api import trust as trust_api
from modelversioning.api import wire as R
from modelversioning.api.modelversion_spec import STAGE_NAME
from modelversioning.domain import conditions as cond
from modelversioning.domain.stages import DEFAULT_GRAPH, StageGraph
from modelversioning.domain.trust import TrustFacts, TrustSource, accepted_by_anchors, required_for, verdict
from modelversioning.domain.version_facts import VerifierFacts, VerifyAction, VerifyResult
from modelversioning.domain.version_plan import decide
from modelversioning.handlers.trust import init_trust_json, trust_plan
from test_version_plan import NOW, POLICY, SHA, facts, verified_status

ORDER = StageGraph.from_config(DEFAULT_GRAPH).order
MODEL = TrustSource("Model m", "staging", ("Model m: keys/release", "Model m: certificates/ci"))
CORP = TrustSource("ModelPlatformPolicy corp", "production", ("ModelPlatformPolicy corp: keys/corp",))
BOTH = ["Model m: keys/release", "ModelPlatformPolicy corp: keys/corp"]
PAST, SOON = timedelta(seconds=-1), timedelta(days=1)
SIGNED = {"outcome": R.SIGNED, "method": "key", "signer": "sha256:ab", "matched": ["Model m: keys/release"]}


def rec(**kw):
    return {**SIGNED, **kw}


def iso(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "sources, record, accepted, reason",
    [
        ((MODEL,), rec(), True, R.SIGNED),
        ((MODEL,), None, False, R.SIGNATURE_MISSING),  # not read yet
        ((MODEL,), {"outcome": R.SIGNATURE_MISSING}, False, R.SIGNATURE_MISSING),
        ((MODEL,), {"outcome": R.SIGNATURE_INVALID}, False, R.SIGNATURE_INVALID),
        ((MODEL,), {"outcome": R.SIGNATURE_DIGEST_MISMATCH}, False, R.SIGNATURE_DIGEST_MISMATCH),
        ((MODEL,), {"outcome": R.SIGNER_NOT_TRUSTED}, False, R.SIGNER_NOT_TRUSTED),
        ((MODEL,), {}, False, R.SIGNATURE_MISSING),
        # signed, but by an entry of no source: not trusted
        ((MODEL,), rec(matched=["Model other: keys/x"]), False, R.SIGNER_NOT_TRUSTED),
        # the strictest wins: every source that lists signers must trust the signer
        ((MODEL, CORP), rec(), False, R.SIGNER_NOT_TRUSTED),
        ((MODEL, CORP), rec(matched=BOTH), True, R.SIGNED),
        # a source that requires signatures but lists no signer adds no list of its own
        ((MODEL, TrustSource("ModelPlatformPolicy floor", "candidate")), rec(), True, R.SIGNED),
        ((TrustSource("ModelPlatformPolicy floor", "candidate"),), rec(), False, R.SIGNER_NOT_TRUSTED),
        # certificates: expired now, or an unreadable expiry, is refused; a future one is accepted
        ((MODEL,), rec(method="certificate", notAfter=iso(PAST)), False, R.CERTIFICATE_EXPIRED),
        ((MODEL,), rec(method="certificate", notAfter="yesterday"), False, R.CERTIFICATE_EXPIRED),
        ((MODEL,), rec(method="certificate", notAfter=iso(SOON)), True, R.SIGNED),
    ],
)  # fmt: skip
def test_verdict(sources, record, accepted, reason):
    v = verdict(TrustFacts(sources, "p"), record, NOW)
    assert (v.accepted, v.reason) == (accepted, reason), v.message
    assert (v.accepted_by is not None) == accepted


def test_an_accepted_certificate_is_looked_at_again_when_it_expires():
    v = verdict(TrustFacts((MODEL,), "p"), rec(notAfter=iso(timedelta(hours=2))), NOW)
    assert v.accepted and v.recheck_after == pytest.approx(7200)
    assert v.accepted_by == "Model m"


@pytest.mark.parametrize(
    "stage, required_from, needs",
    [
        ("candidate", ("staging",), None),
        ("staging", ("staging",), "staging"),
        ("production", ("staging",), "staging"),
        ("archived", ("candidate",), None),  # archiving withdraws: never needs a signature
        ("production", ("production", "staging"), "production"),  # the first that applies
        ("candidate", ("production", "candidate"), "candidate"),
        ("candidate", ("validated",), "validated"),  # a stage the graph lacks: fails closed
        ("candidate", (), None),
    ],
)
def test_required_for(stage, required_from, needs):
    sources = tuple(TrustSource(f"s{i}", s) for i, s in enumerate(required_from))
    assert required_for(stage, TrustFacts(sources, "p"), ORDER) == needs


@pytest.mark.parametrize(
    "matched, anchors, refused",
    [
        (["a"], [{"id": "a", "source": "M"}], False),
        (["b"], [{"id": "a", "source": "M"}], True),
        (["a"], [{"id": "a", "source": "M"}, {"id": "c", "source": "P"}], True),  # P's anchor not matched
        (["a", "c"], [{"id": "a", "source": "M"}, {"id": "c", "source": "P"}], False),
        (["a"], [], True),  # no anchors: nothing is accepted
    ],
)
def test_the_init_container_rule(matched, anchors, refused):
    assert (accepted_by_anchors(matched, anchors) is not None) == refused


# ---- how the verdict makes up the version's decision --------------------------------------------------

TRUST = TrustFacts((MODEL,), "p1")


def signed_status(stage="candidate", record=None, policy="p1", **kw):
    st = verified_status(stage, **kw)
    st["artifact"] = {**st["artifact"], "signature": {**(record or SIGNED), "policy": policy}}
    return st


def verified_cond(plan):
    return cond.get(plan.status["conditions"], "ArtifactVerified")


def test_below_required_from_a_missing_signature_keeps_the_version_verified_and_blocks_its_promotion():
    missing = {"outcome": R.SIGNATURE_MISSING, "message": "no signature at s3://b/m.sig"}
    plan = decide(
        facts(status=signed_status(record=missing), trust=TRUST, requested="production"), POLICY, NOW
    )
    c = verified_cond(plan)
    assert c["status"] == "True" and "not required at candidate" in c["message"]
    assert plan.status["stage"] == "candidate"
    st = cond.get(plan.status["conditions"], "StageTransition")
    assert (st["status"], st["reason"]) == ("False", R.SIGNATURE_MISSING)
    assert "staging requires a signature" in st["message"]


@pytest.mark.parametrize(
    "outcome", [R.SIGNATURE_MISSING, R.SIGNATURE_INVALID, R.SIGNER_NOT_TRUSTED, R.SIGNATURE_DIGEST_MISMATCH]
)
def test_at_required_from_an_unaccepted_signature_is_not_verified_and_warned(outcome):
    record = {"outcome": outcome, "message": "what the verifier found"}
    plan = decide(
        facts(status=signed_status("production", record), trust=TRUST, requested="production"), POLICY, NOW
    )
    c = verified_cond(plan)
    assert (c["status"], c["reason"]) == ("False", outcome)
    assert ("Warning", outcome) in {(e.type, e.reason) for e in plan.events}
    assert plan.verify is VerifyAction.NONE  # decided from the record: nothing fetched again
    assert "acceptedBy" not in plan.status["artifact"]["signature"]
    again = decide(facts(status=plan.status, trust=TRUST, requested="production"), POLICY, NOW)
    assert (
        verified_cond(again)["reason"] == outcome and again.verify is VerifyAction.NONE and not again.events
    )


def test_an_accepted_signature_is_recorded_with_who_accepted_it_and_promotes():
    plan = decide(facts(status=signed_status(), trust=TRUST, requested="production"), POLICY, NOW)
    assert verified_cond(plan)["status"] == "True" and plan.status["stage"] == "production"
    assert plan.status["artifact"]["signature"]["acceptedBy"] == "Model m"
    assert verified_cond(plan)["message"].endswith(
        "; signature: signed by key sha256:ab, accepted by Model m"
    )
    again = decide(facts(status=plan.status, trust=TRUST, requested="production"), POLICY, NOW)
    assert verified_cond(again)["message"] == verified_cond(plan)["message"]  # not appended twice


def test_removing_the_key_from_the_policy_withdraws_the_version_without_a_fetch():
    plan = decide(facts(status=signed_status("production"), trust=TRUST, requested="production"), POLICY, NOW)
    assert verified_cond(plan)["status"] == "True"
    other = TrustFacts((TrustSource("Model m", "staging", ("Model m: keys/new",)),), "p1")
    plan = decide(facts(status=plan.status, trust=other, requested="production"), POLICY, NOW)
    assert (verified_cond(plan)["status"], verified_cond(plan)["reason"]) == ("False", R.SIGNER_NOT_TRUSTED)


def test_an_expired_certificate_at_production_is_not_verified():
    record = rec(method="certificate", notAfter=iso(-timedelta(minutes=1)))
    plan = decide(facts(status=signed_status("production", record), trust=TRUST), POLICY, NOW)
    assert verified_cond(plan)["reason"] == R.CERTIFICATE_EXPIRED


def test_a_record_checked_under_another_trust_policy_is_verified_again():
    plan = decide(facts(status=signed_status(policy="old"), trust=TRUST), POLICY, NOW)
    assert plan.verify is VerifyAction.START and verified_cond(plan)["status"] == "Unknown"
    fresh = {**SIGNED, "policy": "p1"}
    res = VerifyResult(R.VERIFIED, "sha256 matches", False, SHA, 42, signature=fresh)
    done = decide(
        facts(status=signed_status(policy="old"), trust=TRUST, verifier=VerifierFacts(result=res)),
        POLICY,
        NOW,
    )
    assert verified_cond(done)["status"] == "True" and done.status["artifact"]["signature"]["policy"] == "p1"


def test_no_trust_policy_changes_nothing():
    plan = decide(facts(), POLICY, NOW)
    assert verified_cond(plan)["message"] == "sha256 matches" and "signature" not in plan.status["artifact"]
    # a record made under a policy that is gone: verified again without one
    assert decide(facts(status=signed_status()), POLICY, NOW).verify is VerifyAction.START


# ---- the trust policies read from the API ----------------------------------------------------------------


def test_the_trust_plan_names_every_entry_by_source_and_reads_model_refs_in_its_namespace_only():
    model = {
        "requiredFrom": "production",
        "keys": [{"name": "release", "publicKeyRef": {"name": "k", "key": "pub"}}],
    }
    corp = {
        "requiredFrom": "staging",
        "certificates": [
            {
                "identity": "ci@corp",
                "rootsRef": {"kind": "Secret", "name": "roots", "key": "ca.pem", "namespace": "platform"},
            }
        ],
    }
    plan = trust_plan("team-a", "m", model, [("corp", corp)])
    assert [(s.name, s.required_from, s.entries) for s in plan.facts.sources] == [
        ("Model m", "production", ("Model m: keys/release",)),
        ("ModelPlatformPolicy corp", "staging", ("ModelPlatformPolicy corp: certificates/cert0",)),
    ]
    assert [(r.namespace, r.ref_kind, r.name) for r in plan.refs] == [
        ("team-a", "ConfigMap", "k"),
        ("platform", "Secret", "roots"),
    ]
    assert plan.facts.policy and trust_plan("team-a", "m", None, []).facts.active is False
    changed = trust_plan("team-a", "m", {**model, "requiredFrom": "staging"}, [("corp", corp)])
    assert changed.facts.policy != plan.facts.policy  # a changed policy: the record is checked again
    with pytest.raises(ValueError):  # a tenant cannot name another namespace
        trust_api.TrustPolicy.model_validate(
            {"keys": [{"publicKeyRef": {"name": "k", "key": "p", "namespace": "x"}}]}
        )


def test_an_invalid_trust_policy_fails_closed():
    plan = trust_plan("ns", "m", {"requiredFrom": "NOT A STAGE"}, [])
    (source,) = plan.facts.sources
    assert source.required_from == "candidate" and source.entries == ()


def test_the_init_container_gets_the_anchors_only_for_an_accepted_signature():
    anchors = [{"id": "Model m: keys/release", "source": "Model m", "kind": "key", "pem": "PEM"}]
    st = {"artifact": {"signature": {**SIGNED, "acceptedBy": "Model m", "anchors": anchors}}}
    assert '"enforce":true' in (init_trust_json(st, None) or "")
    st["artifact"]["signature"]["acceptedBy"] = None
    assert init_trust_json(st, None) is None and init_trust_json({}, None) is None


def test_the_stage_pattern_is_the_version_s():
    assert trust_api.STAGE_NAME == STAGE_NAME
