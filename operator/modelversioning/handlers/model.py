"""The registry: Model reconciler (memory and retention) and what a ModelVersion reconcile reads
from its Model (gather -> decide -> act; the decisions are ``domain.model_plan``, ``domain.registry``
and ``domain.gates``).

Model reconcile: gather every ModelVersion of the model from the watch cache (with the endpoints
that reference each, its standing archive order, its credentials Secret's name) into
``model_plan.ModelFacts``; ``model_plan.decide`` says what retention does at "now"; act executes it:
annotate versions to archive (their own reconciler walks them to archived, recorded with the Model as
actor), delete the artifacts the plan does not refuse, post the Events, write the status
(``model_plan.settle`` folds the deletions' outcomes in) and requeue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.model import ModelSpec
from modelversioning.api.settings import Settings
from modelversioning.api.wire import (
    ARCHIVE_ANNOTATION,
    ARTIFACT_DELETED_ANNOTATION,
    MODEL,
    MODELVERSION,
    TEST_CLOCK_ANNOTATION,
)
from modelversioning.artifacts import delete_in_child
from modelversioning.domain import conditions as cond
from modelversioning.domain import registry
from modelversioning.domain.model_plan import (
    ArtifactDeletion,
    Deleted,
    Event,
    ModelFacts,
    ModelPlan,
    decide,
    deletion_events,
    dry_run_event,
    refusals_of,
    settle,
)
from modelversioning.domain.retention_owner import Verified, overlapping
from modelversioning.domain.timestamps import parse_rfc3339
from modelversioning.handlers.contract import accepted_signature_digest
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import Kube
from modelversioning.handlers.model_delete import DeletionJobs
from modelversioning.handlers.modelfacts import floors
from modelversioning.handlers.modelfacts import json_annotation as _json
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue

log = logging.getLogger(__name__)

KIND = MODEL.kind


# ---- the Model reconciler ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gathered:
    body: dict[str, Any]
    versions: dict[str, dict[str, Any]]  # ModelVersion name -> body (what Events are posted on)
    facts: ModelFacts


def referenced_by(
    store: Store, namespace: str, model: str, version: str, mv: dict[str, Any]
) -> tuple[str, ...]:
    """Endpoints that name the version in their spec, or that its status.servedBy lists."""
    out = {str(s.get("endpoint")) for s in (mv.get("status") or {}).get("servedBy") or []}
    for (_, ep), body in store.of_model("ModelEndpoint", namespace, model):
        spec = body.get("spec") or {}
        st_versions = {str(v.get("version")) for v in (body.get("status") or {}).get("variants") or []}
        if any(v.get("version") == version for v in spec.get("variants") or []) or version in st_versions:
            out.add(ep)
    return tuple(sorted(out))


def view_of(store: Store, namespace: str, mv: dict[str, Any]) -> registry.VersionView:
    md, spec, st = mv["metadata"], mv.get("spec") or {}, mv.get("status") or {}
    verified = cond.get(st.get("conditions"), "ArtifactVerified") or {}
    ann = md.get("annotations") or {}
    return registry.VersionView(
        name=str(md["name"]),
        version=str(spec.get("version", "")),
        uid=str(md.get("uid", "")),
        digest=str((spec.get("artifact") or {}).get("sha256", "")),
        uri=str((spec.get("artifact") or {}).get("uri", "")),
        created=str(md.get("creationTimestamp", "")),
        stage=str(st.get("stage") or ""),
        spec_stage=str(spec.get("stage", "candidate")),
        history=tuple(st.get("history") or ()),
        reused=verified.get("reason") == R.VERSION_REUSED,
        artifact_deleted=ARTIFACT_DELETED_ANNOTATION in ann,
        referenced_by=referenced_by(store, namespace, str(spec.get("model")), str(spec.get("version")), mv),
        signature_digest=accepted_signature_digest(st),
    )


def archive_order_stage(mv: dict[str, Any]) -> str | None:
    """The spec.stage the retention-archive order standing on the version was made for."""
    order = _json(mv["metadata"].get("annotations") or {}, ARCHIVE_ANNOTATION)
    stage = order.get("specStage") if order is not None else None
    return stage if isinstance(stage, str) else None


def verified_of(mv: dict[str, Any]) -> Verified | None:
    """What the version's status (written by the operator only) records of its verified artifact."""
    st = mv.get("status") or {}
    art = st.get("artifact") or {}
    if not art.get("digest"):
        return None
    c = cond.get(st.get("conditions"), "ArtifactVerified") or {}
    true = c.get("status") == "True" and c.get("reason") == R.VERIFIED
    size, files = art.get("sizeBytes"), art.get("files")
    return Verified(
        str(art["digest"]),
        true,
        int(size) if size is not None else None,
        int(files) if files is not None else None,
    )


