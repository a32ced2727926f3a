"""``kubectl models wave status|next PLAN``: regional waves as Git changes (issue 30).

The plan (api.fleet.WavePlan) lists the regions in order with the overlay file that pins what each one
serves. The first region's overlay is the target (a person changed it, by a pull request); ``next``
reads the previous region live with your kubeconfig and, when its gate holds (domain.waves.gate),
prints (``--print``: a patch for a pipeline that opens a pull request) or commits (``--commit``) the
change of the next region's overlay. The GitOps engine of that region applies it; its operator rolls
it out as any other change.

Exit codes: 0 promoted (or printed), or nothing left to promote; 1 refused (a gate refuses: rolled back,
the wrong cluster; the overlays are out of order; the commit raced) or the previous region is unknown
(unreachable: fail closed); 2 usage (a bad plan); 4 not yet (the gate waits: soak, rollout, GitOps).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelversioning.cli.models.context import globals_of, show
from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused

app = typer.Typer(help="Regional waves as Git changes: a plan's regions, promoted one after another.")

EXIT_PENDING = 4
PlanFile = Annotated[str, typer.Argument(help="The WavePlan file (YAML).")]
Repo = Annotated[
    str | None, typer.Option("--repo", help="The Git working tree of the overlays (default: the plan's).")
]
Timeout = Annotated[
    float, typer.Option("--region-timeout", min=0.1, help="Seconds each region has to answer.")
]


def _load(plan_file: str, repo: str | None) -> tuple[Any, Path]:
    import yaml

    from modelversioning.api.fleet import load_plan
    from modelversioning.cli.models import wave_git
    from modelversioning.domain.waves import load_document

    try:
        doc = load_document(Path(plan_file).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise Refused(f"cannot read the wave plan {plan_file}: {e}", EXIT_USAGE) from None
    try:
        plan = load_plan(doc, plan_file)
    except ValueError as e:
        raise Refused(str(e), EXIT_USAGE) from None
    root = Path(repo) if repo else wave_git.toplevel(Path(plan_file).resolve().parent)
    return plan, root


def _decide(
    ctx: typer.Context, plan_file: str, repo: str | None, timeout: float, all_regions: bool
) -> dict[str, Any]:
    """Read the overlays and the regions; the wave's position and the gate of its next region."""
    from modelversioning.cli.models import fleet, wave_git
    from modelversioning.domain import waves

    g = globals_of(ctx)
    plan, root = _load(plan_file, repo)
    base = wave_git.head(root)
    regions = plan.spec.regions
    texts = [wave_git.read(root, r.overlay) for r in regions]
    try:
        declared = [waves.declared_in(t, r.overlay) for t, r in zip(texts, regions, strict=True)]
    except ValueError as e:
        raise Refused(str(e), EXIT_FAILED) from None
    pos = waves.position([r.name for r in regions], declared)
    version = pos.target.version
    targets = [
        fleet.Target(r.name, str(r.context), fleet.region_kubeconfig(r.kubeconfig, plan_file, g, root))
        for r in regions
    ]
    ask = list(range(len(regions))) if all_regions else ([pos.previous] if pos.previous is not None else [])
    observed = _observe(g, plan, [targets[i] for i in ask], version, timeout)
    view: dict[str, Any] = {
        "plan": plan_file,
        "endpoint": plan.spec.endpoint,
        "target": pos.target.text(),
        "version": version,
        "promoted": list(pos.promoted),
        "next": regions[pos.next].name if pos.next is not None else None,
        "problem": pos.problem or None,
        "regions": [
            _region_row(r, declared[i], pos.target, observed.get(r.name)) for i, r in enumerate(regions)
        ],
        "base": base,
    }
    if pos.previous is not None and pos.next is not None:
        prev = observed[regions[pos.previous].name]
        verdict = _gate(plan, prev, pos.target)
        view["gate"] = {"region": prev.region, "verdict": verdict.verdict, "reasons": list(verdict.reasons)}
        nxt, prev_target = regions[pos.next], targets[pos.previous]

        def regate() -> tuple[Any, Any]:
            """The previous region read and gated again (under the commit's lock, right before it)."""
            again = _observe(g, plan, [prev_target], version, timeout)[prev.region]
            return again, _gate(plan, again, pos.target)

        view["_promote"] = (nxt, texts[pos.next], prev, verdict, pos.target, regate)
    return view


def _observe(g: Any, plan: Any, targets: list[Any], version: str, timeout: float) -> dict[str, Any]:
    """region -> Observed: the plan's endpoint in each of ``targets``, read at once (fleet.read_all)."""
    from modelversioning.cli.models import fleet, fleet_views

    reads = fleet.read_all(
        targets, lambda t: fleet.read_endpoint(g, t, plan.spec.endpoint, plan.spec.namespace), timeout
    )
    return {r.target.region: fleet_views.observed(r, version) for r in reads}


def _gate(plan: Any, prev: Any, target: Any) -> Any:
    from modelversioning.domain import waves

    gt = plan.spec.gates
    params = waves.GateParams(plan.soak_seconds, gt.min_weight, gt.rollout_succeeded, gt.ready, gt.stage)
    return waves.gate(prev, target, params, time.time())


def _region_row(r: Any, declared: Any, target: Any, obs: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"region": r.name, "context": r.context, "overlay": r.overlay,
                           "declares": declared.text(), "declaresTarget": declared == target}  # fmt: skip
    if obs is not None:
        if not obs.reachable:
            row["live"] = f"Unknown: {obs.error}"
        elif not obs.found:
            row["live"] = "no such endpoint"
        else:
            split = ", ".join(f"{n}={v}@{w}%" for n, (v, w) in sorted(obs.serving.items()))
            row["live"] = f"{split}; rollout {obs.rollout_phase or 'none'}; Ready={obs.ready}"
    return row


