"""`kubectl models search | lineage | approve`: find versions by their metadata, show where one came
from and where it went, and approve one for a stage as yourself.

The views are pure functions of the objects (``search_rows``, ``lineage_view``), tested without a
cluster; the commands only list, get and create.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelversioning.api.modelversion import expected_name
from modelversioning.api.wire import ARTIFACT_DELETED_ANNOTATION, MODEL, MODELAPPROVAL, TAG_LABEL_PREFIX
from modelversioning.cli.models.actions import Refused
from modelversioning.cli.models.kube import MODELVERSIONS, ClusterError

MODELS, MODELAPPROVALS = MODEL, MODELAPPROVAL
TAG_PREFIX = TAG_LABEL_PREFIX

registry_app = typer.Typer(add_completion=False)

# ---- search: pure -------------------------------------------------------------------------------

_WHERE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.:-]*)\s*(>=|<=|==|!=|>|<|=)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}  # fmt: skip


def parse_where(text: str) -> tuple[str, str, float]:
    m = _WHERE.match(text)
    if m is None:
        raise typer.BadParameter(f"{text!r}: use METRIC OP NUMBER, e.g. 'auc>=0.94' (op: >= <= > < == !=)")
    return m.group(1), m.group(2), float(m.group(3))


@dataclass(frozen=True)
class Filters:
    model: str | None = None
    stage: str | None = None
    tags: tuple[str, ...] = ()
    author: str | None = None
    dataset: str | None = None  # NAME, NAME@VERSION or NAME@SHA256 (a prefix of 8+ hex digits will do)
    commit: str | None = None  # a prefix
    where: tuple[tuple[str, str, float], ...] = field(default_factory=tuple)


def matches(mv: Mapping[str, Any], f: Filters) -> bool:
    spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
    lin = spec.get("lineage") or {}
    ds = lin.get("dataset") or {}
    labels = md.get("labels") or {}
    metrics = spec.get("metrics") or {}
    if f.model and spec.get("model") != f.model:
        return False
    if f.stage and (st.get("stage") or "") != f.stage:
        return False
    if any(labels.get(TAG_PREFIX + t) is None for t in f.tags):
        return False
    if f.author and f.author.lower() not in str(lin.get("author") or "").lower():
        return False
    if f.dataset:
        name, _, version = f.dataset.partition("@")
        if ds.get("name") != name or (version and not _same_dataset(ds, version)):
            return False
    if f.commit and not str(lin.get("codeCommit") or "").startswith(f.commit.lower()):
        return False
    return all(k in metrics and _OPS[op](float(metrics[k]), v) for k, op, v in f.where)


def _same_dataset(ds: Mapping[str, Any], wanted: str) -> bool:
    """``wanted`` is the dataset's version, or its sha256 (``sha256:`` optional; 8+ hex digits)."""
    if ds.get("version") == wanted:
        return True
    digest = wanted.removeprefix("sha256:").lower()
    sha = str(ds.get("sha256") or "").lower()
    return bool(sha) and len(digest) >= 8 and sha.startswith(digest)


def search_rows(mvs: Sequence[Mapping[str, Any]], f: Filters) -> list[dict[str, Any]]:
    rows = []
    for mv in mvs:
        if not matches(mv, f):
            continue
        spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
        lin = spec.get("lineage") or {}
        ds = lin.get("dataset") or {}
        labels = md.get("labels") or {}
        rows.append(
            {
                "namespace": md.get("namespace"),
                "model": spec.get("model"),
                "version": spec.get("version"),
                "stage": st.get("stage"),
                "author": lin.get("author"),
                "dataset": f"{ds.get('name')}@{ds.get('version') or str(ds.get('sha256', ''))[:12]}",
                "codeCommit": lin.get("codeCommit"),
                "metrics": dict(spec.get("metrics") or {}),
                "tags": sorted(k.removeprefix(TAG_PREFIX) for k in labels if k.startswith(TAG_PREFIX)),
            }
        )
    return sorted(rows, key=lambda r: (str(r["namespace"]), str(r["model"]), _semver_key(str(r["version"]))))


