"""The Deployment of one slot of a variant (one version, one pod template): a verify-artifact init
container, then the model server.

The init container downloads the artifact into an emptyDir and checks its sha256
against the pinned ModelVersion; the server only starts when that succeeded and
sees the model read-only. It enforces the operator's own artifact policy
(``--policy-json``: schemes, hosts, private networks, file roots, limits), takes its
credentials only from the referenced Secret (``--env-credentials secret``: bound to
the hosts the Secret names, anonymous without a Secret; for ``oci://`` the Secret's
``.dockerconfigjson`` as ``MODELVERSIONING_DOCKER_CONFIG_JSON``) and checks the declared size.
With ``serving.nodeCachePort`` the init container first asks its node's cache agent (``--node-cache``:
the node's IP from the downward API, a projected ServiceAccount token of the node-cache audience, mounted
in the init container only) and offers what it fetched (cli/verify.py, artifacts/node_cache.py); for an
``oci://`` version the verified contentDigest is pinned in its arguments (``--node-cache-content-digest``).
Every container runs hardened (non-root, read-only root filesystem, no capabilities,
RuntimeDefault seccomp).
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion_spec import (
    ModelVersionSpec,
    ResolvedRuntime,
    Resources,
    VariantResources,
)
from modelversioning.api.settings import ArtifactPolicy, Serving
from modelversioning.api.wire import NODE_CACHE_AUDIENCE
from modelversioning.domain.oci_ref import is_oci
from modelversioning.render import naming
from modelversioning.render.inputs import RenderError, check_pin
from modelversioning.render.values import EndpointRef

INIT_CONTAINER = "verify-artifact"
# oci:// registry credentials: the key of a kubernetes.io/dockerconfigjson Secret, and the env var the
# init container reads it from (artifacts.oci_auth, which render may not import)
DOCKER_CONFIG_SECRET_KEY = ".dockerconfigjson"
DOCKER_CONFIG_ENV = "MODELVERSIONING_DOCKER_CONFIG_JSON"
SERVER_CONTAINER = "model-server"
MODEL_VOLUME = "model"
INIT_TMP_VOLUME = "tmp-verify"
SERVER_TMP_VOLUME = "tmp-server"
# The node cache (serving.nodeCachePort): the node's IP (downward API) and the projected token the init
# container shows the node's agent (audience wire.NODE_CACHE_AUDIENCE), mounted in the init container only.
NODE_IP_ENV = "NODE_IP"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
NODE_CACHE_TOKEN_VOLUME = "node-cache-token"
NODE_CACHE_TOKEN_DIR = "/var/run/secrets/node-cache"
NODE_CACHE_TOKEN_SECONDS = 600

# The distroless "nonroot" user. Set explicitly so runAsNonRoot can be verified by the
# kubelet even for images whose USER is a name (or root), and so both containers own
# the files in the model volume.
RUN_AS = 65532

# Env vars the operator sets on the server; runtime.env cannot override them.
ENV_MODEL_PATH = "MODEL_PATH"
ENV_MODEL_NAME = "MODEL_NAME"
ENV_MODEL_VERSION = "MODEL_VERSION"
ENV_MODEL_SHA256 = "MODEL_SHA256"
ENV_MODEL_VARIANT = "MODEL_VARIANT"
ENV_MODEL_PORT = "MODEL_PORT"  # runtime.port: the container port the Service and the probe use
# oci:// only: MODEL_SHA256 is the manifest digest, which the files cannot be hashed back to (the
# verify-artifact init container checked the manifest and every layer); value OCI_MANIFEST
ENV_MODEL_SHA256_OF = "MODEL_SHA256_OF"
OCI_MANIFEST = "oci-manifest"
# Only for a version with spec.signature: its JSON, for runtimes that report or check it (the reference
# model server's Open Inference Protocol metadata and input checks)
ENV_MODEL_SIGNATURE = "MODEL_SIGNATURE"
RESERVED_ENV = frozenset(
    {ENV_MODEL_PATH, ENV_MODEL_NAME, ENV_MODEL_VERSION, ENV_MODEL_SHA256, ENV_MODEL_VARIANT, ENV_MODEL_PORT}
    | {ENV_MODEL_SHA256_OF, ENV_MODEL_SIGNATURE}
)


_DECIMAL_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def decimal_quantity(n: int) -> str:
    """An integer as the API server writes it back (canonical decimal SI: 1200000000 -> 1200M),
    so that desired and live objects compare equal."""
    suffix = 0
    while n and n % 1000 == 0 and suffix < len(_DECIMAL_SUFFIXES) - 1:
        n //= 1000
        suffix += 1
    return f"{n}{_DECIMAL_SUFFIXES[suffix]}"


# The kubelet measures an emptyDir by the disk blocks it uses (a 33-byte file takes 4 KiB, a directory
# its own blocks): a limit of the bytes alone evicted the pods of small models within a minute.
MODEL_VOLUME_SLACK_BYTES = 32_000_000


def model_volume_size_limit(size_bytes: int | None) -> str | None:
    """emptyDir sizeLimit: artifact size + 20 % (rounded up) + 32 MB for block rounding and filesystem
    overhead, None when the size is unknown."""
    if not size_bytes:
        return None
    return decimal_quantity((size_bytes * 6 + 4) // 5 + MODEL_VOLUME_SLACK_BYTES)


def k8s_resources(resources: Resources | VariantResources | None) -> dict[str, dict[str, str]]:
    """Resources model -> core/v1 ResourceRequirements (quantities as strings, empty parts omitted)."""
    if resources is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    if resources.requests:
        out["requests"] = {k: str(v) for k, v in sorted(resources.requests.items())}
    if resources.limits:
        out["limits"] = {k: str(v) for k, v in sorted(resources.limits.items())}
    return out


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def policy_json(policy: ArtifactPolicy) -> str:
    """The artifact policy as the init container's ``--policy-json`` (compact, stable order). A setting
    added later is left out while it has its default, so the pod template (and the slot's name) of an
    existing version does not change when the operator is upgraded."""
    doc = policy.model_dump(mode="json", by_alias=True)
    if not doc.get("plainHttpRegistries"):
        doc.pop("plainHttpRegistries", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _node_cache(version: ModelVersionSpec, serving: Serving, content_digest: str) -> bool:
    """Whether the pod asks the node cache: the port is set and, for an ``oci://`` version, its verified
    contentDigest is known (pinned into the init container's arguments, so the pod never takes the
    agent's word for what the files hash to; without one, no cache rather than trust)."""
    if serving.node_cache_port is None:
        return False
    return not is_oci(version.artifact.uri) or bool(_HEX64.match(content_digest))


def _init_container(
    version: ModelVersionSpec,
    serving: Serving,
    policy: ArtifactPolicy,
    trust_json: str | None = None,
    content_digest: str = "",
) -> dict[str, Any]:
    artifact = version.artifact
    args = [
        "verify-artifact",
        artifact.uri,
        "--sha256",
        artifact.sha256,
        "--dest",
        serving.model_mount_path,
        "--output",
        "json",
        "--env-credentials",
        "secret",
        "--policy-json",
        policy_json(policy),
    ]
    if artifact.size_bytes is not None:
        args += ["--size-bytes", str(artifact.size_bytes)]
    if trust_json is not None:  # a signed version: the pod checks the signature again (cli/verify.py)
        args += ["--trust-json", trust_json]
    cache = _node_cache(version, serving, content_digest)
    if cache:
        args += [
            "--node-cache",
            f"http://$({NODE_IP_ENV}):{serving.node_cache_port}",
            "--node-cache-token-file",
            f"{NODE_CACHE_TOKEN_DIR}/token",
        ]
        if is_oci(artifact.uri):
            args += ["--node-cache-content-digest", content_digest]
    container: dict[str, Any] = {
        "name": INIT_CONTAINER,
        "image": serving.init_image,
        "imagePullPolicy": serving.init_image_pull_policy,
        "args": args,
    }
    if artifact.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": artifact.secret_ref.name}}]
        if is_oci(artifact.uri):  # a dockerconfigjson Secret's key is no env var name: mapped by hand
            container["env"] = [
                {
                    "name": DOCKER_CONFIG_ENV,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": artifact.secret_ref.name,
                            "key": DOCKER_CONFIG_SECRET_KEY,
                            "optional": True,
                        }
                    },
                }
            ]
    container["volumeMounts"] = [
        {"name": MODEL_VOLUME, "mountPath": serving.model_mount_path},
        {"name": INIT_TMP_VOLUME, "mountPath": "/tmp"},
    ]
    if cache:
        node_ip = {"name": NODE_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
        container["env"] = [*container.get("env", []), node_ip]
        container["volumeMounts"].append(
            {"name": NODE_CACHE_TOKEN_VOLUME, "mountPath": NODE_CACHE_TOKEN_DIR, "readOnly": True}
        )
    container["securityContext"] = container_security_context()
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _readiness_probe(health_path: str | None) -> dict[str, Any]:
    check: dict[str, Any] = (
        {"httpGet": {"path": health_path, "port": naming.PORT_NAME}}
        if health_path
        else {"tcpSocket": {"port": naming.PORT_NAME}}
    )
    return {**check, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}


def with_resolved_runtime(version: ModelVersionSpec, resolved: ResolvedRuntime | None) -> ModelVersionSpec:
    """The version as it serves: its explicit spec.runtime, else the catalog runtime it resolved to
    (status.resolvedRuntime: image, command, args, env, port, health path, resources). RenderError when
    it has neither: a version whose runtime is not resolved is never rendered."""
    if version.runtime is not None:
        return version
    if resolved is None:
        raise RenderError(f"ModelVersion {version.model} {version.version}: its runtime is not resolved")
    return version.model_copy(update={"runtime": resolved.as_runtime()})


def _server_container(variant: Variant, version: ModelVersionSpec, serving: Serving) -> dict[str, Any]:
    runtime = version.runtime
    if runtime is None:  # with_resolved_runtime first; never a pod without the runtime it was verified with
        raise RenderError(f"ModelVersion {version.model} {version.version}: no runtime to render")
    container: dict[str, Any] = {"name": SERVER_CONTAINER, "image": runtime.image}
    if runtime.command:
        container["command"] = list(runtime.command)
    if runtime.args:
        container["args"] = list(runtime.args)
    # Operator-set variables first, so runtime.env may reference them as $(MODEL_PATH).
    container["env"] = [
        {"name": ENV_MODEL_PATH, "value": serving.model_mount_path},
        {"name": ENV_MODEL_NAME, "value": version.model},
        {"name": ENV_MODEL_VERSION, "value": version.version},
        {"name": ENV_MODEL_SHA256, "value": version.artifact.sha256},
        {"name": ENV_MODEL_VARIANT, "value": variant.name},
        {"name": ENV_MODEL_PORT, "value": str(runtime.port)},
    ]
    if is_oci(version.artifact.uri):
        container["env"].append({"name": ENV_MODEL_SHA256_OF, "value": OCI_MANIFEST})
    if version.signature is not None:
        signature = json.dumps(
            version.signature.model_dump(mode="json", by_alias=True), separators=(",", ":")
        )
        container["env"].append({"name": ENV_MODEL_SIGNATURE, "value": signature})
    container["env"] += [
        {"name": e.name, "value": e.value} for e in runtime.env if e.name not in RESERVED_ENV
    ]
    container["ports"] = [{"name": naming.PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}]
    container["readinessProbe"] = _readiness_probe(runtime.health_path)
    resources = k8s_resources(variant.resources if variant.resources is not None else runtime.resources)
    if resources:
        container["resources"] = resources
    container["volumeMounts"] = [
        {"name": MODEL_VOLUME, "mountPath": serving.model_mount_path, "readOnly": True},
        {"name": SERVER_TMP_VOLUME, "mountPath": "/tmp"},
    ]
    container["securityContext"] = container_security_context()
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _volumes(version: ModelVersionSpec, serving: Serving, content_digest: str) -> list[dict[str, Any]]:
    model: dict[str, Any] = {}
    limit = model_volume_size_limit(version.artifact.size_bytes)
    if limit is not None:
        model["sizeLimit"] = limit
    volumes: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "emptyDir": model},
        {"name": INIT_TMP_VOLUME, "emptyDir": {}},
        {"name": SERVER_TMP_VOLUME, "emptyDir": {}},
    ]
    if _node_cache(version, serving, content_digest):
        token = {
            "audience": NODE_CACHE_AUDIENCE,
            "expirationSeconds": NODE_CACHE_TOKEN_SECONDS,
            "path": "token",
        }
        volumes.append(
            {"name": NODE_CACHE_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
        )
    return volumes


def _placement(spec: ModelEndpointSpec) -> dict[str, Any]:
    if spec.placement is None:
        return {}
    out: dict[str, Any] = {}
    if spec.placement.node_selector:
        out["nodeSelector"] = dict(sorted(spec.placement.node_selector.items()))
    if spec.placement.tolerations:
        out["tolerations"] = [t.to_k8s() for t in spec.placement.tolerations]
    return out


def render_deployment(
    endpoint: EndpointRef,
    spec: ModelEndpointSpec,
    variant: Variant,
    version: ModelVersionSpec,
    serving: Serving,
    replicas: int | None = None,
    *,
    policy: ArtifactPolicy | None = None,
    trust_json: str | None = None,
    content_digest: str = "",
) -> dict[str, Any]:
    """apps/v1 Deployment of the slot of `variant` serving `version` (the ModelVersion it pins).

    The name carries a hash of the pod template (naming.slot_name): another version, digest or
    template is another Deployment, so pods that carry traffic are never rolled to a new model.
    `replicas` overrides variant.replicas (the handler holds a scale-down of a slot under traffic).
    `policy`: the operator's artifact policy, enforced again by the init container (default: the
    built-in, which refuses private networks and file:// URIs); it is part of the pod template, so a
    changed policy is a new slot, verified under that policy before it takes traffic.
    `trust_json`: the trust anchors that accepted the version's signature (its status; the init
    container's ``--trust-json``), so the pod verifies the signature again; None: unsigned or no policy.
    `content_digest`: an ``oci://`` version's verified ``status.artifact.contentDigest``, pinned as the
    init container's ``--node-cache-content-digest`` (with the node cache on; none: the pod gets no
    cache). Ignored for other URIs, whose pod template it leaves as it was.
    """
    check_pin(endpoint, spec, variant, version)
    labels = naming.variant_labels(endpoint.name, variant.name, version.model, version.version)
    annotations = naming.artifact_annotations(version.artifact.sha256)
    template: dict[str, Any] = {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            **_placement(spec),
            "securityContext": pod_security_context(),
            "initContainers": [
                _init_container(version, serving, policy or ArtifactPolicy(), trust_json, content_digest)
            ],
            "containers": [_server_container(variant, version, serving)],
            "volumes": _volumes(version, serving, content_digest),
        },
    }
    slot = naming.slot_name(endpoint.name, variant.name, naming.template_hash(template))
    slot_labels = {**labels, **naming.selector_labels(slot)}
    template["metadata"]["labels"] = dict(slot_labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": naming.metadata(slot, endpoint, slot_labels, annotations),
        "spec": {
            "replicas": variant.replicas if replicas is None else replicas,
            "selector": {"matchLabels": naming.selector_labels(slot)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        },
    }
