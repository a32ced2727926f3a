"""HA with kopf peering: two replicas, exactly one acts; a paused standby does nothing.

Each replica runs as its own ServiceAccount, so the API server's audit log tells their requests
apart. While the active replica promotes a version and changes an endpoint's weights, the standby
(started after it, at a lower priority) must make no request at all for our objects or children
(no LIST, GET, WATCH or write) and no write except kopf's own peering keep-alive, and reconcile
nothing (its metrics). When the active replica stops, the standby lists the cache again (one LIST
per kind) before it reconciles, and takes over. When the first replica comes back, the one acting
(its cache full, its queue and drift checks running) is paused again and makes no request for our
objects and reconciles nothing from its frozen cache.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission import allow_operator
from childserver import free_port
from helpers import Objects, make_artifact, model_endpoint, model_version, vs_weights, wait_for
from operator_proc import OperatorProcess

CHART_CRDS = Path(__file__).resolve().parents[1] / "charts" / "modelversioning-operator" / "crds"
# everything the operator reads or writes for its own work (kopf's peering and discovery excluded)
OUR_RESOURCES = {
    "modelversions",
    "modelendpoints",
    "deployments",
    "services",
    "virtualservices",
    "httproutes",
    "secrets",
    "events",
}
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture
def peering(cluster):
    cluster.kubectl("apply", "--server-side", "-f", str(CHART_CRDS / "kopf.dev_peerings.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s"
    )
    cluster.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "mv-ha-e2e"}}
    )
    yield "mv-ha-e2e"
    cluster.kubectl("delete", "clusterkopfpeering", "mv-ha-e2e", "--ignore-not-found")


@pytest.fixture
def identities(cluster, namespace, tmp_path):
    """A ServiceAccount, token and kubeconfig per replica: (kubeconfig path, audit username)."""
    made: list[str] = []
    operators = contextlib.ExitStack()  # the admission policies: each replica is "the operator"

    def make(name: str) -> tuple[Path, str]:
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
        binding = f"{namespace}-{name}"
        cluster.kubectl(
            "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:{name}",
        )  # fmt: skip
        made.append(binding)
        token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        ctx = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])["context"]
        entry = next(c for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        path = tmp_path / f"{name}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [entry],
                    "users": [{"name": name, "user": {"token": token}}],
                    "contexts": [{"name": name, "context": {"cluster": entry["name"], "user": name}}],
                    "current-context": name,
                }
            )
        )
        user = f"system:serviceaccount:{namespace}:{name}"
        operators.enter_context(allow_operator(cluster, user))
        return path, user

    yield make
    operators.close()
    for binding in made:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found")


def reconciles(port: int) -> int:
    """Reconciles run so far by the replica serving metrics on `port` (both kinds)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("modelversioning_reconcile_duration_seconds_count")
    )


def requests_of(cluster, user: str, start: int) -> list[dict[str, Any]]:
    """The user's requests since audit offset `start` (one per request, in order)."""
    seen: set[str] = set()
    out = []
    for e in cluster.audit_events(start):
        if (e.get("user") or {}).get("username") != user or e["auditID"] in seen:
            continue
        seen.add(e["auditID"])
        out.append(e)
    return out


def summary(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        f"{e['verb']} {(e.get('objectRef') or {}).get('resource', e['requestURI'])}" for e in events
    )


