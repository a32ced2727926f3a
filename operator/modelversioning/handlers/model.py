"""The registry: Model reconciler (memory and retention) and what a ModelVersion reconcile reads
from its Model (gather -> decide -> act; the decisions are ``domain.registry`` and ``domain.gates``).

Model reconcile: gather every ModelVersion of the model from the watch cache (with the endpoints
that reference each), ``registry.record`` the memory and ``registry.select`` what retention does at
"now"; act: annotate versions to archive (their own reconciler walks them to archived, recorded
with the Model as actor), delete due artifacts (where allowed; dry run: an Event), write the status.
"""

from __future__ import annotations

import json
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
from modelversioning.artifacts.delete import delete_artifact
from modelversioning.domain import conditions as cond
from modelversioning.domain import registry
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.handlers.drift import status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import Kube
from modelversioning.handlers.modelfacts import json_annotation as _json
from modelversioning.handlers.store import Store
from modelversioning.handlers.workqueue import Requeue

log = logging.getLogger(__name__)

KIND = MODEL.kind


# ---- the Model reconciler ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gathered:
    body: dict[str, Any]
    spec: ModelSpec | None
    invalid: str | None
    versions: dict[str, dict[str, Any]]  # ModelVersion name -> body
    views: tuple[registry.VersionView, ...]
    now: datetime


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
    )


