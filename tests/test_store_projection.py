"""The watch cache keeps a projection of each object (handlers/store.py PROJECTION): the decisions
made from projected objects must be exactly those made from the full objects the API server sends.

The objects are real: tests/data/apiserver-objects.json is one endpoint of the benchmark fleet as a
kube-apiserver returned it (managedFields, defaults, Deployment status), with noise added here that
other tools put on objects (annotations, labels, a gateway's route status, kubectl's last-applied).
The reconcilers' gather and decide steps run over a Store of full objects and over a Store of
projected ones; their facts, plans, reports, desired children and drift must be equal. Every test
in this directory also records what the operator reads from the cache (tests/conftest.py): a read
of a field the projection drops fails that test.
"""

from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.api.wire import ROLLOUT_ACTION_ANNOTATION, ROLLOUT_ACTION_ID_ANNOTATION
from modelversioning.domain import endpoint_plan as plan_
from modelversioning.domain import registry
from modelversioning.domain.endpoint_status import build_status
from modelversioning.domain.model_plan import decide as decide_model
from modelversioning.domain.version_plan import decide as decide_version
from modelversioning.handlers import projection
from modelversioning.handlers import store as store_mod
from modelversioning.handlers.drift import diff
from modelversioning.handlers.kube import ROUTE_RESOURCES
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler, deployment_state
from modelversioning.handlers.modelversion import ModelVersionReconciler, served_by
from modelversioning.handlers.store import ALL, PROJECTION, Store, cacheable
from modelversioning.handlers.version_annotations import stage_actor
from modelversioning.render.routers import get_router

DATA = pathlib.Path(__file__).parent / "data" / "apiserver-objects.json"
NS, EP = "bench", "ep-0000"
NOW = 1_790_000_000.0
# the benchmark operator's settings (its artifact root is part of the rendered init container)
SETTINGS = Settings.model_validate(
    {"artifacts": {"allowPrivateNetworks": True, "fileRoots": ["/tmp/mv-bench-artifacts-vuw5oskj"]}}
)


def objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = json.loads(DATA.read_text())
    for o in objs:  # what other tools add to objects
        md = o["metadata"]
        md.setdefault("labels", {})["team.example.com/owner"] = "ml-platform"
        md.setdefault("annotations", {}).update(
            {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(o),
                "argocd.argoproj.io/tracking-id": f"app:{o['kind']}/{md['name']}",
            }
        )
    return objs


def mv_of(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "ModelVersion" and o["metadata"]["name"] == name)


def with_rollout(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The endpoint as a canary rollout that a person asked to promote; the canary's version with the
    annotations the rollout and retention write, and a stage owner in managedFields."""
    objs = copy.deepcopy(objs)
    ep = next(o for o in objs if o["kind"] == "ModelEndpoint")
    ep["spec"]["strategy"] = {
        "canary": {
            "variant": "canary",
            "baseline": "stable",
            "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}],
        }
    }
    ep["metadata"]["annotations"].update(
        {ROLLOUT_ACTION_ANNOTATION: "promote", ROLLOUT_ACTION_ID_ANNOTATION: "req-1"}
    )
    mv = mv_of(objs, "m0000-v1.1.0")
    mv["metadata"]["annotations"].update(
        {
            "modelversioning.io/requested-by": "alice@example.com",
            "modelversioning.io/requested-stage": "production",
            "modelversioning.io/reason": "better auc",
            "modelversioning.io/artifact-deleted": json.dumps({"at": "2026-01-01T00:00:00Z", "by": "x"}),
        }
    )
    mv["metadata"]["managedFields"].append(
        {
            "apiVersion": "modelversioning.io/v1alpha1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:stage": {}}, "f:metadata": {"f:labels": {"f:x": {}}}},
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-11-30T19:00:00Z",
        }
    )
    return objs


def with_gateway_route(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The endpoint on the gatewayAPI router: its HTTPRoute as our router renders it, plus the status a
    gateway controller writes; the VirtualService of the old router still there."""
    objs = copy.deepcopy(objs)
    ep = next(o for o in objs if o["kind"] == "ModelEndpoint")
    vs = next(o for o in objs if o["kind"] == "VirtualService")
    ep["spec"]["routing"] = {"router": "gatewayAPI", "parentRefs": [{"name": "gw", "namespace": "gw"}]}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {**copy.deepcopy(vs["metadata"]), "resourceVersion": "99999", "generation": 3},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "rules": [
                {
                    "backendRefs": [
                        {"kind": "Service", "name": s["metadata"]["name"], "port": 80, "weight": w}
                        for s, w in zip([o for o in objs if o["kind"] == "Service"], (90, 10), strict=True)
                    ]
                }
            ],
        },
        "status": {
            "parents": [
                {
                    "controllerName": "example.com/gateway",
                    "parentRef": {"name": "gw"},
                    "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
                }
            ]
        },
    }
    return [*objs, route]


