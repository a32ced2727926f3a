"""The Event sink: posted off the reconcile thread, in order, bounded, never failing the caller."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from modelversioning import metrics
from modelversioning.handlers.events import EventSink
from waits import PATIENCE, eventually


def ev(reason: str, name: str = "x") -> dict[str, Any]:
    return {"reason": reason, "involvedObject": {"name": name}}


class Gated:
    """A post function that records what it posted, once `gate` is set; `posting` is set when the
    thread has taken its first Event."""

    def __init__(self) -> None:
        self.gate, self.posting = threading.Event(), threading.Event()
        self.posted: list[str] = []

    def __call__(self, ns: str, e: dict[str, Any]) -> None:
        self.posting.set()
        self.gate.wait(PATIENCE)
        self.posted.append(e["reason"])


def waiting_for_room(thread: threading.Thread) -> bool:
    """Is `thread` blocked in a bounded queue's put, waiting for room? (Read from its stack: a
    positive signal, where "it has not returned after 0.2 s" would only be a guess.)"""
    frame = sys._current_frames().get(thread.ident or 0)
    return (
        frame is not None
        and frame.f_code is threading.Condition.wait.__code__
        and frame.f_back is not None
        and frame.f_back.f_code is queue.Queue.put.__code__
    )


def test_each_objects_events_are_posted_in_order_by_background_threads() -> None:
    posted: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def post(ns: str, e: dict[str, Any]) -> None:
        with lock:
            posted.append((e["involvedObject"]["name"], e["reason"], threading.current_thread().name))

    sink = EventSink(post, threads=4)
    objects = [f"obj-{i}" for i in range(20)]
    for i in range(30):
        for o in objects:
            assert sink.put("ns", ev(f"R{i}", o))
    assert sink.flush(PATIENCE)
    for o in objects:
        mine = [(r, t) for n, r, t in posted if n == o]
        assert [r for r, _ in mine] == [f"R{i}" for i in range(30)]
        assert len({t for _, t in mine}) == 1  # one thread per object: its order is kept
    threads = {t for _, _, t in posted}
    assert len(threads) > 1 and all(t.startswith("events-") for t in threads)


def test_put_never_waits_for_a_slow_api_server() -> None:
    post = Gated()
    gate, posted = post.gate, post.posted
    sink = EventSink(post)
    assert sink.put("ns", ev("A"))  # returns while the post is blocked
    assert posted == []
    assert not sink.flush(0.05)
    gate.set()
    assert sink.flush(PATIENCE)
    assert posted == ["A"]


def test_a_full_backlog_makes_the_caller_wait_for_room_and_loses_nothing() -> None:
    post = Gated()
    gate, posting, posted = post.gate, post.posting, post.posted
    sink = EventSink(post, backlog=1, threads=1, wait=10)
    assert sink.put("ns", ev("E0"))
    assert posting.wait(PATIENCE)  # the thread holds E0; E1 fills the backlog
    assert sink.put("ns", ev("E1"))
    returned = threading.Event()
    caller = threading.Thread(target=lambda: (sink.put("ns", ev("E2")), returned.set()), daemon=True)
    caller.start()
    eventually(lambda: returned.is_set() or waiting_for_room(caller), "the caller blocked, or returned")
    assert not returned.is_set()  # back-pressure: the caller waits for room
    gate.set()
    assert returned.wait(PATIENCE)
    assert sink.flush(PATIENCE)
    assert posted == ["E0", "E1", "E2"]


def test_a_backlog_full_for_longer_than_the_wait_drops_and_counts_and_recovers() -> None:
    post = Gated()
    gate, posting, posted = post.gate, post.posting, post.posted
    sink = EventSink(post, backlog=2, threads=1, wait=0.05)
    before = metrics.EVENTS_DROPPED.labels("Dropped")._value.get()
    assert sink.put("ns", ev("Kept"))
    assert posting.wait(PATIENCE)  # the thread holds that one; two more fill the backlog
    assert sink.put("ns", ev("Kept")) and sink.put("ns", ev("Kept"))
    assert sink.put("ns", ev("Dropped")) is False
    assert metrics.EVENTS_DROPPED.labels("Dropped")._value.get() == before + 1
    gate.set()
    assert sink.flush(PATIENCE)
    assert posted == ["Kept", "Kept", "Kept"]
    assert sink.put("ns", ev("After")) and sink.flush(PATIENCE) and posted[-1] == "After"


def test_a_failed_post_is_logged_and_the_next_one_still_goes(caplog: Any) -> None:
    posted: list[str] = []

    def post(ns: str, e: dict[str, Any]) -> None:
        if e["reason"] == "Bad":
            raise RuntimeError("403 Forbidden")
        posted.append(e["reason"])

    sink = EventSink(post)
    sink.put("team-a", ev("Bad"))
    sink.put("team-a", ev("Good"))
    assert sink.flush(PATIENCE)
    assert posted == ["Good"]
    assert "could not post Event Bad on team-a/x" in caplog.text


def test_endpoint_events_never_wait_behind_a_burst_of_other_events() -> None:
    gate, shifted_posted = threading.Event(), threading.Event()
    posted: list[str] = []

    def post(ns: str, e: dict[str, Any]) -> None:
        if e["involvedObject"]["kind"] == "ModelVersion":
            gate.wait(PATIENCE)  # the API server is slow with the burst of version Events
        posted.append(e["reason"])
        if e["reason"] == "TrafficShifted":
            shifted_posted.set()

    sink = EventSink(post, backlog=4, threads=2, wait=0.05)
    versions = [
        sink.put(
            "ns", {"reason": "ArtifactVerified", "involvedObject": {"kind": "ModelVersion", "name": f"v{i}"}}
        )
        for i in range(5)
    ]
    assert versions.count(False) >= 1  # the version lane is full
    shifted = {"reason": "TrafficShifted", "involvedObject": {"kind": "ModelEndpoint", "name": "ep"}}
    assert sink.put("ns", shifted)  # its own lane has room
    assert shifted_posted.wait(PATIENCE)
    assert posted == ["TrafficShifted"]  # posted while every version Event still waits
    gate.set()
    assert sink.flush(PATIENCE)


# ---- Event series: a repeat raises the count of the Event posted before ----------------------------


class Recording:
    """Kube._call stand-in: what was sent; a PATCH of a name in `gone` answers 404."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.gone: set[str] = set()
        self.n = 0

    def __call__(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.sent.append((method, path, body))
        if method == "PATCH" and path.rsplit("/", 1)[1] in self.gone:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404, reason="Not Found")
        self.n += method == "POST"
        return {"metadata": {"name": f"e{self.n}"}}


