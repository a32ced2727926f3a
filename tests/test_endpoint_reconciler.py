"""The real ModelEndpoint reconciler (gather -> decide -> act) driven step by step against an
in-memory API: what it writes, what it never writes, and what one reconcile does to traffic.

`FakeApi` stands in for the API server (create/apply/delete/status/events, with rejections on
demand); `watch()` plays the watch (copies the API's objects into the Store as *observed*);
`deployments_available()` plays the Deployment controller and kubelet.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.api.settings import Serving, Settings
from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.handlers.kube import Conflict, PreconditionFailed, count_write, status_merge_patch
from modelversioning.handlers.modelendpoint import ModelEndpointReconciler
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import LOW, PRIORITY, Requeue

NS = "ml"
OLD, NEW = "a" * 64, "b" * 64
_rv = itertools.count(1)


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.reject: dict[str, str] = {}  # object name -> message (422, or reject_status)
        self.reject_status = 422
        self.annotations: dict[str, dict[str, Any]] = {}  # annotations written on ModelVersions
        self.store = Store()  # the World's: annotate() patches a ModelVersion that is only cached

    def _wrote(self, write: tuple[str, str, str]) -> None:
        self.writes.append(write)
        count_write()  # as Kube does: a reconcile that wrote is not settled

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        md["resourceVersion"] = str(next(_rv))
        md["generation"] = int(md.get("generation", 0)) + 1
        md.setdefault("uid", f"uid-{md['name']}")
        return obj

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            raise Conflict(f"POST {obj['kind']} {key[1]}: conflict")
        self._check(obj)
        self._wrote(("create", *key))
        self.objects[key] = self._stamp(obj)
        return copy.deepcopy(self.objects[key])

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        self._check(obj)
        self._precondition(key, obj["metadata"].get("uid"))
        self._wrote(("apply", *key))
        old = self.objects.get(key, {})
        merged = {**old, **copy.deepcopy(obj), "metadata": {**old.get("metadata", {}), **obj["metadata"]}}
        merged["metadata"]["generation"] = old.get("metadata", {}).get("generation", 0)
        self.objects[key] = self._stamp(merged)
        return copy.deepcopy(self.objects[key])

    def _check(self, obj: dict[str, Any]) -> None:
        msg = self.reject.get(obj["metadata"]["name"])
        if msg:
            e = ApiException(status=self.reject_status, reason="Unprocessable Entity")
            e.body = json.dumps({"message": f"{obj['kind']} {obj['metadata']['name']}: {msg}"})
            raise e

    def _precondition(self, key: tuple[str, str], uid: str | None) -> None:
        """As the API server: a write naming a UID applies to that object only (Kube raises this)."""
        have = self.objects.get(key, {}).get("metadata", {}).get("uid")
        if uid is not None and have != uid:
            raise PreconditionFailed(f"{key[0]} {key[1]} is no longer uid {uid}")

    def delete(self, res: Any, namespace: str, name: str, uid: str | None = None) -> bool:
        if (res.kind, name) in self.objects:  # as the API server: a missing object is a 404 first
            self._precondition((res.kind, name), uid)
        self._wrote(("delete", res.kind, name))
        return self.objects.pop((res.kind, name), None) is not None

    def patch_status(self, res: Any, namespace: str, name: str, status: dict[str, Any], old: Any) -> Any:
        self._wrote(("status", res.kind, name))
        obj = self.objects[(res.kind, name)]
        # what the API server stores: the merge patch the real Kube sends, applied to what it holds
        obj["status"] = apply_merge_patch(obj.get("status") or {}, status_merge_patch(status, old))
        obj["metadata"]["resourceVersion"] = str(next(_rv))
        return copy.deepcopy(obj)

    def annotate(self, res: Any, namespace: str, name: str, annotations: dict[str, Any]) -> dict[str, Any]:
        self._wrote(("annotate", res.kind, name))
        self.annotations.setdefault(name, {}).update(annotations)
        body = copy.deepcopy(self.store.get(res.kind, namespace, name))  # the object as written
        body["metadata"].setdefault("annotations", {}).update(annotations)
        body["metadata"]["resourceVersion"] = str(next(_rv))
        return body

    def set_finalizers(self, res: Any, namespace: str, name: str, finalizers: list[str], rv: str) -> Any:
        self._wrote(("finalizers", res.kind, name))
        obj = self.objects[(res.kind, name)]
        if obj["metadata"]["resourceVersion"] != rv:
            raise Conflict(f"PATCH {res.kind} {name}: conflict")
        obj["metadata"]["finalizers"] = list(finalizers)
        obj["metadata"]["resourceVersion"] = str(next(_rv))
        if not finalizers and obj["metadata"].get("deletionTimestamp"):
            del self.objects[(res.kind, name)]  # the last finalizer went: the object is gone
        return copy.deepcopy(obj)

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        count_write()
        self.events.append((type_, reason, message))


class World:
    """The API, the Store and the reconciler, with helpers to play the cluster's side."""

    def __init__(self, **serving: Any) -> None:
        self.api = FakeApi()
        self.store = self.api.store
        region = serving.pop("region", None)
        settings = Settings(
            serving=Serving(drain_seconds=serving.pop("drain_seconds", 5.0), **serving), region=region
        )
        self.rec = ModelEndpointReconciler(self.api, self.store, settings, lambda ns, m: None)  # type: ignore[arg-type]
        self.now = 1000.0
        self.rec.clock = lambda: self.now

    # -- the user's side
    def version(self, version: str, digest: str, *, uid: str | None = None, verified: bool = True,
                stage: str = "production") -> None:  # fmt: skip
        name = f"m-v{version}"
        body = {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": uid or f"uid-{name}",
                "resourceVersion": str(next(_rv)),
            },  # fmt: skip
            "spec": {
                "model": "m",
                "version": version,
                "artifact": {"uri": f"https://models.example.com/m/{version}", "sha256": digest},
                "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
                "metrics": {"auc": 0.9},
                "runtime": {"image": "example/server:1", "port": 8080},
            },
            "status": {
                "stage": stage,
                "artifact": {"digest": digest} if verified else {},
                "conditions": [
                    {
                        "type": "ArtifactVerified",
                        "status": "True" if verified else "False",
                        "reason": "Verified" if verified else "Verifying",
                    }
                ],  # fmt: skip
            },
        }
        self.store.upsert("ModelVersion", body)

    def endpoint(self, variants: list[dict[str, Any]], router: str = "gatewayAPI", **extra: Any) -> None:
        key = ("ModelEndpoint", "ep")
        old = self.api.objects.get(key)
        routing: dict[str, Any] = {"router": router}
        if router == "gatewayAPI":
            routing |= {"hosts": extra.pop("hosts", ["ep.example.com"]), "parentRefs": [{"name": "gw"}]}
        body = {
            "apiVersion": "modelversioning.io/v1alpha1",
            "kind": "ModelEndpoint",
            "metadata": {
                "name": "ep",
                "namespace": NS,
                "uid": "ep-uid",
                "generation": 1,
                "resourceVersion": str(next(_rv)),
            },
            "spec": {"model": "m", "variants": variants, "routing": routing, **extra},
        }
        if old is not None:
            body["status"] = old.get("status", {})
            body["metadata"]["generation"] = old["metadata"]["generation"] + 1
            if "finalizers" in old["metadata"]:
                body["metadata"]["finalizers"] = old["metadata"]["finalizers"]
        self.api.objects[key] = body
        self.store.upsert("ModelEndpoint", copy.deepcopy(body))

    # -- the cluster's side
    def watch(self) -> None:
        """Deliver every object the API has to the Store as observed, and the deletions."""
        for (kind, _name), obj in self.api.objects.items():
            self.store.upsert(kind, copy.deepcopy(obj), observed=True)
        for kind in ("Deployment", "Service", "HTTPRoute", "VirtualService"):
            for (_, name), _b in list(self.store.items(kind, NS)):
                if (kind, name) not in self.api.objects:
                    self.store.delete(kind, NS, name)

    def deployments_available(self) -> None:
        for (kind, _), obj in self.api.objects.items():
            if kind == "Deployment":
                n = obj["spec"]["replicas"]
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n,
                    "conditions": [{"type": "Available", "status": "True" if n else "False"}],
                }  # fmt: skip

    def reconcile(self) -> None:
        with contextlib.suppress(Requeue):
            self.rec.reconcile(NS, "ep")

    def settle(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            self.reconcile()
            self.deployments_available()
            self.watch()

    # -- reading
    def route(self) -> dict[str, Any]:
        return self.api.objects[("HTTPRoute", "ep")]

    def routed(self) -> dict[str, tuple[str, int]]:
        """Service -> (x-model-version, weight) of the route as the API has it."""
        out = {}
        for ref in self.route()["spec"]["rules"][0]["backendRefs"]:
            hdrs = {h["name"]: h["value"] for h in ref["filters"][0]["responseHeaderModifier"]["set"]}
            out[ref["name"]] = (hdrs["x-model-version"], ref["weight"])
        return out

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {n: o for (k, n), o in self.api.objects.items() if k == "Deployment"}

    def status(self) -> dict[str, Any]:
        return dict(self.api.objects[("ModelEndpoint", "ep")].get("status") or {})

    def cond(self, type_: str) -> tuple[str, str, str]:
        c = next(c for c in self.status()["conditions"] if c["type"] == type_)
        return c["status"], c["reason"], c["message"]


def serving_one(w: World) -> str:
    """ep serves m 2.3.8 at 100 % from one slot; returns the slot."""
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    w.settle()
    (svc,) = w.routed()
    assert w.routed() == {svc: ("2.3.8", 100)}
    assert w.cond("Ready")[0] == "True"
    return svc


def test_editing_the_only_variant_never_rolls_the_serving_pods() -> None:
    w = World()
    old = serving_one(w)
    old_template = copy.deepcopy(w.deployments()[old]["spec"]["template"])
    w.version("2.4.1", NEW, verified=False, stage="candidate")
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.settle()
    # the serving Deployment is untouched; the new version got its own, with no traffic
    assert w.deployments()[old]["spec"]["template"] == old_template
    assert len(w.deployments()) == 2
    assert w.routed() == {old: ("2.3.8", 100)}
    st = w.status()["variants"][0]
    assert st["serving"]["version"] == "2.3.8" and st["reason"] == R.ARTIFACT_NOT_VERIFIED
    # verified and promoted: traffic moves in one route write, then the old slot drains and goes
    w.version("2.4.1", NEW)
    w.settle()
    (new,) = w.routed()
    assert new != old and w.routed() == {new: ("2.4.1", 100)}
    assert old in w.deployments()  # still there: grace period
    assert w.status()["draining"][0]["name"] == old
    w.now += 5
    w.settle()
    assert set(w.deployments()) == {new} and ("Service", old) not in w.api.objects
    assert any(e[1] == R.SLOT_DELETED for e in w.api.events)


def test_route_is_never_written_to_an_ineligible_slot_at_any_step() -> None:
    """Every route the reconciler ever wrote points only at slots whose version was verified and in
    production at that moment (checked after each single reconcile, not only at the end)."""
    w = World()
    serving_one(w)
    w.version("2.4.1", NEW, verified=False, stage="candidate")
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    for step in range(6):
        w.reconcile()
        versions = {v for v, _ in w.routed().values()}
        assert versions == {"2.3.8"}, f"step {step}: {w.routed()}"
        w.deployments_available()
        w.watch()
        if step == 2:
            w.version("2.4.1", NEW, stage="staging")  # verified, not promoted yet


def test_replicas_zero_under_traffic_is_held_with_a_condition() -> None:
    w = World()
    svc = serving_one(w)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100, "replicas": 0}])
    w.settle()
    assert w.deployments()[svc]["spec"]["replicas"] == 1
    assert w.routed() == {svc: ("2.3.8", 100)}
    assert w.cond("Degraded")[:2] == ("True", R.SCALE_DOWN_HELD)
    assert [e[:2] for e in w.api.events if e[1] == R.SCALE_DOWN_HELD] == [("Warning", R.SCALE_DOWN_HELD)]


