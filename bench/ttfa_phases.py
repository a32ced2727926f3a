"""Time to first answer, from what was recorded to a phase table (pure: no cluster, no clock).

A run of bench/ttfa.py records, for one side (``ours``: a new ModelVersion and the endpoint change
that serves it; ``plain``: a plain Deployment rolled to the same file), every watch event of the
namespace's pods, ModelVersions and HTTPRoutes as ``{"t": wall time seen, "type": ..., "object":
{...}}``, the answers of a client polling through the gateway as ``{"t", "status", "version",
"body_version", "hostname"}``, and the container runtime's own start and finish times of the
containers (nanoseconds, ``{container id: {"startedAt", "finishedAt"}}``; the API's are whole
seconds). These functions turn that into milestones (wall times) and phases (seconds between them).

Milestones: ``apply`` (the first API write), ``hashed`` (the operator's fetch-and-hash matched:
RecordPending or Verified), ``verified`` (ArtifactVerified=True at the required stage,
as the watch saw it), ``pod_created``, ``scheduled``, ``init_started`` / ``init_finished`` (the init
container: runtime times when known, else the API's), ``server_started``, ``loaded`` (the model
server's "loaded" log line, timestamped by the runtime: it serves from then on), ``ready`` (the pod's
Ready condition, as the watch saw it), ``route_written`` (the HTTPRoute sending the new version a
share, as the watch saw it) and ``first_answer`` (the first 2xx the new version answered through the
gateway). The readiness probe runs every 5 s on both sides (the same pod template), so loaded ->
Ready is 0-5 s of chance in any one run: ``without_probe_s`` is the total without it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

Event = Mapping[str, Any]  # {"t": float, "type": str, "object": dict}
Sample = Mapping[str, Any]  # {"t": float, "status": int, "version", "body_version", "hostname"}
Milestones = dict[str, float | None]

MIB = float(1 << 20)

# (key, label, start milestones: the phase starts at the latest of those present, end milestone)
PHASES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("verify", "operator: verified (beside the pod)", ("apply",), "verified"),
    ("hash", "  of which: fetch + hash", ("apply",), "hashed"),
    ("record", "  of which: hashed -> registry record -> Verified", ("hashed",), "verified"),
    ("create", "pod created (operator, Deployment, ReplicaSet)", ("apply",), "pod_created"),
    ("schedule", "pod scheduled", ("pod_created",), "scheduled"),
    ("sandbox", "sandbox up, init container started", ("scheduled",), "init_started"),
    ("init", "init container: download (ours: + hash)", ("init_started",), "init_finished"),
    ("server", "model server container started", ("init_finished",), "server_started"),
    ("ready", "runtime ready (load + readiness probe)", ("server_started",), "ready"),
    ("load", "  of which: start, load (its own hash)", ("server_started",), "loaded"),
    ("probe", "  of which: loaded -> Ready (probe every 5 s)", ("loaded",), "ready"),
    ("route", "route written (after ready and verified)", ("ready", "verified"), "route_written"),
    ("answer", "first answer through the gateway", ("ready", "route_written"), "first_answer"),
    ("total", "apply -> first answer", ("apply",), "first_answer"),
)


# ---------------------------------------------------------------------------------------- objects
def epoch(ts: str | None) -> float | None:
    """An RFC 3339 timestamp (``Z`` or an offset, up to nanoseconds) -> seconds since the epoch."""
    if not ts:
        return None
    text = ts.replace("Z", "+00:00")
    if "." in text:  # at most 6 fraction digits for fromisoformat: nanoseconds are cut to micro
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text).timestamp()


def labels_match(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def cond_true(obj: Mapping[str, Any], type_: str) -> bool:
    c = condition(obj, type_)
    return bool(c and c.get("status") == "True")


def hashed(mv: Mapping[str, Any]) -> bool:
    """The operator's fetch-and-hash matched: ArtifactVerified True, or waiting for the registry's
    record of the version (RecordPending, written between the hash and Verified)."""
    c = condition(mv, "ArtifactVerified") or {}
    return c.get("status") == "True" or c.get("reason") == "RecordPending"


def verified_at_stage(mv: Mapping[str, Any], stage: str) -> bool:
    """ArtifactVerified=True and status.stage the one an endpoint requires: a version that may serve."""
    return cond_true(mv, "ArtifactVerified") and (mv.get("status") or {}).get("stage") == stage


def route_serves(route: Mapping[str, Any], version: str) -> bool:
    """Does the HTTPRoute send `version` a share (a backendRef with weight > 0 whose response headers
    say x-model-version: version)?"""
    for rule in (route.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            if int(ref.get("weight", 1)) <= 0:
                continue
            for f in ref.get("filters") or []:
                for h in (f.get("responseHeaderModifier") or {}).get("set") or []:
                    if h.get("name") == "x-model-version" and h.get("value") == version:
                        return True
    return False


def answered_by(sample: Sample) -> str | None:
    """Who answered a 2xx: the route's x-model-version header, else what the server said (the plain
    side's route sets no header). None for anything but a 2xx."""
    if not 200 <= int(sample.get("status", 0)) < 300:
        return None
    return sample.get("version") or sample.get("body_version")


