"""Peer comparison: Argo Rollouts (at its defaults and at tuned settings) and Flagger, each on the same
control plane as the operator, in the same run.

Argo Rollouts' controller (bench/peer_argo.py; built from the Go module proxy by
``e2e/build-argo-rollouts.sh``, cached, never committed) runs as a host process next to the operator,
under its own ServiceAccount, in namespaced mode (``--namespaced``) on a namespace of its own
(``bench-argo``: each of its reconciles lists every ReplicaSet of the Rollout's namespace, and the bench
namespace holds the operator's), with leader election ON, as it ships (its Lease in that namespace).
Its CRDs are read from the Go module cache (``<module>/manifests/crds``) at run time.

N Rollouts (canary, Istio ``trafficRouting`` on a VirtualService, steps ``setWeight: 20`` then an
indefinite ``pause``, 1 replica, pods on kwok nodes) sit next to N ModelEndpoints (istio router,
2 variants). Both sides are "armed" at 80/20 before each block: a Rollout paused at its pause step
with the VirtualService at stable 80 / canary 20, an endpoint Ready at stable 80 / canary 20.

Each setting of ``--peer-argo-settings`` (``defaults``, ``tuned``: peer_argo.SETTINGS) gets its own
blocks, the controller restarted with its flags in between (its Lease deleted once the old process is
gone, so the new one leads at once). A block starts only once both controllers are quiet
(peer_metrics.wait_quiet): no ReplicaSet waiting for Argo's delayed scale-down (30 s after a promote
or an abort), nothing queued or running in any of Argo's work queues (``workqueue_depth``,
``workqueue_longest_running_processor_seconds``), nothing queued or running in ours
(``modelversioning_workqueue_keys``), all of it for 1 s; the wait is recorded per block. Then, in
alternating order (reversed every other block), each sample on its own object:

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
controller's first write of that VirtualService. Per block, Argo's own metrics (work-queue adds,
retries, mean wait in its Rollouts queue, mean reconcile, API requests by verb and kind) and its
client-side throttling (client-go's log lines, ``--kloglevel=3``) are recorded and printed: why its
latency is what it is. Re-arming (a new pod template revision after a promote, ``kubectl argo rollouts
retry``'s ``{"status":{"abort":false}}`` after an abort, the weights back at 80/20 for ours) happens
between blocks, never during one.

RSS (VmRSS of both processes) is sampled per setting with everything armed and quiet; idle traffic is
counted per user from the audit log over an idle window after the last setting (writes, Lease writes
apart).

Then Flagger (``--peer-flagger N``, bench/peer_flagger.py, bench/peer_failcheck.py): its rollback on a
failed check against our automatic rollback, on a Prometheus of the run, N objects each side (after
the idle window: the analyses of both write status every interval). Nothing is asserted.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import peer_argo as A
import peer_report as R
import yaml
from cluster import NS, BenchCluster
from kubernetes import client
from peer_metrics import ours_block, ours_idle, scrape, wait_quiet
from watchers import Obj, Watcher

from helpers import GROUP, VERSION

OURS_CHANGED = {"stable": 50, "canary": 50}


class Measured:
    """The samples of one Argo setting."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {k: [] for k in R.KINDS}
        self.patch_ms: dict[str, list[float]] = {k: [] for k in R.KINDS}
        self.timeouts: dict[str, int] = dict.fromkeys(R.KINDS, 0)
        self.to_weights: dict[str, dict[str, int]] = {k: {} for k in R.KINDS}
        self.trials: list[tuple[str, str, str, str, float]] = []
        self.blocks: list[dict[str, Any]] = []


