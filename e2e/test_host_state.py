"""The host after a real node: what the kubelet, kube-proxy, containerd and the CNI plugins changed on
this machine is put back, after a clean stop and after a session that was killed (SIGKILL) while
its pod ran (the next real node's start cleans up from the saved record).

These tests start real nodes of their own (``ControlPlane(real_node=True)``), and there is one real
node per machine: conftest runs them before every other test, so before the session's shared real
node (the ``real_node`` fixture) holds the machine lock. They hold that lock themselves
(``node.machine_lock``) from the first snapshot to the last, so no other test session's real node
changes the host in between.

The snapshot is this module's own, wider than what node.py records: sysctls, ``nft list ruleset``,
``iptables-save``/``ip6tables-save``, links, addresses, routes, network namespaces, cgroup
directories, the trees below the fixed paths, mounts and the node's processes.
"""

from __future__ import annotations

import contextlib
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

import pytest

from controlplane import ControlPlane
from images import OPERATOR_IMAGE, build_images, cache_root, no_image_build
from node import (
    CGROUP_ROOT,
    CNI_BRIDGE,
    FIXED_PATHS,
    NODE_LINK,
    NODE_NAME,
    STATE_DIR,
    SYSCTLS,
    RealNode,
    _unmount_under,
    machine_lock,
    recover_abandoned_node,
)

# A cold session builds the kubelet and the images first (minutes, see docs/harness.md).
pytestmark = [pytest.mark.timeout(1800), pytest.mark.own_real_node]

E2E_DIR = Path(__file__).resolve().parent
# More than node.py restores: a sysctl changed behind its back shows up here.
MORE_SYSCTLS = (
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.ip_local_port_range",
    "kernel.pid_max",
    "fs.inotify.max_user_instances",
    "fs.inotify.max_user_watches",
    "vm.max_map_count",
)
NODE_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "runc", "pause")
# A directory made for the "fixed path that existed" case (when the machine has none): the kubelet
# writes device-plugins/ and pod-resources/ below it; they must go, this file must stay.
KUBELET_DIR = Path("/var/lib/kubelet")
MARKER = "mv-host-state-test-marker"


# ------------------------------------------------------------------------------------------ snapshot
def _run(*cmd: str) -> str:
    if not shutil.which(cmd[0]):
        return f"({cmd[0]} missing)"
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    return res.stdout if res.returncode == 0 else f"({' '.join(cmd)} failed: {res.stderr.strip()})"


def _without_counters(text: str) -> list[str]:
    lines = []
    for ln in text.splitlines():
        if ln.startswith("#"):  # iptables-save's generated-at comments
            continue
        ln = re.sub(r"\[\d+:\d+\]", "[]", ln)  # iptables chain counters
        ln = re.sub(r"counter packets \d+ bytes \d+", "counter", ln)  # nft rule counters
        lines.append(ln.rstrip())
    return lines


def _tree(root: Path) -> list[str] | None:
    if not os.path.lexists(root):
        return None
    if root.is_symlink() or not root.is_dir():
        return ["(file)"]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _node_processes() -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (d / "cmdline").read_bytes().split(b"\0")
            name = os.path.basename(argv[0].decode(errors="replace"))
            if name in NODE_PROGRAMS:
                out.append(" ".join(a.decode(errors="replace") for a in argv if a))
    return sorted(out)


def _session_pids(workdir: str) -> dict[int, str]:
    """The killed session's programs (etcd, API server, kubelet, containerd...) still running, but
    the shims, which outlive the containerd that started them: pid -> command line."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if workdir in cmd and "containerd-shim" not in cmd:
                    out[int(d.name)] = cmd
    return out


def _session_processes(workdir: str) -> list[str]:
    return sorted(_session_pids(workdir).values())


def _program(cmd: str) -> str:
    return os.path.basename(cmd.split(" ", 1)[0])


def _kill_session(workdir: str) -> None:
    """What is left of the killed session's control plane (its API server, without etcd, takes its
    time to shut down): gone, as whoever killed the session would make sure."""
    for pid in _session_pids(workdir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _cgroups() -> list[str]:
    """Every cgroup two levels deep, and all of the real node's tree (cgroupRoot)."""
    root = Path("/sys/fs/cgroup")
    dirs = {str(p) for p in root.glob("*/*") if p.is_dir()} | {
        str(p) for p in root.glob("*/*/*") if p.is_dir() and p.parent.name in (CGROUP_ROOT, "kubepods")
    }
    for top in root.glob(f"*/{CGROUP_ROOT}"):
        dirs |= {str(p) for p in top.rglob("*") if p.is_dir()}
    return sorted(dirs)


