"""Whether the chart's admission policies are in force, observed from the cluster (the gather step):
the ValidatingAdmissionPolicies and their bindings from the watch cache, judged by
``domain.approvals.admission_enforced``. Their watch (handlers.policy.admission_event) only caches
and requeues: a binding created, changed or deleted (break-glass) re-decides every ModelVersion, so
approvals stop counting and requested-by stops being an identity at once, and a served version gets
the in-use finalizer again once the in-use policy is no longer enforced."""

from __future__ import annotations

from dataclasses import dataclass

from modelversioning.api.wire import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    APPROVALS_POLICY,
    IN_USE_POLICY,
    REQUESTED_BY_POLICY,
)
from modelversioning.domain.approvals import admission_enforced
from modelversioning.handlers.store import Store

WATCHED = (APPROVALS_POLICY, REQUESTED_BY_POLICY, IN_USE_POLICY)


@dataclass(frozen=True)
class Admission:
    requested_by: bool  # requested-by names the authenticated requester of every stage change
    approvals: bool  # approvals and their requesters are recorded by the API server
    # the DELETE of a version whose status.servedBy names an endpoint is refused: no in-use finalizer
    in_use: bool = False


def observed(store: Store) -> Admission:
    """What the API server enforces now, as the watch cache shows it (nothing cached: nothing)."""
    bindings = {n: store.get(ADMISSION_BINDING.kind, "", n) or {} for n in WATCHED}
    policies = {n: store.get(ADMISSION_POLICY.kind, "", n) or {} for n in WATCHED}
    bindings = {n: b for n, b in bindings.items() if b}
    policies = {n: p for n, p in policies.items() if p}
    by = admission_enforced(REQUESTED_BY_POLICY, bindings, policies)
    # an approval counts only when its approver and the requester it must differ from are both recorded
    return Admission(
        requested_by=by,
        approvals=by and admission_enforced(APPROVALS_POLICY, bindings, policies),
        in_use=admission_enforced(IN_USE_POLICY, bindings, policies),
    )