def test_recreated_version_never_reaches_the_serving_pods() -> None:
    w = World()
    svc = serving_one(w)
    template = copy.deepcopy(w.deployments()[svc]["spec"]["template"])
    w.version("2.3.8", NEW, uid="someone-elses")  # deleted and re-registered with other bytes
    w.settle()
    assert set(w.deployments()) == {svc} and w.deployments()[svc]["spec"]["template"] == template
    assert w.routed() == {svc: ("2.3.8", 100)}
    assert w.cond("Degraded")[:2] == ("True", R.MODEL_VERSION_REPLACED)
    assert ("Warning", R.MODEL_VERSION_REPLACED) in {e[:2] for e in w.api.events}
    # accepting the new digest explicitly: a new slot, traffic moves once it is Available
    body = w.api.objects[("ModelEndpoint", "ep")]
    body["metadata"]["annotations"] = {R.ACCEPT_REPLACED_ANNOTATION: f"stable={NEW[:12]}"}
    body["metadata"]["resourceVersion"] = str(next(_rv))
    w.store.upsert("ModelEndpoint", copy.deepcopy(body))
    w.settle()
    (new,) = w.routed()
    assert new != svc and w.status()["variants"][0]["serving"]["digest"] == NEW


def test_one_rejected_variant_never_blocks_rollback() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "blue", "version": "2.3.8", "weight": 0},
                {"name": "green", "version": "2.4.1", "weight": 100}])  # fmt: skip
    w.settle()
    # green's slot is refused by the API server (an admission policy, a schema the CRD did not know)
    w.version("2.4.2", "c" * 64)
    w.endpoint([{"name": "blue", "version": "2.3.8", "weight": 0},
                {"name": "green", "version": "2.4.2", "weight": 100}])  # fmt: skip
    rejected = next(n for n in _slot_names(w, "green", "2.4.2"))
    w.api.reject[rejected] = "denied"
    w.settle()
    assert w.cond("Degraded")[:2] == ("True", R.CHILD_REJECTED)
    assert [e[:2] for e in w.api.events if e[1] == R.CHILD_REJECTED] == [("Warning", R.CHILD_REJECTED)]
    # rollback: a weight edit, and it lands
    w.endpoint([{"name": "blue", "version": "2.3.8", "weight": 100},
                {"name": "green", "version": "2.4.2", "weight": 0}])  # fmt: skip
    w.settle()
    assert {v: wt for v, wt in w.routed().values()} == {"2.3.8": 100, "2.4.1": 0}


