"""Regions of the regional-rollout e2e tests (issue 30): each a control plane of the harness
(controlplane.py, kwok nodes) with its own operator (region setting = its name), or the session's
cluster with the real node (``Region(..., cp=cluster, op=operator)``: its Flux only is started here),
and Flux's source-controller and kustomize-controller (e2e/build-flux.sh) syncing one Git repository
served on loopback (git_server.py). ``started`` starts several at once; ``fleet_kubeconfig`` writes one
kubeconfig with a context per region, the way a person's kubeconfig names their clusters; the rest are
the steps both regional tests share (the fleet repository, overlays, what `which --contexts` says).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from childserver import die_with_parent, free_port
from controlplane import ControlPlane
from git_server import GitServer
from helpers import make_artifact, model_endpoint, model_version
from operator_proc import OperatorProcess

E2E = Path(__file__).resolve().parent
FLUX_NS = "flux-system"
NS = "models"  # the endpoint's namespace in every region
BIN = Path(sys.executable).parent / "kubectl-models"
NAMES = ("r1", "r2", "r3")
SOAK = 8  # the wave plan's soak (shortened)
OLD = [
    {"name": "stable", "version": "2.3.8", "weight": 100},
    {"name": "canary", "version": "2.4.1", "weight": 0},
]
NEW = [
    {"name": "stable", "version": "2.3.8", "weight": 0},
    {"name": "canary", "version": "2.4.1", "weight": 100},
]
STRATEGY = {"canary": {"variant": "canary", "baseline": "stable",
                       "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}}  # fmt: skip
T = TypeVar("T")


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
    """A region: a new control plane (kwok nodes) with its own operator, or, given ``cp`` and ``op``, a
    cluster and operator that exist already (the session's, with the real node): then its Flux is
    started here and the operator given the region setting (restarted); ``stop`` stops Flux, deletes
    what it applied (namespace ``NS``) and restores the operator's settings."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        operator_settings: dict[str, Any],
        cp: ControlPlane | None = None,
        op: OperatorProcess | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.shared = cp is not None
        self.cp = cp or ControlPlane(nodes=1, log=lambda m: print(f"[{name}] {m}", flush=True))
        self.settings = {"region": name, **operator_settings}
        self.op: OperatorProcess | None = op
        self.flux: list[subprocess.Popen[bytes]] = []
        self.synced: list[str] = []
        self._config: str | None = None  # an existing operator's settings, before the region was set

    def start(self, flux_bin: Path, crds: list[Path]) -> Region:
        if not self.shared:
            self.cp.start()
            self.op = OperatorProcess(self.cp.kubeconfig, settings=self.settings).start()
        elif self.op is not None:  # the existing operator: its region setting, restored by stop()
            self._config = self.op.config.read_text()
            self.op.config.write_text(
                yaml.safe_dump({**(yaml.safe_load(self._config) or {}), "region": self.name})
            )
            self.op.restart()
        for ns in (FLUX_NS, NS):
            self.cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for f in crds:
            self.cp.kubectl("apply", "--server-side", "-f", str(f))
        for f in crds:  # a controller started before its CRD is served exits ("failed to get restmapping":
            # the cold CI run of 1f13c20 under load): wait until the API server serves each of them
            established = ("--for=condition=Established", "--timeout=120s")
            self.cp.kubectl("wait", *established, "-f", str(f), timeout=150)
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
        self.synced.append(name)

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
        if self.shared:  # Flux's objects first (their finalizers need the controllers), then its work
            for name in self.synced:
                for kind in ("kustomization", "gitrepository"):
                    self.cp.kubectl("delete", "-n", FLUX_NS, f"{kind}/{name}", "--wait=true",
                                    "--timeout=30s", check=False)  # fmt: skip
        for p in self.flux:
            p.terminate()
        for p in self.flux:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.shared:
            self.cp.kubectl("delete", "namespace", NS, "--wait=false", check=False)
            if self.op is not None and self._config is not None:
                self.op.config.write_text(self._config)
                self.op.restart()
            return
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
            {"name": r.name, "context": {"cluster": r.name, "user": r.name, "namespace": NS}}
        )
    doc["current-context"] = regions[0].name
    path.write_text(yaml.safe_dump(doc))
    os.chmod(path, 0o600)
    return path