def with_broken_slot(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One slot's Deployment mid-rollout (a newer generation not yet observed, one replica short) and
    the other's taken over by another controller."""
    objs = copy.deepcopy(objs)
    deps = [o for o in objs if o["kind"] == "Deployment"]
    deps[0]["metadata"]["generation"] = 5
    deps[0]["status"]["readyReplicas"] = 0
    deps[1]["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    return objs


def with_model(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    objs = copy.deepcopy(objs)
    model = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "m0000",
            "namespace": NS,
            "uid": "model-uid",
            "generation": 2,
            "resourceVersion": "500",
            "creationTimestamp": "2026-11-30T18:30:00Z",
            "annotations": {},
        },
        "spec": {"retention": {"archiveAfter": "30d", "artifactDeletion": "DryRun"}},
        "status": {"versions": [{"version": "1.0.0", "digest": "0" * 64, "firstSeen": "2026-01-01T00:00Z"}]},
    }
    approval = {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelApproval",
        "metadata": {"name": "a1", "namespace": NS, "uid": "a-uid", "resourceVersion": "501"},
        "spec": {
            "model": "m0000",
            "version": "1.1.0",
            "sha256": mv_of(objs, "m0000-v1.1.0")["spec"]["artifact"]["sha256"],
            "stage": "production",
            "approver": "bob",
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    return [*objs, model, approval]


SCENARIOS = {
    "as-listed": lambda o: o,
    "rollout-promote": with_rollout,
    "gateway-route": with_gateway_route,
    "broken-slot": with_broken_slot,
    "with-model": with_model,
}


def stores(objs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[Store, Store]:
    """(full, projected): the same objects, kept whole and kept as the operator keeps them."""
    full, projected = Store(), Store()
    with monkeypatch.context() as m:
        m.setattr(store_mod, "cacheable", lambda kind, body, shared=False: body)
        for o in objs:
            full.upsert(o["kind"], copy.deepcopy(o))
    for o in objs:
        projected.upsert(o["kind"], copy.deepcopy(o))
    return full, projected


def endpoint_decisions(store: Store) -> dict[str, Any]:
    rec = ModelEndpointReconciler(None, store, SETTINGS, lambda ns, m: None)  # type: ignore[arg-type]
    rec.clock = lambda: NOW
    body = store.get("ModelEndpoint", NS, EP)
    assert body is not None
    spec = ModelEndpointSpec.model_validate(body.get("spec") or {})
    g = rec.gather(body, spec)
    plan = plan_.decide(g.facts)
    outcome = plan_.Outcome({}, None, "", ())
    report = build_status(g.facts, plan, outcome)
    drift = {}
    for variant, (dep, svc) in g.slots.items():
        for desired in (dep, svc):
            actual = store.get(desired["kind"], NS, desired["metadata"]["name"])
            drift[(variant, desired["kind"])] = None if actual is None else diff(desired, actual)
    routes = {}
    for rname, res in ROUTE_RESOURCES.items():
        for route in store.owned(res.kind, NS, g.ref.uid):
            routes[(rname, route["metadata"]["name"])] = get_router(rname).services(route)
    return {
        "facts": g.facts,
        "slots": g.slots,
        "conflicts": g.conflicts,
        "rollout": g.facts.rollout,
        "plan": plan,
        "report": report,
        "drift": drift,
        "routes": routes,
        "slot_states": {
            n: deployment_state(store.get("Deployment", NS, n))
            for n in sorted(o["metadata"]["name"] for o in store.owned("Deployment", NS, g.ref.uid))
        },
    }


def version_decisions(store: Store) -> dict[str, Any]:
    rec = ModelVersionReconciler(
        None,  # type: ignore[arg-type]
        store,
        SETTINGS,
        lambda *a: None,  # type: ignore[arg-type,return-value]
        enqueue_endpoints=lambda ns, m: None,
        requeue=lambda ns, n: None,
    )
    out: dict[str, Any] = {}
    now = datetime.fromtimestamp(NOW, UTC)
    for (ns, name), body in sorted(store.items("ModelVersion", NS)):
        got = rec.gather(ns, name)
        assert got is not None
        out[name] = (got.facts, decide_version(got.facts, rec.policy, now), stage_actor(body, "production"))
        out[f"{name}/servedBy"] = served_by(store, ns, "m0000", str(body["spec"]["version"]))
    return out


def model_decisions(store: Store) -> dict[str, Any]:
    rec = ModelReconciler(None, store, SETTINGS, lambda ns, m: None)  # type: ignore[arg-type]
    got = rec.gather(NS, "m0000")
    if got is None:
        return {}
    now = datetime.fromtimestamp(NOW, UTC)
    facts = replace(got.facts, now=now, wall=now)
    old = facts.status.get("versions") or []
    retention = facts.rules
    return {
        "views": facts.views,
        "records": registry.record(old, facts.views, now),
        "retention": registry.select(facts.views, retention, now) if retention else None,
        "plan": decide_model(facts),
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_projected_objects_give_the_same_decisions_as_full_objects(scenario, monkeypatch):
    objs = SCENARIOS[scenario](objects())
    full, projected = stores(objs, monkeypatch)
    for decisions in (endpoint_decisions, version_decisions, model_decisions):
        assert decisions(projected) == decisions(full), decisions.__name__


def test_the_scenarios_decide_something():
    """The fixture is not a degenerate world: the as-listed endpoint serves both variants from
    ready slots, in sync with what we render (no drift), and the rollout and broken slot differ."""
    objs = objects()
    s = Store()
    for o in objs:
        s.upsert(o["kind"], copy.deepcopy(o))
    d = endpoint_decisions(s)
    assert d["plan"].weights == {"stable": 90, "canary": 10}
    assert d["drift"] and all(v == [] for v in d["drift"].values()), d["drift"]
    assert all(st.available for st in d["slot_states"].values())
    broken = Store()
    for o in with_broken_slot(objs):
        broken.upsert(o["kind"], copy.deepcopy(o))
    b = endpoint_decisions(broken)
    assert b["conflicts"] and not all(st.available for st in b["slot_states"].values())
    assert b["plan"] != d["plan"]


def test_projection_drops_what_nobody_reads():
    objs = with_model(with_gateway_route(with_rollout(objects())))
    for o in objs:
        p = cacheable(o["kind"], copy.deepcopy(o))
        md = p["metadata"]
        assert "kubectl.kubernetes.io/last-applied-configuration" not in md.get("annotations", {})
        if o["kind"] == "ModelVersion":
            assert {m["manager"] for m in md["managedFields"]} <= {"kubectl-edit", "OpenAPI-Generator"}
            assert all("f:stage" in m["fieldsV1"]["f:spec"] for m in md["managedFields"])
            assert set(m for mf in md["managedFields"] for m in mf["fieldsV1"]) == {"f:spec"}
        else:
            assert "managedFields" not in md
        if o["kind"].startswith("Model"):
            assert all(k.startswith("modelversioning.io/") for k in md.get("annotations", {}))
            assert "labels" not in md
            assert p["spec"] == o["spec"]
        if o["kind"] in ("Service", "HTTPRoute", "VirtualService", "ModelApproval"):
            assert "status" not in p
        if o["kind"] == "Deployment":
            assert set(p["status"]) <= {"observedGeneration", "readyReplicas", "updatedReplicas",
                                        "availableReplicas", "conditions"}  # fmt: skip
            assert p["spec"] == o["spec"]  # drift compares the whole rendered spec
    full = sum(len(json.dumps(o)) for o in objs)
    kept = sum(len(json.dumps(cacheable(o["kind"], copy.deepcopy(o)))) for o in objs)
    assert kept < full / 2


def test_every_watched_kind_has_a_projection():
    for res in ROUTE_RESOURCES.values():
        assert res.kind in PROJECTION
    for kind in ("ModelVersion", "ModelEndpoint", "Model", "ModelApproval", "Deployment", "Service"):
        assert kind in PROJECTION


def test_the_cache_keeps_compact_bytes_and_hands_out_copies():
    s = Store()
    full = copy.deepcopy(mv_of(objects(), "m0000-v1.0.0"))
    s.upsert("ModelVersion", full)
    got = s.get("ModelVersion", NS, "m0000-v1.0.0")
    assert got == cacheable("ModelVersion", full)
    got["status"]["stage"] = "changed by a reader"  # a reader's copy: the cache is not touched
    got2 = s.get("ModelVersion", NS, "m0000-v1.0.0")
    assert got2 is not got and got2["status"]["stage"] == full["status"]["stage"]
    entry = s._objs["ModelVersion"][NS]["m0000-v1.0.0"]
    assert isinstance(entry.blob, bytes) and len(entry.blob) < len(json.dumps(got2))
    assert entry.rv == full["metadata"]["resourceVersion"] and entry.model == "m0000"


def _pod() -> dict[str, Any]:
    ok = {"terminated": {"exitCode": 0, "reason": "Completed", "message": "verified " * 50}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS, "resourceVersion": "9", "labels": {"x": "y"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "status": {"phase": "Running", "initContainerStatuses": [{"name": "verify", "state": ok}]},
    }  # fmt: skip


def test_the_store_caches_the_projection_without_copying_it_first_and_never_changes_the_callers_object():
    """Store.upsert projects with shared=True (what a mask keeps whole is pickled from the caller's
    own object): the same bytes' content as the copying projection, and the caller's object as it was,
    last-applied annotation, managedFields and a pod's trimmed message included."""
    objs = [*with_model(with_gateway_route(with_rollout(objects()))), _pod()]
    objs.append({"apiVersion": "example.com/v1", "kind": "Unprojected", "metadata": {  # no mask: a copy
        "name": "u", "namespace": NS, "managedFields": [{"manager": "x"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"}}})  # fmt: skip
    s = Store()
    for o in objs:
        before = copy.deepcopy(o)
        assert cacheable(o["kind"], o, shared=True) == cacheable(o["kind"], before)
        assert o == before
        s.upsert(o["kind"], o)
        assert o == before, o["kind"]
        md = o["metadata"]
        assert s.get(o["kind"], md.get("namespace", ""), md["name"]) == cacheable(o["kind"], before)


def test_a_kind_whose_trim_changes_what_it_keeps_is_copied_even_if_its_mask_kept_it_whole(monkeypatch):
    """A pod's trim drops a message from what the projection keeps: were its statuses kept whole (shared
    with the caller), the caller's pod would lose it. Such kinds are always copied."""
    monkeypatch.setitem(projection._PROJECTIONS, "Pod", {"metadata": ALL, "status": ALL})
    pod = _pod()
    before = copy.deepcopy(pod)
    kept = cacheable("Pod", pod, shared=True)
    assert "message" not in kept["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert pod == before


# ---- the read recorder itself (tests/conftest.py) ---------------------------------------------------


def test_reads_of_the_reconcilers_are_recorded_and_checked(cache_reads, monkeypatch):
    objs = with_rollout(objects())
    _, projected = stores(objs, monkeypatch)
    endpoint_decisions(projected)
    seen = {(k, p) for k, p in cache_reads.paths}
    assert ("Deployment", ("status", "readyReplicas")) in seen  # deployment_state, through gather
    assert ("ModelVersion", ("status", "stage")) in seen  # _version
    assert ("VirtualService", ("spec", "http")) in seen  # the router's services(), through _routes
    from cache_reads import uncovered  # noqa: PLC0415 - the recorder of this directory

    cache_reads.paths.add(("Deployment", ("status", "unavailableReplicas")))
    cache_reads.paths.add(("ModelVersion", ("metadata", "labels")))
    cache_reads.paths.add(("ModelEndpoint", ("metadata", "annotations", "example.com/x")))
    cache_reads.paths.add(("Service", ("status", "loadBalancer")))
    cache_reads.paths.add(("ModelVersion", ("metadata", "annotations", "*")))
    assert uncovered(cache_reads) == [
        "Deployment status.unavailableReplicas",
        "ModelEndpoint metadata.annotations.example.com/x",
        "ModelVersion metadata.annotations.*",
        "ModelVersion metadata.labels",
        "Service status.loadBalancer",
    ]
    cache_reads.paths.clear()  # the deliberate ones: not this test's failure


def test_a_mask_keeps_every_path_it_names():
    from cache_reads import covered  # noqa: PLC0415

    mv = PROJECTION["ModelVersion"]
    assert covered(mv, ("spec", "artifact", "sha256"))
    assert covered(mv, ("metadata", "managedFields", "[]", "fieldsV1", "f:spec", "f:stage"))
    assert not covered(mv, ("metadata", "managedFields", "[]", "fieldsV1", "f:metadata"))
    assert covered(PROJECTION["Deployment"], ("status", "conditions", "[]", "status"))
    assert not covered(PROJECTION["Deployment"], ("status", "conditions", "[]", "message"))
    assert PROJECTION["Deployment"]["spec"] is ALL