class Peer:
    def __init__(
        self, bc: BenchCluster, n: int, log: Callable[[str], None], settings: dict[str, tuple[str, ...]]
    ) -> None:
        self.bc, self.n, self.log, self.settings = bc, n, log, settings
        self.names = [A.ro_name(i) for i in range(n)]
        self.rev: dict[str, int] = dict.fromkeys(self.names, 0)
        self.argo: A.ArgoProcess | None = None
        self.binary: Path | None = None
        self.kubeconfig: Path | None = None
        self.watch_ro: Watcher | None = None
        self.watch_vs: Watcher | None = None  # Argo's VirtualServices (bc.watch_vs: ours)
        self.m = Measured()
        self._scale_down_next = 0.0  # when the delayed scale-downs are worth listing again
        assert bc.api is not None
        self.co = client.CustomObjectsApi(bc.api)

    # ------------------------------------------------------------------ setup
    def setup(self) -> dict[str, Any]:
        bc, cp = self.bc, self.bc.cp
        assert cp is not None and cp.workdir is not None
        t0 = time.monotonic()
        self.binary = A.argo_binary()
        out: dict[str, Any] = {"binary_seconds": round(time.monotonic() - t0, 1)}
        files = A.argo_crd_files()
        for f in files:
            cp.kubectl("create", "-f", str(f))
        crds = [f"crd/{yaml.safe_load(f.read_text())['metadata']['name']}" for f in files]
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        out["crds"] = [f.name for f in files]
        client.CoreV1Api(bc.api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=A.ARGO_NS))
        )
        self.kubeconfig = A.identity(bc, A.ARGO_SA, A.ARGO_NS)
        out["controller_start_seconds"] = self.use(next(iter(self.settings)))
        self.watch_ro = Watcher(
            bc._watch_client(), A.ARGO_GROUP, A.ARGO_VERSION_API, A.ROLLOUTS, A.ARGO_NS, keep_history=False
        ).start()
        self.watch_vs = Watcher(
            bc._watch_client(), "networking.istio.io", "v1", "virtualservices", A.ARGO_NS
        ).start()
        # Our side at the same count: N endpoints (and their 2N versions); a larger main fleet is kept.
        fleet = bc.populate(max(len(bc.mvs), 2 * self.n), max(len(bc.desired), self.n), 1800)
        if not fleet["converged"]:
            raise RuntimeError(f"our fleet did not converge: {fleet}")
        out["ours_fleet"] = {k: fleet[k] for k in ("versions", "endpoints", "converge_seconds")}
        t1 = time.monotonic()
        with ThreadPoolExecutor(bc.workers) as pool:
            list(pool.map(lambda i: A.create_objects(self.bc, i), range(self.n)))
        if not self._wait(lambda: all(A.ro_promoted(self._ro(n)) for n in self.names), 600):
            raise RuntimeError(f"Rollouts not healthy: {self._pending(A.ro_promoted)}\n{self._logs()}")
        out["rollouts_created_healthy_seconds"] = round(time.monotonic() - t1, 1)
        self.log(f"peer: {self.n} Rollouts healthy in {out['rollouts_created_healthy_seconds']}s; arming")
        t2 = time.monotonic()
        self.arm(self.names, [], [])
        out["first_arm_seconds"] = round(time.monotonic() - t2, 1)
        return out

    def use(self, setting: str) -> float:
        """Argo Rollouts running with `setting`'s flags (restarted if another setting ran); its start."""
        if self.argo is not None and self.argo.setting == setting:
            return 0.0
        cp = self.bc.cp
        assert cp is not None and cp.workdir is not None and self.binary and self.kubeconfig
        if self.argo is not None:
            # it does not release its Lease (ReleaseOnCancel: false): the next one would wait 15 s for it
            self.argo.stop()
            cp.kubectl("delete", "lease", A.LEASE, "-n", A.ARGO_NS, "--ignore-not-found")
        self.argo = A.ArgoProcess(
            self.binary, self.kubeconfig, cp.workdir, setting, list(self.settings[setting])
        )
        return round(self.argo.start(), 2)

    def identity(self, sa: str) -> Path:
        return A.identity(self.bc, sa)

    def stop(self) -> None:
        for w in (self.watch_ro, self.watch_vs):
            if w is not None:
                w.stop()
        if self.argo is not None:
            self.argo.stop()

    # ------------------------------------------------------------------ state
    def _ro(self, name: str) -> Obj | None:
        assert self.watch_ro is not None
        return self.watch_ro.get(name)

    def _vs(self, name: str) -> Obj | None:
        assert self.watch_vs is not None
        return self.watch_vs.get(name)

    def _logs(self) -> str:
        return self.argo.logs() if self.argo else ""

    def armed(self, name: str) -> bool:
        return A.ro_paused_at_step(self._ro(name)) and A.argo_vs_weights(self._vs(name)) == A.ARMED

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
            return [n for n in after_promote if not A.ro_promoted(self._ro(n))]

        if after_promote and not self._wait(lambda: not unpromoted(), timeout):
            raise RuntimeError(f"promoted Rollouts did not finish: {unpromoted()[:5]}")

        def bump(name: str) -> None:
            self.rev[name] += 1
            body = {"spec": {"template": {"metadata": {"annotations": {"bench/rev": str(self.rev[name])}}}}}
            self.co.patch_namespaced_custom_object(
                A.ARGO_GROUP, A.ARGO_VERSION_API, A.ARGO_NS, A.ROLLOUTS, name, body
            )

        def retry(name: str) -> None:  # kubectl argo rollouts retry
            self.co.patch_namespaced_custom_object_status(
                A.ARGO_GROUP, A.ARGO_VERSION_API, A.ARGO_NS, A.ROLLOUTS, name, {"status": {"abort": False}}
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(bump, after_promote))
            list(pool.map(retry, after_abort))
            list(pool.map(lambda e: self.bc.set_weights(e, A.ARMED), ours))
        names = [*after_promote, *after_abort]
        if not self._wait(lambda: all(self.armed(n) for n in names), timeout):
            bad = [(n, (self._ro(n) or {}).get("status"), A.argo_vs_weights(self._vs(n))) for n in names]
            raise RuntimeError(
                f"Rollouts not armed in {timeout}s: {[b for b in bad if not self.armed(b[0])][:3]}"
            )
        conv = self.bc.wait_converged(time.monotonic(), timeout, endpoints=ours, versions=False)
        if not conv.ok:
            raise RuntimeError(f"endpoints not back at 80/20: {conv.pending}")
        self.bc.wait_quiet(2.0, 120)

    # ------------------------------------------------------------------ quiet
    def _no_scale_down_pending(self) -> bool:
        now = time.time()
        if now < self._scale_down_next:
            return False
        rs = client.AppsV1Api(self.bc.api).list_namespaced_replica_set(A.ARGO_NS).items
        pending = A.scale_down_pending(rs, now)
        if pending:  # nothing changes before the nearest deadline: list again then (at most 1 s later)
            self._scale_down_next = now + 1.0
        return not pending

    def quiet_checks(self) -> dict[str, Callable[[], bool]]:
        assert self.argo is not None
        argo, ours = self.argo, f"http://127.0.0.1:{self.bc.metrics_port}/metrics"
        return {
            "argo_scale_down": self._no_scale_down_pending,
            "argo_queues": lambda: A.idle(argo.scrape()),
            "ours_queue": lambda: ours_idle(scrape(ours)),
        }

    def quiet(self, timeout: float = 600) -> dict[str, Any]:
        self._scale_down_next = 0.0
        return wait_quiet(self.quiet_checks(), timeout)

    # ------------------------------------------------------------------ one sample
    def _trial(self, kind: str, name: str, timeout: float = 60) -> None:
        m = self.m
        watch = self.watch_vs if kind in ("promote", "abort") else self.bc.watch_vs
        assert watch is not None
        if kind in ("promote", "abort"):
            before = A.argo_vs_weights(self._vs(name))
            body = {"status": {"pauseConditions": None}} if kind == "promote" else {"status": {"abort": True}}
            mark, wall, t_send = watch.mark(), time.time(), time.monotonic()
            self.co.patch_namespaced_custom_object_status(
                A.ARGO_GROUP, A.ARGO_VERSION_API, A.ARGO_NS, A.ROLLOUTS, name, body
            )
            res_kind = "rollouts/status"

            def pred(o: Obj) -> bool:
                w = A.argo_vs_weights(o)
                return w is not None and w != before

        else:
            patch, target = self._our_patch(kind, name)
            mark, wall, t_send = watch.mark(), time.time(), time.monotonic()
            self.co.patch_namespaced_custom_object(GROUP, VERSION, NS, "modelendpoints", name, patch)
            self.bc.desired[name] = dict(target)
            res_kind = "modelendpoints"

            def pred(o: Obj) -> bool:
                from cluster import safe_vs_weights

                return safe_vs_weights(o) == target

        t = time.monotonic()
        m.patch_ms[kind].append((t - t_send) * 1000)
        m.trials.append((kind, res_kind, name, name, wall))
        ev = watch.wait_event(name, pred, mark, timeout)
        if ev is None:
            m.timeouts[kind] += 1
            return
        m.samples[kind].append((ev.at - t) * 1000)
        w = A.argo_vs_weights(ev.obj) if kind in ("promote", "abort") else ev.obj and _vs_weights(ev.obj)
        key = json.dumps(w, sort_keys=True)
        m.to_weights[kind][key] = m.to_weights[kind].get(key, 0) + 1

    def _our_patch(self, kind: str, name: str) -> tuple[dict[str, Any], dict[str, int]]:
        if kind == "weight":
            variants = [
                {"name": "stable", "version": "1.0.0", "weight": OURS_CHANGED["stable"]},
                {"name": "canary", "version": "1.1.0", "weight": OURS_CHANGED["canary"]},
            ]
            return {"spec": {"variants": variants}}, dict(OURS_CHANGED)
        from modelversioning.api.wire import REASON_ANNOTATION, REQUESTED_BY_ANNOTATION
        from modelversioning.cli.models import actions

        ep = self.co.get_namespaced_custom_object(GROUP, VERSION, NS, "modelendpoints", name)
        plan = actions.plan_rollback(ep)
        meta = {
            "resourceVersion": ep["metadata"]["resourceVersion"],
            "annotations": {
                REQUESTED_BY_ANNOTATION: "bench",
                REASON_ANNOTATION: f"rollback to {plan.target} ({plan.version}) with kubectl models",
            },
        }
        return {**plan.patch, "metadata": meta}, dict(plan.after)

    # ------------------------------------------------------------------ one block
    def block(self, setting: str, b: int, kinds: dict[str, list[str]], per_block: int) -> dict[str, Any]:
        """Quiet first, then one sample of each kind in turn (the order flips every block): neither side
        gets a quieter stretch than the other. Argo's and our metrics around it."""
        assert self.argo is not None
        quiet = self.quiet()
        argo0, ours0 = self.argo.scrape(), scrape(f"http://127.0.0.1:{self.bc.metrics_port}/metrics")
        log0, t0 = self.argo.log_offset(), time.monotonic()
        order = list(kinds.items()) if b % 2 == 0 else list(kinds.items())[::-1]
        for j in range(per_block):
            for kind, names in order:
                self._trial(kind, names[j])
        seconds = time.monotonic() - t0
        argo1, ours1 = self.argo.scrape(), scrape(f"http://127.0.0.1:{self.bc.metrics_port}/metrics")
        blk = {
            "quiet": quiet,
            "seconds": round(seconds, 2),
            "trials": per_block * len(kinds),
            "argo_samples": per_block * 2,  # promote and abort; the other half are ours
            "argo": A.block_metrics(argo0, argo1),
            "throttled": self.argo.throttled(log0, self.argo.log_offset()),
            "ours": ours_block(ours0, ours1),
        }
        self.m.blocks.append(blk)
        self.log(R.block_line(setting, b, blk))
        return blk

    # ------------------------------------------------------------------ the run
    def run_setting(self, setting: str, blocks: int, per_block: int) -> dict[str, Any]:
        """`blocks` blocks with Argo Rollouts at `setting`; everything armed again at the end."""
        bc = self.bc
        self.m = Measured()
        start = self.use(setting)
        eps = bc.eps[: self.n]
        off0 = bc.audit_offset()
        ro_at = ep_at = 0
        prev: tuple[list[str], list[str], list[str]] = ([], [], [])
        for b in range(blocks):
            if b:
                self.arm(*prev)
            take = lambda xs, at, k: [xs[(at + k * per_block + j) % len(xs)] for j in range(per_block)]  # noqa: E731
            kinds = {
                "promote": take(self.names, ro_at, 0),
                "weight": take(eps, ep_at, 0),
                "abort": take(self.names, ro_at, 1),
                "rollback": take(eps, ep_at, 1),
            }
            ro_at, ep_at = (ro_at + 2 * per_block) % self.n, (ep_at + 2 * per_block) % len(eps)
            self.block(setting, b, kinds, per_block)
            prev = (kinds["promote"], kinds["abort"], [*kinds["weight"], *kinds["rollback"]])
        bc.wait_quiet(2.0, 60)
        assert bc.cp is not None and bc.cp.audit_log is not None and self.argo is not None
        res: dict[str, Any] = {
            "flags": self.argo.flags,
            "controller_start_seconds": start,
            "reaction": R.reactions(bc.cp.audit_log, off0, bc.audit_offset(), self.m.trials),
            "blocks": self.m.blocks,
        }
        for k in R.KINDS:
            p = self.m.patch_ms[k]
            res[k] = {
                **R.stats(self.m.samples[k]),
                "timeouts": self.m.timeouts[k],
                "patch_p50_ms": round(sorted(p)[len(p) // 2], 2) if p else None,
                "vs_weights_after": dict(self.m.to_weights[k]),
            }
        res["ratios"] = R.ratios(res)
        self.arm(*prev)
        res["rss_mib"] = self.rss()
        self.log(R.summary_line(setting, res))
        return res

    def rss(self) -> dict[str, float]:
        assert self.argo is not None and self.bc.op is not None and self.bc.op.pid is not None
        return R.rss(self.argo.pid, self.bc.op.pid)

    def idle(self, seconds: float) -> dict[str, Any]:
        assert self.argo is not None and self.bc.op is not None and self.bc.op.pid is not None
        return R.idle(self.bc, self.argo.pid, self.quiet, seconds)


def _vs_weights(o: Obj) -> dict[str, int] | None:
    from cluster import safe_vs_weights

    return safe_vs_weights(o)


# ---------------------------------------------------------------------------------------------- entry
def add_args(g: Any) -> None:
    """The peer section's options (bench/run.py's scale overrides group)."""
    g.add_argument("--peer-rollouts", type=int, help="peer: Argo Rollouts, and as many ModelEndpoints")
    g.add_argument("--peer-blocks", type=int, help="peer: measurement blocks per Argo setting")
    g.add_argument("--peer-per-block", type=int, help="peer: samples of each kind per block (<= rollouts/2)")
    g.add_argument("--peer-idle-seconds", type=float, help="peer: idle window for counting writes")
    g.add_argument(
        "--peer-argo-settings",
        help=f"peer: Argo Rollouts settings measured in turn, comma-separated ({', '.join(A.SETTINGS)})",
    )
    g.add_argument(
        "--peer-argo-tuned-flags",
        help=f"peer: the flags of the 'tuned' setting, space-separated (default: {' '.join(A.TUNED_FLAGS)})",
    )
    g.add_argument(
        "--peer-flagger", type=int, help="peer: Flagger Canaries (and as many of our endpoints); 0: none"
    )
    g.add_argument("--peer-flagger-rounds", type=int, help="peer: samples of each Canary and endpoint")


def settings(names: str, tuned_flags: str | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name in (x.strip() for x in names.split(",")):
        if name not in A.SETTINGS:
            raise SystemExit(f"--peer-argo-settings: unknown setting {name!r} ({', '.join(A.SETTINGS)})")
        out[name] = tuple(tuned_flags.split()) if name == "tuned" and tuned_flags else A.SETTINGS[name]
    return out


@contextlib.contextmanager
def prometheus(enabled: bool) -> Iterator[Any]:
    """The run's Prometheus (e2e/prometheus.py, on loopback, scraping every second) when Flagger is
    compared: the operator must know its URL when it starts (operator_settings)."""
    if not enabled:
        yield None
        return
    from prometheus import Prometheus

    with Prometheus(log=None) as prom:
        yield prom


def operator_settings(prom: Any) -> dict[str, Any]:
    return {"analysis": {"prometheusUrl": prom.url, "timeoutSeconds": 3}} if prom is not None else {}


def run(bc: BenchCluster, p: dict[str, Any], log: Callable[[str], None], prom: Any = None) -> dict[str, Any]:
    """The section: every Argo setting in turn (blocks each), the idle window, then Flagger."""
    n = p["peer_rollouts"]
    per_block = max(1, min(p["peer_per_block"], n // 2))
    peer = Peer(bc, n, log, settings(p["peer_argo_settings"], p.get("peer_argo_tuned_flags")))
    out: dict[str, Any] = {"rollouts": n, "blocks": p["peer_blocks"], "per_block": per_block}
    try:
        out["setup"] = peer.setup()
        out["settings"] = {s: peer.run_setting(s, p["peer_blocks"], per_block) for s in peer.settings}
        out.update({k: v for k, v in next(iter(out["settings"].values())).items() if k != "blocks"})
        out["idle"] = peer.idle(p["peer_idle_seconds"])
        out["objects"] = {"rollouts": n, "ours_endpoints": len(bc.desired), "ours_versions": len(bc.mvs)}
        out["argo_log_tail"] = peer.argo.logs(15).splitlines() if peer.argo else []
        if p["peer_flagger"] and prom is not None:  # last: its analyses write status every interval
            out["flagger"] = flagger(bc, peer, prom, p, log)
    finally:
        peer.stop()
    return out


def flagger(
    bc: BenchCluster, peer: Peer, prom: Any, p: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    """Flagger's rollback on a failed check and ours (bench/peer_failcheck.py); its error, if any, in
    its own key: Argo's figures stand without it."""
    from peer_failcheck import FailedCheck

    fc = FailedCheck(bc, prom, peer.identity, p["peer_flagger"], log)
    fc.more_quiet = peer.quiet_checks()
    try:
        res = fc.run(p["peer_flagger_rounds"])
        log(
            f"peer/flagger: rollback on a failed check, visible in Prometheus -> route on the stable "
            f"version, p50 Flagger {res['flagger']['p50_ms']} ms (interval {res['interval']['flagger']}), "
            f"ours {res['ours']['p50_ms']} ms (interval {res['interval']['ours']})"
        )
        return res
    except Exception as e:  # noqa: BLE001 - reported in the section, Argo's figures kept
        import traceback

        log(f"peer/flagger FAILED: {e!r}\n{traceback.format_exc()}")
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        fc.stop()