def _slot_names(w: World, variant: str, version: str) -> list[str]:
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.render import EndpointRef, render_deployment

    body = w.store.get("ModelEndpoint", NS, "ep")
    mvb = w.store.get("ModelVersion", NS, f"m-v{version}")
    assert body and mvb
    spec = ModelEndpointSpec.model_validate(body["spec"])
    v = spec.variant(variant)
    assert v is not None
    dep = render_deployment(
        EndpointRef("ep", NS, "ep-uid"), spec, v, ModelVersionSpec.model_validate(mvb["spec"]),
        w.rec.settings.serving,
    )  # fmt: skip
    return [dep["metadata"]["name"]]


def test_a_foreign_object_with_the_slot_name_is_left_alone() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    (name,) = _slot_names(w, "stable", "2.3.8")
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "uid": "theirs"},
        "spec": {"selector": {"app": "x"}},
    }
    w.api.objects[("Service", name)] = foreign
    w.settle()
    assert w.api.objects[("Service", name)]["spec"] == {"selector": {"app": "x"}}
    assert ("apply", "Service", name) not in w.api.writes
    assert w.cond("Degraded")[:2] == ("True", R.CHILD_CONFLICT)


def test_invalid_gateway_host_is_a_permanent_condition_not_a_retry_loop() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], hosts=["10.0.0.1:8080"])
    w.settle()  # raises if the reconcile fails (the work queue would retry forever)
    assert w.cond("Degraded")[:2] == ("True", R.INVALID_SPEC)
    assert ("HTTPRoute", "ep") not in w.api.objects
    warnings = [e for e in w.api.events if e[1] == R.INVALID_SPEC]
    assert len(warnings) == 1  # once, not on every reconcile


