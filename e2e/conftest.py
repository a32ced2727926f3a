"""Fixtures for the end-to-end tests: a real control plane (see controlplane.py).

If the control plane cannot start, every e2e test ERRORS (it is never skipped).
"""

from __future__ import annotations

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

_started: list[ControlPlane] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    for cp in _started:
        what = "existing cluster" if cp.existing else "control plane"
        if "total" in cp.timings:
            terminalreporter.write_line(f"{what} startup {cp.timings['total']:.1f}s: {cp.summary()}")
        elif cp.timings:
            terminalreporter.write_line(f"{what} FAILED to start after: {cp.summary()}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    _started.append(cp)
    cp.start()  # raises -> every test using it errors
    try:
        yield cp
    finally:
        cp.stop()


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


@pytest.fixture
def namespace(kube: object) -> Iterator[str]:
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


# ---- the operator under test -------------------------------------------------------------------
@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts for e2e tests live here; the operator may read file:// URIs only under it."""
    return Path(tmp_path_factory.mktemp("artifacts")).resolve()


@pytest.fixture(scope="session")
def operator(cluster: ControlPlane, artifact_root: Path) -> Iterator[object]:
    """The operator as a subprocess, watching the whole cluster (restartable by tests)."""
    from operator_proc import OperatorProcess

    op = OperatorProcess(
        cluster.kubeconfig,
        settings={
            "artifacts": {"fileRoots": [str(artifact_root)], "allowPrivateNetworks": True},
            "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
            "serving": {"driftCheckSeconds": 30},
        },
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print("---- operator log (tail) ----\n" + op.logs(80))
