"""The benchmark's cluster: one e2e ControlPlane, the operator under its own ServiceAccount identity
(so the audit log tells its requests from ours), watches on our objects and their routes, and a
fleet of ModelVersions/ModelEndpoints created in bulk.

Names: model ``m0007`` has versions ``1.0.0``, ``1.1.0``, ...; endpoint ``ep-0007`` serves model
``m0007`` with variants ``stable`` (1.0.0) and ``canary`` (1.1.0), istio router.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import writes
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from watchers import Obj, Watcher

from controlplane import ControlPlane
from helpers import GROUP, VERSION, cond_is, make_artifact, model_endpoint, model_version, vs_weights
from operator_proc import OperatorProcess, PortInUse

NS = "bench"
OPERATOR_NS = "mv-system"
OPERATOR_SA = "mv-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
PODS_PER_NODE = 400  # each kwok node allows 500 pods (controlplane.py); keep headroom

Weights = dict[str, int]


def model_name(i: int) -> str:
    return f"m{i:04d}"


def endpoint_name(i: int) -> str:
    return f"ep-{i:04d}"


def mv_name(model: str, version: str) -> str:
    return f"{model}-v{version}"


def nodes_for(max_endpoints: int) -> int:
    return max(2, math.ceil(2 * max_endpoints / PODS_PER_NODE))


def layout(n_versions: int, n_endpoints: int) -> tuple[list[tuple[str, str]], list[int]]:
    """(model, version) pairs and endpoint indexes for a fleet of this size. Every endpoint's model has
    at least the two versions it serves; the other versions are spread evenly over the same models."""
    models = n_endpoints
    if n_endpoints <= 0:  # versions only: 5 per model
        models = max(1, math.ceil(n_versions / 5)) if n_versions else 0
    versions: list[tuple[str, str]] = []
    if models:
        base, extra = divmod(n_versions, models)
        for i in range(models):
            k = base + (1 if i < extra else 0)
            if i < n_endpoints:
                k = max(k, 2)
            versions += [(model_name(i), f"1.{j}.0") for j in range(k)]
    return versions, list(range(n_endpoints))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ep_converged(obj: Obj | None, desired: Weights) -> bool:
    """The operator has seen the endpoint's current spec and reports it Ready at the declared weights."""
    if obj is None:
        return False
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return st.get("effectiveWeights") == desired and cond_is(obj, "Ready", "True")


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def mv_converged(obj: Obj | None) -> bool:
    if obj is None:
        return False
    st = obj.get("status") or {}
    return (
        st.get("observedGeneration") == obj["metadata"].get("generation")
        and st.get("stage") == "production"
        and cond_is(obj, "Ready", "True")
    )


def safe_vs_weights(vs: Obj | None) -> Weights | None:
    if vs is None:
        return None
    try:
        return vs_weights(vs)
    except (KeyError, TypeError):
        return None


def _ts(s: str) -> float:
    """RFC 3339 with microseconds -> POSIX seconds."""
    import datetime as dt

    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class Converged:
    ok: bool
    seconds: float  # from t0 to the arrival of the last converging event (or the timeout)
    done: int
    total: int
    pending: list[str] = field(default_factory=list)
    endpoints_seconds: float = 0.0  # the same, for the endpoints only
    versions_seconds: float = 0.0  # and for the ModelVersions only


