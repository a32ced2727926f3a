"""Serving correctness on the real control plane (kwok runs the pods): a version change never
mutates the pods that take traffic, children are ours alone, and any endpoint name works.

Traffic itself (real requests through a real gateway) is proven in the data-plane tests; here the
API objects the gateway would act on are checked at every step, through the API server.
"""

from __future__ import annotations

import pytest

from helpers import (
    GROUP,
    VERSION,
    Objects,
    cond_is,
    make_artifact,
    model_endpoint,
    model_version,
    vs_weights,
    wait_for,
)


@pytest.fixture
def objs(kube, namespace, operator):
    return Objects(kube, namespace)


def register(objs, root, model, version, stage="production", content=None):
    uri, sha = make_artifact(root, model, version, content=content)
    objs.create(model_version(model, version, uri, sha, stage=stage))
    return sha


def vs_versions(objs, name):
    """x-model-version -> weight of the VirtualService as the API server has it now."""
    vs = objs.virtualservice(name)
    return {
        r["headers"]["response"]["set"]["x-model-version"]: r["weight"]
        for r in vs["spec"]["http"][0]["route"]
    }


def deployments(objs, endpoint_uid):
    return {
        d.metadata.name: d
        for d in objs.apps.list_namespaced_deployment(objs.ns).items
        if any(o.uid == endpoint_uid for o in d.metadata.owner_references or [])
    }


