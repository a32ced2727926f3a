"""The registry on the real control plane: a Model's memory refuses a re-registered version number;
versions past candidate and the memory itself are not deleted unless the Model's policy allows it
(the chart's admission policies; namespace deletion still works) and a version's serving periods stay
in its lineage; a five-stage model's approval gate cannot be forged (the chart's admission policy on
ModelApprovals, users impersonated); a metric gate refuses a worse candidate with the numbers; and
retention with the test clock archives and deletes artifacts (versitygw and file://) while keeping the
two previous production versions, anything referenced, and every ModelVersion object."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from admission import as_user, grant_models_editor
from helpers import Objects, condition, make_artifact, model_endpoint, model_version, wait_for
from s3server import S3Server

GROUP, VERSION = "modelversioning.io", "v1alpha1"
KM = Path(sys.executable).parent / "kubectl-models"


def km(
    cluster: Any, namespace: str, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl models ...` as a subprocess (the installed console script): as the harness user, or with
    a bearer ``token`` (another identity the API server authenticates)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"COLUMNS": "250"}
    kubeconfig = str(cluster.kubeconfig)
    if token is not None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        cfg["users"] = [{"name": "token-user", "user": {"token": token}}]
        for c in cfg["contexts"]:
            c["context"]["user"] = "token-user"
        path = Path(kubeconfig).with_name(f"kubeconfig-{hashlib.sha256(token.encode()).hexdigest()[:8]}")
        path.write_text(yaml.safe_dump(cfg))
        kubeconfig = str(path)
    cmd = [str(KM), "--kubeconfig", kubeconfig, "-n", namespace, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def service_account_token(objs: Objects, name: str) -> str:
    """A ServiceAccount ``name`` in the namespace and a short-lived token for it (TokenRequest)."""
    objs.core.create_namespaced_service_account(
        objs.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    return str(objs.core.create_namespaced_service_account_token(name, objs.ns, req).status.token)


def create_model(objs: Objects, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name}, "spec": spec}
    return dict(objs.co.create_namespaced_custom_object(GROUP, VERSION, objs.ns, "models", body))


def get_model(objs: Objects, name: str) -> dict[str, Any]:
    return dict(objs.co.get_namespaced_custom_object(GROUP, VERSION, objs.ns, "models", name))


def record(objs: Objects, model: str, version: str) -> dict[str, Any] | None:
    for r in (get_model(objs, model).get("status") or {}).get("versions") or []:
        if r["version"] == version:
            return dict(r)
    return None


def stage_of(objs: Objects, name: str) -> str | None:
    return (objs.mv(name).get("status") or {}).get("stage")


def cond_reason(objs: Objects, name: str, type_: str) -> tuple[str, str, str] | None:
    c = condition(objs.mv(name), type_)
    return (c["status"], c["reason"], c.get("message", "")) if c else None


def wait_stage(objs: Objects, name: str, stage: str, timeout: float = 60) -> None:
    wait_for(lambda: stage_of(objs, name) == stage, timeout, f"{name} in {stage}")


def approval(
    model: str, version: str, sha: str, stage: str, approver: str, name: str, served: str
) -> dict[str, Any]:
    spec = {"model": model, "version": version, "sha256": sha, "servingDigest": served, "stage": stage}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelApproval",
        "metadata": {"name": name},
        "spec": {**spec, "approver": approver},
    }


def approve_as(api: Any, namespace: str, body: dict[str, Any]) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelapprovals", body)


def refused(fn: Any) -> str:
    with pytest.raises(ApiException) as e:
        fn()
    assert e.value.status in (403, 422), e.value
    return str(json.loads(e.value.body or "{}").get("message", e.value.body))


def test_delete_and_re_register_is_refused(
    kube: Any, namespace: str, operator: Any, artifact_root: Path
) -> None:
    objs = Objects(kube, namespace)
    # the policy lets users delete versions past candidate (the default refuses: see the next test)
    create_model(objs, "fraud", {"deletionPolicy": {"allowPastCandidate": True}})
    uri, sha = make_artifact(artifact_root, f"{namespace}-fraud", "1.0.0", b"the real weights\n")
    objs.create(model_version("fraud", "1.0.0", uri, sha, stage="production"))
    wait_stage(objs, "fraud-v1.0.0", "production")
    wait_for(lambda: (record(objs, "fraud", "1.0.0") or {}).get("digest") == sha, 30, "1.0.0 recorded")

    objs.delete_mv("fraud-v1.0.0")
    wait_for(
        lambda: (record(objs, "fraud", "1.0.0") or {}).get("removedAt"), 30, "record marks 1.0.0 deleted"
    )

    # the same number, other weights, asking for production at once
    uri2, sha2 = make_artifact(artifact_root, f"{namespace}-fraud", "1.0.0-other", b"other weights\n")
    objs.create(model_version("fraud", "1.0.0", uri2, sha2, stage="production"))
    refused = wait_for(
        lambda: (
            (c := cond_reason(objs, "fraud-v1.0.0", "ArtifactVerified")) and c[1] == "VersionReused" and c
        ),
        30,
        "the re-registered 1.0.0 refused",
    )
    assert refused[0] == "False" and sha[:12] in refused[2] and sha2[:12] in refused[2]
    mv = objs.mv("fraud-v1.0.0")
    assert mv["status"]["stage"] == "candidate" and "artifact" not in mv["status"]
    assert condition(mv, "Ready")["status"] == "False"
    warnings = wait_for(
        lambda: [e for e in objs.events("fraud-v1.0.0") if e.reason == "VersionReused"], 10, "a Warning Event"
    )
    assert warnings[0].type == "Warning" and sha2[:12] in warnings[0].message
    rec = record(objs, "fraud", "1.0.0")
    assert rec is not None and rec["digest"] == sha  # the memory keeps the first digest
    # an endpoint pinning it never gets it: not verified means not eligible
    objs.create(model_endpoint("fraud", "fraud", [{"name": "main", "version": "1.0.0", "weight": 100}]))

    def variant_reason() -> str | None:
        vs = (objs.mep("fraud").get("status") or {}).get("variants") or []
        return vs[0].get("reason") if vs else None

    assert wait_for(variant_reason, 30, "endpoint variant decided") == "ArtifactNotVerified"
    # a new generation (which re-checks other failures) keeps the refusal
    gen = objs.patch_mv("fraud-v1.0.0", {"spec": {"description": "touch"}})["metadata"]["generation"]
    wait_for(lambda: objs.mv("fraud-v1.0.0")["status"].get("observedGeneration") == gen, 30, "reconciled")
    assert cond_reason(objs, "fraud-v1.0.0", "ArtifactVerified")[1] == "VersionReused"


def test_without_a_model_object_a_version_number_still_means_the_same_weights_forever(
    kube: Any, namespace: str, operator: Any, artifact_root: Path
) -> None:
    """Issue 24.1: no Model object created by anyone. `forever` 1.2.3 verifies, is deleted and is
    registered again with other weights: refused as VersionReused and never served (as landed: it
    verified and became Ready, the registry's memory living only in an optional Model)."""
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, f"{namespace}-forever", "1.2.3", b"the first weights\n")
    objs.create(model_version("forever", "1.2.3", uri, sha, stage="candidate"))
    verified = lambda: (cond_reason(objs, "forever-v1.2.3", "ArtifactVerified") or ())[:2]  # noqa: E731
    wait_for(lambda: verified() == ("True", "Verified"), 60, "1.2.3 verified (once the record holds it)")

    def the_record() -> dict[str, Any] | None:
        try:
            return get_model(objs, "forever")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    model = wait_for(the_record, 30, "the operator's record of `forever`")
    assert (model["metadata"].get("annotations") or {}).get("modelversioning.io/created-by") == "operator"
    wait_for(lambda: (record(objs, "forever", "1.2.3") or {}).get("digest") == sha, 30, "1.2.3 recorded")
    objs.delete_mv("forever-v1.2.3")
    wait_for(lambda: (record(objs, "forever", "1.2.3") or {}).get("removedAt"), 30, "the record keeps it")

    uri2, sha2 = make_artifact(artifact_root, f"{namespace}-forever", "1.2.3-other", b"other weights\n")
    objs.create(model_version("forever", "1.2.3", uri2, sha2, stage="candidate"))
    refused = wait_for(
        lambda: (
            (c := cond_reason(objs, "forever-v1.2.3", "ArtifactVerified")) and c[1] == "VersionReused" and c
        ),
        60,
        "the re-registered 1.2.3 refused",
    )
    assert refused[0] == "False" and sha[:12] in refused[2], refused
    objs.create(
        model_endpoint("forever", "forever", [{"name": "main", "version": "1.2.3", "weight": 100}],
                       requiredStage="candidate")
    )  # fmt: skip

    def variant_reason() -> str | None:
        vs = (objs.mep("forever").get("status") or {}).get("variants") or []
        return vs[0].get("reason") if vs else None

    assert wait_for(variant_reason, 30, "endpoint variant decided") == "ArtifactNotVerified"
    assert not objs.apps.list_namespaced_deployment(objs.ns).items  # no slot for reused weights


