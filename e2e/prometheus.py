"""A real Prometheus for the e2e harness: Debian's package, started on loopback with a generated config.

    with ControlPlane() as cp, Traefik(cp) as gw, Prometheus(cp=cp, traefik=gw) as prom:
        prom.add_target("model-servers", "127.0.0.1:8081", {"namespace": "ml", "variant": "canary"})
        prom.wait_target_up("model-servers")
        prom.query('sum by (version) (rate(modelserver_requests_total{handler="predict"}[10s]))')

Scrape jobs (interval ``scrape_interval``, 1 s by default):

* ``traefik``: Traefik's metrics entryPoint (when a ``Traefik`` is given);
* ``model-pods`` (when a ``ControlPlane`` is given): the pods our operator renders
  (``app.kubernetes.io/managed-by=modelversioning-operator``, ``app.kubernetes.io/component=model-server``),
  Running with a pod IP, on their container port named ``http``, with target labels ``namespace``,
  ``pod``, ``node``, ``endpoint`` and ``variant`` (from the pod's ``modelversioning.io/*`` labels).
  Debian's prometheus is built without Kubernetes service discovery (``kubernetes_sd_configs`` is an
  unknown field in 2.42+ds), so the harness watches the pods itself and writes them as a ``file_sd``
  file. ``honor_labels: false`` (Prometheus' default, spelled out): the target labels from the pod
  (``namespace``, ``pod``, ``node``, ``endpoint``, ``variant``) win over what a server exports, so a
  pod cannot pass its series off as another namespace's or endpoint's (a conflicting exported label is
  kept as ``exported_<name>``); ``model`` and ``version`` are the server's own labels;
* one job per ``add_target`` name: file-based discovery (``file_sd``) written by the harness, for
  processes on the host (a model server outside any pod, another exporter).

New targets are scraped within about 6 s: Prometheus applies discovery changes every 5 s.
The TSDB lives in a temp dir, removed on stop (unless ``MV_E2E_KEEP=1``). The Debian service is
never used (build-dataplane.sh stops and disables it).

Environment:
    MV_DATAPLANE_BIN_DIR   directory with ``prometheus`` (skips build-dataplane.sh)
    MV_E2E_KEEP            "1": keep the work dir (config, TSDB, log) after stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import ControlPlane, _die_with_parent, _free_port, _Proc  # noqa: E402
from gateway import find_dataplane_bin_dir  # noqa: E402

if TYPE_CHECKING:
    from gateway import Traefik

POD_SELECTOR = (
    "app.kubernetes.io/managed-by=modelversioning-operator,app.kubernetes.io/component=model-server"
)
POD_PORT_NAME = "http"


class PrometheusError(RuntimeError):
    """Prometheus could not start, or a query failed."""


def _log(msg: str) -> None:
    print(f"[prometheus] {msg}", file=sys.stderr, flush=True)


class Prometheus:
    """Prometheus on 127.0.0.1 with a generated config, as a context manager.

    Attributes once started: ``url`` (http://127.0.0.1:port), ``port``, ``workdir``, ``timings``.
    """

    def __init__(
        self,
        *,
        cp: ControlPlane | None = None,
        traefik: Traefik | None = None,
        scrape_interval: str = "1s",
        bin_dir: Path | str | None = None,
        log: Callable[[str], None] | None = _log,
        keep: bool | None = None,
    ) -> None:
        self.cp = cp
        self.traefik = traefik
        self.scrape_interval = scrape_interval
        self.log = log or (lambda _m: None)
        self.keep = os.environ.get("MV_E2E_KEEP") == "1" if keep is None else keep
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.bin = Path()
        self.port = 0
        self.workdir: Path | None = None
        self.timings: dict[str, float] = {}
        self.proc: _Proc | None = None
        self._file_targets: dict[str, list[dict[str, Any]]] = {}
        self._pods: _PodDiscovery | None = None
        self._started = False
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Prometheus:
        if self._started:
            return self
        self._started = True
        t0 = time.monotonic()
        try:
            bin_dir = self._bin_dir or find_dataplane_bin_dir(self.log)
            self.bin = bin_dir / "prometheus"
            if not os.access(self.bin, os.X_OK):
                raise PrometheusError(f"no prometheus binary in {bin_dir} (run e2e/build-dataplane.sh)")
            self.workdir = Path(tempfile.mkdtemp(prefix="mv-prometheus-"))
            (self.workdir / "file_sd").mkdir()
            self.port = _free_port(set())
            if self.cp is not None:
                self._pods = _PodDiscovery(self.cp, self._file_sd("model-pods"), self.log)
                self._pods.start()
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            self._spawn()
            self._wait("prometheus /-/ready", self._ready, timeout=60)
        except BaseException:
            self.stop()
            raise
        self.timings["ready"] = time.monotonic() - t0
        self.log(f"prometheus {self.url} ready in {self.timings['ready']:.1f}s")
        return self

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        if self._pods is not None:
            self._pods.stop()
        if self.proc is not None and self.proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.popen.send_signal(signal.SIGTERM)
            try:
                self.proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.popen.kill()
                self.proc.popen.wait(timeout=5)
        if self.workdir is not None and self.workdir.exists():
            if self.keep:
                self.log(f"kept {self.workdir} (config, TSDB, log)")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self, lines: int = 40) -> str:
        return self.proc.tail(lines) if self.proc is not None else ""

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "prometheus.yml"

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        assert self.workdir is not None
        jobs: list[dict[str, Any]] = []
        if self.traefik is not None:
            jobs.append(
                {"job_name": "traefik", "static_configs": [{"targets": [self.traefik.metrics_target]}]}
            )
        if self.cp is not None:
            jobs.append(self._pod_job())
        for job in sorted(self._file_targets):
            jobs.append(
                {
                    "job_name": job,
                    "honor_labels": False,
                    "file_sd_configs": [{"files": [str(self._file_sd(job))], "refresh_interval": "1s"}],
                }
            )
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": jobs,
        }

    def _pod_job(self) -> dict[str, Any]:
        return {
            "job_name": "model-pods",
            "honor_labels": False,
            "file_sd_configs": [{"files": [str(self._file_sd("model-pods"))], "refresh_interval": "1s"}],
        }

    def _file_sd(self, job: str) -> Path:
        assert self.workdir is not None
        return self.workdir / "file_sd" / f"{job}.json"

    def add_target(self, job: str, target: str, labels: Mapping[str, str] | None = None) -> None:
        """Scrape ``target`` (host:port, path /metrics) in job ``job``; a new job reloads the config."""
        new_job = job not in self._file_targets
        self._file_targets.setdefault(job, []).append({"targets": [target], "labels": dict(labels or {})})
        path = self._file_sd(job)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._file_targets[job]))
        tmp.replace(path)  # atomic: Prometheus never reads half a file
        if new_job:
            self.reload()

    def remove_target(self, job: str, target: str) -> None:
        groups = [g for g in self._file_targets.get(job, []) if target not in g["targets"]]
        self._file_targets[job] = groups
        path = self._file_sd(job)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(path)

    def reload(self) -> None:
        """Rewrite the config and have Prometheus load it (POST /-/reload answers once it did)."""
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        req = urllib.request.Request(self.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise PrometheusError(
                f"prometheus refused the config: {e.read().decode(errors='replace')}"
            ) from e

    # ------------------------------------------------------------------ queries
    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: the ``result`` list (vector: ``{"metric": {...}, "value": [t, "v"]}``)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self._get_json("/api/v1/query?" + urllib.parse.urlencode(params))
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_value(self, promql: str) -> float | None:
        """The value of a query returning one series (None when it returns none)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"query {promql!r} returned {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def wait_query(
        self,
        promql: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``check(result)`` holds (default: a non-empty result)."""
        last: list[dict[str, Any]] = []

        def ok() -> bool:
            nonlocal last
            last = self.query(promql)
            return bool(check(last))

        self._wait(f"query {promql!r}", ok, timeout, lambda: f"last result: {json.dumps(last)}")
        return last

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get_json("/api/v1/targets?state=active")["data"]["activeTargets"])

    def wait_target_up(
        self, job: str, timeout: float = 30, count: int = 1, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Until at least ``count`` targets of ``job`` (in ``namespace``, when given: a shared Prometheus
        also scrapes other tests' pods) have been scraped successfully."""
        up: list[dict[str, Any]] = []

        def ours(t: dict[str, Any]) -> bool:
            return t["labels"].get("job") == job and namespace in (None, t["labels"].get("namespace"))

        def ok() -> bool:
            nonlocal up
            up = [t for t in self.targets() if ours(t) and t.get("health") == "up"]
            return len(up) >= count

        def detail() -> str:
            return json.dumps([t for t in self.targets() if t["labels"].get("job") == job], indent=1)

        self._wait(f"{count} target(s) of job {job} up", ok, timeout, detail)
        return up

    # ------------------------------------------------------------------ internals
    def _spawn(self) -> None:
        assert self.workdir is not None
        log_path = self.workdir / "prometheus.log"
        logf = log_path.open("wb")
        popen = subprocess.Popen(
            [
                str(self.bin),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--storage.tsdb.retention.time=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=info",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,
        )
        logf.close()
        self.proc = _Proc("prometheus", popen, log_path)

    def _ready(self) -> bool:
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
            return bool(r.status == 200)

    def _get_json(self, path: str) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:  # 400/422 carry a JSON error body
            try:
                return dict(json.loads(e.read()))
            except ValueError:
                raise PrometheusError(f"GET {path}: HTTP {e.code}") from e

    def _wait(
        self, what: str, check: Callable[[], bool], timeout: float, detail: Callable[[], str] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            if self.proc is not None and not self.proc.alive():
                raise PrometheusError(f"prometheus exited while waiting for {what}:\n{self.logs()}")
            try:
                if check():
                    return
            except (OSError, PrometheusError, ValueError, KeyError) as e:
                last_error = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                extra = detail() if detail else ""
                raise PrometheusError(
                    f"timed out after {timeout:.0f}s waiting for {what}. {last_error}\n{extra}\n"
                    f"---- prometheus log (tail) ----\n{self.logs()}"
                )
            time.sleep(0.2)


class _PodDiscovery:
    """Watches the model pods of the control plane and keeps a Prometheus file_sd file of them."""

    def __init__(self, cp: ControlPlane, path: Path, log: Callable[[str], None]) -> None:
        self.cp = cp
        self.path = path
        self.log = log
        self.pods: dict[str, dict[str, Any]] = {}  # namespace/name -> target group
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prometheus-pod-discovery", daemon=True)
        self._written = ""
        self._write()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def target(self, pod: Any) -> dict[str, Any] | None:
        """The file_sd target group of a pod (kubernetes client object), or None if not scrapable:
        not Running, no IP, terminating, or on a kwok node (whose pods run nothing)."""
        ip = pod.status.pod_ip if pod.status else None
        if not ip or (pod.status.phase or "") != "Running" or pod.metadata.deletion_timestamp:
            return None
        if pod.spec.node_name in self.cp.node_names:
            return None
        port = next(
            (
                p.container_port
                for c in pod.spec.containers or []
                for p in c.ports or []
                if p.name == POD_PORT_NAME
            ),
            None,
        )
        if port is None:
            return None
        labels = pod.metadata.labels or {}
        group_labels = {
            "namespace": pod.metadata.namespace,
            "pod": pod.metadata.name,
            "node": pod.spec.node_name or "",
            "endpoint": labels.get("modelversioning.io/endpoint", ""),
            "variant": labels.get("modelversioning.io/variant", ""),
        }
        host = f"[{ip}]" if ":" in ip else ip
        return {"targets": [f"{host}:{port}"], "labels": {k: v for k, v in group_labels.items() if v}}

    def _write(self) -> None:
        text = json.dumps([self.pods[k] for k in sorted(self.pods)])
        if text == self._written:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)
        self._written = text

    def _run(self) -> None:
        from kubernetes import client, config, watch

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.cp.kubeconfig), client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            core = client.CoreV1Api(api)
            while not self._stop.is_set():
                try:
                    listed = core.list_pod_for_all_namespaces(
                        label_selector=POD_SELECTOR, _request_timeout=30
                    )
                    self.pods = {}
                    for pod in listed.items:
                        self._update("ADDED", pod)
                    self._write()
                    w = watch.Watch()
                    for ev in w.stream(
                        core.list_pod_for_all_namespaces,
                        label_selector=POD_SELECTOR,
                        resource_version=listed.metadata.resource_version,
                        timeout_seconds=5,
                        _request_timeout=30,
                    ):
                        self._update(ev["type"], ev["object"])
                        self._write()
                        if self._stop.is_set():
                            w.stop()
                            break
                except Exception as e:  # the API server restarting, a 410 Gone: list again
                    if self._stop.is_set():
                        return
                    self.log(f"pod discovery: {type(e).__name__}: {e}; listing again")
                    self._stop.wait(1)

    def _update(self, kind: str, pod: Any) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        group = None if kind == "DELETED" else self.target(pod)
        if group is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = group
