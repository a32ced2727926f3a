"""Reading several regions at once (issue 30): which clusters (``--contexts a,b``, ``--all-contexts``,
``--fleet FILE``), each read with the person's own kubeconfig, all at once, each within a deadline.

A region that does not answer in time, refuses, or cannot be reached is a :class:`Read` with an
``error`` (reported as unknown by the views, never as healthy). The reads run on daemon threads: a
cluster that never answers is left behind when the command ends, never waited for.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import typer

from modelversioning.cli.models.context import Globals
from modelversioning.cli.models.errors import EXIT_USAGE, Refused
from modelversioning.cli.models.kube import Cluster, ClusterError

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0

# The options that choose the regions, shared by `which`, `ui` (and the same names in `lineage`).
Contexts = Annotated[
    str | None,
    typer.Option(
        "--contexts",
        help="Regions: kubeconfig contexts, comma-separated (each region read with your own credentials, "
        "all at once).",
    ),
]
AllContexts = Annotated[bool, typer.Option("--all-contexts", help="Every context of the kubeconfig.")]
FleetFile = Annotated[
    str | None,
    typer.Option("--fleet", help="A Fleet or WavePlan file naming the regions and their contexts."),
]
RegionTimeout = Annotated[
    float,
    typer.Option("--region-timeout", min=0.1, help="Seconds each region has to answer (else: Unknown)."),
]


@dataclass(frozen=True)
class Target:
    region: str  # the plan's/fleet's name; with --contexts/--all-contexts: the context's name
    context: str
    kubeconfig: str | None = None


@dataclass(frozen=True)
class Read(Generic[T]):
    target: Target
    value: T | None = None
    error: str = ""  # set: unknown (unreachable, refused, no answer in time)
    seconds: float = 0.0


def targets(g: Globals, contexts: str | None, all_contexts: bool, fleet: str | None) -> list[Target]:
    """The regions to read, from exactly one of the three options."""
    given = [x for x in (contexts, all_contexts or None, fleet) if x]
    if len(given) > 1:
        raise Refused("give one of --contexts, --all-contexts and --fleet", EXIT_USAGE)
    if contexts is not None:
        names = [c.strip() for c in contexts.split(",") if c.strip()]
        if not names or len(set(names)) != len(names):
            raise Refused(
                f"--contexts {contexts!r}: give distinct context names, comma-separated", EXIT_USAGE
            )
        known = set(kubeconfig_contexts(g))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise Refused(f"context {', '.join(unknown)} is not in the kubeconfig", EXIT_USAGE)
        return [Target(n, n, g.kubeconfig) for n in names]
    if all_contexts:
        names = kubeconfig_contexts(g)
        if not names:
            raise Refused("the kubeconfig has no contexts", EXIT_USAGE)
        return [Target(n, n, g.kubeconfig) for n in names]
    assert fleet is not None
    return fleet_targets(g, fleet)


def kubeconfig_contexts(g: Globals) -> list[str]:
    doc = Cluster(g.kubeconfig)._config_doc or {}
    return [str(c.get("name")) for c in doc.get("contexts") or [] if c.get("name")]


def fleet_targets(g: Globals, path: str) -> list[Target]:
    import yaml

    from modelversioning.api.fleet import load_regions
    from modelversioning.domain.waves import load_document

    try:
        doc = load_document(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise Refused(f"cannot read the fleet file {path}: {e}", EXIT_USAGE) from None
    try:
        regions = load_regions(doc, path)
    except ValueError as e:
        raise Refused(str(e), EXIT_USAGE) from None
    return [Target(r.name, str(r.context), region_kubeconfig(r.kubeconfig, path, g)) for r in regions]


def region_kubeconfig(named: str | None, source: str, g: Globals, repo: Path | None = None) -> str | None:
    """The kubeconfig for a region whose Fleet/WavePlan file names one (else the reader's own).

    Those files live in a shared Git repository, so a ``kubeconfig:`` in them is not the reader's
    choice, and a kubeconfig runs programs (``exec`` credential plugins) and sends files
    (``tokenFile``) to the server it names. It is used only when it is the reader's own file: an
    absolute (or ``~``) path, outside the Git working tree that holds the file (symlinks resolved),
    owned by the reader and writable by no one else. Anything else is refused before any is read."""
    if named is None:
        return g.kubeconfig
    expanded = os.path.expanduser(named)
    why = ""
    if not os.path.isabs(expanded):
        why = "it must be an absolute or ~ path (a relative one is a file of the shared repository)"
    else:
        real = Path(expanded).resolve()
        tree = repo or _worktree_of(Path(source).resolve().parent)
        try:
            st = real.stat()
        except OSError as e:
            st, why = None, f"cannot read it: {e.strerror}"
        if tree is not None and real.is_relative_to(tree.resolve()):
            why = f"it is inside the repository {tree} that holds {source} (not the reader's own file)"
        elif st is not None and st.st_uid != os.getuid():
            why = "it is not owned by you"
        elif st is not None and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            why = "others can write it"
    if why:
        raise Refused(
            f"{source}: kubeconfig {named!r}: {why}; put the region's context in your own kubeconfig "
            "instead (a kubeconfig can run programs)",
            EXIT_USAGE,
        )
    return expanded


def _worktree_of(start: Path) -> Path | None:
    """The Git working tree holding ``start`` (its nearest ancestor with a .git), if any."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def cluster_of(g: Globals, t: Target, namespace: str | None = None) -> Cluster:
    return Cluster(t.kubeconfig, t.context, namespace or g.namespace)


def read_all(
    ts: list[Target], read: Callable[[Target], T], timeout: float = DEFAULT_TIMEOUT
) -> list[Read[T]]:
    """``read(target)`` for every target at once; each gets ``timeout`` seconds (from the start), in the
    targets' order. An exception or no answer in time is the Read's error."""
    results: dict[int, Read[T]] = {}
    lock = threading.Lock()
    start = time.monotonic()

    def run(i: int, t: Target) -> None:
        t0 = time.monotonic()
        try:
            value = read(t)
            r: Read[T] = Read(t, value, "", time.monotonic() - t0)
        except ClusterError as e:
            r = Read(t, None, e.message or "error", time.monotonic() - t0)
        except Refused as e:
            r = Read(t, None, e.message, time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - whatever went wrong, this region is unknown
            r = Read(t, None, f"{type(e).__name__}: {e}", time.monotonic() - t0)
        with lock:
            results.setdefault(i, r)

    threads = [threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(ts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, timeout - (time.monotonic() - start)))
    with lock:
        for i, t in enumerate(ts):
            results.setdefault(i, Read(t, None, f"no answer within {timeout:g}s", timeout))
        return [results[i] for i in range(len(ts))]


def read_endpoint(g: Globals, t: Target, endpoint: str, namespace: str | None = None) -> dict[str, Any]:
    """What ``which`` needs of one region: the endpoint (None: not there) and the model's versions."""
    from modelversioning.cli.models.kube import MODELENDPOINTS, MODELVERSIONS

    c = cluster_of(g, t, namespace)
    ep = c.get_or_none(MODELENDPOINTS, endpoint)
    if ep is None:
        return {"endpoint": None, "versions": [], "namespace": c.namespace}
    model = (ep.get("spec") or {}).get("model")
    mvs = [m for m in c.list(MODELVERSIONS) if (m.get("spec") or {}).get("model") == model]
    return {"endpoint": ep, "versions": mvs, "namespace": c.namespace}


def read_namespace(g: Globals, t: Target, namespace: str | None) -> dict[str, Any]:
    """What the web view's regions page needs of one region: every ModelEndpoint and ModelVersion in
    ``namespace`` (None: all namespaces), one LIST each."""
    from modelversioning.cli.models.kube import MODELENDPOINTS, MODELVERSIONS

    c = cluster_of(g, t, namespace or "default")
    endpoints, _ = c.list_from(MODELENDPOINTS, namespace)
    versions, _ = c.list_from(MODELVERSIONS, namespace)
    return {"endpoints": list(endpoints), "versions": list(versions)}
