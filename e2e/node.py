"""A real Kubernetes node for the e2e control plane: kubelet + kube-proxy + containerd + CNI on this host.

The kwok nodes of ``controlplane.py`` never run a container; this one does. It is started and stopped
by the ControlPlane (``ControlPlane(real_node=True)``, or the ``real_node`` pytest fixture):

    with ControlPlane(nodes=2, real_node=True) as cp:
        node = cp.real_node                    # a RealNode
        cp.apply(pod_manifest_with(node.pod_placement()))

What runs where (see docs/harness.md):

* ``mv-node0``: a bridge holding only ``NODE_IP`` (10.250.0.1/32), the node's InternalIP. The API
  server binds to it (so pods reach it, through the ``kubernetes`` Service and kube-proxy), the kubelet
  serves on it.
* containerd 1.6 (Debian's) with its root, state and socket in the node's work directory, CRI with
  cgroupfs and ``restrict_oom_score_adj``; the sandbox image is ``images.PAUSE_IMAGE``, and the
  images of ``images.py`` are imported into its ``k8s.io`` namespace at start (nothing is pulled).
* CNI (Debian's plugins): bridge ``mv-cni0`` = 10.244.0.1/24 + host-local + portmap. The host
  reaches pod IPs directly over that bridge.
* kubelet (as ``system:node:<name>``, group ``system:nodes``) registering the node with the label
  ``REAL_NODE_LABEL`` and the taint ``REAL_NODE_TAINT``, so that only pods that ask land there.
* kube-proxy in nftables mode (its rules live in its own nft tables), for ClusterIP Services.

Host state the kubelet, kube-proxy and the CNI plugins change (sysctls, nft/iptables, links, cgroups,
a few fixed paths) is recorded before the start in ``STATE_DIR/state.json`` and restored on stop;
a run that died without stopping is cleaned up by the next start (e2e/test_host_state.py compares
the host before and after both). One real node per machine at a time (a file lock; a second one waits
up to ``$MV_REAL_NODE_LOCK_TIMEOUT`` seconds, default 480: under pytest-timeout's 600 s, so the error
says why); ``machine_lock()`` holds that lock across several nodes.

Environment:
    MV_NODE_BIN_DIR            kubelet, kube-proxy, crictl (skips e2e/build-node.sh)
    MV_REAL_NODE_LOCK_TIMEOUT  seconds to wait for another test session's real node to stop
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import REAL_NODE_IP, ControlPlane, _die_with_parent, _free_port, _Proc  # noqa: E402

BUILD_NODE_SCRIPT = E2E_DIR / "build-node.sh"

NODE_NAME = "real-node-0"
NODE_IP = REAL_NODE_IP  # 10.250.0.1, the node's InternalIP: not loopback, not in the pod or service CIDRs
NODE_LINK = "mv-node0"  # a bridge without ports, holding NODE_IP/32 (the "dummy" link type is missing here)
CNI_BRIDGE = "mv-cni0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
CGROUP_ROOT = "mv-real-node"  # the kubelet's cgroupRoot: every pod cgroup is below /<controller>/mv-real-node
REAL_NODE_LABEL = ("modelversioning.io/real-node", "true")
REAL_NODE_TAINT = {"key": "modelversioning.io/real-node", "value": "true", "effect": "NoSchedule"}

STATE_DIR = Path("/run/modelversioning-real-node")
LOCK_FILE = Path("/run/lock/modelversioning-real-node.lock")
SYSCTLS = (  # what the kubelet (protectKernelDefaults=false), kube-proxy and the bridge plugin may set
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Paths some component writes no matter where its root directory is: removed on stop when they did
# not exist before the start; when they did, what the node added below them is removed (see
# _tree_entries) and what was there is left alone.
FIXED_PATHS = (
    "/var/lib/kubelet",  # device-plugins/, pod-resources/
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",  # libcni's result cache
    "/run/containerd",  # shim sockets, runc state
    "/var/run/netns",  # pod network namespaces
    "/etc/cni",
)


class RealNodeError(RuntimeError):
    """The real node could not be started (the message says why)."""


# Set by machine_lock(): the descriptor that holds LOCK_FILE; a RealNode started meanwhile, in this
# process or in a child that inherited the descriptor, uses that lock instead of waiting for it.
LOCK_FD_ENV = "MV_REAL_NODE_LOCK_FD"


def _take_machine_lock(log: Callable[[str], None]) -> Any:
    """LOCK_FILE opened and exclusively locked (waits up to $MV_REAL_NODE_LOCK_TIMEOUT s, default 480)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    f = LOCK_FILE.open("a+")
    timeout = float(os.environ.get("MV_REAL_NODE_LOCK_TIMEOUT", "480"))
    deadline = time.monotonic() + timeout
    said = False
    held_by_us = 0
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            # The holder writes its pid once it has the lock: ours, seen three times in a row, means
            # this process already runs a real node (waiting would wait for ourselves).
            held_by_us = held_by_us + 1 if holder == str(os.getpid()) else 0
            if held_by_us >= 3:
                f.close()
                raise RealNodeError(
                    f"this process already holds {LOCK_FILE}: one real node per machine (a test that "
                    "starts its own real node must run before the session's shared one)"
                ) from None
            if not said:
                log(f"another real node runs on this machine ({LOCK_FILE}); waiting up to {timeout:.0f}s")
                said = True
            if time.monotonic() > deadline:
                f.close()
                raise RealNodeError(
                    f"another test session's real node still holds {LOCK_FILE} after {timeout:.0f}s "
                    "(one real node per machine; see MV_REAL_NODE_LOCK_TIMEOUT)"
                ) from None
            time.sleep(1)
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


