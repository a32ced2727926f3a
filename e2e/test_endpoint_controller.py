"""ModelEndpoint controller on the real control plane (kwok runs the pods; real Istio and
Gateway API CRDs validate every route the operator writes)."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import (
    Objects,
    cond_is,
    condition,
    make_artifact,
    model_endpoint,
    model_version,
    route_weights,
    vs_weights,
    wait_for,
)


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


def register(objs, root, model, version, stage="production", tamper=False):
    uri, sha = make_artifact(root, model, version)
    if tamper:
        make_artifact(root, model, version, content=b"tampered\n")
    objs.create(model_version(model, version, uri, sha, stage=stage))
    return sha


def effective(objs, name):
    return {v["name"]: v["effectiveWeight"] for v in (objs.mep(name).get("status") or {}).get("variants", [])}


def vs_is(objs, name, weights):
    try:
        return vs_weights(objs.virtualservice(name)) == weights
    except Exception:  # noqa: BLE001 - not created yet
        return False


def test_canary_progression_istio(objs, artifact_root):
    register(objs, artifact_root, "fraud", "2.3.8")
    sha_new = register(objs, artifact_root, "fraud", "2.4.1")
    objs.create(
        model_endpoint(
            "fraud",
            "fraud",
            [
                {"name": "stable", "version": "2.3.8", "weight": 90},
                {"name": "canary", "version": "2.4.1", "weight": 10},
            ],
        )
    )
    wait_for(lambda: vs_is(objs, "fraud", {"stable": 90, "canary": 10}), 90, "VirtualService 90/10")
    ep = wait_for(lambda: (e := objs.mep("fraud")) and cond_is(e, "Ready", "True") and e, 60, "Ready")
    assert ep["status"]["traffic"] == "stable@2.3.8=90,canary@2.4.1=10"
    # one Deployment + Service per variant, owned by the endpoint, available on the fake nodes
    for variant in ("stable", "canary"):
        slot = objs.slot("fraud", variant)
        assert slot.startswith(f"fraud-{variant}-")
        dep = objs.apps.read_namespaced_deployment(slot, objs.ns)
        assert dep.metadata.owner_references[0].kind == "ModelEndpoint"
        assert dep.status.available_replicas == dep.spec.replicas
        objs.core.read_namespaced_service(slot, objs.ns)
    # every destination tags responses with the version that served it
    vs = objs.virtualservice("fraud")
    canary = next(r for r in vs["spec"]["http"][0]["route"] if r["weight"] == 10)
    hdrs = canary["headers"]["response"]["set"]
    assert hdrs["x-model-version"] == "2.4.1" and hdrs["x-endpoint-variant"] == "canary"
    assert sha_new.startswith(hdrs["x-model-sha256"])
    for weights in ({"stable": 50, "canary": 50}, {"stable": 0, "canary": 100}):
        objs.set_weights("fraud", weights)
        wait_for(lambda w=weights: vs_is(objs, "fraud", w), 30, f"VirtualService {weights}")
    wait_for(lambda: effective(objs, "fraud") == {"stable": 0, "canary": 100}, 30, "status effective weights")
    # servedBy on the ModelVersion
    mv = wait_for(
        lambda: (
            (m := objs.mv("fraud-v2.4.1"))
            and m.get("status", {}).get("servedBy")
            and m["status"]["servedBy"][0]["weight"] == 100
            and m
        ),
        30,
        "servedBy",
    )
    assert mv["status"]["servedBy"][0]["endpoint"] == "fraud"


def test_rollback_is_a_weight_edit_and_fast(objs, artifact_root):
    register(objs, artifact_root, "chat", "2.3.8")
    register(objs, artifact_root, "chat", "2.4.1")
    objs.create(
        model_endpoint(
            "chat",
            "chat",
            [
                {"name": "blue", "version": "2.3.8", "weight": 0},
                {"name": "green", "version": "2.4.1", "weight": 100},
            ],
        )
    )
    wait_for(lambda: cond_is(objs.mep("chat"), "Ready", "True"), 90, "Ready")
    blue = objs.slot("chat", "blue")
    dep_before = objs.apps.read_namespaced_deployment(blue, objs.ns)
    assert dep_before.status.available_replicas == 1  # weight 0 stays deployed and warm
    t0 = time.monotonic()
    objs.set_weights("chat", {"blue": 100, "green": 0})
    wait_for(lambda: vs_is(objs, "chat", {"blue": 100, "green": 0}), 60, "rollback", interval=0.02)
    elapsed = time.monotonic() - t0
    # a figure for the record, not an assertion (timings live in bench/)
    print(f"rollback apply -> VirtualService updated: {elapsed * 1000:.0f} ms")
    dep_after = objs.apps.read_namespaced_deployment(blue, objs.ns)
    assert dep_after.metadata.generation == dep_before.metadata.generation  # no redeploy


def test_shadow_mirror_gateway_api(objs, artifact_root):
    register(objs, artifact_root, "fraud", "2.3.8")
    register(
        objs, artifact_root, "fraud", "3.0.0-rc.1", stage="staging"
    )  # one stage lower is fine for a mirror
    objs.create(
        model_endpoint(
            "shadow",
            "fraud",
            [
                {"name": "live", "version": "2.3.8", "weight": 100},
                {"name": "shadow", "version": "3.0.0-rc.1"},
            ],
            router="gatewayAPI",
            mirror={"variant": "shadow", "percent": 25},
        )
    )

    def mirrored():
        rt = objs.httproute("shadow")
        filters = rt["spec"]["rules"][0].get("filters", [])
        return any(f["type"] == "RequestMirror" for f in filters) and rt

    rt = wait_for(mirrored, 90, "HTTPRoute with RequestMirror")
    assert route_weights(rt) == {"live": 100}
    mirror = next(f for f in rt["spec"]["rules"][0]["filters"] if f["type"] == "RequestMirror")
    assert mirror["requestMirror"]["backendRef"]["name"] == objs.slot("shadow", "shadow")
    assert mirror["requestMirror"]["percent"] == 25
    ep = wait_for(lambda: (e := objs.mep("shadow")) and cond_is(e, "Ready", "True") and e, 60, "Ready")
    assert "mirror:shadow@3.0.0-rc.1=25%" in ep["status"]["traffic"]


def test_blue_green_switch_waits_for_green(objs, artifact_root):
    register(objs, artifact_root, "rec", "3.0.0")
    register(objs, artifact_root, "rec", "3.1.0", stage="staging")  # not yet production
    objs.create(
        model_endpoint(
            "rec",
            "rec",
            [
                {"name": "blue", "version": "3.0.0", "weight": 100},
                {"name": "green", "version": "3.1.0", "weight": 0},
            ],
            router="gatewayAPI",
        )
    )
    # green is not eligible (staging): it is deployed, but no route points at it yet
    wait_for(lambda: route_weights(objs.httproute("rec")) == {"blue": 100}, 90, "blue live")
    objs.set_weights("rec", {"blue": 0, "green": 100})
    ep = wait_for(
        lambda: (
            (e := objs.mep("rec"))
            and cond_is(e, "Progressing", "True")
            and e["metadata"]["generation"] == e["status"]["observedGeneration"]
            and {"name": "green", "reason": "StageNotReached"}.items()
            <= next(v for v in e["status"]["variants"] if v["name"] == "green").items()
            and e
        ),
        60,
        "held (green verified, still staging)",
    )
    assert route_weights(objs.httproute("rec")) == {"blue": 100}  # traffic stays on ready blue
    green = next(v for v in ep["status"]["variants"] if v["name"] == "green")
    assert (green["desiredWeight"], green["effectiveWeight"], green["reason"]) == (100, 0, "StageNotReached")
    objs.patch_mv("rec-v3.1.0", {"spec": {"stage": "production"}})
    wait_for(lambda: route_weights(objs.httproute("rec")) == {"blue": 0, "green": 100}, 30, "green live")


def test_unverified_version_holds_weight_zero(objs, artifact_root):
    register(objs, artifact_root, "tamper", "1.0.0")
    register(objs, artifact_root, "tamper", "1.1.0", tamper=True)
    objs.create(
        model_endpoint(
            "tamper",
            "tamper",
            [
                {"name": "stable", "version": "1.0.0", "weight": 80},
                {"name": "canary", "version": "1.1.0", "weight": 20},
            ],
        )
    )
    # the tampered canary never gets a destination, not even at weight 0
    wait_for(lambda: vs_is(objs, "tamper", {"stable": 100}), 90, "canary kept out of the route")
    ep = wait_for(
        lambda: (e := objs.mep("tamper")) and cond_is(e, "Degraded", "True", "DigestMismatch") and e,
        30,
        "Degraded DigestMismatch",
    )
    canary = next(v for v in ep["status"]["variants"] if v["name"] == "canary")
    assert canary["effectiveWeight"] == 0 and canary["artifactVerified"] is False
    assert cond_is(ep, "Ready", "False")


def test_major_version_mix_refused(objs, artifact_root):
    register(objs, artifact_root, "mix", "1.4.0")
    register(objs, artifact_root, "mix", "2.0.0")
    objs.create(
        model_endpoint(
            "mix",
            "mix",
            [
                {"name": "v1", "version": "1.4.0", "weight": 100},
                {"name": "v2", "version": "2.0.0", "weight": 0},
            ],
        )
    )
    wait_for(lambda: vs_is(objs, "mix", {"v1": 100, "v2": 0}), 90, "v1 live")
    objs.set_weights("mix", {"v1": 50, "v2": 50})
    ep = wait_for(
        lambda: (e := objs.mep("mix")) and cond_is(e, "Degraded", "True", "MajorVersionMix") and e,
        30,
        "MajorVersionMix",
    )
    assert "allowMajorVersionMix" in condition(ep, "Degraded")["message"]
    assert vs_weights(objs.virtualservice("mix")) == {"v1": 100, "v2": 0}
    wait_for(lambda: any(e.reason == "MajorVersionMix" for e in objs.events("mix")), 10, "Event")
    objs.patch_mep("mix", {"spec": {"allowMajorVersionMix": True}})
    wait_for(lambda: vs_is(objs, "mix", {"v1": 50, "v2": 50}), 30, "mix allowed")


def _audit_at(event: dict, key: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event[key].replace("Z", "+00:00")).timestamp()


def test_variant_removal_drains_before_delete(objs, artifact_root, kube, cluster):
    from kubernetes import watch

    register(objs, artifact_root, "rm", "1.0.0")
    register(objs, artifact_root, "rm", "1.1.0")
    objs.create(
        model_endpoint(
            "rm",
            "rm",
            [
                {"name": "a", "version": "1.0.0", "weight": 50},
                {"name": "b", "version": "1.1.0", "weight": 50},
            ],
        )
    )
    wait_for(lambda: vs_is(objs, "rm", {"a": 50, "b": 50}), 90, "50/50")
    slot_a, slot_b = objs.slot("rm", "a"), objs.slot("rm", "b")
    # In one etcd, resourceVersions are the global revision: the route update must carry a smaller
    # one than the Deployment's deletion. And it must come at least the grace period (drainSeconds: 1
    # in this operator's settings) earlier: the slot is deleted once the operator's *watch* showed the
    # route without b, never in the reconcile that wrote the route. The times are the API server's
    # (its audit log: the route write's completion, the DELETE's arrival), not this process's watch
    # threads', which a loaded machine delays by up to a second.
    since = objs.virtualservice("rm")["metadata"]["resourceVersion"]
    offset = cluster.audit_offset()
    seen: dict[str, tuple[int, float]] = {}

    def route_left_b() -> None:
        w = watch.Watch()
        for ev in w.stream(
            objs.co.list_namespaced_custom_object, "networking.istio.io", "v1", objs.ns, "virtualservices",
            timeout_seconds=30, resource_version=since,
        ):  # fmt: skip
            if "b" not in vs_weights(ev["object"]):
                seen["route"] = (int(ev["object"]["metadata"]["resourceVersion"]), time.monotonic())
                break
        w.stop()

    def slot_b_deleted() -> None:
        w = watch.Watch()
        for ev in w.stream(
            objs.apps.list_namespaced_deployment, objs.ns, timeout_seconds=30, resource_version=since
        ):
            if ev["type"] == "DELETED" and ev["object"].metadata.name == slot_b:
                seen["delete"] = (int(ev["object"].metadata.resource_version), time.monotonic())
                break
        w.stop()

    threads = [threading.Thread(target=f, daemon=True) for f in (route_left_b, slot_b_deleted)]
    for t in threads:
        t.start()
    time.sleep(1)  # both streams open
    objs.patch_mep("rm", {"spec": {"variants": [{"name": "a", "version": "1.0.0", "weight": 100}]}})
    for t in threads:
        t.join(35)
    assert "route" in seen, "route never stopped pointing at the removed variant"
    assert "delete" in seen, "removed variant's Deployment was not deleted"
    (route_rv, _), (deleted_rv, _) = seen["route"], seen["delete"]
    assert deleted_rv > route_rv
    events = cluster.audit_events(offset)

    def ref(e: dict) -> tuple[str, str, str]:
        o = e.get("objectRef") or {}
        return (str(o.get("resource")), str(o.get("namespace")), str(o.get("name")))

    deletes = [e for e in events if e["verb"] == "delete" and ref(e) == ("deployments", objs.ns, slot_b)]
    assert deletes, "no DELETE of the removed variant's Deployment in the audit log"
    deleted_at = min(_audit_at(e, "requestReceivedTimestamp") for e in deletes)
    route_writes = [
        _audit_at(e, "stageTimestamp")
        for e in events
        if e["verb"] in ("update", "patch") and ref(e) == ("virtualservices", objs.ns, "rm")
        and e.get("stage") == "ResponseComplete" and _audit_at(e, "stageTimestamp") <= deleted_at
    ]  # fmt: skip
    assert route_writes, "no route write before the DELETE in the audit log"
    gap = deleted_at - max(route_writes)
    assert gap >= 0.9, f"deleted {gap:.2f}s after the route changed (API server's times)"
    wait_for(
        lambda: any(e.reason == "SlotDeleted" and slot_b in e.message for e in objs.events("rm")),
        10,
        "SlotDeleted Event",
    )
    assert objs.apps.read_namespaced_deployment(slot_a, objs.ns)


def test_drift_is_repaired(objs, artifact_root):
    register(objs, artifact_root, "drift", "1.0.0")
    register(objs, artifact_root, "drift", "1.1.0")
    objs.create(
        model_endpoint(
            "drift",
            "drift",
            [
                {"name": "a", "version": "1.0.0", "weight": 70},
                {"name": "b", "version": "1.1.0", "weight": 30},
            ],
        )
    )
    wait_for(lambda: vs_is(objs, "drift", {"a": 70, "b": 30}), 90, "70/30")
    vs = objs.virtualservice("drift")
    for r in vs["spec"]["http"][0]["route"]:
        r["weight"] = 100 if r["weight"] == 70 else 0
    objs.co.replace_namespaced_custom_object(
        "networking.istio.io", "v1", objs.ns, "virtualservices", "drift", vs
    )
    wait_for(lambda: vs_is(objs, "drift", {"a": 70, "b": 30}), 30, "hand edit reverted")
    slot_a, slot_b = objs.slot("drift", "a"), objs.slot("drift", "b")
    objs.apps.delete_namespaced_deployment(slot_b, objs.ns)
    wait_for(lambda: objs.apps.read_namespaced_deployment(slot_b, objs.ns), 30, "Deployment recreated")
    objs.apps.patch_namespaced_deployment(slot_a, objs.ns, {"spec": {"replicas": 5}})
    wait_for(
        lambda: objs.apps.read_namespaced_deployment(slot_a, objs.ns).spec.replicas == 1,
        30,
        "replicas restored",
    )


def test_missing_version_leaves_routes_alone(objs, artifact_root):
    register(objs, artifact_root, "miss", "1.0.0")
    objs.create(model_endpoint("miss", "miss", [{"name": "a", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: vs_is(objs, "miss", {"a": 100}), 90, "live")
    objs.patch_mep(
        "miss",
        {
            "spec": {
                "variants": [
                    {"name": "a", "version": "1.0.0", "weight": 50},
                    {"name": "b", "version": "1.9.9", "weight": 50},
                ]
            }
        },
    )
    ep = wait_for(
        lambda: (e := objs.mep("miss")) and cond_is(e, "Degraded", "True", "MissingVersion") and e,
        30,
        "MissingVersion",
    )
    assert "miss-v1.9.9" in condition(ep, "Degraded")["message"]
    assert vs_weights(objs.virtualservice("miss")) == {"a": 100}
    wait_for(lambda: any(e.reason == "MissingVersion" for e in objs.events("miss")), 10, "Event")


def test_operator_restart_mid_change_converges(objs, artifact_root, operator):
    register(objs, artifact_root, "restart", "1.0.0")
    register(objs, artifact_root, "restart", "1.1.0")
    objs.create(
        model_endpoint(
            "restart",
            "restart",
            [
                {"name": "a", "version": "1.0.0", "weight": 90},
                {"name": "b", "version": "1.1.0", "weight": 10},
            ],
        )
    )
    wait_for(lambda: vs_is(objs, "restart", {"a": 90, "b": 10}), 90, "90/10")
    operator.stop()
    try:
        objs.set_weights("restart", {"a": 20, "b": 80})
        # the operator is down: the route keeps its last weights
        assert vs_weights(objs.virtualservice("restart")) == {"a": 90, "b": 10}
    finally:
        operator.start()
    wait_for(lambda: vs_is(objs, "restart", {"a": 20, "b": 80}), 60, "converged after restart")
    wait_for(lambda: cond_is(objs.mep("restart"), "Ready", "True"), 30, "Ready after restart")


def test_disabled_router_gets_condition_and_routes_stay(objs, artifact_root, operator, cluster):
    from operator_proc import OperatorProcess

    register(objs, artifact_root, "gw", "1.0.0")
    objs.create(
        model_endpoint("gw", "gw", [{"name": "a", "version": "1.0.0", "weight": 100}], router="gatewayAPI")
    )
    wait_for(lambda: route_weights(objs.httproute("gw")) == {"a": 100}, 90, "HTTPRoute written")
    operator.stop()  # swap in an operator of a platform that disabled the Gateway API router
    limited = OperatorProcess(
        cluster.kubeconfig,
        settings={
            "artifacts": {"fileRoots": [str(artifact_root)]},
            "serving": {"enabledRouters": ["istio", "none"]},
        },
        namespaces=[objs.ns],
    )
    try:
        limited.start()
        ep = wait_for(
            lambda: (e := objs.mep("gw")) and cond_is(e, "Degraded", "True", "RouterDisabled") and e,
            30,
            "RouterDisabled",
        )
        assert "not enabled" in condition(ep, "Degraded")["message"]
        assert cond_is(ep, "RoutesReady", "False")
        assert route_weights(objs.httproute("gw")) == {"a": 100}  # left alone, not deleted
        wait_for(lambda: any(e.reason == "RouterDisabled" for e in objs.events("gw")), 10, "Event")
    finally:
        limited.stop()
        operator.start()