def _semver_key(v: str) -> tuple[Any, ...]:
    core, _, pre = v.partition("-")
    return (*(int(p) if p.isdigit() else 0 for p in core.split(".")), 0 if pre else 1, pre)


def search_table(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    cols = ["NAMESPACE", "MODEL", "VERSION", "STAGE", "AUTHOR", "DATASET", "COMMIT", "METRICS", "TAGS"]
    for c in cols:
        t.add_column(c)
    for r in rows:
        shown = {k: r["metrics"][k] for k in (metric_names or r["metrics"]) if k in r["metrics"]}
        t.add_row(
            str(r["namespace"]), str(r["model"]), str(r["version"]), str(r["stage"] or "<none>"),
            str(r["author"] or "<none>"), str(r["dataset"]), str(r["codeCommit"] or "")[:10],
            " ".join(f"{k}={v:g}" for k, v in shown.items()), ",".join(r["tags"]) or "<none>",
        )  # fmt: skip
    return t


# ---- lineage: pure ------------------------------------------------------------------------------


def lineage_view(
    mv: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]], model: Mapping[str, Any] | None
) -> dict[str, Any]:
    spec, st, md = mv.get("spec") or {}, mv.get("status") or {}, mv.get("metadata") or {}
    art = spec.get("artifact") or {}
    verified = st.get("artifact") or {}
    ann = md.get("annotations") or {}
    digest = str(art.get("sha256", ""))
    mine = [a for a in approvals if (a.get("spec") or {}).get("sha256") == digest]
    record = next(
        (
            r
            for r in ((model or {}).get("status") or {}).get("versions") or []
            if r.get("version") == spec.get("version")
        ),
        None,
    )
    return {
        "model": spec.get("model"),
        "version": spec.get("version"),
        "namespace": md.get("namespace"),
        "producedBy": dict(spec.get("lineage") or {}),
        "artifact": {
            "uri": art.get("uri"),
            "sha256": digest,
            "verifiedAt": verified.get("verifiedAt"),
            "deleted": ARTIFACT_DELETED_ANNOTATION in ann,
        },
        "metrics": dict(spec.get("metrics") or {}),
        "registry": (
            {
                "firstSeen": record.get("firstSeen"),
                "digest": record.get("digest"),
                "sameDigest": record.get("digest") == digest,
            }
            if record
            else None
        ),
        "stage": st.get("stage"),
        "stages": [
            {k: h.get(k) for k in ("from", "to", "at", "actor", "reason", "approvedBy") if h.get(k)}
            for h in st.get("history") or []
        ],
        "approvals": sorted(
            (
                {
                    "stage": (a.get("spec") or {}).get("stage"),
                    "approver": (a.get("spec") or {}).get("approver"),
                    "at": (a.get("metadata") or {}).get("creationTimestamp"),
                    "comment": (a.get("spec") or {}).get("comment"),
                }
                for a in mine
            ),
            key=lambda a: str(a["at"]),
        ),
        "servedBy": list(st.get("servedBy") or []),
        "servingHistory": list(st.get("servingHistory") or []),
        "endpoints": _endpoint_story(st),
        "rollouts": list(st.get("rollouts") or []),
    }


