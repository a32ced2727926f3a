"""The chart's admission policies on the e2e control plane (called by ControlPlane.start()).

The ValidatingAdmissionPolicies are installed from the chart's files/admission/*.yaml unchanged;
this module adds what the chart's template adds: one binding per policy and the parameter
ConfigMap that names "the operator". On the test cluster the operator runs as the harness user
(``admin``; on an existing cluster whoever ``kubectl auth whoami`` says), and the e2e tests act as
that user too, so every test still works; tests that need another operator identity (the chart's
ServiceAccount) add it with :func:`allow_operator`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
POLICY_DIR = REPO / "charts" / "modelversioning-operator" / "files" / "admission"
PARAMS_NAMESPACE = "modelversioning-system"
PARAMS_NAME = "modelversioning-admission"
PROBE_USER = "mv-admission-probe"
PROBE_MV = "admission-probe-v1.0.0"  # in PARAMS_NAMESPACE: allow_operator checks its status writes


def policies() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(POLICY_DIR.glob("*.yaml"))]


# Installed without its binding unless a test (or the benchmark) binds it: the e2e tests of the in-use
# finalizer run as before, and an operator that observes no binding uses the finalizer (the chart binds
# it like every policy; e2e/test_in_use_admission.py covers that mode with bind()).
IN_USE_POLICY = "in-use.modelversioning.io"
UNBOUND = (IN_USE_POLICY,)


def binding(name: str) -> dict[str, Any]:
    """The binding the chart's template makes for the policy ``name``."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "paramRef": {
                "name": PARAMS_NAME,
                "namespace": PARAMS_NAMESPACE,
                "parameterNotFoundAction": "Deny",
            },
        },
    }


def bind(cp: Any, name: str) -> None:
    cp.apply([binding(name)])


def unbind(cp: Any, name: str) -> None:
    cp.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found", check=False)


def manifests(operators: list[str], unbound: tuple[str, ...] = UNBOUND) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PARAMS_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PARAMS_NAME, "namespace": PARAMS_NAMESPACE},
            "data": {"operators": ",".join(operators)},
        },
    ]
    for policy in policies():
        name = policy["metadata"]["name"]
        docs.append(policy)
        if name not in unbound:
            docs.append(binding(name))
    return docs


def current_user(cp: Any) -> str:
    if not cp.existing:
        return "admin"
    out = cp.kubectl("auth", "whoami", "-o", "json", timeout=30).stdout
    return str(json.loads(out)["status"]["userInfo"]["username"])


def operators(cp: Any) -> list[str]:
    cm = json.loads(cp.kubectl("get", "configmap", PARAMS_NAME, "-n", PARAMS_NAMESPACE, "-o", "json").stdout)
    return [u for u in str(cm.get("data", {}).get("operators", "")).split(",") if u]


def set_operators(cp: Any, users: list[str]) -> None:
    cp.kubectl(
        "patch", "configmap", PARAMS_NAME, "-n", PARAMS_NAMESPACE, "--type=merge",
        "-p", json.dumps({"data": {"operators": ",".join(users)}}),
    )  # fmt: skip


_LAST_REFUSAL: dict[str, str] = {}


def _may_write_status(cp: Any, user: str) -> bool:
    """Does the API server let ``user`` write a ModelVersion's status now (dry run on the probe)?"""
    res = cp.kubectl(
        "patch", "mv", PROBE_MV, "-n", PARAMS_NAMESPACE, "--subresource=status", "--type=merge",
        "-p", '{"status": {}}', "--dry-run=server", f"--as={user}", "--as-group=system:masters",
        check=False, timeout=30,
    )  # fmt: skip
    if res.returncode != 0:
        _LAST_REFUSAL[user] = (res.stderr or res.stdout).strip()[-2000:]
    return res.returncode == 0


