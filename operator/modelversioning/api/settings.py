"""Operator settings: one typed model per concern, loaded from a YAML file and/or environment.

The chart renders these from its values into a ConfigMap mounted at
/etc/modelversioning/config.yaml (MODELVERSIONING_CONFIG points at it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DEFAULT_STAGE_GRAPH: dict[str, list[str]] = {
    "candidate": ["staging", "archived"],
    "staging": ["production", "archived"],
    "production": ["archived", "staging"],
    "archived": ["staging"],
}


class _Settings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ArtifactPolicy(_Settings):
    """Which artifact URIs the operator (and the init container) may fetch."""

    allowed_schemes: list[str] = Field(default_factory=lambda: ["s3", "gs", "gcs", "https", "http", "file"])
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="If non-empty, only these hosts (exact, or '*.suffix') for network schemes.",
    )
    file_roots: list[str] = Field(
        default_factory=list, description="file:// URIs are allowed only under these directories."
    )
    allow_private_networks: bool = Field(
        default=True,
        description="Allow loopback/private addresses (in-cluster object stores). Link-local and "
        "cloud metadata addresses are always refused.",
    )
    max_workers: int = Field(default=4, ge=1, le=64, description="Parallel file hashing for directories.")
    chunk_size: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    timeout_seconds: float = Field(default=600.0, gt=0)


class Verification(_Settings):
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    recheck_seconds: float = Field(
        default=0.0, ge=0, description="Re-verify verified artifacts this often (0=never)."
    )


class Serving(_Settings):
    init_image: str = Field(
        default="ghcr.io/modelversioning/modelversioning-operator:0.1.0",
        description="Image of the artifact-verifying init container (the operator image).",
    )
    init_image_pull_policy: str = "IfNotPresent"
    model_mount_path: str = "/models"
    enabled_routers: list[str] = Field(default_factory=lambda: ["istio", "gatewayAPI", "none"])
    drift_check_seconds: float = Field(default=60.0, gt=0)
    drain_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Grace period between the observed routes no longer pointing at a slot "
        "(Deployment + Service of one version) and its deletion, for in-flight requests and gateways "
        "that apply routes late.",
    )


class Settings(_Settings):
    artifacts: ArtifactPolicy = Field(default_factory=ArtifactPolicy)
    verification: Verification = Field(default_factory=Verification)
    serving: Serving = Field(default_factory=Serving)
    stage_graph: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_STAGE_GRAPH))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        path = path or os.environ.get("MODELVERSIONING_CONFIG")
        data: dict[str, Any] = {}
        if path and Path(path).exists():
            data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)
