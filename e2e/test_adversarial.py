"""Issue 14 on the real control plane: what only the API server can refuse (the chart's
ValidatingAdmissionPolicies, installed by e2e/admission.py from the chart's files) and what the
operator puts into the pods. The list of adversarial cases is tests/adversarial/README.md.

The harness user (``admin``) is "the operator" for the policies (the session operator runs as it);
the attackers here are other users with ordinary RBAC on ModelVersions/ModelEndpoints (and even on
their /status), acting through impersonation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from admission import as_user, grant_models_editor
from helpers import (
    GROUP,
    VERSION,
    Objects,
    cond_is,
    condition,
    make_artifact,
    model_endpoint,
    model_version,
    wait_for,
)

MV = "modelversions"
MEP = "modelendpoints"


def refused(fn: Any) -> str:
    with pytest.raises(ApiException) as e:
        fn()
    assert e.value.status in (403, 422), e.value
    return str(json.loads(e.value.body or "{}").get("message", e.value.body))


@pytest.fixture
def mallory(cluster: Any, kube: client.ApiClient, namespace: str) -> client.CustomObjectsApi:
    """A user with RBAC on ModelVersions, ModelEndpoints and their /status."""
    grant_models_editor(cluster, namespace, "mallory@example.com", status=True)
    return client.CustomObjectsApi(as_user(kube, "mallory@example.com"))


def test_status_is_written_by_the_operator_only(
    cluster: Any, kube: client.ApiClient, namespace: str, mallory: client.CustomObjectsApi, artifact_root: Any
) -> None:
    """Finding 7: anyone granted modelversions/status could write "verified, production"."""
    uri, sha = make_artifact(artifact_root, "forge", "1.0.0")
    Objects(kube, namespace).create(model_version("forge", "1.0.0", uri, sha))
    Objects(kube, namespace).create(
        model_endpoint("forge", "forge", [{"name": "a", "version": "1.0.0", "weight": 100}], router="none")
    )
    forged = {
        "status": {
            "stage": "production",
            "artifact": {"digest": sha, "verifiedAt": "2024-01-01T00:00:00Z"},
            "conditions": [
                {"type": "ArtifactVerified", "status": "True", "reason": "Verified", "message": "trust me",
                 "lastTransitionTime": "2024-01-01T00:00:00Z"},
            ],
        }
    }  # fmt: skip
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, MV, "forge-v1.0.0", forged
        )
    )
    assert "only the modelversioning operator writes modelversions/status" in msg, msg
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, MEP, "forge", {"status": {"effectiveWeights": {"a": 100}}}
        )
    )
    assert "modelendpoints/status" in msg, msg
    # the operator's identity still may (a server-side dry run: nothing changes)
    patch = json.dumps({"status": {"stage": "candidate"}})
    cluster.kubectl("patch", "mv", "forge-v1.0.0", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", patch, "--dry-run=server")  # fmt: skip


def test_in_use_finalizer_is_removed_by_the_operator_only(
    kube: client.ApiClient,
    namespace: str,
    mallory: client.CustomObjectsApi,
    operator: Any,
    artifact_root: Path,
) -> None:
    """Finding 7: anyone with edit on ModelVersions could remove the in-use finalizer and delete a
    version that is serving."""
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "held", "1.0.0")
    objs.create(model_version("held", "1.0.0", uri, sha, stage="production"))
    objs.create(
        model_endpoint("held", "held", [{"name": "a", "version": "1.0.0", "weight": 100}], router="none")
    )
    in_use = "modelversioning.io/in-use"
    wait_for(lambda: in_use in (objs.mv("held-v1.0.0")["metadata"].get("finalizers") or []), 60, "finalizer")
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, MV, "held-v1.0.0", {"metadata": {"finalizers": None}}
        )
    )
    assert "in-use finalizer" in msg, msg
    mallory.delete_namespaced_custom_object(GROUP, VERSION, namespace, MV, "held-v1.0.0")  # allowed: held
    mv = wait_for(
        lambda: (m := objs.mv("held-v1.0.0")) and cond_is(m, "Deleting", "False", "InUse") and m, 60, "held"
    )
    assert mv["metadata"]["deletionTimestamp"] and "modelversioning.io/in-use" in mv["metadata"]["finalizers"]
    objs.delete_mep("held")  # the operator releases it once nothing serves it
    wait_for(lambda: _gone(objs, "held-v1.0.0"), 60, "deleted once no endpoint uses it")


def test_a_version_cannot_be_given_an_owner_that_would_delete_it_past_its_protection(
    kube: client.ApiClient, namespace: str, mallory: client.CustomObjectsApi, artifact_root: Path
) -> None:
    """Issue 23 (low): an ownerReference to an object the author controls, set while the version is a
    candidate, pre-armed its deletion past the deletion protection (the garbage collector is exempt).
    Refused at creation and on any later edit."""
    owner = client.CoreV1Api(kube).create_namespaced_config_map(
        namespace, {"metadata": {"name": "mallorys-owner"}}
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "mallorys-owner", "uid": owner.metadata.uid}
    uri, sha = make_artifact(artifact_root, "owned", "1.0.0")
    mv = model_version("owned", "1.0.0", uri, sha)
    armed = {**mv, "metadata": {**mv["metadata"], "ownerReferences": [ref]}}
    msg = refused(lambda: mallory.create_namespaced_custom_object(GROUP, VERSION, namespace, MV, armed))
    assert "no ownerReferences" in msg, msg
    mallory.create_namespaced_custom_object(GROUP, VERSION, namespace, MV, mv)  # without one: fine
    msg = refused(
        lambda: mallory.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, MV, "owned-v1.0.0", {"metadata": {"ownerReferences": [ref]}}
        )
    )
    assert "no ownerReferences" in msg, msg


def _gone(objs: Objects, name: str) -> bool:
    try:
        objs.mv(name)
    except ApiException as e:
        return e.status == 404
    return False


def test_requested_by_names_the_authenticated_user(
    cluster: Any, kube: client.ApiClient, namespace: str, operator: Any, artifact_root: Path
) -> None:
    """Finding 6: the history's actor was whatever the requested-by annotation said ("ceo@example.com")."""
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "audit", "1.0.0")
    objs.create(model_version("audit", "1.0.0", uri, sha))
    wait_for(lambda: cond_is(objs.mv("audit-v1.0.0"), "ArtifactVerified", "True"), 60, "verified")
    for who in ("bob@example.com", "carol@example.com"):
        grant_models_editor(cluster, namespace, who)
    bob = Objects(as_user(kube, "bob@example.com"), namespace)
    carol = Objects(as_user(kube, "carol@example.com"), namespace)

    def request(as_: Objects, by: str | None, stage: str, **more: Any) -> Any:
        ann = {"modelversioning.io/requested-by": by, "modelversioning.io/requested-stage": stage}
        return as_.patch_mv(
            "audit-v1.0.0", {"metadata": {"annotations": ann}, "spec": {"stage": stage, **more}}
        )

    msg = refused(lambda: request(bob, "ceo@example.com", "staging"))
    assert "must name the user making the change (bob@example.com)" in msg, msg
    request(bob, "bob@example.com", "staging")
    mv = wait_for(
        lambda: (m := objs.mv("audit-v1.0.0")) and m["status"].get("stage") == "staging" and m, 60, "staging"
    )
    assert mv["status"]["history"][-1]["actor"] == "bob@example.com"
    # carol may not act under bob's name (a stale annotation is not a credential) ...
    msg = refused(lambda: carol.patch_mv("audit-v1.0.0", {"spec": {"description": "carol was here"}}))
    assert "carol@example.com" in msg, msg
    # ... she names herself (or removes the annotation)
    request(carol, "carol@example.com", "production")
    mv = wait_for(
        lambda: (m := objs.mv("audit-v1.0.0")) and m["status"].get("stage") == "production" and m, 60, "prod"
    )
    assert mv["status"]["history"][-1]["actor"] == "carol@example.com"
    # a change that touches neither the spec nor the request annotations keeps what is there
    carol.patch_mv("audit-v1.0.0", {"metadata": {"labels": {"team": "risk"}}})
    # the operator's own annotations are the operator's
    msg = refused(lambda: bob.patch_mv("audit-v1.0.0", {"metadata": {"annotations": {
        "modelversioning.io/requested-by": "bob@example.com",
        "modelversioning.io/rollout-promotion": '{"to": "production"}'}}}))  # fmt: skip
    assert "written by the modelversioning operator only" in msg, msg
    # the same on endpoints (kubectl models rollback / rollout annotate them)
    bob.create(
        model_endpoint("audit", "audit", [{"name": "a", "version": "1.0.0", "weight": 100}], router="none")
    )
    forged = {"modelversioning.io/requested-by": "ceo@example.com", "modelversioning.io/rollout-action": "x"}
    msg = refused(lambda: bob.patch_mep("audit", {"metadata": {"annotations": forged}}))
    assert "bob@example.com" in msg