def _mounts() -> list[str]:
    # Image builds of other test sessions mount below the image cache (debootstrap, buildah): not ours.
    skip = str(cache_root())
    points = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted(p for p in points if not p.startswith(skip))


def host_snapshot() -> dict[str, Any]:
    """Taken while no image build of another test session runs (buildah writes /etc/cni meanwhile)."""
    with no_image_build():
        return _snapshot()


def _snapshot() -> dict[str, Any]:
    sysctls = {}
    for name in (*SYSCTLS, *MORE_SYSCTLS):
        with contextlib.suppress(OSError):
            sysctls[name] = (Path("/proc/sys") / name.replace(".", "/")).read_text().strip()
    links = json.loads(_run("ip", "-j", "link", "show") or "[]")
    addrs = json.loads(_run("ip", "-j", "addr", "show") or "[]")
    return {
        "sysctls": sysctls,
        "nft ruleset": _without_counters(_run("nft", "list", "ruleset")),
        "iptables-save": _without_counters(_run("iptables-save")),
        "ip6tables-save": _without_counters(_run("ip6tables-save")),
        "links": sorted(link["ifname"] for link in links),
        "addresses": sorted(
            f"{a['ifname']} {i['local']}/{i['prefixlen']}" for a in addrs for i in a.get("addr_info", [])
        ),
        "routes": sorted(_run("ip", "route", "show", "table", "all").splitlines()),
        "netns": sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else [],
        "cgroups": _cgroups(),
        "fixed paths": {p: _tree(Path(p)) for p in FIXED_PATHS},
        "mounts": _mounts(),
        "node processes": _node_processes(),
        "state file": (STATE_DIR / "state.json").exists(),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """key -> (only before, only after) for lists; (before, after) otherwise."""
    out: dict[str, Any] = {}
    for key in before:
        b, a = before[key], after[key]
        if b == a:
            continue
        if isinstance(b, list) and isinstance(a, list):
            out[key] = {"gone": sorted(set(b) - set(a)), "new": sorted(set(a) - set(b))}
        elif isinstance(b, dict) and isinstance(a, dict):
            out[key] = {k: (b.get(k), a.get(k)) for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k)}
        else:
            out[key] = (b, a)
    return out


# ------------------------------------------------------------------------------------------ helpers
def _log(lines: list[str]) -> Callable[[str], None]:
    def log(msg: str) -> None:
        lines.append(msg)
        print(f"[host-state] {msg}", file=sys.stderr, flush=True)

    return log


