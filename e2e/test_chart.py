"""The Helm chart (charts/modelversioning-operator) on the real control plane.

- `helm lint --strict` passes for the default and a non-default set of values; the schema refuses
  nonsense;
- what `helm template` renders is accepted by the real API server (`kubectl apply --dry-run=server`);
- a real `helm install` / `helm upgrade` / `helm uninstall`: the operator Deployment becomes
  Available (kwok runs the pod), ModelVersions and the CRDs survive upgrade and uninstall;
- the chart's RBAC is sufficient (the operator, authenticated as the chart's ServiceAccount, drives
  a full canary rollout with no RBAC refusal in the audit log) and no broader than needed (`kubectl auth
  can-i` refuses what the operator never does).

helm comes from the control plane's bin dir (e2e/build-control-plane.sh builds it from the Go
module proxy); these tests FAIL, never skip, when it is missing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

import admission
import modelversioning.render.routers  # noqa: F401 - registers the routers the CRDs' schema lists (crdgen)
from controlplane import ControlPlane
from helmchart import CHART, Helm
from helpers import (
    Objects,
    cond_is,
    make_artifact,
    model_endpoint,
    model_version,
    vs_weights,
    wait_for,
)
from modelversioning.api import crdgen
from modelversioning.api.settings import Settings

GROUP = "modelversioning.io"
OUR_CRDS = (f"modelversions.{GROUP}", f"modelendpoints.{GROUP}")
KOPF_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

# Non-default values: namespaced watch of two namespaces, Istio off, HA with kopf peering,
# no ServiceMonitor (the test cluster has no monitoring.coreos.com CRDs).
CUSTOM_WATCHED = ("team-a", "team-b")
CUSTOM_VALUES: dict[str, Any] = {
    "watch": {"allNamespaces": False, "namespaces": list(CUSTOM_WATCHED)},
    "routers": {"istio": {"enabled": False}},
    "ha": {"enabled": True, "replicas": 3, "peering": "mvo-e2e"},
    "metrics": {"serviceMonitor": {"enabled": False}},
    "image": {"tag": "0.1.0-test"},
    "config": {
        "artifacts": {"allowedSchemes": ["s3", "https"], "allowedHosts": ["*.example.com"]},
        "serving": {"initImage": "registry.example.com/mvo-init:1", "driftCheckSeconds": 30},
        "stageGraph": {"archived": None},
    },
    "crds": {"enabled": False},
    "podAnnotations": {"example.com/team": "ml-platform"},
}


@pytest.fixture(scope="module")
def helm(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm.find(cluster, tmp_path_factory.mktemp("helm"))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rendered_settings(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def ensure_namespace(cluster: ControlPlane, name: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def wait_crds_established(cluster: ControlPlane, names: tuple[str, ...]) -> None:
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names], timeout=90
    )


def crd_uids(kube: client.ApiClient) -> dict[str, str]:
    ext = client.ApiextensionsV1Api(kube)
    return {n: ext.read_custom_resource_definition(n).metadata.uid for n in OUR_CRDS}


# ---------------------------------------------------------------------------------------- lint
@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_lint(helm: Helm, values: dict[str, Any] | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["--values", helm.values_file(values)]
    out = helm(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watch": {"allNamespaces": False}}, "minItems"),
        ({"replicas": 2}, "maximum"),
        ({"unknownKey": 1}, "additional properties"),
        ({"config": {"serving": {"enabledRouters": ["istio"]}}}, "additional properties"),
        ({"config": {"admission": {"enforced": True}}}, "additional properties"),
        ({"config": {"artifacts": {"maxWorkers": 0}}}, "minimum"),
        ({"image": {"digest": "latest"}}, "pattern"),
    ],
    ids=[
        "namespaced-without-namespaces",
        "two-standalone-replicas",
        "unknown-key",
        "enabledRouters",
        "admission-enforced",
        "maxWorkers",
        "digest",
    ],
)
def test_schema_refuses_bad_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    res = helm("lint", str(CHART), "--values", helm.values_file(values), check=False)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


def test_rendered_settings_are_valid_and_follow_the_values(helm: Helm) -> None:
    default = rendered_settings(helm.template("mvo", "ops"))
    settings = Settings.model_validate(default)  # extra="forbid": a typo in the chart fails here
    defaults = Settings()
    # Chart defaults are the operator's defaults, except what the chart derives.
    assert settings.artifacts == defaults.artifacts
    assert settings.verification == defaults.verification
    assert settings.stage_graph == defaults.stage_graph
    assert settings.serving.model_copy(update={"enabled_routers": defaults.serving.enabled_routers}) == (
        defaults.serving
    )
    assert sorted(settings.serving.enabled_routers) == sorted(["istio", "gatewayAPI", "none"])

    custom_docs = helm.template("mvo", "ops", CUSTOM_VALUES)
    custom = Settings.model_validate(rendered_settings(custom_docs))
    assert custom.serving.enabled_routers == ["gatewayAPI", "none"]
    assert custom.serving.init_image == "registry.example.com/mvo-init:1"
    assert custom.artifacts.allowed_hosts == ["*.example.com"]
    assert "archived" not in custom.stage_graph
    # The init image defaults to the operator image (tag -> appVersion).
    tagged = Settings.model_validate(
        rendered_settings(helm.template("mvo", "ops", {"image": {"tag": "9.9.9"}}))
    )
    assert tagged.serving.init_image == "ghcr.io/modelversioning/modelversioning-operator:9.9.9"
    # requested-by is an identity only while the API server denies what the policy refuses
    assert settings.admission.enforced
    for off in ({"enabled": False}, {"validationActions": ["Warn", "Audit"]}):
        docs = helm.template("mvo", "ops", {"admission": off})
        assert not Settings.model_validate(rendered_settings(docs)).admission.enforced, off


def test_rendered_crds_are_the_generated_ones(helm: Helm) -> None:
    docs = helm.template("mvo", "ops")
    rendered = {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}
    generated = {c["metadata"]["name"]: c for c in crdgen.all_crds().values()}
    assert set(rendered) == set(generated)
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in generated[name].items() if k != "metadata"
        }
    # crds.keep=false drops the annotation; crds.enabled=false drops the CRDs.
    loose = by_kind(helm.template("mvo", "ops", {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert loose and all(
        "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {}) for c in loose
    )
    assert not by_kind(helm.template("mvo", "ops", {"crds": {"enabled": False}}), "CustomResourceDefinition")
    # Helm's crds/ dir holds only kopf's shared peering CRDs, never ours (no double install).
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["kopf.dev_peerings.yaml"]


def test_deployment_defaults_are_hardened(helm: Helm) -> None:
    docs = helm.template("mvo", "ops")
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/modelversioning/modelversioning-operator:0.1.0"
    assert c["args"][:3] == ["run", "--config=/etc/modelversioning/config.yaml", "--all-namespaces"]
    assert not any(a.startswith("--peering") for a in c["args"])
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8081, "metrics": 8080}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "ClusterKopfPeering")

    custom = helm.template("mvo", "ops", CUSTOM_VALUES)
    (dep,) = by_kind(custom, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dep["spec"]["replicas"] == 3
    assert "--all-namespaces" not in args and "--peering=mvo-e2e" in args
    assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={n}" for n in CUSTOM_WATCHED]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(custom, "KopfPeering")) == list(CUSTOM_WATCHED)
    # namespaced: the only cluster-scoped grants are kopf's read-only discovery of CRDs/namespaces and,
    # for the gatewayAPI router, a read-only watch of GatewayClasses (what each implementation supports)
    cluster_roles = {r["metadata"]["name"]: r["rules"] for r in by_kind(custom, "ClusterRole")}
    assert sorted(cluster_roles) == [
        "mvo-modelversioning-operator-discovery",
        "mvo-modelversioning-operator-platform",
        "mvo-modelversioning-operator-policy",  # the platform's floors and what selects them: read-only
    ]
    assert all(
        set(rule["verbs"]) <= {"list", "watch"}
        for rule in cluster_roles["mvo-modelversioning-operator-policy"]
    )
    assert cluster_roles["mvo-modelversioning-operator-platform"] == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gatewayclasses"],
            "verbs": ["list", "watch"],
        }
    ]
    roles = by_kind(custom, "Role")
    assert sorted({r["metadata"]["namespace"] for r in roles}) == list(CUSTOM_WATCHED)
    assert not any("virtualservices" in rule["resources"] for r in roles for rule in r["rules"])


# ---------------------------------------------------------------------------------------- server dry-run
@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_template_is_accepted_by_the_api_server(
    helm: Helm, cluster: ControlPlane, values: dict[str, Any] | None
) -> None:
    release_ns = f"mvo-dry-{secrets.token_hex(3)}"
    namespaces = [release_ns]
    if values:
        namespaces += list(values["watch"]["namespaces"])
        # What `helm install` does first with the chart's crds/ dir (kopf's peering CRDs).
        cluster.kubectl("apply", "--server-side", "--field-manager=mv-e2e", "-f", str(CHART / "crds"))
        wait_crds_established(cluster, KOPF_CRDS)
    for ns in namespaces:
        ensure_namespace(cluster, ns)
    try:
        docs = helm.template("mvo-dry", release_ns, values)
        res = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
        )
        assert res.returncode == 0, res.stderr
        applied = [ln for ln in res.stdout.splitlines() if "(server dry run)" in ln]
        assert len(applied) == len(docs), res.stdout
    finally:
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


# ---------------------------------------------------------------------------------------- lifecycle
def deployment_available(apps: client.AppsV1Api, ns: str, name: str) -> Any:
    d = apps.read_namespaced_deployment(name, ns)
    st = d.status
    done = (
        (st.observed_generation or 0) >= d.metadata.generation
        and (st.updated_replicas or 0) == d.spec.replicas
        and (st.available_replicas or 0) == d.spec.replicas
        and (st.replicas or 0) == d.spec.replicas  # the Recreate strategy left no old pod
        and any(c.type == "Available" and c.status == "True" for c in st.conditions or [])
    )
    return d if done else None


def gone(fn: Any) -> bool:
    try:
        fn()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


# ---------------------------------------------------------------------------------------- RBAC
@pytest.fixture
def admin_operator_paused(operator: Any) -> Iterator[None]:
    """The session's admin operator would reconcile our objects too and hide missing permissions:
    stop it while the operator under the chart's RBAC runs, start it again afterwards."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def can_i(cluster: ControlPlane, subject: str, verb: str, resource: str, *where: str) -> bool:
    res = cluster.kubectl("auth", "can-i", verb, resource, f"--as={subject}", *where, check=False)
    answer = res.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {res.stdout} {res.stderr}"
    return answer == "yes"


