"""Issues 23 and 24 on the real control plane (kwok nodes; the chart's admission policies enforced; the
operator as a local process): what a tenant cannot make the operator do with its own rights, and what
an idle retry does not write.

* Retention (issue 23.3): a tenant's Model with ``deleteArtifactsAfter: 0s`` and archived versions
  whose URIs are another namespace's production artifact, or that namespace's whole prefix, deletes
  nothing: the other namespace's bytes are read back from versitygw unchanged (sha256), while the same
  Model's own artifact under its storage root is deleted (retention was on and allowed).
* Approvals (issue 23.5): the person who asked for a stage change cannot approve it.
* Retries (issue 24.2): a version whose artifact store is unreachable, and an endpoint waiting for it,
  are not written to for 60 s while the verification keeps being retried (Events, metric).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from admission import as_user, grant_models_editor
from helpers import GROUP, VERSION, Objects, cond_is, make_artifact, model_endpoint, model_version, wait_for
from modelversioning.artifacts import manifest_digest
from s3server import S3Server
from test_registry_e2e import (
    STANDARD,
    approval,
    approve_as,
    cond_reason,
    create_model,
    get_model,
    grant_approver,
    stage_of,
    wait_stage,
)

POLICIES = "modelplatformpolicies"


# ------------------------------------------------------------------------------------------ retention
@pytest.fixture
def retention_allowed(operator: Any) -> Iterator[Any]:
    """The session operator with artifact deletion allowed and retention looked at every 5 s, for this
    test only (no test clock: deleteArtifactsAfter 0s is due at once)."""
    original = operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg["registry"] = {"allowArtifactDeletion": True, "retentionCheckSeconds": 5}
    operator.config.write_text(yaml.safe_dump(cfg))
    operator.restart()
    try:
        yield operator
    finally:
        operator.config.write_text(original)
        operator.restart()


@contextlib.contextmanager
def storage_roots(objs: Objects, namespaces: list[str], roots: list[str]) -> Iterator[str]:
    """A ModelPlatformPolicy (the platform's, cluster-scoped) naming ``roots`` for ``namespaces``."""
    name = f"roots-{objs.ns}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPlatformPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
                ]
            },
            "retention": {"storageRoots": roots},
        },
    }
    objs.co.create_cluster_custom_object(GROUP, VERSION, POLICIES, body)
    try:
        yield name
    finally:
        objs.co.delete_cluster_custom_object(GROUP, VERSION, POLICIES, name)


def s3_version(model: str, version: str, key: str, sha: str, stage: str) -> dict[str, Any]:
    body = model_version(model, version, f"s3://{key}", sha, stage=stage)
    body["spec"]["artifact"]["secretRef"] = {"name": "s3"}
    return body


def bucket_digests(s3: S3Server, prefix: str) -> dict[str, str]:
    """key -> sha256 of every object under ``prefix``, read back from the S3 server."""
    fs = s3.filesystem()
    return {key: hashlib.sha256(fs.cat_file(key)).hexdigest() for key in sorted(fs.find(prefix))}


def refusals(objs: Objects, model: str) -> dict[str, str]:
    st = get_model(objs, model).get("status") or {}
    return {r["version"]: r["message"] for r in st.get("refusedDeletions") or []}


def refused_both(objs: Objects, why: str) -> dict[str, str] | None:
    """thief's refusedDeletions once versions 1.0.0 and 2.0.0 are both refused saying ``why``."""
    r = refusals(objs, "thief")
    return r if all(why in r.get(v, "") for v in ("1.0.0", "2.0.0")) else None


def refused_events(objs: Objects, name: str) -> list[Any]:
    return [e for e in objs.events(name) if e.reason == "ArtifactDeleteRefused" and e.type == "Warning"]


def reason_of(objs: Objects, name: str, type_: str = "ArtifactVerified") -> str | None:
    c = cond_reason(objs, name, type_)
    return c[1] if c else None


