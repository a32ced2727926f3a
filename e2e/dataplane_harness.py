"""The real data plane for e2e modules: real model pods on the real node, a real gateway (Traefik), a
real Prometheus and an artifact server on the node's address, with the session operator reconfigured
for them (and restored after).

The fixtures are in conftest.py: ``dataplane`` (session-scoped: one Traefik and one Prometheus for every
module that uses it; it requests ``real_node``, which puts the session on the real node) and
``dp`` (the data plane with the test's own host). Each module defines its own ``objs``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane import ControlPlane
from gateway import Traefik
from images import OPERATOR_IMAGE
from node import NODE_IP
from prometheus import Prometheus

HOST = "fraud.models.example.com"


class ArtifactServer:
    """Serves a directory over HTTP on the node's address (pods and the operator fetch from it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = type("H", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        self.httpd = http.server.ThreadingHTTPServer(
            (NODE_IP, 0),
            lambda *a: handler(*a, directory=str(root)),  # type: ignore[misc]
        )
        self.base = f"http://{NODE_IP}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, rel: str, data: bytes) -> tuple[str, str]:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return f"{self.base}/{rel}", hashlib.sha256(data).hexdigest()


@dataclass
class DataPlane:
    cluster: ControlPlane
    node: Any
    gw: Traefik
    prom: Prometheus
    art: ArtifactServer
    operator: Any
    placement: dict[str, Any] = field(default_factory=dict)
    # Each test routes its own host: a finished test's namespace (and its HTTPRoute) is deleted in the
    # background, and two routes for one host on one Gateway would share its traffic.
    host: str = HOST


@contextlib.contextmanager
def data_plane(cluster: ControlPlane, real_node: Any, operator: Any, tmp: Path) -> Iterator[DataPlane]:
    """Traefik, Prometheus and the artifact server (serving ``tmp``) started, and the session operator
    reconfigured for them (restored after): the init container is the locally built operator image,
    Prometheus is the analysis source, and the Gateway API mirror is not declared supported (Traefik
    lacks RequestMirror). The ``dataplane`` fixture of conftest.py (session-scoped)."""
    gw = Traefik(cluster)
    gw.start()
    prom = Prometheus(cp=cluster, traefik=gw)
    prom.start()
    art = ArtifactServer(tmp)
    original = operator.config.read_text()
    cfg = yaml.safe_load(original) or {}
    cfg.setdefault("serving", {}).update(
        # notReadySeconds: a runtime that never becomes ready is reported after 15 s (default 60)
        {
            "initImage": OPERATOR_IMAGE,
            "initImagePullPolicy": "Never",
            "gatewayApiFeatures": [],
            "notReadySeconds": 15,
        }
    )
    cfg["analysis"] = {"prometheusUrl": prom.url, "timeoutSeconds": 3}
    operator.config.write_text(yaml.safe_dump(cfg))
    operator.restart()
    try:
        yield DataPlane(cluster, real_node, gw, prom, art, operator, real_node.pod_placement())
    finally:
        operator.config.write_text(original)
        operator.restart()
        art.httpd.shutdown()
        prom.stop()
        gw.stop()
