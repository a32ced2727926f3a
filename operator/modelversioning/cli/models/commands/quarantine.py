"""``kubectl models quarantine | unquarantine``: mark (or unmark) every version built from a bad
dataset, code commit, or one version, in the namespaces where the caller may change endpoints and
versions; the operator withdraws them from every route (docs/design.md, "Lineage quarantine"). The
plans and messages are :mod:`..quarantine_plan`'s (pure); this module lists, asks, patches and waits."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from modelversioning.api.wire import QUARANTINED_ANNOTATION
from modelversioning.cli.models import quarantine_plan as QP
from modelversioning.cli.models.context import Globals, globals_of, show, waiting
from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_TIMEOUT, Refused
from modelversioning.cli.models.kube import MODELENDPOINTS, MODELVERSIONS, Cluster, ClusterError
from modelversioning.cli.models.views import meta_of, status_of
from modelversioning.domain import quarantine as Q

app = typer.Typer()

Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="Every version trained on NAME@VERSION (VERSION may be 8+ hex of its sha256)."
    ),
]
Commit = Annotated[
    str | None, typer.Option("--commit", help="Every version built from this code commit (7-64 hex).")
]
Version = Annotated[str | None, typer.Option("--version", help="One version: MODEL@VERSION.")]
AllNamespaces = Annotated[
    bool,
    typer.Option("--all-namespaces", "-A", help="Every namespace you can list (else -n / the context's)."),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Only list the blast radius; write nothing.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the routes.", min=0)]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Write the quarantine and return.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (required; recorded).")]


def _asked(
    ctx: typer.Context,
    selector: tuple[str | None, str | None, str | None],
    reason: str,
    dry_run: bool,
    verb: str,
) -> tuple[Globals, Q.Selector, str]:
    """What both commands were asked: the options, the one selector (--dataset, --commit or --version)
    and why (required unless --dry-run; recorded)."""
    g = globals_of(ctx)
    sel = QP.selector_of(*selector)
    return g, sel, reason.strip() if dry_run else QP.reason_of(reason, verb)


@app.command(
    help="Quarantine every version built from a bad dataset or code commit (or one version), where you may\n"
    "change endpoints: withdrawn from every route, never promoted, no spec written; --dry-run first.\n\n"
    f"The annotation {QUARANTINED_ANNOTATION} on each affected version, written with your credentials, "
    "only in namespaces where you may patch ModelVersions and update ModelEndpoints. The operator "
    "withdraws them from every route at once "
    "(their share goes to the newest eligible unaffected version; with nothing eligible the route answers "
    "503 with x-model-unavailable: quarantined) and refuses their promotion, writing no spec. Prints the "
    "blast radius and the Git change that makes it permanent. Exit 4 when nothing matches.",
    epilog="[bold]Examples[/bold]\n\n"
    "  kubectl models quarantine --dataset fraud-tx@2026-10-01 --dry-run -A\n\n"
    '  kubectl models quarantine --commit 3f2a9c1 --reason "label leak in feature join"',
)
def quarantine(
    ctx: typer.Context,
    dataset: Dataset = None,
    commit: Commit = None,
    version: Version = None,
    reason: Reason = "",
    all_namespaces: AllNamespaces = False,
    dry_run: DryRun = False,
    timeout: Timeout = 60,
    no_wait: NoWait = False,
) -> None:
    """Quarantine every version built from a bad dataset or commit (see --help)."""
    g, sel, why = _asked(ctx, (dataset, commit, version), reason, dry_run, "quarantined")
    cluster = g.cluster
    views = [
        v for o in cluster.list(MODELVERSIONS, all_namespaces=all_namespaces) if (v := QP.version_view(o))
    ]
    hit = Q.affected(sel, views)
    if not hit:
        raise QP.nothing_matched(sel, _where(cluster, all_namespaces))
    writable = {ns: _authority(cluster, ns) for ns in sorted({v.namespace for v in hit})}
    endpoints = {_key(e): e for e in cluster.list(MODELENDPOINTS, all_namespaces=all_namespaces)}
    radius = Q.blast_radius(sel, views, [QP.endpoint_view(e) for e in endpoints.values()], writable)
    if not radius.versions:
        raise QP.nothing_writable(sel, radius)
    changes = {
        f"{h.namespace}/{h.endpoint}": QP.git_change(endpoints[f"{h.namespace}/{h.endpoint}"], h)
        for h in radius.endpoints
    }
    if dry_run:
        _show(g, QP.Outcome(sel.text(), why, True, radius, (), changes))
        return
    actor = cluster.current_user()
    written = _write_all(
        cluster,
        [(v.namespace, v.name) for v in radius.new],
        lambda o: QP.quarantine_patch(o, sel, why, actor),
    )
    settled = None if no_wait else _settle(cluster, radius, timeout)
    _show(g, QP.Outcome(sel.text(), why, False, radius, written, changes, settled))


@app.command(
    help="Lift a quarantine (the same selector) where you may change endpoints; recorded with you and "
    "why.\n\n"
    "Removes the selector from every version it marks, in namespaces where you may patch ModelVersions "
    "and update ModelEndpoints (written with your credentials). A version still marked by another "
    "selector stays quarantined. Exit 4 when the selector marks nothing.",
    epilog="[bold]Example[/bold]\n\n"
    '  kubectl models unquarantine --dataset fraud-tx@2026-10-01 -A --reason "re-audited: clean"',
)
def unquarantine(
    ctx: typer.Context,
    dataset: Dataset = None,
    commit: Commit = None,
    version: Version = None,
    reason: Reason = "",
    all_namespaces: AllNamespaces = False,
    dry_run: DryRun = False,
) -> None:
    """Lift a quarantine (see --help)."""
    g, sel, why = _asked(ctx, (dataset, commit, version), reason, dry_run, "lifted")
    cluster = g.cluster
    marked = [o for o in cluster.list(MODELVERSIONS, all_namespaces=all_namespaces) if QP.lifted_by(o, sel)]
    if not marked:
        raise Refused(
            f"no ModelVersion in {_where(cluster, all_namespaces)} is quarantined by {sel.text()}",
            QP.EXIT_NO_MATCH,
        )
    spaces = sorted({str(meta_of(o).get("namespace")) for o in marked})
    skipped = {ns: w for ns in spaces if (w := _authority(cluster, ns))}
    mine = [o for o in marked if meta_of(o).get("namespace") not in skipped]
    if not mine:
        raise Refused(f"{sel.text()} marks versions only where you may not lift it: {skipped}", EXIT_FAILED)
    rows = [
        (
            _key(o),
            tuple(
                s
                for s in Q.in_force((meta_of(o).get("annotations") or {}).get(QUARANTINED_ANNOTATION))
                if s != sel.text()
            ),
        )
        for o in mine
    ]
    written: tuple[str, ...] = ()
    if not dry_run:
        actor = cluster.current_user()
        written = _write_all(
            cluster,
            [(str(meta_of(o)["namespace"]), str(meta_of(o)["name"])) for o in mine],
            lambda o: QP.lift_patch(o, sel, why, actor),
        )
    data = {"selector": sel.text(), "action": "unquarantine", "reason": why, "dryRun": dry_run,
            "versions": [{"name": k, "stillQuarantinedBy": list(r)} for k, r in rows],
            "skippedNamespaces": skipped, "written": list(written)}  # fmt: skip
    show(g, data, lambda: _text(QP.lift_text(sel, why, dry_run, rows, skipped)))


# ---- helpers ----------------------------------------------------------------------------------------
def _text(text: str, style: str = "") -> Any:
    from rich.text import Text

    return Text(text, style=style)


def _show(g: Globals, o: QP.Outcome) -> None:
    warn = any(h.closes for h in o.radius.endpoints)
    show(g, QP.data(o), lambda: _text(QP.text(o), "yellow" if warn else ""))


def _key(obj: dict[str, Any]) -> str:
    md = meta_of(obj)
    return f"{md.get('namespace')}/{md.get('name')}"


def _where(cluster: Cluster, all_namespaces: bool) -> str:
    return "any namespace you can list" if all_namespaces else f"namespace {cluster.namespace}"


def _authority(cluster: Cluster, namespace: str) -> str:
    """ "" when the caller may change endpoints and versions in ``namespace`` (reading is not enough);
    else why not. Asked of the API server as the caller (SelfSubjectAccessReview)."""
    return cluster.may("patch", MODELVERSIONS, namespace) or cluster.may("update", MODELENDPOINTS, namespace)


def _write_all(cluster: Cluster, targets: list[tuple[str, str]], patch_for: Any) -> tuple[str, ...]:
    """One merge patch per version, each read fresh and retried on a conflict (a concurrent quarantine
    or edit); a refusal stops with what was written so far (exit 1)."""
    written: list[str] = []
    for ns, name in targets:
        for attempt in range(4):
            obj = cluster.get(MODELVERSIONS, name, namespace=ns)
            try:
                cluster.merge_patch(MODELVERSIONS, name, patch_for(obj), namespace=ns)
                written.append(f"{ns}/{name}")
                break
            except ClusterError as e:
                if e.status == 409 and attempt < 3:
                    continue
                done = ", ".join(written) or "none"
                raise Refused(f"{ns}/{name}: {e.message} (written so far: {done})", EXIT_FAILED) from None
    return tuple(written)


def _settle(cluster: Cluster, radius: Q.Radius, timeout: float) -> dict[str, dict[str, int]]:
    """Until every affected endpoint's status gives the affected variants no weight (or the route is
    closed): the weights it routes then. Exit 3 on timeout, saying where it stands."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, int]] = {}
    with waiting("waiting for the routes to drop the quarantined versions"):
        while True:
            pending = []
            for h in radius.endpoints:
                key = f"{h.namespace}/{h.endpoint}"
                st = status_of(cluster.get(MODELENDPOINTS, h.endpoint, namespace=h.namespace))
                weights = {str(k): int(v or 0) for k, v in (st.get("effectiveWeights") or {}).items()}
                seen[key] = weights
                if any(weights.get(n, 0) > 0 for n in h.affected) and not st.get("closed"):
                    pending.append(key)
            if not pending:
                return seen
            if time.monotonic() >= deadline:
                raise Refused(
                    f"timed out after {timeout:g}s: the quarantine is written, but {', '.join(pending)} "
                    "still route an affected version (the operator moves them in its next route update)",
                    EXIT_TIMEOUT,
                )
            time.sleep(0.5)
