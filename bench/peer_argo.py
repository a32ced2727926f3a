"""Argo Rollouts for the peer comparison (bench/peer.py): its build, CRDs, the controller process with
the settings under test, the objects of one Rollout, and what its own metrics and log say per block.

Settings (``--peer-argo-settings``, each measured in the same run, the controller restarted between):

- ``defaults``: every flag at its default, as shipped: client QPS 40 / burst 80
  (``utils/defaults``), 10 rollout workers (``--rollout-threads``);
- ``tuned``: the knobs Argo Rollouts has for a large installation raised: ``--qps``, ``--burst``
  (made tunable in argoproj/argo-rollouts#1679 "increase default QPS/Burst to 40/80. Allow values to be
  tunable"; its documentation gives no figure) and ``--rollout-threads``. The values
  (``TUNED_FLAGS``, or ``--peer-argo-tuned-flags``) are high enough that the client never waits
  for its rate limiter in these runs: the throttling the run records must be 0 for this setting.

Both run with ``--kloglevel=3``: client-go then logs every request its rate limiter held for more than
50 ms ("Waited for ... due to client-side throttling"), which is how a run counts throttling (the
controller's binary has no ``rest_client_rate_limiter_duration_seconds``: it does not link client-go's
REST client metrics).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from cluster import NS, BenchCluster, Weights, _free_port
from kubernetes import client
from kubernetes.client.rest import ApiException
from peer_metrics import Snapshot, delta, scrape
from watchers import Obj

from operator_proc import terminate

REPO = Path(__file__).resolve().parents[1]
ARGO_VERSION = os.environ.get("ARGO_ROLLOUTS_VERSION", "v1.8.5")
ARGO_MODULE = "github.com/argoproj/argo-rollouts"
ARGO_SA = "argo-rollouts"
ARGO_USER = f"system:serviceaccount:{NS}:{ARGO_SA}"
# Its Rollouts (and their ReplicaSets, Services, VirtualServices) in a namespace of their own: each of
# its reconciles lists every ReplicaSet of the Rollout's namespace (rollout/replicaset.go,
# getReplicaSetsForRollouts), which in the bench namespace would include the operator's.
ARGO_NS = "bench-argo"
ARGO_GROUP, ARGO_VERSION_API, ROLLOUTS = "argoproj.io", "v1alpha1", "rollouts"
LEASE = "argo-rollouts-controller-lock"  # controller/controller.go: defaultLeaderElectionLeaseLockName
SCALE_DOWN_ANNOTATION = "scale-down-deadline"  # v1alpha1.DefaultReplicaSetScaleDownDeadlineAnnotationKey
ARMED: Weights = {"stable": 80, "canary": 20}
TUNED_FLAGS = ("--qps=500", "--burst=1000", "--rollout-threads=50")
SETTINGS: dict[str, tuple[str, ...]] = {"defaults": (), "tuned": TUNED_FLAGS}
THROTTLE = re.compile(r"Waited for ([0-9.]+)(ns|µs|us|ms|s) due to client-side throttling")
_UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def ro_name(i: int) -> str:
    return f"ro-{i:04d}"


# ---------------------------------------------------------------------------------------------- build
def argo_binary() -> Path:
    """``$MV_ARGO_BIN_DIR/rollouts-controller``, else what e2e/build-argo-rollouts.sh builds (cached)."""
    return built_binary("MV_ARGO_BIN_DIR", "build-argo-rollouts.sh", "rollouts-controller")


def built_binary(env: str, script: str, name: str) -> Path:
    bin_dir = os.environ.get(env)
    if not bin_dir:
        try:
            res = subprocess.run(
                ["bash", str(REPO / "e2e" / script)], capture_output=True, text=True, timeout=3600, cwd=REPO
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"e2e/{script} did not finish: {e.stderr!r}") from e
        if res.returncode != 0 or not res.stdout.strip():
            raise RuntimeError(f"e2e/{script} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
        bin_dir = res.stdout.strip().splitlines()[-1]
    binary = Path(bin_dir) / name
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"no {name} at {binary} (run e2e/{script})")
    return binary


def module_dir(module: str, version: str) -> Path:
    """The module's directory in the Go module cache (downloaded by its build, else now)."""
    roots: list[Path] = []
    with contextlib.suppress(Exception):
        out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30)
        roots.append(Path(out.stdout.strip()))
    roots.append(Path.home() / "go" / "pkg" / "mod")
    for root in roots:
        d = root / f"{module}@{version}"
        if d.is_dir():
            return d
    res = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    if res.returncode != 0:
        raise RuntimeError(f"go mod download {module}@{version}: {res.stderr or res.stdout}")
    return Path(json.loads(res.stdout)["Dir"])


