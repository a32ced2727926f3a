"""The chart's admission policies and bindings as the operator's watch cache holds them (test helper):
the operator counts approvals and trusts requested-by only while it observes these (handlers.admission)."""

from __future__ import annotations

from typing import Any

from modelversioning.api.wire import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    APPROVALS_POLICY,
    REQUESTED_BY_POLICY,
)
from modelversioning.handlers.store import Store

BOTH = (APPROVALS_POLICY, REQUESTED_BY_POLICY)


def policy(name: str, failure: str = "Fail") -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": ADMISSION_POLICY.kind,
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"failurePolicy": failure},
    }


def binding(name: str, actions: tuple[str, ...] = ("Deny",), **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": ADMISSION_BINDING.kind,
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"policyName": name, "validationActions": list(actions), **spec},
    }


def enforce(store: Store, names: tuple[str, ...] = BOTH) -> None:
    """The chart's policies and bindings (Deny) for ``names``, as installed."""
    for n in names:
        store.upsert(ADMISSION_POLICY.kind, policy(n))
        store.upsert(ADMISSION_BINDING.kind, binding(n))


def break_glass(store: Store, name: str) -> None:
    """The binding deleted (what an admin does to get past the policy in an emergency)."""
    store.delete(ADMISSION_BINDING.kind, "", name)
