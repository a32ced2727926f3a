"""What the endpoint reconciler reads off API objects and API errors, as plain values (pure: no
cache reads, no writes). The reconciler (handlers.modelendpoint) reads the cache and calls these."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelversioning.api import wire as R
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.strategy import seconds
from modelversioning.domain import conditions as cond
from modelversioning.domain.endpoint_facts import Pin, RolloutFacts, SlotFacts
from modelversioning.domain.platform_policy import (
    Floors,
    analysis_violations,
    effective_required_stage,
    endpoint_violations,
    promotion_untrusted,
)
from modelversioning.domain.pod_health import probe_text, slot_health
from modelversioning.handlers.store import controller_of
from modelversioning.handlers.trust import init_trust_json as init_trust_json  # a slot's init container


def deployment_state(dep: dict[str, Any] | None) -> SlotFacts:
    """A slot's Deployment as observed: Available with all its replicas, and why not."""
    if dep is None:
        return SlotFacts(name="")
    name = dep["metadata"]["name"]
    st = dep.get("status") or {}
    want = int((dep.get("spec") or {}).get("replicas", 1) or 0)
    ready = int(st.get("readyReplicas") or 0)

    def state(ok: bool, why: str) -> SlotFacts:
        return SlotFacts(name, True, ok, ready, want, why)

    if int(st.get("observedGeneration") or 0) < int(dep["metadata"].get("generation") or 0):
        return state(False, "Deployment update not yet observed")
    if want == 0:
        return state(False, "Deployment has 0 replicas")
    updated, available = int(st.get("updatedReplicas") or 0), int(st.get("availableReplicas") or 0)
    if updated < want or available < want or ready < want:
        return state(False, f"{available}/{want} replicas available")
    if not cond.is_true(st.get("conditions"), "Available"):
        return state(False, "Deployment is not Available")
    return state(True, "Deployment is available")


def slot_state(uid: str, name: str, dep: dict[str, Any] | None, svc: dict[str, Any] | None) -> SlotFacts:
    """A slot as observed: its Deployment's state, ``ours`` only when the Deployment and the Service
    both exist with this endpoint's controller reference, and ``conflict`` when either one of the
    slot's name is someone else's (then nothing of it counts: no readiness, no replicas)."""
    conflict = taken(uid, dep) or taken(uid, svc)
    if conflict:
        return SlotFacts(name, True, False, 0, 0, f"{conflict}; it is never routed to", False, conflict)
    if dep is None:
        return SlotFacts(name)
    state = replace(deployment_state(dep), ours=svc is not None)
    if svc is None:
        return replace(state, why=f"{state.why}; Service {name} not created yet")
    return state


def with_pods(
    state: SlotFacts, dep: dict[str, Any] | None, pods: list[dict[str, Any]], now: float, bound: float
) -> tuple[SlotFacts, float | None]:
    """The slot with what its pods report (domain.pod_health), and when to look again (a pod running,
    not ready, short of `bound`). A slot that is not ours (or has no Deployment) reports nothing."""
    if dep is None or state.conflict or not pods:
        return state, None
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    probe = probe_text((containers[0] if containers else {}).get("readinessProbe"))
    health = slot_health(pods, now, bound, probe)
    return replace(state, pod_problem=health.problem), health.recheck_after


def pin(raw: Any) -> Pin | None:
    """status.variants[].serving as a Pin (None: not pinned yet)."""
    if not isinstance(raw, dict) or not raw.get("slot"):
        return None
    return Pin(
        str(raw.get("version", "")),
        str(raw.get("modelVersionUid", "")),
        str(raw.get("digest", "")),
        str(raw["slot"]),
    )


def accepted(annotations: dict[str, Any]) -> dict[str, str]:
    """variant -> sha256 prefix the user accepted for a re-created ModelVersion."""
    out: dict[str, str] = {}
    for part in str(annotations.get(R.ACCEPT_REPLACED_ANNOTATION, "")).split(","):
        variant, _, prefix = part.strip().partition("=")
        if variant and len(prefix) >= 12:
            out[variant] = prefix.lower()
    return out


def taken(uid: str, obj: dict[str, Any] | None) -> str:
    """Why an object of a child's name is not ours to write ("" when it is ours or absent)."""
    if obj is None:
        return ""
    ctl = controller_of(obj)
    if ctl is not None and ctl[0] == uid:
        return ""
    owner = f"ModelEndpoint {ctl[1]}" if ctl else "nobody we know"
    return f"{obj['kind']} {obj['metadata']['name']} already exists and is controlled by {owner}"


def transient(e: ApiException) -> bool:
    """Worth retrying with backoff (no answer, the server's fault, throttled): reported as
    ChildApplyRetrying (progress), and the reconcile raises after its status is written."""
    return e.status is None or e.status >= 500 or e.status == 429


def api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)[:1024]
    except (ValueError, AttributeError):
        return f"{e.status} {e.reason}"


def policy_refusal(f: Floors, spec: ModelEndpointSpec) -> str | None:
    """What of the spec the platform's policies refuse (hosts, tolerations), as one message; None: nothing."""
    tolerations = [t.to_k8s() for t in (spec.placement.tolerations if spec.placement else [])]
    problems = endpoint_violations(f, spec.routing.hosts, tolerations)
    a = spec.strategy.canary.analysis if spec.strategy is not None else None
    if a is not None:
        problems += analysis_violations(f, seconds(a.interval), [m.to_k8s() for m in a.metrics])
    return "; ".join(problems) if problems else None


def policed(rf: RolloutFacts, spec: ModelEndpointSpec, f: Floors) -> RolloutFacts:
    """A rollout's facts under the platform's floors: requiredStage raised to the policy's minimum, and
    why a success earns no promotion (a free query, an untrusted source, a threshold too loose)."""
    refused = None
    if spec.strategy is not None and spec.strategy.canary.promote_on_success:
        a = spec.strategy.canary.analysis
        refused = promotion_untrusted(f, [m.to_k8s() for m in a.metrics] if a else [])
    return replace(
        rf, required_stage=effective_required_stage(rf.required_stage, f), promotion_refused=refused
    )
