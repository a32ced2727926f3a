"""Lineage quarantine (issue 28, part 3) on the real thing.

* Real node, real Traefik, real pods: an endpoint serves 1.1.0 (trained on a dataset that turns out to
  be bad) at 100 % and keeps 1.0.0 (another dataset) deployed at 0 %. Under continuous traffic,
  `kubectl models quarantine --dataset NAME@VERSION` moves every request to 1.0.0 with 0 non-2xx
  answers, without writing the endpoint's spec; the quarantined version's promotion is then refused
  (StageTransition=False/Quarantined, `kubectl models promote` exits 1).
* Control plane with RBAC and the chart's admission policies: a tenant (a ServiceAccount token, so the
  CLI runs with its own credentials) that may read ModelVersions everywhere but write them only in its
  own namespace quarantines only there; the other namespace's affected version is untouched; a forged
  `quarantined-by` is refused by the API server; the operator records the tenant as the actor; lifting
  it lets the held promotion through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from admission import as_user, grant_models_editor
from helpers import Objects, cond_is, make_artifact, model_version, wait_for
from images import OPERATOR_IMAGE

pytestmark = pytest.mark.timeout(1800)
BAD = {"name": "tx-labels", "version": "2026-10-01"}
GOOD = {"name": "tx-labels", "version": "2026-09-01"}
OPERATOR_SRC = Path(__file__).resolve().parents[1] / "operator"


def kubectl_models(
    kubeconfig: Path | str, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "modelversioning.cli.kubectl_models", "--kubeconfig", str(kubeconfig), *args]
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_SRC)}  # this checkout's CLI
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


# ------------------------------------------------------------------------------ real node, real traffic
def test_a_dataset_quarantine_moves_traffic_under_load_with_no_errors_and_refuses_its_promotion(  # type: ignore[no-untyped-def]
    dp, objs, cluster
):
    from test_dataplane import Load, ObjectWatch, endpoint, explain, live_on, predict

    for version, dataset in (("1.0.0", GOOD), ("1.1.0", BAD)):
        data = f"q {version} weights\n".encode()
        uri, sha = dp.art.put(f"{objs.ns}/q/{version}/model.bin", data)
        mv = model_version("q", version, uri, sha, stage="staging")
        mv["spec"]["lineage"]["dataset"] = dataset
        mv["spec"]["runtime"] = {"image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"],
                                 "port": 8080, "healthPath": "/healthz"}  # fmt: skip
        objs.create(mv)
    variants = [
        {"name": "canary", "version": "1.1.0", "weight": 100},
        {"name": "stable", "version": "1.0.0", "weight": 0},
    ]
    objs.create(endpoint(dp, "q", "q", variants, requiredStage="staging"))
    wait_for(lambda: cond_is(objs.mep("q"), "Ready", "True"), 300, "1.1.0 live")
    # Ready speaks for the weighted variants only: the stable one at 0 % may still be starting, and
    # until it is eligible, quarantining 1.1.0 would (rightly) close the route instead of moving it
    wait_for(lambda: _eligible(objs.mep("q"), "stable"), 300, "1.0.0 deployed and eligible at 0 %")
    wait_for(lambda: live_on(dp, {"1.1.0": 1}), 60, "1.1.0 answers through Traefik")
    spec_before = objs.mep("q")["spec"]
    dry = kubectl_models(cluster.kubeconfig, "-n", objs.ns, "quarantine", "--dataset", "tx-labels@2026-10-01",
                         "--dry-run", "-o", "json")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    radius = json.loads(dry.stdout)
    print(f"dry run: {radius['versions']} {radius['endpoints']}")
    assert [v["name"] for v in radius["versions"]] == ["q-v1.1.0"]
    assert radius["endpoints"][0]["weightsAfter"] == {"stable": 100} and not radius["endpoints"][0]["closes"]
    assert "quarantined" not in json.dumps(objs.mv("q-v1.1.0")["metadata"].get("annotations") or {})
    with ObjectWatch.route(objs, "q") as route, Load(dp) as load:
        wait_for(lambda: len(load.log) > 20, 30, "load running")
        t0 = time.time()
        why = "e2e: labels leaked into the features"
        done = kubectl_models(cluster.kubeconfig, "-n", objs.ns, "-o", "json", "quarantine", "--dataset",
                              "tx-labels@2026-10-01", "--reason", why, "--timeout", "120")  # fmt: skip
        assert done.returncode == 0, f"{done.stdout}{done.stderr}; {explain(objs, 'q')}"
        print(done.stdout)
        wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers")
        moved_at = route.changes[-1][1]
        time.sleep(3)  # answers after the route change, under load
    codes = Counter(x[1] for x in load.log)
    after = [x for x in load.log if x[0] > moved_at + 1.0]
    took = max(0.0, moved_at - t0) * 1000
    print(f"quarantine: command -> route change {took:.0f} ms; {len(load.log)} answers {dict(codes)}; "
          f"after the change {Counter(x[2] for x in after)}; route {route.changes}")  # fmt: skip
    assert set(codes) == {200}, codes  # 0 non-2xx through the real gateway
    assert after and {x[2] for x in after} == {"1.0.0"}, Counter(x[2] for x in after)
    assert all(r.status == 200 and r.headers.get("x-model-version") == "1.0.0" for r in predict(dp, 20))
    ep = objs.mep("q")
    assert ep["spec"] == spec_before  # the operator wrote no spec: a GitOps self-heal has nothing to undo
    assert ep["status"]["effectiveWeights"] == {"canary": 0, "stable": 100}
    (hit,) = json.loads(done.stdout)["endpoints"]
    assert hit["observed"] == {"canary": 0, "stable": 100}, hit
    change = [(v["name"], v["version"], v["weight"]) for v in hit["gitChange"]["spec"]["variants"]]
    assert change == [("stable", "1.0.0", 100)], hit["gitChange"]  # the Git change that makes it permanent
    st = objs.mv("q-v1.1.0")["status"]
    assert st["quarantine"]["state"] == "Quarantined" and st["quarantine"]["selectors"] == [
        "dataset=tx-labels@2026-10-01"
    ]
    # and its promotion is refused afterwards
    promoted = kubectl_models(cluster.kubeconfig, "-n", objs.ns, "promote", "q", "1.1.0", "--to",
                              "production",
                              "--reason", "e2e: try anyway", "--timeout", "60")  # fmt: skip
    print(f"promote after the quarantine: rc {promoted.returncode}: {promoted.stderr.strip()[:300]}")
    assert promoted.returncode == 1, promoted.stdout + promoted.stderr
    st_cond = condition(objs.mv("q-v1.1.0"), "StageTransition")
    assert (st_cond.get("status"), st_cond.get("reason")) == ("False", "Quarantined"), st_cond
    assert objs.mv("q-v1.1.0")["status"]["stage"] == "staging"


# ------------------------------------------------------------------- control plane: a hostile tenant
def tenant_kubeconfig(cluster: Any, kube: Any, namespace: str, name: str, path: Path) -> tuple[Path, str]:
    """A ServiceAccount's token in a kubeconfig: the CLI runs with that tenant's own credentials."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    req = {"spec": {"expirationSeconds": 3600}}
    token = core.create_namespaced_service_account_token(name, namespace, req).status.token
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ctx = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])["context"]
    cfg["users"] = [{"name": "tenant", "user": {"token": token}}]
    cfg["contexts"] = [
        {"name": "tenant", "context": {"cluster": ctx["cluster"], "user": "tenant", "namespace": namespace}}
    ]
    cfg["current-context"] = "tenant"
    path.write_text(yaml.safe_dump(cfg))
    return path, f"system:serviceaccount:{namespace}:{name}"