def run_pod(cp: ControlPlane, name: str = "sleeper") -> dict[str, Any]:
    """A pod of the operator image running on the real node (sandbox, veth, netns, cgroups, shim)."""
    deadline = time.monotonic() + 60
    while cp.kubectl("get", "serviceaccount", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the default ServiceAccount was never created"
        time.sleep(0.2)
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                **RealNode.pod_placement(),
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": OPERATOR_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", "import time\nwhile True: time.sleep(60)"],
                    }
                ],
            },
        }
    )
    deadline = time.monotonic() + 120
    while True:
        res = cp.kubectl("get", "pod", name, "-n", "default", "-o", "json", check=False)
        pod = json.loads(res.stdout) if res.returncode == 0 else {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if statuses and all(s.get("ready") for s in statuses):
            assert pod["spec"]["nodeName"] == NODE_NAME
            return pod
        assert time.monotonic() < deadline, f"pod {name} never ran: {json.dumps(pod.get('status'))}"
        time.sleep(0.25)


def assert_node_was_there(before: dict[str, Any], during: dict[str, Any]) -> None:
    """The comparison is not vacuous: the node changed what it is supposed to put back."""
    diff = differences(before, during)
    assert {NODE_LINK, CNI_BRIDGE} <= set(diff["links"]["new"]), diff.get("links")
    assert any(ln.startswith("veth") for ln in diff["links"]["new"]), diff["links"]
    assert diff["netns"]["new"], "no pod network namespace"
    assert any(f"/{CGROUP_ROOT}/" in c for c in diff["cgroups"]["new"]), "no pod cgroup"
    assert any("containerd-shim-runc-v2" in p for p in diff["node processes"]["new"]), "no shim"
    assert diff["state file"] == (False, True)


@contextlib.contextmanager
def existing_kubelet_dir() -> Iterator[None]:
    """/var/lib/kubelet existing before the node (with a file of ours) when the machine has none;
    removed again after. Inside machine_lock: another session's node stopping would remove it."""
    made = not os.path.lexists(KUBELET_DIR)
    if made:
        KUBELET_DIR.mkdir(parents=True)
        (KUBELET_DIR / MARKER).write_text("left here before the real node started\n")
    try:
        yield
    finally:
        if made:
            shutil.rmtree(KUBELET_DIR, ignore_errors=True)


# ------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module", autouse=True)
def images_built() -> None:
    """Built (or found in the cache) before the machine lock is taken: a build can take minutes."""
    build_images()


def test_a_stopped_real_node_leaves_the_host_as_it_found_it() -> None:
    lines: list[str] = []
    log = _log(lines)
    with machine_lock(log):
        # A session killed before this one (a CI job cut short on the same host) left a node: its
        # cleanup belongs to the next node's start, not to the node this test watches. Before the
        # kubelet directory is made: that node's record says the directory was not there, so its
        # cleanup removes it (CI found it so: ``before`` had no directory to compare with).
        recover_abandoned_node(log)
        with existing_kubelet_dir():
            before = host_snapshot()
            with ControlPlane(nodes=0, real_node=True, log=log) as cp:
                run_pod(cp)
                during = host_snapshot()
            after = host_snapshot()
    assert_node_was_there(before, during)
    # What the node wrote below a fixed path that already existed is gone; what was there stays.
    kubelet_during = during["fixed paths"][str(KUBELET_DIR)]
    assert kubelet_during is not None and set(kubelet_during) - set(before["fixed paths"][str(KUBELET_DIR)])
    diff = differences(before, after)
    assert diff == {}, "the host is not as it was before the real node:\n" + json.dumps(diff, indent=1)


CHILD = """
import json, sys, time
sys.path.insert(0, {e2e!r})
from controlplane import ControlPlane
import test_host_state
log = lambda m: print("[killed session]", m, file=sys.stderr, flush=True)
cp = ControlPlane(nodes=0, real_node=True, log=log)
cp.start()
test_host_state.run_pod(cp)
print(json.dumps({{"workdir": str(cp.workdir)}}), flush=True)
time.sleep(3600)
"""


def test_a_killed_session_is_cleaned_up_by_the_next_real_node(tmp_path: Path) -> None:
    lines: list[str] = []
    log = _log(lines)
    child_log = tmp_path / "killed-session.log"
    with machine_lock(log) as lock_fd:
        recover_abandoned_node(log)
        before = host_snapshot()
        # A session with a real node and a running pod, in a child process that shares our lock.
        with child_log.open("wb") as err:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD.format(e2e=str(E2E_DIR))],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                pass_fds=(lock_fd,),
            )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()  # blocks until the pod runs or the child exits
            assert line.startswith("{"), f"the session did not start:\n{child_log.read_text()[-4000:]}"
            workdir = json.loads(line)["workdir"]
            dirty = host_snapshot()
            child.send_signal(signal.SIGKILL)  # no stop(), no restore, no atexit
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        try:
            # Its children get SIGTERM from the kernel (PR_SET_PDEATHSIG): the kubelet, kube-proxy and
            # containerd exit; the shims and the pod's processes do not (nor, for a while, the API
            # server that lost its etcd: not host state; killed below).
            deadline = time.monotonic() + 60
            while alive := [p for p in _session_processes(workdir) if _program(p) in NODE_PROGRAMS]:
                assert time.monotonic() < deadline, f"the killed session's node did not exit: {alive}"
                time.sleep(0.5)
            left = host_snapshot()
            assert_node_was_there(before, dirty)
            leftovers = differences(before, left)
            assert leftovers["state file"] == (False, True), leftovers
            assert any("containerd-shim" in p for p in leftovers["node processes"]["new"]), leftovers
            assert {NODE_LINK, CNI_BRIDGE} <= set(leftovers["links"]["new"]), leftovers

            # The next real node restores from the killed session's record before it records its own.
            with ControlPlane(nodes=0, real_node=True, log=log):
                pass
            after = host_snapshot()
        finally:
            _kill_session(workdir)
            _unmount_under(workdir)  # the recovery did, unless it failed: never delete through a mount
            shutil.rmtree(workdir, ignore_errors=True)
    assert any("cleaning up after a real node that was not stopped" in ln for ln in lines), lines[-20:]
    diff = differences(before, after)
    assert diff == {}, "the host is not as it was before the killed session:\n" + json.dumps(diff, indent=1)
    assert not [p for p in _node_processes() if workdir in p]
