"""A real registry the real node's pods pull ``oci://`` artifacts from, for the e2e modules that serve
them (test_oci_e2e, test_node_cache_oci_e2e): not a conftest fixture, so only those modules start one.

* :func:`registries`: (the registry the pods pull from, with htpasswd; one without auth on the same
  storage, to push), both on the node's address, while the session operator allows ``oci://`` and
  reaches the registry over plain HTTP (its configuration restored after).
* :func:`pull_secret`: the dockerconfigjson Secret a version's ``artifact.secretRef`` names.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dataplane_harness import DataPlane
from helpers import Objects
from node import NODE_IP
from oci_registry import RegistryServer

SECRET = "registry-creds"


@contextlib.contextmanager
def registries(dataplane: DataPlane, root: Path) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    """(pull, push) on ``root``, on top of the operator's configuration as it is now."""
    op = dataplane.operator
    original = op.config.read_text()
    cfg = yaml.safe_load(original) or {}
    artifacts = cfg.setdefault("artifacts", {})
    artifacts["allowedSchemes"] = ["s3", "gs", "gcs", "https", "http", "file", "oci"]
    artifacts["plainHttpRegistries"] = [NODE_IP]
    with (
        RegistryServer.start(root, auth="htpasswd", host=NODE_IP) as pull,
        RegistryServer.start(root, host=NODE_IP) as push,
    ):
        op.config.write_text(yaml.safe_dump(cfg))
        op.restart()
        try:
            yield pull, push
        finally:
            op.config.write_text(original)
            op.restart()


def pull_secret(objs: Objects, pull: Any) -> None:
    """The Secret (``SECRET``) holding ``pull``'s credentials, in ``objs``' namespace."""
    objs.core.create_namespaced_secret(
        objs.ns,
        {
            "metadata": {"name": SECRET},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(pull.docker_config().encode()).decode()},
        },
    )
