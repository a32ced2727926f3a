"""HA with kopf peering: two replicas, exactly one acts; when it stops, the other takes over."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Objects, cond_is, make_artifact, model_endpoint, model_version, vs_weights, wait_for
from operator_proc import OperatorProcess

CHART_CRDS = Path(__file__).resolve().parents[1] / "charts" / "modelversioning-operator" / "crds"


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


def test_two_peered_replicas_one_active_then_failover(
    kube, namespace, operator, cluster, peering, artifact_root
):
    objs = Objects(kube, namespace)
    operator.stop()  # only the two peered replicas act in this test
    settings = {"artifacts": {"fileRoots": [str(artifact_root)]}}
    replicas = [
        OperatorProcess(
            cluster.kubeconfig,
            settings=settings,
            extra_env={"MODELVERSIONING_PEERING": peering, "POD_ID": f"replica-{i}"},
        )
        for i in range(2)
    ]
    try:
        for r in replicas:
            r.start()
        for v in ("1.0.0", "1.1.0"):
            uri, sha = make_artifact(artifact_root, "ha", v)
            objs.create(model_version("ha", v, uri, sha, stage="production"))
        objs.create(
            model_endpoint(
                "ha",
                "ha",
                [
                    {"name": "a", "version": "1.0.0", "weight": 90},
                    {"name": "b", "version": "1.1.0", "weight": 10},
                ],
            )
        )
        wait_for(lambda: cond_is(objs.mep("ha"), "Ready", "True"), 90, "Ready with two peered replicas")
        # Both replicas are in the peering object with distinct priorities; the lower one is paused.
        # (kopf starts peered operators paused and logs "Resuming" once no higher peer is seen, then
        # "Pausing ..." if one shows up later, so the state is whichever of the two came last.)
        co = objs.co
        peers = wait_for(
            lambda: (
                (
                    st := co.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering).get(
                        "status"
                    )
                )
                and {"replica-0", "replica-1"} <= set(st)
                and st
            ),
            60,
            "both replicas in the peering object",
        )
        prio = {
            pid: int(info["priority"]) for pid, info in peers.items() if pid in ("replica-0", "replica-1")
        }
        assert prio["replica-0"] != prio["replica-1"]
        active = replicas[0] if prio["replica-0"] > prio["replica-1"] else replicas[1]
        standby = replicas[1] if active is replicas[0] else replicas[0]

        def state(r: OperatorProcess) -> str:
            log = r.logs(5000)
            paused = log.rfind("Pausing operations in favour of")
            resumed = log.rfind("Resuming operations after the pause")
            return "paused" if paused > resumed or resumed < 0 else "active"

        try:
            wait_for(
                lambda: state(standby) == "paused" and state(active) == "active", 60, "one active, one paused"
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n" + "\n----\n".join(r.logs(60) for r in replicas)) from None
        active.stop()
        objs.set_weights("ha", {"a": 20, "b": 80})
        wait_for(
            lambda: vs_weights(objs.virtualservice("ha")) == {"a": 20, "b": 80}, 120, "the standby took over"
        )
    finally:
        for r in replicas:
            r.stop()
        operator.start()
