#!/usr/bin/env python3
"""Benchmarks with real traffic: a real node, real model pods, Traefik and Prometheus (e2e harness).

    python bench/dataplane.py [--rollbacks 10] [--auto 3]

1. rollback under load: clients send predictions continuously to an endpoint serving 2.4.1 (2.3.8 warm
   at 0 %); the weights are swapped; measured: from the API write to the last response of 2.4.1, and to
   the first run of responses that are all 2.3.8. Then rolled forward again; repeated.
2. automatic rollback: a canary configured to fail a share of requests ramps under load; measured:
   from the first failed request to the rollout's Failed decision (scrape, analysis interval and the
   decision together), and from there to the last failed response a client saw.

Printed as numbers (p50 / max), never asserted. Needs root (the real node), like the e2e tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from controlplane import ControlPlane  # noqa: E402
from gateway import Traefik  # noqa: E402
from helpers import Objects, cond_is, wait_for  # noqa: E402
from images import OPERATOR_IMAGE  # noqa: E402
from operator_proc import OperatorProcess  # noqa: E402
from prometheus import Prometheus  # noqa: E402
from test_dataplane import ArtifactServer, DataPlane, Load, endpoint, live_on, register  # noqa: E402

NS = "bench-dataplane"


def _pct(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1000:.0f} ms, max {xs[-1] * 1000:.0f} ms (n={len(xs)})"


def rollbacks(dp: DataPlane, objs: Objects, runs: int) -> None:
    if runs <= 0:
        return
    register(dp, objs, "chat", "2.3.8")
    register(dp, objs, "chat", "2.4.1")
    green = [
        {"name": "blue", "version": "2.3.8", "weight": 0},
        {"name": "green", "version": "2.4.1", "weight": 100},
    ]
    blue = [
        {"name": "blue", "version": "2.3.8", "weight": 100},
        {"name": "green", "version": "2.4.1", "weight": 0},
    ]
    objs.create(endpoint(dp, "chat", "chat", green))
    wait_for(lambda: cond_is(objs.mep("chat"), "Ready", "True"), 300, "chat Ready")
    wait_for(lambda: live_on(dp, {"2.4.1": 1}), 60, "2.4.1 answers")
    last_old, all_new = [], []
    with Load(dp) as load:
        for _ in range(runs):
            t0 = time.time()
            objs.patch_mep("chat", {"spec": {"variants": blue}})
            wait_for(
                lambda: {v for _, _, v, _ in load.since(time.time() - 0.3)} == {"2.3.8"}, 60, "2.3.8", 0.02
            )
            after = load.since(t0)
            last_old.append(max((t for t, _, v, _ in after if v == "2.4.1"), default=t0) - t0)
            first_clean = next((t for t, _, v, _ in after if v == "2.3.8"), t0)
            all_new.append(first_clean - t0)
            objs.patch_mep("chat", {"spec": {"variants": green}})
            wait_for(
                lambda: {v for _, _, v, _ in load.since(time.time() - 0.3)} == {"2.4.1"}, 60, "2.4.1", 0.02
            )
    objs.delete_mep("chat")  # the next section's endpoints use the same host on the gateway
    errors = sum(1 for _, s, _, _ in load.log if s != 200)
    print(f"rollback under load ({len(load.log)} requests, {errors} non-2xx):")
    print(f"  API write -> last response of the new version: {_pct(last_old)}")
    print(f"  API write -> first response of the old version: {_pct(all_new)}")


def _phase(objs: Objects, name: str) -> str:
    return str((objs.mep(name).get("status") or {}).get("rollout", {}).get("phase", ""))


def automatic(dp: DataPlane, objs: Objects, runs: int) -> None:
    for i in range(runs):
        name = f"auto{i}"
        register(dp, objs, name, "2.3.8")
        register(dp, objs, name, "2.4.1", env={"MODEL_SERVER_ERROR_RATE": "0.3"})
        errors = {"name": "errors", "template": "error-rate", "window": "5s", "max": 0.05}
        strategy = {
            "canary": {
                "variant": "canary",
                "baseline": "stable",
                "steps": [{"setWeight": 30}, {"pause": {"duration": "60s"}}],
                "analysis": {"interval": "2s", "metrics": [errors]},
            }
        }
        base = [
            {"name": "stable", "version": "2.3.8", "weight": 100},
            {"name": "canary", "version": "2.4.1", "weight": 0},
        ]
        objs.create(endpoint(dp, name, name, base, strategy=strategy))
        wait_for(lambda n=name: cond_is(objs.mep(n), "Ready", "True"), 300, f"{name} Ready")
        go = [
            {"name": "stable", "version": "2.3.8", "weight": 0},
            {"name": "canary", "version": "2.4.1", "weight": 100},
        ]
        with Load(dp) as load:
            objs.patch_mep(name, {"spec": {"variants": go}})
            wait_for(lambda: any(s != 200 for _, s, _, _ in load.log), 120, "a failed request")
            t_err = min(t for t, s, _, _ in load.log if s != 200)
            wait_for(lambda n=name: _phase(objs, n) == "Failed", 120, "Failed", 0.1)
            t_failed = time.time()
            wait_for(
                lambda: {v for _, _, v, _ in load.since(time.time() - 0.5)} == {"2.3.8"}, 60, "back", 0.05
            )
        t_last = max(t for t, s, _, _ in load.log if s != 200)
        objs.delete_mep(name)  # one endpoint per host on the gateway at a time
        print(
            f"automatic rollback {i}: first failed request -> rollout Failed {t_failed - t_err:.2f}s, "
            f"-> last failed request a client saw {t_last - t_failed:+.2f}s"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rollbacks", type=int, default=10)
    ap.add_argument("--auto", type=int, default=3)
    args = ap.parse_args()
    with ControlPlane(real_node=True) as cp, Traefik(cp) as gw, Prometheus(cp=cp, traefik=gw) as prom:
        art = ArtifactServer(Path(cp.workdir or "/tmp") / "bench-artifacts")
        settings = {
            "artifacts": {"allowPrivateNetworks": True},
            "serving": {"initImage": OPERATOR_IMAGE, "initImagePullPolicy": "Never", "drainSeconds": 2},
            "analysis": {"prometheusUrl": prom.url},
        }
        with OperatorProcess(cp.kubeconfig, settings=settings):
            cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)
            objs = Objects(client.ApiClient(cfg), NS)
            wait_for(lambda: objs.core.read_namespaced_service_account("default", NS), 30, "namespace ready")
            dp = DataPlane(cp, cp.real_node, gw, prom, art, None, cp.real_node.pod_placement())
            rollbacks(dp, objs, args.rollbacks)
            automatic(dp, objs, args.auto)
        art.httpd.shutdown()
    print(yaml.safe_dump({"note": "numbers, not assertions; see docs/benchmarks.md"}).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