def verified_and_archived(objs: Objects, name: str) -> bool:
    return cond_is(objs.mv(name), "ArtifactVerified", "True") and stage_of(objs, name) == "archived"


def test_a_cross_namespace_retention_attempt_deletes_nothing(  # type: ignore[no-untyped-def]
    kube, namespace, other_namespace, retention_allowed
):
    """Namespace B has a production artifact in S3. The platform's policy gives every tenant the storage
    root s3://models/{namespace}/. Tenant A's own Model deletes archived artifacts at once; A registers
    two archived versions whose URIs are B's artifact and B's whole prefix (both verify: the bytes are
    what A says) and one of its own. A's own artifact is deleted; B's are refused (outside A's root),
    and still refused when the platform's root is the whole bucket (B registered them): status, Events,
    and B's bytes read back from versitygw unchanged."""
    a, b = Objects(kube, namespace), Objects(kube, other_namespace)
    with S3Server.start() as s3, storage_roots(a, [a.ns, b.ns], ["s3://models/{namespace}/"]) as policy:
        s3.create_bucket("models")
        for objs in (a, b):
            objs.core.create_namespaced_secret(
                objs.ns,
                client.V1Secret(metadata=client.V1ObjectMeta(name="s3"), string_data=s3.secret_data()),
            )
        victim, data = f"models/{b.ns}/fraud/1.0.0/model.bin", b"team b's production weights\n"
        s3.put(victim, data)
        sha = hashlib.sha256(data).hexdigest()
        b.create(s3_version("fraud", "1.0.0", victim, sha, "production"))
        wait_stage(b, "fraud-v1.0.0", "production")
        before = bucket_digests(s3, f"models/{b.ns}/")
        assert before == {victim: sha}, before

        retention = {"deleteArtifactsAfter": "0s", "keepPreviousProduction": 0, "artifactDeletion": "Enabled"}
        create_model(a, "thief", {"retention": retention})
        own, own_data = f"models/{a.ns}/thief/0.9.0/model.bin", b"team a's own old weights\n"
        s3.put(own, own_data)
        a.create(s3_version("thief", "0.9.0", own, hashlib.sha256(own_data).hexdigest(), "archived"))
        a.create(s3_version("thief", "1.0.0", victim, sha, "archived"))
        prefix_sha = manifest_digest([("fraud/1.0.0/model.bin", sha)])  # B's prefix: one object
        a.create(s3_version("thief", "2.0.0", f"models/{b.ns}/", prefix_sha, "archived"))
        for v in ("1.0.0", "2.0.0"):
            wait_for(
                lambda v=v: verified_and_archived(a, f"thief-v{v}"), 90, f"thief-v{v} verified, archived"
            )

        # the control: A's own archived artifact, under A's root, is deleted
        wait_for(lambda: reason_of(a, "thief-v0.9.0") == "ArtifactDeleted", 90, "A's own artifact deleted")
        assert not s3.filesystem().exists(own)
        outside = f"not strictly under a storage root of namespace {a.ns}"
        got = wait_for(lambda: refused_both(a, outside), 60, "both refused: outside A's storage root")
        print(f"refused (A's root s3://models/{a.ns}/): {got}")
        for v in ("1.0.0", "2.0.0"):
            wait_for(
                lambda v=v: refused_events(a, f"thief-v{v}"), 30, f"an ArtifactDeleteRefused on thief-v{v}"
            )
        assert bucket_digests(s3, f"models/{b.ns}/") == before

        # the platform widens the root to the whole bucket: B's registered URI still protects its bytes
        wider = {"spec": {"retention": {"storageRoots": ["s3://models/"]}}}
        a.co.patch_cluster_custom_object(GROUP, VERSION, POLICIES, policy, wider)
        theirs = f"{b.ns}/fraud-v1.0.0"
        got = wait_for(lambda: refused_both(a, theirs), 60, f"both refused: they overlap {theirs}")
        print(f"refused (root s3://models/): {got}")
        assert bucket_digests(s3, f"models/{b.ns}/") == before
        for v in ("1.0.0", "2.0.0"):
            assert reason_of(a, f"thief-v{v}") == "Verified", v
        assert cond_is(b.mv("fraud-v1.0.0"), "ArtifactVerified", "True")
        assert stage_of(b, "fraud-v1.0.0") == "production"


