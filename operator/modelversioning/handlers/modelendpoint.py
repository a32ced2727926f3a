"""ModelEndpoint reconciler: gather -> decide -> act.

gather: read the endpoint, its ModelVersions, its slots (per-version Deployment + Service) and its
        routes from the watch-fed Store into ``domain.endpoint_plan.EndpointFacts``, rendering the
        desired slot of every variant on the way (pure renderers);
decide: ``endpoint_plan.decide`` (pure) returns the plan;
act:    apply the desired slots (one variant's API error never stops the others), write the route
        or leave it alone, delete drained slots; then ``endpoint_plan.report`` (pure) gives the
        conditions and Events, and one status patch is sent if anything changed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.modelversion import ModelVersionSpec, expected_name
from modelversioning.api.settings import Settings
from modelversioning.api.wire import PROMOTION_ANNOTATION, ROLLOUT_RECORD_ANNOTATION
from modelversioning.domain import conditions as cond
from modelversioning.domain import endpoint_plan as plan_
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.rollout import registry_update
from modelversioning.domain.stages import Stage
from modelversioning.domain.version_plan import next_promotion
from modelversioning.handlers import platform
from modelversioning.handlers.drift import diff, status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import (
    DEPLOYMENT,
    MODELENDPOINT,
    MODELVERSION,
    ROUTE_RESOURCES,
    SERVICE,
    Conflict,
    Kube,
    counting_writes,
)
from modelversioning.handlers.rollout import RolloutResult, plan_rollout
from modelversioning.handlers.store import Store, controller_of
from modelversioning.handlers.workqueue import Requeue, is_drift_check
from modelversioning.render import EndpointRef, RenderError, RouteInput, VariantTarget, render_deployment
from modelversioning.render.routers import UnknownRouter, get_router, router_names
from modelversioning.render.service import render_service

log = logging.getLogger(__name__)

KIND = "ModelEndpoint"


def deployment_state(dep: dict[str, Any] | None) -> plan_.SlotFacts:
    """A slot's Deployment as observed: Available with all its replicas, and why not."""
    if dep is None:
        return plan_.SlotFacts(name="")
    name = dep["metadata"]["name"]
    st = dep.get("status") or {}
    want = int((dep.get("spec") or {}).get("replicas", 1) or 0)
    ready = int(st.get("readyReplicas") or 0)

    def state(ok: bool, why: str) -> plan_.SlotFacts:
        return plan_.SlotFacts(name, True, ok, ready, want, why)

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


@dataclass
class Gathered:
    facts: plan_.EndpointFacts
    spec: ModelEndpointSpec
    ref: EndpointRef
    slots: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # variant -> (Deployment, Service) desired
    conflicts: dict[str, str]  # variant -> why its slot name is taken
    rollout: RolloutResult | None = None


