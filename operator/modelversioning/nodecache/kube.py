"""What the node agent asks the API server, with its own ServiceAccount (in-cluster) and nothing else:
a TokenReview of the caller's token (``tokenreviews: create``) and the ModelVersions of the caller's
namespace (``modelversions: list``). Each request asks again: a version revoked or re-verified as
refused a moment ago is not served from a stale copy.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from modelversioning.api import wire as R
from modelversioning.domain.node_cache import Review

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(Exception):
    """The API server could not answer (the agent then refuses: ReviewFailed)."""


class ClusterApi(Protocol):
    def review(self, token: str) -> Review: ...
    def versions(self, namespace: str) -> list[dict[str, Any]]: ...


class InClusterApi:
    """The API server at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with the pod's token."""

    def __init__(self, server: str | None = None, sa_dir: Path = SA_DIR, timeout: float = 5.0) -> None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if server is None and not host:
            raise ApiError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
        self.server = server or f"https://{'[' + host + ']' if ':' in host else host}:{port}"
        self.sa_dir, self.timeout = sa_dir, timeout
        self.ssl = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = (self.sa_dir / "token").read_text().strip()  # rotated by the kubelet: read each time
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl) as resp:
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ApiError(f"{method} {path}: {e}") from None

    def review(self, token: str) -> Review:
        body = {
            "apiVersion": R.TOKEN_REVIEW.api_version,
            "kind": R.TOKEN_REVIEW.kind,
            "spec": {"token": token, "audiences": [R.NODE_CACHE_AUDIENCE]},
        }
        status = self._request("POST", R.TOKEN_REVIEW.path(None), body).get("status") or {}
        return review_of(status)

    def versions(self, namespace: str) -> list[dict[str, Any]]:
        items = self._request("GET", R.MODELVERSION.path(namespace)).get("items") or []
        return [dict(i) for i in items]


def review_of(status: dict[str, Any]) -> Review:
    """A TokenReview's status as the decision table reads it."""
    user = status.get("user") or {}
    nodes = (user.get("extra") or {}).get(R.TOKEN_NODE_NAME_EXTRA) or []
    return Review(
        authenticated=bool(status.get("authenticated")),
        username=str(user.get("username") or ""),
        audiences=tuple(str(a) for a in status.get("audiences") or ()),
        node=str(nodes[0]) if len(nodes) == 1 else "",
    )