class BenchCluster:
    def __init__(
        self,
        nodes: int,
        drift_seconds: float,
        log: Callable[[str], None],
        workers: int = 16,
        controller_qps: int | None = None,
        settings: dict[str, Any] | None = None,
        in_use: str = "admission",
    ) -> None:
        self.nodes = nodes
        self.in_use = in_use  # "admission": the in-use policy bound; "finalizer": unbound (e2e's default)
        self.controller_qps = controller_qps
        self.settings = settings or {}  # operator settings of this run, over the benchmark's own
        self.drift_seconds = drift_seconds
        self.log = log
        self.workers = workers
        self.cp: ControlPlane | None = None
        self.op: OperatorProcess | None = None
        self.api: client.ApiClient | None = None
        self.co: client.CustomObjectsApi | None = None
        self.apps: client.AppsV1Api | None = None
        self.root = Path(tempfile.mkdtemp(prefix="mv-bench-artifacts-")).resolve()
        self.metrics_port = _free_port()
        self.desired: dict[str, Weights] = {}  # endpoint -> declared weights
        self.mvs: set[str] = set()
        self.eps: list[str] = []
        self.watch_ep: Watcher | None = None
        self.watch_vs: Watcher | None = None
        self.watch_mv: Watcher | None = None
        self.startup_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BenchCluster:
        t0 = time.monotonic()
        log = self.log
        self.cp = ControlPlane(
            nodes=self.nodes, log=lambda m: log(f"[controlplane] {m}"), controller_qps=self.controller_qps
        ).start()
        self.startup_seconds["control_plane"] = time.monotonic() - t0
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.cp.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = self.workers + 8
        self.api = client.ApiClient(cfg)
        self.co = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        core = client.CoreV1Api(self.api)
        for ns in (NS, OPERATOR_NS):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        deadline = time.monotonic() + 60
        while True:  # pods need the namespace's default ServiceAccount (controller-manager)
            try:
                core.read_namespaced_service_account("default", NS)
                break
            except ApiException as e:
                if e.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        kubeconfig = self._operator_identity()
        self.op = OperatorProcess(
            kubeconfig,
            settings=merged(
                {
                    "artifacts": {"fileRoots": [str(self.root)], "allowPrivateNetworks": True},
                    "verification": {"retryInitialSeconds": 1, "retryMaxSeconds": 5},
                    "serving": {"driftCheckSeconds": self.drift_seconds},
                },
                self.settings,
            ),
            metrics_port=self.metrics_port,
        )
        self.startup_seconds["operator"] = self.start_operator()
        self.watch_ep = Watcher(self._watch_client(), GROUP, VERSION, "modelendpoints", NS).start()
        self.watch_vs = Watcher(
            self._watch_client(), "networking.istio.io", "v1", "virtualservices", NS
        ).start()
        self.watch_mv = Watcher(
            self._watch_client(), GROUP, VERSION, "modelversions", NS, keep_history=False
        ).start()
        return self

    def _watch_client(self) -> client.ApiClient:
        assert self.cp is not None
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.cp.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def _operator_identity(self) -> Path:
        """A ServiceAccount bound to cluster-admin and a kubeconfig with its token."""
        cp = self.cp
        assert cp is not None and cp.workdir is not None
        cp.kubectl("create", "serviceaccount", OPERATOR_SA, "-n", OPERATOR_NS)
        cp.kubectl(
            "create", "clusterrolebinding", f"{OPERATOR_SA}-admin", "--clusterrole=cluster-admin",
            f"--serviceaccount={OPERATOR_NS}:{OPERATOR_SA}",
        )
        import admission  # the chart's admission policies: this ServiceAccount is the operator

        admission.set_operators(cp, [*admission.operators(cp), OPERATOR_USER])
        if self.in_use == "admission":  # the operator observes the binding: no in-use finalizers
            admission.bind(cp, admission.IN_USE_POLICY)
        token = cp.kubectl("create", "token", OPERATOR_SA, "-n", OPERATOR_NS, "--duration=48h").stdout.strip()
        admin = yaml.safe_load(cp.kubeconfig.read_text())
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
            "contexts": [
                {"name": "op", "context": {"cluster": admin["clusters"][0]["name"], "user": OPERATOR_SA}}
            ],
            "current-context": "op",
        }
        path = cp.workdir / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        os.chmod(path, 0o600)
        return path

    def stop(self) -> None:
        for w in (self.watch_ep, self.watch_vs, self.watch_mv):
            if w is not None:
                w.stop()
        if self.op is not None:
            self.op.stop()
        if self.api is not None:
            self.api.close()
        if self.cp is not None:
            self.cp.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ the fleet
    def populate(self, n_versions: int, n_endpoints: int, timeout: float) -> dict[str, Any]:
        """Create whatever of the fleet (n_versions, n_endpoints) is missing; wait until it converged."""
        assert self.co is not None
        versions, eps = layout(n_versions, n_endpoints)
        new_mvs = [(m, v) for m, v in versions if mv_name(m, v) not in self.mvs]
        new_eps = [i for i in eps if endpoint_name(i) not in self.desired]
        t0 = time.monotonic()

        def create_mv(mv: tuple[str, str]) -> None:
            uri, sha = make_artifact(self.root, *mv)
            self._create("modelversions", model_version(mv[0], mv[1], uri, sha, stage="production"))

        def create_ep(i: int) -> None:
            name = endpoint_name(i)
            body = model_endpoint(
                name,
                model_name(i),
                [
                    {"name": "stable", "version": "1.0.0", "weight": 90},
                    {"name": "canary", "version": "1.1.0", "weight": 10},
                ],
            )
            self._create("modelendpoints", body)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(create_mv, new_mvs))
            t_mv = time.monotonic() - t0
            list(pool.map(create_ep, new_eps))
        create_seconds = time.monotonic() - t0
        self.mvs |= {mv_name(m, v) for m, v in new_mvs}
        for i in new_eps:
            self.desired[endpoint_name(i)] = {"stable": 90, "canary": 10}
            self.eps.append(endpoint_name(i))
        self.log(
            f"created {len(new_mvs)} ModelVersions ({t_mv:.1f}s) and {len(new_eps)} ModelEndpoints "
            f"in {create_seconds:.1f}s; waiting for convergence"
        )
        with self.profiled("fleet", 300):
            conv = self.wait_converged(t0, timeout=timeout)
        return {
            "versions": len(self.mvs),
            "endpoints": len(self.desired),
            "created_versions": len(new_mvs),
            "created_endpoints": len(new_eps),
            "create_seconds": round(create_seconds, 3),
            "create_per_second": round((len(new_mvs) + len(new_eps)) / create_seconds, 1)
            if create_seconds > 0 else 0.0,
            "converge_seconds": round(conv.seconds, 3),
            "endpoints_converge_seconds": round(conv.endpoints_seconds, 3),
            "versions_converge_seconds": round(conv.versions_seconds, 3),
            "converged": conv.ok,
            "converged_objects": conv.done,
            "objects": conv.total,
        }

    def _create(self, plural: str, body: Obj) -> None:
        assert self.co is not None
        for attempt in range(5):
            try:
                self.co.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)
                return
            except ApiException as e:
                if e.status == 409:
                    return
                if e.status in (429, 500, 503, 504) and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise

    def set_weights(self, endpoint: str, weights: Weights) -> float:
        """Merge-patch the endpoint's variants; returns time.monotonic() when the PATCH returned."""
        assert self.co is not None
        variants = [
            {"name": "stable", "version": "1.0.0", "weight": weights["stable"]},
            {"name": "canary", "version": "1.1.0", "weight": weights["canary"]},
        ]
        self.co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "modelendpoints", endpoint, {"spec": {"variants": variants}}
        )
        t = time.monotonic()
        self.desired[endpoint] = dict(weights)
        return t

    def endpoint_ok(self, name: str) -> tuple[bool, float]:
        """(converged: status Ready at the declared weights and the VirtualService carries them,
        arrival time of the later of the two last events). Call with no lock held."""
        assert self.watch_ep is not None and self.watch_vs is not None
        want = self.desired[name]
        with self.watch_ep.cond:
            ep = self.watch_ep.objects.get(name)
            ok = ep_converged(ep, want)
            t_ep = self.watch_ep.last[name].at if name in self.watch_ep.last else 0.0
        if not ok:
            return False, 0.0
        with self.watch_vs.cond:
            vs = self.watch_vs.objects.get(name)
            ok = safe_vs_weights(vs) == want
            t_vs = self.watch_vs.last[name].at if name in self.watch_vs.last else 0.0
        return ok, max(t_ep, t_vs)

    def mv_ok(self, name: str) -> tuple[bool, float]:
        assert self.watch_mv is not None
        with self.watch_mv.cond:
            ok = mv_converged(self.watch_mv.objects.get(name))
            t = self.watch_mv.last[name].at if name in self.watch_mv.last else 0.0
        return ok, t

    def wait_converged(
        self, t0: float, timeout: float, endpoints: Iterable[str] | None = None, versions: bool = True
    ) -> Converged:
        """Until every endpoint (default: all) and ModelVersion is converged, checking the watch
        caches every 0.2 s. The time is that of the last converging event's arrival, not of the check."""
        pending_ep = set(self.desired if endpoints is None else endpoints)
        pending_mv = set(self.mvs) if versions else set()
        total = len(pending_ep) + len(pending_mv)
        last_ep = last_mv = t0
        deadline = time.monotonic() + timeout
        while True:
            for name in list(pending_ep):
                ok, at = self.endpoint_ok(name)
                if ok:
                    pending_ep.discard(name)
                    last_ep = max(last_ep, at)
            for name in list(pending_mv):
                ok, at = self.mv_ok(name)
                if ok:
                    pending_mv.discard(name)
                    last_mv = max(last_mv, at)
            if not pending_ep and not pending_mv:
                end = max(last_ep, last_mv)
                return Converged(True, end - t0, total, total, [], last_ep - t0, last_mv - t0)
            if time.monotonic() > deadline:
                pending = sorted(pending_ep) + sorted(pending_mv)
                self.log(f"not converged after {timeout:.0f}s: {len(pending)} objects, e.g. {pending[:5]}")
                return Converged(False, time.monotonic() - t0, total - len(pending), total, pending[:20])
            time.sleep(0.2)

    def wait_quiet(self, seconds: float = 2.0, timeout: float = 120.0) -> float:
        """Until no event on our endpoints, routes or versions for `seconds`; returns the time waited."""
        watchers = [w for w in (self.watch_ep, self.watch_vs, self.watch_mv) if w is not None]
        t0 = time.monotonic()
        last = sum(w.mark() for w in watchers)
        since = time.monotonic()
        while time.monotonic() - t0 < timeout:
            time.sleep(0.2)
            now = sum(w.mark() for w in watchers)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= seconds:
                break
        return time.monotonic() - t0

    def deployment_generation(self, endpoint: str, variant: str) -> int:
        """Generation of the Deployment serving `variant` now (its slot, from the endpoint's status)."""
        assert self.apps is not None and self.co is not None
        ep = self.co.get_namespaced_custom_object(GROUP, VERSION, NS, "modelendpoints", endpoint)
        variants = ep["status"]["variants"]
        slot = next(v["serving"]["slot"] for v in variants if v["name"] == variant and v.get("serving"))
        return int(self.apps.read_namespaced_deployment(slot, NS).metadata.generation or 0)

    # ------------------------------------------------------------------ the operator process
    def start_operator(self) -> float:
        """Start the operator; seconds until it logged that it started. (OperatorProcess.start looks for
        that line in the whole log, which a restart appends to: it would return at once.)"""
        assert self.op is not None
        size = self.op.log_path.stat().st_size if self.op.log_path.exists() else 0
        t0 = time.monotonic()
        for attempt in range(3):
            try:
                self.op.start(wait_ready=120)
                break
            except PortInUse:  # chosen free, taken since (by any process's outgoing connection)
                if attempt == 2:
                    raise
                self.metrics_port = self.op.metrics_port = _free_port()
                size = self.op.log_path.stat().st_size
        while time.monotonic() - t0 < 120:
            with self.op.log_path.open("rb") as f:
                f.seek(size)
                if b"modelversioning operator started" in f.read():
                    break
            if self.op.proc is None or self.op.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.op.logs(50)}")
            time.sleep(0.02)
        return time.monotonic() - t0

    @contextlib.contextmanager
    def profiled(self, name: str, seconds: float) -> Any:
        """With BENCH_PYSPY=<dir>: py-spy samples the operator for `seconds` while the block runs, and
        writes collapsed stacks to <dir>/<name>.txt (flamegraph.pl or speedscope read them)."""
        out_dir = os.environ.get("BENCH_PYSPY")
        spy = shutil.which("py-spy")
        if not out_dir or spy is None or self.op is None or self.op.pid is None:
            yield
            return
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        idle = ["--idle"] if os.environ.get("BENCH_PYSPY_IDLE") else []  # waiting threads sampled too
        rate = os.environ.get("BENCH_PYSPY_RATE", "50")  # samples per second
        cmd = [spy, "record", "--pid", str(self.op.pid), "--duration", str(int(seconds)), "--rate", rate,
               *idle, "--format", "raw", "--output", str(Path(out_dir) / f"{name}.txt"), "--nonblocking"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(seconds + 30)

    def rss(self) -> dict[str, float]:
        """VmRSS / VmHWM of the operator's Python process, MiB."""
        assert self.op is not None and self.op.pid is not None
        out: dict[str, float] = {}
        for line in Path(f"/proc/{self.op.pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024
        return out

    def cpu_seconds(self) -> float:
        """user + system CPU time of the operator process so far."""
        assert self.op is not None and self.op.pid is not None
        fields = Path(f"/proc/{self.op.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick

    def component_cpu(self) -> dict[str, float]:
        """user + system CPU seconds so far of each control-plane process (etcd, kube-apiserver, ...,
        kwok), the operator and this benchmark process: where a phase's CPU went."""
        assert self.cp is not None
        tick = os.sysconf("SC_CLK_TCK")
        pids = {p.name: p.popen.pid for p in self.cp._procs}
        if self.op is not None and self.op.pid is not None:
            pids["operator"] = self.op.pid
        pids["bench"] = os.getpid()
        out: dict[str, float] = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick
                if name == "operator":  # its artifact verifiers: worker processes, the ended ones reaped
                    out["operator verifiers"] = (int(fields[13]) + int(fields[14])) / tick + sum(
                        self._cpu_of_children(pid, tick)
                    )
        return out

    @staticmethod
    def _cpu_of_children(ppid: int, tick: int) -> list[float]:
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == ppid:
                    out.append((int(fields[11]) + int(fields[12])) / tick)
        return out

    def metrics(self) -> dict[str, Any]:
        """A few of the operator's Prometheus series (reconcile counts/durations, child writes)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, Any] = {
            "reconciles": {}, "reconcile_seconds": {}, "child_writes": {}, "route_updates": 0,
            "events_dropped": 0, "drift_skipped": {},
        }
        pat = re.compile(r'^(\w+)\{([^}]*)\} ([0-9.eE+-]+)$')
        for line in text.splitlines():
            m = pat.match(line)
            if not m:
                continue
            name, labels_s, value = m.group(1), m.group(2), float(m.group(3))
            labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_s))
            if name == "modelversioning_reconcile_duration_seconds_count":
                out["reconciles"][labels["kind"]] = int(value)
            elif name == "modelversioning_reconcile_duration_seconds_sum":
                out["reconcile_seconds"][labels["kind"]] = round(value, 3)
            elif name == "modelversioning_child_writes_total":
                out["child_writes"][f"{labels['kind']}/{labels['action']}"] = int(value)
            elif name == "modelversioning_route_updates_total":
                out["route_updates"] += int(value)
            elif name == "modelversioning_events_dropped_total":
                out["events_dropped"] += int(value)
            elif name == "modelversioning_drift_reconciles_skipped_total":
                out["drift_skipped"][labels["kind"]] = int(value)
        return out

    # ------------------------------------------------------------------ audit log
    def audit_offset(self) -> int:
        assert self.cp is not None
        return self.cp.audit_offset()

    def audit_requests(self, start: int, end: int, name: str) -> list[dict[str, Any]]:
        """Completed requests on objects called `name` in our namespace, between two offsets:
        (user, verb, resource[/subresource], received, completed) with datetimes."""
        assert self.cp is not None and self.cp.audit_log is not None
        with self.cp.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read(max(0, end - start))
        needle = f'"name":"{name}"'.encode()
        out = []
        for line in data.splitlines():
            if needle not in line or b'"ResponseComplete"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                ev = json.loads(line)
                ref = ev.get("objectRef") or {}
                if ref.get("name") != name or ref.get("namespace") != NS:
                    continue
                res = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                out.append({
                    "user": ev["user"]["username"],
                    "verb": ev["verb"],
                    "resource": res,
                    "received": _ts(ev["requestReceivedTimestamp"]),
                    "completed": _ts(ev["stageTimestamp"]),
                })
        return sorted(out, key=lambda r: r["received"])

    def writes_by_user(self, start: int) -> dict[str, int]:
        """Writes logged since an audit-log offset, by user (the operator, the benchmark's own creates,
        the controller-manager, the scheduler, kwok...): whose work the API server was doing."""
        assert self.cp is not None and self.cp.audit_log is not None
        with self.cp.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read()
        seen: set[str] = set()
        out: Counter[str] = Counter()
        for line in data.splitlines():
            if not line.startswith(b"{"):
                continue
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("verb") not in WRITE_VERBS or ev["auditID"] in seen:
                    continue
                seen.add(ev["auditID"])
                out[(ev.get("user") or {}).get("username", "?").removeprefix("system:")] += 1
        return dict(out.most_common())

    def operator_events(self) -> Counter[tuple[str, str]]:
        """(involved kind, "Event <reason>") -> writes, of the Events the operator posted in our namespace
        (bench/writes.py: each Event's count)."""
        assert self.api is not None
        core = client.CoreV1Api(self.api)
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = core.list_namespaced_event(NS, limit=500, _continue=token)
            items += [self.api.sanitize_for_serialization(e) for e in page.items]
            token = page.metadata._continue
            if not token:
                break
        return writes.event_counts(items)

    def version_status(self, start: int) -> dict[str, Any]:
        """What each status PATCH of the fleet's ModelVersions changed since an audit-log offset
        (bench/version_status.py; needs MV_AUDIT_REQUEST=modelversioning.io/modelversions/status)."""
        import version_status as vs

        assert self.cp is not None and self.cp.audit_log is not None
        with self.cp.audit_log.open("rb") as f:
            f.seek(start)
            patches = vs.status_patches(f, OPERATOR_USER, NS)
        return vs.breakdown(vs.sequences(patches), vs.gaps(patches))

    def operator_writes(
        self, start: int, events_before: Counter[tuple[str, str]], created: dict[str, int]
    ) -> dict[str, Any]:
        """The operator's writes since an audit-log offset, by kind and cause (bench/writes.py), with the
        Events it posted since ``events_before`` (operator_events() then) by reason."""
        assert self.cp is not None and self.cp.audit_log is not None
        with self.cp.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read().splitlines()
        events = writes.since(self.operator_events(), events_before)
        by_cause = writes.audit_writes(data, OPERATOR_USER) + events
        out = writes.summary(by_cause, created)
        out["event_writes_in_audit_log"] = writes.audit_event_writes(data, OPERATOR_USER)
        return out

    def operator_requests(
        self, start: int, end: int | None = None, user: str = OPERATOR_USER
    ) -> dict[str, Any]:
        """The operator's (or another ``user``'s) requests logged between two audit-log offsets, by verb
        and by resource."""
        assert self.cp is not None and self.cp.audit_log is not None
        with self.cp.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        needle = user.encode()
        reqs: dict[str, dict[str, Any]] = {}
        for line in data.splitlines():
            if not line.startswith(b"{") or needle not in line:
                continue
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if (ev.get("user") or {}).get("username") != user:
                    continue
                reqs.setdefault(ev["auditID"], ev)
        by_verb: Counter[str] = Counter()
        by_resource: Counter[str] = Counter()
        writes: list[str] = []
        for ev in reqs.values():
            verb = ev.get("verb", "?")
            ref = ev.get("objectRef") or {}
            res = ref.get("resource", ev.get("requestURI", "?"))
            if ref.get("subresource"):
                res += "/" + ref["subresource"]
            by_verb[verb] += 1
            by_resource[f"{verb} {res}"] += 1
            if verb in WRITE_VERBS:
                writes.append(f"{verb} {res} {ref.get('namespace', '')}/{ref.get('name', '')}")
        return {
            "requests": sum(by_verb.values()),
            "by_verb": dict(sorted(by_verb.items())),
            "by_verb_resource": dict(by_resource.most_common()),
            "writes": len(writes),
            "write_examples": writes[:20],
        }