def _render(view: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, pad_edge=False)
    for c in ("REGION", "OVERLAY DECLARES", "LIVE"):
        t.add_column(c)
    for r in view["regions"]:
        mark = Text(" (target)" if r["declaresTarget"] else "", style="green")
        t.add_row(r["region"], Text(r["declares"]).append(mark), r.get("live", "-"))
    parts: list[Any] = [Text(f"wave {view['endpoint']}: {view['target']}", style="bold"), t]
    if view.get("problem"):
        parts.append(Text(view["problem"], style="red"))
    elif view.get("next") is None:
        parts.append(Text("complete: every region declares the target", style="green"))
    gate = view.get("gate")
    if gate:
        style = {"pass": "green", "wait": "yellow"}.get(gate["verdict"], "red")
        parts.append(Text(f"gate for {view['next']} (in {gate['region']}): {gate['verdict']}", style=style))
        parts += [Text(f"  {x}") for x in gate["reasons"]]
    if view.get("commit"):
        parts.append(Text(f"committed {view['commit'][:12]}: {view['next']} promoted", style="green"))
    return Group(*parts)


def _public(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if not k.startswith("_")}


@app.command(epilog="[bold]Example[/bold]\n\n  kubectl models wave status waves/fraud-detector.yaml")
def status(ctx: typer.Context, plan: PlanFile, repo: Repo = None, region_timeout: Timeout = 10.0) -> None:
    """Where a wave stands: what each region's overlay declares and serves live, and the next gate."""
    view = _decide(ctx, plan, repo, region_timeout, all_regions=True)
    show(globals_of(ctx), _public(view), lambda: _render(view))


@app.command(
    "next",
    epilog="[bold]Examples[/bold]\n\n"
    "  kubectl models wave next waves/fraud-detector.yaml --print | git apply\n\n"
    "  kubectl models wave next waves/fraud-detector.yaml --commit && git push",
)
def next_(
    ctx: typer.Context,
    plan: PlanFile,
    print_: Annotated[
        bool, typer.Option("--print", help="Print the patch of the next overlay (git apply).")
    ] = False,
    commit: Annotated[
        bool, typer.Option("--commit", help="Commit it to the working tree (not pushed).")
    ] = False,
    repo: Repo = None,
    region_timeout: Timeout = 10.0,
) -> None:
    """Promote the next region when the previous region's gate holds: print or commit its overlay's change."""
    if print_ == commit:
        raise Refused("give one of --print and --commit", EXIT_USAGE)
    from modelversioning.cli.models import wave_git
    from modelversioning.domain import waves

    g = globals_of(ctx)
    view = _decide(ctx, plan, repo, region_timeout, all_regions=False)
    if view.get("problem"):
        show(g, _public(view), lambda: _render(view))
        raise typer.Exit(EXIT_FAILED)
    if view.get("next") is None:
        show(g, _public(view), lambda: _render(view))
        return
    nxt, before, prev, verdict, target, regate = view.pop("_promote")
    if verdict.verdict != "pass":
        show(g, _public(view), lambda: _render(view))
        raise typer.Exit(EXIT_PENDING if verdict.verdict == "wait" else EXIT_FAILED)
    root = Path(repo) if repo else wave_git.toplevel(Path(plan).resolve().parent)
    try:
        after = waves.promote_overlay(before, target, nxt.overlay)
    except ValueError as e:
        raise Refused(str(e), EXIT_FAILED) from None
    patch = wave_git.unified_diff(nxt.overlay, before, after)
    message = _message(view, nxt, prev, verdict, before)
    view["patch"] = patch
    if print_:
        if g.fmt().value != "table":
            show(g, _public(view), lambda: None)
            return
        from modelversioning.cli.models import terminal

        terminal.out("".join(f"# {ln}\n" for ln in message.splitlines()) + patch)
        return

    def confirm() -> str:
        """Under the commit's lock, right before the commit: the previous region read and gated again
        (a rollback that started since the first read stops the wave here); the message records this
        read, the one the commit rests on."""
        again, still = regate()
        if still.verdict != "pass":
            view["gate"] = {"region": again.region, "verdict": still.verdict, "reasons": list(still.reasons)}
            raise Refused(
                f"the gate for {nxt.name} no longer holds: {again.region}, read again right before the "
                f"commit: {' '.join(still.reasons)}; nothing was committed",
                EXIT_FAILED,
            )
        return _message(view, nxt, again, still, before)

    view["commit"] = wave_git.commit_overlay(root, nxt.overlay, view["base"], before, after, confirm)
    show(g, _public(view), lambda: _render(view))


def _message(view: dict[str, Any], nxt: Any, prev: Any, verdict: Any, before: str) -> str:
    from modelversioning.cli.models import wave_git
    from modelversioning.cli.models.terminal import clean
    from modelversioning.domain.timestamps import rfc3339_ms

    since = rfc3339_ms(verdict.since) if verdict.since is not None else "-"
    return clean(
        f"wave {view['endpoint']}: promote {nxt.name} to {view['target']}\n\n"
        f"{' '.join(verdict.reasons)}\n\n"
        f"Wave-Plan: {view['plan']}\n"
        f"Wave-Region: {nxt.name}\n"
        f"Wave-Gate: {prev.region} generation={prev.generation} serving-since={since}\n"
        f"Wave-Base: {view['base']}\n"
        f"Wave-Overlay-Before: sha256:{wave_git.digest(before)}\n"
    )  # the gate's reasons quote the region's status: no terminal controls in the message or --print
