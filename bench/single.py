"""One endpoint's weight change on a quiet control plane, every run (issue #25): the figure a
regression of the operator's own reaction shows in.

K weight changes of ONE endpoint, each after the previous one's aftermath (status, Events, the
reconciles our own writes cause) is over: nothing else is happening in the operator. Per change:

- ``reaction``: from the API server's audit log, the user's PATCH completed -> the operator's first
  route write (VirtualService) received: the operator's whole reaction as the API server sees it
  (its watch delivering the event, kopf, the cache, the work queue, the reconcile, the HTTP client);
- ``route``: the user's PATCH returned -> the route's watch event with the new weights arriving at the
  benchmark (what a user waits for);
- ``operator``: the operator's own timestamps (modelversioning_endpoint_route_reaction_seconds): its
  handler receiving the endpoint's event -> its reconcile starting (``queued``) -> the route write's
  request about to go out (``reconcile``; ``total`` both), as quantiles of the histogram's buckets.

The aggregation (``summary``, ``pair_reactions``, ``histogram``, ``bucket_quantile``) is pure and
tested in tests/test_bench_single.py.
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from cluster import OPERATOR_USER, BenchCluster, percentile

REACTION_METRIC = "modelversioning_endpoint_route_reaction_seconds"
PHASES = ("queued", "reconcile", "total")
QUIET_SECONDS = 0.3  # no event on endpoints, routes or versions for this long before the next change
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([0-9.eE+-]+|\+Inf|NaN)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def summary(samples_ms: list[float]) -> dict[str, Any]:
    """n, p50, p99, max and mean of samples in ms (NaN when there is none)."""
    if not samples_ms:
        return {"n": 0, **dict.fromkeys(("p50_ms", "p99_ms", "max_ms", "mean_ms"), float("nan"))}
    return {
        "n": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "max_ms": round(max(samples_ms), 2),
        "mean_ms": round(sum(samples_ms) / len(samples_ms), 2),
    }


def pair_reactions(reqs: list[dict[str, Any]], operator: str, route_resource: str) -> dict[str, list[float]]:
    """From the audit records of one object (user, verb, resource, received, completed; seconds), per
    user PATCH of the endpoint's spec and the operator's first write of the route received after that
    PATCH was and before the next one: PATCH completed -> route write received (``reaction``; below 0
    when the operator wrote before the PATCH's response was complete: the watch event leaves at the
    commit), and the API server's time for that route write (``route_write``) and for the PATCH itself
    (``spec_patch``), all in ms. A PATCH without a route write before the next one gives no sample."""
    reqs = sorted(reqs, key=lambda r: r["received"])
    spec = [
        r
        for r in reqs
        if r["user"] != operator and r["verb"] == "patch" and r["resource"] == "modelendpoints"
    ]
    route = [r for r in reqs if r["user"] == operator and r["resource"] == route_resource]
    out: dict[str, list[float]] = {"reaction": [], "route_write": [], "spec_patch": []}
    for i, s in enumerate(spec):
        nxt = spec[i + 1]["received"] if i + 1 < len(spec) else math.inf
        w = next((x for x in route if s["received"] < x["received"] < nxt), None)
        if w is None:
            continue
        out["reaction"].append((w["received"] - s["completed"]) * 1000)
        out["route_write"].append((w["completed"] - w["received"]) * 1000)
        out["spec_patch"].append((s["completed"] - s["received"]) * 1000)
    return out


def histogram(text: str, name: str = REACTION_METRIC) -> dict[str, dict[float, float]]:
    """phase -> {upper bound: cumulative count} of a histogram in a Prometheus text page."""
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != f"{name}_bucket":
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        out.setdefault(labels.get("phase", ""), {})[float(labels["le"])] = float(m.group(3))
    return out


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile (0..1) of what was observed between two readings of a histogram's cumulative
    buckets, interpolated linearly inside its bucket (Prometheus' histogram_quantile), in ms; the
    highest finite bound when it falls in +Inf; NaN when nothing was observed."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= rank:
            if math.isinf(bound):
                return round(lower * 1000, 3)
            inside = cum - below
            frac = (rank - below) / inside if inside > 0 else 1.0
            return round((lower + (bound - lower) * frac) * 1000, 3)
        lower, below = bound, cum
    return float("nan")


def operator_phases(before: str, after: str) -> dict[str, Any]:
    """p50/p99 (ms, bucket-interpolated) and n of each phase observed between two /metrics pages."""
    h0, h1 = histogram(before), histogram(after)
    out: dict[str, Any] = {}
    for phase in PHASES:
        b0, b1 = h0.get(phase, {}), h1.get(phase, {})
        n = b1.get(math.inf, 0.0) - b0.get(math.inf, 0.0)
        out[phase] = {
            "n": int(n),
            "p50_ms": bucket_quantile(b0, b1, 0.5),
            "p99_ms": bucket_quantile(b0, b1, 0.99),
        }
    return out


def table_rows(
    sg: dict[str, Any], add: Callable[..., None], num: Callable[[Any], bool], reaction: float, route: float
) -> None:
    """The section's lines of the results table (run.py's add(section, metric, value, target, met,
    note)), with the targets for the reaction's and the route's p50 (ms)."""
    re_, ro, op = sg.get("reaction") or {}, sg.get("route") or {}, sg.get("operator") or {}

    def phase(p: str) -> Any:
        return (op.get(p) or {}).get("p50_ms")

    if num(re_.get("p50_ms")):
        add("single", "one endpoint, quiet: PATCH -> our route write p50 / p99 (ms)",
            f"{re_['p50_ms']} / {re_['p99_ms']}", f"p50 <= {reaction:g}", re_["p50_ms"] <= reaction,
            f"n={re_['n']}, audit log; in the operator event -> write sent p50 {phase('total')} ms "
            f"(queued {phase('queued')}, reconcile {phase('reconcile')})")  # fmt: skip
    if num(ro.get("p50_ms")):
        add("single", "one endpoint, quiet: PATCH returned -> route event p50 / p99 (ms)",
            f"{ro['p50_ms']} / {ro['p99_ms']}", f"p50 <= {route:g}", ro["p50_ms"] <= route,
            f"n={ro['n']}, timeouts {sg.get('timeouts')}; route write in the API server p50 "
            f"{(sg.get('route_write_apiserver') or {}).get('p50_ms')} ms")  # fmt: skip


def _metrics_text(bc: BenchCluster) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{bc.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def run(bc: BenchCluster, endpoint: str, k: int, log: Callable[[str], None]) -> dict[str, Any]:
    """K weight changes of `endpoint`, one at a time, each on a quiet operator."""
    from scenarios import _change

    if not bc.wait_converged(time.monotonic(), 120, endpoints=[endpoint], versions=False).ok:
        raise RuntimeError(f"{endpoint} did not converge before the single-object changes")
    bc.wait_quiet(1.0, 30)
    page0, off0 = _metrics_text(bc), bc.audit_offset()
    route: list[float] = []
    timeouts = 0
    prev = bc.desired[endpoint]["stable"]
    with bc.profiled("single", k * 0.7):  # BENCH_PYSPY=<dir> (BENCH_PYSPY_RATE=1000 for this one)
        for i in range(k):
            w = 10 + (i * 37) % 81
            w = w if w != prev else (w + 1 if w < 90 else w - 1)
            res = _change(bc, endpoint, {"stable": w, "canary": 100 - w}, timeout=30)
            prev = w
            if res is None:
                timeouts += 1
            else:
                route.append(res[1])
            bc.wait_quiet(QUIET_SECONDS, 10)  # the aftermath is over: a quiet operator meets the next one
    page1, off1 = _metrics_text(bc), bc.audit_offset()
    audit = pair_reactions(bc.audit_requests(off0, off1, endpoint), OPERATOR_USER, "virtualservices")
    out: dict[str, Any] = {
        "endpoint": endpoint,
        "changes": k,
        "timeouts": timeouts,
        "reaction": summary(audit["reaction"]),
        "route": summary(route),
        "route_write_apiserver": summary(audit["route_write"]),
        "spec_patch_apiserver": summary(audit["spec_patch"]),
        "operator": operator_phases(page0, page1),
    }
    for key in ("reaction", "route"):  # the figure itself, flat (e2e/test_bench_smoke.py checks it)
        out[f"{key}_p50_ms"], out[f"{key}_p99_ms"] = out[key]["p50_ms"], out[key]["p99_ms"]
    op = out["operator"]
    log(
        f"single object: reaction p50 {out['reaction']['p50_ms']} / p99 {out['reaction']['p99_ms']} ms "
        f"(in the operator: event -> route write sent p50 {op['total']['p50_ms']} ms, queued "
        f"{op['queued']['p50_ms']}, reconcile {op['reconcile']['p50_ms']}); PATCH -> route event "
        f"p50 {out['route']['p50_ms']} / p99 {out['route']['p99_ms']} ms"
    )
    return out
