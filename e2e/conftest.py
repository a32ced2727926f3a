"""Fixtures for the end-to-end tests: a real control plane (see controlplane.py).

If the control plane cannot start, every e2e test ERRORS (it is never skipped).

``cluster`` is one control plane per session. When any collected test requests ``real_node`` (or
``MV_E2E_REAL_NODE=1``), that control plane has the real node of node.py attached (kubelet +
containerd running real pods, see docs/harness.md); otherwise it has only kwok nodes and starts in
seconds. A test puts a pod on the real node with ``real_node.pod_placement()`` (nodeSelector +
toleration); a ModelEndpoint with ``spec.placement`` of the same values. Tests marked
``own_real_node`` (e2e/test_host_state.py) start real nodes of their own: they run first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import ControlPlane  # noqa: E402
from node import RealNode  # noqa: E402

_started: list[ControlPlane] = []
_want_real_node = os.environ.get("MV_E2E_REAL_NODE") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "own_real_node: starts real nodes of its own (one per machine): runs before every other test, "
        "so before the session's shared real node holds the machine lock",
    )
    config.addinivalue_line(
        "markers",
        "measurement: a benchmark section run once on the session's real node, its output's shape checked "
        "(its figures are the benchmark's): ./dev test leaves these out of the node lane (the critical "
        "path of CI); ./dev bench --smoke runs them",
    )
    config.addinivalue_line(
        "markers",
        "lane(name): a control-plane test that runs in another lane than `control` (`bench`: the long "
        "benchmark smoke tests, which ./dev test runs after the unit tests, beside the two other lanes; "
        "`peers`: tests that run what the peers build lane builds besides kstatus-check (Flux), which "
        "./dev test runs once that is built, after the bench lane)",
    )


LANES = ("node", "control", "bench", "peers")


def lane_of(item: pytest.Item) -> str:
    """``node``: the test runs pods or traffic on a real node (the session's, through the ``real_node``
    fixture, or nodes of its own: ``own_real_node``); otherwise the control plane and kwok suffice:
    ``control``, or the lane its ``lane`` marker names (never ``node``: one real node per machine)."""
    if item.get_closest_marker("own_real_node") is not None:
        return "node"
    if "real_node" in getattr(item, "fixturenames", ()):
        return "node"
    marker = item.get_closest_marker("lane")
    if marker is None:
        return "control"
    name = str(marker.args[0])
    if name not in LANES or name == "node":
        raise pytest.UsageError(f"{item.nodeid}: lane({name!r}) is not a control-plane lane")
    return name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``MV_E2E_LANE=node|control`` keeps one lane's e2e tests (``./dev test`` runs both lanes at once,
    each a session with its own control plane; one real node per machine, so one ``node`` lane). Order:
    tests with real nodes of their own first (before the session's real node holds the machine lock),
    then the control-plane tests, then the tests on the session's real node, so the session-scoped data
    plane (Traefik, Prometheus, the operator reconfigured for them) is started once, after the tests
    that need the operator as configured by default."""
    global _want_real_node
    lane = os.environ.get("MV_E2E_LANE", "")
    if lane and lane not in LANES:
        raise pytest.UsageError(f"MV_E2E_LANE={lane!r}: expected one of {', '.join(LANES)} (or unset: both)")
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        e2e = E2E_DIR in Path(str(item.fspath)).resolve().parents
        if e2e:
            item.add_marker(pytest.mark.e2e)
        (dropped if e2e and lane and lane_of(item) != lane else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    _want_real_node = _want_real_node or any("real_node" in getattr(i, "fixturenames", ()) for i in items)

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("own_real_node") is not None:
            return 0
        return 2 if lane_of(item) == "node" else 1

    items.sort(key=rank)  # stable: file order within a rank


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    for cp in _started:
        what = "existing cluster" if cp.existing else "control plane"
        if "total" in cp.timings:
            terminalreporter.write_line(f"{what} startup {cp.timings['total']:.1f}s: {cp.summary()}")
        elif cp.timings:
            terminalreporter.write_line(f"{what} FAILED to start after: {cp.summary()}")
        if cp.real_node is not None and cp.real_node.timings:
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in cp.real_node.timings.items())
            terminalreporter.write_line(f"real node: {steps}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    existing = bool(os.environ.get("MV_E2E_KUBECONFIG")) or os.environ.get("MV_E2E_USE_EXISTING") == "1"
    cp = ControlPlane(real_node=_want_real_node and not existing)  # existing: `real_node` says why not
    _started.append(cp)
    cp.start()  # raises -> every test using it errors
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def real_node(cluster: ControlPlane) -> RealNode:
    """The session's real node (node.RealNode): kubelet + containerd on this host, running real pods
    of the locally built images (images.OPERATOR_IMAGE...). Its start failing fails the test."""
    if cluster.real_node is None:  # e.g. an existing cluster, or requested after the session started
        raise RuntimeError(
            "the control plane has no real node: request the real_node fixture from a collected test "
            "(or set MV_E2E_REAL_NODE=1); existing clusters (MV_E2E_USE_EXISTING) have none"
        )
    node: RealNode = cluster.real_node
    return node


@pytest.fixture(scope="session")
def kube(cluster: ControlPlane) -> Iterator[object]:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    api = client.ApiClient(cfg)
    try:
        yield api
    finally:
        api.close()


@contextlib.contextmanager
def _new_namespace(kube: object) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube)
    name = f"e2e-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e": "true"})))
    # Pods need the namespace's default ServiceAccount (created by the controller-manager).
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def namespace(kube: object) -> Iterator[str]:
    with _new_namespace(kube) as name:
        yield name