@contextlib.contextmanager
def machine_lock(log: Callable[[str], None] = print) -> Iterator[int]:
    """Hold the one-real-node-per-machine lock across several real nodes (yields its descriptor).

    A RealNode started inside, in this process or in a child process that inherits the descriptor
    (``pass_fds``; its number is in ``$MV_REAL_NODE_LOCK_FD``), uses this lock and leaves it held when
    it stops: a test compares the host before the first node and after the last with no other test
    session's node starting or stopping in between."""
    f = _take_machine_lock(log)
    fd = f.fileno()
    os.set_inheritable(fd, True)
    previous = os.environ.get(LOCK_FD_ENV)
    os.environ[LOCK_FD_ENV] = str(fd)
    try:
        yield fd
    finally:
        if previous is None:
            os.environ.pop(LOCK_FD_ENV, None)
        else:
            os.environ[LOCK_FD_ENV] = previous
        with contextlib.suppress(OSError):
            fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def recover_abandoned_node(log: Callable[[str], None] = print) -> bool:
    """Put the host back as a real node found it when that node's session died without stopping it
    (its record is still in STATE_DIR). Only under the machine lock: then its owner is gone.
    True when there was one."""
    stale = STATE_DIR / "state.json"
    if not stale.exists():
        return False
    log("cleaning up after a real node that was not stopped")
    with contextlib.suppress(ValueError, KeyError, OSError):
        restore_host_state(json.loads(stale.read_text()), log)
    stale.unlink(missing_ok=True)
    return True


def _borrowed_machine_lock() -> bool:
    """True when ``$MV_REAL_NODE_LOCK_FD`` names a descriptor that holds LOCK_FILE (see machine_lock)."""
    raw = os.environ.get(LOCK_FD_ENV)
    if not raw:
        return False
    try:
        fd = int(raw)
        st, lock = os.fstat(fd), os.stat(LOCK_FILE)
    except (ValueError, OSError) as e:
        raise RealNodeError(f"${LOCK_FD_ENV}={raw} is not an open descriptor of {LOCK_FILE}: {e}") from None
    if (st.st_dev, st.st_ino) != (lock.st_dev, lock.st_ino):
        raise RealNodeError(f"${LOCK_FD_ENV}={raw} is not a descriptor of {LOCK_FILE}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a no-op on the open file that holds it
    except BlockingIOError:
        raise RealNodeError(
            f"${LOCK_FD_ENV}={raw} does not hold {LOCK_FILE}: another real node runs on this machine"
        ) from None
    return True


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _sh(*cmd: str, check: bool = True, timeout: float = 60, input: str | None = None) -> str:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise RealNodeError(f"{' '.join(cmd)} failed (exit {res.returncode}): {res.stderr.strip()}")
    return res.stdout


def _links() -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in json.loads(_sh("ip", "-j", "-d", "link", "show") or "[]")}


