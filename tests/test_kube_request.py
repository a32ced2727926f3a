"""What Kube hands the HTTP layer: the body as JSON data, serialized exactly as the client's own
sanitize_for_serialization would have made it (that copy is skipped on the route's write path)."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from modelversioning.api.settings import Serving
from modelversioning.handlers.kube import Kube
from modelversioning.render import EndpointRef, render_deployment
from test_endpoint_inputs import _spec, _version


class _Reply:
    status, data = 200, b'{"kind": "Deployment"}'

    def read(self) -> bytes:
        return self.data


class RecordingApi(client.ApiClient):  # type: ignore[misc]
    def __init__(self) -> None:
        cfg = client.Configuration(host="https://127.0.0.1:6443")
        cfg.api_key = {"authorization": "Bearer t0ken"}
        super().__init__(cfg)
        self.sent: list[tuple[str, str, dict[str, Any], Any]] = []

    def call_api(
        self, method: str, url: str, header_params: Any = None, body: Any = None, **_: Any
    ) -> _Reply:
        self.sent.append((method, url, dict(header_params or {}), body))
        return _Reply()


def test_an_apply_sends_the_object_as_the_client_would_have_serialized_it() -> None:
    api = RecordingApi()
    ref = EndpointRef(name="ep", namespace="ml", uid="ep-uid")
    spec = _spec(90)
    dep = render_deployment(ref, spec, spec.variants[0], _version(), Serving())
    dep["spec"]["template"]["spec"]["tuple"] = ("a", 1)  # a JSON array, either way
    Kube(api).apply(dep)
    ((method, url, headers, body),) = api.sent
    assert method == "PATCH"
    assert url.startswith(
        f"https://127.0.0.1:6443/apis/apps/v1/namespaces/ml/deployments/{dep['metadata']['name']}?"
    )
    assert "fieldManager=modelversioning-operator" in url and "force=true" in url
    assert headers["Content-Type"] == "application/apply-patch+yaml"
    assert headers["authorization"] == "Bearer t0ken"
    assert json.dumps(body) == json.dumps(api.sanitize_for_serialization(dep))
