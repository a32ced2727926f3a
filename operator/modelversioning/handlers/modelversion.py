"""ModelVersion reconciler: artifact verification, gated stage transitions, audit history,
servedBy, and deletion safety.

Deciding is pure (domain.stages); this module gathers facts from the Store,
runs verifications off the reconcile path, and writes one status patch per cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.api.common import REASON_ANNOTATION, REQUESTED_BY_ANNOTATION, validation_message
from modelversioning.api.modelversion import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy, Settings
from modelversioning.artifacts import redact_uri, verify_artifact
from modelversioning.domain import conditions as cond
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.stages import GateFacts, Stage, StageGraph, decide_transition
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import MODELVERSION, Kube
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue

log = logging.getLogger(__name__)

KIND = "ModelVersion"
IN_USE_FINALIZER = "modelversioning.io/in-use"
REQUESTED_STAGE_ANNOTATION = "modelversioning.io/requested-stage"


class VerifyOutcome(Protocol):
    reason: str
    message: str
    transient: bool
    actual: str | None
    size_bytes: int | None
    files: int | None

    @property
    def ok(self) -> bool: ...


Verifier = Callable[[str, str, dict[str, str] | None], VerifyOutcome]


@dataclass
class _Attempt:
    uid: str
    generation: int
    future: Future[VerifyOutcome] | None
    outcome: VerifyOutcome | None = None
    failures: int = 0
    not_before: float = 0.0
    started: float = 0.0


@dataclass
class Outcome:
    reason: str
    message: str
    transient: bool
    actual: str | None = None
    size_bytes: int | None = None
    files: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason == "Verified"


def make_verifier(policy: ArtifactPolicy) -> Verifier:
    """The production verifier: stream + hash through modelversioning.artifacts."""

    def verify(uri: str, sha256: str, secret: dict[str, str] | None) -> VerifyOutcome:
        r = verify_artifact(uri, sha256, policy=policy, secret_data=secret)
        return Outcome(str(r.reason.value), r.message, r.transient, r.actual, r.size_bytes, r.files)

    return verify


def served_by(store: Store, namespace: str, model: str, version: str) -> list[dict[str, Any]]:
    """Endpoints (and variants) that serve model@version, from their spec and status."""
    out: list[dict[str, Any]] = []
    for (_, ep_name), ep in store.items("ModelEndpoint", namespace):
        spec = ep.get("spec") or {}
        if spec.get("model") != model:
            continue
        st = ep.get("status") or {}
        eff = st.get("effectiveWeights") or {}
        mirror = (spec.get("mirror") or {}).get("variant")
        seen = set()
        for v in spec.get("variants") or []:
            if v.get("version") == version:
                seen.add(v["name"])
                entry: dict[str, Any] = {
                    "endpoint": ep_name,
                    "variant": v["name"],
                    "weight": int(eff.get(v["name"], 0)),
                }
                if v["name"] == mirror:
                    entry["mirror"] = True
                out.append(entry)
        for vs in st.get("variants") or []:  # removed from spec but still routed
            if vs.get("version") == version and vs.get("name") not in seen and eff.get(vs.get("name"), 0) > 0:
                out.append({"endpoint": ep_name, "variant": vs["name"], "weight": int(eff[vs["name"]])})
    return sorted(out, key=lambda e: (e["endpoint"], e["variant"]))


def stage_actor(body: dict[str, Any], requested: str) -> str:
    md = body.get("metadata") or {}
    ann = md.get("annotations") or {}
    who = ann.get(REQUESTED_BY_ANNOTATION)
    if who and ann.get(REQUESTED_STAGE_ANNOTATION, requested) == requested:
        return str(who)
    best: tuple[str, str] | None = None
    for mf in md.get("managedFields") or []:
        fields = (mf.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:stage" in fields:
            t = mf.get("time") or ""
            if best is None or t >= best[0]:
                best = (t, f"{mf.get('manager', 'unknown')} ({mf.get('operation', '').lower()})".strip())
    return best[1] if best else "unknown"


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
        self.settings = settings
        self.verifier = verifier
        self.graph = StageGraph.from_config(settings.stage_graph)
        self.enqueue_endpoints = enqueue_endpoints  # (namespace, model)
        self.requeue = requeue  # (namespace, name): called from verifier threads when a result is in
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._attempts: dict[tuple[str, str], _Attempt] = {}
        self._lock = threading.Lock()

    # ---- verification, off the reconcile path ---------------------------------------------
    def _credentials(self, namespace: str, spec: ModelVersionSpec) -> dict[str, str] | None:
        if spec.artifact.secret_ref is None:
            return None
        return self.kube.read_secret(namespace, spec.artifact.secret_ref.name)

    def _run_verify(self, key: tuple[str, str], spec: ModelVersionSpec) -> VerifyOutcome:
        ns, name = key
        t0 = time.monotonic()
        try:
            creds = self._credentials(ns, spec)
        except ApiException as e:
            ref = spec.artifact.secret_ref.name if spec.artifact.secret_ref else "?"
            what = "does not exist" if e.status == 404 else f"cannot be read ({e.status} {e.reason})"
            return Outcome("AccessDenied", f"credentials Secret {ref!r} {what}", transient=True)
        outcome = self.verifier(spec.artifact.uri, spec.artifact.sha256, creds)
        metrics.VERIFY_SECONDS.labels(ns).observe(time.monotonic() - t0)
        metrics.VERIFICATIONS.labels(ns, spec.model, outcome.reason).inc()
        if outcome.size_bytes:
            metrics.BYTES_HASHED.labels(ns).inc(outcome.size_bytes)
        return outcome

    def _done(self, key: tuple[str, str], _future: Future[VerifyOutcome]) -> None:
        self.requeue(*key)

    def _verification(
        self, key: tuple[str, str], body: dict[str, Any], spec: ModelVersionSpec, status: dict[str, Any]
    ) -> tuple[Cond, dict[str, Any] | None, float | None]:
        """ArtifactVerified condition, status.artifact, and when to look again."""
        md = body["metadata"]
        uid, gen = md.get("uid", ""), int(md.get("generation") or 0)
        prev = cond.get(status.get("conditions"), "ArtifactVerified")
        prev_art = status.get("artifact")
        if (
            prev
            and prev.get("status") == TRUE
            and prev_art
            and prev_art.get("digest") == spec.artifact.sha256
        ):
            recheck = self.settings.verification.recheck_seconds
            verified_at = prev_art.get("verifiedAt", "")
            if not recheck or not _older_than(verified_at, recheck):
                return Cond("ArtifactVerified", TRUE, "Verified", prev.get("message", "")), prev_art, None
        if prev and prev.get("reason") == "DigestMismatch" and prev.get("observedGeneration") == gen:
            with self._lock:
                self._attempts.pop(key, None)
            return Cond("ArtifactVerified", FALSE, "DigestMismatch", prev.get("message", "")), None, None
        with self._lock:
            att = self._attempts.get(key)
            if att is None or att.uid != uid:
                att = _Attempt(uid=uid, generation=gen, future=None)
                self._attempts[key] = att
            now = time.monotonic()
            if att.future is None and now >= att.not_before:
                att.started = now
                att.future = self.pool.submit(self._run_verify, key, spec)
                # requeue once the future is done (not from inside the job: it would race with done())
                att.future.add_done_callback(partial(self._done, key))
            if att.future is not None and not att.future.done():
                return (
                    Cond(
                        "ArtifactVerified",
                        UNKNOWN,
                        "Verifying",
                        f"fetching and hashing {redact_uri(spec.artifact.uri)}",
                    ),
                    None,
                    None,
                )
            if att.future is not None:
                try:
                    att.outcome = att.future.result()
                except Exception as e:  # noqa: BLE001 - reported as a transient failure
                    log.exception("verification of %s/%s crashed", *key)
                    att.outcome = _Crash(f"verification crashed: {type(e).__name__}")
                att.future = None
                if att.outcome.ok or not att.outcome.transient:
                    att.failures = 0
                else:
                    att.failures += 1
                    v = self.settings.verification
                    delay = min(v.retry_max_seconds, v.retry_initial_seconds * 2 ** (att.failures - 1))
                    att.not_before = time.monotonic() + delay
            outcome = att.outcome
            assert outcome is not None
            if outcome.ok:
                self._attempts.pop(key, None)
                art: dict[str, Any] = {
                    "digest": outcome.actual or spec.artifact.sha256,
                    "verifiedAt": cond.now_rfc3339(),
                }
                if outcome.size_bytes is not None:
                    art["sizeBytes"] = outcome.size_bytes
                if outcome.files is not None:
                    art["files"] = outcome.files
                return Cond("ArtifactVerified", TRUE, "Verified", outcome.message), art, None
            if outcome.transient:
                wait = max(0.0, att.not_before - time.monotonic())
                msg = f"{outcome.message}; retrying in {wait:.0f}s (attempt {att.failures})"
                return Cond("ArtifactVerified", FALSE, outcome.reason, msg), None, wait + 0.1
            self._attempts.pop(key, None)
            return Cond("ArtifactVerified", FALSE, outcome.reason, outcome.message), None, None

    # ---- the reconcile ------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> None:
        instrumented(KIND, self._reconcile, namespace, name)

    def _reconcile(self, namespace: str, name: str) -> None:
        body = self.store.get(KIND, namespace, name)
        key = (namespace, name)
        if body is None:
            with self._lock:
                self._attempts.pop(key, None)
            return
        md = body["metadata"]
        gen = int(md.get("generation") or 0)
        status: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = ModelVersionSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            msg = validation_message(e)
            invalid = {
                **status,
                "observedGeneration": gen,
                "conditions": cond.merge_conditions(
                    status.get("conditions"), [Cond("Ready", FALSE, "InvalidSpec", msg)], gen
                ),
            }
            prev = cond.get(status.get("conditions"), "Ready")
            seen = prev is not None and prev.get("reason") == "InvalidSpec" and prev.get("message") == msg
            self._write(body, status, invalid, events=[] if seen else [("Warning", "InvalidSpec", msg)])
            return

        serving = served_by(self.store, namespace, spec.model, spec.version)
        if md.get("deletionTimestamp"):
            self._handle_deletion(body, status, serving, gen)
            return

        verified, art, retry_in = self._verification(key, body, spec, status)
        events: list[tuple[str, str, str]] = []
        prev_verified = cond.get(status.get("conditions"), "ArtifactVerified")
        if prev_verified is None or prev_verified.get("reason") != verified.reason:
            if verified.reason == "DigestMismatch":
                events.append(("Warning", "DigestMismatch", verified.message))
            elif verified.reason == "Verified":
                events.append(("Normal", "ArtifactVerified", verified.message))
            elif verified.status == FALSE:
                events.append(("Warning", verified.reason, verified.message))

        # Stage machine: walk toward the requested stage one allowed, gated hop at a time.
        history = list(status.get("history") or [])
        current = Stage(status["stage"]) if status.get("stage") else None
        requested = Stage(spec.stage)
        actor = stage_actor(body, spec.stage)
        ann = md.get("annotations") or {}
        why = ann.get(REASON_ANNOTATION) or f"spec.stage set to {spec.stage}"
        if current is None:
            current = Stage.CANDIDATE
            history.append(
                {
                    "to": current.value,
                    "at": cond.now_rfc3339(),
                    "reason": "Registered",
                    "actor": stage_actor(body, "candidate") if requested is Stage.CANDIDATE else actor,
                }
            )
        missing = spec.lineage.missing_for_production()
        facts = GateFacts(verified.status == TRUE, not missing, tuple(missing))
        stage_cond = Cond("StageTransition", TRUE, "InEffect", f"stage {current} is in effect")
        for _ in range(len(Stage)):
            if current == requested:
                break
            step = _next_hop(self.graph, current, requested)
            decision = decide_transition(current, step or requested, facts, self.graph)
            if not decision.allowed:
                waiting = verified.reason == "Verifying" and decision.reason == "ArtifactNotVerified"
                stage_cond = Cond(
                    "StageTransition",
                    UNKNOWN if waiting else FALSE,
                    decision.reason,
                    f"requested {requested}, staying in {current}: {decision.message}",
                )
                prev_st = cond.get(status.get("conditions"), "StageTransition")
                if not waiting and (
                    prev_st is None
                    or prev_st.get("reason") != decision.reason
                    or prev_st.get("status") != FALSE
                ):
                    events.append(("Warning", "StageTransitionBlocked", stage_cond.message))
                    metrics.TRANSITIONS.labels(
                        namespace, spec.model, current.value, requested.value, "blocked"
                    ).inc()
                break
            assert step is not None
            history.append(
                {
                    "from": current.value,
                    "to": step.value,
                    "at": cond.now_rfc3339(),
                    "reason": why,
                    "actor": actor,
                }
            )
            events.append(("Normal", "StageChanged", f"{current} -> {step} by {actor}: {why}"))
            metrics.TRANSITIONS.labels(namespace, spec.model, current.value, step.value, "made").inc()
            current = step
            stage_cond = Cond("StageTransition", TRUE, "InEffect", f"stage {current} is in effect")

        ready = Cond("Ready", TRUE, "Ready", f"{spec.model} {spec.version} is verified and {current}")
        if verified.status != TRUE:
            ready = Cond(
                "Ready", FALSE if verified.status == FALSE else UNKNOWN, verified.reason, verified.message
            )
        elif stage_cond.status == FALSE:
            ready = Cond("Ready", FALSE, stage_cond.reason, stage_cond.message)
        in_use = Cond(
            "InUse",
            TRUE if serving else FALSE,
            "Served" if serving else "NotServed",
            ", ".join(f"{s['endpoint']}/{s['variant']}={s['weight']}" for s in serving)
            or "no endpoint serves this version",
        )
        new: dict[str, Any] = {
            "observedGeneration": gen,
            "conditions": cond.merge_conditions(
                status.get("conditions"), [ready, verified, stage_cond, in_use], gen
            ),
            "stage": current.value,
            "history": history,
            "servedBy": serving,
        }
        if art is not None:
            new["artifact"] = art
        elif verified.reason != "Verifying" and verified.status == FALSE:
            pass  # a failed verification clears the verified record
        elif status.get("artifact") and verified.status != FALSE:
            new["artifact"] = status["artifact"]
        if not new["servedBy"]:
            del new["servedBy"]
        stage_before = status.get("stage")
        verified_before = (prev_verified or {}).get("status")
        # Finalizer first: it is checked against the resourceVersion we read; the status merge patch is not.
        self._ensure_finalizer(body, bool(serving))
        self._write(body, status, new, events)
        if stage_before != current.value or verified_before != verified.status:
            self.enqueue_endpoints(namespace, spec.model)
        if retry_in is not None:
            raise Requeue(retry_in, "transient verification failure")

    def _handle_deletion(
        self, body: dict[str, Any], status: dict[str, Any], serving: list[dict[str, Any]], gen: int
    ) -> None:
        md = body["metadata"]
        fins = list(md.get("finalizers") or [])
        if serving:
            users = ", ".join(sorted({s["endpoint"] for s in serving}))
            msg = f"deletion is held: still served by ModelEndpoint {users}; remove it from those endpoints first"  # noqa: E501
            held = {
                **status,
                "observedGeneration": gen,
                "servedBy": serving,
                "conditions": cond.merge_conditions(
                    status.get("conditions"), [Cond("Deleting", FALSE, "InUse", msg)], gen
                ),
            }
            prev = cond.get(status.get("conditions"), "Deleting")
            events = [] if prev and prev.get("message") == msg else [("Warning", "DeletionHeld", msg)]
            self._write(body, status, held, events)
            if IN_USE_FINALIZER not in fins:  # deletion raced with a new use: nothing more we can hold
                log.warning("%s/%s is being deleted while in use by %s", md["namespace"], md["name"], users)
            return
        if IN_USE_FINALIZER in fins:
            fins.remove(IN_USE_FINALIZER)
            self.kube.set_finalizers(MODELVERSION, md["namespace"], md["name"], fins, md["resourceVersion"])

    def _ensure_finalizer(self, body: dict[str, Any], in_use: bool) -> None:
        md = body["metadata"]
        fins = list(md.get("finalizers") or [])
        if in_use and IN_USE_FINALIZER not in fins:
            self.kube.set_finalizers(
                MODELVERSION, md["namespace"], md["name"], [*fins, IN_USE_FINALIZER], md["resourceVersion"]
            )
        elif not in_use and IN_USE_FINALIZER in fins:
            fins.remove(IN_USE_FINALIZER)
            self.kube.set_finalizers(MODELVERSION, md["namespace"], md["name"], fins, md["resourceVersion"])

    def _write(
        self,
        body: dict[str, Any],
        old: dict[str, Any],
        new: dict[str, Any],
        events: list[tuple[str, str, str]],
    ) -> None:
        md = body["metadata"]
        if status_changed(old, new):
            stored = self.kube.patch_status(MODELVERSION, md["namespace"], md["name"], new, old)
            # read-your-writes: related reconciles (servedBy, eligibility) see this status at once
            self.store.upsert(KIND, stored)
        for type_, reason, message in events:
            self.kube.event(body, type_, reason, message)


def _next_hop(graph: StageGraph, src: Stage, dst: Stage) -> Stage | None:
    """First hop of the shortest allowed path src -> dst (None if unreachable)."""
    frontier: list[tuple[Stage, Stage | None]] = [(src, None)]
    seen = {src}
    while frontier:
        nxt: list[tuple[Stage, Stage | None]] = []
        for node, first in frontier:
            for n in graph.allowed_from(node):
                if n in seen:
                    continue
                hop = first or n
                if n == dst:
                    return hop
                seen.add(n)
                nxt.append((n, hop))
        frontier = nxt
    return None


def _older_than(ts: str, seconds: float) -> bool:
    try:
        t = datetime.fromisoformat(ts)
    except ValueError:
        return True
    return (datetime.now(UTC) - t).total_seconds() > seconds


@dataclass
class _Crash:
    message: str
    reason: str = "FetchFailed"
    transient: bool = True
    actual: str | None = None
    size_bytes: int | None = None
    files: int | None = None

    @property
    def ok(self) -> bool:
        return False