@pytest.fixture
def other_namespace(kube: object) -> Iterator[str]:
    """A second namespace for the test (another tenant), made and deleted like ``namespace``."""
    with _new_namespace(kube) as name:
        yield name


# ---- the operator under test -------------------------------------------------------------------
@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts for e2e tests live here; the operator may read file:// URIs only under it."""
    return Path(tmp_path_factory.mktemp("artifacts")).resolve()


@pytest.fixture(scope="session")
def operator(cluster: ControlPlane, artifact_root: Path) -> Iterator[object]:
    """The operator as a subprocess, watching the whole cluster (restartable by tests)."""
    import socket

    from operator_proc import OperatorProcess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = int(s.getsockname()[1])
    op = OperatorProcess(
        cluster.kubeconfig,
        metrics_port=metrics_port,
        settings={
            "artifacts": {
                "fileRoots": [str(artifact_root)],
                # private networks are refused by default: allow the test servers (loopback, real node)
                "allowedPrivateNetworks": ["127.0.0.0/8", "10.0.0.0/8"],
            },
            "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
            # the cluster enforces the chart's admission policies (e2e/admission.py), as the chart says
            "admission": {"enforced": True},
            "serving": {
                "driftCheckSeconds": 30,
                "drainSeconds": 1,
                # kwok tests check the RequestMirror filter against the schema; the real-gateway tests
                # restart the operator without it (Traefik answers 500 to a rule with that filter)
                "gatewayApiFeatures": ["HTTPRouteRequestMirror"],
            },
        },
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print("---- operator log (tail) ----\n" + op.logs(80))


# ---- the real data plane (dataplane_harness.py) --------------------------------------------------
@pytest.fixture(scope="session")
def dataplane(cluster, real_node, operator, tmp_path_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """Traefik, Prometheus and an artifact server on the real node's address, the session operator
    reconfigured for them; once per session (restored after), started by the first test that uses it
    (the tests that use it run last: pytest_collection_modifyitems).
    See dataplane_harness.data_plane."""
    from dataplane_harness import data_plane

    with data_plane(cluster, real_node, operator, tmp_path_factory.mktemp("served-artifacts")) as dp:
        yield dp


@pytest.fixture
def dp(dataplane, namespace) -> object:  # type: ignore[no-untyped-def]
    """The data plane with this test's own host (``<namespace>.models.example.com``)."""
    from dataclasses import replace

    return replace(dataplane, host=f"{namespace}.models.example.com")
