"""What each status write of a new ModelVersion changed, from the API server's audit log: why a version
costs more than one status PATCH on a cluster (issue #25).

Needs the audit log at Request level for ``modelversions/status`` (the request body: the merge patch),
which the e2e control plane writes with ``MV_AUDIT_REQUEST=modelversioning.io/modelversions/status``
(e2e/controlplane.py); keep its directory with ``MV_E2E_KEEP=1``. Each version's status is rebuilt
patch by patch (a merge patch carries every key of the new status, so a patch alone does not say what
changed), and each PATCH is labelled by what differs from the status before it:

- ``AV <reason>``: the ArtifactVerified condition's reason changed (``AV new RecordPending``: the
  first status says the record is pending);
- ``stage``: status.stage; ``servedBy``, ``servingHistory``, ...: that field; ``Ready`` etc.: another
  condition's status or reason;
- a PATCH the API server refused (409 ...) is labelled ``refused <code>``.

A version's sequence joins its labels with `` | ``: the breakdown counts versions by sequence.

    python bench/version_status.py AUDIT_LOG [--user USER] [--since OFFSET] [--top 20]

Pure but for reading the file; tests/test_bench_version_status.py table-tests it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from modelversioning.domain.merge_patch import apply_merge_patch  # noqa: E402

OPERATOR_USER = "system:serviceaccount:mv-system:mv-operator"  # bench/cluster.py OPERATOR_USER
IGNORED = ("observedGeneration",)  # follows every write; never a cause of its own


def status_patches(
    lines: Iterable[bytes], user: str = OPERATOR_USER, namespace: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """namespace/name -> the status PATCHes of ``user`` on ModelVersions (of ``namespace``, if given),
    in the order the API server answered them: {"patch": the request's status (None if not logged at
    Request level), "code", "at"}."""
    seen: set[str] = set()
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for line in lines:
        if b'"modelversions"' not in line or b'"status"' not in line:
            continue
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            ref = ev.get("objectRef") or {}
            if (
                ev.get("verb") != "patch"
                or ref.get("resource") != "modelversions"
                or ref.get("subresource") != "status"
                or (ev.get("user") or {}).get("username") != user
                or ev.get("stage") != "ResponseComplete"
                or (namespace is not None and ref.get("namespace") != namespace)
                or ev.get("auditID") in seen
            ):
                continue
            seen.add(ev["auditID"])
            body = ev.get("requestObject")
            patch = body.get("status") if isinstance(body, Mapping) else None
            code = int((ev.get("responseStatus") or {}).get("code") or 0)
            at = str(ev.get("stageTimestamp") or "")
            key = f"{ref.get('namespace')}/{ref.get('name')}"
            out.setdefault(key, []).append((at, {"patch": patch, "code": code, "at": at}))
    return {k: [p for _, p in sorted(v, key=lambda x: x[0])] for k, v in out.items()}


def _seconds(at: str) -> float:
    """An audit stageTimestamp (RFC 3339, microseconds) as seconds since the epoch."""
    from datetime import datetime

    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _conds(status: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        str(c.get("type")): (c.get("status"), c.get("reason"))
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    }


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two statuses, as labels (see the module's docstring). A first status is
    labelled by its ArtifactVerified reason (and servedBy, if it has one) alone."""
    out: list[str] = []
    cb, ca = _conds(before), _conds(after)
    if not before:
        first = [f"AV new {ca.get('ArtifactVerified', (None, '-'))[1]}"]
        return [*first, "servedBy"] if after.get("servedBy") else first
    av_b, av_a = cb.get("ArtifactVerified"), ca.get("ArtifactVerified")
    if av_b != av_a and av_a is not None:
        out.append(f"AV {'new ' if av_b is None else ''}{av_a[1]}")
    for t in sorted(set(cb) | set(ca)):
        if t != "ArtifactVerified" and cb.get(t) != ca.get(t):
            out.append(t)
    for k in sorted(set(before) | set(after)):
        if k in ("conditions", *IGNORED) or before.get(k) == after.get(k):
            continue
        out.append(k)
    return out


