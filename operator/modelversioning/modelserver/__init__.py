"""The reference model server: serves the verified artifact of one ModelVersion.

Run as ``modelversioning model-server`` from the operator's image (the same package), in the
Deployment the operator renders: the operator sets ``MODEL_PATH`` (the read-only mount the
verify-artifact init container filled), ``MODEL_NAME``, ``MODEL_VERSION`` and ``MODEL_SHA256``.

* At start it reads every file under ``MODEL_PATH`` and computes the artifact digest (the sha256 of
  a single file, else the manifest digest of ``modelversioning.artifacts.manifest``). It is healthy
  only once that succeeded and, when ``MODEL_SHA256`` is set, the digest matches; until then
  the health path and predictions answer 503 with the reason (and loading is retried).
* ``POST /v1/predict`` (and ``GET /``): a deterministic JSON prediction naming the model, version,
  digest, variant and the pod (hostname) that answered. It sets no ``x-model-*`` headers itself:
  those come from the route, so a test can tell the two apart.
* ``/healthz`` (and ``--health-path``), ``/metrics`` (Prometheus, ``modelserver_*``).
* Misbehaviour for tests and demos: ``--error-rate`` (a fraction of predictions answered 500:
  evenly spread, exactly ``floor(n * rate)`` of the first n, or seeded-random with
  ``--error-seed``) and ``--latency-ms`` (added to every prediction). With ``--admin-port`` both
  can be changed at runtime (``PUT /faults``) on a port no Service exposes, with a bearer token
  (``MODEL_SERVER_ADMIN_TOKEN`` or ``MODEL_SERVER_ADMIN_TOKEN_FILE``; no token: no fault port).
* Request bodies: at most 1 MiB read, Content-Length or chunked (:mod:`.body`).

Nothing here imports kopf or kubernetes (import-linter contract).
"""

from __future__ import annotations

from modelversioning.modelserver.faults import FaultInjector, Faults
from modelversioning.modelserver.model import LoadedModel, ModelLoadError, load_model
from modelversioning.modelserver.server import Identity, ModelServer, ServerConfig, serve

__all__ = [
    "FaultInjector",
    "Faults",
    "Identity",
    "LoadedModel",
    "ModelLoadError",
    "ModelServer",
    "ServerConfig",
    "load_model",
    "serve",
]
