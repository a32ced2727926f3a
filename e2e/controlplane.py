"""A real Kubernetes control plane as plain processes on 127.0.0.1.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler, with kwok
playing the kubelets of a few fake nodes, so that ordinary Deployments get
scheduled and become Available without a container runtime. No Docker, no kind.

    from controlplane import ControlPlane

    with ControlPlane(nodes=2) as cp:
        cp.kubectl("get", "nodes")
        subprocess.run(["my-operator"], env=cp.env())

The binaries come from ``e2e/build-control-plane.sh`` (built once from the Go
module proxy, then cached), or from ``$MV_BIN_DIR`` when that is set.

Existing cluster (kind, a dev cluster...): set ``MV_E2E_KUBECONFIG=/path``
(or ``MV_E2E_USE_EXISTING=1`` to use ``$KUBECONFIG``); then nothing is started,
only the CRDs are installed.

Environment:
    MV_BIN_DIR            directory with the binaries (skips the build script)
    MV_E2E_KUBECONFIG     use this existing cluster instead of starting one
    MV_E2E_USE_EXISTING   "1": use the existing cluster of $KUBECONFIG
    MV_E2E_CRDS           directory of our CRDs (default <repo>/crds)
    MV_THIRDPARTY_CRDS    directory of third-party CRDs (default <repo>/../shared/thirdparty-crds)
    MV_E2E_KEEP           "1": keep the temp dir (logs, etcd data) after stop()
    MV_AUDIT_REQUEST      comma-separated group/resource[/subresource] (e.g.
                          "modelversioning.io/modelversions/status") whose writes the audit log records
                          at Request level (with the request body); everything else stays Metadata
    MV_NODE_BIN_DIR       kubelet, kube-proxy, crictl for the real node (see node.py)

A real node (kubelet + containerd running real pods, see node.py) is attached with
``ControlPlane(real_node=True)``: the API server then binds to and advertises the node's address
(``node.NODE_IP``) instead of 127.0.0.1, so that pods reach it, and ``cp.real_node`` is the RealNode.
    KWOK_VERSION          kwok version whose Stage files are used (default v0.8.0)
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from childserver import die_with_parent, free_port

_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the third-party CRDs are ~1 MB of YAML

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent
BUILD_SCRIPT = E2E_DIR / "build-control-plane.sh"

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
REAL_NODE_IP = "10.250.0.1"  # = node.NODE_IP (in the API server's certificate either way)
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
KWOK_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat/node-heartbeat.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
# Controllers that need a cloud provider, node CIDRs or a signing CA we don't have.
DISABLED_CONTROLLERS = (
    "node-ipam-controller",
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
    "certificatesigningrequest-signing-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (or a CRD was refused)."""


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return (
            f"kubectl {' '.join(self.cmd[1:])} failed (exit {self.returncode}): {(self.stderr or '').strip()}"
        )


def _request_level_rules() -> list[dict[str, Any]]:
    """Audit rules logging the writes of MV_AUDIT_REQUEST's resources with their request body (what a
    status PATCH changed: bench/version_status.py classifies them); none when it is unset."""
    rules: list[dict[str, Any]] = []
    for item in filter(None, (x.strip() for x in os.environ.get("MV_AUDIT_REQUEST", "").split(","))):
        group, _, resource = item.partition("/")
        rules.append(
            {
                "level": "Request",
                "verbs": ["create", "update", "patch"],
                "resources": [{"group": group, "resources": [resource]}],
            }
        )
    return rules


def _free_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port


_die_with_parent = die_with_parent  # gateway.py and prometheus.py import it from here


def _default_log(msg: str) -> None:
    print(f"[controlplane] {msg}", file=sys.stderr, flush=True)