# ------------------------------------------------------------------------------------------ approvals
def gate(objs: Objects, name: str, needle: str) -> tuple[str, str, str] | None:
    """The StageTransition condition (status, reason, message) once its reason or message has ``needle``."""
    c = cond_reason(objs, name, "StageTransition")
    return c if c and (needle == c[1] or needle in c[2]) else None


def test_a_self_approval_does_not_count(cluster, kube, namespace, operator, artifact_root):  # type: ignore[no-untyped-def]
    """A Model whose staging -> production hop needs one approval. alice (RBAC to edit ModelVersions
    and create ModelApprovals) asks for production; her own approval is recorded by the API server as
    hers and does not count (the gate says why); bob's does, and the version is promoted."""
    objs = Objects(kube, namespace)
    gated = {"from": "staging", "to": "production", "approvals": 1}
    create_model(objs, "loan", {"transitions": [*STANDARD, gated]})
    uri, sha = make_artifact(artifact_root, f"{namespace}-loan", "1.0.0")
    objs.create(model_version("loan", "1.0.0", uri, sha, stage="staging"))  # lineage.author: jane
    name = "loan-v1.0.0"
    wait_stage(objs, name, "staging")
    grant_models_editor(cluster, namespace, "alice")
    for user in ("alice", "bob"):
        grant_approver(objs, user)
    ann = {"modelversioning.io/requested-by": "alice", "modelversioning.io/requested-stage": "production"}
    Objects(as_user(kube, "alice"), namespace).patch_mv(
        name, {"metadata": {"annotations": ann}, "spec": {"stage": "production"}}
    )
    blocked = wait_for(lambda: gate(objs, name, "ApprovalRequired"), 60, "the approval gate")
    assert "has 0" in blocked[2], blocked
    served = objs.mv(name)["status"]["servingDigest"]

    alice = client.CustomObjectsApi(as_user(kube, "alice"))
    approve_as(alice, namespace, approval("loan", "1.0.0", sha, "production", "alice", "by-alice", served))
    why = "alice (self-approval by the requester)"
    blocked = wait_for(lambda: gate(objs, name, why), 30, "alice's approval seen and not counted")
    print(f"after alice's approval: {blocked}")
    assert blocked[1] == "ApprovalRequired" and "has 0" in blocked[2], blocked
    assert stage_of(objs, name) == "staging"
    recorded = objs.co.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelapprovals", "by-alice")
    assert recorded["spec"]["approver"] == "alice"  # the API server took it as hers: it is not forged

    bob = client.CustomObjectsApi(as_user(kube, "bob"))
    approve_as(bob, namespace, approval("loan", "1.0.0", sha, "production", "bob", "by-bob", served))
    wait_stage(objs, name, "production", 30)
    hop = objs.mv(name)["status"]["history"][-1]
    print(f"the hop: {hop}")
    assert (hop["from"], hop["to"], hop["approvedBy"]) == ("staging", "production", ["bob"]), hop


# ------------------------------------------------------------------------------------------ retries
def resource_versions(objs: Objects, version: str, endpoint: str) -> tuple[str, str]:
    return objs.mv(version)["metadata"]["resourceVersion"], objs.mep(endpoint)["metadata"]["resourceVersion"]


def retry_events(objs: Objects, name: str) -> int:
    """Failed attempts the FetchFailed Warning Events of ``name`` count (a repeat raises an Event's count)."""
    evs = [e for e in objs.events(name) if e.reason == "FetchFailed" and e.type == "Warning"]
    return sum(max(e.count or 1, (e.series.count if e.series else 0) or 0) for e in evs)