@contextlib.contextmanager
def allow_operator(cp: Any, *users: str, timeout: float = 60) -> Iterator[None]:
    """Treat ``users`` as the operator too, for the duration (e.g. the chart's ServiceAccount); returns
    once the API server's policies see the new parameter."""
    before = operators(cp)
    set_operators(cp, before + [u for u in users if u not in before])
    try:
        deadline = time.monotonic() + timeout
        while not all(_may_write_status(cp, u) for u in users):
            if time.monotonic() > deadline:
                got = cp.kubectl("get", "validatingadmissionpolicybinding", "-o", "yaml", check=False).stdout
                params = cp.kubectl("get", "configmap", PARAMS_NAME, "-n", PARAMS_NAMESPACE, "-o", "yaml",
                                    check=False).stdout  # fmt: skip
                raise RuntimeError(
                    f"{users} are not the operator for the admission policies yet; the last refusal: "
                    f"{ {u: _LAST_REFUSAL.get(u) for u in users} }\nparameters:\n{params}\nbindings:\n{got}"
                )
            time.sleep(0.2)
        yield
    finally:
        set_operators(cp, before)


def _probe_mv(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    model, _, version = name.rpartition("-v")
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {"uri": "http://169.254.169.254/probe", "sha256": "0" * 64},  # refused, never fetched
            "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
            "metrics": {"auc": 1.0},
            "runtime": {"image": "probe:1"},
        },
    }


def _probe_refused(cp: Any) -> bool:
    """Is a ModelVersion whose requested-by names someone else refused (dry run, as a non-operator)?"""
    mv = _probe_mv("probe-v1.0.0", "default", {"modelversioning.io/requested-by": "somebody-else"})
    res = cp.kubectl(
        "create", "--dry-run=server", "-f", "-", f"--as={PROBE_USER}", "--as-group=system:masters",
        input=yaml.safe_dump(mv), check=False, timeout=30,
    )  # fmt: skip
    return res.returncode != 0 and "requested-by" in res.stderr


def install(cp: Any, users: list[str] | None = None, timeout: float = 60) -> None:
    """Install the policies, bindings and parameters; return once the API server enforces them."""
    cp.apply(manifests(users or [current_user(cp)]))
    deadline = time.monotonic() + timeout
    while not _probe_refused(cp):
        if time.monotonic() > deadline:
            raise RuntimeError("the admission policies were installed but are not enforced")
        time.sleep(0.2)
    probe = yaml.safe_dump(_probe_mv(PROBE_MV, PARAMS_NAMESPACE))
    apply = ("apply", "--server-side", "--field-manager=mv-e2e", "-f", "-")
    while True:  # for allow_operator's check (never verified: the operator only writes its status)
        res = cp.kubectl(*apply, input=probe, check=False)
        if res.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot create the admission probe: {res.stderr}")
        time.sleep(0.2)


def as_user(api: Any, user: str, *groups: str) -> Any:
    """An ApiClient that acts as ``user`` (impersonation by the harness admin): what that user's
    RBAC and the admission policies allow, nothing more."""
    from kubernetes import client

    other = client.ApiClient(api.configuration)
    other.set_default_header("Impersonate-User", user)
    for g in groups:  # one header value each is not expressible here: a comma-free single group
        other.set_default_header("Impersonate-Group", g)
    return other


def grant_models_editor(cp: Any, namespace: str, user: str, *, status: bool = False) -> None:
    """RBAC: ``user`` may create/update/patch/delete ModelVersions and ModelEndpoints in ``namespace``
    (and their /status with ``status``): exactly what the admission policies must still refuse."""
    resources = ["modelversions", "modelendpoints"]
    if status:
        resources += ["modelversions/status", "modelendpoints/status"]
    name = f"models-editor-{abs(hash(user)) % 10**8}"
    cp.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["modelversioning.io"],
                        "resources": resources,
                        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
        ]
    )
    deadline = time.monotonic() + 30  # the RBAC authorizer sees the binding a moment later
    can_i = ["auth", "can-i", "patch", "modelversions.modelversioning.io", f"--as={user}", "-n", namespace]
    while cp.kubectl(*can_i, check=False).stdout.strip() != "yes":
        if time.monotonic() > deadline:
            raise RuntimeError(f"RBAC for {user} in {namespace} not in effect")
        time.sleep(0.1)