def _foreign_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "ep", "namespace": NS, "uid": "theirs", "resourceVersion": "1"},
        "spec": {"hostnames": ["theirs.example.com"]},
    }


@pytest.mark.parametrize("cached", [False, True], ids=["not-in-the-watch-cache", "cached-without-our-ref"])
def test_a_foreign_route_of_the_endpoints_name_is_never_written_over(cached: bool) -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    w.api.objects[("HTTPRoute", "ep")] = _foreign_route()
    for _ in range(3):
        w.reconcile()  # never raises (a retry loop with a stale status) and never forces the write
        w.deployments_available()
        w.watch()
        if not cached:  # the watch only sees objects with our managed-by label
            w.store.delete("HTTPRoute", NS, "ep")
        # else: e.g. it carries our label but no controller reference to this endpoint
    assert w.api.objects[("HTTPRoute", "ep")]["spec"] == {"hostnames": ["theirs.example.com"]}
    assert [x for x in w.api.writes if x[1] == "HTTPRoute"] == []
    status, reason, msg = w.cond("Degraded")
    assert (status, reason) == ("True", R.CHILD_CONFLICT) and "HTTPRoute ep" in msg
    assert w.status()["effectiveWeights"] == {}  # the plan's 100 % never reached a route
    assert [e for e in w.api.events if e[1] == R.CHILD_CONFLICT] == [
        ("Warning", R.CHILD_CONFLICT, w.cond("Degraded")[2])
    ]  # once