def _nft_tables() -> list[str]:
    if not shutil.which("nft"):
        return []
    return [
        ln.split(" ", 1)[1]
        for ln in _sh("nft", "list", "tables", check=False).splitlines()
        if ln.startswith("table ")
    ]


def _iptables_save(tool: str) -> str | None:
    if not shutil.which(tool):
        return None
    res = subprocess.run([tool], capture_output=True, text=True, timeout=60)
    return res.stdout if res.returncode == 0 else None


def _strip_counters(dump: str | None) -> str:
    return "\n".join(
        re.sub(r"\[\d+:\d+\]", "", ln) for ln in (dump or "").splitlines() if not ln.startswith("#")
    )


MAX_TREE_ENTRIES = 20000  # a fixed path holding more is not tracked entry by entry (left as it is)


def _tree_entries(root: str) -> list[str] | None:
    """Paths below ``root`` (relative, symlinks not followed); None when ``root`` is not a directory
    or holds more than MAX_TREE_ENTRIES entries."""
    if os.path.islink(root) or not os.path.isdir(root):
        return None
    out: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirs + files:
            out.append(name if rel == "." else os.path.join(rel, name))
        if len(out) > MAX_TREE_ENTRIES:
            return None
    return sorted(out)


def _remove_added_entries(root: str, before: list[str]) -> list[str]:
    """Remove what is below ``root`` now and was not in ``before`` (topmost first); returns problems."""
    known = set(before)
    problems = []
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in [*dirs, *files]:
            entry = name if rel == "." else os.path.join(rel, name)
            if entry in known:
                continue
            full = os.path.join(root, entry)
            _unmount_under(full)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(full)
            if os.path.lexists(full):
                problems.append(f"{full} (added below {root}) could not be removed")
        dirs[:] = [d for d in dirs if (d if rel == "." else os.path.join(rel, d)) in known]
    return problems