def _token_kubeconfig(cluster: Any, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``sa`` (a token, no impersonation)."""
    cluster.kubectl("create", "serviceaccount", sa, "-n", namespace)
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "e2e", "cluster": {"server": cluster.server,
                                                 "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa", "namespace": namespace}}],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


def test_a_stage_change_names_its_authenticated_requester(
    cluster: Any, kube: client.ApiClient, namespace: str, operator: Any, artifact_root: Path, tmp_path: Path
) -> None:
    """Finding 6, the rest of it: a stage change made without requested-by recorded the field manager,
    which the client chooses (``--field-manager=ceo@example.com`` was recorded as the actor)."""
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "gitops", "1.0.0")
    objs.create(model_version("gitops", "1.0.0", uri, sha))
    wait_for(lambda: cond_is(objs.mv("gitops-v1.0.0"), "ArtifactVerified", "True"), 60, "verified")
    grant_models_editor(cluster, namespace, "mallory@example.com")

    def kubectl_as(user: str, *args: str, input: str | None = None) -> Any:
        return cluster.kubectl(*args, "-n", namespace, f"--as={user}", input=input, check=False)

    def patch_as(user: str, patch: dict[str, Any], *extra: str) -> Any:
        return kubectl_as(
            user, "patch", "mv", "gitops-v1.0.0", "--type=merge", "-p", json.dumps(patch), *extra
        )

    mallory, ceo = "mallory@example.com", "--field-manager=ceo@example.com"
    # a client-chosen name is no identity: refused, with what to do instead
    res = patch_as(mallory, {"spec": {"stage": "staging"}}, ceo)
    assert res.returncode != 0, res.stdout
    assert 'modelversioning.io/requested-by: "mallory@example.com"' in res.stderr, res.stderr
    assert "kubectl models promote sets both" in res.stderr, res.stderr
    applied = json.dumps(model_version("gitops", "1.0.0", uri, sha, stage="staging"))
    res = kubectl_as(mallory, "apply", "--server-side", "--force-conflicts", ceo, "-f", "-", input=applied)
    assert res.returncode != 0 and mallory in res.stderr, res.stderr
    # a stale requested-stage is no request for this stage either
    stale = {"modelversioning.io/requested-by": mallory, "modelversioning.io/requested-stage": "production"}
    res = patch_as(mallory, {"metadata": {"annotations": stale}, "spec": {"stage": "staging"}})
    assert res.returncode != 0 and 'requested-stage: "staging"' in res.stderr, res.stderr
    # named: recorded as mallory whatever the field manager says
    named = {"modelversioning.io/requested-by": mallory}
    res = patch_as(mallory, {"metadata": {"annotations": named}, "spec": {"stage": "staging"}}, ceo)
    assert res.returncode == 0, res.stderr
    mv = wait_for(
        lambda: (m := objs.mv("gitops-v1.0.0")) and m.get("status", {}).get("stage") == "staging" and m,
        60,
        "staging",
    )
    assert mv["status"]["history"][-1]["actor"] == "mallory@example.com"

    # GitOps: the controller applies with its own ServiceAccount; the refusal names it exactly
    sa = f"system:serviceaccount:{namespace}:deployer"
    kubeconfig = _token_kubeconfig(cluster, namespace, "deployer", tmp_path / "deployer.kubeconfig")
    grant_models_editor(cluster, namespace, sa)
    uri2, sha2 = make_artifact(artifact_root, "gitops", "2.0.0")
    manifest = model_version("gitops", "2.0.0", uri2, sha2, stage="staging")
    res = kubectl_as(sa, "apply", "--server-side", "--field-manager=argocd-controller", "-f", "-",
                     input=json.dumps(manifest))  # fmt: skip
    assert res.returncode != 0, res.stdout
    assert "spec.stage candidate -> staging" in res.stderr, res.stderr
    assert f'modelversioning.io/requested-by: "{sa}"' in res.stderr, res.stderr
    manifest["metadata"]["annotations"] = {"modelversioning.io/requested-by": sa}
    res = kubectl_as(sa, "apply", "--server-side", "--field-manager=argocd-controller", "-f", "-",
                     input=json.dumps(manifest))  # fmt: skip
    assert res.returncode == 0, res.stderr
    mv = wait_for(
        lambda: (m := objs.mv("gitops-v2.0.0")) and m.get("status", {}).get("stage") == "staging" and m,
        60,
        "staging",
    )
    assert {h["actor"] for h in mv["status"]["history"]} == {sa}
    # kubectl models promote, authenticated as that ServiceAccount (a token, not impersonation)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    out = subprocess.run(
        [sys.executable, "-m", "modelversioning.cli.kubectl_models", "--kubeconfig", str(kubeconfig),
         "-n", namespace, "promote", "gitops", "2.0.0", "--to", "production", "-o", "json"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [(h["from"], h["to"], h["actor"]) for h in json.loads(out.stdout)["history"]] == [
        ("staging", "production", sa)
    ]


def test_hyperparameters_are_scalars(kube: client.ApiClient, namespace: str) -> None:
    """Finding 9: nested objects and megabyte strings in hyperparameters were stored (the CRD's
    free-scalar schema cannot say otherwise: the spec-limits admission policy does)."""
    co = client.CustomObjectsApi(kube)
    for bad in ({"optimizer": {"name": "adam"}}, {"notes": "x" * 100_000}, {"layers": [1, 2]}):
        mv = model_version("hp", "1.0.0", "s3://b/hp/1.0.0/model.bin", "a" * 64)
        mv["spec"]["lineage"]["hyperparameters"] = bad
        msg = refused(
            lambda mv=mv: co.create_namespaced_custom_object(GROUP, VERSION, namespace, MV, mv, dry_run="All")
        )
        assert "hyperparameters" in msg, msg
    for bad_uri in (
        "https://u:p@models.example.com/m.bin",
        "https://b.s3.amazonaws.com/m.bin?X-Amz-Signature=x",
    ):
        mv = model_version("hp", "1.0.0", bad_uri, "a" * 64)
        msg = refused(
            lambda mv=mv: co.create_namespaced_custom_object(GROUP, VERSION, namespace, MV, mv, dry_run="All")
        )
        assert "credential" in msg, msg


def test_init_container_gets_the_operators_policy_and_refused_uris_get_no_deployment(
    kube: client.ApiClient, namespace: str, operator: Any, artifact_root: Path, tmp_path: Path
) -> None:
    """Finding 5: the init container ran on built-in defaults (every scheme and host, private
    networks allowed) and a Deployment was rendered for a version whose URI was refused."""
    objs = Objects(kube, namespace)
    uri, sha = make_artifact(artifact_root, "pod", "1.0.0")
    objs.create(model_version("pod", "1.0.0", uri, sha, stage="production"))
    objs.create(
        model_version("pod", "2.0.0", "http://169.254.169.254/latest/model.bin", "b" * 64, stage="candidate")
    )
    objs.create(model_endpoint("pod", "pod", [
        {"name": "good", "version": "1.0.0", "weight": 100},
        {"name": "refused", "version": "2.0.0", "weight": 0},
    ], router="none", allowMajorVersionMix=True))  # fmt: skip
    wait_for(lambda: cond_is(objs.mv("pod-v2.0.0"), "ArtifactVerified", "False", "URIRefused"), 60, "refused")
    slot = objs.slot("pod", "good")
    ep = wait_for(
        lambda: (e := objs.mep("pod"))
        and any(v["name"] == "refused" and v.get("reason") for v in e["status"].get("variants") or [])
        and e, 60, "the refused variant reported",
    )  # fmt: skip
    # no Deployment for the refused URI (one prepared while it was still being verified is removed; its
    # pods would have refused the URI too: the init container enforces the same policy)
    wait_for(
        lambda: [d.metadata.name for d in objs.apps.list_namespaced_deployment(namespace).items] == [slot],
        30, "only the good variant's Deployment",
    )  # fmt: skip
    refused_v = next(v for v in ep["status"]["variants"] if v["name"] == "refused")
    assert not refused_v["eligible"] and "URIRefused" in refused_v["message"]

    init = objs.apps.read_namespaced_deployment(slot, namespace).spec.template.spec.init_containers[0]
    args = list(init.args)
    rendered = json.loads(args[args.index("--policy-json") + 1])
    assert rendered["fileRoots"] == [str(artifact_root)]
    assert rendered["allowedPrivateNetworks"] == ["127.0.0.0/8", "10.0.0.0/8"]
    assert rendered["allowPrivateNetworks"] is False
    assert args[args.index("--env-credentials") + 1] == "secret"
    # the init container, run as a process with exactly those arguments: verified under that policy
    args[args.index("--dest") + 1] = str(tmp_path / "models")
    env = {k: v for k, v in os.environ.items() if k != "MODELVERSIONING_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "modelversioning", *args], capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["reason"] == "Verified"
    assert condition(objs.mv("pod-v1.0.0"), "ArtifactVerified")["status"] == "True"


def test_slow_artifacts_of_one_namespace_do_not_stall_another(
    kube: client.ApiClient, namespace: str, operator: Any, artifact_root: Path
) -> None:
    """Finding 1, end to end: two ModelVersions whose server trickles its headers took both verify
    threads; an honest one in another namespace stayed Verifying for 45 s and more."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc":
                if stop.wait(0.5):
                    return
                self.wfile.write(bytes([b]))
                self.wfile.flush()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    noisy = Objects(kube, namespace)
    quiet_ns = f"{namespace}-q"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=quiet_ns)))
    quiet = Objects(kube, quiet_ns)
    try:
        for v in ("1.0.0", "1.0.1"):
            noisy.create(
                model_version("slow", v, f"http://127.0.0.1:{srv.server_address[1]}/m.bin", "c" * 64)
            )
        # busy: one of them holds the namespace's verification worker and says Verifying (the other waits
        # for the worker quietly, up to the operator's QUIET_LIMIT: it says nothing yet)
        slow = ("slow-v1.0.0", "slow-v1.0.1")
        running: list[str] = []

        def busy() -> bool:
            running[:] = [n for n in slow if cond_is(noisy.mv(n), "ArtifactVerified", "Unknown", "Verifying")]
            return bool(running)

        wait_for(busy, 30, "busy")
        uri, sha = make_artifact(artifact_root, "honest", "1.0.0")
        t0 = time.monotonic()
        quiet.create(model_version("honest", "1.0.0", uri, sha))
        wait_for(
            lambda: cond_is(quiet.mv("honest-v1.0.0"), "ArtifactVerified", "True"), 30, "verified meanwhile"
        )
        took = time.monotonic() - t0
        print(
            f"the honest ModelVersion was verified in {took:.2f}s while another namespace's 2 slow ones ran"
        )
        assert cond_is(noisy.mv(running[0]), "ArtifactVerified", "Unknown", "Verifying")  # still stuck
        assert took < 15
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()
        core.delete_namespace(quiet_ns)
