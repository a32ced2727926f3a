"""Point-in-time answers on the real data plane: `kubectl models which ENDPOINT --at TIME` against the
responses real traffic got through Traefik from real pods, around two route changes.

The test sends requests one by one (each with its own x-request-id), keeping for every response the
wall-clock time it was sent and received and the x-model-version the route set. Two route changes
(all traffic to 1.1.0, then back to 1.0.0) are made under that traffic. Then:

- three moments (before, between and after the changes), each in the middle of a window of several
  seconds in which every response came from one version, are answered by `which --at` with that
  version (and its digest), and every response received within a second of the moment agrees;
- each recorded change's time lies between the edit the test made and the first responses of the new
  split, and `which --at <that exact time>` answers the new split, a millisecond earlier the previous;
- a moment before the record begins is refused (exit 1);
- request id: Traefik neither makes one nor echoes the client's in the response (measured here); its
  access log keeps the client's x-request-id with the response's x-model-version (the harness keeps
  those headers), and the Service it logged joins the recorded change's slot.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, wait_for
from test_dataplane import endpoint, register

pytestmark = pytest.mark.timeout(1800)
PREDICT = "/v1/predict"
OPERATOR_SRC = Path(__file__).resolve().parents[1] / "operator"
WINDOW = 4.0  # seconds of one-version responses around each moment asked about
NEAR = 1.0  # responses received this close to a moment must agree with the answer


@dataclass(frozen=True)
class Sample:
    sent: float  # time.time()
    received: float
    status: int
    version: str
    request_id: str
    echoed: str | None  # an x-request-id header in the response, if any


class Traffic:
    """One request at a time through the gateway, each with a fresh x-request-id, every response kept."""

    def __init__(self, dp: DataPlane) -> None:
        self.dp = dp
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            rid = secrets.token_hex(8)
            sent = time.time()
            try:
                r = self.dp.gw.request(PREDICT, host=self.dp.host, method="POST", body=b"{}",
                                       headers={"x-request-id": rid})  # fmt: skip
                s = Sample(sent, time.time(), r.status, r.headers.get("x-model-version", "-"), rid,
                           r.headers.get("x-request-id"))  # fmt: skip
            except OSError as e:
                s = Sample(sent, time.time(), -1, f"error {e}", rid, None)
            with self._lock:
                self.samples.append(s)

    def since(self, t: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.received >= t]

    def steady(self, version: str, since: float, n: int = 20) -> float | None:
        """received time of the first of n consecutive 200s from `version` after `since`."""
        run: list[Sample] = []
        for s in self.since(since):
            run = [*run, s] if s.status == 200 and s.version == version else []
            if len(run) >= n:
                return run[0].received
        return None

    def spans(self, version: str, start: float, seconds: float) -> bool:
        """Responses received from `start` on cover `seconds`, all 200 from `version`."""
        got = self.since(start)
        assert all(s.status == 200 and s.version == version for s in got), _summary(got)
        return bool(got) and got[-1].received - start >= seconds


def _summary(samples: list[Sample]) -> str:
    return json.dumps([(round(s.received, 3), s.status, s.version) for s in samples[-30:]])


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def which_at(cluster: Any, ns: str, name: str, at: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(OPERATOR_SRC)}
    env.pop("KUBECONFIG", None)
    cli = [
        sys.executable,
        "-m",
        "modelversioning.cli.kubectl_models",
        "--kubeconfig",
        str(cluster.kubeconfig),
    ]
    cmd = [*cli, "-n", ns, "which", name, "--at", at, "-o", "json"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def served_at(cluster: Any, ns: str, name: str, at: str) -> dict[str, Any]:
    p = which_at(cluster, ns, name, at)
    assert p.returncode == 0, f"which --at {at}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return dict(json.loads(p.stdout))


def only(view: dict[str, Any]) -> tuple[str, str, int]:
    (v,) = view["variants"]
    return v["version"], v["digest"], v["weight"]


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


@dataclass(frozen=True)
class Run:
    """What the test did and saw: the responses from the first steady one on, and its times."""

    samples: list[Sample]
    patched: tuple[float, float]  # when each edit was sent
    steady: tuple[float, float]  # the first of 20 consecutive responses of each new split


def drive(dp: DataPlane, objs: Objects) -> Run:
    """Two route changes under traffic (1.0.0 -> 1.1.0 -> 1.0.0), each after a window of WINDOW
    seconds of responses of one version; conditions with deadlines, no sleeps."""
    with Traffic(dp) as traffic:
        start = wait_for(lambda: traffic.steady("1.0.0", 0.0), 120, "1.0.0 answers through Traefik")
        wait_for(lambda: traffic.spans("1.0.0", start, WINDOW), 60, "a window of 1.0.0 before the change")
        patched1 = time.time()
        objs.set_weights("which", {"blue": 0, "green": 100})
        steady1 = wait_for(lambda: traffic.steady("1.1.0", patched1), 120, "all traffic on 1.1.0")
        wait_for(lambda: traffic.spans("1.1.0", steady1, WINDOW), 60, "a window of 1.1.0")
        patched2 = time.time()
        objs.set_weights("which", {"blue": 100, "green": 0})
        steady2 = wait_for(lambda: traffic.steady("1.0.0", patched2), 120, "all traffic back on 1.0.0")
        wait_for(lambda: traffic.spans("1.0.0", steady2, WINDOW), 60, "a window of 1.0.0 after")
    samples = traffic.since(start)  # (before start: the 404s of before Traefik read the route)
    bad = [s for s in samples if s.status != 200]
    print(f"{len(samples)} responses; changes made at {rfc3339(patched1)}, {rfc3339(patched2)}")
    assert not bad, _summary(bad)
    return Run(samples, (patched1, patched2), (steady1, steady2))


def test_which_at_answers_moments_around_two_route_changes_as_the_responses_saw_them(  # type: ignore[no-untyped-def]
    dp, objs, cluster
):
    sha = {"1.0.0": register(dp, objs, "which", "1.0.0"), "1.1.0": register(dp, objs, "which", "1.1.0")}
    objs.create(endpoint(dp, "which", "which", [
        {"name": "blue", "version": "1.0.0", "weight": 100},
        {"name": "green", "version": "1.1.0", "weight": 0},
    ]))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("which"), "Ready", "True"), 300, "Ready on real pods")
    # and green (weight 0) eligible too: Ready needs only the serving variant, and an edit made while
    # green's pods still start moves the route when they are ready, recorded as Eligibility, not as the
    # edit (the cold CI run of 1f13c20, under load)
    wait_for(lambda: all_eligible(objs.mep("which")), 300, "both variants eligible")
    run = drive(dp, objs)
    history = (objs.mep("which").get("status") or {}).get("routeHistory") or {}
    c1, c2 = recorded_changes(history, run, sha)
    moments = {
        "before": (run.patched[0] - WINDOW / 2, "1.0.0"),
        "between": ((run.steady[0] + run.patched[1]) / 2, "1.1.0"),
        "after": ((run.steady[1] + run.samples[-1].received) / 2, "1.0.0"),
    }
    for label, (t, version) in moments.items():
        near = [s for s in run.samples if abs(s.received - t) <= NEAR]
        assert near and {s.version for s in near} == {version}, (label, _summary(near))
        view = served_at(cluster, objs.ns, "which", rfc3339(t))
        print(f"{label} {rfc3339(t)}: {view['variants']} (responses near it: {len(near)} from {version})")
        assert only(view) == (version, sha[version], 100), (label, view)
        assert not view["coarse"]
    # exactly at each recorded change: the new split; a millisecond before: the previous one
    for c, before in ((c1, "1.0.0"), (c2, "1.1.0")):
        at_change = served_at(cluster, objs.ns, "which", c["at"])
        assert at_change["from"] == c["at"] and only(at_change)[0] == c["split"][0]["version"]
        just_before = served_at(cluster, objs.ns, "which", rfc3339(epoch(c["at"]) - 0.001))
        assert only(just_before)[0] == before and just_before["until"] == c["at"]
    # before the record begins: refused, saying when it begins
    begins = (history.get("coarse") or [{}])[0].get("start") or history["changes"][0]["at"]
    p = which_at(cluster, objs.ns, "which", rfc3339(epoch(begins) - 60))
    assert p.returncode == 1 and "before the route history" in p.stderr and begins in p.stderr, p
    slots = {c["split"][0]["version"]: c["split"][0]["slot"] for c in (c1, c2)}
    request_ids_join(dp, objs.ns, run, moments, slots)


def all_eligible(mep: dict[str, Any]) -> bool:
    variants = (mep.get("status") or {}).get("variants") or []
    return len(variants) == 2 and all(v.get("eligible") for v in variants)


def recorded_changes(history: dict[str, Any], run: Run, sha: dict[str, str]) -> list[dict[str, Any]]:
    """The two changes recorded after the test's first edit, each recorded between the edit and the
    first responses of its split (the operator and this test share the host's clock; 2 s of slack for
    a loaded machine)."""
    changes = [c for c in history.get("changes") or [] if epoch(c["at"]) >= run.patched[0]]
    print("recorded:", json.dumps(changes)[:2000])
    got = [[(v["version"], v["weight"]) for v in c["split"]] for c in changes]
    assert got == [[("1.1.0", 100)], [("1.0.0", 100)]], changes
    c1, c2 = changes
    assert (c1["cause"], c2["cause"]) == ("SpecChange", "SpecChange")
    assert c1["split"][0]["digest"] == sha["1.1.0"] and c2["split"][0]["digest"] == sha["1.0.0"]
    first_new1 = min(s.received for s in run.samples if s.version == "1.1.0")
    first_new2 = min(s.received for s in run.samples if s.version == "1.0.0" and s.received > first_new1)
    assert run.patched[0] <= epoch(c1["at"]) <= first_new1 + 2.0, (run.patched, c1["at"], first_new1)
    assert run.patched[1] <= epoch(c2["at"]) <= first_new2 + 2.0, (run.patched, c2["at"], first_new2)
    return changes


def request_ids_join(
    dp: DataPlane, ns: str, run: Run, moments: dict[str, tuple[float, str]], slots: dict[str, str]
) -> None:
    """Traefik does not echo the request id; its access log line of the request nearest each moment
    names the version the response carried and the slot's Service the record names."""
    assert all(s.echoed is None for s in run.samples), "Traefik echoed x-request-id: update docs/design.md"
    log = {e.get("request_X-Request-Id"): e for e in dp.gw.access_log(dp.host)}
    for label, (t, version) in moments.items():
        s = min(run.samples, key=lambda x: abs(x.received - t))
        entry = wait_for(lambda s=s: log.get(s.request_id) or _reload(dp, log, s.request_id), 30,
                         f"the access log line of request {s.request_id}")  # fmt: skip
        keys = ("StartUTC", "ServiceName", "downstream_X-Model-Version", "downstream_X-Model-Sha256")
        print(f"{label}: request {s.request_id} ->", {k: entry.get(k) for k in keys})
        assert entry.get("downstream_X-Model-Version") == s.version == version
        assert f"-{ns}-{slots[version]}-" in str(entry.get("ServiceName")), entry


def _reload(dp: DataPlane, log: dict[Any, Any], rid: str) -> Any:
    log.update({e.get("request_X-Request-Id"): e for e in dp.gw.access_log(dp.host)})
    return log.get(rid)