def fetch_failures_metric(operator: Any, namespace: str, model: str) -> float:
    """modelversioning_artifact_verifications_total{result="FetchFailed"} of the model (0: none yet)."""
    for line in operator.metrics().splitlines():
        if line.startswith("modelversioning_artifact_verifications_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if labels == {"namespace": namespace, "model": model, "result": "FetchFailed"}:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def settled(objs: Objects, version: str, endpoint: str, quiet: float, timeout: float) -> tuple[str, str]:
    """Both objects' resourceVersions once neither was written for ``quiet`` seconds."""
    last: dict[str, Any] = {"rv": None, "since": time.monotonic()}

    def quiet_now() -> tuple[str, str] | None:
        rv = resource_versions(objs, version, endpoint)
        if rv != last["rv"]:
            last.update(rv=rv, since=time.monotonic())
            return None
        return rv if time.monotonic() - last["since"] >= quiet else None

    return wait_for(quiet_now, timeout, f"no write to either object for {quiet:g}s", interval=0.5)


def slot_available(objs: Objects) -> bool:
    return any(
        (d.status.available_replicas or 0) >= 1 for d in objs.apps.list_namespaced_deployment(objs.ns).items
    )


WINDOW_S = 60.0


def test_an_unreachable_artifact_writes_nothing_while_retries_continue(kube, namespace, operator):  # type: ignore[no-untyped-def]
    """Issue 24.2. A version whose artifact URI is on a loopback port nothing listens on (allowed by the
    harness's URI policy: 127.0.0.0/8), and an endpoint waiting for it. After the first failure (and
    the endpoint's slot, prepared while the operator retries, ready on kwok), neither object is written
    to for 60 s, while the verification is retried every few seconds (verification.retryMaxSeconds: 5):
    the FetchFailed Warning Event's count and the operator's verification metric keep growing."""
    objs = Objects(kube, namespace)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: every connection is refused
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}/far/1.0.0/model.bin"
        objs.create(model_version("far", "1.0.0", uri, "a" * 64, stage="production"))
        objs.create(model_endpoint("far", "far", [{"name": "main", "version": "1.0.0", "weight": 100}]))
        wait_for(lambda: reason_of(objs, "far-v1.0.0") == "FetchFailed", 60, "the first failure")
        print(f"first failure: {cond_reason(objs, 'far-v1.0.0', 'ArtifactVerified')}")
        wait_for(lambda: slot_available(objs), 90, "the endpoint's slot prepared and available (kwok)")
        rv = settled(objs, "far-v1.0.0", "far", quiet=6, timeout=90)  # > retryMaxSeconds: a retry in it
        attempts, metric = retry_events(objs, "far-v1.0.0"), fetch_failures_metric(operator, namespace, "far")
        t0 = time.monotonic()
        seen = {rv}
        while time.monotonic() - t0 < WINDOW_S:
            seen.add(resource_versions(objs, "far-v1.0.0", "far"))
            time.sleep(1)
        attempts_after = retry_events(objs, "far-v1.0.0")
        metric_after = fetch_failures_metric(operator, namespace, "far")
    mv, ep = objs.mv("far-v1.0.0"), objs.mep("far")
    status = cond_reason(objs, "far-v1.0.0", "ArtifactVerified")
    print(
        f"{WINDOW_S:g}s: resourceVersions {sorted(seen)}; failed attempts (Events) {attempts} -> "
        f"{attempts_after}, metric {metric:g} -> {metric_after:g}; ArtifactVerified {status}"
    )
    assert seen == {rv}, f"written while nothing changed: {sorted(seen)} (start {rv})"
    assert (mv["metadata"]["resourceVersion"], ep["metadata"]["resourceVersion"]) == rv
    assert attempts_after - attempts >= 5, (attempts, attempts_after)  # ~12 at one every 5 s
    assert metric_after - metric >= 5, (metric, metric_after)
    assert status is not None and status[:2] == ("False", "FetchFailed"), status
