"""ModelVersion reconciler: gather -> decide -> act.

``gather`` reads the watch-fed Store and the verifier's bookkeeping into a frozen
``VersionFacts``; ``domain.version_plan.decide`` returns a ``VersionPlan`` (status, Events,
finalizers, verification, requeue); ``act`` executes it: finalizer first, one status patch when it
differs, Events, metrics. Verification (fetch and hash) runs in a thread pool off the reconcile
path; a finished attempt requeues its object.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.analysis.production import Scope
from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, Settings
from modelversioning.api.settings import Verification as VerificationSettings
from modelversioning.api.wire import (
    CREATED_BY_ANNOTATION,
    CREATED_BY_OPERATOR,
    DELETION_PROTECTED_ANNOTATION,
    IN_USE_FINALIZER,
    MODEL,
    PROMOTION_ANNOTATION,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
    ROLLOUT_RECORD_ANNOTATION,
)
from modelversioning.artifacts import (
    FairExecutor,
    redact_uri,
    verify_artifact,
    verify_in_child,
)
from modelversioning.domain.approvals import ApprovalContext, serving_digest
from modelversioning.domain.quarantine import Mark, in_force
from modelversioning.domain.runtime_catalog import resolve_runtime
from modelversioning.domain.stages import Stage, StageGraph
from modelversioning.domain.version_facts import (
    Serving,
    VerifierFacts,
    VerifyAction,
    VerifyResult,
    VersionFacts,
    VersionPlan,
    VersionPolicy,
)
from modelversioning.domain.version_plan import decide
from modelversioning.domain.version_stage import Grant, effective_request
from modelversioning.handlers.admission import observed
from modelversioning.handlers.catalog import runtime_facts
from modelversioning.handlers.contract import contract_facts
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import MODELVERSION, Conflict, Kube
from modelversioning.handlers.modelfacts import archive_request, floors, registry_facts
from modelversioning.handlers.production import ProductionRecorder, policy_of
from modelversioning.handlers.store import Store
from modelversioning.handlers.trust import NO_TRUST, TrustPlan, UnreadableTrust, plan_for, resolve
from modelversioning.handlers.workqueue import Requeue

log = logging.getLogger(__name__)

KIND = "ModelVersion"
__all__ = [
    "IN_USE_FINALIZER",
    "UNATTRIBUTED",
    "ModelVersionReconciler",
    "make_verifier",
    "served_by",
    "stage_actor",
]

Key = tuple[str, str]  # (namespace, name)
# (uri, sha256, credentials, sizeBytes[, trust material]) -> result; the production one streams and
# hashes (make_verifier); the trust material is passed only when a trust policy applies
Verifier = Callable[..., VerifyResult]


def make_verifier(policy: ArtifactPolicy, *, in_process: bool = False) -> Verifier:
    """The production verifier: stream + hash through modelversioning.artifacts, in a child process
    with a memory limit that is killed at the deadline (``in_process``: in this process, tests). With
    trust material the signature is checked against the digests computed while hashing."""

    def verify(uri: str, sha: str, secret: Any, size: int | None = None, trust: Any = None) -> VerifyResult:
        run = verify_artifact if in_process else verify_in_child
        r = run(uri, sha, policy=policy, secret_data=secret, expected_size=size, trust=trust)
        return VerifyResult(
            str(r.reason.value), r.message, r.transient, r.actual, r.size_bytes, r.files,
            layout=r.layout, content_digest=r.content_digest,
            contents=tuple((f.path, f.sha256, f.size_bytes) for f in r.contents),
            signature=r.signature.to_dict() if r.signature is not None else None,
            io_signature=r.io_signature,
        )  # fmt: skip

    return verify


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


def grant_from(annotations: dict[str, Any]) -> Grant | None:
    raw = annotations.get(PROMOTION_ANNOTATION)
    if not raw:
        return None
    try:
        g = json.loads(raw)
        return Grant(Stage(g["to"]), Stage(g["from"]), Stage(g["specStage"]), str(g["by"]), str(g["reason"]))
    except (ValueError, KeyError, TypeError):
        return None


def rollouts_from(annotations: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    raw = annotations.get(ROLLOUT_RECORD_ANNOTATION)
    if not raw:
        return ()
    try:
        rec = json.loads(raw)
    except ValueError:
        return ()
    return (rec,) if isinstance(rec, dict) and rec.get("endpoint") and rec.get("at") else ()


UNATTRIBUTED = f"unknown (no {REQUESTED_BY_ANNOTATION} for this stage)"


def stage_actor(body: dict[str, Any], requested: str, *, enforced: bool = False) -> str:
    """Who asked for `requested`: the requested-by annotation when it was given for that stage.

    ``enforced`` (observed now: the chart's requested-by policy is bound and denies; handlers.admission):
    every change of spec.stage by anyone but the operator carried requested-by == the authenticated
    user, so the annotation is an identity; without it the actor is UNATTRIBUTED, never a field manager
    (a name the client chooses: ``--field-manager=ceo@example.com``, or a later server-side apply of
    the same stage, would be recorded). Not enforced (no admission, or its binding deleted as
    break-glass): the annotation is any string, marked unverified, and the field manager that last
    wrote spec.stage is the fallback, marked unverified too."""
    md = body.get("metadata") or {}
    ann = md.get("annotations") or {}
    who = ann.get(REQUESTED_BY_ANNOTATION)
    if who and ann.get(REQUESTED_STAGE_ANNOTATION, requested) == requested:
        return str(who) if enforced else f"{who} (unverified requested-by)"
    if enforced:
        return UNATTRIBUTED
    best: tuple[str, str] | None = None
    for mf in md.get("managedFields") or []:
        fields = (mf.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:stage" in fields:
            t = mf.get("time") or ""
            if best is None or t >= best[0]:
                op = mf.get("operation", "").lower()
                best = (t, f"{mf.get('manager', 'unknown')} ({op}; unverified field manager)")
    return best[1] if best else "unknown"


def quarantine_mark(ann: dict[str, Any], enforced: bool) -> Mark:
    """The quarantine annotations as a Mark (domain.quarantine). quarantined-by is an identity only while
    the chart's requested-by policy is observed enforced (it refuses a change of the quarantine
    annotations that does not name the authenticated user); otherwise it is any string, marked so."""
    who = str(ann.get(R.QUARANTINED_BY_ANNOTATION) or "")
    if who and not enforced:
        who = f"{who} (unverified quarantined-by)"
    return Mark(
        in_force(ann.get(R.QUARANTINED_ANNOTATION)),
        str(ann.get(R.QUARANTINE_REASON_ANNOTATION) or ""),
        who or f"unknown (no {R.QUARANTINED_BY_ANNOTATION})",
    )


# ---- verification bookkeeping (the verifier's side of gather and act) ---------------------------


@dataclass
class _Attempt:
    uid: str
    generation: int
    future: Future[VerifyResult] | None = None
    result: VerifyResult | None = None
    failures: int = 0
    finished: float = 0.0
    started: float = field(default_factory=time.monotonic)


class Verifications:
    """Fetch-and-hash jobs in a small thread pool, one per object at a time; a finished job
    requeues its object. Holds each object's last result until the plan says to forget it."""

    def __init__(
        self,
        kube: Kube,
        verifier: Verifier,
        requeue: Callable[[str, str], None],
        settings: VerificationSettings | None = None,
    ) -> None:
        self.kube = kube
        self.verifier = verifier
        self.requeue = requeue
        cfg = settings or VerificationSettings()
        # bounded, and fair: one namespace's slow artifacts never hold another namespace's verification
        self.pool = FairExecutor(cfg.workers, cfg.per_namespace, name="verify")
        self._attempts: dict[Key, _Attempt] = {}
        self._lock = threading.Lock()
        # re-verify now: a slot's pod refused the verified digest (key -> the sha256 the pod read), and
        # the last such digest asked for, so the same refusal asks once (no loop when the store is fine)
        self._recheck: dict[Key, str] = {}
        self._asked: dict[Key, str] = {}

    def request_recheck(self, key: Key, found: str) -> bool:
        """A pod's init container read `found` where this version's digest was verified: fetch and hash
        it again at once (the object is requeued). Once per (version, digest found)."""
        with self._lock:
            if self._asked.get(key) == found:
                return False
            self._asked[key] = self._recheck[key] = found
        self.requeue(*key)
        return True

    def recheck_requested(self, key: Key) -> str | None:
        with self._lock:
            return self._recheck.get(key)

    def recheck_taken(self, key: Key) -> None:
        """The decision that read the request was made (a fetch started, or none was needed)."""
        with self._lock:
            self._recheck.pop(key, None)

    def facts(self, key: Key, uid: str) -> VerifierFacts:
        """What the verifier knows about this object (harvesting a finished job)."""
        with self._lock:
            att = self._attempts.get(key)
            if att is None or att.uid != uid:
                return VerifierFacts()
            fresh = False
            if att.future is not None:
                if not att.future.done():
                    running_for = time.monotonic() - att.started
                    return VerifierFacts(running=True, failures=att.failures, running_for=running_for)
                att.result = _result_of(key, att.future)
                att.future = None
                att.finished = time.monotonic()
                att.failures = att.failures + 1 if att.result.transient and not att.result.ok else 0
                fresh = True
            age = time.monotonic() - att.finished
            return VerifierFacts(False, att.result, att.generation, att.failures, age, fresh=fresh)

    def start(
        self,
        key: Key,
        uid: str,
        generation: int,
        model: str,
        spec: ModelVersionSpec,
        trust: TrustPlan = NO_TRUST,
    ) -> None:
        with self._lock:
            prev = self._attempts.get(key)
            failures = prev.failures if prev is not None and prev.uid == uid else 0
            att = _Attempt(uid, generation, failures=failures)
            self._attempts[key] = att
            att.future = self.pool.submit_for(key[0], self._run, key, model, spec, trust)
            # requeue once the future is done (not from inside the job: it would race with done())
            att.future.add_done_callback(partial(self._done, key))

    def forget(self, key: Key, *, gone: bool = False) -> None:
        with self._lock:
            self._attempts.pop(key, None)
            if gone:
                self._recheck.pop(key, None)
                self._asked.pop(key, None)

    def _done(self, key: Key, _future: Future[VerifyResult]) -> None:
        self.requeue(*key)

    def _run(self, key: Key, model: str, spec: ModelVersionSpec, trust: TrustPlan = NO_TRUST) -> VerifyResult:
        ns = key[0]
        t0 = time.monotonic()
        creds: dict[str, str] | None = None
        if spec.artifact.secret_ref is not None:
            ref = spec.artifact.secret_ref.name
            try:
                creds = self.kube.read_secret(ns, ref)
            except ApiException as e:
                what = "does not exist" if e.status == 404 else f"cannot be read ({e.status} {e.reason})"
                return VerifyResult(R.ACCESS_DENIED, f"credentials Secret {ref!r} {what}", transient=True)
        args: tuple[Any, ...] = (spec.artifact.uri, spec.artifact.sha256, creds, spec.artifact.size_bytes)
        if trust.facts.active:  # the signers' keys and roots, by reference, as the credentials are read
            try:
                args += (resolve(self.kube, trust, spec.artifact.signature_uri),)
            except UnreadableTrust as e:
                return VerifyResult(R.ACCESS_DENIED, str(e), transient=True)
        result = self.verifier(*args)
        metrics.VERIFY_SECONDS.labels(ns).observe(time.monotonic() - t0)
        metrics.VERIFICATIONS.labels(ns, model, result.reason).inc()
        if result.ok and result.size_bytes:  # a failure's size is what some other URL returned: no oracle
            metrics.BYTES_HASHED.labels(ns).inc(result.size_bytes)
        return result


def _result_of(key: Key, future: Future[VerifyResult]) -> VerifyResult:
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - reported as a transient failure
        log.exception("verification of %s/%s crashed", *key)
        return VerifyResult(R.FETCH_FAILED, f"verification crashed: {type(e).__name__}", transient=True)


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