def argo_crd_files() -> list[Path]:
    """The CRD manifests of the Argo Rollouts module, from the Go module cache (downloaded by the build)."""
    d = module_dir(ARGO_MODULE, ARGO_VERSION) / "manifests" / "crds"
    files = sorted(p for p in d.glob("*-crd.yaml"))
    if not any(p.name == "rollout-crd.yaml" for p in files):
        raise RuntimeError(f"no rollout-crd.yaml in {d}")
    return files


# ---------------------------------------------------------------------------------------------- process
class ArgoProcess:
    def __init__(self, binary: Path, kubeconfig: Path, workdir: Path, setting: str, extra: list[str]) -> None:
        self.binary, self.kubeconfig, self.setting = binary, kubeconfig, setting
        self.log_path = workdir / f"argo-rollouts-{setting}.log"
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
            "--kloglevel=3",  # client-go logs each request its rate limiter held > 50 ms
            # leader election: left at its default (on), as shipped; its Lease renewals are counted apart
            *extra,
        ]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *self.flags],
            env={**os.environ, "POD_NAMESPACE": ARGO_NS},  # its Lease
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"argo-rollouts exited with {self.proc.returncode}:\n{self.logs()}")
            url = f"http://127.0.0.1:{self.healthz_port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and self._leading():
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"argo-rollouts not healthy and leading within {timeout}s:\n{self.logs()}")

    def _leading(self) -> bool:
        """Its Rollouts work queue exists once it leads and started its controllers."""
        return any(k[0] == "workqueue_depth" and ("name", "Rollouts") in k[1] for k in self.scrape())

    def scrape(self) -> Snapshot:
        return scrape(self.metrics_url)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def throttled(self, start: int, end: int) -> dict[str, Any]:
        """Requests client-go's rate limiter held > 50 ms, from the log between two offsets."""
        with self.log_path.open("rb") as f:
            f.seek(start)
            text = f.read(max(0, end - start)).decode(errors="replace")
        waits = [float(m.group(1)) * _UNITS[m.group(2)] for m in THROTTLE.finditer(text)]
        return {
            "requests": len(waits),
            "seconds": round(sum(waits), 3),
            "max_s": round(max(waits, default=0), 3),
        }

    def logs(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def idle(snap: Snapshot) -> bool:
    """Nothing queued in any of its work queues and no reconcile running."""
    depth = sum(v for (name, _), v in snap.items() if name == "workqueue_depth")
    running = max(
        (v for (name, _), v in snap.items() if name == "workqueue_longest_running_processor_seconds"),
        default=0.0,
    )
    return bool(snap) and depth == 0 and running == 0


def block_metrics(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What Argo Rollouts' own metrics say about a block: adds and retries per work queue, the Rollouts
    queue's mean wait and reconcile time, its API requests by verb and kind."""
    d = delta(before, after)

    def by(name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (n, labels), v in d.items():
            if n == name and v:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return {k: round(v, 3) for k, v in sorted(out.items())}

    def mean_ms(name: str) -> float | None:
        s, c = (
            by(f"{name}_sum", "name").get("Rollouts", 0.0),
            by(f"{name}_count", "name").get("Rollouts", 0.0),
        )
        return round(1000 * s / c, 2) if c else None

    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    for (n, labels), v in d.items():
        if n == "controller_clientset_k8s_request_total" and v:
            lab = dict(labels)
            # its label "kind" is a path segment: a status patch counts under the Rollout's name
            kind = (
                "rollouts" if re.fullmatch(r"ro-\d+", lab.get("kind", "")) else lab.get("kind", "?").lower()
            )
            key = f"{lab.get('verb', '?').lower()} {kind}"
            requests[key] = requests.get(key, 0.0) + v
            if not lab.get("status_code", "").startswith("2"):
                code = f"{lab.get('status_code')} {key}"
                errors[code] = errors.get(code, 0.0) + v
    return {
        "adds": by("workqueue_adds_total", "name"),
        "retries": by("workqueue_retries_total", "name"),
        "rollouts_queue_wait_mean_ms": mean_ms("workqueue_queue_duration_seconds"),
        "rollouts_reconcile_mean_ms": mean_ms("workqueue_work_duration_seconds"),
        "rollouts_reconciles": by("workqueue_work_duration_seconds_count", "name").get("Rollouts", 0.0),
        "api_requests": {k: int(v) for k, v in sorted(requests.items())},
        "api_errors": {k: int(v) for k, v in sorted(errors.items())},
    }


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
            "metadata": {"name": f"{name}-{role}", "namespace": ARGO_NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
        for role in ("stable", "canary")
    ]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ARGO_NS},
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
    container = {
        "name": "server",
        "image": "registry.invalid/model-server:1",
        "ports": [{"containerPort": 8080}],
    }
    ro = {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION_API}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ARGO_NS},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"bench/rev": "0"}},
                "spec": {"containers": [container]},
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


