"""``kubectl models drill ENDPOINT``: roll back to the fallback and forward again under real traffic, and
report the time to restore. The decisions are :mod:`..drill_plan`'s (pure); the rollback itself is
``kubectl models rollback``'s plan and patch (:mod:`..actions`), waited for on the route the same way.

Interrupted between its two writes (Ctrl-C, SIGTERM, an error, the route not following in time), the
drill puts the endpoint back before it exits (a second Ctrl-C during that is ignored); if even that
fails, the endpoint carries the drill's record (annotation ``modelversioning.io/drill``) and
``kubectl models drill ENDPOINT --restore`` finishes it."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from modelversioning.api.wire import HEADER_VERSION
from modelversioning.cli.models import actions, drill_plan
from modelversioning.cli.models.context import Globals, globals_of, show, waiting
from modelversioning.cli.models.drill_plan import Leg, Report, Sample
from modelversioning.cli.models.errors import EXIT_FAILED, Refused
from modelversioning.cli.models.kube import (
    MODELENDPOINTS,
    Cluster,
    ClusterError,
    Resource,
    WaitTimeout,
    route_resource,
)
from modelversioning.cli.models.output import Output
from modelversioning.cli.models.views import version_key

app = typer.Typer()



class Traffic:
    """Requests to the endpoint's URL every ``interval`` seconds in a thread: (time, status, version)."""

    def __init__(self, url: str, host: str | None, method: str, body: bytes | None, interval: float) -> None:
        self.url, self.host, self.method, self.body, self.interval = url, host, method, body, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-traffic", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _one(self) -> Sample:
        headers = {"content-type": "application/json"}
        if self.host:
            headers["host"] = self.host
        req = urllib.request.Request(self.url, data=self.body, method=self.method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - the caller's own URL
                r.read(65536)
                return (time.monotonic(), int(r.status), str(r.headers.get(HEADER_VERSION) or ""))
        except urllib.error.HTTPError as e:
            return (time.monotonic(), int(e.code), str(e.headers.get(HEADER_VERSION) or ""))
        except (OSError, ValueError):
            return (time.monotonic(), 0, "")

    def _run(self) -> None:
        while not self._stop.is_set():
            s = self._one()
            with self._lock:
                self.samples.append(s)
            self._stop.wait(self.interval)

    def seen(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def wait_for(self, version: str, since: float, timeout: float) -> bool:
        """Until an answer of ``version`` sent after ``since`` (False at the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t >= since and 200 <= c < 300 and v == version for t, c, v in self.seen()):
                return True
            time.sleep(0.02)
        return False


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, a pod stopped) interrupts the drill like Ctrl-C: it restores first."""

    def raise_interrupt(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (tests)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """The restore runs to its end: Ctrl-C and SIGTERM are ignored meanwhile."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@app.command(
    help="Roll back to the fallback and forward again under real traffic; report the time to restore.\n\n"
    "The fallback is what `kubectl models rollback` picks (the highest eligible live version below the "
    "newest serving one, or --to); the rollback is its patch, waited for on the route. With --url the drill "
    "sends requests through the gateway and measures, from each write, the first answer of the version it "
    "moves to (x-model-version) and the moment every answer comes from it; without --url only the route "
    "is timed. "
    "Refused unless the endpoint is RollbackReady (--force), when it is managed by GitOps (--gitops-ok once "
    "self-heal is paused) or mid-rollout. Interrupted, it puts the endpoint back before exiting; "
    "--restore finishes a drill that could not.",
    epilog="[bold]Examples[/bold]\n\n  kubectl models drill fraud --url http://gateway.example/v1/predict "
    "--host fraud.example.com --data '{\"inputs\": [1]}'\n\n  kubectl models drill fraud --restore",
)
def drill(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="ModelEndpoint name.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version (or variant) to drill to, as rollback --to.")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="URL to send requests to (through the gateway).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Host header of those requests.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Request body (JSON); sent with POST.")] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between requests.", min=0.005)
    ] = 0.05,
    hold: Annotated[
        float, typer.Option("--hold", help="Seconds on the fallback before going back.", min=0)
    ] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each step.", min=0)] = 60,
    force: Annotated[
        bool, typer.Option("--force", help="Even if not RollbackReady, or mid-rollout.")
    ] = False,
    gitops_ok: Annotated[
        bool,
        typer.Option("--gitops-ok", help="The endpoint is managed by GitOps and its self-heal is paused."),
    ] = False,
    restore: Annotated[bool, typer.Option("--restore", help="Only put back an interrupted drill.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (annotated during the drill).")] = None,
) -> None:
    """Roll back and forward under traffic; report the time to restore (see --help)."""
    g = globals_of(ctx)
    cluster = g.cluster
    ep = cluster.get(MODELENDPOINTS, endpoint)
    router_name = actions.router_of(ep)
    try:
        route = route_resource(router_name)
    except ValueError as e:
        raise Refused(str(e)) from None
    if restore:
        _restore_only(g, cluster, ep, router_name, route, timeout)
        return
    if (why := drill_plan.refusal(ep, force=force, gitops_ok=gitops_ok)) is not None:
        raise Refused(why)
    plan = actions.plan_rollback(ep, to, force)  # kubectl models rollback's plan
    if plan.noop:
        raise Refused(
            f"{endpoint}: all live traffic is already on {plan.target} ({plan.version}): nothing to drill"
        )
    versions = actions.variant_versions(ep)
    primary = versions.get(plan.rolled_back or "", "") or _serving_version(ep, plan)
    drill_id = uuid.uuid4().hex[:8]
    rec = drill_plan.record(ep, plan, drill_id, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    why = reason or f"drill {drill_id}: rollback to {plan.target} ({plan.version}) and back"
    req = actions.RollbackRequest(cluster.current_user(), why, to, force)
    body = data.encode() if data is not None else None
    traffic = Traffic(url, host, "POST" if body is not None else "GET", body, interval) if url else None
    with traffic or contextlib.nullcontext(), _sigterm_interrupts():
        report = _run(cluster, ep, plan, rec, req, primary, router_name, route, traffic, hold, timeout)
    show(g, report.data(), lambda: _text(report.text()), Output.table)
    if not report.restored:
        raise typer.Exit(EXIT_FAILED)


def _serving_version(ep: dict[str, Any], plan: actions.RollbackPlan) -> str:
    """With --to: the newest version carrying traffic now (what the drill moves away from)."""
    versions = actions.variant_versions(ep)
    now = [n for n, w in plan.before.items() if w > 0 and n != plan.target]
    return max((versions.get(n, "") for n in now), key=version_key, default="")


def _text(text: str) -> Any:
    from rich.text import Text

    return Text(text)


def _run(
    cluster: Cluster,
    ep: dict[str, Any],
    plan: actions.RollbackPlan,
    rec: dict[str, Any],
    req: actions.RollbackRequest,
    primary: str,
    router_name: str,
    route: Resource | None,
    traffic: Traffic | None,
    hold: float,
    timeout: float,
) -> Report:
    """Both steps; whatever happens after the first write, the second (the restore) is attempted."""
    notes: list[str] = []
    if traffic is not None and not traffic.wait_for(primary, 0.0, min(timeout, 30)):
        raise Refused(
            f"no answer of {primary} from the drill's --url within {min(timeout, 30):g}s: nothing to measure"
        )
    t0 = time.monotonic()
    rollback = Leg(plan.version, None, None, None)
    failure: BaseException | None = None
    try:  # from the first write on (a Ctrl-C while it is sent too): whatever happens, restore after
        _start(cluster, plan, ep, req, rec)
        routed = _wait_split(cluster, plan.endpoint, route, router_name, {plan.target: 100}, timeout)
        if traffic is not None and not traffic.wait_for(plan.version, t0, timeout):
            raise Refused(f"no answer of {plan.version} within {timeout:g}s of the rollback")
        time.sleep(hold)
        rollback = drill_plan.leg(
            traffic.seen() if traffic else [], t0, time.monotonic(), plan.version, routed - t0
        )
    except BaseException as e:  # noqa: BLE001 - Ctrl-C included: restore first, then report it
        failure = e
        rollback = drill_plan.leg(traffic.seen() if traffic else [], t0, time.monotonic(), plan.version, None)
        notes.append(
            f"interrupted during the rollback step ({type(e).__name__}: {e}); restored before exiting"
        )
    forward, restored = _forward(cluster, plan, primary, router_name, route, traffic, timeout, notes)
    sent = f"sent to {traffic.url}" if traffic else "none (--url not given): only the route is timed"
    report = Report(plan.endpoint, rec["id"], plan.target, plan.version, primary, rollback, forward, restored,
                    sent, tuple(notes))  # fmt: skip
    if failure is not None and restored:
        code = 130 if isinstance(failure, KeyboardInterrupt) else EXIT_FAILED
        raise Refused(f"drill interrupted; the endpoint is back as found.\n{report.text()}", code=code)
    return report


def _start(
    cluster: Cluster,
    plan: actions.RollbackPlan,
    ep: dict[str, Any],
    req: actions.RollbackRequest,
    rec: dict[str, Any],
) -> None:
    """The drill's first write: rollback's patch (guarded by the resourceVersion it was planned on)
    with the drill's record."""
    patch = drill_plan.start_patch(actions.rollback_patch(plan, ep, req), rec)
    try:
        cluster.merge_patch(MODELENDPOINTS, plan.endpoint, patch)
    except ClusterError as e:
        if e.status == 409:
            raise Refused(
                f"ModelEndpoint {plan.endpoint} changed while the drill started; run it again"
            ) from None
        raise


def _forward(
    cluster: Cluster,
    plan: actions.RollbackPlan,
    primary: str,
    router_name: str,
    route: Resource | None,
    traffic: Traffic | None,
    timeout: float,
    notes: list[str],
) -> tuple[Leg | None, bool]:
    """Put the endpoint back (the drill's second write) and time it; (the leg, restored)."""
    with _uninterruptible():
        t1 = time.monotonic()
        try:
            _restore(cluster, plan.endpoint)
        except (Refused, ClusterError) as e:
            msg = e.message
            notes.append(f"NOT restored: {msg}; finish with: kubectl models drill {plan.endpoint} --restore")
            return None, False
        want = {k: w for k, w in plan.before.items() if w > 0}
        try:
            routed: float | None = _wait_split(cluster, plan.endpoint, route, router_name, want, timeout) - t1
            if traffic is not None and primary and not traffic.wait_for(primary, t1, timeout):
                notes.append(
                    f"no answer of {primary} within {timeout:g}s of the restore (the spec is restored)"
                )
        except Refused as e:
            routed = None
            notes.append(f"the spec is restored; the route did not follow in time: {e.message}")
        return drill_plan.leg(traffic.seen() if traffic else [], t1, time.monotonic(), primary, routed), True


def _restore(cluster: Cluster, name: str) -> None:
    """The restore patch on the current object (three attempts on a conflict)."""
    for attempt in range(3):
        ep = cluster.get(MODELENDPOINTS, name)
        rec = drill_plan.read_record(ep)
        if rec is None:
            return  # nothing to restore (already done)
        try:
            patch = drill_plan.restore_patch(ep, rec, cluster.current_user())
            cluster.merge_patch(MODELENDPOINTS, name, patch)
            return
        except ClusterError as e:
            if e.status != 409 or attempt == 2:
                raise


def _wait_split(
    cluster: Cluster,
    name: str,
    route: Resource | None,
    router_name: str,
    want: dict[str, int],
    timeout: float,
) -> float:
    """Until the route (status.effectiveWeights for router none) carries ``want`` (weights > 0); the
    monotonic time it did. Refused at the timeout."""
    routed = route is not None

    def check(obj: dict[str, Any] | None) -> float | None:
        weights = actions.observed_weights(obj, router_name, routed) if obj is not None else {}
        return time.monotonic() if {k: w for k, w in weights.items() if w > 0} == want else None

    watched: Resource = route or MODELENDPOINTS
    try:
        with waiting(f"waiting for the {watched.kind} {name} to carry {want}"):
            return cluster.wait(watched, name, check, timeout)
    except WaitTimeout as e:
        seen = actions.observed_weights(e.last, router_name, routed) if e.last else {}
        raise Refused(
            f"timed out after {timeout:g}s: the {watched.kind} {name} still routes {seen}"
        ) from None


def _restore_only(
    g: Globals, cluster: Cluster, ep: dict[str, Any], router_name: str, route: Resource | None, timeout: float
) -> None:
    """--restore: put back what an interrupted drill recorded, then wait for the route to carry it."""
    name = str((ep.get("metadata") or {}).get("name"))
    rec = drill_plan.read_record(ep)
    if rec is None:
        raise Refused(f"ModelEndpoint {name} carries no drill record: nothing to restore")
    _restore(cluster, name)
    data = {"endpoint": name, "drill": rec.get("id"), "restored": True, "weights": rec["weights"]}
    show(g, data, lambda: _text(f"restored {name} as drill {rec.get('id')} found it: {rec['weights']}"))
    del router_name, route, timeout  # the route follows the declared split: the operator's part