class ModelReconciler:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        settings: Settings,
        enqueue_versions: Callable[[str, str], None],
        deleter: Callable[..., Any] = delete_artifact,
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.enqueue_versions = enqueue_versions  # (namespace, model): gates look at production again
        self.deleter = deleter

    def reconcile(self, namespace: str, name: str) -> None:
        instrumented(KIND, self._reconcile, namespace, name)

    def _reconcile(self, namespace: str, name: str) -> None:
        got = self.gather(namespace, name)
        if got is not None:
            self.act(got)

    def now(self, body: dict[str, Any]) -> datetime:
        """Real time; with the TEST ONLY setting registry.testClock, the Model's test-clock annotation."""
        fake = ((body.get("metadata") or {}).get("annotations") or {}).get(TEST_CLOCK_ANNOTATION)
        t = registry.parse_time(fake) if self.settings.registry.test_clock else None
        return t or datetime.now(UTC)

    def gather(self, namespace: str, name: str) -> Gathered | None:
        body = self.store.get(KIND, namespace, name)
        if body is None:
            return None
        try:
            spec, invalid = ModelSpec.model_validate(body.get("spec") or {}), None
        except ValidationError as e:
            spec, invalid = None, validation_message(e)
        versions = {n: mv for (_, n), mv in self.store.of_model("ModelVersion", namespace, name)}
        views = tuple(view_of(self.store, namespace, mv) for mv in versions.values())
        return Gathered(body, spec, invalid, versions, views, self.now(body))

    def act(self, got: Gathered) -> None:
        body, md = got.body, got.body["metadata"]
        ns, name = md["namespace"], md["name"]
        old = dict(body.get("status") or {})
        records = registry.record(old.get("versions") or [], got.views, got.now)
        production = sorted((v.version for v in got.views if v.stage == "production"), key=registry.order_key)
        pending: list[str] = []
        problems: list[str] = []
        plan = registry.RetentionPlan()
        if got.spec is not None:
            plan = registry.select(got.views, got.spec.retention.rules(), got.now)
            self._archive(body, got, plan)
            pending, problems = self._delete(body, got, plan, records)
        ready = (
            Cond("Ready", FALSE, R.INVALID_POLICY, got.invalid)
            if got.invalid
            else Cond("Ready", FALSE, R.ARTIFACT_DELETE_FAILED, "; ".join(problems))
            if problems
            else Cond("Ready", TRUE, R.MODEL_RECORDED, f"{len(records)} versions recorded")
        )
        stamp = registry.rfc3339(datetime.now(UTC))
        status: dict[str, Any] = {
            "observedGeneration": int(md.get("generation") or 0),
            "conditions": cond.merge_conditions(
                old.get("conditions"), [ready], int(md.get("generation") or 0), stamp
            ),
            "versions": records,
            "production": production,
        }
        if pending:
            status["pendingDeletions"] = pending
        if status_changed(old, status):
            self.store.upsert(KIND, self.kube.patch_status(MODEL, ns, name, status, old))
        if (
            old.get("production", []) != production
            or old.get("observedGeneration") != status["observedGeneration"]
        ):
            self.enqueue_versions(ns, name)  # the gates compare with production / the policy changed
        if problems:
            raise Requeue(30, "artifact deletion failed")
        if plan.next_due is not None:
            raise Requeue(
                min(
                    self.settings.registry.retention_check_seconds,
                    max(1.0, (plan.next_due - got.now).total_seconds()),
                )
            )

    def _archive(self, body: dict[str, Any], got: Gathered, plan: registry.RetentionPlan) -> None:
        ns, model = body["metadata"]["namespace"], body["metadata"]["name"]
        for mv_name, why in plan.archive:
            mv = got.versions[mv_name]
            spec_stage = str((mv.get("spec") or {}).get("stage", "candidate"))
            ann = mv["metadata"].get("annotations") or {}
            order = _json(ann, ARCHIVE_ANNOTATION)
            if order is not None and order.get("specStage") == spec_stage:
                continue  # ordered already; its reconciler walks it
            by = f"{R.RETENTION} (Model {model})"
            value = {
                "specStage": spec_stage,
                "at": registry.rfc3339(got.now),
                "by": by,
                "reason": f"retention: {why}",
            }
            # cached at once (read-your-writes): a reconcile before the watch shows the annotation
            # must not order the same archive again (two ArchiveDue Events for one version)
            self._cache_version(
                self.kube.annotate(
                    MODELVERSION, ns, mv_name, {ARCHIVE_ANNOTATION: json.dumps(value, sort_keys=True)}
                )
            )
            self.kube.event(body, "Normal", R.ARCHIVE_DUE, f"archiving {mv_name}: {why}")

    def _cache_version(self, written: dict[str, Any]) -> None:
        self.store.upsert("ModelVersion", written, observed=False)  # read-your-writes, not yet watched

    def _delete(
        self, body: dict[str, Any], got: Gathered, plan: registry.RetentionPlan, records: list[dict[str, Any]]
    ) -> tuple[list[str], list[str]]:
        """Delete due artifacts where allowed; returns (dry-run pending versions, failures)."""
        assert got.spec is not None
        ns, model = body["metadata"]["namespace"], body["metadata"]["name"]
        mode = got.spec.retention.artifact_deletion
        allowed = mode == "Enabled" and self.settings.registry.allow_artifact_deletion
        before = set((body.get("status") or {}).get("pendingDeletions") or [])
        pending: list[str] = []
        problems: list[str] = []
        for mv_name, why in plan.delete:
            if mode == "Disabled":
                break
            mv = got.versions[mv_name]
            version = str(mv["spec"]["version"])
            if not allowed:
                pending.append(version)
                if version not in before:
                    not_allowed = (
                        ""
                        if mode == "DryRun"
                        else " (the operator setting registry.allowArtifactDeletion is off)"
                    )
                    self.kube.event(
                        body,
                        "Normal",
                        R.ARTIFACT_DELETE_DUE,
                        f"dry run{not_allowed}: would delete the artifact of {mv_name}: {why}",
                    )
                continue
            result = self._delete_one(ns, mv)
            if not result.ok:
                problems.append(f"{version}: {result.message}")
                self.kube.event(mv, "Warning", R.ARTIFACT_DELETE_FAILED, result.message)
                continue
            value = {
                "at": registry.rfc3339(got.now),
                "by": f"{R.RETENTION} (Model {model})",
                "reason": why,
                "uri": str(mv["spec"]["artifact"]["uri"]),
            }
            deleted: dict[str, str | None] = {ARTIFACT_DELETED_ANNOTATION: json.dumps(value, sort_keys=True)}
            self._cache_version(self.kube.annotate(MODELVERSION, ns, mv_name, deleted))
            msg = (
                f"deleted the artifact of {mv_name} ({result.message}): {why}; "
                "the ModelVersion and its record are kept"
            )
            self.kube.event(body, "Normal", R.ARTIFACT_DELETED, msg)
            self.kube.event(mv, "Normal", R.ARTIFACT_DELETED, msg)
            for r in records:
                if r.get("version") == version:
                    r["artifact"] = registry.DELETED
        return pending, problems

    def _delete_one(self, ns: str, mv: dict[str, Any]) -> Any:
        art = mv["spec"]["artifact"]
        creds = None
        ref = (art.get("secretRef") or {}).get("name")
        if ref:
            try:
                creds = self.kube.read_secret(ns, ref)
            except ApiException as e:
                from modelversioning.artifacts.delete import DeleteResult

                return DeleteResult(
                    False, f"credentials Secret {ref!r} cannot be read ({e.status} {e.reason})"
                )
        return self.deleter(art["uri"], self.settings.artifacts, creds)
