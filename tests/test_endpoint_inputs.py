"""What an endpoint reconcile keeps between two reconciles (handlers.endpoint_inputs) and what it reads
once per reconcile: never a stale version, slot or child.

A version's facts are taken again whenever the cached object is other bytes, even at the same
resourceVersion; a slot is rendered again whenever anything it is made of changes; a child read in
gather is read again in act when the cache holds another version of it by then."""

from __future__ import annotations

import copy
from typing import Any

from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, Serving
from modelversioning.handlers.endpoint_inputs import EndpointInputs, Lru
from modelversioning.handlers.store import Store
from modelversioning.render import EndpointRef, render_deployment
from test_endpoint_reconciler import NEW, NS, OLD, World, _rv, serving_one

MV = "m-v2.3.8"


def _verified(w: World) -> bool | None:
    facts, _spec, _problem = w.rec.inputs.version(w.store, NS, MV)
    return None if facts is None else facts.verified


def test_a_version_that_loses_its_verification_is_never_served_from_the_cache() -> None:
    w = World()
    serving_one(w)
    assert _verified(w) is True
    made = w.rec.inputs.made["versions"]
    assert _verified(w) is True and w.rec.inputs.made["versions"] == made  # unchanged: kept
    w.version("2.3.8", OLD, verified=False)  # a re-check failed: a new resourceVersion
    assert _verified(w) is False


def test_a_version_changed_at_the_same_resource_version_is_read_again() -> None:
    """Kept by the cached bytes, not by resourceVersion: other content is never taken for the same."""
    w = World()
    serving_one(w)
    assert _verified(w) is True
    body = w.store.get("ModelVersion", NS, MV)
    assert body is not None
    body["status"]["conditions"][0]["status"] = "False"  # same resourceVersion, other content
    w.store.upsert("ModelVersion", body)
    assert _verified(w) is False


def test_a_missing_version_is_reported_and_not_kept() -> None:
    inputs, store = EndpointInputs(), Store()
    facts, spec, problem = inputs.version(store, NS, MV)
    assert (facts, spec) == (None, None) and problem is not None and "does not exist" in problem[1]
    assert inputs.made["versions"] == 0


def _spec(weight: int, version: str = "2.3.8") -> ModelEndpointSpec:
    return ModelEndpointSpec.model_validate(
        {
            "model": "m",
            "variants": [
                {"name": "stable", "version": version, "weight": weight},
                {"name": "canary", "version": "2.4.0", "weight": 100 - weight},
            ],
            "routing": {"router": "istio", "hosts": ["ep.example.com"]},
        }
    )


def _version(version: str = "2.3.8", image: str = "example/server:1") -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": "m",
            "version": version,
            "artifact": {"uri": f"https://models.example.com/m/{version}", "sha256": NEW},
            "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
            "metrics": {"auc": 0.9},
            "runtime": {"image": image, "port": 8080},
        }
    )


REF = EndpointRef(name="ep", namespace=NS, uid="ep-uid")


def _render(
    inputs: EndpointInputs,
    spec: ModelEndpointSpec,
    version: ModelVersionSpec,
    trust_json: str | None = None,
    **serving: Any,
) -> Any:
    s, p = Serving(**serving), ArtifactPolicy()
    out = inputs.renderer(REF, spec, s, p)(spec.variants[0], version, trust_json, "")
    as_rendered = render_deployment(REF, spec, spec.variants[0], version, s, policy=p, trust_json=trust_json)
    assert out == as_rendered
    return out


def test_a_slot_is_rendered_once_per_distinct_input_and_again_when_any_of_it_changes() -> None:
    inputs = EndpointInputs()
    first = _render(inputs, _spec(90), _version())
    assert inputs.made["slots"] == 1
    assert _render(inputs, _spec(10), _version()) == first  # a weight change: nothing a slot is made of
    assert inputs.made["slots"] == 1
    changes = [
        (_spec(90), _version(image="example/server:2")),  # the version's runtime
        (_spec(90, "2.3.9"), _version("2.3.9")),  # the variant's version
    ]
    for n, (spec, version) in enumerate(changes, start=2):
        assert _render(inputs, spec, version)["metadata"]["name"] != first["metadata"]["name"]
        assert inputs.made["slots"] == n
    _render(inputs, _spec(90), _version(), init_image="x/verify:2")  # the operator's settings
    assert inputs.made["slots"] == 4
    # the accepted signature's trust roots the init container checks again (signed models)
    trusted = _render(inputs, _spec(90), _version(), trust_json='{"keys": ["k"]}')
    assert inputs.made["slots"] == 5 and trusted["metadata"]["name"] != first["metadata"]["name"]


def test_a_kept_slot_is_a_fresh_copy_each_time() -> None:
    inputs = EndpointInputs()
    first = _render(inputs, _spec(90), _version())
    first["spec"]["replicas"] = 7  # as act does
    first["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    again = _render(inputs, _spec(90), _version())
    assert (
        again["spec"]["replicas"] == 1
        and again["spec"]["template"]["spec"]["containers"][0]["image"] != "changed"
    )


def test_no_slot_is_made_of_a_weight() -> None:
    """Why a slot is kept across weight changes: render_deployment reads no weight."""
    spec_a, spec_b, s = _spec(90), _spec(10), Serving()
    for a, b in zip(spec_a.variants, spec_b.variants, strict=True):
        version = _version(a.version)
        assert a.weight != b.weight
        assert render_deployment(REF, spec_a, a, version, s) == render_deployment(REF, spec_b, b, version, s)


def test_the_least_recently_used_entry_goes_first() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c"), len(lru)) == (1, None, 3, 2)


def _gets(w: World, kind: str) -> list[str]:
    """Names of the objects of `kind` read (get) during one reconcile."""
    seen: list[str] = []
    get = w.store.get

    def counting(k: str, ns: str, name: str) -> Any:
        if k == kind:
            seen.append(name)
        return get(k, ns, name)

    w.store.get = counting  # type: ignore[method-assign]
    try:
        w.reconcile()
    finally:
        w.store.get = get  # type: ignore[method-assign]
    return seen


def test_a_reconcile_reads_each_child_once() -> None:
    w = World()
    svc = serving_one(w)
    assert _gets(w, "Deployment") == [svc]  # gather's read, reused by act
    assert _gets(w, "HTTPRoute") == []  # gather reads it with the endpoint's routes (owned)


def test_a_child_changed_between_gather_and_act_is_compared_as_it_is_then() -> None:
    """A hand edit that lands after gather read the Deployment is seen by act, and put back."""
    w = World()
    svc = serving_one(w)
    act = w.rec.act

    def edited_then_act(g: Any, plan: Any) -> Any:
        dep = copy.deepcopy(w.api.objects[("Deployment", svc)])
        dep["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
        dep["metadata"]["resourceVersion"] = str(next(_rv))
        w.api.objects[("Deployment", svc)] = dep
        w.store.upsert("Deployment", copy.deepcopy(dep))  # the watch delivers it meanwhile
        return act(g, plan)

    w.rec.act = edited_then_act  # type: ignore[method-assign]
    w.api.writes.clear()
    w.reconcile()
    assert ("apply", "Deployment", svc) in w.api.writes
    image = w.api.objects[("Deployment", svc)]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "example/server:1"