# ----------------------------------------------------------------------------------------- events
def first_time(
    events: Iterable[Event], pred: Callable[[Mapping[str, Any]], bool], since: float
) -> float | None:
    """When a recorded event at or after `since` first showed an object satisfying `pred`."""
    for ev in events:
        if ev["t"] >= since and ev.get("type") != "DELETED" and pred(ev["object"]):
            return float(ev["t"])
    return None


def pod_names(events: Iterable[Event], selector: Mapping[str, str], since: float) -> list[str]:
    """Names of the pods matching `selector` first seen at or after `since`, in the order seen (a pod
    seen before `since` is not new, whatever it did later)."""
    seen: set[str] = set()
    out: list[str] = []
    for ev in events:
        obj = ev["object"]
        name = (obj.get("metadata") or {}).get("name")
        if name in seen or not labels_match(obj, selector):
            continue
        seen.add(name)
        if ev["t"] >= since:
            out.append(name)
    return out


def _of_pod(events: Iterable[Event], name: str) -> list[Event]:
    return [ev for ev in events if (ev["object"].get("metadata") or {}).get("name") == name]


def _container(pod: Mapping[str, Any], init: bool) -> Mapping[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = (pod.get("status") or {}).get(key) or []
    return statuses[0] if statuses else {}


def container_times(
    pod: Mapping[str, Any], init: bool, runtime: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[float | None, float | None]:
    """(started, finished) of the pod's first init (or main) container: the runtime's own times
    (nanoseconds) when `runtime` has its container id, else the API's (whole seconds)."""
    cs = _container(pod, init)
    state = cs.get("state") or {}
    run = state.get("terminated") or state.get("running") or {}
    started, finished = epoch(run.get("startedAt")), epoch(run.get("finishedAt"))
    cid = str(cs.get("containerID") or "").partition("://")[2]
    rt = (runtime or {}).get(cid) or {}
    if epoch(rt.get("startedAt")):
        started = epoch(rt.get("startedAt"))
    if finished is not None and epoch(rt.get("finishedAt")):  # a running container has no finish yet
        finished = epoch(rt.get("finishedAt"))
    return started, finished


def pod_milestones(
    events: Sequence[Event], name: str, runtime: Mapping[str, Mapping[str, Any]] | None = None
) -> Milestones:
    """One pod's milestones: created, scheduled and ready as the watch saw them; its containers'
    start and finish from the last snapshot of the pod that had them."""
    evs = _of_pod(events, name)
    out: Milestones = {
        "pod_created": float(evs[0]["t"]) if evs else None,
        "scheduled": first_time(evs, lambda p: bool((p.get("spec") or {}).get("nodeName")), 0.0),
        "ready": first_time(evs, lambda p: cond_true(p, "Ready"), 0.0),
    }
    init = next((e["object"] for e in reversed(evs) if _container(e["object"], True).get("containerID")), {})
    main = next((e["object"] for e in reversed(evs) if _container(e["object"], False).get("containerID")), {})
    out["init_started"], out["init_finished"] = container_times(init, True, runtime)
    out["server_started"] = container_times(main, False, runtime)[0]
    return out


LOADED = "modelversioning.modelserver: loaded "  # the reference model server's log line once it serves


def loaded_at(lines: Iterable[str]) -> float | None:
    """When the model server logged that it loaded the model (a log read with timestamps: each line
    starts with the runtime's RFC 3339 time)."""
    for line in lines:
        stamp, _, message = line.partition(" ")
        if LOADED in message:
            return epoch(stamp)
    return None


def first_answer(samples: Iterable[Sample], version: str, since: float) -> float | None:
    """When the client first got a 2xx answered by `version` at or after `since`."""
    for s in samples:
        if s["t"] >= since and answered_by(s) == version:
            return float(s["t"])
    return None


# ------------------------------------------------------------------------------------------- sides
def milestones(rec: Mapping[str, Any]) -> Milestones:
    """The milestones of one recorded side (a dict: t0, version, selector, stage, pods, mvs, routes,
    samples, runtime): ours has a ModelVersion and a route to watch, the plain side has neither."""
    t0 = float(rec["t0"])
    version = str(rec["version"])
    out: Milestones = {"apply": t0}
    mvs = rec.get("mvs")
    stage = str(rec.get("stage") or "production")
    mine = [e for e in mvs or [] if e["object"]["spec"].get("version") == version]
    out["hashed"] = first_time(mine, hashed, t0) if mvs is not None else None
    out["verified"] = first_time(mine, lambda o: verified_at_stage(o, stage), t0) if mvs is not None else None
    names = pod_names(rec.get("pods") or [], rec["selector"], t0)
    empty = dict.fromkeys(
        ("pod_created", "scheduled", "init_started", "init_finished", "server_started", "ready")
    )
    out.update(pod_milestones(rec["pods"], names[0], rec.get("runtime")) if names else empty)
    out["loaded"] = loaded_at((rec.get("logs") or {}).get(names[0], [])) if names else None
    routes = rec.get("routes")
    out["route_written"] = (
        first_time(routes, lambda r: route_serves(r, version), t0) if routes is not None else None
    )
    out["first_answer"] = first_answer(rec.get("samples") or [], version, t0)
    return out


def phases(ms: Milestones) -> dict[str, float | None]:
    """Seconds of each phase of PHASES (None when a milestone is missing)."""
    out: dict[str, float | None] = {}
    for key, _, starts, end in PHASES:
        present = [ms[s] for s in starts if ms.get(s) is not None]
        stop = ms.get(end)
        out[key] = round(stop - max(present), 3) if present and stop is not None else None  # type: ignore[type-var]
    return out


def init_rate_mib_s(ms: Milestones, size: int) -> float | None:
    """The init container's throughput (download, and hash for ours) in MiB/s, start to finish."""
    a, b = ms.get("init_started"), ms.get("init_finished")
    if a is None or b is None or b <= a:
        return None
    return round(size / MIB / (b - a), 1)


def ratio(ours: float | None, plain: float | None) -> float | None:
    """Our time over the plain Deployment's (the overhead factor), None when one is missing."""
    if ours is None or plain is None or plain <= 0:
        return None
    return round(ours / plain, 2)


def summarize(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One side's milestones (relative to apply), phases, init throughput and whether the operator's
    verification was on the critical path (verified after the pod was ready)."""
    ms = milestones(rec)
    t0 = float(rec["t0"])
    out: dict[str, Any] = {
        "milestones_s": {k: (round(v - t0, 3) if v is not None else None) for k, v in ms.items()},
        "phases_s": phases(ms),
        "init_mib_s": init_rate_mib_s(ms, int(rec["bytes"])),
    }
    total, probe = out["phases_s"]["total"], out["phases_s"]["probe"]
    out["without_probe_s"] = round(total - probe, 3) if total is not None and probe is not None else None
    if ms.get("verified") is not None and ms.get("ready") is not None:
        out["verification_on_critical_path"] = ms["verified"] > ms["ready"]  # type: ignore[operator]
    return out


# --------------------------------------------------------------------------------------- scale-up
def scale_up(rec: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """From a replicas change at t0 to `replicas` pods Ready (the watch's view: each pod's latest
    state) and to `replicas` distinct pods answering through the gateway; with the new pods' init
    container times and their combined throughput."""
    t0, selector = float(rec["t0"]), rec["selector"]
    ready: dict[str, bool] = {}
    all_ready: float | None = None
    for ev in rec["pods"]:
        obj = ev["object"]
        if not labels_match(obj, selector):
            continue
        name = obj["metadata"]["name"]
        ready[name] = (
            ev.get("type") != "DELETED"
            and not obj["metadata"].get("deletionTimestamp")
            and (cond_true(obj, "Ready"))
        )
        if ev["t"] >= t0 and all_ready is None and sum(ready.values()) >= replicas:
            all_ready = float(ev["t"])
    seen: set[str] = set()
    all_answering: float | None = None
    for s in rec.get("samples") or []:
        if s["t"] >= t0 and answered_by(s) == rec["version"] and s.get("hostname"):
            seen.add(str(s["hostname"]))
            if len(seen) >= replicas:
                all_answering = float(s["t"])
                break
    new = [pod_milestones(rec["pods"], n, rec.get("runtime")) for n in pod_names(rec["pods"], selector, t0)]
    inits = [(m["init_started"], m["init_finished"]) for m in new]
    inits = [(a, b) for a, b in inits if a is not None and b is not None]
    out: dict[str, Any] = {
        "replicas": replicas,
        "new_pods": len(new),
        "all_ready_s": round(all_ready - t0, 3) if all_ready is not None else None,
        "all_answering_s": round(all_answering - t0, 3) if all_answering is not None else None,
        "answering_pods": len(seen),
    }
    if inits:
        durations = [b - a for a, b in inits]
        span = max(b for _, b in inits) - min(a for a, _ in inits)
        out["init_s_median"] = round(statistics.median(durations), 3)
        out["init_s_max"] = round(max(durations), 3)
        out["init_mib_s_combined"] = (
            round(len(inits) * int(rec["bytes"]) / MIB / span, 1) if span > 0 else None
        )
    return out


# ------------------------------------------------------------------------------------------ printed
GOAL_MIB, GOAL_RATIO = 256, 1.2  # issue 25: ours / plain at most 1.2x for a 256 MiB artifact


def _s(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def table_lines(entry: Mapping[str, Any]) -> list[str]:
    """One size's phase table: ours, the plain Deployment, and the difference (ours - plain)."""
    ours, plain = entry["ours"]["phases_s"], entry["plain"]["phases_s"]
    ratio_text = f"x{entry['ratio']}" if entry.get("ratio") is not None else "x?"
    goal = f" (goal <= {GOAL_RATIO}x at {GOAL_MIB} MiB)" if entry["mib"] == GOAL_MIB else ""
    lines = [
        f"time to first answer, {entry['mib']:g} MiB ({entry['version']}, {entry['first']} first): ours "
        f"{_s(ours['total'])} s, plain {_s(plain['total'])} s: {ratio_text}{goal}",
        f"  {'phase':<48} {'ours s':>8} {'plain s':>8} {'ours-plain':>10}",
    ]
    for key, label, _, _ in PHASES:
        a, b = ours.get(key), plain.get(key)
        diff = _s(a - b) if a is not None and b is not None else "-"
        lines.append(f"  {label:<48} {_s(a):>8} {_s(b):>8} {diff:>10}")
    wo, wp = entry["ours"].get("without_probe_s"), entry["plain"].get("without_probe_s")
    lines.append(f"  without the probe's wait: ours {_s(wo)} s, plain {_s(wp)} s: x{ratio(wo, wp)}")
    rate_o, rate_p = entry["ours"].get("init_mib_s"), entry["plain"].get("init_mib_s")
    lines.append(f"  init container throughput (MiB/s): ours {rate_o}, plain {rate_p} (download only)")
    if "verification_on_critical_path" in entry["ours"]:
        on = entry["ours"]["verification_on_critical_path"]
        lines.append(f"  the operator's verification {'was' if on else 'was not'} on the critical path")
    return lines


def report_lines(out: Mapping[str, Any]) -> list[str]:
    """Every size's table, then the scale-up."""
    lines: list[str] = []
    for entry in out.get("sizes") or []:
        lines += table_lines(entry)
    sc = out.get("scale_up")
    if sc:
        o, p = sc["ours"], sc["plain"]
        lines.append(
            f"scale-up of {sc['version']} ({sc['mib']:g} MiB) from 1 to {o['replicas']} replicas: all Ready "
            f"ours {_s(o['all_ready_s'])} s / plain {_s(p['all_ready_s'])} s; all answering ours "
            f"{_s(o['all_answering_s'])} s / plain {_s(p['all_answering_s'])} s: x{sc['ratio']}"
        )
        lines.append(
            f"  init containers: median ours {_s(o.get('init_s_median'))} s / plain "
            f"{_s(p.get('init_s_median'))} s; combined MiB/s ours {o.get('init_mib_s_combined')} / plain "
            f"{p.get('init_mib_s_combined')}"
        )
    return lines
