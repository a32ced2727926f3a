"""The I/O contract as one step of a ModelVersion's decision (domain.version_contract through
domain.version_plan.decide): a refused MINOR is not verified (Ready False, a Warning Event, no slot) and
never fetched again for it; a verdict is kept per signature; the artifact's MLmodel signature wins over
spec.signature; a version waits for its baseline. Also what the gather step reads
(handlers.contract) and the MLmodel file kept while a directory artifact is hashed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelversioning.api import wire as R
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import verify_artifact
from modelversioning.artifacts.verify import digest_local
from modelversioning.domain.endpoint_plan import NO_SLOT_REASONS
from modelversioning.domain.io_contract import IOSignature, Known, decide_contract
from modelversioning.domain.platform_policy import Floors, floors_for
from modelversioning.domain.registry import VersionView, record
from modelversioning.domain.version_contract import CONTRACT_RECHECK_SECONDS, registered_before
from modelversioning.domain.version_facts import ContractFacts, VerifierFacts, VerifyAction, VerifyResult
from modelversioning.domain.version_plan import decide
from modelversioning.handlers.contract import accepted_signature_digest, contract_facts
from modelversioning.handlers.store import Store
from test_version_plan import NOW, OK, POLICY, SHA, c, facts, unverified

X4 = {
    "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "FP32"}],
}
X5 = {
    "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 5]}],
    "outputs": [{"name": "y", "dtype": "FP32"}],
}
V100 = Known("1.0.0", IOSignature.of(X4), IOSignature.of(X4).digest())


def fresh(version="1.1.0", declared=X4, known=(V100,), **kw):
    """A new version whose verification just finished."""
    return facts(
        version=version,
        status=unverified(),
        verifier=VerifierFacts(result=OK, result_generation=1),
        contract=ContractFacts(declared=declared, known=tuple(known), **kw),
    )


def test_a_minor_with_the_same_signature_is_verified_and_says_it_was_checked():
    plan = decide(fresh(), POLICY, NOW)
    v = c(plan, "ArtifactVerified")
    assert v["status"] == "True" and v["reason"] == R.VERIFIED
    assert "I/O contract: same inputs/outputs as 1.0.0" in v["message"]
    rec = plan.status["ioSignature"]
    assert rec["source"] == "spec.signature" and rec["digest"] == V100.digest
    assert rec["contract"] == {
        "reason": R.IO_SIGNATURE_CHECKED,
        "message": rec["contract"]["message"],
        "baseline": "1.0.0",
    }


def test_a_minor_with_a_changed_input_is_refused_with_the_tensor_named():
    plan = decide(fresh(declared=X5), POLICY, NOW)
    for t in ("ArtifactVerified", "Ready"):
        cond = c(plan, t)
        assert (cond["status"], cond["reason"]) == ("False", R.IO_SIGNATURE_CHANGED)
        assert "input 'x' shape [-1, 4] -> [-1, 5]" in cond["message"]
    assert ("Warning", R.IO_SIGNATURE_CHANGED) in [(e.type, e.reason) for e in plan.events]
    assert R.IO_SIGNATURE_CHANGED in NO_SLOT_REASONS  # the endpoint makes no Deployment for it
    assert plan.status["stage"] == "candidate"
    assert plan.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_CHANGED


def test_a_major_may_change_the_signature():
    plan = decide(fresh(version="2.0.0", declared=X5), POLICY, NOW)
    assert c(plan, "ArtifactVerified")["status"] == "True"
    assert plan.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_NOT_CHECKED


def test_a_refused_version_is_not_fetched_again_and_stays_refused():
    first = decide(fresh(declared=X5), POLICY, NOW)
    again = decide(
        facts(version="1.1.0", status=first.status, contract=fresh(declared=X5).contract), POLICY, NOW
    )
    assert again.verify is VerifyAction.NONE
    assert c(again, "ArtifactVerified")["reason"] == R.IO_SIGNATURE_CHANGED
    assert again.events == ()  # said once


def test_a_verdict_is_kept_for_its_signature_when_other_versions_come_later():
    """Accepted and serving: a version registered later (here: a baseline that appears) never refuses it."""
    first = decide(fresh(declared=X5, known=()), POLICY, NOW)
    assert first.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_NOT_CHECKED
    checked = decide(fresh(), POLICY, NOW)
    later = facts(version="1.1.0", status=checked.status, contract=ContractFacts(declared=X4, known=()))
    assert decide(later, POLICY, NOW).status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_CHECKED


def test_without_a_signature_it_is_accepted_unless_required():
    plan = decide(fresh(declared=None), POLICY, NOW)
    assert c(plan, "ArtifactVerified")["status"] == "True"
    assert "I/O contract" not in c(plan, "ArtifactVerified")["message"]  # status.ioSignature says it
    assert plan.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_NOT_CHECKED
    required = decide(fresh(declared=None, require=True, required_by="Model m: x"), POLICY, NOW)
    v = c(required, "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("False", R.IO_SIGNATURE_MISSING) and "Model m: x" in v["message"]


def test_a_version_waits_for_its_baseline_being_verified():
    plan = decide(fresh(declared=X5, known=(Known("1.0.0", pending=True),)), POLICY, NOW)
    v = c(plan, "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("Unknown", R.IO_CONTRACT_PENDING)
    assert plan.requeue_after == CONTRACT_RECHECK_SECONDS


def test_the_artifacts_mlmodel_signature_wins_and_a_contradicting_spec_is_noted():
    found = {"source": "artifact MLmodel", **X5}
    res = VerifyResult(R.VERIFIED, "sha256 matches", transient=False, actual=SHA, io_signature=found)
    f = fresh(declared=X4)
    plan = decide(
        facts(**{**f.__dict__, "verifier": VerifierFacts(result=res, result_generation=1)}), POLICY, NOW
    )
    assert plan.status["artifact"]["ioSignature"] == found
    assert plan.status["ioSignature"]["source"] == "artifact MLmodel"
    v = c(plan, "ArtifactVerified")
    assert v["reason"] == R.IO_SIGNATURE_CHANGED and "spec.signature differs" in v["message"]


def test_an_unverified_version_keeps_its_record():
    st = {**unverified(R.FETCH_FAILED), "ioSignature": {"source": "spec.signature", "digest": "d"}}
    plan = decide(facts(status=st, contract=ContractFacts(declared=X4)), POLICY, NOW)
    assert plan.status["ioSignature"] == st["ioSignature"]


# ---- the registry's memory and the gather step --------------------------------------------------


def _status(reason, digest="d" * 64, **extra):
    return {
        "ioSignature": {
            "source": "spec.signature",
            "digest": digest,
            **X4,
            "contract": {"reason": reason},
            **extra,
        }
    }


def test_the_record_keeps_only_an_accepted_signature_digest_and_never_changes_it():
    assert accepted_signature_digest(_status(R.IO_SIGNATURE_CHECKED)) == "d" * 64
    assert accepted_signature_digest(_status(R.IO_SIGNATURE_CHANGED)) == ""
    view = VersionView("m-v1.0.0", "1.0.0", "u", SHA, "s3://b", "t", "candidate", signature_digest="e" * 64)
    old = [{"version": "1.0.0", "digest": SHA, "firstSeen": "t", "signatureDigest": "d" * 64}]
    assert record(old, [view], NOW)[0]["signatureDigest"] == "d" * 64
    assert record([], [view], NOW)[0]["signatureDigest"] == "e" * 64


def _mv(version, status, deleting=False):
    md = {"name": f"m-v{version}", "namespace": "ns", "resourceVersion": "1"}
    if deleting:
        md["deletionTimestamp"] = "t"
    return {
        "kind": "ModelVersion",
        "metadata": md,
        "spec": {"model": "m", "version": version},
        "status": status,
    }


def test_the_gather_step_reads_accepted_pending_and_deleted_versions():
    store = Store()
    digest = IOSignature.of(X4).digest()
    store.upsert("ModelVersion", _mv("1.0.0", _status(R.IO_SIGNATURE_CHECKED, digest)))
    store.upsert("ModelVersion", _mv("1.1.0", _status(R.IO_SIGNATURE_CHANGED)))  # refused: never a baseline
    store.upsert("ModelVersion", _mv("1.2.0", {}))  # being verified
    store.upsert(
        "ModelVersion", _mv("1.3.0", {"conditions": [{"type": "ArtifactVerified", "status": "False"}]})
    )
    store.upsert("ModelVersion", _mv("1.4.0", _status(R.IO_SIGNATURE_CHECKED, truncated=True)))
    model = {"kind": "Model", "metadata": {"name": "m", "namespace": "ns", "resourceVersion": "1"},
             "spec": {"ioContract": {"requireSignature": True}},
             "status": {"versions": [{"version": "0.9.0", "signatureDigest": "f" * 64},
                                     {"version": "1.0.0", "signatureDigest": "0" * 64}]}}  # fmt: skip
    store.upsert("Model", model)
    spec = ModelVersionSpec.model_validate(_spec("1.5.0", X5))
    got = contract_facts(store, "ns", "m-v1.5.0", spec)
    by = {k.version: k for k in got.known}
    assert set(by) == {"0.9.0", "1.0.0", "1.2.0", "1.4.0"}
    assert by["1.0.0"].signature == IOSignature.of(X4) and by["1.0.0"].digest == digest  # the object wins
    assert by["1.2.0"].pending and by["0.9.0"].digest == "f" * 64 and by["0.9.0"].signature is None
    assert by["1.4.0"].signature is None and by["1.4.0"].digest == "d" * 64  # truncated: its digest only
    assert (
        got.require
        and "requireSignature" in got.required_by
        and IOSignature.of(got.declared) == IOSignature.of(X5)
    )


def _spec(version, signature):
    return {
        "model": "m", "version": version, "artifact": {"uri": "s3://b/m", "sha256": SHA},
        "lineage": {"codeCommit": "abcdef1", "dataset": {"name": "d", "version": "1"}},
        "metrics": {"auc": 0.9}, "runtime": {"image": "img"}, "signature": signature,
    }  # fmt: skip


def test_the_mlmodel_of_a_directory_artifact_is_read_while_it_is_hashed(tmp_path: Path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.pkl").write_bytes(b"weights" * 1000)
    cols = json.dumps([{"name": "a", "type": "double"}])
    (d / "MLmodel").write_text(f"flavors: {{}}\nsignature:\n  inputs: '{cols}'\n  outputs: '{cols}'\n")
    sha = digest_local(d).sha256
    r = verify_artifact(f"file://{d}", sha, policy=ArtifactPolicy(file_roots=[str(tmp_path)]))
    assert r.ok and r.io_signature == {
        "source": "artifact MLmodel",
        "inputs": [{"name": "a", "dtype": "double", "shape": [-1]}],
        "outputs": [{"name": "a", "dtype": "double", "shape": [-1]}],
    }
    assert r.to_dict()["ioSignature"] == r.io_signature  # the worker's answer carries it


def test_a_platform_policy_can_require_a_signature_for_the_namespaces_it_selects():
    policies = [
        (
            "strict",
            {"namespaceSelector": {"matchLabels": {"tier": "prod"}}, "serving": {"requireIOSignature": True}},
        ),
        ("lax", {"namespaceSelector": {}, "serving": {}}),
    ]
    assert floors_for("team-a", {"tier": "prod"}, policies).io_signature_required_by == ("strict",)
    assert floors_for("team-b", {"tier": "dev"}, policies).io_signature_required_by == ()
    store = Store()
    model = {
        "kind": "Model",
        "metadata": {"name": "m", "namespace": "ns", "resourceVersion": "1"},
        "spec": {},
    }
    store.upsert("Model", model)
    spec = ModelVersionSpec.model_validate(_spec("1.0.0", None))
    assert not contract_facts(store, "ns", "m-v1.0.0", spec).require
    got = contract_facts(store, "ns", "m-v1.0.0", spec, Floors(io_signature_required_by=("strict",)))
    assert got.require and got.required_by == "ModelPlatformPolicy strict: spec.serving.requireIOSignature"


def _again(version, status, known):
    """The same version reconciled again, its status as written before, the registry now ``known``."""
    return facts(version=version, status=status, contract=ContractFacts(declared=X4, known=tuple(known)))


def test_a_version_accepted_without_a_baseline_keeps_its_verdict_when_a_lower_one_comes():
    """1.1.0 accepted (not checked: no baseline yet) and serving; 1.0.5 registered later, then accepted
    with another signature: 1.1.0 never waits for it, nor loses its slot."""
    first = decide(fresh(version="1.1.0", declared=X4, known=()), POLICY, NOW)
    assert first.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_NOT_CHECKED
    pending = decide(_again("1.1.0", first.status, [Known("1.0.5", pending=True)]), POLICY, NOW)
    v = c(pending, "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("True", R.VERIFIED)
    k = Known("1.0.5", IOSignature.of(X5), IOSignature.of(X5).digest())
    after = decide(_again("1.1.0", pending.status, [k]), POLICY, NOW)
    v = c(after, "ArtifactVerified")
    assert (v["status"], v["reason"]) == ("True", R.VERIFIED) and v["reason"] not in NO_SLOT_REASONS
    assert after.status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_NOT_CHECKED


def test_a_kept_verdict_is_for_its_signature_only():
    first = decide(fresh(version="1.1.0", declared=X4, known=()), POLICY, NOW)
    k = Known("1.0.5", IOSignature.of(X5), IOSignature.of(X5).digest())
    other = facts(version="1.1.0", status=first.status, contract=ContractFacts(declared=X5, known=(k,)))
    assert decide(other, POLICY, NOW).status["ioSignature"]["contract"]["reason"] == R.IO_SIGNATURE_CHECKED


def _at(body, created):
    body["metadata"]["creationTimestamp"] = created
    return body


def test_the_gather_step_offers_only_versions_registered_no_later_than_this_one():
    store = Store()
    d4, d5 = IOSignature.of(X4).digest(), IOSignature.of(X5).digest()
    store.upsert(
        "ModelVersion", _at(_mv("1.0.0", _status(R.IO_SIGNATURE_CHECKED, d4)), "2026-01-01T00:00:00Z")
    )
    store.upsert("ModelVersion", _at(_mv("1.1.0", {}), "2026-01-02T00:00:00Z"))
    store.upsert("ModelVersion", _at(_mv("1.0.5", {}), "2026-01-03T00:00:00Z"))  # lower, registered later
    store.upsert("ModelVersion", _at(_mv("1.0.7", {}), "2026-01-02T00:00:00Z"))  # the same second: together
    model = {"kind": "Model", "metadata": {"name": "m", "namespace": "ns", "resourceVersion": "1"},
             "status": {"versions": [
                 {"version": "1.0.6", "signatureDigest": d5, "firstSeen": "2026-01-04T00:00:00Z"},  # gone
                 {"version": "1.0.1", "signatureDigest": d4, "firstSeen": "2025-12-31T00:00:00Z"},  # gone
                 {"version": "1.0.5", "firstSeen": "2026-01-01T12:00:00Z"},  # the memory wins
             ]}}  # fmt: skip
    store.upsert("Model", model)
    got = contract_facts(store, "ns", "m-v1.1.0", ModelVersionSpec.model_validate(_spec("1.1.0", X4)))
    assert {k.version for k in got.known} == {"1.0.0", "1.0.1", "1.0.5", "1.0.7"}
    model["status"]["versions"].pop()  # without the memory: 1.0.5's creationTimestamp, a day later
    store.upsert("Model", {**model, "metadata": {**model["metadata"], "resourceVersion": "2"}})
    got = contract_facts(store, "ns", "m-v1.1.0", ModelVersionSpec.model_validate(_spec("1.1.0", X4)))
    assert {k.version for k in got.known} == {"1.0.0", "1.0.1", "1.0.7"}
    lower = contract_facts(store, "ns", "m-v1.0.5", ModelVersionSpec.model_validate(_spec("1.0.5", X5)))
    assert {"1.0.0", "1.1.0"} <= {k.version for k in lower.known}  # 1.1.0 is higher: never its baseline
    assert decide_contract("1.0.5", IOSignature.of(X5), lower.known).baseline == "1.0.1"
    model["status"]["versions"].append({"version": "1.1.0", "firstSeen": "2026-01-05T00:00:00Z"})
    store.upsert("Model", {**model, "metadata": {**model["metadata"], "resourceVersion": "3"}})
    got = contract_facts(store, "ns", "m-v1.1.0", ModelVersionSpec.model_validate(_spec("1.1.0", X4)))
    assert {k.version for k in got.known} == {"1.0.0", "1.0.1", "1.0.5", "1.0.6", "1.0.7"}  # its memory


@pytest.mark.parametrize(
    ("theirs", "mine", "offered"),
    [
        ("2026-10-01T12:00:00Z", "2026-10-01T12:00:01Z", True),  # registered before: a baseline
        ("2026-10-01T12:00:00Z", "2026-10-01T12:00:00Z", True),  # the same second: applied together
        ("2026-10-01T12:00:01Z", "2026-10-01T12:00:00Z", False),  # registered later: never its baseline
        ("2026-10-01T14:00:00+02:00", "2026-10-01T12:00:00Z", True),  # the same instant, another zone
        (None, "2026-10-01T12:00:00Z", True),  # an unknown time on either side: compared, as before
        ("2026-10-01T12:00:01Z", "", True),
        ("not a time", "2026-10-01T12:00:00Z", True),
    ],
)
def test_a_version_registered_later_is_never_the_baseline(theirs: str, mine: str, offered: bool) -> None:
    assert registered_before(theirs, mine) is offered