def test_paused_standby_makes_no_requests_then_takes_over(
    kube, namespace, operator, cluster, peering, identities, artifact_root
):
    assert cluster.audit_log is not None, "this test counts requests in the local control plane's audit log"
    objs = Objects(kube, namespace)
    # Each identity is an operator for the admission policies before the session operator stops: a
    # failure there must not leave the session without its operator (every later test would fail).
    (active_cfg, active_user), (standby_cfg, standby_user) = identities("mv-active"), identities("mv-standby")
    settings = {
        "artifacts": {"fileRoots": [str(artifact_root)]},
        "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
        "serving": {"driftCheckSeconds": 1},  # a standby reconciling from its cache would do it often
    }
    ports = {"active": free_port(), "standby": free_port()}

    def replica(kubeconfig: Path, pid: str, priority: int, port: int) -> OperatorProcess:
        env = {"MODELVERSIONING_PEERING": peering, "MODELVERSIONING_PRIORITY": str(priority), "POD_ID": pid}
        return OperatorProcess(kubeconfig, settings=settings, metrics_port=port, extra_env=env)

    active = replica(active_cfg, "replica-active", 200, ports["active"])
    standby = replica(standby_cfg, "replica-standby", 100, ports["standby"])
    operator.stop()  # only the two peered replicas act in this test (started again in the finally)
    try:
        active.start()
        for v, stage in (("1.0.0", "production"), ("1.1.0", "staging")):
            uri, sha = make_artifact(artifact_root, "ha", v)
            objs.create(model_version("ha", v, uri, sha, stage=stage))
        objs.create(
            model_endpoint(
                "ha",
                "ha",
                [
                    {"name": "a", "version": "1.0.0", "weight": 100},
                    {"name": "b", "version": "1.1.0", "weight": 0},
                ],
            )
        )
        wait_for(lambda: vs_weights(objs.virtualservice("ha")) == {"a": 100}, 90, "the active replica routes")

        # The standby starts at a lower priority: kopf keeps it paused from its first moment.
        start = cluster.audit_offset()
        standby.start()
        co = objs.co
        wait_for(
            lambda: (
                "replica-standby"
                in (
                    co.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering).get(
                        "status"
                    )
                    or {}
                )
            ),
            60,
            "the standby in the peering object",
        )
        # The active replica works: a promotion, then a weight change onto the promoted version.
        objs.patch_mv("ha-v1.1.0", {"spec": {"stage": "production"}})
        wait_for(
            lambda: (objs.mv("ha-v1.1.0").get("status") or {}).get("stage") == "production", 60, "promotion"
        )
        objs.set_weights("ha", {"a": 20, "b": 80})
        wait_for(lambda: vs_weights(objs.virtualservice("ha")) == {"a": 20, "b": 80}, 60, "the weight change")
        # ... and its drift check runs a few more times (the standby's would have, too, if it ran).
        done = reconciles(ports["active"])
        wait_for(lambda: reconciles(ports["active"]) >= done + 6, 30, "three more drift checks")

        standby_requests = requests_of(cluster, standby_user, start)
        active_requests = requests_of(cluster, active_user, start)
        print(f"standby while paused: {len(standby_requests)} requests: {dict(summary(standby_requests))}")
        print(f"active meanwhile: {len(active_requests)} requests: {dict(summary(active_requests))}")
        ours = [e for e in standby_requests if (e.get("objectRef") or {}).get("resource") in OUR_RESOURCES]
        writes = [
            e
            for e in standby_requests
            if e["verb"] in WRITES and (e.get("objectRef") or {}).get("apiGroup") != "kopf.dev"
        ]
        assert ours == [], f"a paused standby touched our objects: {dict(summary(ours))}"
        assert writes == [], f"a paused standby wrote: {dict(summary(writes))}"
        assert reconciles(ports["standby"]) == 0
        assert summary(active_requests)["patch modelendpoints"] >= 1  # the active one did the work

        # Failover: the standby lists each kind once more, then reconciles and takes over.
        takeover = cluster.audit_offset()
        active.stop()
        objs.set_weights("ha", {"a": 50, "b": 50})
        wait_for(
            lambda: vs_weights(objs.virtualservice("ha")) == {"a": 50, "b": 50}, 60, "the standby took over"
        )
        after = requests_of(cluster, standby_user, takeover)
        print(f"standby after takeover: {len(after)} requests: {dict(summary(after))}")
        # the operator's own requests (kopf's watches re-list too, with user agent kopf/...)
        own = [
            (e["verb"], (e.get("objectRef") or {}).get("resource"))
            for e in after
            if not e.get("userAgent", "").startswith("kopf/")
        ]
        first_write = next(i for i, (verb, res) in enumerate(own) if verb in WRITES and res in OUR_RESOURCES)
        for res in (
            "modelversions",
            "modelendpoints",
            "deployments",
            "services",
            "virtualservices",
            "httproutes",
        ):
            assert own[:first_write].count(("list", res)) == 1, f"not one LIST of {res} before reconciling"
        # counted when a reconcile ends: the route write (seen above) comes before its status write
        wait_for(lambda: reconciles(ports["standby"]) > 0, 10, "the standby's reconciles counted")

        # Demotion: the replica that now acts (cache full, queue and drift checks running) is paused
        # when a peer of higher priority comes back; from then on it does nothing either.
        pauses = standby.log_path.read_text(errors="replace").count("Pausing operations")
        active.start()
        wait_for(
            lambda: standby.log_path.read_text(errors="replace").count("Pausing operations") > pauses,
            60,
            "the acting replica paused in favour of the returning one",
        )
        objs.set_weights("ha", {"a": 10, "b": 90})
        wait_for(lambda: vs_weights(objs.virtualservice("ha")) == {"a": 10, "b": 90}, 60, "active again")
        demoted = cluster.audit_offset()
        before = reconciles(ports["standby"])
        objs.set_weights("ha", {"a": 30, "b": 70})
        wait_for(lambda: vs_weights(objs.virtualservice("ha")) == {"a": 30, "b": 70}, 60, "and again")
        done = reconciles(ports["active"])
        wait_for(lambda: reconciles(ports["active"]) >= done + 6, 30, "three more drift checks")
        paused_again = requests_of(cluster, standby_user, demoted)
        print(f"demoted replica: {len(paused_again)} requests: {dict(summary(paused_again))}")
        touched = [e for e in paused_again if (e.get("objectRef") or {}).get("resource") in OUR_RESOURCES]
        assert touched == [], f"a demoted replica touched our objects: {dict(summary(touched))}"
        assert reconciles(ports["standby"]) == before, "a demoted replica reconciled from its frozen cache"
    except BaseException:
        print("\n----\n".join(r.logs(80) for r in (active, standby)))
        raise
    finally:
        for r in (active, standby):
            r.stop()
        operator.start()
