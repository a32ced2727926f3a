"""ModelVersion reconciler: gather -> decide -> act.

``gather`` reads the watch-fed Store and the verifier's bookkeeping into a frozen
``VersionFacts``; ``domain.version_plan.decide`` returns a ``VersionPlan`` (status, Events,
finalizers, verification, requeue); ``act`` executes it: finalizer first, one status patch when it
differs, Events, metrics. Verification (fetch and hash) runs in a thread pool off the reconcile
path; a finished attempt requeues its object (``handlers.verification``). What the annotations say (who
asked for the stage, the quarantine mark) is read by ``handlers.version_annotations``; the production
record's gather and measurements are ``handlers.production``'s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.analysis.production import Scope
from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import Settings
from modelversioning.api.wire import (
    CREATED_BY_ANNOTATION,
    CREATED_BY_OPERATOR,
    DELETION_PROTECTED_ANNOTATION,
    MODEL,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
)
from modelversioning.artifacts import redact_uri
from modelversioning.domain.approvals import ApprovalContext, serving_digest
from modelversioning.domain.runtime_catalog import resolve_runtime
from modelversioning.domain.stages import StageGraph
from modelversioning.domain.version_facts import (
    Serving,
    VerifyAction,
    VersionFacts,
    VersionPlan,
    VersionPolicy,
)
from modelversioning.domain.version_plan import decide
from modelversioning.domain.version_stage import effective_request
from modelversioning.handlers.admission import observed
from modelversioning.handlers.catalog import runtime_facts
from modelversioning.handlers.contract import contract_facts
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import MODELVERSION, Conflict, Kube
from modelversioning.handlers.modelfacts import archive_request, floors, registry_facts
from modelversioning.handlers.production import ProductionRecorder, policy_of
from modelversioning.handlers.store import Store
from modelversioning.handlers.trust import NO_TRUST, TrustPlan, plan_for
from modelversioning.handlers.verification import Verifications, Verifier
from modelversioning.handlers.version_annotations import (
    grant_from,
    quarantine_mark,
    rollouts_from,
    stage_actor,
)
from modelversioning.handlers.workqueue import Requeue

log = logging.getLogger(__name__)

KIND = "ModelVersion"
__all__ = ["ModelVersionReconciler", "served_by"]


def served_by(store: Store, namespace: str, model: str, version: str) -> list[dict[str, Any]]:
    """Endpoints (and variants) that use model@version: the version whose slot carries a variant's
    traffic now (status.variants[].serving, with its effective weight), and the version the spec asks
    for (weight 0 until it takes over). Both hold the ModelVersion's deletion."""
    out: list[dict[str, Any]] = []
    for (_, ep_name), ep in store.of_model("ModelEndpoint", namespace, model):
        spec = ep.get("spec") or {}
        st = ep.get("status") or {}
        eff = st.get("effectiveWeights") or {}
        mirror = (spec.get("mirror") or {}).get("variant")
        st_variants = {str(v.get("name")): v for v in st.get("variants") or []}
        for v in spec.get("variants") or []:
            name = str(v.get("name"))
            serving = str((st_variants.get(name, {}).get("serving") or {}).get("version") or "")
            if serving == version or (not serving and v.get("version") == version):
                weight = int(eff.get(name, 0))
            elif v.get("version") == version:
                weight = 0  # deployed (or being deployed) beside the slot that serves now
            else:
                continue
            entry: dict[str, Any] = {"endpoint": ep_name, "variant": name, "weight": weight}
            if name == mirror:
                entry["mirror"] = True
            pin = st_variants.get(name, {}).get("serving") or {}
            if pin.get("slot") and pin.get("version") == version:
                entry["slot"] = str(pin["slot"])
            out.append(entry)
        spec_names = {str(v.get("name")) for v in spec.get("variants") or []}
        for name, vs in st_variants.items():  # removed from the spec, still routed while nothing is ready
            if name not in spec_names and vs.get("version") == version and eff.get(name, 0) > 0:
                out.append({"endpoint": ep_name, "variant": name, "weight": int(eff[name])})
    return sorted(out, key=lambda e: (e["endpoint"], e["variant"]))


# ---- the reconciler ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gathered:
    body: dict[str, Any]
    spec: ModelVersionSpec | None  # None when it does not validate
    facts: VersionFacts
    trust: TrustPlan = NO_TRUST  # the trust policies that apply (their references, for the verifier)
    scope: Scope | None = None  # whose production figures (handlers.production)