def test_a_refused_route_keeps_status_on_the_split_the_route_still_has() -> None:
    w = World()
    old_slot = serving_one(w)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.api.reject["ep"] = "denied by admission policy 'routes'"
    w.settle()  # the route write is refused every time: a condition, not an exception
    assert w.routed() == {old_slot: ("2.3.8", 100)}
    status, reason, msg = w.cond("Degraded")
    assert (status, reason) == ("True", R.CHILD_REJECTED) and "denied by admission policy" in msg
    st = w.status()
    assert st["effectiveWeights"] == {"stable": 100}
    assert st["variants"][0]["serving"]["version"] == "2.3.8"  # what the route still sends to
    assert old_slot in w.deployments()  # still routed: never drained
    series = {
        (s.labels["variant"], s.labels["version"])
        for s in metrics.EFFECTIVE_WEIGHT.collect()[0].samples
        if s.labels["namespace"] == NS and s.labels["endpoint"] == "ep"
    }
    assert series == {("stable", "2.3.8")}
    del w.api.reject["ep"]  # the policy is fixed: the next reconcile moves the traffic
    w.settle()
    assert [v for v, _ in w.routed().values()] == ["2.4.1"]
    assert w.cond("Ready")[0] == "True"


def test_a_route_write_that_fails_transiently_is_retried_after_the_status_is_written() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    w.settle(rounds=1)
    w.api.reject["ep"], w.api.reject_status = "etcd timeout", 503
    with pytest.raises(ApiException):
        w.rec.reconcile(NS, "ep")  # the work queue retries it with backoff
    # retried, not refused: progress (kstatus Reconciling), never Degraded/ChildRejected (Stalled)
    status, reason, msg = w.cond("Progressing")
    assert (status, reason) == ("True", R.CHILD_APPLY_RETRYING) and "etcd timeout" in msg
    assert w.cond("RoutesReady")[:2] == ("False", R.CHILD_APPLY_RETRYING)
    assert w.cond("Degraded")[0] == "False" and w.cond("Stalled")[0] == "False"
    assert w.cond("Reconciling")[0] == "True"