@contextlib.contextmanager
def started(regions: list[Region], flux_bin: Path, crds: list[Path]) -> Iterator[float]:
    """The regions started at once, each on a thread of its own that lives until they are stopped: the
    harness's processes die with the thread that started them (PR_SET_PDEATHSIG), so each starter
    thread waits, and stops its region, at the end. Yields the seconds the start took; the first
    error of any region is raised (after every region is stopped); each region's logs are printed."""
    stop = threading.Event()
    errors: list[BaseException] = []
    ready = [threading.Event() for _ in regions]

    def keep(r: Region, up: threading.Event) -> None:
        try:
            r.start(flux_bin, crds)
        except BaseException as e:  # noqa: BLE001 - raised by the caller's thread below
            errors.append(e)
        finally:
            up.set()
        stop.wait()
        print(r.logs(), flush=True)
        r.stop()

    t0 = time.monotonic()
    threads = [threading.Thread(target=keep, args=(r, up), name=f"region-{r.name}") for r, up in zip(
        regions, ready, strict=True)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        for up in ready:
            up.wait()
        took = time.monotonic() - t0
        print(
            f"{len(regions)} regions (control plane, operator, Flux) started at once in {took:.1f}s",
            flush=True,
        )
        if errors:
            raise errors[0]
        yield took
    finally:
        stop.set()
        for t in threads:
            t.join(120)


# ------------------------------------------------------------------ the steps both regional tests share


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def cli(kc: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`kubectl models` with the fleet's kubeconfig, as a person runs it."""
    return subprocess.run([str(BIN), "--kubeconfig", str(kc), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def overlay(variants: list[dict[str, Any]], endpoint: str = "fraud-detector",
            strategy: dict[str, Any] = STRATEGY, **spec: Any) -> str:  # fmt: skip
    """A region's overlay: the ModelEndpoint it serves (``spec``: its own routing, placement...)."""
    ep = model_endpoint(endpoint, "fraud-detector", variants, strategy=strategy)
    ep["metadata"]["namespace"] = NS
    ep["spec"].update(spec)
    return yaml.safe_dump(ep, sort_keys=False)


def file_versions(artifacts: Path, **spec: Any) -> list[dict[str, Any]]:
    """fraud-detector 2.3.8 and 2.4.1 in production, their artifacts files under ``artifacts``."""
    out = []
    for v in ("2.3.8", "2.4.1"):
        uri, sha = make_artifact(artifacts, "fraud-detector", v)
        out.append(model_version("fraud-detector", v, uri, sha, stage="production", **spec))
    return out


def region_row(kc: Path, region: str, endpoint: str = "fraud-detector") -> dict[str, Any]:
    p = cli(kc, "which", endpoint, "--contexts", region, "-o", "json")
    return dict(json.loads(p.stdout)["regions"][0]) if p.returncode == 0 else {}


def serving(kc: Path, region: str, endpoint: str = "fraud-detector") -> dict[str, int]:
    """version -> weight served in `region` now, read with `which --contexts` (a settled rollout)."""
    row = region_row(kc, region, endpoint)
    out: dict[str, int] = {}
    for v in row.get("variants") or []:
        out[v["version"]] = out.get(v["version"], 0) + int(v.get("effectiveWeight") or 0)
    return out if row.get("rollout") in (None, "Succeeded") and row.get("ready") == "True" else {}


def until(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def fleet_repo(
    srv: GitServer, tmp: Path, repo: str, endpoint: str, versions: list[dict[str, Any]],
    overlays: dict[str, str], names: tuple[str, ...] = NAMES,
) -> tuple[Path, str]:  # fmt: skip
    """A working tree of `repo` (pushed): base/ (the ModelVersions), regions/<r>/ (`overlays[r]`) and
    waves/<endpoint>.yaml; returns (work tree, plan file)."""
    srv.create(f"{repo}.git")
    work = tmp / f"work-{repo}"
    git(tmp, "clone", "-q", srv.url(f"{repo}.git"), str(work))
    git(work, "config", "user.email", "wave@example.com")
    git(work, "config", "user.name", "wave")
    for mv in versions:
        mv["metadata"]["namespace"] = NS
    (work / "base").mkdir()
    (work / "base" / "versions.yaml").write_text(yaml.safe_dump_all(versions))
    (work / "base" / "kustomization.yaml").write_text("resources: [versions.yaml]\n")
    for n in names:
        d = work / "regions" / n
        d.mkdir(parents=True)
        (d / "kustomization.yaml").write_text("resources: [../../base, endpoint.yaml]\n")
        (d / "endpoint.yaml").write_text(overlays[n])
    plan = {"apiVersion": "modelversioning.io/v1alpha1", "kind": "WavePlan",
            "metadata": {"name": endpoint},
            "spec": {"endpoint": endpoint, "namespace": NS, "soak": f"{SOAK}s",
                     "gates": {"stage": "production"},
                     "regions": [{"name": n, "context": n, "overlay": f"regions/{n}/endpoint.yaml"}
                                 for n in names]}}  # fmt: skip
    (work / "waves").mkdir()
    plan_file = work / "waves" / f"{endpoint}.yaml"
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    git(work, "add", "-A")
    git(work, "commit", "-qm", f"fleet: {endpoint} on 2.3.8 everywhere")
    git(work, "push", "-q", "origin", "HEAD:main")
    return work, str(plan_file)


def release(work: Path, region: str, text: str, message: str, push: bool = True) -> None:
    """A person's commit of `region`'s overlay (the wave's first region: the release), pushed."""
    (work / "regions" / region / "endpoint.yaml").write_text(text)
    git(work, "commit", "-qam", message)
    if push:
        git(work, "push", "-q", "origin", "HEAD:main")