PROTECTED = "modelversioning.io/deletion-protected"


def marked(objs: Objects, name: str) -> str | None:
    return (objs.mv(name)["metadata"].get("annotations") or {}).get(PROTECTED)


def test_versions_past_candidate_and_the_memory_are_kept_unless_the_policy_allows(
    cluster: Any, kube: Any, namespace: str, operator: Any, artifact_root: Path
) -> None:
    objs = Objects(kube, namespace)
    create_model(objs, "guard", {})
    for v, stage in (("1.0.0", "production"), ("2.0.0", "production"), ("3.0.0", "candidate")):
        uri, sha = make_artifact(artifact_root, f"{namespace}-guard", v)
        objs.create(model_version("guard", v, uri, sha, stage=stage))
    policy = "Model guard: spec.deletionPolicy.allowPastCandidate is false"
    for v in ("1.0.0", "2.0.0"):
        wait_stage(objs, f"guard-v{v}", "production")
        assert marked(objs, f"guard-v{v}") == policy  # written before the status showed the stage
    wait_for(lambda: cond_reason(objs, "guard-v3.0.0", "Ready"), 30, "3.0.0 reconciled")
    assert stage_of(objs, "guard-v3.0.0") == "candidate" and marked(objs, "guard-v3.0.0") is None

    # served as stable, then swapped out: the period stays in its status and its lineage
    objs.create(
        model_endpoint(
            "guard", "guard", [{"name": "stable", "version": "1.0.0", "weight": 100}], router="none"
        )
    )

    def periods() -> list[dict[str, Any]]:
        return list(objs.mv("guard-v1.0.0")["status"].get("servingHistory") or [])

    wait_for(lambda: [p["variant"] for p in periods() if "to" not in p] == ["stable"], 90, "1.0.0 serving")
    objs.patch_mep("guard", {"spec": {"variants": [{"name": "stable", "version": "2.0.0", "weight": 100}]}})
    wait_for(lambda: periods() and all("to" in p for p in periods()), 90, "1.0.0 swapped out")
    story = json.loads(km(cluster, namespace, "lineage", "guard", "1.0.0", "-o", "json").stdout)
    served = [e for e in story["endpoints"] if e["what"] == "served by variant stable"]
    assert len(served) == 1 and served[0]["until"] not in ("now", None), story["endpoints"]
    assert served[0]["at"] < served[0]["until"] or served[0]["at"] == served[0]["until"]
    objs.delete_mep("guard")
    wait_for(lambda: not objs.mv("guard-v1.0.0")["metadata"].get("finalizers"), 60, "no longer in use")

    # nobody deletes a protected version: not the harness user (an operator here), nor an editor
    msg = refused(lambda: objs.delete_mv("guard-v1.0.0"))
    assert policy in msg and "archived is the normal end state" in msg, msg
    grant_models_editor(cluster, namespace, "mallory@example.com")
    mallory = client.CustomObjectsApi(as_user(kube, "mallory@example.com"))
    mv_path = (GROUP, VERSION, namespace, "modelversions")
    assert policy in refused(lambda: mallory.delete_namespaced_custom_object(*mv_path, "guard-v1.0.0"))
    # ... nor takes the mark off, nor hangs it on an owner to delete it through the garbage collector
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object(
            *mv_path, "guard-v1.0.0", {"metadata": {"annotations": {PROTECTED: None}}}
        )
    )
    assert "written by the modelversioning operator only" in msg, msg
    owner = objs.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object(
            *mv_path, "guard-v1.0.0", {"metadata": {"ownerReferences": [ref]}}
        )
    )
    assert "ownerReferences of a deletion-protected ModelVersion" in msg, msg
    # ... nor deletes the collection; a candidate may go (its record stays)
    refused(lambda: objs.co.delete_collection_namespaced_custom_object(*mv_path))
    assert marked(objs, "guard-v1.0.0") == policy and marked(objs, "guard-v2.0.0") == policy
    try:  # the collection's deletion may have taken it already (each item is admitted on its own)
        mallory.delete_namespaced_custom_object(*mv_path, "guard-v3.0.0")
    except ApiException as e:
        assert e.status == 404, e
    wait_for(lambda: (record(objs, "guard", "3.0.0") or {}).get("removedAt"), 30, "3.0.0's record kept")

    # the Model's memory is not deleted while it holds records ...
    msg = refused(
        lambda: objs.co.delete_namespaced_custom_object(GROUP, VERSION, namespace, "models", "guard")
    )
    assert "remembers 3 versions" in msg and "spec.deletionPolicy.allowModelDeletion" in msg, msg

    # the policy allows it: the marks go, the version may be deleted, its record stays
    objs.co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "models",
        "guard",
        {"spec": {"deletionPolicy": {"allowPastCandidate": True}}},
    )
    wait_for(lambda: marked(objs, "guard-v1.0.0") is None, 30, "the mark removed")
    objs.delete_mv("guard-v1.0.0")
    wait_for(lambda: (record(objs, "guard", "1.0.0") or {}).get("removedAt"), 30, "1.0.0's record kept")
    # ... and a Model whose policy allows it may be deleted with its memory
    create_model(objs, "scratch", {"deletionPolicy": {"allowModelDeletion": True}})
    uri, sha = make_artifact(artifact_root, f"{namespace}-scratch", "0.1.0")
    objs.create(model_version("scratch", "0.1.0", uri, sha))
    wait_for(lambda: record(objs, "scratch", "0.1.0"), 30, "scratch remembers 0.1.0")
    objs.co.delete_namespaced_custom_object(GROUP, VERSION, namespace, "models", "scratch")

    # deleting the namespace is never refused: a protected version and a Model with records go too
    objs.co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "models",
        "guard",
        {"spec": {"deletionPolicy": {"allowPastCandidate": False}}},
    )
    wait_for(lambda: marked(objs, "guard-v2.0.0") == policy, 30, "2.0.0 marked again")
    objs.core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            objs.core.read_namespace(namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 120, "the namespace deleted")


