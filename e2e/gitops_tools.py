"""What GitOps tools make of our objects, computed by the tools' own logic (issue 13, item 8).

- Flux judges health with the kstatus library: ``kstatus(objs)`` runs kstatus-check
  (e2e/kstatus-check/main.go: sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute), built once from the
  Go module proxy by e2e/build-kstatus.sh and cached.
- Argo CD runs a Lua health script per kind: ``argocd_health(obj)`` runs docs/argocd/health-<kind>.lua
  through e2e/argocd_health.lua (Argo CD's sandbox: base and table libraries only) with Debian's Lua
  (lua5.4, and lua5.1 like Argo CD's gopher-lua), installed by e2e/ensure-lua.sh when missing.

Both fail loudly (RuntimeError with the tool's output) when the tool cannot be had: never a skip.
"""

from __future__ import annotations

import json
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "e2e"
ARGOCD_DIR = ROOT / "docs" / "argocd"
HEALTH_SCRIPTS = {
    "ModelVersion": ARGOCD_DIR / "health-modelversion.lua",
    "ModelEndpoint": ARGOCD_DIR / "health-modelendpoint.lua",
}
ARGO_RUNNER = E2E / "argocd_health.lua"
BUILD_TIMES: dict[str, float] = {}  # what each build/install step took in this process (seconds)


def _run_script(script: str, what: str, timeout: float) -> str:
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            ["bash", str(E2E / script)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{script} ({what}) did not finish in {timeout:.0f}s: {e.stderr!r}") from e
    BUILD_TIMES[what] = time.monotonic() - t0
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(
            f"{script} ({what}) failed with exit {res.returncode}:\n{res.stderr[-4000:]}{res.stdout[-1000:]}"
        )
    return res.stdout.strip().splitlines()[-1]


# ---- kstatus (Flux) ------------------------------------------------------------------------------
@cache
def kstatus_binary() -> Path:
    """kstatus-check, built on first use (a few minutes on a fresh machine, then cached)."""
    binary = Path(_run_script("build-kstatus.sh", "kstatus-check", timeout=900)) / "kstatus-check"
    if not binary.is_file():
        raise RuntimeError(f"e2e/build-kstatus.sh printed {binary.parent}, which has no kstatus-check")
    return binary


def kstatus(*objs: dict[str, Any]) -> list[dict[str, Any]]:
    """kstatus's verdict for each object: {"status": Current|InProgress|Failed|..., "message", ...}."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    res = subprocess.run(
        [str(kstatus_binary())], input=json.dumps(doc), capture_output=True, text=True, timeout=60
    )
    if res.returncode != 0:
        raise RuntimeError(f"kstatus-check failed with exit {res.returncode}: {res.stderr}")
    out = json.loads(res.stdout)
    assert isinstance(out, list) and len(out) == len(objs), out
    return out


# ---- Argo CD -------------------------------------------------------------------------------------
@cache
def lua_interpreters() -> tuple[str, ...]:
    """("lua5.4", "lua5.1"), installed from Debian's packages when missing (root)."""
    return tuple(_run_script("ensure-lua.sh", "lua", timeout=600).split())


def argocd_health(obj: dict[str, Any], lua: str = "lua5.4", script: Path | None = None) -> dict[str, str]:
    """What Argo CD's health check for obj's kind says: {"status": Healthy|Progressing|..., "message"}."""
    if lua not in lua_interpreters():
        raise RuntimeError(f"{lua} is not one of the interpreters e2e/ensure-lua.sh provides")
    path = script if script is not None else HEALTH_SCRIPTS[obj["kind"]]
    res = subprocess.run(
        [lua, str(ARGO_RUNNER), str(path)], input=json.dumps(obj), capture_output=True, text=True, timeout=30
    )
    if res.returncode != 0:
        raise RuntimeError(f"{lua} {path.name} failed with exit {res.returncode}: {res.stderr}")
    out = json.loads(res.stdout)
    assert isinstance(out, dict) and set(out) == {"status", "message"}, out
    return {"status": str(out["status"]), "message": str(out["message"])}
