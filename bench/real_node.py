"""The real-node sections of bench/run.py (opt-in): dataplane (bench/dataplane.py), ttfa (bench/ttfa.py)
and oip (bench/oip.py), on one control plane with the real node, Traefik, Prometheus and the operator,
after the kwok sections (one cluster at a time on the machine)."""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REAL_NODE_SECTIONS = ("dataplane", "ttfa", "oip")  # one control plane with the real node for all


def run_real_node(
    args: argparse.Namespace, res: Any, guarded: Callable[..., Any], log: Callable[[str], None]
) -> None:
    import dataplane

    p = args.params
    names = [n for n in REAL_NODE_SECTIONS if n in args.sections]
    t0 = time.monotonic()
    try:
        with dataplane.environment() as dp:
            res.data["setup"]["real_node_setup_seconds"] = round(time.monotonic() - t0, 1)
            if "dataplane" in names:
                guarded(
                    res,
                    "dataplane",
                    lambda: dataplane.run(p["dp_rollbacks"], p["dp_auto"], p["dp_steps"], dp),
                )
            if "ttfa" in names:
                guarded(res, "ttfa", lambda: run_ttfa(args, dp, log))
            if "oip" in names:
                import oip

                guarded(res, "oip", lambda: oip.run(dp, p["oip_requests"], p["oip_rate"], log))
    except Exception as e:  # noqa: BLE001 - the environment failed: say so in the sections it kept from running
        log(f"real-node sections FAILED: {e!r}\n{traceback.format_exc()}")
        for name in names:
            if name not in res.data["sections"]:
                res.section(name, {"error": f"not run: {type(e).__name__}: {e}"})


def run_ttfa(args: argparse.Namespace, dp: Any, log: Callable[[str], None]) -> dict[str, Any]:
    import dataplane
    import ttfa

    p = args.params
    sizes = [float(x) for x in str(p["ttfa_sizes"]).split(",") if x.strip()]
    objs = dataplane.namespace(dp, ttfa.NS)
    serving = dataplane.operator_settings("")["serving"]
    records = Path(args.json).with_name(Path(args.json).stem + "-ttfa-records.json")
    out: dict[str, Any] = ttfa.run(dp, objs, serving, sizes, p["ttfa_replicas"], log, records)
    if p["ttfa_cache_mib"] and p["ttfa_cache_mib"] > 0:
        import ttfa_cache

        try:
            out["node_cache"] = ttfa_cache.run(dp, objs, p["ttfa_cache_mib"], p["ttfa_cache_replicas"], log)
        except Exception as e:  # noqa: BLE001 - the node cache part failed: the ttfa numbers stand
            log(f"ttfa node cache FAILED: {e!r}\n{traceback.format_exc()}")
            out["node_cache"] = {"error": f"{type(e).__name__}: {e}"}
        if p.get("ttfa_cache_oci"):
            try:
                out["node_cache_oci"] = ttfa_cache.run_oci(
                    dp, objs, p["ttfa_cache_mib"], p["ttfa_cache_replicas"], log
                )
            except Exception as e:  # noqa: BLE001 - the same: recorded, the rest stands
                log(f"ttfa node cache (oci) FAILED: {e!r}\n{traceback.format_exc()}")
                out["node_cache_oci"] = {"error": f"{type(e).__name__}: {e}"}
    return out
