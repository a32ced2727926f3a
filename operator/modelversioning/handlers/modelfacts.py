"""What a ModelVersion's reconcile reads from its Model in the watch cache (the gather step): the
Model's stage graph, rules and deletion policy, the candidate's facts for the gates (other versions
in production, the approvals that count by domain.approvals), whether its number was reused, and
retention's archive order. Shared by the ModelVersion reconciler and the Model reconciler (which writes those
orders), so that neither reconciler imports the other.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from modelversioning.api import wire as R
from modelversioning.api.model import ModelSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.wire import (
    ARCHIVE_ANNOTATION,
    ARTIFACT_DELETED_ANNOTATION,
    CREATED_BY_ANNOTATION,
    CREATED_BY_OPERATOR,
    DELETION_PROTECTED_ANNOTATION,
    MODEL,
    MODELPLATFORMPOLICY,
    NAMESPACE,
)
from modelversioning.domain import registry
from modelversioning.domain.approvals import Approval, ApprovalContext
from modelversioning.domain.approvals import count as count_approvals
from modelversioning.domain.gates import CandidateFacts
from modelversioning.domain.platform_policy import Floors, floors_for
from modelversioning.domain.production import aggregate as served_figures
from modelversioning.domain.registry import deletion_policy
from modelversioning.domain.stages import StageGraph
from modelversioning.domain.version_plan import RegistryFacts
from modelversioning.handlers.store import Store


def floors(store: Store, namespace: str) -> Floors:
    """The platform floors for `namespace` now (no policy selecting it: ``Floors()``)."""
    ns = store.get(NAMESPACE.kind, "", namespace) or {}
    labels = (ns.get("metadata") or {}).get("labels") or {}
    policies = [
        (name, body.get("spec") or {}) for name, body in store.cluster_scoped(MODELPLATFORMPOLICY.kind)
    ]
    return floors_for(namespace, labels, policies)


def json_annotation(ann: dict[str, Any], key: str) -> dict[str, Any] | None:
    try:
        val = json.loads(ann.get(key) or "null")
    except ValueError:
        return None
    return val if isinstance(val, dict) else None


def model_spec(store: Store, namespace: str, model: str) -> tuple[dict[str, Any] | None, ModelSpec | None]:
    body = store.get(MODEL.kind, namespace, model)
    if body is None:
        return None, None
    try:
        return body, ModelSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return body, None  # the Model reconciler reports it; versions keep the operator's defaults


def approvals_of(store: Store, namespace: str, model: str, version: str) -> tuple[Approval, ...]:
    """The ModelApprovals of this version in the cache, as stored (domain.approvals says which count)."""
    out = []
    for _, body in store.of_model("ModelApproval", namespace, model):
        s = body.get("spec") or {}
        if (s.get("model"), s.get("version")) == (model, version) and s.get("approver"):
            groups = s.get("approverGroups") or []
            out.append(
                Approval(
                    str(s["approver"]),
                    str(s.get("stage")),
                    str(s.get("sha256") or ""),
                    str(s.get("servingDigest") or ""),
                    tuple(str(g) for g in groups) if isinstance(groups, list) else (),
                )
            )
    return tuple(out)


def production_of(
    store: Store, namespace: str, model: str, but: str
) -> tuple[tuple[str, dict[str, float]], ...]:
    """(version, metrics) of the other versions of ``model`` in production now."""
    out = []
    for (_, name), body in store.of_model("ModelVersion", namespace, model):
        spec = body.get("spec") or {}
        if name != but and (body.get("status") or {}).get("stage") == "production":
            out.append((str(spec.get("version")), dict(spec.get("metrics") or {})))
    return tuple(sorted(out))


def created_by_operator(mbody: dict[str, Any]) -> bool:
    """A Model the operator created as a record and nobody has given a spec yet: the default policy,
    which protects its versions from deletion as the operator does without a Model (the setting
    registry.protectVersionsWithoutModel). Once a user applies a spec, the Model's own policy rules."""
    ann = (mbody.get("metadata") or {}).get("annotations") or {}
    return ann.get(CREATED_BY_ANNOTATION) == CREATED_BY_OPERATOR and not (mbody.get("spec") or {})


