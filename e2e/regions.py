"""Regions of the regional-rollout e2e test (issue 30): each a control plane of the harness
(controlplane.py, kwok nodes) with its own operator (region setting = its name) and Flux's
source-controller and kustomize-controller (e2e/build-flux.sh) syncing one Git repository served on
loopback (git_server.py). ``fleet_kubeconfig`` writes one kubeconfig with a context per region, the
way a person's kubeconfig names their clusters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from childserver import die_with_parent, free_port
from controlplane import ControlPlane
from operator_proc import OperatorProcess

E2E = Path(__file__).resolve().parent
FLUX_NS = "flux-system"


def flux_bin_dir() -> Path:
    env = os.environ.get("MV_FLUX_BIN_DIR")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(E2E / "build-flux.sh")], capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(f"e2e/build-flux.sh failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def flux_crds() -> list[Path]:
    """The CRDs of both controllers, from the module cache (never copied into the repository)."""
    files: list[Path] = []
    for module, version in (
        ("github.com/fluxcd/source-controller", os.environ.get("FLUX_SOURCE_VERSION", "v1.9.6")),
        ("github.com/fluxcd/kustomize-controller", os.environ.get("FLUX_KUSTOMIZE_VERSION", "v1.9.6")),
    ):
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
        )
        if out.returncode != 0:
            raise RuntimeError(f"go mod download {module}@{version}: {out.stderr}")
        files += sorted(Path(json.loads(out.stdout)["Dir"], "config", "crd", "bases").glob("*.yaml"))
    return files


class Region:
    def __init__(self, name: str, workdir: Path, operator_settings: dict[str, Any]) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cp = ControlPlane(nodes=1, log=lambda m: print(f"[{name}] {m}", flush=True))
        self.settings = {"region": name, **operator_settings}
        self.op: OperatorProcess | None = None
        self.flux: list[subprocess.Popen[bytes]] = []

    def start(self, flux_bin: Path, crds: list[Path]) -> Region:
        self.cp.start()
        self.op = OperatorProcess(self.cp.kubeconfig, settings=self.settings).start()
        self.cp.kubectl("create", "namespace", FLUX_NS)
        self.cp.kubectl("create", "namespace", "models")
        for f in crds:
            self.cp.kubectl("apply", "--server-side", "-f", str(f))
        storage = free_port()
        (self.workdir / "artifacts").mkdir(exist_ok=True)  # source-controller refuses a missing one
        env = {**os.environ, "KUBECONFIG": str(self.cp.kubeconfig), "RUNTIME_NAMESPACE": FLUX_NS}
        common = ["--enable-leader-election=false", "--log-level=info"]
        health: dict[str, int] = {}
        for name, extra in (
            ("source-controller", [f"--storage-path={self.workdir / 'artifacts'}",
                                   f"--storage-addr=127.0.0.1:{storage}",
                                   f"--storage-adv-addr=127.0.0.1:{storage}"]),
            ("kustomize-controller", []),
        ):  # fmt: skip
            log = (self.workdir / f"{name}.log").open("wb")
            health[name] = free_port()
            self.flux.append(
                subprocess.Popen(
                    [
                        str(flux_bin / name),
                        *common,
                        *extra,
                        f"--metrics-addr=127.0.0.1:{free_port()}",
                        f"--health-addr=127.0.0.1:{health[name]}",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )  # fmt: skip
            )
            log.close()
        for (name, port), proc in zip(health.items(), self.flux, strict=True):
            self._wait_healthy(name, port, proc)
        return self

    def _wait_healthy(self, name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        import urllib.request

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        log = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"[{self.name}] {name} is not healthy (exit {proc.poll()}):\n{log}")

    def sync(self, url: str, name: str = "fleet", interval: str = "10s") -> None:
        """The region's Flux objects: the Git repository `name` and its Kustomization of regions/<region>."""
        docs = [
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
             "metadata": {"name": name, "namespace": FLUX_NS},
             "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}}},
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": name, "namespace": FLUX_NS},
             "spec": {"interval": interval, "path": f"./regions/{self.name}", "prune": False,
                      "sourceRef": {"kind": "GitRepository", "name": name}}},
        ]  # fmt: skip
        self.cp.apply(docs)

    def reconcile_now(self, name: str = "fleet") -> None:
        """What a Git host's webhook (Flux's notification receiver) does: ask for a sync now."""
        stamp = f"reconcile.fluxcd.io/requestedAt={time.time()}"
        self.cp.kubectl("annotate", "--overwrite", "-n", FLUX_NS, f"gitrepository/{name}", stamp)
        self.cp.kubectl("annotate", "--overwrite", "-n", FLUX_NS, f"kustomization/{name}", stamp)

    def apiserver_pids(self) -> list[int]:
        return [p.popen.pid for p in self.cp._procs if p.name == "kube-apiserver"]

    def freeze(self, frozen: bool) -> None:
        """Make the region unreachable (its API server stops answering) or reachable again."""
        for pid in self.apiserver_pids():
            os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def logs(self) -> str:
        out = [f"---- {self.name} operator ----\n" + (self.op.logs(60) if self.op else "")]
        for name in ("source-controller", "kustomize-controller"):
            p = self.workdir / f"{name}.log"
            if p.exists():
                out.append(
                    f"---- {self.name} {name} ----\n"
                    + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                )
        return "\n".join(out)

    def stop(self) -> None:
        self.freeze(False)
        for p in self.flux:
            p.terminate()
        for p in self.flux:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.op is not None:
            self.op.stop()
        self.cp.stop()


def fleet_kubeconfig(path: Path, regions: list[Region]) -> Path:
    """One kubeconfig, one context per region (named as the region), namespace models."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for r in regions:
        src = yaml.safe_load(r.cp.kubeconfig.read_text())
        doc["clusters"].append({"name": r.name, "cluster": src["clusters"][0]["cluster"]})
        doc["users"].append({"name": r.name, "user": src["users"][0]["user"]})
        doc["contexts"].append(
            {"name": r.name, "context": {"cluster": r.name, "user": r.name, "namespace": "models"}}
        )
    doc["current-context"] = regions[0].name
    path.write_text(yaml.safe_dump(doc))
    os.chmod(path, 0o600)
    return path