def scale_down_pending(replica_sets: list[Any], now: float, grace: float = 30.0) -> list[str]:
    """ReplicaSets whose delayed scale-down (``scaleDownDelaySeconds`` / ``abortScaleDownDelaySeconds``,
    30 s by default, after a promote or an abort) is still to come: its deadline is ahead, or passed
    less than `grace` seconds ago and the ReplicaSet still has replicas (the scale-down not written yet)."""
    from cluster import _ts

    out = []
    for rs in replica_sets:
        when = (rs.metadata.annotations or {}).get(SCALE_DOWN_ANNOTATION)
        if not when:
            continue
        try:
            deadline = _ts(when)
        except ValueError:
            continue
        if deadline > now or (now - deadline < grace and (rs.spec.replicas or 0) > 0):
            out.append(rs.metadata.name)
    return out


def create_objects(bc: BenchCluster, i: int) -> None:
    """Rollout i's Services, VirtualService and Rollout (existing ones kept)."""
    core, co = client.CoreV1Api(bc.api), client.CustomObjectsApi(bc.api)
    for obj in argo_objects(i):
        for attempt in range(5):
            try:
                if obj["kind"] == "Service":
                    core.create_namespaced_service(ARGO_NS, obj)
                elif obj["kind"] == "VirtualService":
                    co.create_namespaced_custom_object(
                        "networking.istio.io", "v1", ARGO_NS, "virtualservices", obj
                    )
                else:
                    co.create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION_API, ARGO_NS, ROLLOUTS, obj)
                break
            except ApiException as e:
                if e.status == 409:
                    break
                if e.status in (429, 500, 503, 504) and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise


def identity(bc: BenchCluster, sa: str, namespace: str = NS) -> Path:
    """A ServiceAccount of the bench namespace bound to cluster-admin, and a kubeconfig with its token
    whose context's namespace is `namespace` (what a ``--namespaced`` controller watches)."""
    cp = bc.cp
    assert cp is not None and cp.workdir is not None
    cp.kubectl("create", "serviceaccount", sa, "-n", NS)
    cp.kubectl(
        "create", "clusterrolebinding", f"{sa}-admin", "--clusterrole=cluster-admin",
        f"--serviceaccount={NS}:{sa}",
    )  # fmt: skip
    token = cp.kubectl("create", "token", sa, "-n", NS, "--duration=48h").stdout.strip()
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    cluster = admin["clusters"][0]["name"]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster, "user": sa, "namespace": namespace}}],
        "current-context": sa,
    }
    path = cp.workdir / f"{sa}.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    os.chmod(path, 0o600)
    return path