def gaps(patches: Mapping[str, list[dict[str, Any]]]) -> dict[str, float]:
    """namespace/name -> seconds between a version's first and last status PATCH (0: one PATCH)."""
    out: dict[str, float] = {}
    for key, ps in patches.items():
        ats = [p["at"] for p in ps if p.get("at")]
        out[key] = round(_seconds(ats[-1]) - _seconds(ats[0]), 3) if len(ats) > 1 else 0.0
    return out


def sequences(patches: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """namespace/name -> one label per PATCH: what it changed (``+``-joined), rebuilt in order."""
    out: dict[str, list[str]] = {}
    for key, ps in patches.items():
        status: dict[str, Any] = {}
        labels: list[str] = []
        for p in ps:
            if p["code"] >= 300:
                labels.append(f"refused {p['code']}")
                continue
            if p["patch"] is None:
                labels.append("?")  # not logged at Request level
                continue
            new = apply_merge_patch(status, p["patch"])
            labels.append("+".join(changed(status, new)) or "nothing")
            status = new
        out[key] = labels
    return out


# What an endpoint's reconcile writes on the versions it names (issue #25 counts them as the
# endpoint's, tests/test_fleet_writes.py): the in-use record, the weight, the serving period.
ENDPOINT_CAUSED = frozenset({"servedBy", "servingHistory", "InUse"})


def endpoint_caused(label: str) -> bool:
    """Did this PATCH change only what an endpoint's reconcile writes on a version (not a first status)?"""
    parts = set(label.split("+"))
    return not label.startswith("AV new") and parts <= ENDPOINT_CAUSED


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def breakdown(seqs: Mapping[str, list[str]], gap: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Versions by sequence (with, from ``gap``, the p50 / max seconds from its first PATCH to its
    last), and PATCHes per version."""
    by_seq = Counter(" | ".join(s) for s in seqs.values())
    spans: dict[str, list[float]] = {}
    for key, s in seqs.items():
        spans.setdefault(" | ".join(s), []).append((gap or {}).get(key, 0.0))
    n = len(seqs)
    writes = sum(len(s) for s in seqs.values())
    caused = sum(1 for s in seqs.values() for label in s if endpoint_caused(label))
    return {
        "versions": n,
        "status_patches": writes,
        "per_version": round(writes / n, 3) if n else None,
        # the version's own (its verification, record, stage walk) and its endpoints' (servedBy ...)
        "own_per_version": round((writes - caused) / n, 3) if n else None,
        "endpoint_caused_per_version": round(caused / n, 3) if n else None,
        "by_sequence": [
            {
                "sequence": s,
                "versions": c,
                "share": round(c / n, 3),
                "span_p50": _pct(spans[s], 0.5),
                "span_max": max(spans[s]),
            }
            for s, c in by_seq.most_common()
        ],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("audit_log", type=Path)
    ap.add_argument("--user", default=OPERATOR_USER)
    ap.add_argument("--namespace", default="bench", help="the fleet's namespace (bench/cluster.py NS)")
    ap.add_argument("--since", type=int, default=0, help="byte offset in the audit log to start at")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the breakdown here too")
    args = ap.parse_args(argv)
    with args.audit_log.open("rb") as f:
        f.seek(args.since)
        patches = status_patches(f, args.user, args.namespace or None)
    got = breakdown(sequences(patches), gaps(patches))
    n, writes = got["versions"], got["status_patches"]
    print(
        f"{n} versions, {writes} status PATCHes: {got['per_version']} per version ({got['own_per_version']} "
        f"its own, {got['endpoint_caused_per_version']} its endpoints' servedBy/servingHistory/InUse)"
    )
    for row in got["by_sequence"][: args.top]:
        span = f"first->last p50 {row['span_p50']:.1f}s max {row['span_max']:.1f}s"
        print(f"  {row['versions']:>6}  {100 * row['share']:5.1f} %  {row['sequence']}  ({span})")
    if args.json:
        args.json.write_text(json.dumps(got, indent=1))


if __name__ == "__main__":
    main()