class ModelVersionReconciler:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        settings: Settings,
        verifier: Verifier,
        enqueue_endpoints: Callable[[str, str], None],
        requeue: Callable[[str, str], None],
    ) -> None:
        self.kube = kube
        self.store = store
        v = settings.verification
        self.policy = VersionPolicy(
            StageGraph.from_config(settings.stage_graph),
            v.recheck_seconds,
            v.retry_initial_seconds,
            v.retry_max_seconds,
            region=settings.region,
            production=policy_of(settings),
        )
        self.enqueue_endpoints = enqueue_endpoints  # (namespace, model)
        self.protect_without_model = settings.registry.protect_versions_without_model
        self.verifications = Verifications(kube, verifier, requeue, settings.verification)
        self.production = ProductionRecorder.from_settings(settings, store, requeue)
        # (namespace, model) whose Model a reconcile is creating now: one create per name at a time
        self._creating: set[tuple[str, str]] = set()
        self._creating_lock = threading.Lock()

    def reconcile(self, namespace: str, name: str) -> None:
        instrumented(KIND, self._reconcile, namespace, name)

    def _reconcile(self, namespace: str, name: str) -> None:
        got = self.gather(namespace, name)
        if got is None:  # gone: nothing to write, nothing to remember
            self.verifications.forget((namespace, name), gone=True)
            return
        self.act(got, decide(got.facts, self.policy, datetime.now(UTC)))

    # ---- gather: the Store and the verifier, read once ------------------------------------------
    def gather(self, namespace: str, name: str) -> Gathered | None:
        body = self.store.get(KIND, namespace, name)
        if body is None:
            return None
        md = body["metadata"]
        raw = body.get("spec") or {}
        model, version = str(raw.get("model", "")), str(raw.get("version", ""))
        common: dict[str, Any] = {
            "name": name,
            "generation": int(md.get("generation") or 0),
            "status": dict(body.get("status") or {}),
            "deleting": bool(md.get("deletionTimestamp")),
            "finalizers": tuple(md.get("finalizers") or ()),
            "model": model,
            "version": version,
            "serving": tuple(Serving(**s) for s in served_by(self.store, namespace, model, version)),
        }
        try:
            spec = ModelVersionSpec.model_validate(raw)
        except ValidationError as e:
            return Gathered(body, None, VersionFacts(invalid=validation_message(e), **common))
        ann = md.get("annotations") or {}
        why = ann.get(REASON_ANNOTATION) or f"spec.stage set to {spec.stage}"
        admission = observed(self.store)  # the cluster's bindings now, never a chart value
        asked_by = stage_actor(body, spec.stage, enforced=admission.requested_by)
        requested, actor, why = effective_request(
            spec.stage, asked_by, why, grant_from(ann), self.policy.graph
        )
        requested, actor, why = archive_request(requested, actor, why, ann, spec.stage)  # retention
        floors_now = floors(self.store, namespace)
        trust = plan_for(self.store, namespace, spec.model, floors_now)
        # the runtime catalog's own gather -> decide step, here: the serving digest approvals bind covers it
        runtime = resolve_runtime(runtime_facts(self.store, namespace, spec, common["status"]))
        approval = ApprovalContext(
            spec.artifact.sha256,
            serving_digest(raw, runtime.resolved),
            authors=frozenset(a for a in (spec.lineage.author,) if a),
            requesters=frozenset(r for r in (asked_by, actor, ann.get(REQUESTED_BY_ANNOTATION)) if r),
            recorded=admission.approvals,
            approver_groups=floors_now.approver_groups,
        )
        record, scope = self.production.gather(namespace, spec.model, spec.version, str(md.get("uid") or ""))
        facts = VersionFacts(
            production=record,
            in_use_policy=admission.in_use,
            requested=requested,
            digest=spec.artifact.sha256,
            shown_uri=redact_uri(spec.artifact.uri),
            missing_lineage=tuple(spec.lineage.missing_for_production()),
            actor=actor,
            why=why,
            rollouts=rollouts_from(ann),
            protected=ann.get(DELETION_PROTECTED_ANNOTATION),
            revoked=ann.get(R.REVOKED_ANNOTATION),
            quarantine=quarantine_mark(ann, enforced=admission.requested_by),
            verifier=self.verifications.facts((namespace, name), md.get("uid", "")),
            recheck=self.verifications.recheck_requested((namespace, name)),
            registry=registry_facts(
                self.store, namespace, body, spec, self.policy.graph, self.protect_without_model, approval
            ),
            serving_digest=approval.serving_digest,
            image=spec.runtime.image if spec.runtime is not None else runtime.image,
            runtime=runtime,
            pinned_images_from=floors_now.pinned_images_from,
            trust=trust.facts,
            contract=contract_facts(self.store, namespace, name, spec, floors_now),
            **common,
        )
        return Gathered(body, spec, facts, trust, scope)

    # ---- act: execute the plan, decide nothing --------------------------------------------------
    def act(self, got: Gathered, plan: VersionPlan) -> None:
        body, facts = got.body, got.facts
        md = body["metadata"]
        ns, name = md["namespace"], md["name"]
        if plan.create_model is not None:  # the registry's record first: it may then record this version
            self._create_model(body, plan.create_model)
        if plan.verify is VerifyAction.START and got.spec is not None:
            key, uid = (ns, name), md.get("uid", "")
            self.verifications.start(key, uid, facts.generation, facts.model, got.spec, got.trust)
        elif plan.verify is VerifyAction.FORGET:
            self.verifications.forget((ns, name))
        if facts.recheck is not None:
            self.verifications.recheck_taken((ns, name))
        if plan.finalizers is not None:
            # first: it is checked against the resourceVersion we read; the status merge patch is not
            self.kube.set_finalizers(MODELVERSION, ns, name, list(plan.finalizers), md["resourceVersion"])
        if plan.annotations:  # before the status: a version is never past candidate and unprotected
            self.store.upsert(
                KIND, self.kube.annotate(MODELVERSION, ns, name, dict(plan.annotations)), observed=False
            )
        old = dict(body.get("status") or {})
        if plan.status is not None and status_changed(old, plan.status):
            stored = self.kube.patch_status(MODELVERSION, ns, name, plan.status, old)
            # read-your-writes: related reconciles (servedBy, eligibility) see this status at once
            self.store.upsert(KIND, stored)
        for ev in plan.events:
            self.kube.event(body, ev.type, ev.reason, ev.message)
        for t in plan.transitions:
            metrics.TRANSITIONS.labels(ns, facts.model, t.src, t.dst, t.outcome).inc()
        if plan.warning:
            log.warning("%s/%s: %s", ns, name, plan.warning)
        if plan.notify_endpoints:
            self.enqueue_endpoints(ns, facts.model)
        if plan.measure and got.scope is not None:  # the production record: on the pool, never here
            self.production.submit(ns, name, str(md.get("uid") or ""), got.scope, plan.measure)
        if plan.requeue_after is not None:
            raise Requeue(plan.requeue_after, "verification or production record: look again")

    def _create_model(self, body: dict[str, Any], model: str) -> None:
        """The registry's record of a model name that has none: a Model with the default policy (an
        empty spec), marked as created by the operator. Created only when absent; a conflict means
        someone else created it meanwhile, which is as good. The operator never writes a Model's spec:
        a user's later apply of that Model adopts it, and its status (the record) stays."""
        ns = body["metadata"]["namespace"]
        # One create per name at a time, and none once it is cached: the fleet benchmark's versions of
        # one model, reconciled at once by several workers, made 5,342 creates for 2,000 Models (3,342
        # answered 409, each a write through admission). A version that skips it stays pending; the
        # Model's watch event queues the model's versions again.
        with self._creating_lock:
            if (ns, model) in self._creating or self.store.has(MODEL.kind, ns, model):
                return
            self._creating.add((ns, model))
        try:
            self._create_model_once(ns, model)
        finally:
            with self._creating_lock:
                self._creating.discard((ns, model))

    def _create_model_once(self, ns: str, model: str) -> None:
        obj = {
            "apiVersion": MODEL.api_version,
            "kind": MODEL.kind,
            "metadata": {
                "name": model,
                "namespace": ns,
                "annotations": {CREATED_BY_ANNOTATION: CREATED_BY_OPERATOR},
            },
            "spec": {},
        }
        try:
            written = self.kube.create(obj)
        except Conflict:
            return
        self.store.upsert(MODEL.kind, written, observed=False)  # read-your-writes: created once
        # no Event (it was ModelCreated): the Model's created-by annotation says who made it and why
