"""The artifact policy (:class:`ArtifactPolicy`) on its own: the init container of every model pod
(``verify-artifact --policy-json``) needs it and none of the operator's other settings, whose models
cost a pod's start ~0.13 s of CPU to build. :mod:`modelversioning.api.settings` re-exports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class SettingsBase(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ArtifactPolicy(SettingsBase):
    """Which artifact URIs the operator (and the init container) may fetch, with which credentials,
    and how much one verification may cost. Rendered into every model pod's init container
    (``verify-artifact --policy-json``), so the pod enforces what the operator enforces."""

    allowed_schemes: list[str] = Field(
        default_factory=lambda: ["s3", "gs", "gcs", "https", "http", "file"],
        description="URI schemes artifacts may use; add 'oci' to allow oci:// registries (opt-in: the policy "
        "is rendered into every model pod, so a new default would roll every slot on upgrade).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="If non-empty, only these hosts (exact, or '*.suffix') for network schemes.",
    )
    file_roots: list[str] = Field(
        default_factory=list, description="file:// URIs are allowed only under these directories."
    )
    allow_private_networks: bool = Field(
        default=False,
        description="Allow every loopback/private address (in-cluster object stores). Prefer "
        "allowedPrivateNetworks. Link-local and cloud metadata addresses are always refused.",
    )
    allowed_private_networks: list[str] = Field(
        default_factory=list,
        description="Loopback/private destinations allowed although allowPrivateNetworks is false: "
        "CIDRs (10.20.0.0/16) or host names ('minio.storage.svc.cluster.local', '*.storage.svc').",
    )
    ambient_credential_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (exact or '*.suffix') to which the operator's own credentials (its "
        "environment, IRSA/workload identity, ~/.aws) may be sent when an artifact names no Secret. "
        "Empty: never; such artifacts are fetched anonymously.",
    )
    plain_http_registries: list[str] = Field(
        default_factory=list,
        description="OCI registries (oci://, exact host or '*.suffix') reached over plain HTTP instead of "
        "HTTPS, e.g. an in-cluster registry without TLS. Every other registry is reached over HTTPS.",
    )
    max_workers: int = Field(default=4, ge=1, le=64, description="Parallel file hashing for directories.")
    chunk_size: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Deadline of one verification: connecting, headers, listing and every byte.",
    )
    max_files: int = Field(
        default=10_000, ge=1, description="A directory/prefix artifact with more files is refused."
    )
    max_total_bytes: int = Field(
        default=1 << 40, ge=1, description="An artifact larger than this (bytes, all files) is refused."
    )
    memory_limit_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=64 * 1024 * 1024,
        description="Address-space limit (RLIMIT_AS) of the child process that verifies one artifact in "
        "the operator; reaching it is LimitExceeded.",
    )
