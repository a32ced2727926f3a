"""ModelEndpoint reconciler: gather -> decide -> act.

gather: read the endpoint, its ModelVersions, its slots (per-version Deployment + Service) and its
        routes from the watch-fed Store into ``domain.endpoint_facts.EndpointFacts``, rendering the
        desired slot of every variant on the way (pure renderers); with a strategy also the rollout's
        facts: status.rollout, the action annotations, the canary's version and the measurements due
        now (``handlers.rollout``);
decide: ``endpoint_plan.decide`` (pure) returns the whole plan, the rollout's included;
act:    apply the desired slots (one variant's API error never stops the others), write the route
        or leave it alone, delete drained slots; ``endpoint_status.build_status`` (pure) makes the whole
        status from facts, plan and what act observed; one status patch is sent if anything changed,
        then the Events and the rollout's record on the canary's ModelVersion (``handlers.endpoint_report``;
        the writes of children and routes: ``handlers.endpoint_write``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.analysis.pool import AnalysisPool
from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.settings import Settings
from modelversioning.api.wire import expected_name
from modelversioning.domain import endpoint_history, endpoint_plan, endpoint_status, rollback_readiness
from modelversioning.domain.endpoint_delete import decide_deletion
from modelversioning.domain.endpoint_facts import (
    ApiError,
    ArtifactCheck,
    EndpointFacts,
    Outcome,
    RecordTarget,
    RolloutFacts,
    SlotFacts,
    VariantFacts,
)
from modelversioning.domain.endpoint_plan import Plan
from modelversioning.domain.endpoint_status import EndpointStatus
from modelversioning.domain.platform_policy import Floors, effective_required_stage
from modelversioning.domain.timestamps import epoch
from modelversioning.handlers import endpoint_delete as deletion
from modelversioning.handlers import endpoint_parse as parse
from modelversioning.handlers import endpoint_report as report
from modelversioning.handlers import endpoint_route, platform
from modelversioning.handlers.endpoint_inputs import EndpointInputs
from modelversioning.handlers.endpoint_parse import deployment_state, policed, policy_refusal
from modelversioning.handlers.endpoint_route import Seen
from modelversioning.handlers.endpoint_write import current, write
from modelversioning.handlers.instrument import ROUTE_REACTION, instrumented
from modelversioning.handlers.kube import (
    Conflict,
    Kube,
    PreconditionFailed,
    counting_writes,
)
from modelversioning.handlers.modelfacts import floors
from modelversioning.handlers.rollback_probe import ArtifactProbes
from modelversioning.handlers.rollout import rollout_facts
from modelversioning.handlers.runtime_contract import RuntimeProbes, runtime_check
from modelversioning.handlers.store import Store, kept
from modelversioning.handlers.workqueue import Requeue, is_drift_check
from modelversioning.render import EndpointRef
from modelversioning.render.naming import closed_service_name
from modelversioning.render.service import render_service

log = logging.getLogger(__name__)

KIND = "ModelEndpoint"


@dataclass
class Gathered:
    facts: EndpointFacts
    spec: ModelEndpointSpec
    ref: EndpointRef
    slots: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # variant -> (Deployment, Service) desired
    conflicts: dict[str, str]  # variant -> why its slot name is taken
    recheck: float | None = None  # a slot's pod runs, not ready, short of serving.notReadySeconds
    seen: Seen = field(default_factory=dict)  # the slots' children and the routes, as gather read them
    route_written_at: float | None = None  # act: when the route write returned (the route history's time)

    def route_facts(self) -> endpoint_route.RouteFacts:
        return endpoint_route.RouteFacts(self.ref, self.spec, self.facts.router_problem)


class ModelEndpointReconciler:
    def __init__(
        self, kube: Kube, store: Store, settings: Settings, enqueue_versions: Callable[[str, str], None]
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.enqueue_versions = enqueue_versions  # (namespace, model)
        self.clock: Callable[[], float] = time.time
        # endpoint -> the cache reads of its last reconcile, when that reconcile wrote nothing, asked
        # for no retry and had no rollout (nothing time-based): its inputs then, for skip_unchanged
        self._settled: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.inputs = EndpointInputs()  # its versions and slots, made once per distinct input
        self.analysis: AnalysisPool | None = None  # measurements run there (the Operator's); None: none
        self.runtime_probes: RuntimeProbes | None = None  # OIP metadata reads (the Operator's); None: none
        # (namespace, ModelVersion, sha256 found): a slot's pod refused that version's verified digest;
        # the version is fetched and hashed again at once (the Operator's: ModelVersion Verifications)
        self.reverify: Callable[[str, str, str], object] = lambda _ns, _mv, _found: None
        # is each endpoint's fallback artifact still there (RollbackReady; the Operator's); None: not asked
        self.fallback_probes: ArtifactProbes | None = None

    def reconcile(self, namespace: str, name: str) -> None:
        ROUTE_REACTION.started(namespace, name)
        if self.skip_unchanged(namespace, name):
            metrics.DRIFT_SKIPPED.labels(KIND).inc()
            return
        try:
            instrumented(KIND, self._reconcile_recorded, namespace, name)
        finally:
            ROUTE_REACTION.finished()

    def skip_unchanged(self, namespace: str, name: str) -> bool:
        """A drift check's reconcile of an endpoint whose last reconcile settled (wrote nothing) and
        whose every input in the cache is still at the same resourceVersion: it would decide the same
        from the same cache, so it is not run. At 2,000 endpoints the drift check's reconciles were
        8.5 s of CPU, competing with the weight changes that arrived meanwhile. A change to any input
        (the endpoint, a version, a child, a route, our write becoming observed) runs it again, and a
        reconcile a watch event asked for always runs."""
        reads = self._settled.get((namespace, name))
        probe_due = self.fallback_probes is not None and self.fallback_probes.due(namespace, name)
        return reads is not None and is_drift_check() and not probe_due and self.store.unchanged(reads)

    def _reconcile_recorded(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._settled.pop(key, None)
        with self.store.recording() as reads, counting_writes() as writes:
            settled = self._reconcile(namespace, name)  # raises Requeue or an error: not settled
        if settled and writes[0] == 0:
            self._settled[key] = kept(reads)  # each read once (~13 per endpoint)

    def _reconcile(self, namespace: str, name: str) -> bool:
        """True: a steady state reached without anything time-based (no rollout, no requeue)."""
        body = self.store.get(KIND, namespace, name)
        if body is None:
            metrics.forget_endpoint(namespace, name)
            if self.fallback_probes is not None:
                self.fallback_probes.forget(namespace, name)
            return False
        if body["metadata"].get("deletionTimestamp"):
            self._delete(body)  # route first, then the slots after the drain grace
            return False
        deletion.ensure_finalizer(self.kube, self.store, body)
        status: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = ModelEndpointSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            self._status(body, status, endpoint_status.invalid_status(status, validation_message(e)))
            return False
        floor = floors(self.store, body["metadata"]["namespace"])  # read once per reconcile
        if refused := policy_refusal(floor, spec):
            self._status(body, status, endpoint_status.invalid_status(status, refused, R.POLICY_VIOLATION))
            return False
        g = self.gather(body, spec, floor)
        plan = endpoint_plan.decide(g.facts)
        outcome, retry = self.act(g, plan)
        for mv_name, found in report.refused_digests(g.spec.model, g.facts):
            self.reverify(g.ref.namespace, mv_name, found)
        built = endpoint_status.build_status(g.facts, plan, outcome)
        self._status(body, status, built)
        report.record_metrics(g.ref, g.spec.model, g.facts, plan, built)
        if plan.rollout is not None and plan.rollout.record is not None:
            report.record_rollout(self.kube, self.store, g.ref.namespace, plan.rollout.record)
        if retry is not None:
            raise retry  # the work queue retries with backoff; the status says ChildApplyRetrying
        if plan.requeue_after:
            raise Requeue(min(plan.requeue_after, g.recheck or plan.requeue_after), "draining or rolling out")
        if g.recheck is not None:  # the kubelet reports nothing more while a pod stays not ready
            raise Requeue(g.recheck, "a slot's pod is not ready yet: report it when it is due")
        return plan.rollout is None

    def _status(self, body: dict[str, Any], old: dict[str, Any], built: EndpointStatus) -> None:
        report.write_status(self.kube, self.store, body, old, built, self.enqueue_versions)

    def _delete(self, body: dict[str, Any]) -> None:
        """A deleted endpoint: gather -> decide_deletion -> act (handlers.endpoint_delete)."""
        md = body["metadata"]
        facts = deletion.gather(self.store, self.settings, body, self.clock())
        after = deletion.act(self.kube, self.store, body, decide_deletion(facts))
        if after:
            raise Requeue(after, "deleting: route first, then the slots")
        metrics.forget_endpoint(md["namespace"], md["name"])

    # ------------------------------------------------------------------------------------ gather
    def gather(self, body: dict[str, Any], spec: ModelEndpointSpec, floor: Floors | None = None) -> Gathered:
        """Every fact from the watch cache; with a strategy also the rollout's, measurements included."""
        md = body["metadata"]
        ns = md["namespace"]
        floor = floor if floor is not None else floors(self.store, ns)
        ref = EndpointRef(name=md["name"], namespace=ns, uid=md.get("uid", ""))
        status = body.get("status") or {}
        now = self.clock()
        rechecks: list[float] = []
        seen: Seen = {}
        variants, slots, conflicts = self._variants(
            ref, spec, status, md.get("annotations") or {}, rechecks, seen
        )
        routed, known, router_problem = endpoint_route.observed(
            self.store, self.settings, ref, spec.routing.router, seen
        )
        owned = {n for k in ("Deployment", "Service") for n in self.store.owned_names(k, ns, ref.uid)}
        caps = platform.capabilities(self.store, spec, ns, self.settings)  # the router's, on this platform
        facts = EndpointFacts(
            required_stage=effective_required_stage(spec.required_stage, floor),
            variants=tuple(variants),
            previous_weights={k: int(w) for k, w in (status.get("effectiveWeights") or {}).items()},
            allow_major_mix=spec.allow_major_version_mix,
            router=spec.routing.router,
            router_problem=router_problem,
            owned_slots=frozenset(owned),
            routed=routed,
            routes_known=known,
            draining={
                str(d.get("name")): epoch(str(d.get("since", "")), now) for d in status.get("draining") or []
            },
            now=now,
            drain_seconds=self.settings.serving.drain_seconds,
            mirror_supported=caps.can_mirror,
            writes_route=caps.writes_route,
            why_no_mirror=caps.why_no_mirror,
            rollout=self._rollout(body, spec, variants, now, floor),
            previous_conditions=endpoint_status.previous_conditions(status),
            mirror_percent=spec.mirror.percent if spec.mirror else 0,
            previous_closed=str((status.get("closed") or {}).get("reason") or ""),
            closed_service=closed_service_name(ref.name),
            generation=int(md.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            history=endpoint_history.from_wire(status.get("routeHistory")),
            region=self.settings.region,
        )
        facts = replace(facts, fallback_artifact=self._fallback_artifact(ref, facts))
        return Gathered(facts, spec, ref, slots, conflicts, min(rechecks, default=None), seen)

    def _fallback_artifact(self, ref: EndpointRef, facts: EndpointFacts) -> ArtifactCheck:
        """The last probe's answer for the fallback's artifact (a new probe asked when one is due)."""
        if self.fallback_probes is None:
            return ArtifactCheck("")
        fb = rollback_readiness.choose_for(facts).fallback
        mv = self.store.get("ModelVersion", ref.namespace, fb.mv.name) if fb is not None and fb.mv else None
        return self.fallback_probes.check(ref.namespace, ref.name, fb, mv)

    def _rollout(
        self,
        body: dict[str, Any],
        spec: ModelEndpointSpec,
        variants: list[VariantFacts],
        now: float,
        floor: Floors,
    ) -> RolloutFacts | None:
        if spec.strategy is None:
            return None
        versions = {v.name: (v.mv.stage, v.mv.verified) if v.mv else (None, False) for v in variants}
        pins = {v.name: (v.pin.version, v.pin.slot) for v in variants if v.pin is not None}
        canary = spec.variant(spec.strategy.canary.variant)
        target = None
        if canary is not None:  # the canary's ModelVersion, for the record of a rollout that ends
            mv_name = expected_name(spec.model, canary.version)
            mv = self.store.get("ModelVersion", body["metadata"]["namespace"], mv_name)
            if mv is not None:
                stage = str((mv.get("status") or {}).get("stage") or "candidate")
                target = RecordTarget(mv_name, stage, str((mv.get("spec") or {}).get("stage") or "candidate"))
        rf = rollout_facts(body, spec, versions, pins, self.settings, now, target, self.analysis, self.clock)
        if rf is None:
            return None
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]  # the canary's runtime's word:
        uid = str(body["metadata"].get("uid", ""))
        rf = replace(
            rf, runtime=runtime_check(self.store, self.runtime_probes, ns, name, spec, variants, uid)
        )
        return policed(rf, spec, floor)

    def _variants(
        self,
        ref: EndpointRef,
        spec: ModelEndpointSpec,
        status: dict[str, Any],
        annotations: dict[str, Any],
        rechecks: list[float],
        seen: Seen,
    ) -> tuple[list[VariantFacts], dict[str, tuple[Any, Any]], dict[str, str]]:
        """Per variant: its ModelVersion, the slot spec asks for (rendered, with its live Deployment and
        what its pods report), the slot it is pinned to; also the rendered children and the slots
        someone else holds. `rechecks` gets when a slot's not-ready pod is due to be reported, `seen`
        the slots' children as read."""
        ns = ref.namespace
        old = {str(v.get("name")): v for v in status.get("variants") or []}
        accepted = parse.accepted(annotations)
        mirror = spec.mirror.variant if spec.mirror else None
        variants, slots, conflicts = [], {}, {}
        # each object read once per reconcile (a read unpickles a copy; the pinned slot and version
        # are usually the desired ones)
        versions: dict[str, tuple[Any, Any, Any]] = {}
        states: dict[str, SlotFacts] = {}
        now = self.clock()
        render = self.inputs.renderer(ref, spec, self.settings.serving, self.settings.artifacts)

        def version(name: str) -> tuple[Any, Any, Any]:
            if name not in versions:
                versions[name] = self.inputs.version(self.store, ns, name)
            return versions[name]

        def state(slot: str) -> SlotFacts:  # ours only with both children under our controller ref
            if slot not in states:
                dep, svc = self.store.get("Deployment", ns, slot), self.store.get("Service", ns, slot)
                seen.update(
                    {(k, slot): o for k, o in (("Deployment", dep), ("Service", svc)) if o is not None}
                )
                pods = self.store.of_slot("Pod", ns, slot) if dep is not None else []
                bound = self.settings.serving.not_ready_seconds
                st, recheck = parse.with_pods(
                    parse.slot_state(ref.uid, slot, dep, svc), dep, pods, now, bound
                )
                states[slot] = st
                rechecks.extend([recheck] if recheck is not None else [])
            return states[slot]

        for v in spec.variants:
            mv_name = expected_name(spec.model, v.version)
            mv, mv_spec, problem = version(mv_name)
            desired = None
            if mv_spec is not None:
                dep = render(v, mv_spec, mv.trust_json if mv else None, mv.content_digest if mv else "")
                desired = state(dep["metadata"]["name"])
                if desired.conflict:
                    conflicts[v.name] = desired.conflict
                slots[v.name] = (dep, render_service(dep, spec.port))
            pin = parse.pin((old.get(v.name) or {}).get("serving"))
            pinned = pinned_mv = None
            if pin is not None:
                pinned = state(pin.slot)
                pinned_mv = version(expected_name(spec.model, pin.version))[0]
            acc = accepted.get(v.name)
            accept = mv is not None and acc is not None and mv.digest.startswith(acc)
            variants.append(
                VariantFacts(
                    v.name, v.version, v.weight, v.replicas, v.name == mirror, mv, problem,
                    desired, pin, pinned, pinned_mv, accept, min_replicas=v.min_replicas, mv_name=mv_name,
                )
            )  # fmt: skip
        return variants, slots, conflicts

    # --------------------------------------------------------------------------------------- act
    def act(self, g: Gathered, plan: Plan) -> tuple[Outcome, Exception | None]:
        """Apply the slots, write the route, delete drained slots. (What was observed, the first API
        error worth a retry: raised once the status is written.)"""
        errors: dict[str, ApiError] = {}
        retry: Exception | None = None
        for d in plan.variants:
            if not d.apply or d.name not in g.slots:
                continue
            if d.name in g.conflicts:
                errors[d.name] = ApiError(R.CHILD_CONFLICT, g.conflicts[d.name])
                continue
            dep, svc = g.slots[d.name]
            dep["spec"]["replicas"] = d.replicas
            try:
                write(self.kube, self.store, dep, current(self.store, g.seen, dep))
                write(self.kube, self.store, svc, current(self.store, g.seen, svc))
            except PreconditionFailed as e:  # gone or re-created since gather: decided again on retry
                errors[d.name] = ApiError(R.CHILD_APPLY_RETRYING, str(e), transient=True)
                retry = e
            except Conflict as e:
                errors[d.name] = ApiError(
                    R.CHILD_CONFLICT, f"{e}: an object of that name exists and is not ours"
                )
            except ApiException as e:
                errors[d.name] = ApiError(R.CHILD_REJECTED, parse.api_message(e), parse.transient(e))
                if parse.transient(e):
                    retry = e
        route_error, route_msg, route_retry = self._route(g, plan)
        retry = retry or route_retry
        deleted = [slot for slot in plan.delete if deletion.delete_slot(self.kube, self.store, g.ref, slot)]
        return Outcome(errors, route_error, route_msg, tuple(deleted), g.route_written_at), retry

    def _route(self, g: Gathered, plan: Plan) -> tuple[ApiError | None, str, Exception | None]:
        """Write the route (or the closed route and what it needs), delete routes of other routers."""
        return endpoint_route.write_route(
            self.kube, self.store, self.settings, g.route_facts(), plan,
            lambda desired, actual: self._write_route(g, desired, actual),
            lambda desired: current(self.store, g.seen, desired),
        )  # fmt: skip

    def _write_route(self, g: Gathered, desired: dict[str, Any], actual: dict[str, Any] | None) -> bool:
        """write, for the route and its companions: the reaction is timed up to the first request; the
        time the write returned is the route history's (the last object written: the route itself)."""
        written = write(self.kube, self.store, desired, actual, sending=ROUTE_REACTION.sending)
        if written:
            g.route_written_at = self.clock()
        return written


__all__ = ["ModelEndpointReconciler", "deployment_state"]