class _Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """A throw-away Kubernetes control plane (or an existing cluster), as a context manager.

    Attributes once started: ``kubeconfig`` (Path), ``server`` (https URL), ``token`` (admin
    bearer token), ``ca_file`` (Path), ``audit_log`` (Path; None for an existing cluster),
    ``bin_dir`` (Path or None), ``workdir`` (temp dir), ``timings`` (step -> seconds),
    ``existing`` (True when using an existing cluster), ``node_names``.
    """

    def __init__(
        self,
        nodes: int = 2,
        *,
        crd_paths: Iterable[Path | str] | None = None,
        log: Callable[[str], None] | None = _default_log,
        kubeconfig: str | Path | None = None,
        keep: bool | None = None,
        real_node: bool = False,
        controller_qps: int | None = None,
    ) -> None:
        self.nodes = nodes
        # the controller-manager's and scheduler's client rate limit (Kubernetes' default: 20 QPS, burst
        # 30); benchmarks of thousands of Deployments raise it, as large clusters do, so that the
        # ReplicaSets and pods behind the operator's Deployments are not what is measured
        self.controller_qps = controller_qps
        self.want_real_node = real_node
        self.real_node: Any = None  # node.RealNode once started with real_node=True
        self.log = log or (lambda _msg: None)
        self.keep = os.environ.get("MV_E2E_KEEP") == "1" if keep is None else keep
        self._crd_paths = [Path(p) for p in crd_paths] if crd_paths is not None else None

        if kubeconfig is None:
            kubeconfig = os.environ.get("MV_E2E_KUBECONFIG") or None
            if kubeconfig is None and os.environ.get("MV_E2E_USE_EXISTING") == "1":
                kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(
                    os.pathsep
                )[0]
        self.existing = kubeconfig is not None
        self.kubeconfig: Path = Path(kubeconfig) if kubeconfig else Path()
        self.server = ""
        self.token: str | None = None
        self.ca_file: Path | None = None
        self.audit_log: Path | None = None
        self.bin_dir: Path | None = None
        self.workdir: Path | None = None
        self.timings: dict[str, float] = {}
        self.node_names: list[str] = []
        self.ports: dict[str, int] = {}
        self._procs: list[_Proc] = []
        self._ssl: ssl.SSLContext | None = None
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self._started:
            return self
        self._started = True
        atexit.register(self.stop)
        self._install_sigterm_handler()
        t_all = time.monotonic()
        try:
            if self.existing:
                if self.want_real_node:
                    raise ControlPlaneError(
                        "a real node needs the harness's own control plane, not an existing cluster "
                        "(unset MV_E2E_KUBECONFIG / MV_E2E_USE_EXISTING)"
                    )
                self._use_existing()
            else:
                self._start_processes()
            self._step("CRDs", self._install_crds)
            if self.workdir is not None:  # discovery cached before the CRDs existed is stale now
                shutil.rmtree(self.workdir / "kube-cache", ignore_errors=True)
            self._step("admission policies", self._install_admission_policies)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t_all
        what = f"existing cluster {self.server}" if self.existing else f"control plane {self.server}"
        self.log(f"{what} ready in {self.timings['total']:.1f}s ({self.summary()})")
        return self

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items() if k != "total")

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ + KUBECONFIG of this cluster + PATH prefixed by the bin dir."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        if self.workdir is not None:
            # kubectl's discovery cache, per cluster: ~/.kube/cache is keyed by host:port, which a later
            # throw-away cluster may reuse, and a cache taken before the CRDs hides their categories.
            env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; returns the CompletedProcess (text, captured)."""
        cmd = [self._kubectl_path(), "--kubeconfig", str(self.kubeconfig), *args]
        res = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check and res.returncode != 0:
            raise KubectlError(res.returncode, cmd, res.stdout, res.stderr)
        return res

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *extra: str) -> str:
        """kubectl apply (server-side) of YAML text or objects; returns kubectl's output."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs)
        return self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=mv-e2e",
            "-f",
            "-",
            *extra,
            input=manifest,
        ).stdout

    def audit_events(self, start: int = 0) -> list[dict[str, Any]]:
        """Audit events (Metadata level) logged from byte offset ``start`` (see ``audit_offset``)."""
        if self.audit_log is None or not self.audit_log.exists():
            return []
        with self.audit_log.open("rb") as f:
            f.seek(start)
            data = f.read()
        return [json.loads(line) for line in data.splitlines() if line.strip().startswith(b"{")]

    def audit_offset(self) -> int:
        """Current size of the audit log, to count only the requests made after this point."""
        if self.audit_log is None or not self.audit_log.exists():
            return 0
        return self.audit_log.stat().st_size

    def logs(self, name: str, lines: int = 100) -> str:
        """Last lines of a component's log (etcd, kube-apiserver, kube-controller-manager, ...)."""
        for p in self._procs:
            if p.name == name:
                return p.tail(lines)
        return ""

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        t0 = time.monotonic()
        if self.real_node is not None:  # its pods and processes go while the API server is still up
            with contextlib.suppress(Exception):
                self.real_node.stop()
        procs = list(reversed(self._procs))
        # Clients first, then the API server (it shuts down cleanly only while etcd is up), then etcd.
        tiers = [
            [p for p in procs if p.name not in ("kube-apiserver", "etcd")],
            [p for p in procs if p.name == "kube-apiserver"],
            [p for p in procs if p.name == "etcd"],
        ]
        for tier in tiers:
            for p in tier:
                if p.alive():
                    with contextlib.suppress(ProcessLookupError):
                        p.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for p in tier:
                try:
                    p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.log(f"{p.name} ignored SIGTERM for 10s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        p.popen.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.popen.wait(timeout=5)
        if self.real_node is not None:
            self.real_node.restore_host()
        for p in procs:
            for stream in (p.popen.stdout, p.popen.stderr):
                if stream is not None:
                    stream.close()
        if self.workdir is not None and self.workdir.exists():
            if self.keep:
                self.log(f"kept {self.workdir} (logs, etcd data)")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if procs:
            self.log(f"stopped in {time.monotonic() - t0:.1f}s")

    # ------------------------------------------------------------------ steps

    def _step(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        result = fn()
        self.timings[name] = time.monotonic() - t0
        self.log(f"{name}: {self.timings[name]:.2f}s")
        return result

    def _start_processes(self) -> None:
        self._step("binaries", self._find_binaries)
        self.workdir = Path(tempfile.mkdtemp(prefix="mv-controlplane-"))
        (self.workdir / "logs").mkdir()
        if self.want_real_node:
            from node import RealNode

            self.real_node = RealNode(self)
            self._step("real node host", lambda: self.real_node.prepare_host(self.workdir / "node"))
        self._step("certs", self._write_pki)
        taken: set[int] = set()
        for name in ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler"):
            self.ports[name] = _free_port(taken)
        self.server = f"https://{self._apiserver_address()}:{self.ports['apiserver']}"
        self._write_kubeconfigs()
        self._step("etcd", self._start_etcd)
        self._step("apiserver ready", self._start_apiserver)
        self._step("controllers started", self._start_controllers)
        self._step("nodes", self._create_nodes)
        self._step("controllers healthy", self._wait_controllers)
        if self.real_node is not None:
            self._step("real node", self.real_node.start)

    def _apiserver_address(self) -> str:
        """127.0.0.1, or the real node's address (pods cannot reach a loopback API server)."""
        if self.real_node is not None:
            return str(self.real_node.ip)
        return "127.0.0.1"

    def _find_binaries(self) -> None:
        env_dir = os.environ.get("MV_BIN_DIR")
        if env_dir:
            self.bin_dir = Path(env_dir)
        else:
            self.log(f"getting binaries via {BUILD_SCRIPT.name} (builds once, slow the first time)")
            try:
                res = subprocess.run(
                    ["bash", str(BUILD_SCRIPT)],
                    stdout=subprocess.PIPE,
                    stderr=None,
                    text=True,
                    timeout=3 * 3600,
                )
            except subprocess.TimeoutExpired as e:
                raise ControlPlaneError("build-control-plane.sh did not finish in 3h") from e
            if res.returncode != 0:
                raise ControlPlaneError(f"build-control-plane.sh failed with exit code {res.returncode}")
            lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
            if not lines:
                raise ControlPlaneError("build-control-plane.sh printed no bin directory")
            self.bin_dir = Path(lines[-1].strip())
        missing = [
            b
            for b in (
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
                "kwok",
            )
            if not os.access(self.bin_dir / b, os.X_OK)
        ]
        if missing:
            raise ControlPlaneError(f"missing binaries in {self.bin_dir}: {', '.join(missing)}")

    def _write_pki(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        assert self.workdir is not None
        pki = self.workdir / "pki"
        pki.mkdir()
        now = dt.datetime.now(dt.UTC)

        def pem_key(key: Any) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelversioning-e2e-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        srv_key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        sans += [
            x509.IPAddress(ipaddress.ip_address(a))
            for a in ("127.0.0.1", "::1", KUBERNETES_SERVICE_IP, REAL_NODE_IP)
        ]
        srv_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(srv_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # The API server's client certificate for kubelets (logs, exec, port-forward on the real node).
        kc_key = ec.generate_private_key(ec.SECP256R1())
        kc_cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
                    ]
                )
            )
            .issuer_name(ca_name)
            .public_key(kc_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (pki / "kubelet-client.crt").write_bytes(kc_cert.public_bytes(serialization.Encoding.PEM))
        (pki / "kubelet-client.key").write_bytes(pem_key(kc_key))

        self.ca_file = pki / "ca.crt"
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (pki / "apiserver.crt").write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
        (pki / "apiserver.key").write_bytes(pem_key(srv_key))
        (pki / "sa.key").write_bytes(pem_key(sa_key))
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        # Static tokens. Every component has its own user (so audit logs tell them apart); all are
        # cluster admins, which keeps the controller-manager simple (no per-controller SAs).
        self.token = secrets.token_hex(24)
        self._component_tokens = {
            c: secrets.token_hex(24) for c in ("controller-manager", "scheduler", "kwok")
        }
        rows = [f'{self.token},admin,admin,"system:masters"']
        users = {
            "controller-manager": "system:kube-controller-manager",
            "scheduler": "system:kube-scheduler",
            "kwok": "kwok",
        }
        for comp, tok in self._component_tokens.items():
            rows.append(f'{tok},{users[comp]},{users[comp]},"system:masters"')
        if self.real_node is not None:  # least privilege: the Node authorizer and system:node-proxier
            rn = self.real_node
            rn.kubelet_token, rn.proxy_token = secrets.token_hex(24), secrets.token_hex(24)
            rows.append(f'{rn.kubelet_token},system:node:{rn.name},system:node:{rn.name},"system:nodes"')
            rows.append(f"{rn.proxy_token},system:kube-proxy,system:kube-proxy")
        (pki / "tokens.csv").write_text("\n".join(rows) + "\n")
        os.chmod(pki / "tokens.csv", 0o600)

        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))

    def _kubeconfig_doc(self, user: str, token: str) -> dict[str, Any]:
        assert self.ca_file is not None
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mv-e2e",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "mv-e2e", "context": {"cluster": "mv-e2e", "user": user}}],
            "current-context": "mv-e2e",
        }

    def _write_kubeconfigs(self) -> None:
        assert self.workdir is not None and self.token is not None
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig_doc("admin", self.token)))
        os.chmod(self.kubeconfig, 0o600)
        for comp, tok in self._component_tokens.items():
            p = self.workdir / f"{comp}.kubeconfig"
            p.write_text(yaml.safe_dump(self._kubeconfig_doc(comp, tok)))
            os.chmod(p, 0o600)

    def _spawn(self, name: str, args: list[str]) -> _Proc:
        assert self.workdir is not None and self.bin_dir is not None
        log_path = self.workdir / "logs" / f"{name}.log"
        log_f = log_path.open("wb")
        try:
            popen = subprocess.Popen(
                [str(self.bin_dir / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log_f,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                start_new_session=sys.platform != "linux",
            )
        finally:
            log_f.close()
        proc = _Proc(name, popen, log_path)
        self._procs.append(proc)
        return proc

    def _wait(
        self,
        what: str,
        check: Callable[[], bool],
        timeout: float,
        procs: Iterable[_Proc] = (),
        interval: float = 0.1,
    ) -> None:
        """Poll ``check`` until true; fail fast when a watched process dies."""
        procs = list(procs)
        deadline = time.monotonic() + timeout
        while True:
            for p in procs:
                if not p.alive():
                    code = p.popen.returncode
                    msg = f"{p.name} exited with code {code} while waiting for {what}"
                    raise ControlPlaneError(f"{msg}:\n{p.tail()}")
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
                pass
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in procs)
                raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
            time.sleep(interval)

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        client, peer = self.ports["etcd-client"], self.ports["etcd-peer"]
        proc = self._spawn(
            "etcd",
            [
                "etcd",
                "--name=mv-e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=mv-e2e=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # a throw-away cluster: durability buys nothing, fsync costs seconds
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")

        self._wait("etcd /health", healthy, timeout=30, procs=[proc])

    def _start_apiserver(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        self.audit_log = self.workdir / "audit.log"
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    # MV_APISERVER_AUDIT=None: nothing logged at Metadata level (bench/apiserver_cost.py
                    # measures what the log costs; the write counts of bench/writes.py then have no
                    # source); MV_AUDIT_REQUEST: some writes with their bodies (bench/version_status.py)
                    "rules": [
                        *_request_level_rules(),
                        {"level": os.environ.get("MV_APISERVER_AUDIT", "Metadata")},
                    ],
                }
            )
        )
        address = self._apiserver_address()
        # With a real node, the "kubernetes" Service gets the node address as its endpoint (lease
        # reconciler), and kube-proxy sends pods' in-cluster API calls there.
        real_node_flags = (
            [
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            ]
            if self.real_node is not None
            else ["--endpoint-reconciler-type=none"]
        )
        proc = self._spawn(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--advertise-address={address}",
                f"--bind-address={address}",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                *real_node_flags,
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd-client']}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-maxbackup=0",
                # never rotated (lumberjack's default is 100 MB): readers follow one file by offset, and
                # a 10,000-version benchmark writes a few hundred MB
                "--audit-log-maxsize=100000",
                # MV_APISERVER_PROFILING=1: /debug/pprof (kubectl get --raw /debug/pprof/profile?seconds=30)
                f"--profiling={'true' if os.environ.get('MV_APISERVER_PROFILING') == '1' else 'false'}",
            ],
        )

        def ready() -> bool:
            return self._get("/readyz", timeout=2)[0] == 200

        self._wait("kube-apiserver /readyz", ready, timeout=90, procs=[self._procs[0], proc], interval=0.2)

    def _start_controllers(self) -> None:
        assert self.workdir is not None and self.ca_file is not None
        pki = self.workdir / "pki"
        kcm_kc = self.workdir / "controller-manager.kubeconfig"
        self._kcm = self._spawn(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                f"--kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller-manager']}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=mv-e2e",
                "--controllers=*," + ",".join(f"-{c}" for c in DISABLED_CONTROLLERS),
                "--profiling=false",
                *self._qps_flags(),
            ],
        )
        self._scheduler = self._spawn(
            "kube-scheduler",
            [
                "kube-scheduler",
                f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                *self._qps_flags(),
            ],
        )
        stages = self.workdir / "kwok-config.yaml"
        stages.write_text(self._kwok_config())
        key, value = FAKE_NODE_ANNOTATION
        self._kwok = self._spawn(
            "kwok",
            [
                "kwok",
                f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                "--manage-nodes-with-label-selector=",
                # Deprecated (hidden from --help) in v0.8.0 but still honoured: lets a test own a status.
                "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
                "--cidr=10.0.0.1/24",
                "--node-ip=10.0.0.1",
            ],
        )

    def _qps_flags(self) -> list[str]:
        if self.controller_qps is None:
            return []
        return [f"--kube-api-qps={self.controller_qps}", f"--kube-api-burst={2 * self.controller_qps}"]

    def _kwok_config(self) -> str:
        """Stage objects shipped with kwok's Go module (read from the module cache, never vendored)."""
        stage_dir = self._kwok_stage_dir()
        docs = []
        for rel in KWOK_STAGE_FILES:
            docs.append((stage_dir / rel).read_text().strip())
        return "\n---\n".join(docs) + "\n"

    def _kwok_stage_dir(self) -> Path:
        version = os.environ.get("KWOK_VERSION", "v0.8.0")
        candidates: list[Path] = []
        gomodcache = os.environ.get("GOMODCACHE")
        if not gomodcache and shutil.which("go"):
            with contextlib.suppress(Exception):
                gomodcache = subprocess.run(
                    ["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30
                ).stdout.strip()
        if gomodcache:
            candidates.append(Path(gomodcache) / f"sigs.k8s.io/kwok@{version}")
        candidates.append(Path.home() / "go" / "pkg" / "mod" / f"sigs.k8s.io/kwok@{version}")
        for c in candidates:
            if (c / "kustomize" / "stage").is_dir():
                return c / "kustomize" / "stage"
        if shutil.which("go"):  # fetch the module source from the Go module proxy
            self.log(f"downloading sigs.k8s.io/kwok@{version} module source for its Stage files")
            res = subprocess.run(
                ["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{version}"],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=self.workdir,
            )
            if res.returncode == 0:
                d = Path(json.loads(res.stdout)["Dir"]) / "kustomize" / "stage"
                if d.is_dir():
                    return d
        raise ControlPlaneError(
            f"kwok Stage files not found (looked in {', '.join(map(str, candidates))}); "
            f"run `go mod download sigs.k8s.io/kwok@{version}`"
        )

    def _create_nodes(self) -> None:
        key, value = FAKE_NODE_ANNOTATION
        self.node_names = [f"kwok-node-{i}" for i in range(self.nodes)]
        resources = {"cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"}
        for name in self.node_names:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node-role.kubernetes.io/agent": "",
                    },
                },
                "spec": {},
                "status": {"allocatable": resources, "capacity": resources, "phase": "Running"},
            }
            status, body = self._request("POST", "/api/v1/nodes", node)
            if status not in (200, 201):
                raise ControlPlaneError(f"creating node {name}: HTTP {status}: {body}")

        def all_ready() -> bool:
            status, body = self._get("/api/v1/nodes?labelSelector=type%3Dkwok")
            if status != 200:
                return False
            ready = {
                n["metadata"]["name"]
                for n in json.loads(body)["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            return ready >= set(self.node_names)

        self._wait(f"{self.nodes} kwok nodes Ready", all_ready, timeout=60, procs=self._procs, interval=0.2)

    def _wait_controllers(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # their serving certs are self-signed by themselves

        def healthy(port: int) -> Callable[[], bool]:
            def check() -> bool:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                    return bool(r.status == 200)

            return check

        self._wait(
            "kube-controller-manager /healthz",
            healthy(self.ports["controller-manager"]),
            timeout=60,
            procs=self._procs,
            interval=0.2,
        )
        self._wait(
            "kube-scheduler /healthz",
            healthy(self.ports["scheduler"]),
            timeout=60,
            procs=self._procs,
            interval=0.2,
        )

        # The namespace "default" gets its ServiceAccount from the controller-manager; pods need it.
        def default_sa() -> bool:
            return self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

        self._wait("ServiceAccount default/default", default_sa, timeout=60, procs=self._procs, interval=0.2)

    # ------------------------------------------------------------------ existing cluster

    def _use_existing(self) -> None:
        if not self.kubeconfig.is_file():
            raise ControlPlaneError(f"kubeconfig {self.kubeconfig} does not exist")
        env_dir = os.environ.get("MV_BIN_DIR")
        if env_dir:
            self.bin_dir = Path(env_dir)
        elif not shutil.which("kubectl"):
            self._step("binaries", self._find_binaries)
        self.workdir = Path(tempfile.mkdtemp(prefix="mv-controlplane-"))
        cfg = yaml.safe_load(self.kubeconfig.read_text()) or {}
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name), {})
        cluster = next((c["cluster"] for c in cfg.get("clusters", []) if c["name"] == ctx.get("cluster")), {})
        user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
        self.server = cluster.get("server", "")
        self.token = user.get("token")
        if cluster.get("certificate-authority-data"):
            self.ca_file = self.workdir / "ca.crt"
            self.ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        elif cluster.get("certificate-authority"):
            self.ca_file = (self.kubeconfig.parent / cluster["certificate-authority"]).resolve()
        self.log(f"using existing cluster {self.server} (context {ctx_name}) from {self.kubeconfig}")
        self.kubectl("version", timeout=30)

    # ------------------------------------------------------------------ CRDs

    def crd_files(self) -> list[Path]:
        if self._crd_paths is not None:
            paths = self._crd_paths
        else:
            third = Path(
                os.environ.get("MV_THIRDPARTY_CRDS") or REPO_ROOT.parent / "shared" / "thirdparty-crds"
            )
            if not third.is_dir():
                raise ControlPlaneError(
                    f"third-party CRDs not found at {third} (set MV_THIRDPARTY_CRDS to their directory)"
                )
            paths = [Path(os.environ.get("MV_E2E_CRDS") or REPO_ROOT / "crds"), third]
        files: list[Path] = []
        for p in paths:
            files.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
        return files

    def _install_crds(self) -> None:
        files = self.crd_files()
        crds: list[dict[str, Any]] = []
        for f in files:
            crds.extend(
                d
                for d in yaml.load_all(f.read_text(), Loader=_YamlLoader)
                if d and d.get("kind") == "CustomResourceDefinition"
            )
        if not crds:
            return
        names = [c["metadata"]["name"] for c in crds]
        if self.existing:  # whatever auth the kubeconfig uses (client certs, exec plugins): let kubectl do it
            args = ["apply", "--server-side", "--force-conflicts", "--field-manager=mv-e2e"]
            for f in files:
                args += ["-f", str(f)]
            res = self.kubectl(*args, check=False, timeout=120)
            if res.returncode != 0:
                raise ControlPlaneError(f"the API server refused CRDs:\n{res.stderr.strip()}")
            res = self.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                *[f"crd/{n}" for n in names],
                check=False,
                timeout=90,
            )
            if res.returncode != 0:
                raise ControlPlaneError(f"CRDs not Established:\n{res.stderr.strip()}\n{res.stdout.strip()}")
            return

        # Own control plane: server-side apply over HTTPS directly (no kubectl start-up per call).
        errors = []
        for c in crds:
            status, body = self._request(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c['metadata']['name']}"
                "?fieldManager=mv-e2e&force=true",
                c,
                content_type="application/apply-patch+yaml",
                timeout=60,
            )
            if status not in (200, 201):
                try:
                    msg = json.loads(body).get("message", body)
                except ValueError:
                    msg = body
                errors.append(f"{c['metadata']['name']} (HTTP {status}): {msg}")
        if errors:
            raise ControlPlaneError("the API server refused CRDs:\n" + "\n".join(errors))

        def established() -> bool:
            status, body = self._get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            if status != 200:
                return False
            done = {
                item["metadata"]["name"]
                for item in json.loads(body)["items"]
                if any(
                    cond["type"] == "Established" and cond["status"] == "True"
                    for cond in (item.get("status") or {}).get("conditions") or []
                )
            }
            return set(names) <= done

        self._wait(f"{len(names)} CRDs Established", established, timeout=60, procs=self._procs)

    def _install_admission_policies(self) -> None:
        """The chart's ValidatingAdmissionPolicies (e2e/admission.py), when our CRDs are installed."""
        if self.kubectl("get", "crd", "modelversions.modelversioning.io", check=False).returncode != 0:
            return
        if str(E2E_DIR) not in sys.path:
            sys.path.insert(0, str(E2E_DIR))
        import admission

        admission.install(self)

    # ------------------------------------------------------------------ helpers

    def _kubectl_path(self) -> str:
        if self.bin_dir is not None and (self.bin_dir / "kubectl").exists():
            return str(self.bin_dir / "kubectl")
        return shutil.which("kubectl") or "kubectl"

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 10,
        content_type: str = "application/json",
    ) -> tuple[int, str]:
        """A raw HTTPS request with the admin token (own control plane only)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def _get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        return self._request("GET", path, timeout=timeout)

    def _install_sigterm_handler(self) -> None:
        """Turn SIGTERM into SystemExit so that atexit (and stop()) run; only if nobody else handles it."""
        if threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@contextlib.contextmanager
def control_plane(**kwargs: Any) -> Iterator[ControlPlane]:
    with ControlPlane(**kwargs) as cp:
        yield cp


if __name__ == "__main__":  # python e2e/controlplane.py: start, print how to use it, wait for Ctrl-C
    with ControlPlane() as cp:
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"export PATH={cp.bin_dir}:$PATH")
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.alive() for p in cp._procs):
                time.sleep(1)
