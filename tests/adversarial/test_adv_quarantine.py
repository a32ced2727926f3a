"""Lineage quarantine (issue 28, part 3) through the real endpoint reconciler (gather -> decide -> act)
against the in-memory API of tests/test_endpoint_reconciler.py: a quarantined version loses its traffic
to the unaffected one with no spec written; a GitOps re-apply of the very same spec does not give it
back; with nothing else eligible the route closes with x-model-unavailable: quarantined; lifting it is
what reopens the route."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modelversioning.api import wire as R  # noqa: E402
from test_endpoint_reconciler import NEW, NS, OLD, World, serving_one  # noqa: E402


def _mark(w: World, name: str, selectors: list[str]) -> None:
    """kubectl models quarantine (or its lift): annotations only, never the spec."""
    body = copy.deepcopy(w.store.get("ModelVersion", NS, name))
    assert body is not None
    ann = body["metadata"].setdefault("annotations", {})
    if selectors:
        ann[R.QUARANTINED_ANNOTATION] = json.dumps(selectors)
    else:
        ann.pop(R.QUARANTINED_ANNOTATION, None)
    ann[R.QUARANTINED_BY_ANNOTATION] = "jane"
    body["metadata"]["resourceVersion"] += "1"
    w.store.upsert("ModelVersion", body)


def test_a_quarantined_version_moves_to_the_unaffected_one_and_a_reapplied_spec_does_not_undo_it() -> None:
    w = World()
    w.version("2.3.8", OLD)
    w.version("2.4.1", NEW)
    spec = [
        {"name": "canary", "version": "2.4.1", "weight": 100},
        {"name": "stable", "version": "2.3.8", "weight": 0},
    ]
    w.endpoint(spec)
    w.settle()
    assert {v for v, wt in w.routed().values() if wt} == {"2.4.1"}
    endpoint_spec = copy.deepcopy(w.api.objects[("ModelEndpoint", "ep")]["spec"])
    _mark(w, "m-v2.4.1", ["dataset=fraud-tx@2026-10-01"])
    w.settle()
    assert {v: wt for v, wt in w.routed().values() if wt} == {"2.3.8": 100}
    assert w.status()["effectiveWeights"] == {"canary": 0, "stable": 100}
    assert w.api.objects[("ModelEndpoint", "ep")]["spec"] == endpoint_spec  # the operator wrote no spec
    (canary,) = [v for v in w.status()["variants"] if v["name"] == "canary"]
    assert canary["reason"] == R.QUARANTINED and not canary["eligible"]
    w.endpoint(spec)  # Argo CD / Flux self-heal: the same manifest again
    w.settle()
    assert {v: wt for v, wt in w.routed().values() if wt} == {"2.3.8": 100}
    _mark(w, "m-v2.4.1", [])  # lifted: the declared split comes back
    w.settle()
    assert {v: wt for v, wt in w.routed().values() if wt} == {"2.4.1": 100}


def test_quarantining_the_only_serving_version_closes_the_route_until_it_is_lifted() -> None:
    w = World()
    served = serving_one(w)
    _mark(w, "m-v2.3.8", ["commit=abcdef1"])
    w.reconcile()
    (rule,) = w.route()["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["ep-closed"]
    assert rule["filters"][0]["responseHeaderModifier"]["set"] == [
        {"name": R.HEADER_UNAVAILABLE, "value": R.UNAVAILABLE_QUARANTINED}
    ]
    assert w.status()["closed"]["reason"] == R.UNAVAILABLE_QUARANTINED
    assert w.cond("Ready")[:2] == ("False", R.QUARANTINED)
    assert any(e[0] == "Warning" and e[1] == R.QUARANTINED for e in w.api.events)
    _mark(w, "m-v2.3.8", [])
    w.settle()
    assert w.routed() == {served: ("2.3.8", 100)} and "closed" not in w.status()