def sa_kubeconfig(cluster: ControlPlane, token: str, path: Path) -> Path:
    assert cluster.ca_file is not None
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)},
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "operator"}}],
                "current-context": "e2e",
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("scope", ["cluster", "namespaced", "cluster-ha"])
def test_chart_rbac_is_sufficient_and_minimal(
    helm: Helm,
    cluster: ControlPlane,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    admin_operator_paused: None,
    scope: str,
) -> None:
    from operator_proc import OperatorProcess

    ops_ns = namespace  # where the chart (ServiceAccount) lives
    work_ns = f"e2e-models-{secrets.token_hex(3)}"  # where the models are
    ensure_namespace(cluster, work_ns)
    release = f"rbac-{secrets.token_hex(3)}"
    root = (tmp_path / "artifacts").resolve()
    values: dict[str, Any] = {
        "config": {
            "artifacts": {"fileRoots": [str(root)]},
            "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
            "serving": {"driftCheckSeconds": 30},
        },
    }
    extra_env = {"POD_ID": f"{release}-0"}
    if scope == "namespaced":
        values["watch"] = {"allNamespaces": False, "namespaces": [work_ns]}
    else:  # cluster-wide: Secrets only where artifact credentials live (none by default)
        values["rbac"] = {"secretNamespaces": [work_ns]}
    if scope == "cluster-ha":
        # One replica with mandatory kopf peering: proves the peering grants (keep-alives, watch).
        values["ha"] = {"enabled": True, "replicas": 1, "peering": release}
        extra_env["MODELVERSIONING_PEERING"] = release
        cluster.kubectl("apply", "--server-side", "--field-manager=mv-e2e", "-f", str(CHART / "crds"))
        wait_crds_established(cluster, KOPF_CRDS)
    docs = helm.template(release, ops_ns, values)
    rbac_docs = [d for d in docs if d["kind"] in RBAC_KINDS | {"ClusterKopfPeering"}]
    (sa,) = by_kind(rbac_docs, "ServiceAccount")
    subject = f"system:serviceaccount:{ops_ns}:{sa['metadata']['name']}"
    cluster.apply(rbac_docs)
    objs = Objects(kube, work_ns)
    op = None
    cleanup = contextlib.ExitStack()
    # the admission policies: this ServiceAccount is the operator now (status, the in-use finalizer)
    cleanup.enter_context(admission.allow_operator(cluster, subject))
    try:
        token = cluster.kubectl(
            "create", "token", sa["metadata"]["name"], "-n", ops_ns, "--duration=1h"
        ).stdout.strip()
        kubeconfig = sa_kubeconfig(cluster, token, tmp_path / "operator.kubeconfig")
        # The API server's RBAC authorizer learns new (Cluster)Roles and bindings from its own informers:
        # on a loaded machine that lags the apply by a moment, and a write in that moment is refused
        # (this test once saw "could not post Event ... Forbidden"). Start when the grants are in effect.
        wait_for(
            lambda: all(
                cluster.kubectl(
                    "auth", "can-i", verb, res, "-n", work_ns, "--as", subject, check=False
                ).stdout.strip()
                == "yes"
                for verb, res in (
                    ("create", "events"),
                    ("patch", "modelversions.modelversioning.io"),  # "x/status" would name an object
                    ("create", "deployments"),
                )
            ),
            60,
            "the chart's RBAC in effect for its ServiceAccount",
        )
        audit_from = cluster.audit_offset()
        op = OperatorProcess(
            kubeconfig,
            settings=rendered_settings(docs),  # the chart's own ConfigMap
            namespaces=[work_ns] if scope == "namespaced" else None,
            extra_env=extra_env,
        )
        op.start()

        # One artifact names a credentials Secret: the operator reads it by name (get, never list).
        objs.core.create_namespaced_secret(
            work_ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="artifact-creds"),
                string_data={"HTTP_BEARER_TOKEN": "unused"},
            ),
        )
        for version in ("2.3.8", "2.4.1"):
            uri, sha = make_artifact(root, "fraud", version)
            mv = model_version("fraud", version, uri, sha, stage="production")
            if version == "2.4.1":
                mv["spec"]["artifact"]["secretRef"] = {"name": "artifact-creds"}
            objs.create(mv)
        objs.create(
            model_endpoint(
                "fraud",
                "fraud",
                [
                    {"name": "stable", "version": "2.3.8", "weight": 90},
                    {"name": "canary", "version": "2.4.1", "weight": 10},
                ],
            )
        )

        def vs_9010() -> bool:
            try:
                return vs_weights(objs.virtualservice("fraud")) == {"stable": 90, "canary": 10}
            except (ApiException, KeyError):
                return False

        try:
            wait_for(vs_9010, 90, "VirtualService 90/10 written by the chart's ServiceAccount")
            wait_for(lambda: cond_is(objs.mep("fraud"), "Ready", "True"), 60, "endpoint Ready=True")
            wait_for(lambda: (objs.mv("fraud-v2.4.1").get("status") or {}).get("servedBy"), 30, "servedBy")
        except AssertionError:
            print("---- operator log ----\n" + op.logs(200))
            raise

        # Everything was done by the chart's ServiceAccount, and nothing it tried was refused.
        events = [e for e in cluster.audit_events(audit_from) if e.get("user", {}).get("username") == subject]
        forbidden = [
            (
                e["verb"],
                e.get("objectRef", {}).get("resource"),
                e.get("objectRef", {}).get("subresource"),
                e.get("objectRef", {}).get("namespace"),
            )
            for e in events
            # an RBAC refusal, not e.g. an admission 403 in a namespace being terminated
            if e.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid"
        ]
        assert not forbidden, f"the chart's RBAC refused: {forbidden}\n{op.logs(100)}"
        did = {
            (e["verb"], e.get("objectRef", {}).get("resource"), e.get("objectRef", {}).get("subresource"))
            for e in events
            if e.get("responseStatus", {}).get("code", 0) < 300
        }
        expected = [
            ("create", "deployments", None),  # children are created (POST); patched only on drift
            ("create", "services", None),
            ("patch", "modelendpoints", "status"),
            ("patch", "modelversions", "status"),
            ("patch", "modelversions", None),  # the in-use finalizer
            ("patch", "modelendpoints", None),  # the drain finalizer
            ("get", "secrets", None),
            ("create", "events", None),
        ]
        if scope == "cluster-ha":
            expected += [("patch", "clusterkopfpeerings", None), ("watch", "clusterkopfpeerings", None)]
        if cluster.audit_log is not None:  # an existing cluster (MV_E2E_KUBECONFIG) has no audit log here
            missing = [a for a in expected if a not in did]
            # the route: created with its final weights when the versions were verified in time,
            # else created first and patched (RBAC for both is checked with can-i below)
            if not {("create", "virtualservices", None), ("patch", "virtualservices", None)} & did:
                missing.append(("create or patch", "virtualservices", None))
            assert not missing, f"not done by {subject}: {missing}; did {sorted(map(str, did))}"
        # the log, for a cluster without an audit log; a 403 elsewhere (an Event in another test's
        # namespace being terminated) is no RBAC refusal, the audit check above tells them apart
        refused = [ln for ln in op.logs(1000).splitlines() if "Forbidden" in ln and work_ns in ln]
        assert not refused, refused

        # ... and it may do no more than that.
        ns = ["-n", work_ns]
        allowed = [
            ("get", "secrets", *ns),
            ("get", "configmaps", *ns),  # trust policies' keys and roots, by name (signed models)
            ("patch", "modelversions.modelversioning.io", *ns),
            ("patch", "modelendpoints.modelversioning.io", "--subresource=status", *ns),
            ("patch", "modelendpoints.modelversioning.io", *ns),  # its finalizer only
            ("delete", "deployments.apps", *ns),
            ("create", "events", *ns),
            ("patch", "events", *ns),  # Event series: a repeat raises the count
            ("create", "models.modelversioning.io", *ns),  # the registry's record of a model name
            ("create", "virtualservices.networking.istio.io", *ns),
            ("patch", "virtualservices.networking.istio.io", *ns),
            ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("watch", "modelplatformpolicies.modelversioning.io"),  # the platform's floors
            ("watch", "namespaces"),  # their labels select the policies
            ("list", "pods", *ns),  # the slots' pods: what their status says (read only)
            ("watch", "pods", *ns),
        ]
        refused = [
            ("list", "secrets", *ns),
            ("watch", "secrets", *ns),
            ("list", "secrets", "-A"),
            ("create", "secrets", *ns),
            ("delete", "modelversions.modelversioning.io", *ns),
            ("patch", "models.modelversioning.io", *ns),
            ("update", "models.modelversioning.io", *ns),
            ("delete", "models.modelversioning.io", *ns),
            ("update", "modelversions.modelversioning.io", *ns),
            ("update", "modelendpoints.modelversioning.io", *ns),
            ("delete", "modelendpoints.modelversioning.io", *ns),
            ("create", "pods", *ns),
            ("create", "pods/exec", *ns),
            ("delete", "pods", *ns),
            ("patch", "pods", *ns),
            ("patch", "nodes"),
            ("create", "rolebindings.rbac.authorization.k8s.io", *ns),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("update", "customresourcedefinitions.apiextensions.k8s.io"),
            ("create", "modelplatformpolicies.modelversioning.io"),
            ("patch", "modelplatformpolicies.modelversioning.io"),
            ("patch", "namespaces"),
        ]
        if scope == "cluster-ha":
            allowed += [("patch", "clusterkopfpeerings.kopf.dev")]
            refused += [
                ("delete", "clusterkopfpeerings.kopf.dev"),
                ("create", "clusterkopfpeerings.kopf.dev"),
            ]
        else:
            refused += [("patch", "clusterkopfpeerings.kopf.dev")]  # HA off: no peering grants
        refused += [("get", "secrets", "-n", "default"), ("get", "secrets", "-n", "kube-system")]
        refused += [("get", "configmaps", "-n", "default"), ("get", "configmaps", "-n", "kube-system")]
        if scope == "namespaced":
            refused += [
                ("patch", "deployments.apps", "-n", "default"),
                ("list", "modelversions.modelversioning.io", "-A"),
            ]
        else:  # namespaces are listed and watched whatever the scope: their labels select the policies
            refused += [("patch", "namespaces"), ("delete", "namespaces")]
        assert [a for a in allowed if not can_i(cluster, subject, *a)] == []
        assert [r for r in refused if can_i(cluster, subject, *r)] == []
    finally:
        if op is not None:
            # Delete the endpoint while our operator still runs, so that it releases its in-use
            # finalizers and the namespace can go (no terminating namespace left behind).
            try:
                objs.delete_mep("fraud")
                wait_for(
                    lambda: (
                        not any(
                            m["metadata"].get("finalizers")
                            for m in objs.co.list_namespaced_custom_object(
                                GROUP, "v1alpha1", work_ns, "modelversions"
                            )["items"]
                        )
                    ),
                    30,
                    "in-use finalizers released",
                )
            except (AssertionError, ApiException) as e:
                print(f"warning: cleanup: {e}")
            op.stop()
            print(f"---- operator ({scope}) log (tail) ----\n" + op.logs(60))
        for d in reversed(rbac_docs):
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
                cluster.kubectl(
                    "delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False
                )
        cluster.kubectl("delete", "namespace", work_ns, "--wait=false", "--ignore-not-found", check=False)
        cleanup.close()