def _endpoint_story(st: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which endpoints served it and when: the rollouts it took part in, the periods an endpoint variant
    routed traffic to it (status.servingHistory; an open one with today's weight), and where it is
    deployed now without traffic (status.servedBy at 0%). Oldest first, "now" last."""
    out = [
        {"endpoint": r.get("endpoint"), "at": r.get("at"), "what": f"rollout {r.get('result')}"}
        for r in st.get("rollouts") or []
    ]
    weights = {(s.get("endpoint"), s.get("variant")): s.get("weight") for s in st.get("servedBy") or []}
    open_ = set()
    for p in st.get("servingHistory") or []:
        key = (p.get("endpoint"), p.get("variant"))
        what = f"{'mirrored by' if p.get('mirror') else 'served by'} variant {p.get('variant')}"
        if not p.get("to"):
            open_.add(key)
            if key in weights:
                what += f", at {weights[key]}% now"
        out.append(
            {"endpoint": p.get("endpoint"), "at": p.get("from"), "until": p.get("to") or "now", "what": what}
        )
    out += [
        {
            "endpoint": s.get("endpoint"),
            "at": "now",
            "what": f"variant {s.get('variant')} at {s.get('weight')}%",
        }
        for s in st.get("servedBy") or []
        if (s.get("endpoint"), s.get("variant")) not in open_
    ]
    return sorted(out, key=lambda e: (e["at"] == "now", str(e["at"])))


def lineage_renderable(v: Mapping[str, Any]) -> Group:
    lin = v["producedBy"]
    ds = lin.get("dataset") or {}
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    none = "<none>"
    art = v["artifact"]
    gone = "  (deleted from storage)" if art["deleted"] else ""
    hyper = " ".join(f"{a}={b}" for a, b in (lin.get("hyperparameters") or {}).items())
    trained = (
        f"{lin.get('trainedAt') or none} by {lin.get('author') or none} with {lin.get('framework') or none}"
    )
    for k, val in (
        ("Model", f"{v['model']} {v['version']}  ({v['stage'] or none})"),
        ("Code", f"{lin.get('codeRepository') or none} @ {lin.get('codeCommit')}"),
        ("Dataset", f"{ds.get('name')} {ds.get('version') or ''} {str(ds.get('sha256') or '')[:12]}".strip()),  # noqa: E501
        ("Trained", trained),
        ("Hyperparameters", hyper or none),
        ("Artifact", f"{art['uri']} sha256:{art['sha256'][:12]}{gone}"),
        ("Metrics", " ".join(f"{a}={b:g}" for a, b in v["metrics"].items())),
        ("First registered", (v["registry"] or {}).get("firstSeen") or "<no Model>"),
    ):  # fmt: skip
        head.add_row(k, str(val))
    parts: list[Any] = [head]
    stages = Table(title="Stages", box=None, header_style="bold", title_justify="left")
    for c in ("FROM", "TO", "AT", "ACTOR", "APPROVED BY", "REASON"):
        stages.add_column(c)
    for h in v["stages"]:
        stages.add_row(
            h.get("from") or "(new)",
            h.get("to", ""),
            h.get("at", ""),
            h.get("actor", ""),
            ",".join(h.get("approvedBy") or []),
            h.get("reason", ""),
        )
    parts.append(stages)
    if v["approvals"]:
        ap = Table(title="Approvals", box=None, header_style="bold", title_justify="left")
        for c in ("STAGE", "APPROVER", "AT", "COMMENT"):
            ap.add_column(c)
        for a in v["approvals"]:
            ap.add_row(str(a["stage"]), str(a["approver"]), str(a["at"]), str(a.get("comment") or ""))
        parts.append(ap)
    ep = Table(title="Endpoints", box=None, header_style="bold", title_justify="left")
    for c in ("ENDPOINT", "WHEN", "UNTIL", "WHAT"):
        ep.add_column(c)
    for e in v["endpoints"]:
        ep.add_row(str(e["endpoint"]), str(e["at"]), str(e.get("until") or ""), str(e["what"]))
    if not v["endpoints"]:
        ep.add_row("<none>", "", "", "")
    parts.append(ep)
    return Group(*parts)


def approval_body(
    model: str, version: str, sha256: str, stage: str, user: str, comment: str | None
) -> dict[str, Any]:
    who = hashlib.sha256(user.encode()).hexdigest()[:10]
    spec: dict[str, Any] = {
        "model": model,
        "version": version,
        "sha256": sha256,
        "stage": stage,
        "approver": user,
    }
    if comment:
        spec["comment"] = comment
    return {
        "apiVersion": MODELAPPROVAL.api_version,
        "kind": MODELAPPROVAL.kind,
        "metadata": {"name": f"{expected_name(model, version)}-{stage}-{who}"[:253]},
        "spec": spec,
    }


# ---- commands ------------------------------------------------------------------------------------


def _g(ctx: typer.Context) -> Any:
    from modelversioning.cli.models.app import _globals

    return _globals(ctx)


def _show(ctx: typer.Context, data: Any, table: Callable[[], Any]) -> None:
    from modelversioning.cli.models.app import _show as show

    show(_g(ctx), data, table)


def search(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Current stage (status.stage).")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help=f"Has the label {TAG_PREFIX}TAG (repeatable).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="Label selector, as kubectl's -l.")
    ] = None,
    author: Annotated[str | None, typer.Option("--author", help="lineage.author contains this.")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="NAME, NAME@VERSION or NAME@SHA256 (8+ hex digits).")
    ] = None,
    commit: Annotated[
        str | None, typer.Option("--commit", help="lineage.codeCommit starts with this.")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="Metric threshold, e.g. 'auc>=0.94' (repeatable).")
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces.")] = False,
) -> None:
    """Find versions by metadata: stage, tags/labels, author, dataset, code commit, metric thresholds."""
    f = Filters(
        model, stage, tuple(tag or ()), author, dataset, commit, tuple(parse_where(w) for w in where or ())
    )
    g = _g(ctx)
    rows = search_rows(g.cluster.list(MODELVERSIONS, all_namespaces=all_namespaces, label_selector=label), f)
    _show(ctx, rows, lambda: search_table(rows, [w[0] for w in f.where]))


def lineage(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
) -> None:
    """What produced a version, its stages and approvals, the endpoints and rollouts it served in."""
    g = _g(ctx)
    mv = g.cluster.get(MODELVERSIONS, expected_name(model, version))
    approvals = [
        a
        for a in g.cluster.list(MODELAPPROVALS)
        if (a.get("spec") or {}).get("model") == model and (a.get("spec") or {}).get("version") == version
    ]
    view = lineage_view(mv, approvals, g.cluster.get_or_none(MODELS, model))
    _show(ctx, view, lambda: lineage_renderable(view))


def approve(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    stage: Annotated[str, typer.Option("--stage", help="The stage you approve it for (the hop's target).")],
    comment: Annotated[str | None, typer.Option("--comment", help="Why (recorded).")] = None,
) -> None:
    """Approve a version (its current digest) for a stage, as the user the API server says you are."""
    g = _g(ctx)
    mv = g.cluster.get(MODELVERSIONS, expected_name(model, version))
    sha = str(((mv.get("spec") or {}).get("artifact") or {}).get("sha256", ""))
    user = g.cluster.current_user()
    body = approval_body(model, version, sha, stage, user, comment)
    try:
        g.cluster.create(MODELAPPROVALS, body)
        result = "approved"
    except ClusterError as e:
        if e.status != 409:
            raise Refused(f"approval refused: {e}") from None
        result = "already approved"
    data = {
        "model": model,
        "version": version,
        "sha256": sha,
        "stage": stage,
        "approver": user,
        "result": result,
    }
    _show(ctx, data, lambda: Text(f"{model} {version} (sha256 {sha[:12]}) {result} for {stage} by {user}"))


def register(app: typer.Typer) -> None:
    app.command(
        epilog="[bold]Example[/bold]\n\n  kubectl models search -A --stage production --where 'auc>=0.94'"
    )(search)
    app.command(epilog="[bold]Example[/bold]\n\n  kubectl models lineage fraud-detector 2.4.1 -o yaml")(
        lineage
    )
    app.command(
        epilog="[bold]Example[/bold]\n\n  kubectl models approve fraud-detector 2.4.1 --stage production"
    )(approve)
