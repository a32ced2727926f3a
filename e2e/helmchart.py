"""helm (built by e2e/build-control-plane.sh into the control plane's bin dir) against a test
cluster, with its own cache/config/data homes; shared by the chart tests and the real-node install."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import REPO_ROOT, ControlPlane

CHART = REPO_ROOT / "charts" / "modelversioning-operator"


class Helm:
    def __init__(self, binary: Path, cluster: ControlPlane, home: Path) -> None:
        self.binary = binary
        self.cluster = cluster
        self.env = cluster.env(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        self.values_dir = home / "values"
        self.values_dir.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}\n{res.stdout}"
            )
        return res

    def values_file(self, values: dict[str, Any]) -> str:
        path = self.values_dir / f"values-{secrets.token_hex(4)}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    def template(
        self, release: str, namespace: str, values: dict[str, Any] | None = None, *extra: str
    ) -> list[dict[str, Any]]:
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        if values:
            args += ["--values", self.values_file(values)]
        return [d for d in yaml.safe_load_all(self(*args).stdout) if d]

    @classmethod
    def find(cls, cluster: ControlPlane, home: Path) -> Helm:
        """The control plane's helm, else one on PATH; fails (never skips) when there is none."""
        candidates = [cluster.bin_dir / "helm"] if cluster.bin_dir is not None else []
        found = shutil.which("helm")
        if found:
            candidates.append(Path(found))
        binary = next((c for c in candidates if c.is_file()), None)
        if binary is None:
            pytest.fail(
                "helm not found (looked in the control plane's bin dir and PATH); "
                "e2e/build-control-plane.sh builds it from the Go module proxy"
            )
        return cls(binary, cluster, home)
