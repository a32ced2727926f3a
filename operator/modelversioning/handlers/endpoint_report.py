"""What a ModelEndpoint reconcile reports once it acted: the status (one merge patch when it changed, then
the Events; the versions re-decide servedBy when what serves changed), the metrics of its variants,
rollout and RollbackReady, the rollout's record on the canary's ModelVersion, and the versions whose
verified digest a slot's pod refused (re-verified at once). Nothing here decides: the status is
``domain.endpoint_status``'s, the record ``domain.endpoint_rollout``'s."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.api.wire import PROMOTION_ANNOTATION, ROLLOUT_RECORD_ANNOTATION, expected_name
from modelversioning.domain import conditions as cond
from modelversioning.domain import endpoint_status, rollback_readiness
from modelversioning.domain.endpoint_facts import EndpointFacts
from modelversioning.domain.endpoint_plan import Plan
from modelversioning.domain.endpoint_rollout import RolloutRecord
from modelversioning.domain.endpoint_status import EndpointStatus
from modelversioning.handlers import endpoint_parse as parse
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.kube import MODELENDPOINT, MODELVERSION, Kube
from modelversioning.handlers.store import Store
from modelversioning.render import EndpointRef

log = logging.getLogger(__name__)

KIND = "ModelEndpoint"

__all__ = ["record_metrics", "record_rollout", "refused_digests", "write_status"]


def write_status(
    kube: Kube,
    store: Store,
    body: dict[str, Any],
    old: dict[str, Any],
    built: EndpointStatus,
    enqueue_versions: Callable[[str, str], None],
) -> None:
    """One merge patch when the status changed; then the Events; the versions re-decide servedBy."""
    md = body["metadata"]
    gen = int(md.get("generation") or 0)
    new = {
        **{k: v for k, v in old.items() if k not in built.fields and k != "conditions"},
        **built.fields,
        "observedGeneration": gen,
        "conditions": cond.merge_conditions(old.get("conditions"), built.conditions, gen),
    }
    for key in ("draining", "rollout", "closed"):
        if not new.get(key):
            new.pop(key, None)
    if "region" not in built.fields:  # the operator's region unset (now): no region recorded
        new.pop("region", None)
    if status_changed(old, new) and not endpoint_status.progress_only(old, new):
        try:
            stored = kube.patch_status(MODELENDPOINT, md["namespace"], md["name"], new, old)
        except ApiException as e:
            if e.status != 404:
                raise
            store.delete(KIND, md["namespace"], md["name"])  # deleted meanwhile: nothing to report
            return
        store.upsert(KIND, stored)  # read-your-writes: servedBy and eligibility see it at once
    for type_, reason, message in built.events:
        kube.event(body, type_, reason, message)
    if endpoint_status.serving_changed(old, new):
        enqueue_versions(md["namespace"], (body.get("spec") or {}).get("model", ""))


def record_metrics(
    ref: EndpointRef, model: str, facts: EndpointFacts, plan: Plan, built: EndpointStatus
) -> None:
    """One series per variant and the version it serves now; series of other versions go."""
    ns, name = ref.namespace, ref.name
    effective, desired = {}, {}
    for v, d in zip(plan.aimed, built.variants, strict=True):
        if d.serving is not None and not v.mirror:
            effective[(v.name, d.serving.version)] = built.weights.get(v.name, 0)
        desired[(v.name, v.version)] = v.weight
    metrics.set_endpoint_weights(ns, name, model, effective, desired)
    recorded = facts.previous_conditions.get(rollback_readiness.CONDITION)  # kept when not decided now
    ready = (built.rollback.status, built.rollback.reason) if built.rollback is not None else recorded
    if ready is not None:
        metrics.set_rollback_ready(ns, name, *ready)
    ro = plan.rollout
    state = ro.outcome.state if ro else None
    metrics.set_rollout(ns, name, state.phase if state else None, state.step if state else None)
    if ro is not None:
        measured = ro.outcome.measured
        rollback = time.time() - measured[-1].at if ro.outcome.failed_now and measured else None
        metrics.record_analysis(ns, name, [(m.metric, m.verdict, m.value) for m in measured], rollback)


def record_rollout(kube: Kube, store: Store, namespace: str, rec: RolloutRecord) -> None:
    """Write the record the plan decided (and the stage the rollout earned) on the canary's version."""
    ann: dict[str, str | None] = {ROLLOUT_RECORD_ANNOTATION: json.dumps(rec.record)}
    if rec.grant:
        ann[PROMOTION_ANNOTATION] = json.dumps(rec.grant)
    try:
        written = kube.annotate(MODELVERSION, namespace, rec.version, ann)
        store.upsert("ModelVersion", written, observed=False)  # read-your-writes
    except ApiException as e:  # the record is worth a retry, not a failed reconcile of the route
        log.warning("could not record the rollout on %s: %s", rec.version, parse.api_message(e))


def refused_digests(model: str, f: EndpointFacts) -> list[tuple[str, str]]:
    """(ModelVersion, sha256 found) of every slot whose init container refused the digest it pins: the
    desired slot's version, or the pinned slot's (a scale-up of the serving slot)."""
    out = []
    for v in f.variants:
        for slot, version in ((v.desired, v.version), (v.pinned, v.pin.version if v.pin else "")):
            problem = slot.pod_problem if slot is not None else None
            if problem is not None and problem.reason == R.DIGEST_MISMATCH and version:
                out.append((expected_name(model, version), problem.found or ""))
    return list(dict.fromkeys(out))
