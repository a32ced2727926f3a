"""The operator's writes during a phase (a new fleet), by object kind and by cause: what the fleet
section prints and records as ``setup.fleet.writes``.

Two sources, because the API server's audit log (Metadata level, e2e/controlplane.py) names the verb,
resource, subresource and object of every request but not what an Event says:

- the audit log: every write request of the operator's user (deduplicated by auditID: one request is
  logged once per stage), as ``verb resource[/subresource]`` on the kind of the object written;
- the Events in the benchmark's namespace posted by the operator (``source.component``): by the kind
  of the object they are about and their reason, each counted as often as it was written (an Event's
  ``count``: its POST made it 1, each repeat of its series is a PATCH that adds 1, handlers/events.py).
  The counts before the phase are subtracted.

Pure (no cluster, no kubernetes client): tests/test_bench_writes.py table-tests it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
KINDS = {  # resource (plural) -> kind
    "modelversions": "ModelVersion",
    "modelendpoints": "ModelEndpoint",
    "models": "Model",
    "modelapprovals": "ModelApproval",
    "deployments": "Deployment",
    "services": "Service",
    "virtualservices": "VirtualService",
    "httproutes": "HTTPRoute",
    "events": "Event",
}
CHILDREN = ("Deployment", "Service", "VirtualService", "HTTPRoute")  # an endpoint's slots and route
OPERATOR_COMPONENT = "modelversioning-operator"  # handlers/kube.py FIELD_MANAGER: the Events' source

Cause = tuple[str, str]  # (kind of the object written, "verb resource[/subresource]" or "Event <reason>")


def audit_writes(lines: Iterable[bytes], user: str) -> Counter[Cause]:
    """The write requests of ``user`` in these audit-log lines, by (kind, "verb resource[/sub]").
    Events are left out: ``event_writes`` counts them by reason."""
    seen: set[str] = set()
    out: Counter[Cause] = Counter()
    needle = user.encode()
    for line in lines:
        if not line.startswith(b"{") or needle not in line:
            continue
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            verb = ev.get("verb")
            if (ev.get("user") or {}).get("username") != user or verb not in WRITE_VERBS:
                continue
            if ev.get("auditID") in seen:
                continue
            seen.add(ev.get("auditID"))
            ref = ev.get("objectRef") or {}
            resource = str(ref.get("resource") or "?")
            if resource == "events":
                continue
            sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
            out[(KINDS.get(resource, resource), f"{verb} {resource}{sub}")] += 1
    return out


def audit_event_writes(lines: Iterable[bytes], user: str) -> int:
    """How many Event writes (POST or PATCH) the audit log has of ``user``: the cross-check of
    ``event_writes`` (they differ if Events expired or were dropped)."""
    seen: set[str] = set()
    needle = user.encode()
    for line in lines:
        if not line.startswith(b"{") or needle not in line or b'"events"' not in line:
            continue
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            ok = (ev.get("user") or {}).get("username") == user and ev.get("verb") in WRITE_VERBS
            if ok and (ev.get("objectRef") or {}).get("resource") == "events":
                seen.add(ev.get("auditID"))
    return len(seen)


def event_counts(events: Iterable[Mapping[str, Any]], component: str = OPERATOR_COMPONENT) -> Counter[Cause]:
    """(involved kind, "Event <reason>") -> writes, of the Events ``component`` posted (listed now)."""
    out: Counter[Cause] = Counter()
    for ev in events:
        source = (ev.get("source") or {}).get("component") or ev.get("reportingComponent")
        if source != component:
            continue
        kind = str((ev.get("involvedObject") or {}).get("kind") or "?")
        out[(kind, f"Event {ev.get('reason')}")] += int(ev.get("count") or 1)
    return out


def since(after: Counter[Cause], before: Counter[Cause]) -> Counter[Cause]:
    """What was written between two snapshots of ``event_counts`` (an expired Event never goes below 0)."""
    return Counter({k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)})


def summary(writes: Counter[Cause], created: Mapping[str, int]) -> dict[str, Any]:
    """Rows by cause (most first) with writes per created object of that kind, totals by kind, and
    per new ModelVersion / ModelEndpoint: the writes on objects of that kind per object created (an
    endpoint's children separately; writes on Models are the registry's record)."""
    by_kind: Counter[str] = Counter()
    for (kind, _), n in writes.items():
        by_kind[kind] += n
    rows = []
    for (kind, cause), n in sorted(writes.items(), key=lambda kv: (-kv[1], kv[0])):
        per = created.get(kind) or created.get("ModelEndpoint" if kind in CHILDREN else "", 0)
        rows.append(
            {"kind": kind, "cause": cause, "writes": n, "per_object": round(n / per, 2) if per else None}
        )
    versions, endpoints = created.get("ModelVersion", 0), created.get("ModelEndpoint", 0)
    children = sum(by_kind.get(k, 0) for k in CHILDREN)
    return {
        "total": sum(writes.values()),
        "events": sum(n for (_, cause), n in writes.items() if cause.startswith("Event ")),
        "by_kind": dict(by_kind.most_common()),
        "per_new_version": round(by_kind.get("ModelVersion", 0) / versions, 2) if versions else None,
        "per_new_endpoint": round(by_kind.get("ModelEndpoint", 0) / endpoints, 2) if endpoints else None,
        "children_per_new_endpoint": round(children / endpoints, 2) if endpoints else None,
        "registry_per_new_version": round(by_kind.get("Model", 0) / versions, 2) if versions else None,
        "by_cause": rows,
    }


def lines(summary_: Mapping[str, Any], top: int = 25) -> list[str]:
    """The summary as log lines: totals, the per-object figures, then the causes."""
    s = summary_
    out = [
        f"operator writes: {s['total']} ({s['events']} Events); per new ModelVersion {s['per_new_version']} "
        f"(+ {s['registry_per_new_version']} on its Model), per new ModelEndpoint {s['per_new_endpoint']} "
        f"(+ {s['children_per_new_endpoint']} children)",
    ]
    for r in s["by_cause"][:top]:
        per = "" if r["per_object"] is None else f"{r['per_object']} per object"
        out.append(f"  {r['writes']:>7}  {r['kind']:<15} {r['cause']:<40} {per}")
    return out


def apiserver_cost_line(apiserver_cpu_seconds: float | None, writes_by_user: Mapping[str, int],
                        operator_user: str) -> str:
    """kube-apiserver CPU seconds per write during a phase (every user's writes from the audit log,
    and the operator's share of them): printed at the end of the fleet section, never asserted."""
    total = sum(writes_by_user.values())
    ours = writes_by_user.get(operator_user, 0)
    if apiserver_cpu_seconds is None or total == 0:
        return "kube-apiserver CPU per write: n/a (no CPU figure or no writes logged)"
    return (
        f"kube-apiserver: {apiserver_cpu_seconds:.1f} CPU s for {total} writes ="
        f" {1000 * apiserver_cpu_seconds / total:.2f} ms per write (the operator's: {ours},"
        f" {100 * ours / total:.0f} %)"
    )