def test_a_repeated_event_is_counted_in_the_one_posted_before(monkeypatch):
    from modelversioning.handlers.kube import Kube

    kube = Kube(None)  # type: ignore[arg-type]
    rec = Recording()
    monkeypatch.setattr(kube, "_call", rec)
    obj = {
        "apiVersion": "v1",
        "kind": "ModelVersion",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
    }
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(kube.events, "put", lambda ns, e: posted.append(e) or True)
    for msg in ("refused; next attempt in 300s", "refused; next attempt in 300s", "other", "other"):
        kube.event(obj, "Warning", "FetchFailed", msg)
    for e in posted:
        kube._post_event("ns", e)
    assert [(m, b.get("count")) for m, _, b in rec.sent] == [
        ("POST", 1),
        ("PATCH", 2),
        ("POST", 1),
        ("PATCH", 2),
    ]
    assert rec.sent[1][1].endswith("/events/e1") and rec.sent[3][1].endswith("/events/e2")
    assert rec.sent[1][2]["lastTimestamp"] == posted[1]["lastTimestamp"]
    rec.gone.add("e1")  # expired meanwhile: a new Event starts the series again
    kube._post_event("ns", posted[0])
    assert [m for m, _, _ in rec.sent[-2:]] == ["PATCH", "POST"]
    kube._post_event("ns", posted[0])
    assert rec.sent[-1][0] == "PATCH" and rec.sent[-1][2]["count"] == 2  # of the new one
    other = {**posted[0], "involvedObject": {**posted[0]["involvedObject"], "uid": "u2"}}
    kube._post_event("ns", other)  # the same words about another object: its own Event
    assert rec.sent[-1][0] == "POST"