def grant_reader_everywhere(cluster: Any, user: str, name: str) -> None:
    """get/list ModelVersions and ModelEndpoints in every namespace (a cluster-wide `view`)."""
    cluster.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": [{"apiGroups": ["modelversioning.io"], "resources": ["modelversions", "modelendpoints"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ])  # fmt: skip
    can_i = ["auth", "can-i", "list", "modelversions.modelversioning.io", "-A", f"--as={user}"]
    wait_for(lambda: cluster.kubectl(*can_i, check=False).stdout.strip() == "yes", 30, "cluster-wide read")


def test_a_tenant_that_can_read_a_namespace_but_not_write_it_quarantines_nothing_there(  # type: ignore[no-untyped-def]
    cluster, kube, namespace, other_namespace, operator, artifact_root, tmp_path
):
    mine, theirs = Objects(kube, namespace), Objects(kube, other_namespace)
    for objs in (mine, theirs):
        uri, sha = make_artifact(artifact_root, f"{objs.ns}-fraud", "2.4.1")
        mv = model_version("fraud", "2.4.1", uri, sha, stage="candidate")
        mv["spec"]["lineage"]["dataset"] = BAD
        objs.create(mv)
    for objs in (mine, theirs):
        wait_for(lambda o=objs: cond_is(o.mv("fraud-v2.4.1"), "ArtifactVerified", "True"), 60, "verified")
    kubeconfig, user = tenant_kubeconfig(cluster, kube, namespace, "tenant", tmp_path / "tenant.kubeconfig")
    grant_reader_everywhere(cluster, user, f"quarantine-reader-{namespace}")
    grant_models_editor(cluster, namespace, user)

    r = kubectl_models(kubeconfig, "quarantine", "--dataset", "tx-labels@2026-10-01", "-A",
                       "--reason", "e2e: leak", "--no-wait", "-o", "json")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    print(f"tenant's quarantine: written {out['written']}, skipped {out['skippedNamespaces']}")
    assert out["written"] == [f"{namespace}/fraud-v2.4.1"]
    assert set(out["skippedNamespaces"]) == {other_namespace}
    assert "quarantined" not in json.dumps(theirs.mv("fraud-v2.4.1")["metadata"].get("annotations") or {})
    ann = mine.mv("fraud-v2.4.1")["metadata"]["annotations"]
    assert ann["modelversioning.io/quarantined-by"] == user
    # the operator records the tenant (admission is enforced: the annotation is an identity)
    wait_for(
        lambda: (mine.mv("fraud-v2.4.1")["status"].get("quarantine") or {}).get("by") == user, 60, "recorded"
    )

    # its own credentials cannot reach the other namespace (RBAC), nor forge the actor (admission)
    tenant_api = client.CustomObjectsApi(as_user(kube, user))
    with pytest.raises(ApiException) as denied:
        tenant_api.patch_namespaced_custom_object(
            "modelversioning.io", "v1alpha1", other_namespace, "modelversions", "fraud-v2.4.1",
            {"metadata": {"annotations": {"modelversioning.io/quarantined": "[]",
                                          "modelversioning.io/quarantined-by": user}}},
        )  # fmt: skip
    assert denied.value.status == 403
    with pytest.raises(ApiException) as forged:
        tenant_api.patch_namespaced_custom_object(
            "modelversioning.io", "v1alpha1", namespace, "modelversions", "fraud-v2.4.1",
            {"metadata": {"annotations": {"modelversioning.io/quarantine-reason": "x",
                                          "modelversioning.io/quarantined-by": "ceo@example.com"}}},
        )  # fmt: skip
    assert forged.value.status in (403, 422) and "quarantined-by" in str(forged.value.body), forged.value.body

    # no promotion while quarantined; the lift lets the held request through
    promoted = kubectl_models(cluster.kubeconfig, "-n", namespace, "promote", "fraud", "2.4.1", "--to",
                              "staging",
                              "--reason", "e2e", "--timeout", "60")  # fmt: skip
    assert promoted.returncode == 1 and "quarantined" in (promoted.stdout + promoted.stderr), promoted.stderr
    lifted = kubectl_models(kubeconfig, "unquarantine", "--dataset", "tx-labels@2026-10-01", "-A",
                            "--reason", "e2e: re-audited")  # fmt: skip
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    wait_for(
        lambda: (mine.mv("fraud-v2.4.1")["status"] or {}).get("stage") == "staging",
        60,
        "promoted after the lift",
    )
    q = mine.mv("fraud-v2.4.1")["status"]["quarantine"]
    assert (q["state"], q["by"], q["reason"]) == ("Lifted", user, "e2e: re-audited"), q
    # a selector that marks nothing: exit 4
    again = kubectl_models(kubeconfig, "unquarantine", "--dataset", "tx-labels@2026-10-01", "--reason", "x")
    assert again.returncode == 4, again.stdout + again.stderr


def _eligible(mep: dict[str, Any], variant: str) -> bool:
    variants = (mep.get("status") or {}).get("variants") or []
    return any(v.get("name") == variant and v.get("eligible") for v in variants)
