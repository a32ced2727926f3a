"""Peer comparison: Argo Rollouts and the operator on the same control plane, in the same run.

Argo Rollouts' controller (built from the Go module proxy by ``e2e/build-argo-rollouts.sh``, cached,
never committed) runs as a host process next to the operator, under its own ServiceAccount, in
namespaced mode (``--namespaced``: it watches only the bench namespace) with leader election ON, as
it ships (its Lease lives in the bench namespace, ``POD_NAMESPACE``). Its CRDs are read from the Go
module cache (``<module>/manifests/crds``) at run time.

N Rollouts (canary, Istio ``trafficRouting`` on a VirtualService, steps ``setWeight: 20`` then an
indefinite ``pause``, 1 replica, pods on kwok nodes) sit next to N ModelEndpoints (istio router,
2 variants). Both sides are "armed" at 80/20 before each block: a Rollout paused at its pause step
with the VirtualService at stable 80 / canary 20, an endpoint Ready at stable 80 / canary 20.

Then, in alternating blocks (the order flips every block), each sample on its own object:

- ``promote``: what ``kubectl argo rollouts promote`` sends to a rollout paused at a canary step
  (``pkg/kubectl-argo-rollouts/cmd/promote``): a merge patch of the status subresource
  ``{"status":{"pauseConditions":null}}``;
- ``abort``: ``kubectl argo rollouts abort``: ``{"status":{"abort":true}}`` on the status subresource;
- ``weight``: our weight change, a merge patch of the endpoint's ``spec.variants`` (80/20 -> 50/50);
- ``rollback``: the patch ``kubectl models rollback`` sends (``actions.plan_rollback``: the previous
  version at 100, the other at 0, with the resourceVersion and the requested-by/reason annotations).

Each is timed from the PATCH's return to the arrival, on a watch of VirtualServices, of the first
event whose weights differ from the armed 80/20 (ours: that carries the declared weights). The API
server's audit log also gives the controller's reaction: from the trigger PATCH's completion to the
controller's first write of that VirtualService. Re-arming (a new pod template revision after a
promote, ``kubectl argo rollouts retry``'s ``{"status":{"abort":false}}`` after an abort, the weights
back at 80/20 for ours) happens between blocks, never during one.

RSS (VmRSS of both processes) is sampled with everything armed and quiet; idle traffic is counted
per user from the audit log over an idle window (writes, Lease writes apart). Nothing is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from cluster import NS, OPERATOR_USER, WRITE_VERBS, BenchCluster, Weights, _free_port, _ts, percentile
from kubernetes import client
from kubernetes.client.rest import ApiException
from watchers import Obj, Watcher

from helpers import GROUP, VERSION
from operator_proc import terminate

REPO = Path(__file__).resolve().parents[1]
ARGO_VERSION = os.environ.get("ARGO_ROLLOUTS_VERSION", "v1.8.5")
ARGO_MODULE = "github.com/argoproj/argo-rollouts"
ARGO_SA = "argo-rollouts"
ARGO_USER = f"system:serviceaccount:{NS}:{ARGO_SA}"
ARGO_GROUP, ARGO_VERSION_API, ROLLOUTS = "argoproj.io", "v1alpha1", "rollouts"
ARMED: Weights = {"stable": 80, "canary": 20}
OURS_CHANGED: Weights = {"stable": 50, "canary": 50}
KINDS = ("promote", "abort", "weight", "rollback")


def ro_name(i: int) -> str:
    return f"ro-{i:04d}"


# ---------------------------------------------------------------------------------------------- build
def argo_binary() -> Path:
    """``$MV_ARGO_BIN_DIR/rollouts-controller``, else what e2e/build-argo-rollouts.sh builds (cached)."""
    bin_dir = os.environ.get("MV_ARGO_BIN_DIR")
    if not bin_dir:
        try:
            res = subprocess.run(
                ["bash", str(REPO / "e2e" / "build-argo-rollouts.sh")],
                capture_output=True,
                text=True,
                timeout=3600,
                cwd=REPO,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"e2e/build-argo-rollouts.sh did not finish: {e.stderr!r}") from e
        if res.returncode != 0 or not res.stdout.strip():
            raise RuntimeError(
                f"e2e/build-argo-rollouts.sh failed (exit {res.returncode}):\n{res.stderr[-3000:]}"
            )
        bin_dir = res.stdout.strip().splitlines()[-1]
    binary = Path(bin_dir) / "rollouts-controller"
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"no Argo Rollouts controller at {binary} (run e2e/build-argo-rollouts.sh)")
    return binary


def argo_crd_files() -> list[Path]:
    """The CRD manifests of the Argo Rollouts module, from the Go module cache (downloaded by the build)."""
    roots: list[Path] = []
    with contextlib.suppress(Exception):
        roots.append(
            Path(
                subprocess.run(
                    ["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30
                ).stdout.strip()
            )
        )
    roots.append(Path.home() / "go" / "pkg" / "mod")
    for root in roots:
        d = root / f"{ARGO_MODULE}@{ARGO_VERSION}" / "manifests" / "crds"
        if d.is_dir():
            break
    else:
        res = subprocess.run(
            ["go", "mod", "download", "-json", f"{ARGO_MODULE}@{ARGO_VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tempfile.gettempdir(),
            env={**os.environ, "GOFLAGS": "-mod=mod"},
        )
        if res.returncode != 0:
            raise RuntimeError(f"go mod download {ARGO_MODULE}@{ARGO_VERSION}: {res.stderr or res.stdout}")
        d = Path(json.loads(res.stdout)["Dir"]) / "manifests" / "crds"
    files = sorted(p for p in d.glob("*-crd.yaml"))
    if not any(p.name == "rollout-crd.yaml" for p in files):
        raise RuntimeError(f"no rollout-crd.yaml in {d}")
    return files


# ---------------------------------------------------------------------------------------------- process
class ArgoProcess:
    def __init__(self, binary: Path, kubeconfig: Path, workdir: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig
        self.log_path = workdir / "argo-rollouts.log"
        self.metrics_port, self.healthz_port = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.flags = [
            "--namespaced",  # namespace from the kubeconfig's context: the bench namespace only
            "--istio-api-version=v1",
            f"--metricsport={self.metrics_port}",
            f"--healthzPort={self.healthz_port}",
            "--loglevel=info",
            "--logformat=text",
            # leader election: left at its default (on), as shipped; its Lease renewals are counted apart
        ]

    def start(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *self.flags],
            env={**os.environ, "POD_NAMESPACE": NS},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"argo-rollouts exited with {self.proc.returncode}:\n{self.logs()}")
            url = f"http://127.0.0.1:{self.healthz_port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"argo-rollouts not healthy within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- objects
def argo_vs_weights(vs: Obj | None) -> Weights | None:
    """stable/canary weights of the "primary" route of a VirtualService Argo Rollouts manages."""
    if vs is None:
        return None
    out: Weights = {}
    with contextlib.suppress(KeyError, TypeError, ValueError):
        for http in vs["spec"].get("http") or []:
            if http.get("name") != "primary":
                continue
            for r in http.get("route") or []:
                host = r["destination"]["host"]
                out["canary" if host.endswith("-canary") else "stable"] = int(r.get("weight", 0))
        return out or None
    return None


def argo_objects(i: int) -> list[Obj]:
    name = ro_name(i)
    labels = {"app": name}
    svc = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-{role}", "namespace": NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
        for role in ("stable", "canary")
    ]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "hosts": [f"{name}.example.com"],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": f"{name}-stable"}, "weight": 100},
                        {"destination": {"host": f"{name}-canary"}, "weight": 0},
                    ],
                }
            ],
        },
    }
    ro = {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION_API}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"bench/rev": "0"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.invalid/model-server:1",
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "stableService": f"{name}-stable",
                    "canaryService": f"{name}-canary",
                    "trafficRouting": {"istio": {"virtualService": {"name": name, "routes": ["primary"]}}},
                    "steps": [{"setWeight": ARMED["canary"]}, {"pause": {}}],
                }
            },
        },
    }
    return [*svc, vs, ro]


def ro_paused_at_step(ro: Obj | None) -> bool:
    if ro is None:
        return False
    st = ro.get("status") or {}
    return (
        st.get("currentStepIndex") == 1
        and not st.get("abort")
        and any(c.get("reason") == "CanaryPauseStep" for c in st.get("pauseConditions") or [])
    )


def ro_promoted(ro: Obj | None) -> bool:
    if ro is None:
        return False
    st = ro.get("status") or {}
    return bool(st.get("stableRS")) and st.get("stableRS") == st.get("currentPodHash") and not st.get("abort")


def _stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "n": len(xs),
        "p50_ms": round(percentile(xs, 50), 2),
        "p95_ms": round(percentile(xs, 95), 2),
        "p99_ms": round(percentile(xs, 99), 2),
        "max_ms": round(max(xs), 2),
    }


# ---------------------------------------------------------------------------------------------- the peer
class Peer:
    def __init__(self, bc: BenchCluster, n: int, log: Callable[[str], None]) -> None:
        self.bc, self.n, self.log = bc, n, log
        self.names = [ro_name(i) for i in range(n)]
        self.rev: dict[str, int] = dict.fromkeys(self.names, 0)
        self.argo: ArgoProcess | None = None
        self.watch_ro: Watcher | None = None
        self.samples: dict[str, list[float]] = {k: [] for k in KINDS}
        self.patch_ms: dict[str, list[float]] = {k: [] for k in KINDS}
        self.timeouts: Counter[str] = Counter()
        self.to_weights: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
        # (kind, trigger resource, trigger name, VirtualService, wall-clock time before the trigger)
        self.trials: list[tuple[str, str, str, str, float]] = []
        assert bc.cp is not None
        self.co = client.CustomObjectsApi(bc.api)

    # ------------------------------------------------------------------ setup
    def setup(self) -> dict[str, Any]:
        bc, cp = self.bc, self.bc.cp
        assert cp is not None and cp.workdir is not None
        t0 = time.monotonic()
        binary = argo_binary()
        out: dict[str, Any] = {"binary_seconds": round(time.monotonic() - t0, 1)}
        files = argo_crd_files()
        for f in files:
            cp.kubectl("create", "-f", str(f))
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{yaml.safe_load(f.read_text())['metadata']['name']}" for f in files],
        )
        out["crds"] = [f.name for f in files]
        kubeconfig = self._identity()
        self.argo = ArgoProcess(binary, kubeconfig, cp.workdir)
        out["controller_flags"] = self.argo.flags
        out["controller_start_seconds"] = round(self.argo.start(), 2)
        self.watch_ro = Watcher(
            bc._watch_client(), ARGO_GROUP, ARGO_VERSION_API, ROLLOUTS, NS, keep_history=False
        ).start()
        # Our side at the same count: N endpoints (and their 2N versions); a larger main fleet is kept.
        fleet = bc.populate(max(len(bc.mvs), 2 * self.n), max(len(bc.desired), self.n), 1800)
        if not fleet["converged"]:
            raise RuntimeError(f"our fleet did not converge: {fleet}")
        out["ours_fleet"] = {k: fleet[k] for k in ("versions", "endpoints", "converge_seconds")}
        t1 = time.monotonic()
        core = client.CoreV1Api(bc.api)

        def create(i: int) -> None:
            for obj in argo_objects(i):
                for attempt in range(5):
                    try:
                        if obj["kind"] == "Service":
                            core.create_namespaced_service(NS, obj)
                        elif obj["kind"] == "VirtualService":
                            self.co.create_namespaced_custom_object(
                                "networking.istio.io", "v1", NS, "virtualservices", obj
                            )
                        else:
                            self.co.create_namespaced_custom_object(
                                ARGO_GROUP, ARGO_VERSION_API, NS, ROLLOUTS, obj
                            )
                        break
                    except ApiException as e:
                        if e.status == 409:
                            break
                        if e.status in (429, 500, 503, 504) and attempt < 4:
                            time.sleep(0.2 * (attempt + 1))
                            continue
                        raise

        with ThreadPoolExecutor(bc.workers) as pool:
            list(pool.map(create, range(self.n)))
        if not self._wait(lambda: all(ro_promoted(self._ro(n)) for n in self.names), 600):
            raise RuntimeError(f"Rollouts not healthy: {self._pending(ro_promoted)}\n{self.argo.logs()}")
        out["rollouts_created_healthy_seconds"] = round(time.monotonic() - t1, 1)
        self.log(f"peer: {self.n} Rollouts healthy in {out['rollouts_created_healthy_seconds']}s; arming")
        t2 = time.monotonic()
        self.arm(self.names, [], [])
        out["first_arm_seconds"] = round(time.monotonic() - t2, 1)
        return out

    def _identity(self) -> Path:
        cp = self.bc.cp
        assert cp is not None and cp.workdir is not None
        cp.kubectl("create", "serviceaccount", ARGO_SA, "-n", NS)
        cp.kubectl(
            "create",
            "clusterrolebinding",
            f"{ARGO_SA}-admin",
            "--clusterrole=cluster-admin",
            f"--serviceaccount={NS}:{ARGO_SA}",
        )
        token = cp.kubectl("create", "token", ARGO_SA, "-n", NS, "--duration=48h").stdout.strip()
        admin = yaml.safe_load(cp.kubeconfig.read_text())
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": ARGO_SA, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "argo",
                    "context": {"cluster": admin["clusters"][0]["name"], "user": ARGO_SA, "namespace": NS},
                }
            ],
            "current-context": "argo",
        }
        path = cp.workdir / "argo-rollouts.kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        os.chmod(path, 0o600)
        return path

    def stop(self) -> None:
        if self.watch_ro is not None:
            self.watch_ro.stop()
        if self.argo is not None:
            self.argo.stop()

    # ------------------------------------------------------------------ state
    def _ro(self, name: str) -> Obj | None:
        assert self.watch_ro is not None
        with self.watch_ro.cond:
            return self.watch_ro.objects.get(name)

    def _vs(self, name: str) -> Obj | None:
        assert self.bc.watch_vs is not None
        with self.bc.watch_vs.cond:
            return self.bc.watch_vs.objects.get(name)

    def armed(self, name: str) -> bool:
        return ro_paused_at_step(self._ro(name)) and argo_vs_weights(self._vs(name)) == ARMED

    def _pending(self, pred: Callable[[Obj | None], bool]) -> list[str]:
        return [n for n in self.names if not pred(self._ro(n))][:10]

    def _wait(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.2)
        return check()

    def arm(
        self, after_promote: list[str], after_abort: list[str], ours: list[str], timeout: float = 600
    ) -> None:
        """Rollouts back to paused at 80/20 (a new revision after a promote, retry after an abort) and
        our endpoints back to Ready at 80/20."""

        def unpromoted() -> list[str]:
            return [n for n in after_promote if not ro_promoted(self._ro(n))]

        if after_promote and not self._wait(lambda: not unpromoted(), timeout):
            raise RuntimeError(f"promoted Rollouts did not finish: {unpromoted()[:5]}")

        def bump(name: str) -> None:
            self.rev[name] += 1
            body = {"spec": {"template": {"metadata": {"annotations": {"bench/rev": str(self.rev[name])}}}}}
            self.co.patch_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION_API, NS, ROLLOUTS, name, body)

        def retry(name: str) -> None:  # kubectl argo rollouts retry
            self.co.patch_namespaced_custom_object_status(
                ARGO_GROUP, ARGO_VERSION_API, NS, ROLLOUTS, name, {"status": {"abort": False}}
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(bump, after_promote))
            list(pool.map(retry, after_abort))
            list(pool.map(lambda e: self.bc.set_weights(e, ARMED), ours))
        names = [*after_promote, *after_abort]
        if not self._wait(lambda: all(self.armed(n) for n in names), timeout):
            bad = [
                (n, (self._ro(n) or {}).get("status"), argo_vs_weights(self._vs(n)))
                for n in names
                if not self.armed(n)
            ][:3]
            raise RuntimeError(f"Rollouts not armed in {timeout}s: {bad}")
        conv = self.bc.wait_converged(time.monotonic(), timeout, endpoints=ours, versions=False)
        if not conv.ok:
            raise RuntimeError(f"endpoints not back at 80/20: {conv.pending}")
        self.bc.wait_quiet(2.0, 120)

    # ------------------------------------------------------------------ one sample
    def _trial(self, kind: str, name: str, timeout: float = 60) -> None:
        watch = self.bc.watch_vs
        assert watch is not None
        if kind in ("promote", "abort"):
            before = argo_vs_weights(self._vs(name))

            def changed(o: Obj) -> bool:
                w = argo_vs_weights(o)
                return w is not None and w != before

            body = {"status": {"pauseConditions": None}} if kind == "promote" else {"status": {"abort": True}}
            mark, wall = watch.mark(), time.time()
            t_send = time.monotonic()
            self.co.patch_namespaced_custom_object_status(
                ARGO_GROUP, ARGO_VERSION_API, NS, ROLLOUTS, name, body
            )
            res_kind = "rollouts/status"
            pred = changed
        elif kind == "weight":
            mark, wall = watch.mark(), time.time()
            t_send = time.monotonic()
            self.bc.set_weights(name, OURS_CHANGED)
            res_kind = "modelendpoints"
            target = dict(OURS_CHANGED)
            pred = lambda o: _our_weights(o) == target  # noqa: E731
        else:  # rollback: what `kubectl models rollback` sends
            from modelversioning.api.wire import REASON_ANNOTATION, REQUESTED_BY_ANNOTATION
            from modelversioning.cli.models import actions

            ep = self.co.get_namespaced_custom_object(GROUP, VERSION, NS, "modelendpoints", name)
            plan = actions.plan_rollback(ep)
            patch = {
                **plan.patch,
                "metadata": {
                    "resourceVersion": ep["metadata"]["resourceVersion"],
                    "annotations": {
                        REQUESTED_BY_ANNOTATION: "bench",
                        REASON_ANNOTATION: f"rollback to {plan.target} ({plan.version}) with kubectl models",
                    },
                },
            }
            mark, wall = watch.mark(), time.time()
            t_send = time.monotonic()
            self.co.patch_namespaced_custom_object(GROUP, VERSION, NS, "modelendpoints", name, patch)
            self.bc.desired[name] = dict(plan.after)
            res_kind = "modelendpoints"
            target = dict(plan.after)
            pred = lambda o: _our_weights(o) == target  # noqa: E731
        t = time.monotonic()
        self.patch_ms[kind].append((t - t_send) * 1000)
        self.trials.append((kind, res_kind, name, name, wall))
        ev = watch.wait_event(name, pred, mark, timeout)
        if ev is None:
            self.timeouts[kind] += 1
            return
        self.samples[kind].append((ev.at - t) * 1000)
        w = argo_vs_weights(ev.obj) if kind in ("promote", "abort") else _our_weights(ev.obj)
        self.to_weights[kind][json.dumps(w, sort_keys=True)] += 1

    # ------------------------------------------------------------------ the run
    def run(self, blocks: int, per_block: int, idle_seconds: float) -> dict[str, Any]:
        bc = self.bc
        out: dict[str, Any] = {"rollouts": self.n, "blocks": blocks, "per_block": per_block}
        out["setup"] = self.setup()
        eps = bc.eps[: self.n]
        off0 = bc.audit_offset()
        ro_at = ep_at = 0
        prev: tuple[list[str], list[str], list[str]] = ([], [], [])
        for b in range(blocks):
            promote = [self.names[(ro_at + j) % self.n] for j in range(per_block)]
            abort = [self.names[(ro_at + per_block + j) % self.n] for j in range(per_block)]
            ro_at = (ro_at + 2 * per_block) % self.n
            weight = [eps[(ep_at + j) % len(eps)] for j in range(per_block)]
            rollback = [eps[(ep_at + per_block + j) % len(eps)] for j in range(per_block)]
            ep_at = (ep_at + 2 * per_block) % len(eps)
            if b:  # re-arm what the previous block used, and wait until both sides are quiet
                self.arm(*prev)
            # One sample of each kind in turn (the order of the four flips every block): neither side
            # gets a quieter stretch of the run than the other.
            order = [("promote", promote), ("weight", weight), ("abort", abort), ("rollback", rollback)]
            if b % 2:
                order = order[::-1]
            for j in range(per_block):
                for kind, names in order:
                    self._trial(kind, names[j])
            prev = (promote, abort, [*weight, *rollback])
            self.log(
                f"peer: block {b + 1}/{blocks} done "
                + ", ".join(f"{k} p50 {_stats(v)['p50_ms']} ms" for k, v in self.samples.items())
            )
        bc.wait_quiet(2.0, 60)
        out["reaction"] = self._reactions(off0, bc.audit_offset())
        self.arm(*prev)
        out["rss_mib"] = self.rss()
        out["idle"] = self.idle(idle_seconds)
        out["objects"] = {"rollouts": self.n, "ours_endpoints": len(bc.desired), "ours_versions": len(bc.mvs)}
        for k in KINDS:
            out[k] = {
                **_stats(self.samples[k]),
                "timeouts": self.timeouts[k],
                "patch_p50_ms": round(percentile(self.patch_ms[k], 50), 2) if self.patch_ms[k] else None,
                "vs_weights_after": dict(self.to_weights[k]),
            }

        def ratio(a: str, b: str, q: str) -> float:
            x, y = out[a][q], out[b][q]
            return round(y / x, 2) if x and x == x and y == y else float("nan")

        out["ratios"] = {  # how many times faster ours is (their latency / ours)
            f"{ours}_vs_{theirs}_{q[:3]}": ratio(ours, theirs, q)
            for ours, theirs in (
                ("weight", "promote"),
                ("weight", "abort"),
                ("rollback", "promote"),
                ("rollback", "abort"),
            )
            for q in ("p50_ms", "p95_ms", "p99_ms")
        }
        out["argo_log_tail"] = self.argo.logs(15).splitlines() if self.argo else []
        return out

    def rss(self) -> dict[str, float]:
        assert self.argo is not None and self.bc.op is not None and self.bc.op.pid is not None
        a, o = [], []
        for _ in range(5):
            a.append(proc_rss_mib(self.argo.pid))
            o.append(proc_rss_mib(self.bc.op.pid))
            time.sleep(0.2)
        return {"argo_rollouts": round(max(a), 1), "operator": round(max(o), 1)}

    def settle(self, timeout: float = 180) -> float:
        """Until no ReplicaSet waits for Argo's delayed scale-down (``scale-down-deadline``, 30 s after a
        promote or an abort) and neither controller wrote anything but Leases for 5 s."""
        t0 = time.monotonic()
        apps = client.AppsV1Api(self.bc.api)
        while time.monotonic() - t0 < timeout:
            rs = apps.list_namespaced_replica_set(NS).items
            if not any("scale-down-deadline" in k for r in rs for k in (r.metadata.annotations or {})):
                break
            time.sleep(1.0)
        off, since = self.bc.audit_offset(), time.monotonic()
        while time.monotonic() - t0 < timeout and time.monotonic() - since < 5.0:
            time.sleep(1.0)
            now = self.bc.audit_offset()
            for user in (ARGO_USER, OPERATOR_USER):
                reqs = self.bc.operator_requests(off, now, user=user)
                if reqs["writes"] - _lease_writes(reqs):
                    since = time.monotonic()
            off = now
        return time.monotonic() - t0

    def idle(self, seconds: float) -> dict[str, Any]:
        assert self.argo is not None and self.bc.op is not None and self.bc.op.pid is not None
        self.bc.wait_quiet(3.0, 120)
        settle_s = self.settle()
        off0 = self.bc.audit_offset()
        cpu0 = (proc_cpu_seconds(self.argo.pid), proc_cpu_seconds(self.bc.op.pid))
        t0 = time.monotonic()
        time.sleep(seconds)
        off1, elapsed = self.bc.audit_offset(), time.monotonic() - t0
        cpu1 = (proc_cpu_seconds(self.argo.pid), proc_cpu_seconds(self.bc.op.pid))
        out: dict[str, Any] = {"seconds": round(elapsed, 1), "settled_seconds_before": round(settle_s, 1)}
        for key, user, c in (("argo_rollouts", ARGO_USER, 0), ("operator", OPERATOR_USER, 1)):
            reqs = self.bc.operator_requests(off0, off1, user=user)
            lease = _lease_writes(reqs)
            out[key] = {
                "requests": reqs["requests"],
                "writes": reqs["writes"],
                "lease_writes": lease,
                "other_writes": reqs["writes"] - lease,
                "by_verb": reqs["by_verb"],
                "by_verb_resource": reqs["by_verb_resource"],
                "cpu_percent": round(100 * (cpu1[c] - cpu0[c]) / elapsed, 2),
            }
        return out

    def _reactions(self, start: int, end: int) -> dict[str, Any]:
        """Per kind, from the audit log: trigger PATCH completed -> the controller's first write of the
        VirtualService received."""
        cp = self.bc.cp
        assert cp is not None and cp.audit_log is not None
        with cp.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read(max(0, end - start))
        triggers: dict[tuple[str, str], list[tuple[float, float]]] = {}
        vs_writes: dict[str, list[tuple[str, float]]] = {}
        for line in data.splitlines():
            if b'"ResponseComplete"' not in line or NS.encode() not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                ev = json.loads(line)
                ref, user, verb = ev.get("objectRef") or {}, ev["user"]["username"], ev["verb"]
                if ref.get("namespace") != NS or verb not in ("patch", "update"):
                    continue
                res = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                recv, done = _ts(ev["requestReceivedTimestamp"]), _ts(ev["stageTimestamp"])
                if res == "virtualservices" and user in (ARGO_USER, OPERATOR_USER):
                    vs_writes.setdefault(ref["name"], []).append((user, recv))
                elif user not in (ARGO_USER, OPERATOR_USER):
                    triggers.setdefault((res, ref["name"]), []).append((recv, done))
        react: dict[str, list[float]] = {k: [] for k in KINDS}
        for kind, res, name, vs, wall in self.trials:
            trig = next((t for t in sorted(triggers.get((res, name), [])) if t[0] >= wall - 0.01), None)
            if trig is None:
                continue
            user = ARGO_USER if kind in ("promote", "abort") else OPERATOR_USER
            w = next(
                (
                    r
                    for u, r in sorted(vs_writes.get(vs, []), key=lambda x: x[1])
                    if u == user and r > trig[1]
                ),
                None,
            )
            if w is not None and w - trig[1] < 60:
                react[kind].append((w - trig[1]) * 1000)
        return {
            k: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50), 2) if v else float("nan"),
                "p99_ms": round(percentile(v, 99), 2) if v else float("nan"),
            }
            for k, v in react.items()
        }


def _lease_writes(reqs: dict[str, Any]) -> int:
    return sum(
        v
        for k, v in reqs["by_verb_resource"].items()
        if k.split()[0] in WRITE_VERBS and k.endswith(" leases")
    )


def _our_weights(o: Obj) -> Weights | None:
    from cluster import safe_vs_weights

    return safe_vs_weights(o)


def run(
    bc: BenchCluster, n: int, blocks: int, per_block: int, idle_seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    per_block = max(1, min(per_block, n // 2))
    peer = Peer(bc, n, log)
    try:
        out = peer.run(blocks, per_block, idle_seconds)
    finally:
        peer.stop()
    r = out["ratios"]
    log(
        "peer: p50 promote {p} ms, abort {a} ms, our weight change {w} ms, our rollback {rb} ms; "
        "ours faster x{r1} vs promote, x{r2} vs abort; RSS argo {ra} MiB vs ours {ro} MiB; idle writes "
        "argo {ia} ({il} leases) vs ours {io}".format(
            p=out["promote"]["p50_ms"],
            a=out["abort"]["p50_ms"],
            w=out["weight"]["p50_ms"],
            rb=out["rollback"]["p50_ms"],
            r1=r["weight_vs_promote_p50"],
            r2=r["weight_vs_abort_p50"],
            ra=out["rss_mib"]["argo_rollouts"],
            ro=out["rss_mib"]["operator"],
            ia=out["idle"]["argo_rollouts"]["writes"],
            il=out["idle"]["argo_rollouts"]["lease_writes"],
            io=out["idle"]["operator"]["writes"],
        )
    )
    return out
