"""The rollback on a failed check, Flagger's and ours, measured side by side (see bench/peer_flagger.py
for the set-up and what is measured)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster import NS, BenchCluster, percentile
from kubernetes import client
from peer_flagger import (
    ARMED,
    FLAGGER_API,
    FLAGGER_GROUP,
    FLAGGER_USER,
    GW_GROUP,
    GW_VERSION,
    INTERVAL_FLAGGER,
    INTERVAL_OURS,
    START,
    BadMetric,
    FlaggerProcess,
    au_name,
    create_ours,
    fl_name,
    flagger_binary,
    flagger_objects,
    flagger_route_weights,
    load_crds,
    metric_template,
    our_route_weights,
    parallel,
    poll_visible,
    query,
    set_ours,
)
from peer_metrics import ours_idle, scrape, wait_quiet
from watchers import Obj, Watcher

from prometheus import Prometheus

SIDES = ("flagger", "ours")
TARGET = {"stable": 0, "canary": 100}  # our declared end state: the rollout climbs to it through 20 %


class FailedCheck:
    def __init__(
        self,
        bc: BenchCluster,
        prom: Prometheus,
        identity: Callable[[str], Path],
        count: int,
        log: Callable[[str], None],
    ) -> None:
        self.bc, self.prom, self.identity, self.count, self.log = bc, prom, identity, count, log
        self.bad = BadMetric()
        self.fl = [fl_name(i) for i in range(count)]
        self.au = [au_name(i) for i in range(count)]
        self.rev: dict[str, int] = dict.fromkeys(self.fl, 0)
        self.flagger: FlaggerProcess | None = None
        self.routes: Watcher | None = None
        self.canaries: Watcher | None = None
        assert bc.api is not None
        self.co = client.CustomObjectsApi(bc.api)
        self.apps = client.AppsV1Api(bc.api)
        self.samples: dict[str, list[float]] = {s: [] for s in SIDES}
        self.visible_lag: dict[str, list[float]] = {s: [] for s in SIDES}
        self.timeouts: dict[str, int] = dict.fromkeys(SIDES, 0)
        self.more_quiet: dict[str, Callable[[], bool]] = {}  # the other controllers' (Argo's) quiet checks

    # ------------------------------------------------------------------ setup
    def setup(self) -> dict[str, Any]:
        bc, cp = self.bc, self.bc.cp
        assert cp is not None and cp.workdir is not None
        t0 = time.monotonic()
        binary = flagger_binary()
        out: dict[str, Any] = {"binary_seconds": round(time.monotonic() - t0, 1), "crds": load_crds(cp)}
        for n in [*self.fl, *self.au]:
            self.bad.set(n, False)
        self.prom.add_target("bench-peer", self.bad.target)
        self.prom.wait_target_up("bench-peer", timeout=60)
        self.co.create_namespaced_custom_object(
            FLAGGER_GROUP, FLAGGER_API, NS, "metrictemplates", metric_template(self.prom.url)
        )
        self.flagger = FlaggerProcess(binary, self.identity("flagger"), cp.workdir, self.prom.url)
        out["controller_flags"] = self.flagger.flags
        out["controller_start_seconds"] = round(self.flagger.start(), 2)
        self.routes = Watcher(bc._watch_client(), GW_GROUP, GW_VERSION, "httproutes", NS).start()
        self.canaries = Watcher(
            bc._watch_client(), FLAGGER_GROUP, FLAGGER_API, "canaries", NS, keep_history=False
        ).start()
        t1 = time.monotonic()
        gate = f"http://{self.bad.target}/gate"

        def create(i: int) -> None:
            deploy, canary = flagger_objects(i, self.prom.url, gate)
            self.apps.create_namespaced_deployment(NS, deploy)
            self.co.create_namespaced_custom_object(FLAGGER_GROUP, FLAGGER_API, NS, "canaries", canary)
            create_ours(bc, i)

        parallel(create, list(range(self.count)))
        self._wait(lambda: all(self._phase(n) == "Initialized" for n in self.fl), 600, "Canaries Initialized")
        self._wait(
            lambda: all(self._ours_at(n, START) for n in self.au), 600, "our endpoints at the start split"
        )
        out["initialized_seconds"] = round(time.monotonic() - t1, 1)
        t2 = time.monotonic()
        self.arm(self.fl, self.au)
        out["first_arm_seconds"] = round(time.monotonic() - t2, 1)
        return out

    def stop(self) -> None:
        for w in (self.routes, self.canaries):
            if w is not None:
                w.stop()
        if self.flagger is not None:
            self.flagger.stop()
        self.bad.stop()

    # ------------------------------------------------------------------ state
    def _phase(self, name: str) -> str | None:
        assert self.canaries is not None
        c = self.canaries.get(name)
        return ((c or {}).get("status") or {}).get("phase")

    def _route(self, name: str) -> Obj | None:
        assert self.routes is not None
        return self.routes.get(name)

    def _ours_at(self, name: str, weights: dict[str, int]) -> bool:
        return our_route_weights(self._route(name)) == weights

    def flagger_armed(self, name: str) -> bool:
        return self._phase(name) == "WaitingPromotion" and flagger_route_weights(self._route(name)) == ARMED

    def ours_armed(self, name: str) -> bool:
        assert self.bc.watch_ep is not None
        ep = self.bc.watch_ep.get(name) or {}
        ro = (ep.get("status") or {}).get("rollout") or {}
        # at the pause step (index 1), waiting for a promote: phase Progressing, the analysis running
        return (
            ro.get("phase") in ("Progressing", "Paused")
            and ro.get("step") == 1
            and self._ours_at(name, ARMED)
        )

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                tail = self.flagger.logs(10) if self.flagger else ""
                raise RuntimeError(f"{what}: not within {timeout:.0f}s\n{tail}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ arming
    def arm(self, fl: list[str], au: list[str], timeout: float = 600) -> dict[str, Any]:
        """The value back to 0 (and Prometheus answering it), then Flagger's Canaries a new revision and
        our endpoints a new rollout, until every one is held at 20 % with its analysis running; then
        until our work queue is idle."""
        t0 = time.monotonic()
        for n in [*fl, *au]:
            self.bad.set(n, False)
        everyone = 'max(bench_peer_bad{obj=~"fl-.*|au-.*"})'
        poll_visible(lambda: self.prom.query_value(everyone), 0.0)

        def bump(name: str) -> None:
            if self.flagger_armed(name):
                return
            self.rev[name] += 1
            body = {"spec": {"template": {"metadata": {"annotations": {"bench/rev": str(self.rev[name])}}}}}
            self.apps.patch_namespaced_deployment(name, NS, body)

        def restart(name: str) -> None:
            if self.ours_armed(name):
                return
            set_ours(self.co, name, START)  # applied at once: a rollback never ramps
            self._wait(lambda: self._ours_at(name, START), timeout, f"{name} back at the start split")
            set_ours(self.co, name, TARGET)

        parallel(bump, fl)
        parallel(restart, au)
        self._wait(lambda: all(self.flagger_armed(n) for n in fl), timeout, "Canaries held at 20 %")
        self._wait(lambda: all(self.ours_armed(n) for n in au), timeout, "our rollouts paused at 20 %")
        quiet = wait_quiet(
            {"ours_queue": lambda: ours_idle(scrape(self._op_metrics())), **self.more_quiet}, 600
        )
        return {"arm_s": round(time.monotonic() - t0, 2), "quiet": quiet}

    def _op_metrics(self) -> str:
        return f"http://127.0.0.1:{self.bc.metrics_port}/metrics"

    # ------------------------------------------------------------------ one sample
    def sample(self, side: str, name: str, timeout: float = 120) -> None:
        assert self.routes is not None
        weights = flagger_route_weights if side == "flagger" else our_route_weights
        mark = self.routes.mark()
        t_flip = time.monotonic()
        self.bad.set(name, True)
        t_visible = poll_visible(lambda: self.prom.query_value(query(name)), 1.0)
        ev = self.routes.wait_event(name, lambda o: (weights(o) or {}).get("canary") == 0, mark, timeout)
        if ev is None:
            self.timeouts[side] += 1
            return
        self.samples[side].append((ev.at - t_visible) * 1000)
        self.visible_lag[side].append((t_visible - t_flip) * 1000)

    # ------------------------------------------------------------------ the run
    def run(self, rounds: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "canaries": self.count,
            "rounds": rounds,
            "interval": {"flagger": INTERVAL_FLAGGER, "ours": INTERVAL_OURS},
            "setup": self.setup(),
            "rounds_detail": [],
        }
        off0, t0 = self.bc.audit_offset(), time.monotonic()
        for r in range(rounds):
            info = self.arm(self.fl, self.au) if r else {"arm_s": 0.0}
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            for j in range(self.count):
                for side in order:
                    self.sample(side, (self.fl if side == "flagger" else self.au)[j])
            out["rounds_detail"].append(info)
            self.log(
                f"peer/flagger: round {r + 1}/{rounds}: rollback on a failed check p50 Flagger "
                f"{_p(self.samples['flagger'], 50)} ms, ours {_p(self.samples['ours'], 50)} ms"
            )
        elapsed = time.monotonic() - t0
        reqs = self.bc.operator_requests(off0, self.bc.audit_offset(), user=FLAGGER_USER)
        for side in SIDES:
            xs = self.samples[side]
            out[side] = {
                "n": len(xs),
                "timeouts": self.timeouts[side],
                "p50_ms": _p(xs, 50),
                "p95_ms": _p(xs, 95),
                "p99_ms": _p(xs, 99),
                "max_ms": round(max(xs), 1) if xs else float("nan"),
                "flip_to_visible_p50_ms": _p(self.visible_lag[side], 50),
            }
        out["ratio_p50"] = (
            round(out["flagger"]["p50_ms"] / out["ours"]["p50_ms"], 2)
            if self.samples["flagger"] and self.samples["ours"]
            else float("nan")
        )
        out["flagger_requests_per_second"] = round(reqs["requests"] / elapsed, 2) if elapsed > 0 else None
        out["flagger_requests_by_verb"] = reqs["by_verb"]
        out["flagger_log_tail"] = self.flagger.logs(10).splitlines() if self.flagger else []
        return out


def _p(xs: list[float], q: float) -> float:
    return round(percentile(xs, q), 1) if xs else float("nan")