def _epoch(ts: str) -> float:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _rfc3339(t: float) -> str:
    """Milliseconds, rounded up: a drain's `since` read back is never earlier than it was (whole
    seconds cut a 1 s grace period to as little as 0.2 s)."""
    t = math.ceil(t * 1000 - 1e-3) / 1000  # (a time read back from milliseconds stays as it is)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _accepted(annotations: dict[str, Any]) -> dict[str, str]:
    """variant -> sha256 prefix the user accepted for a re-created ModelVersion."""
    out: dict[str, str] = {}
    for part in str(annotations.get(R.ACCEPT_REPLACED_ANNOTATION, "")).split(","):
        variant, _, prefix = part.strip().partition("=")
        if variant and len(prefix) >= 12:
            out[variant] = prefix.lower()
    return out


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

    def reconcile(self, namespace: str, name: str) -> None:
        if self.skip_unchanged(namespace, name):
            metrics.DRIFT_SKIPPED.labels(KIND).inc()
            return
        instrumented(KIND, self._reconcile_recorded, namespace, name)

    def skip_unchanged(self, namespace: str, name: str) -> bool:
        """A drift check's reconcile of an endpoint whose last reconcile settled (wrote nothing) and
        whose every input in the cache is still at the same resourceVersion: it would decide the same
        from the same cache, so it is not run. At 2,000 endpoints the drift check's reconciles were
        8.5 s of CPU, competing with the weight changes that arrived meanwhile. A change to any input
        (the endpoint, a version, a child, a route, our write becoming observed) runs it again, and a
        reconcile a watch event asked for always runs."""
        reads = self._settled.get((namespace, name))
        return reads is not None and is_drift_check() and self.store.unchanged(reads)

    def _reconcile_recorded(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._settled.pop(key, None)
        with self.store.recording() as reads, counting_writes() as writes:
            settled = self._reconcile(namespace, name)  # raises Requeue or an error: not settled
        if settled and writes[0] == 0:
            self._settled[key] = tuple(dict.fromkeys(reads))  # each read once (~13 per endpoint)

    def _reconcile(self, namespace: str, name: str) -> bool:
        """True: a steady state reached without anything time-based (no rollout, no requeue)."""
        body = self.store.get(KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.forget_endpoint(namespace, name)
            return False  # children are garbage-collected through their owner references
        status: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = ModelEndpointSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            self._invalid(body, status, validation_message(e))
            return False
        g = self.gather(body, spec)
        plan = plan_.decide(g.facts)
        outcome, transient = self.act(g, plan)
        if outcome.route_error is not None:
            plan = plan_.route_not_written(g.facts, plan)
        rep = with_rollout(plan_.report(g.facts, plan, outcome, _previous(status)), g.rollout)
        self._finish(body, status, self._status(g, plan, rep), rep)
        self._metrics(g, plan)
        if g.rollout is not None:
            self._record_rollout(g, g.rollout)
        if transient:
            raise transient
        waits = [t for t in (plan.requeue_after, g.rollout.requeue_after if g.rollout else None) if t]
        if waits:
            raise Requeue(min(waits), "draining or rolling out")
        return g.rollout is None

    # ------------------------------------------------------------------------------------ gather
    def gather(self, body: dict[str, Any], spec: ModelEndpointSpec) -> Gathered:
        """Facts from the watch cache (and the rollout's measurements when one is due)."""
        md = body["metadata"]
        ns = md["namespace"]
        ref = EndpointRef(name=md["name"], namespace=ns, uid=md.get("uid", ""))
        status = body.get("status") or {}
        variants, slots, conflicts = self._variants(ref, spec, status, md.get("annotations") or {})
        rollout = plan_rollout(
            body,
            spec,
            {v.name: (v.mv.stage, v.mv.verified) if v.mv else (None, False) for v in variants},
            {v.name: (v.pin.version, v.pin.slot) for v in variants if v.pin is not None},
            self.settings,
            self.clock(),
        )
        if rollout is not None:  # the rollout's step weights are what the traffic plan aims for now
            variants = [
                replace(v, weight=rollout.weights.get(v.name, v.weight), below_ok=v.name == rollout.below_ok)
                for v in variants
            ]
        routed, known, router_problem = self._routes(ref, spec.routing.router)
        owned = {n for k in ("Deployment", "Service") for n in self.store.owned_names(k, ns, ref.uid)}
        caps = platform.capabilities(self.store, spec, ns, self.settings)  # the router's, on this platform
        facts = plan_.EndpointFacts(
            required_stage=spec.required_stage,
            variants=tuple(variants),
            previous_weights={k: int(w) for k, w in (status.get("effectiveWeights") or {}).items()},
            allow_major_mix=spec.allow_major_version_mix,
            router=spec.routing.router,
            router_problem=router_problem,
            owned_slots=frozenset(owned),
            routed=routed,
            routes_known=known,
            draining={
                str(d.get("name")): _epoch(str(d.get("since", ""))) for d in status.get("draining") or []
            },
            now=self.clock(),
            drain_seconds=self.settings.serving.drain_seconds,
            mirror_supported=caps.can_mirror,
            writes_route=caps.writes_route,
            why_no_mirror=caps.why_no_mirror,
        )
        return Gathered(facts, spec, ref, slots, conflicts, rollout)

    def _variants(
        self, ref: EndpointRef, spec: ModelEndpointSpec, status: dict[str, Any], annotations: dict[str, Any]
    ) -> tuple[list[plan_.VariantFacts], dict[str, tuple[Any, Any]], dict[str, str]]:
        """Per variant: its ModelVersion, the slot spec asks for (rendered, with its live Deployment),
        the slot it is pinned to; also the rendered children and the slots someone else holds."""
        ns = ref.namespace
        old = {str(v.get("name")): v for v in status.get("variants") or []}
        accepted = _accepted(annotations)
        mirror = spec.mirror.variant if spec.mirror else None
        variants, slots, conflicts = [], {}, {}
        # each object read once per reconcile (a read unpickles a copy; the pinned slot and version
        # are usually the desired ones)
        versions: dict[str, tuple[Any, Any, Any]] = {}
        deployments: dict[str, dict[str, Any] | None] = {}

        def version(name: str) -> tuple[Any, Any, Any]:
            if name not in versions:
                versions[name] = self._version(ns, name)
            return versions[name]

        def deployment(slot: str) -> dict[str, Any] | None:
            if slot not in deployments:
                deployments[slot] = self.store.get("Deployment", ns, slot)
            return deployments[slot]

        for v in spec.variants:
            mv, mv_spec, problem = version(expected_name(spec.model, v.version))
            desired = None
            if mv_spec is not None:
                dep = render_deployment(
                    ref, spec, v, mv_spec, self.settings.serving, policy=self.settings.artifacts
                )
                slot = dep["metadata"]["name"]
                live = deployment(slot)
                taken = self._taken(ref, live) or self._taken(ref, self.store.get("Service", ns, slot))
                if taken:
                    conflicts[v.name] = taken
                slots[v.name] = (dep, render_service(dep, spec.port))
                desired = deployment_state(live) if live is not None else plan_.SlotFacts(slot)
            pin = _pin((old.get(v.name) or {}).get("serving"))
            pinned = pinned_mv = None
            if pin is not None:
                pinned = deployment_state(deployment(pin.slot))
                pinned_mv = version(expected_name(spec.model, pin.version))[0]
            acc = accepted.get(v.name)
            accept = mv is not None and acc is not None and mv.digest.startswith(acc)
            variants.append(
                plan_.VariantFacts(
                    v.name, v.version, v.weight, v.replicas, v.name == mirror, mv, problem,
                    desired, pin, pinned, pinned_mv, accept, min_replicas=v.min_replicas,
                )
            )  # fmt: skip
        return variants, slots, conflicts

    def _version(
        self, ns: str, mv_name: str
    ) -> tuple[plan_.VersionFacts | None, ModelVersionSpec | None, tuple[str, str] | None]:
        body = self.store.get("ModelVersion", ns, mv_name)
        if body is None:
            return None, None, (R.MISSING_VERSION, f"ModelVersion {mv_name} does not exist in namespace {ns}")
        try:
            spec = ModelVersionSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            return (
                None,
                None,
                (R.INVALID_VERSION, f"ModelVersion {mv_name} is invalid: {validation_message(e)}"),
            )
        st = body.get("status") or {}
        vc = cond.get(st.get("conditions"), "ArtifactVerified") or {}
        verified = (
            vc.get("status") == TRUE and (st.get("artifact") or {}).get("digest") == spec.artifact.sha256
        )
        facts = plan_.VersionFacts(
            name=mv_name,
            uid=str(body["metadata"].get("uid", "")),
            version=spec.version,
            digest=spec.artifact.sha256,
            verified=verified,
            verify_reason=str(vc.get("reason", "")),
            stage=st.get("stage"),
        )
        return facts, spec, None

    @staticmethod
    def _taken(ref: EndpointRef, obj: dict[str, Any] | None) -> str:
        if obj is None:
            return ""
        ctl = controller_of(obj)
        if ctl is not None and ctl[0] == ref.uid:
            return ""
        owner = f"ModelEndpoint {ctl[1]}" if ctl else "nobody we know"
        return f"{obj['kind']} {obj['metadata']['name']} already exists and is controlled by {owner}"

    def _routes(
        self, ref: EndpointRef, router_name: str
    ) -> tuple[dict[str, int], bool, tuple[str, str] | None]:
        """(Service -> weight in the observed routes, are those complete?, router problem)."""
        enabled = self.settings.serving.enabled_routers
        problem = None
        try:
            get_router(router_name)
            if router_name not in enabled:
                problem = (
                    R.ROUTER_DISABLED,
                    f"router {router_name!r} is not enabled in this operator (enabled: {', '.join(enabled)})",
                )
        except UnknownRouter as e:
            problem = (R.UNKNOWN_ROUTER, str(e))
        routed: dict[str, int] = {}
        known = problem is None
        for rname in router_names():
            res = ROUTE_RESOURCES.get(rname)
            if res is None or rname not in enabled:
                continue  # not watched
            for route in self.store.owned(res.kind, ref.namespace, ref.uid):
                if not self.store.is_observed(res.kind, ref.namespace, route["metadata"]["name"]):
                    known = False  # our last write is not visible through the watch yet
                for svc, w in get_router(rname).services(route).items():
                    routed[svc] = routed.get(svc, 0) + w
        return routed, known, problem

    # --------------------------------------------------------------------------------------- act
    def act(self, g: Gathered, plan: plan_.Plan) -> tuple[plan_.Outcome, Exception | None]:
        errors: dict[str, tuple[str, str]] = {}
        transient: Exception | None = None
        for d in plan.variants:
            if not d.apply or d.name not in g.slots:
                continue
            if d.name in g.conflicts:
                errors[d.name] = (R.CHILD_CONFLICT, g.conflicts[d.name])
                continue
            dep, svc = g.slots[d.name]
            dep["spec"]["replicas"] = d.replicas
            try:
                self._write(dep)
                self._write(svc)
            except Conflict as e:
                errors[d.name] = (R.CHILD_CONFLICT, f"{e}: an object of that name exists and is not ours")
            except ApiException as e:
                errors[d.name] = (R.CHILD_REJECTED, _api_message(e))
                if _transient(e):
                    transient = e
        route_error, route_msg, route_transient = self._route(g, plan)
        transient = transient or route_transient
        deleted = []
        for slot in plan.delete:
            log.info("deleting drained slot %s/%s", g.ref.namespace, slot)
            for res in (DEPLOYMENT, SERVICE):
                self.kube.delete(res, g.ref.namespace, slot)
                self.store.delete(res.kind, g.ref.namespace, slot)
            deleted.append(slot)
        return plan_.Outcome(errors, route_error, route_msg, tuple(deleted)), transient

    def _route(self, g: Gathered, plan: plan_.Plan) -> tuple[tuple[str, str] | None, str, Exception | None]:
        """Write the route if the plan says so; delete routes of other routers.
        ((reason, message) when the route was not written, description, transient API error)."""
        name = g.spec.routing.router
        if plan.declared_problems or g.facts.router_problem is not None:
            return None, "", None  # leave every route alone
        router = get_router(name)
        if plan.write_route:
            dests = [
                VariantTarget(d.variant, d.slot, g.spec.model, d.version, d.digest, d.weight)
                for d in plan.destinations
            ]
            m = plan.mirror
            mirror = VariantTarget(m.variant, m.slot, g.spec.model, m.version, m.digest, 0) if m else None
            pct = g.spec.mirror.percent if g.spec.mirror else 0
            inp = RouteInput(g.ref, g.spec, dests, mirror, pct, policy=self.settings.routing)
            try:
                desired = router.render(inp)
            except RenderError as e:
                return (R.INVALID_SPEC, str(e)), "", None
            if desired is not None:
                written, problem, transient = self._write_route(g.ref, desired)
                if problem is not None:
                    return problem, "", transient
                if written:
                    metrics.ROUTE_UPDATES.labels(g.ref.namespace, g.ref.name, name).inc()
        for rname, res in ROUTE_RESOURCES.items():
            if rname != name and rname in self.settings.serving.enabled_routers:
                for obj in self.store.owned(res.kind, g.ref.namespace, g.ref.uid):
                    # the watch's DELETED event removes it from the cache: until then it still counts
                    # as pointing at its slots, so they are not deleted under a gateway that uses it
                    self.kube.delete(res, g.ref.namespace, obj["metadata"]["name"])
        return None, router.describe(), None

    def _write_route(
        self, ref: EndpointRef, desired: dict[str, Any]
    ) -> tuple[bool, tuple[str, str] | None, Exception | None]:
        """(written, problem, transient error). Never over an object of the route's name that is not
        ours; what the API server refuses becomes the endpoint's condition, not an exception that
        would leave status (and every later change, rollback included) waiting behind it."""
        md = desired["metadata"]
        taken = self._taken(ref, self.store.get(desired["kind"], md["namespace"], md["name"]))
        if taken:
            return False, (R.CHILD_CONFLICT, f"{taken}; the route is not written"), None
        try:
            return self._write(desired), None, None
        except Conflict:
            msg = f"{desired['kind']} {md['name']} already exists and is not ours; the route is not written"
            return False, (R.CHILD_CONFLICT, msg), None
        except ApiException as e:
            msg = f"{desired['kind']} {md['name']}: {_api_message(e)}"
            return False, (R.CHILD_REJECTED, msg), (e if _transient(e) else None)

    def _write(self, desired: dict[str, Any]) -> bool:
        """Create, or put back what drifted. Never touches an object another controller owns."""
        md = desired["metadata"]
        actual = self.store.get(desired["kind"], md["namespace"], md["name"])
        if actual is not None and not diff(desired, actual):
            return False
        if actual is None:
            written = self.kube.create(desired)
        else:
            log.info("%s %s/%s drifted (%s); applying", desired["kind"], md["namespace"], md["name"],
                     ", ".join(diff(desired, actual)[:5]))  # fmt: skip
            written = self.kube.apply(desired)
        self.store.upsert(desired["kind"], written, observed=False)  # read-your-writes, not yet observed
        return True

    def _record_rollout(self, g: Gathered, ro: RolloutResult) -> None:
        """Act on domain.rollout.registry_update: annotate the canary's ModelVersion."""
        strategy = g.spec.strategy
        canary = g.spec.variant(strategy.canary.variant) if strategy else None
        if strategy is None or canary is None:
            return
        mv_name = expected_name(g.spec.model, canary.version)
        mv = self.store.get("ModelVersion", g.ref.namespace, mv_name)
        if mv is None:
            return
        stage = str((mv.get("status") or {}).get("stage") or "candidate")
        nxt = next_promotion(Stage(stage)) if stage in {s.value for s in Stage} else None
        update = registry_update(
            ro.outcome,
            endpoint=g.ref.name,
            at=_rfc3339(g.facts.now),
            stage=stage,
            spec_stage=str((mv.get("spec") or {}).get("stage") or "candidate"),
            promote_on_success=strategy.canary.promote_on_success,
            next_stage=nxt.value if nxt else None,
        )
        if update is None:
            return
        record, grant = update
        ann: dict[str, str | None] = {ROLLOUT_RECORD_ANNOTATION: json.dumps(record)}
        if grant:
            ann[PROMOTION_ANNOTATION] = json.dumps(grant)
        try:
            written = self.kube.annotate(MODELVERSION, g.ref.namespace, mv_name, ann)
            self.store.upsert("ModelVersion", written, observed=False)  # read-your-writes
        except ApiException as e:  # the record is worth a retry, not a failed reconcile of the route
            log.warning("could not record the rollout on %s: %s", mv_name, _api_message(e))

    # ------------------------------------------------------------------------------------ status
    def _status(self, g: Gathered, plan: plan_.Plan, rep: plan_.Report) -> dict[str, Any]:
        out = []
        for v, d in zip(g.facts.variants, rep.variants, strict=True):
            entry: dict[str, Any] = {
                "name": v.name,
                "version": v.version,
                "modelVersion": expected_name(g.spec.model, v.version),
                "desiredWeight": v.weight,
                "effectiveWeight": 0 if v.mirror else int(plan.weights.get(v.name, 0)),
                "replicas": v.replicas,
                "readyReplicas": (v.desired.ready_replicas if v.desired else 0),
                "artifactVerified": bool(v.mv and v.mv.verified),
                "eligible": d.eligible,
                "reason": d.reason,
                "message": d.message[:1024],
            }
            if v.mv is not None:
                entry["stage"] = v.mv.stage
                entry["digest"] = v.mv.digest
            if v.mirror:
                entry["mirror"] = True
            pin = d.serving or (v.pin if v.pinned is not None and v.pinned.exists else None)
            if pin is not None:
                entry["serving"] = {
                    "version": pin.version,
                    "modelVersionUid": pin.uid,
                    "digest": pin.digest,
                    "slot": pin.slot,
                }
            out.append({k: x for k, x in entry.items() if x is not None})
        return {
            "variants": out,
            "effectiveWeights": {k: int(w) for k, w in plan.weights.items()},
            "traffic": _summary(plan, g),
            "router": g.spec.routing.router,
            "draining": [{"name": s, "since": _rfc3339(t)} for s, t in sorted(plan.draining.items())],
            "rollout": g.rollout.status if g.rollout else None,
        }

    def _finish(
        self, body: dict[str, Any], old: dict[str, Any], new: dict[str, Any], rep: plan_.Report
    ) -> None:
        md = body["metadata"]
        gen = int(md.get("generation") or 0)
        new = {
            **{k: v for k, v in old.items() if k not in new and k != "conditions"},
            **new,
            "observedGeneration": gen,
            "conditions": cond.merge_conditions(old.get("conditions"), rep.conditions, gen),
        }
        for key in ("draining", "rollout"):
            if not new.get(key):
                new.pop(key, None)
        if status_changed(old, new):
            try:
                stored = self.kube.patch_status(MODELENDPOINT, md["namespace"], md["name"], new, old)
            except ApiException as e:
                if e.status != 404:
                    raise
                self.store.delete(KIND, md["namespace"], md["name"])  # deleted meanwhile: nothing to report
                return
            self.store.upsert(KIND, stored)  # read-your-writes: servedBy and eligibility see it at once
        for type_, reason, message in rep.events:
            self.kube.event(body, type_, reason, message)
        if old.get("effectiveWeights") != new["effectiveWeights"] or _served(old) != _served(new):
            self.enqueue_versions(md["namespace"], (body.get("spec") or {}).get("model", ""))

    def _invalid(self, body: dict[str, Any], status: dict[str, Any], msg: str) -> None:
        c = Cond("Ready", FALSE, R.INVALID_SPEC, msg)
        prev = cond.get(status.get("conditions"), "Ready") or {}
        events = () if (prev.get("reason"), prev.get("message")) == (R.INVALID_SPEC, msg) else (
            ("Warning", R.INVALID_SPEC, msg),
        )  # fmt: skip
        self._finish(body, status, {"effectiveWeights": status.get("effectiveWeights") or {}},
                     plan_.Report((c,), events, ()))  # fmt: skip

    def _metrics(self, g: Gathered, plan: plan_.Plan) -> None:
        """One series per variant and the version it serves now; series of other versions go."""
        ns, name, model = g.ref.namespace, g.ref.name, g.spec.model
        effective, desired = {}, {}
        for v, d in zip(g.facts.variants, plan.variants, strict=True):
            if d.serving is not None and not v.mirror:
                effective[(v.name, d.serving.version)] = plan.weights.get(v.name, 0)
            desired[(v.name, v.version)] = v.weight
        metrics.set_endpoint_weights(ns, name, model, effective, desired)
        ro = g.rollout
        metrics.set_rollout(
            ns, name, ro.status.get("phase") if ro else None, ro.status.get("step") if ro else None
        )
        if ro is not None:
            measured = ro.outcome.measured
            rollback = time.time() - measured[-1].at if ro.outcome.failed_now and measured else None
            metrics.record_analysis(ns, name, [(m.metric, m.verdict, m.value) for m in measured], rollback)


def with_rollout(rep: plan_.Report, rollout: RolloutResult | None) -> plan_.Report:
    if rollout is None:
        return plan_.finish_report(rep, (), ())
    return plan_.finish_report(rep, rollout.conditions, rollout.events)


def _transient(e: ApiException) -> bool:
    """Worth retrying with backoff (no answer, the server's fault, throttled): the refusal is still
    reported, and the reconcile raises after its status is written."""
    return e.status is None or e.status >= 500 or e.status == 429


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)[:1024]
    except (ValueError, AttributeError):
        return f"{e.status} {e.reason}"


def _pin(raw: Any) -> plan_.Pin | None:
    if not isinstance(raw, dict) or not raw.get("slot"):
        return None
    return plan_.Pin(
        str(raw.get("version", "")),
        str(raw.get("modelVersionUid", "")),
        str(raw.get("digest", "")),
        str(raw["slot"]),
    )


def _previous(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        str(c.get("type")): (str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions") or []
    }


def _served(status: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (str(v.get("name")), str(v.get("version")), str((v.get("serving") or {}).get("version")))
        for v in status.get("variants") or []
    }


def _summary(plan: plan_.Plan, g: Gathered) -> str:
    parts = []
    for v, d in zip(g.facts.variants, plan.variants, strict=True):
        if v.mirror:
            continue
        served = d.serving.version if d.serving else v.version
        parts.append(f"{v.name}@{served}={plan.weights.get(v.name, 0)}")
    names = {v.name for v in g.facts.variants}
    parts += [f"{n}={w}" for n, w in plan.weights.items() if n not in names and w > 0]
    if g.spec.mirror is not None and plan.mirror is not None:
        parts.append(f"mirror:{plan.mirror.variant}@{plan.mirror.version}={g.spec.mirror.percent}%")
    return ",".join(parts)


__all__ = ["ModelEndpointReconciler", "deployment_state"]