FIVE = {
    "stages": ["candidate", "validated", "staging", "approved", "production"],
    "transitions": [
        {"from": "candidate", "to": "validated", "lineage": ["codeCommit", "dataset"]},
        {"from": "validated", "to": "staging"},
        {"from": "staging", "to": "approved", "approvals": 2},
        {"from": "approved", "to": "production", "lineage": ["author"]},
        {"from": "production", "to": "staging"},
    ],
}


def grant_approver(objs: Objects, user: str) -> None:
    """RBAC: ``user`` may create ModelApprovals (and read ModelVersions) in the namespace, nothing more."""
    rbac = client.RbacAuthorizationV1Api(objs.api)
    name = f"approver-{hashlib.sha256(user.encode()).hexdigest()[:8]}"
    rbac.create_namespaced_role(
        objs.ns,
        {
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [GROUP], "resources": ["modelapprovals"], "verbs": ["create", "get", "list"]},
                {"apiGroups": [GROUP], "resources": ["modelversions"], "verbs": ["get", "list"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        objs.ns,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def test_five_stage_model_approvals_cannot_be_forged(
    cluster: Any, kube: Any, namespace: str, operator: Any, artifact_root: Path
) -> None:
    objs = Objects(kube, namespace)
    create_model(objs, "credit", FIVE)
    uri, sha = make_artifact(artifact_root, f"{namespace}-credit", "3.0.0")
    objs.create(model_version("credit", "3.0.0", uri, sha, stage="production"))
    name = "credit-v3.0.0"
    blocked = wait_for(
        lambda: (c := cond_reason(objs, name, "StageTransition")) and c[1] == "ApprovalRequired" and c,
        60,
        "the walk to stop at the approval gate",
    )
    assert stage_of(objs, name) == "staging"
    assert "needs 2 distinct approvals" in blocked[2] and "has 0" in blocked[2]
    assert [h["to"] for h in objs.mv(name)["status"]["history"]] == ["candidate", "validated", "staging"]
    served = objs.mv(name)["status"]["servingDigest"]  # what an approval must name to count

    for user in ("alice", "bob", "dave"):
        grant_approver(objs, user)
    alice = client.CustomObjectsApi(as_user(kube, "alice"))
    bob = client.CustomObjectsApi(as_user(kube, "bob"))
    # alice cannot approve as bob: the API server refuses it, whatever her RBAC allows
    with pytest.raises(ApiException) as refused:
        approve_as(alice, namespace, approval("credit", "3.0.0", sha, "approved", "bob", "forged", served))
    assert refused.value.status in (403, 422) and "must be alice" in refused.value.body
    # nor can she change her approval into someone else's later (immutable), nor count twice
    approve_as(alice, namespace, approval("credit", "3.0.0", sha, "approved", "alice", "a1", served))
    approve_as(alice, namespace, approval("credit", "3.0.0", sha, "approved", "alice", "a2", served))
    wait_for(
        lambda: "has 1 (alice)" in cond_reason(objs, name, "StageTransition")[2], 30, "one approver counted"
    )
    assert stage_of(objs, name) == "staging"
    # an approval of other weights does not count
    approve_as(bob, namespace, approval("credit", "3.0.0", "b" * 64, "approved", "bob", "b0", served))
    # carol approves with kubectl models, authenticated by her own token: recorded as who she is
    carol = f"system:serviceaccount:{namespace}:carol"
    grant_approver(objs, carol)
    token = service_account_token(objs, "carol")
    res = km(
        cluster, namespace, "approve", "credit", "3.0.0", "--stage", "approved", "-o", "json", token=token
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["approver"] == carol
    assert json.loads(res.stdout)["servingDigest"] == served
    # recorded as carol, but a ServiceAccount is not a person: it never counts (issue 23, item 5)
    wait_for(
        lambda: "is not a person" in cond_reason(objs, name, "StageTransition")[2], 30, "carol not counted"
    )
    assert stage_of(objs, name) == "staging"
    dave = client.CustomObjectsApi(as_user(kube, "dave"))
    approve_as(dave, namespace, approval("credit", "3.0.0", sha, "approved", "dave", "d1", served))
    wait_stage(objs, name, "production", 30)
    hist = objs.mv(name)["status"]["history"]
    assert [h["to"] for h in hist] == ["candidate", "validated", "staging", "approved", "production"]
    assert next(h for h in hist if h["to"] == "approved")["approvedBy"] == [
        "alice",
        "dave",
    ]  # not bob: other weights; not carol: a ServiceAccount


STANDARD = [
    {"from": "candidate", "to": "staging"},
    {"from": "production", "to": "staging"},
    {"from": "archived", "to": "staging"},
]


def test_metric_gate_refuses_a_worse_candidate(
    cluster: Any, kube: Any, namespace: str, operator: Any, artifact_root: Path
) -> None:
    objs = Objects(kube, namespace)
    gates = ["auc >= production.auc - 0.005", "latency_p99_ms <= 20"]
    create_model(
        objs, "churn", {"transitions": [*STANDARD, {"from": "staging", "to": "production", "metrics": gates}]}
    )

    def mv(version: str, auc: float, latency: float) -> dict[str, Any]:
        uri, sha = make_artifact(artifact_root, f"{namespace}-churn", version)
        return model_version(
            "churn", version, uri, sha, stage="production", metrics={"auc": auc, "latency_p99_ms": latency}
        )

    objs.create(mv("1.0.0", 0.947, 11.5))
    wait_stage(objs, "churn-v1.0.0", "production")  # nothing in production to compare with
    objs.create(mv("1.1.0", 0.941, 11.0))
    objs.create(mv("1.2.0", 0.950, 25.0))
    objs.create(mv("1.3.0", 0.943, 12.0))  # within the margin
    for name, needle in (
        ("churn-v1.1.0", "auc 0.941 < production 0.947 - 0.005 (1.0.0)"),
        ("churn-v1.2.0", "latency_p99_ms 25 > 20"),
    ):
        c = wait_for(
            lambda n=name: (
                (c := cond_reason(objs, n, "StageTransition")) and c[1] == "MetricGateFailed" and c
            ),
            60,
            f"{name} refused by the metric gate",
        )
        assert needle in c[2], c
        assert stage_of(objs, name) == "staging"
        wait_for(  # posted right after the status write
            lambda n=name, x=needle: any(
                e.reason == "StageTransitionBlocked" and x in e.message for e in objs.events(n)
            ),
            10,
            f"a Warning Event on {name} with the numbers",
        )
    wait_stage(objs, "churn-v1.3.0", "production")
    # kubectl models promote says which gate blocked it, with the numbers (exit 1)
    res = km(cluster, namespace, "promote", "churn", "1.1.0", "--to", "production", "--timeout", "30")
    assert res.returncode == 1, res
    assert "MetricGateFailed" in res.stderr and "auc 0.941 < production 0.947 - 0.005" in res.stderr, (
        res.stderr
    )
    found = json.loads(
        km(cluster, namespace, "search", "churn", "--where", "auc>=0.945", "-o", "json").stdout
    )
    assert [(r["version"], r["stage"]) for r in found] == [("1.0.0", "production"), ("1.2.0", "staging")]
    found = km(
        cluster, namespace, "search", "-A", "--stage", "production", "--dataset", "tx@2024-06-30"
    ).stdout
    assert f"{namespace}" in found and "churn" in found and "1.3.0" in found and "1.1.0" not in found
    story = yaml.safe_load(km(cluster, namespace, "lineage", "churn", "1.3.0", "-o", "yaml").stdout)
    assert [h["to"] for h in story["stages"]] == ["candidate", "staging", "production"]
    assert story["producedBy"]["codeCommit"] == "3f9c2a1" and story["registry"]["sameDigest"] is True


# ---- retention -----------------------------------------------------------------------------------


@pytest.fixture
def retention_operator(operator: Any) -> Iterator[Any]:
    """The session operator with the test clock and artifact deletion allowed, for this test only."""
    original = operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg["registry"] = {"testClock": True, "allowArtifactDeletion": True, "retentionCheckSeconds": 5}
    operator.config.write_text(yaml.safe_dump(cfg))
    operator.restart()
    try:
        yield operator
    finally:
        operator.config.write_text(original)
        operator.restart()


def test_retention_archives_and_deletes_artifacts_but_keeps_records(
    kube: Any, namespace: str, retention_operator: Any, artifact_root: Path
) -> None:
    objs = Objects(kube, namespace)
    # retention deletes nothing until the platform names the namespace's storage roots (issue 23)
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPlatformPolicy",
        "metadata": {"name": f"retention-{namespace}"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "retention": {
                "storageRoots": [f"{artifact_root.as_uri()}/{namespace}-ranker/", "s3://models/ranker/"]
            },
        },
    }
    objs.co.create_cluster_custom_object(GROUP, VERSION, "modelplatformpolicies", policy)
    try:
        _retention_story(objs, namespace, artifact_root)
    finally:
        objs.co.delete_cluster_custom_object(
            GROUP, VERSION, "modelplatformpolicies", f"retention-{namespace}"
        )


def _retention_story(objs: Any, namespace: str, artifact_root: Path) -> None:
    with S3Server.start() as s3:
        s3.create_bucket("models")
        objs.core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="s3"), string_data=s3.secret_data())
        )
        create_model(
            objs,
            "ranker",
            {
                "retention": {
                    "archiveAfter": "180d",
                    "deleteArtifactsAfter": "730d",
                    "keepPreviousProduction": 2,
                    "artifactDeletion": "Enabled",
                }
            },
        )
        versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]
        files: dict[str, Path] = {}
        for v in versions:
            if v == "1.1.0":  # on a real S3 server
                data = b"ranker 1.1.0 on s3\n"
                s3.put("models/ranker/1.1.0/model.bin", data)
                body = model_version(
                    "ranker", v, "s3://models/ranker/1.1.0/model.bin", hashlib.sha256(data).hexdigest()
                )
                body["spec"]["artifact"]["secretRef"] = {"name": "s3"}
            else:
                uri, sha = make_artifact(artifact_root, f"{namespace}-ranker", v)
                files[v] = Path(uri.removeprefix("file://"))
                body = model_version("ranker", v, uri, sha)
            objs.create(body)
        # each version in production in turn; the one before goes back to staging
        for prev, v in zip([None, *versions], versions, strict=False):
            objs.patch_mv(f"ranker-v{v}", {"spec": {"stage": "production"}})
            wait_stage(objs, f"ranker-v{v}", "production")
            if prev:
                objs.patch_mv(f"ranker-v{prev}", {"spec": {"stage": "staging"}})
                wait_stage(objs, f"ranker-v{prev}", "staging")
        # 1.2.0 is pinned by an endpoint (weight 0): referenced, never touched
        objs.create(
            model_endpoint(
                "ranker",
                "ranker",
                [
                    {"name": "live", "version": "1.5.0", "weight": 100},
                    {"name": "old", "version": "1.2.0", "weight": 0},
                ],
            )
        )
        wait_for(
            lambda: objs.mv("ranker-v1.2.0")["status"].get("servedBy"), 30, "1.2.0 served by the endpoint"
        )
        wait_for(
            lambda: get_model(objs, "ranker").get("status", {}).get("production") == ["1.5.0"], 30, "memory"
        )

        def at(days: int) -> None:
            now = datetime.now(UTC) + timedelta(days=days)
            ann = {"modelversioning.io/test-clock": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
            objs.co.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "models", "ranker", {"metadata": {"annotations": ann}}
            )

        at(200)
        for v in ("1.0.0", "1.1.0"):
            wait_stage(objs, f"ranker-v{v}", "archived", 30)
            last = objs.mv(f"ranker-v{v}")["status"]["history"][-1]
            assert (
                last["actor"] == "Retention (Model ranker)"
                and "longer than archiveAfter 180d" in last["reason"]
            )
        archive_due = wait_for(
            lambda: [e.message for e in objs.events("ranker") if e.reason == "ArchiveDue"], 10
        )
        assert len(archive_due) == 2 and "ranker-v1.0.0" in archive_due[0] + archive_due[1], archive_due
        for v in ("1.2.0", "1.3.0", "1.4.0"):  # referenced; the two previous production versions
            mv = objs.mv(f"ranker-v{v}")
            assert mv["status"]["stage"] == "staging", v
            assert "modelversioning.io/retention-archive" not in (mv["metadata"].get("annotations") or {}), v
        assert stage_of(objs, "ranker-v1.5.0") == "production"
        assert s3.filesystem().exists("models/ranker/1.1.0/model.bin") and files["1.0.0"].exists()

        at(800)
        for v in ("1.0.0", "1.1.0"):
            c = wait_for(
                lambda v=v: (
                    (c := cond_reason(objs, f"ranker-v{v}", "ArtifactVerified"))
                    and c[1] == "ArtifactDeleted"
                    and c
                ),
                30,
                f"{v}'s artifact deleted",
            )
            assert c[0] == "False"
            mv = objs.mv(f"ranker-v{v}")  # the object and its verified record stay
            assert (
                mv["status"]["stage"] == "archived"
                and mv["status"]["artifact"]["digest"] == mv["spec"]["artifact"]["sha256"]
            )
            deleted = json.loads(mv["metadata"]["annotations"]["modelversioning.io/artifact-deleted"])
            assert deleted["by"] == "Retention (Model ranker)"
            wait_for(
                lambda v=v: (record(objs, "ranker", v) or {}).get("artifact") == "Deleted", 10, "the record"
            )
        assert not s3.filesystem().exists("models/ranker/1.1.0/model.bin")
        assert not files["1.0.0"].exists()
        for v in ("1.2.0", "1.3.0", "1.4.0", "1.5.0"):
            assert files[v].exists(), v
            assert cond_reason(objs, f"ranker-v{v}", "ArtifactVerified")[1] == "Verified"
        deleted_events = wait_for(
            lambda: [e.message for e in objs.events("ranker") if e.reason == "ArtifactDeleted"], 10, "Events"
        )
        assert sorted(m.split()[4] for m in deleted_events) == ["ranker-v1.0.0", "ranker-v1.1.0"], (
            deleted_events
        )