def test_router_switch_deletes_old_route_and_keeps_slots_until_observed() -> None:
    w = World()
    svc = serving_one(w)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}], router="none")
    w.reconcile()
    assert ("HTTPRoute", "ep") not in w.api.objects
    assert svc in w.deployments()  # the slot still serves; "none" keeps it as the variant's slot


def test_metrics_report_only_serving_versions() -> None:
    w = World()
    serving_one(w)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.4.1", "weight": 100}])
    w.settle()
    series = {
        (s.labels["variant"], s.labels["version"]): s.value
        for s in metrics.EFFECTIVE_WEIGHT.collect()[0].samples
        if s.labels["namespace"] == NS and s.labels["endpoint"] == "ep"
    }
    assert series == {("stable", "2.4.1"): 100.0}


def test_idle_reconcile_writes_nothing() -> None:
    w = World()
    serving_one(w)
    w.api.writes.clear()
    w.settle()
    assert w.api.writes == []


def test_the_region_is_recorded_once_per_status_and_an_idle_reconcile_writes_nothing() -> None:
    w = World(region="eu-west")
    serving_one(w)
    st = w.api.objects[("ModelEndpoint", "ep")]["status"]
    assert st["region"] == "eu-west" and st["routeHistory"]  # the record of this region's routes
    w.api.writes.clear()
    w.settle()
    assert w.api.writes == []
    # the same cluster's operator without a region (the setting removed): the status stops saying one
    w.rec.settings = Settings(serving=w.rec.settings.serving)
    w.settle()
    assert "region" not in w.api.objects[("ModelEndpoint", "ep")]["status"]
    w.api.writes.clear()
    w.settle()
    assert w.api.writes == []


def test_without_a_region_the_status_has_none() -> None:
    w = World()
    serving_one(w)
    assert "region" not in w.api.objects[("ModelEndpoint", "ep")]["status"]


@pytest.mark.parametrize("n", [63, 253])
def test_long_endpoint_names_find_their_children(n: int) -> None:
    w = World(drain_seconds=0)
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    body = w.api.objects.pop(("ModelEndpoint", "ep"))
    name = ("e" * n)[:n]
    body["metadata"]["name"] = name
    w.api.objects[("ModelEndpoint", name)] = body
    w.store.delete("ModelEndpoint", NS, "ep")
    w.store.upsert("ModelEndpoint", copy.deepcopy(body))
    for _ in range(4):
        with contextlib.suppress(Requeue):
            w.rec.reconcile(NS, name)
        w.deployments_available()
        w.watch()
    assert len(w.deployments()) == 1
    body = w.api.objects[("ModelEndpoint", name)]
    body["spec"]["variants"][0]["version"] = "2.4.1"
    body["metadata"]["generation"] += 1
    body["metadata"]["resourceVersion"] = str(next(_rv))
    w.store.upsert("ModelEndpoint", copy.deepcopy(body))
    for _ in range(6):
        with contextlib.suppress(Requeue):
            w.rec.reconcile(NS, name)
        w.deployments_available()
        w.watch()
    assert len(w.deployments()) == 1  # the 2.3.8 slot was found by its owner UID and deleted
    assert json.dumps(w.deployments()).count("2.4.1") > 0


# ---- the drift check skips endpoints whose inputs did not change ------------------------------------


def drift(w: World) -> int:
    """One drift-check reconcile (LOW priority, as the work queue runs it); the writes it made."""
    before = len(w.api.writes) + len(w.api.events)
    contextvars.copy_context().run(lambda: (PRIORITY.set(LOW), w.reconcile()))
    return len(w.api.writes) + len(w.api.events) - before


def ran(w: World, fn: Callable[[], Any]) -> bool:
    """Did the reconcile inside fn() run (gather), or was it skipped?"""
    calls: list[int] = []
    real = w.rec.gather
    w.rec.gather = lambda *a: (calls.append(1), real(*a))[1]  # type: ignore[method-assign]
    try:
        fn()
    finally:
        w.rec.gather = real  # type: ignore[method-assign]
    return bool(calls)