def others_overlapping(
    store: Store, namespace: str, mine: dict[str, dict[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """For each of ``mine`` (archived, artifact not deleted: the ones retention may delete), the other
    ModelVersions of ANY namespace whose artifact URI equals, contains or lies inside its own. A
    version whose artifact is recorded deleted claims nothing."""
    due = {
        n: _uri(mv)
        for n, mv in mine.items()
        if (mv.get("status") or {}).get("stage") == registry.ARCHIVED
        and ARTIFACT_DELETED_ANNOTATION not in ((mv.get("metadata") or {}).get("annotations") or {})
    }
    if not due:
        return {}
    others = [
        ((ns, n), f"{ns}/{n}", _uri(body))
        for (ns, n), body in store.items(MODELVERSION.kind)
        if ARTIFACT_DELETED_ANNOTATION not in ((body.get("metadata") or {}).get("annotations") or {})
    ]
    return {
        n: overlapping(uri, [(label, u) for key, label, u in others if key != (namespace, n)])
        for n, uri in due.items()
    }


def _uri(mv: dict[str, Any]) -> str:
    return str(((mv.get("spec") or {}).get("artifact") or {}).get("uri", ""))


def secret_ref(mv: dict[str, Any]) -> str | None:
    ref = (((mv.get("spec") or {}).get("artifact") or {}).get("secretRef") or {}).get("name")
    return str(ref) if ref else None


class ModelReconciler:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        settings: Settings,
        enqueue_versions: Callable[[str, str], None],
        deleter: Callable[..., Any] = delete_in_child,
        requeue: Callable[[str, str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.enqueue_versions = enqueue_versions  # (namespace, model): gates look at production again
        self.deleter = deleter
        # (namespace, model) -> queue the Model: deletions then run on a pool of their own and the
        # reconcile never waits for one; None (tests of the plan's execution alone): run them inline
        self.jobs = DeletionJobs(requeue) if requeue is not None else None

    def reconcile(self, namespace: str, name: str) -> None:
        instrumented(KIND, self._reconcile, namespace, name)

    def _reconcile(self, namespace: str, name: str) -> None:
        got = self.gather(namespace, name)
        if got is not None:
            self.act(got, decide(got.facts))

    def now(self, body: dict[str, Any]) -> datetime:
        """Real time; with the TEST ONLY setting registry.testClock, the Model's test-clock annotation."""
        fake = ((body.get("metadata") or {}).get("annotations") or {}).get(TEST_CLOCK_ANNOTATION)
        t = parse_rfc3339(fake) if self.settings.registry.test_clock else None
        return t or datetime.now(UTC)

    # ---- gather: the Store, read once ----------------------------------------------------------
    def gather(self, namespace: str, name: str) -> Gathered | None:
        body = self.store.get(KIND, namespace, name)
        if body is None:
            return None
        try:
            rules, invalid = ModelSpec.model_validate(body.get("spec") or {}).retention.rules(), None
        except ValidationError as e:
            rules, invalid = None, validation_message(e)
        versions = {n: mv for (_, n), mv in self.store.of_model("ModelVersion", namespace, name)}
        orders = {n: stage for n, mv in versions.items() if (stage := archive_order_stage(mv)) is not None}
        refs = {n: ref for n, mv in versions.items() if (ref := secret_ref(mv)) is not None}
        facts = ModelFacts(
            name=str(body["metadata"]["name"]),
            generation=int(body["metadata"].get("generation") or 0),
            status=dict(body.get("status") or {}),
            views=tuple(view_of(self.store, namespace, mv) for mv in versions.values()),
            now=self.now(body),
            wall=datetime.now(UTC),
            rules=rules,
            invalid=invalid,
            allow_artifact_deletion=self.settings.registry.allow_artifact_deletion,
            check_seconds=self.settings.registry.retention_check_seconds,
            archive_orders=orders,
            secret_refs=refs,
            namespace=namespace,
            floors=floors(self.store, namespace),
            verified={n: ver for n, mv in versions.items() if (ver := verified_of(mv)) is not None},
            overlaps=others_overlapping(self.store, namespace, versions),
        )
        return Gathered(body, versions, facts)

    # ---- act: execute the plan, decide nothing -------------------------------------------------
    def act(self, got: Gathered, plan: ModelPlan) -> None:
        md = got.body["metadata"]
        ns, name = md["namespace"], md["name"]
        for order in plan.archive:
            # cached at once (read-your-writes): a reconcile before the watch shows the annotation
            # must not order the same archive again (two ArchiveDue Events for one version)
            self._annotate(ns, order.name, ARCHIVE_ANNOTATION, order.annotation)
            self._post(got, order.event)
        outcomes: dict[str, Deleted] = {}
        said = refusals_of(got.facts.status)
        for d in plan.deletions:
            if d.due_event is not None:  # a dry run asks the worker what would go
                probe = self._delete_one(ns, name, d, dry_run=True) if d.probe else None
                if not d.probe or probe is not None:  # else: posted once the dry run is done
                    self._post(got, dry_run_event(d, probe) if probe is not None else d.due_event)
            if d.refused is not None:
                continue
            if (done := self._delete_one(ns, name, d)) is None:
                continue  # running on the retention pool: the finished job queues this Model again
            outcomes[d.name] = done
            if done.ok:  # recorded at once: the version reconciler stops serving and fetching it
                self._annotate(ns, d.name, ARTIFACT_DELETED_ANNOTATION, d.annotation)
            for ev in deletion_events(d, done, said):
                self._post(got, ev)
        final = settle(got.facts, plan, outcomes)  # the status and requeue once the deletions ran
        old = dict(got.facts.status)
        if status_changed(old, final.status):
            self.store.upsert(KIND, self.kube.patch_status(MODEL, ns, name, final.status, old))
        if final.notify_versions:
            self.enqueue_versions(ns, name)  # the gates compare with production / the policy changed
        if final.requeue is not None:
            raise Requeue(final.requeue, final.requeue_why)

    def _post(self, got: Gathered, ev: Event) -> None:
        self.kube.event(got.versions[ev.on] if ev.on else got.body, ev.type, ev.reason, ev.message)

    def _annotate(self, ns: str, mv_name: str, key: str, value: str) -> None:
        written = self.kube.annotate(MODELVERSION, ns, mv_name, {key: value})
        self.store.upsert("ModelVersion", written, observed=False)  # read-your-writes, not yet watched

    def _delete_one(self, ns: str, model: str, d: ArtifactDeletion, dry_run: bool = False) -> Deleted | None:
        """The deletion (or its dry run) in the verifier's worker: exactly the verified objects. With the
        retention pool: its finished outcome, or None while it runs (submitted now if not yet)."""
        if self.jobs is None:
            return self._run_delete(ns, d, dry_run)
        own = d.owned
        key = (ns, model, d.name, d.uri, own.sha256 if own else "", dry_run)
        return self.jobs.take_or_submit(key, lambda: self._run_delete(ns, d, dry_run))

    def _run_delete(self, ns: str, d: ArtifactDeletion, dry_run: bool) -> Deleted:
        own = d.owned
        if own is None:  # the plan never hands over a deletion it did not prove owned
            return Deleted(False, "not provably owned", refused=True)
        creds = None
        if d.secret_ref:
            try:
                creds = self.kube.read_secret(ns, d.secret_ref)
            except ApiException as e:
                return Deleted(
                    False, f"credentials Secret {d.secret_ref!r} cannot be read ({e.status} {e.reason})"
                )
        r = self.deleter(
            d.uri, own.sha256, policy=self.settings.artifacts, secret_data=creds,
            expected_size=own.size_bytes, expected_files=own.files, dry_run=dry_run,
        )  # fmt: skip
        return Deleted(bool(r.ok), str(r.message), bool(r.refused), tuple(r.objects), int(r.count))