def record_host_state(workdir: Path) -> dict[str, Any]:
    """What the node may change, as it is now (JSON-serialisable)."""
    sysctls = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            sysctls[name] = _sysctl_path(name).read_text().strip()
    return {
        "pid": os.getpid(),
        "workdir": str(workdir),
        "sysctls": sysctls,
        "links": sorted(_links()),
        "nft_tables": _nft_tables(),
        "iptables": _iptables_save("iptables-save"),
        "ip6tables": _iptables_save("ip6tables-save"),
        "paths": {p: os.path.lexists(p) for p in FIXED_PATHS},
        "path_entries": {p: _tree_entries(p) for p in FIXED_PATHS if os.path.lexists(p)},
        "netns": sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else [],
        "cgroups": sorted(str(d) for d in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")),
    }


def _unmount_under(path: str) -> None:
    target = os.path.realpath(path)
    with contextlib.suppress(OSError):
        mounts = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
        for m in sorted({m for m in mounts if m == target or m.startswith(target + "/")}, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


_NODE_PROGRAMS = {"containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy"}


def _procs_with(marker: str) -> list[int]:
    """PIDs of the node's programs (containerd, its shims, kubelet, kube-proxy) whose command line
    names ``marker``, our work directory: only our own processes."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if os.path.basename(argv[0].decode(errors="replace")) not in _NODE_PROGRAMS:
                continue
            if marker in b" ".join(argv).decode(errors="replace"):
                pids.append(int(d.name))
    return pids


def restore_host_state(before: dict[str, Any], log: Callable[[str], None]) -> list[str]:
    """Undo what the node changed (processes of its work directory must be gone); returns problems."""
    problems: list[str] = []
    workdir = before.get("workdir") or ""
    if workdir:
        _kill_pids(_procs_with(workdir))  # leftover shims / containers of a run that died
    # Pod cgroups: kill what is left in them, then remove them deepest first.
    for ctrl_root in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}"):
        if str(ctrl_root) in before["cgroups"]:
            continue
        dirs = sorted(
            (d for d in ctrl_root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True
        )
        for d in [*dirs, ctrl_root]:
            with contextlib.suppress(OSError):
                _kill_pids([int(p) for p in (d / "cgroup.procs").read_text().split()])
        for d in [*dirs, ctrl_root]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                problems.append(f"cgroup {d} could not be removed")
    # Network namespaces and mounts left behind.
    if os.path.isdir("/var/run/netns"):
        for ns in os.listdir("/var/run/netns"):
            if ns not in before["netns"] and ns.startswith("cni-"):
                _unmount_under(f"/var/run/netns/{ns}")
                with contextlib.suppress(OSError):
                    os.unlink(f"/var/run/netns/{ns}")
    if workdir:
        _unmount_under(workdir)
    # Links: our bridges (the veths of pods go with their namespaces; any left are removed too).
    links = _links()
    for name, link in links.items():
        if name in before["links"]:
            continue
        if name in (NODE_LINK, CNI_BRIDGE) or link.get("master") == CNI_BRIDGE:
            res = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True)
            if res.returncode != 0 and name in _links():
                problems.append(f"link {name}: {res.stderr.strip()}")
    # Firewall: drop the nft tables that were not there (kube-proxy's, iptables-nft's), put back the rest.
    for table in _nft_tables():
        if table not in before["nft_tables"]:
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
    for key, save, restore in (
        ("iptables", "iptables-save", "iptables-restore"),
        ("ip6tables", "ip6tables-save", "ip6tables-restore"),
    ):
        old = before.get(key)
        if old is not None and _strip_counters(_iptables_save(save)) != _strip_counters(old):
            res = subprocess.run([restore], input=old, capture_output=True, text=True)
            if res.returncode != 0:
                problems.append(f"{restore}: {res.stderr.strip()}")
    # Sysctls.
    for name, value in before["sysctls"].items():
        p = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if p.read_text().strip() != value:
                try:
                    p.write_text(value + "\n")
                except OSError as e:
                    problems.append(f"sysctl {name}={value}: {e}")
    # Fixed paths that did not exist; what was added below those that did.
    for path, existed in before["paths"].items():
        if not existed and os.path.lexists(path):
            _unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path):
                problems.append(f"{path} could not be removed")
    for path, entries in (before.get("path_entries") or {}).items():
        if entries is not None and os.path.isdir(path) and not os.path.islink(path):
            problems += _remove_added_entries(path, entries)
    if problems:
        log("host state not fully restored: " + "; ".join(problems))
    return problems


def _make_cgroup_root() -> None:
    """The kubelet wants its cgroupRoot to exist in every (v1) hierarchy; cpuset needs cpus/mems."""
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        if not (ctrl / "cgroup.procs").exists() or ctrl.name == "unified":
            continue
        d = ctrl / CGROUP_ROOT
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((ctrl / f).read_text())


class RealNode:
    """One real node (kubelet + kube-proxy + containerd) joined to a ``ControlPlane``.

    The ControlPlane calls ``prepare_host()`` before its API server starts (lock, host-state record,
    the node address), ``start()`` once its controllers are up, and ``stop()`` then
    ``restore_host()`` when it stops. ``timings`` holds the seconds per step.
    """

    name = NODE_NAME
    ip = NODE_IP
    pod_cidr = POD_CIDR

    def __init__(self, cp: ControlPlane, log: Callable[[str], None] | None = None) -> None:
        self.cp = cp
        self.log = log or cp.log
        self.bin_dir: Path | None = None
        self.workdir: Path | None = None
        self.images: list[Any] = []
        self.timings: dict[str, float] = {}
        self.ports: dict[str, int] = {}
        self._lock_f: Any = None
        self._lock_borrowed = False
        self._before: dict[str, Any] | None = None
        self._procs: list[Any] = []
        self.kubelet_token = ""
        self.proxy_token = ""

    # ------------------------------------------------------------------ public helpers

    @staticmethod
    def pod_placement() -> dict[str, Any]:
        """The pod-spec fields that put a pod on the real node (nodeSelector + toleration)."""
        key, value = REAL_NODE_LABEL
        return {
            "nodeSelector": {key: value},
            "tolerations": [{**REAL_NODE_TAINT, "operator": "Equal"}],
        }

    @property
    def containerd_socket(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubelet_log(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "logs" / "kubelet.log"

    def crictl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """crictl against the node's containerd (``crictl ps -a``, ``crictl logs ID``...)."""
        assert self.bin_dir is not None
        return _sh(
            str(self.bin_dir / "crictl"),
            f"--runtime-endpoint=unix://{self.containerd_socket}",
            f"--image-endpoint=unix://{self.containerd_socket}",
            "--timeout=30s",
            *args,
            check=check,
            timeout=timeout,
        )

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return _sh(
            "ctr",
            "--address",
            str(self.containerd_socket),
            "--namespace",
            "k8s.io",
            *args,
            check=check,
            timeout=timeout,
        )

    def logs(self, name: str = "kubelet", lines: int = 60) -> str:
        for p in self._procs:
            if p.name == name:
                return str(p.tail(lines))
        return ""

    # ------------------------------------------------------------------ lifecycle

    def prepare_host(self, workdir: Path) -> None:
        """Before the API server starts: binaries, images, the lock, the host record, the node address."""
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._step("node binaries", self._find_binaries)
        self._step("images", self._build_images)
        self._step("node lock", self._acquire_lock)
        recover_abandoned_node(self.log)
        stale = STATE_DIR / "state.json"
        self._before = record_host_state(workdir)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        stale.write_text(json.dumps(self._before))
        if NODE_LINK not in _links():
            _sh("ip", "link", "add", NODE_LINK, "type", "bridge")
        _sh("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_LINK)
        _sh("ip", "link", "set", NODE_LINK, "up")

    def start(self) -> None:
        """After the control plane is up: containerd, images, kubelet, kube-proxy; waits for Ready."""
        self._check_disk()
        self._step("containerd", self._start_containerd)
        self._step("image import", self._import_images)
        self._step("kubelet Ready", self._start_kubelet)
        self._step("kube-proxy", self._start_kube_proxy)
        self.log(
            f"real node {NODE_NAME} ({NODE_IP}) ready: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        )

    MIN_FREE_DISK = 2 * 2**30  # bytes free where containerd keeps images and pods keep their files

    def _check_disk(self) -> None:
        from images import cache_root

        for path in (cache_root().parent, self.workdir):
            if path is None:
                continue
            existing = Path(path)
            while not existing.exists():
                existing = existing.parent
            st = os.statvfs(existing)
            free = st.f_bavail * st.f_frsize
            if free < self.MIN_FREE_DISK:
                raise RealNodeError(
                    f"only {free / 2**30:.1f} GiB free on the disk of {path}: the real node needs at least "
                    f"{self.MIN_FREE_DISK / 2**30:.0f} GiB (its images cannot be pulled again once removed)"
                )

    def stop(self) -> None:
        """Pods, kubelet, kube-proxy, containerd: gone (the control plane may still be up)."""
        t0 = time.monotonic()
        by_name = {p.name: p for p in self._procs}
        for name in ("kube-proxy", "kubelet"):
            if name in by_name:
                self._terminate(by_name[name])
        if "containerd" in by_name and by_name["containerd"].alive() and self.bin_dir is not None:
            # Stop and remove every pod sandbox through the CRI: runs the CNI DEL (IPs, veths, portmap).
            with contextlib.suppress(Exception):
                self.crictl("rmp", "--all", "--force", check=False, timeout=120)
            self._terminate(by_name["containerd"])
        if self.workdir is not None:
            _kill_pids(_procs_with(str(self.workdir)))  # shims and containers left
        for p in self._procs:
            for stream in (p.popen.stdout, p.popen.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()
        if t0 and self.timings:
            self.log(f"real node stopped in {time.monotonic() - t0:.1f}s")

    def restore_host(self) -> None:
        """After the control plane stopped: put the host back as it was, release the lock."""
        try:
            if self._before is not None:
                t0 = time.monotonic()
                restore_host_state(self._before, self.log)
                (STATE_DIR / "state.json").unlink(missing_ok=True)
                self.log(f"host state restored in {time.monotonic() - t0:.1f}s")
        finally:
            self._before = None
            if self._lock_f is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_f, fcntl.LOCK_UN)
                self._lock_f.close()
                self._lock_f = None

    # ------------------------------------------------------------------ steps

    def _step(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        result = fn()
        self.timings[name] = time.monotonic() - t0
        self.log(f"real node: {name}: {self.timings[name]:.2f}s")
        return result

    def _find_binaries(self) -> None:
        missing_tools = [
            t
            for t in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "nft", "iptables")
            if not shutil.which(t)
        ]
        env_dir = os.environ.get("MV_NODE_BIN_DIR")
        if env_dir and not missing_tools:
            self.bin_dir = Path(env_dir)
        else:
            self.log(f"getting the node's packages and binaries via {BUILD_NODE_SCRIPT.name} (builds once)")
            res = subprocess.run(
                ["bash", str(BUILD_NODE_SCRIPT)], stdout=subprocess.PIPE, text=True, timeout=3 * 3600
            )
            if res.returncode != 0:
                raise RealNodeError(f"{BUILD_NODE_SCRIPT.name} failed with exit code {res.returncode}")
            lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
            self.bin_dir = Path(env_dir) if env_dir else Path(lines[-1].strip())
        missing = [b for b in ("kubelet", "kube-proxy", "crictl") if not os.access(self.bin_dir / b, os.X_OK)]
        missing += [
            t for t in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nft") if not shutil.which(t)
        ]
        if missing:
            raise RealNodeError(f"the real node is missing {', '.join(missing)} (bin dir {self.bin_dir})")
        if not Path("/usr/lib/cni/bridge").exists():
            raise RealNodeError(
                "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
            )
        if os.geteuid() != 0:
            raise RealNodeError("the real node needs root (kubelet, containerd, network setup)")

    def _build_images(self) -> None:
        from images import ImageBuildError, build_images

        try:
            self.images = build_images(log=lambda m: self.log(f"images: {m}"))
        except ImageBuildError as e:
            raise RealNodeError(f"building the node's images failed: {e}") from e

    def _acquire_lock(self) -> None:
        if _borrowed_machine_lock():  # held by machine_lock() around this node: not ours to release
            self._lock_borrowed = True
            return
        self._lock_f = _take_machine_lock(self.log)

    def _spawn(self, name: str, args: list[str]) -> Any:
        assert self.workdir is not None
        log_path = self.workdir / "logs" / f"{name}.log"
        with log_path.open("wb") as log_f:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_f,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        proc = _Proc(name, popen, log_path)
        self._procs.append(proc)
        return proc

    def _terminate(self, p: Any, grace: float = 15) -> None:
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                p.popen.send_signal(signal.SIGTERM)
        try:
            p.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.log(f"{p.name} ignored SIGTERM for {grace:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                p.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=5)

    def _wait(self, what: str, check: Callable[[], bool], timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        proc = next(p for p in self._procs if p.name == name)
        while True:
            if not proc.alive():
                raise RealNodeError(
                    f"{name} exited with code {proc.popen.returncode} "
                    f"while waiting for {what}:\n{proc.tail()}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise RealNodeError(
                    f"timed out after {timeout:.0f}s waiting for {what}; {name} log:\n{proc.tail()}"
                )
            time.sleep(0.2)

    def _start_containerd(self) -> None:
        assert self.workdir is not None
        from images import PAUSE_IMAGE, cache_root

        d = self.workdir / "containerd"
        (d / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        root = cache_root().parent / "node-containerd"  # images and snapshots, kept between runs
        config = f"""version = 2
root = "{root}"
state = "{d / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root lacks CAP_SYS_RESOURCE here: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / "cni" / "net.d"}"
    max_conf_num = 1
"""
        (d / "config.toml").write_text(config)
        cni = {
            "cniVersion": "0.4.0",
            "name": "mv-real-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": CNI_BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(d / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (d / "cni" / "net.d" / "10-mv-real-node.conflist").write_text(json.dumps(cni, indent=2))
        self._spawn("containerd", ["containerd", f"--config={d / 'config.toml'}", "--log-level=info"])

        def up() -> bool:
            return (
                subprocess.run(
                    ["ctr", "--address", str(self.containerd_socket), "version"],
                    capture_output=True,
                    timeout=10,
                ).returncode
                == 0
            )

        self._wait("containerd's socket", up, timeout=60, name="containerd")

    def _present_images(self) -> dict[str, str]:
        """ref -> manifest digest of the images in containerd's k8s.io namespace."""
        rows = [ln.split() for ln in self.ctr("images", "ls").splitlines()[1:]]
        return {r[0]: r[2] for r in rows if len(r) >= 3}

    def _import_images(self) -> None:
        from images import BASE_IMAGE

        # containerd's content store persists across runs (a cache, like the image archives): import
        # only what changed. The base image is only a build input.
        wanted = [i for i in self.images if i.ref != BASE_IMAGE]
        present = self._present_images()
        for image in wanted:
            if present.get(image.ref) != image.digest:
                if image.ref in present:  # an older build: drop it and collect its layers now (bounded cache)
                    self.ctr("images", "rm", "--sync", image.ref, check=False, timeout=300)
                self.log(f"importing {image.ref} into containerd")
                self.ctr("images", "import", str(image.archive), timeout=600)
        present = self._present_images()
        wrong = [i.ref for i in wanted if present.get(i.ref) != i.digest]
        if wrong:
            raise RealNodeError(f"images not in containerd after import: {', '.join(wrong)}")
        # Pods of a run that died before its clean-up (same root): remove them before the kubelet starts.
        self.crictl("rmp", "--all", "--force", check=False, timeout=120)

    def _start_kubelet(self) -> None:
        assert self.workdir is not None and self.cp.ca_file is not None
        taken: set[int] = set(self.cp.ports.values())
        for name in ("kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics"):
            self.ports[name] = _free_port(taken)
        kubeconfig = self.workdir / "kubelet.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(self.cp._kubeconfig_doc(f"system:node:{NODE_NAME}", self.kubelet_token))
        )
        os.chmod(kubeconfig, 0o600)
        # No eviction for disk pressure ("0%" turns a signal off): under it the kubelet deletes every
        # image no container uses, and ours were imported, not pulled, so they cannot come back (a
        # nearly full disk once took the pause image, and every later pod failed to start).
        # _check_disk() refuses to start on a disk that full instead.
        evict = {
            "memory.available": "50Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        }
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet-healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "cgroupsPerQOS": True,
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "registerWithTaints": [REAL_NODE_TAINT],
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": False,
            "serializeImagePulls": False,
            "evictionHard": evict,
            "evictionPressureTransitionPeriod": "10s",
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 60,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "60s",
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "localStorageCapacityIsolation": True,
            "enableDebuggingHandlers": True,
            "shutdownGracePeriod": "0s",
            "logging": {"format": "text"},
        }
        cfg_path = self.workdir / "kubelet-config.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        _make_cgroup_root()
        key, value = REAL_NODE_LABEL
        assert self.bin_dir is not None
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={cfg_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={key}={value}",
                "--v=2",
            ],
        )

        def ready() -> bool:
            status, body = self.cp._get(f"/api/v1/nodes/{NODE_NAME}")
            if status != 200:
                return False
            conds = (json.loads(body).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        self._wait(f"node {NODE_NAME} Ready", ready, timeout=120, name="kubelet")

    def _start_kube_proxy(self) -> None:
        assert self.workdir is not None and self.bin_dir is not None
        kubeconfig = self.workdir / "kube-proxy.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(self.cp._kubeconfig_doc("system:kube-proxy", self.proxy_token)))
        os.chmod(kubeconfig, 0o600)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "nftables",
            "clusterCIDR": CLUSTER_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{self.ports['kube-proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['kube-proxy-metrics']}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # Leave the host's conntrack settings alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        cfg_path = self.workdir / "kube-proxy-config.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={cfg_path}", "--v=2"])

        def synced() -> bool:
            import urllib.request

            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ports['kube-proxy-healthz']}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)

        self._wait("kube-proxy /healthz", synced, timeout=60, name="kube-proxy")


def main() -> None:  # pragma: no cover - python e2e/node.py: a control plane with a real node, until Ctrl-C
    with ControlPlane(nodes=1, real_node=True) as cp:
        assert cp.real_node is not None
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"export PATH={cp.bin_dir}:{cp.real_node.bin_dir}:$PATH")
        print(
            f"crictl: {cp.real_node.bin_dir}/crictl "
            f"--runtime-endpoint unix://{cp.real_node.containerd_socket} ps -a"
        )
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.alive() for p in cp.real_node._procs):
                time.sleep(1)


if __name__ == "__main__":
    main()