def test_a_drift_check_skips_a_settled_endpoint_until_one_of_its_inputs_changes() -> None:
    w = World()
    svc = serving_one(w)
    w.reconcile()  # settled: nothing to write
    assert not ran(w, lambda: drift(w))  # same inputs: not run
    assert ran(w, w.reconcile)  # a reconcile a watch event asked for always runs
    # a change of any input runs it: here another writer edits our route (a watch event, new rv)
    route = copy.deepcopy(w.route())
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 0
    route["metadata"]["resourceVersion"] = str(next(_rv))
    w.store.upsert("HTTPRoute", route)
    assert ran(w, lambda: drift(w))
    assert w.routed() == {svc: ("2.3.8", 100)}  # and the drift is repaired


@pytest.mark.parametrize("change", ["version", "deployment", "endpoint", "new child"])
def test_a_drift_check_runs_again_when_a_version_a_child_or_the_endpoint_changes(change: str) -> None:
    w = World()
    svc = serving_one(w)
    w.reconcile()
    assert not ran(w, lambda: drift(w))
    if change == "version":  # e.g. its verification failed on a re-check
        w.version("2.3.8", OLD, verified=False)
    elif change == "deployment":
        dep = w.store.get("Deployment", NS, svc)
        assert dep is not None
        dep["status"]["readyReplicas"] = 0
        dep["metadata"]["resourceVersion"] = str(next(_rv))
        w.store.upsert("Deployment", dep)
    elif change == "endpoint":
        w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100, "replicas": 2}])
    else:
        dep = copy.deepcopy(w.store.get("Deployment", NS, svc))
        assert dep is not None
        dep["metadata"]["name"] = "stray"
        dep["metadata"]["resourceVersion"] = str(next(_rv))
        w.store.upsert("Deployment", dep)
    assert ran(w, lambda: drift(w))


def test_a_reconcile_that_wrote_is_not_settled() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.endpoint([{"name": "stable", "version": "2.3.8", "weight": 100}])
    w.reconcile()  # creates the children and the route: its writes changed its inputs too
    assert ran(w, lambda: drift(w))
    w.settle()
    assert not ran(w, lambda: drift(w))
    # a write that leaves every input as it was (here an Event) still means: not settled
    real = w.rec._reconcile

    def with_an_event(namespace: str, name: str) -> bool:
        settled = real(namespace, name)
        w.api.event({}, "Warning", "Something", "to say")
        return settled

    w.rec._reconcile = with_an_event  # type: ignore[method-assign]
    w.reconcile()
    w.rec._reconcile = real  # type: ignore[method-assign]
    assert ran(w, lambda: drift(w))


def test_a_drain_since_read_back_is_never_earlier_and_never_drifts() -> None:
    import random

    from modelversioning.domain.timestamps import epoch as _epoch
    from modelversioning.domain.timestamps import rfc3339_ms as _rfc3339

    rnd = random.Random(7)
    for _ in range(2000):
        t = 1_764_000_000 + rnd.random() * 10_000_000
        s = _rfc3339(t)
        assert _epoch(s) >= t - 1e-6  # the grace period is never cut short
        assert _epoch(s) - t < 0.0011
        assert _rfc3339(_epoch(s)) == s  # read back and written again: no status write loop


def test_the_drain_grace_counts_from_the_observed_route_to_the_millisecond() -> None:
    w = World(drain_seconds=1.0)
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    w.now = 1000.7  # a whole-second `since` would make the 1 s grace 0.3 s
    w.endpoint([{"name": "a", "version": "2.3.8", "weight": 50},
                {"name": "b", "version": "2.4.1", "weight": 50}])  # fmt: skip
    w.settle()
    (b_slot,) = _slot_names(w, "b", "2.4.1")
    w.endpoint([{"name": "a", "version": "2.3.8", "weight": 100}])
    w.settle()  # route written and observed without b; b drains
    assert b_slot in w.deployments()
    w.now = 1001.5
    w.settle()
    assert b_slot in w.deployments()  # 0.8 s after: still there
    w.now = 1001.8
    w.settle()
    assert b_slot not in w.deployments()
