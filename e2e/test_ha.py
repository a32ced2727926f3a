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
        # exactly one replica stays active: the one with the lower priority pauses in its favour
        paused = wait_for(
            lambda: [r for r in replicas if "Pausing operations in favour of" in r.logs(2000)],
            60,
            "a paused replica",
        )
        assert len(paused) == 1, [r.logs(40) for r in replicas]
        active = next(r for r in replicas if r not in paused)
        active.stop()
        objs.set_weights("ha", {"a": 20, "b": 80})
        wait_for(
            lambda: vs_weights(objs.virtualservice("ha")) == {"a": 20, "b": 80}, 120, "the standby took over"
        )
    finally:
        for r in replicas:
            r.stop()
        operator.start()
