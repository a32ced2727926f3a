"""The node cache for ``oci://`` versions on the real node (issue 26): the chart's node-cache DaemonSet,
the harness's real registry (docker-registry, htpasswd) on the node's address, real model pods whose init
container (the operator image) asks the agent by the pinned manifest digest before pulling.

* A second replica of an oci:// version starts from the cache: its init container logs a hit, and the
  registry's access log shows no request for the layer (nor the manifest) after the first pod's.
* The entry's bytes changed on the node's disk: never served; the next replica pulls from the registry
  (one more layer request) and the agent counts EntryCorrupt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, wait_for
from node_cache_agent import Agent, init_logs, installed
from oci_serving import pull_secret, registries
from test_dataplane import endpoint, live_on
from test_node_cache_e2e import _ready_pods, _scale
from test_oci_e2e import register_oci

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def agent(dataplane: DataPlane, kube: Any) -> Iterator[Agent]:
    with installed(dataplane, kube) as a:
        yield a


@pytest.fixture(scope="module")
def registry(
    agent: Agent, dataplane: DataPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Any]]:
    """As test_oci_e2e's (pull with htpasswd, push without), on top of the agent's operator config."""
    with registries(dataplane, tmp_path_factory.mktemp("oci-cache-registry")) as both:
        yield both


@pytest.fixture
def objs(kube, namespace, dp, agent, registry) -> Objects:  # type: ignore[no-untyped-def]
    o = Objects(kube, namespace)
    pull_secret(o, registry[0])
    return o


def test_a_second_oci_replica_starts_from_the_cache_without_a_registry_pull_and_a_changed_entry_is_refused(  # type: ignore[no-untyped-def]
    dp, objs, agent, registry
):
    pull, _ = registry
    pushed = register_oci(registry, objs, "ocicached", "1.0.0")
    wait_for(lambda: cond_is(objs.mv("ocicached-v1.0.0"), "ArtifactVerified", "True"), 120, "verified")
    content = objs.mv("ocicached-v1.0.0")["status"]["artifact"]["contentDigest"]
    objs.create(endpoint(dp, "ocicached", "ocicached", [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep("ocicached"), "Ready", "True"), 300, "1.0.0 Ready on a real pod")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    (first,) = _ready_pods(objs, "ocicached")
    logs = init_logs(objs.core, objs.ns, first)
    assert "node-cache: miss" in logs and "node-cache: offered" in logs and "201" in logs, logs
    entry: Path = agent.host_path / "entries" / f"directory-{content}" / "files" / "model.bin"
    data = entry.read_bytes()  # stored under the files' digest the operator recorded

    def requests(what: str) -> int:
        return sum(1 for ln in pull.access_log() if f"/v2/{objs.ns}/ocicached/{what}" in ln)

    layer = f"blobs/{pushed.layers[0]}"
    layer_pulls, manifest_pulls, hits = requests(layer), requests("manifests/"), agent.metric("hits_total")
    assert layer_pulls >= 2  # the operator's verification and the first pod

    second = _scale(objs, "ocicached", 2)[-1]
    logs = init_logs(objs.core, objs.ns, second)
    assert "node-cache: hit" in logs, logs
    assert (requests(layer), requests("manifests/")) == (layer_pulls, manifest_pulls)  # nothing pulled
    assert agent.metric("hits_total") == hits + 1

    entry.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, other bytes, on the node's disk
    corrupt = agent.metric('refusals_total{reason="EntryCorrupt"}')
    third = _scale(objs, "ocicached", 3)[-1]  # Ready: the layer came from the registry
    logs = init_logs(objs.core, objs.ns, third)
    assert "node-cache: corrupt" in logs, logs
    assert requests(layer) == layer_pulls + 1
    assert agent.metric('refusals_total{reason="EntryCorrupt"}') == corrupt + 1
    assert entry.read_bytes() == data  # the third replica offered the registry's files again
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "every replica answers")