def recorded(records: list[dict[str, Any]], version: str, digest: str) -> bool:
    """Does the record (a Model's status.versions) hold this version number with this digest?"""
    return any(r.get("version") == version and r.get("digest") == digest for r in records)


def registry_facts(
    store: Store,
    namespace: str,
    body: dict[str, Any],
    spec: ModelVersionSpec,
    default: StageGraph,
    protect_without_model: bool = False,
    approval: ApprovalContext | None = None,
) -> RegistryFacts:
    """What a ModelVersion's reconcile needs from its Model (without one: the operator's defaults, and
    the Model to create as the record). A version whose number and digest the record does not hold
    yet waits for it (``pending``); one recorded with another digest is refused (``reused``).
    ``approval``: what its approvals are checked against (None: none counts)."""
    ann = (body.get("metadata") or {}).get("annotations") or {}
    deleted = json_annotation(ann, ARTIFACT_DELETED_ANNOTATION)
    gone = None
    if deleted is not None:
        gone = (
            f"the artifact was deleted from storage at {deleted.get('at')} by {deleted.get('by')} "
            f"({deleted.get('reason', 'retention')}); the ModelVersion and its verified record are kept"
        )
    mbody, mspec = model_spec(store, namespace, spec.model)
    if mbody is None:
        return RegistryFacts(
            artifact_deleted=gone,
            deletion_policy=deletion_policy(spec.model, None, protect_without_model),
            pending=f"waiting for Model {spec.model}, which the operator creates (default policy) to "
            f"record version {spec.version}",
            create_model=True,
        )
    records = (mbody.get("status") or {}).get("versions") or []
    reused = registry.reused(records, spec.version, spec.artifact.sha256)
    pending = None
    if reused is None and not recorded(records, spec.version, spec.artifact.sha256):
        pending = f"waiting for Model {spec.model} to record version {spec.version} in status.versions"
    if mspec is None:
        # an invalid Model keeps what protection its versions have: its policy cannot be read
        keep = ann.get(DELETION_PROTECTED_ANNOTATION)
        return RegistryFacts(reused=reused, artifact_deleted=gone, deletion_policy=keep, pending=pending)
    ctx = approval or ApprovalContext(spec.artifact.sha256, serving_digest="")
    counted, refused = count_approvals(approvals_of(store, namespace, spec.model, spec.version), ctx)
    served = served_figures((body.get("status") or {}).get("servingHistory") or [])
    candidate = CandidateFacts(
        spec.version,
        spec.artifact.sha256,
        spec.lineage.to_k8s(),
        spec.metrics,
        production_of(store, namespace, spec.model, str(body["metadata"]["name"])),
        counted,
        refused,
        served.values,
        served.incomplete,
    )
    allow = None if created_by_operator(mbody) else mspec.deletion_policy.allow_past_candidate
    return RegistryFacts(
        graph=mspec.graph(default),
        rules=mspec.rules(),
        candidate=candidate,
        reused=reused,
        artifact_deleted=gone,
        deletion_policy=deletion_policy(spec.model, allow, protect_without_model),
        pending=pending,
    )


def archive_request(
    requested: str, actor: str, why: str, ann: dict[str, Any], spec_stage: str
) -> tuple[str, str, str]:
    """Retention's archive order holds while spec.stage is what it was when the order was made (any
    later edit of spec.stage wins, as with a rollout's promotion grant)."""
    order = json_annotation(ann, ARCHIVE_ANNOTATION)
    if order is None or order.get("specStage") != spec_stage:
        return requested, actor, why
    return "archived", str(order.get("by", R.RETENTION)), str(order.get("reason", "retention"))