def test_version_edit_of_the_only_variant_keeps_traffic_on_the_verified_pods(objs, artifact_root):
    register(objs, artifact_root, "solo", "2.3.8")
    objs.create(model_endpoint("solo", "solo", [{"name": "stable", "version": "2.3.8", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("solo"), "Ready", "True"), 90, "Ready on 2.3.8")
    uid = objs.mep("solo")["metadata"]["uid"]
    old = objs.slot("solo", "stable")
    template = objs.apps.read_namespaced_deployment(old, objs.ns).spec.template.to_dict()

    # the new version exists but is still a candidate: the user edits the only variant anyway
    register(objs, artifact_root, "solo", "2.4.1", stage="candidate")
    objs.patch_mep("solo", {"spec": {"variants": [{"name": "stable", "version": "2.4.1", "weight": 100}]}})
    wait_for(lambda: len(deployments(objs, uid)) == 2, 60, "a second slot for 2.4.1")
    ep = wait_for(
        lambda: (
            (e := objs.mep("solo"))
            and e["status"].get("observedGeneration") == e["metadata"]["generation"]
            and e["status"]["variants"][0]["reason"] == "StageNotReached"  # verified, still a candidate
            and e
        ),
        60,
        "the edit observed, 2.4.1 verified",
    )
    (v,) = ep["status"]["variants"]
    assert v["serving"]["version"] == "2.3.8" and v["serving"]["slot"] == old
    assert v["reason"] == "StageNotReached" and "traffic stays on 2.3.8" in v["message"]
    assert vs_versions(objs, "solo") == {"2.3.8": 100}
    assert objs.apps.read_namespaced_deployment(old, objs.ns).spec.template.to_dict() == template
    assert cond_is(ep, "Progressing", "True", "RollingOut")

    # promoted (the operator walks candidate -> staging -> production): then, and only then, it moves
    objs.patch_mv("solo-v2.4.1", {"spec": {"stage": "production"}})
    wait_for(lambda: vs_versions(objs, "solo") == {"2.4.1": 100}, 90, "traffic on 2.4.1")
    # the status (written after the route, in the same reconcile) names the new slot
    new = wait_for(lambda: (s := objs.slot("solo", "stable")) != old and s, 30, "status on the new slot")
    assert new != old
    # the old slot goes only after the route that stopped pointing at it was observed (+ drain grace)
    wait_for(lambda: set(deployments(objs, uid)) == {new}, 60, "old slot deleted")
    wait_for(lambda: cond_is(objs.mep("solo"), "Ready", "True"), 30, "Ready on 2.4.1")
    # the Event follows the deletion in the same reconcile, after the status write: wait for it
    wait_for(lambda: any(e.reason == "SlotDeleted" for e in objs.events("solo")), 30, "SlotDeleted Event")


def test_a_foreign_object_with_a_slot_name_is_never_taken_over(objs, artifact_root):
    register(objs, artifact_root, "own", "1.0.0")
    ep = model_endpoint("own", "own", [{"name": "main", "version": "1.0.0", "weight": 100}])
    objs.create(ep)
    slot = objs.slot("own", "main")
    # the endpoint goes, its children stay behind without owner (orphaned): they are not ours any more
    objs.co.delete_namespaced_custom_object(
        GROUP, VERSION, objs.ns, "modelendpoints", "own", propagation_policy="Orphan"
    )
    wait_for(lambda: _gone(objs, "own"), 30, "endpoint deleted")
    wait_for(
        lambda: not objs.core.read_namespaced_service(slot, objs.ns).metadata.owner_references,
        30,
        "children orphaned",
    )
    objs.core.patch_namespaced_service(
        slot, objs.ns, {"spec": {"selector": {"app": "theirs", "modelversioning.io/slot": None}}}
    )
    # a new endpoint of the same name renders the same slot name: it must not take them over
    objs.create(ep)
    wait_for(
        lambda: cond_is(objs.mep("own"), "Degraded", "True", "ChildConflict"), 60, "ChildConflict reported"
    )
    svc = objs.core.read_namespaced_service(slot, objs.ns)
    assert svc.spec.selector == {"app": "theirs"} and not svc.metadata.owner_references
    dep = objs.apps.read_namespaced_deployment(slot, objs.ns)
    assert not dep.metadata.owner_references
    wait_for(lambda: any(e.reason == "ChildConflict" for e in objs.events("own")), 10, "Warning Event")


def test_a_foreign_route_of_the_endpoints_name_is_never_written_over(objs, artifact_root):
    """Someone's VirtualService named like the endpoint: never forced over, reported, and the
    endpoint's status never claims the traffic that route does not carry."""
    theirs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "taken", "namespace": objs.ns},
        "spec": {"hosts": ["theirs.example.com"], "http": [{"route": [{"destination": {"host": "x"}}]}]},
    }
    objs.co.create_namespaced_custom_object("networking.istio.io", "v1", objs.ns, "virtualservices", theirs)
    register(objs, artifact_root, "taken", "1.0.0")
    objs.create(model_endpoint("taken", "taken", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(
        lambda: cond_is(objs.mep("taken"), "Degraded", "True", "ChildConflict"), 60, "ChildConflict reported"
    )
    vs = objs.virtualservice("taken")
    assert vs["spec"]["hosts"] == ["theirs.example.com"] and not vs["metadata"].get("ownerReferences")
    assert not (objs.mep("taken").get("status") or {}).get("effectiveWeights")
    wait_for(lambda: any(e.reason == "ChildConflict" for e in objs.events("taken")), 10, "Warning Event")


def _gone(objs, name):
    from kubernetes.client.rest import ApiException

    try:
        objs.mep(name)
    except ApiException as e:
        return e.status == 404
    return False


def test_prefix_colliding_endpoints_each_get_their_own_children(objs, artifact_root):
    register(objs, artifact_root, "chat", "1.0.0")
    objs.create(model_endpoint("chat", "chat", [{"name": "bot-blue", "version": "1.0.0", "weight": 100}]))
    objs.create(model_endpoint("chat-bot", "chat", [{"name": "blue", "version": "1.0.0", "weight": 100}]))
    for name in ("chat", "chat-bot"):
        wait_for(lambda n=name: cond_is(objs.mep(n), "Ready", "True"), 90, f"{name} Ready")
    a, b = objs.slot("chat", "bot-blue"), objs.slot("chat-bot", "blue")
    assert a != b
    for ep, slot in (("chat", a), ("chat-bot", b)):
        dep = objs.apps.read_namespaced_deployment(slot, objs.ns)
        assert dep.metadata.owner_references[0].name == ep
    rv = {s: objs.apps.read_namespaced_deployment(s, objs.ns).metadata.resource_version for s in (a, b)}
    # two full drift checks later nobody rewrote the other's Deployment (no fight)
    objs.set_weights("chat", {"bot-blue": 100})
    assert {
        s: objs.apps.read_namespaced_deployment(s, objs.ns).metadata.resource_version for s in (a, b)
    } == rv


def test_long_endpoint_names_remove_variants_and_switch_routers(objs, artifact_root):
    name = "a-model-endpoint-name-that-is-much-longer-than-sixty-three-characters-for-labels"
    assert len(name) > 63
    register(objs, artifact_root, "long", "1.0.0")
    register(objs, artifact_root, "long", "1.1.0")
    objs.create(
        model_endpoint(
            name,
            "long",
            [
                {"name": "a", "version": "1.0.0", "weight": 50},
                {"name": "b", "version": "1.1.0", "weight": 50},
            ],
        )
    )
    wait_for(lambda: cond_is(objs.mep(name), "Ready", "True"), 90, "Ready")
    uid = objs.mep(name)["metadata"]["uid"]
    slot_b = objs.slot(name, "b")
    objs.patch_mep(name, {"spec": {"variants": [{"name": "a", "version": "1.0.0", "weight": 100}]}})
    wait_for(lambda: slot_b not in deployments(objs, uid), 60, "removed variant's Deployment deleted")
    # switch router: the VirtualService goes, the HTTPRoute comes
    objs.patch_mep(
        name,
        {
            "spec": {
                "routing": {
                    "router": "gatewayAPI",
                    "parentRefs": [{"name": "gw"}],
                    "hosts": ["l.example.com"],
                }
            }
        },
    )
    wait_for(lambda: _route_count(objs) == (0, 1), 60, "only the HTTPRoute remains")


def _route_count(objs):
    vs = objs.co.list_namespaced_custom_object("networking.istio.io", "v1", objs.ns, "virtualservices")[
        "items"
    ]
    hr = objs.co.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", objs.ns, "httproutes")[
        "items"
    ]
    return len(vs), len(hr)


def test_invalid_gateway_hosts_are_refused_at_admission(objs):
    from kubernetes.client.rest import ApiException

    bad = model_endpoint(
        "badhost", "m", [{"name": "a", "version": "1.0.0", "weight": 100}], router="gatewayAPI"
    )
    bad["spec"]["routing"]["hosts"] = ["10.0.0.1:8080"]
    with pytest.raises(ApiException) as e:
        objs.co.create_namespaced_custom_object(GROUP, VERSION, objs.ns, "modelendpoints", bad)
    assert e.value.status == 422 and "lowercase DNS names" in e.value.body


def test_invalid_resource_quantities_are_refused_at_admission(objs, artifact_root):
    from kubernetes.client.rest import ApiException

    uri, sha = make_artifact(artifact_root, "qty", "1.0.0")
    mv = model_version("qty", "1.0.0", uri, sha)
    mv["spec"]["runtime"]["resources"] = {"limits": {"memory": "2 Gi"}}
    with pytest.raises(ApiException) as e:
        objs.create(mv)
    assert e.value.status == 422 and "quantity syntax" in e.value.body


def test_metrics_only_name_versions_that_serve(objs, artifact_root, operator):
    register(objs, artifact_root, "met", "1.0.0")
    register(objs, artifact_root, "met", "1.1.0")
    objs.create(model_endpoint("met", "met", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: vs_weights(objs.virtualservice("met")) == {"main": 100}, 90, "1.0.0 live")
    objs.patch_mep("met", {"spec": {"variants": [{"name": "main", "version": "1.1.0", "weight": 100}]}})
    wait_for(lambda: vs_versions(objs, "met") == {"1.1.0": 100}, 90, "1.1.0 live")

    def serving_series():
        text = operator.metrics()
        return {
            line.split('version="')[1].split('"')[0]
            for line in text.splitlines()
            if line.startswith("modelversioning_endpoint_effective_weight{")
            and f'namespace="{objs.ns}"' in line
            and 'endpoint="met"' in line
            and not line.endswith(" 0.0")
        }

    wait_for(lambda: serving_series() == {"1.1.0"}, 30, "only 1.1.0 reported as serving")
