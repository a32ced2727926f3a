"""The node cache under attack (a security review): a file version whose bytes are another tenant's
manifest text, withdrawn versions, hostile Content-Lengths, slow and many connections, a flood of
tokens, and evictions racing fresh entries of the same key."""

from __future__ import annotations

import hashlib
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.artifacts import node_cache as nc
from modelversioning.artifacts.manifest import manifest_digest, manifest_text
from modelversioning.nodecache.server import Agent, AgentServer
from modelversioning.nodecache.store import Store
from test_node_cache_protocol import DATA, DIR_URI, SHA, URI, FakeApi, Running, laid_out, read, serving


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    api = FakeApi()
    api.tenant("tok-a", "team-a", SHA)
    with serving(Agent(Store(tmp_path / "cache", 10 * len(DATA)), api), api, tmp_path / "cache") as (r, _):
        yield r


def request(r: Running, method: str, path: str, token: str, body: bytes = b"", **headers: str) -> Any:
    conn = http.client.HTTPConnection(r.url.removeprefix("http://"), timeout=5)
    conn.request(method, path, body=body or None, headers={"Authorization": f"Bearer {token}", **headers})
    resp = conn.getresponse()
    return resp.status, resp.read()


# ------------------------------------------------------------------- 1. the kind of the caller's version


def test_a_file_version_whose_bytes_are_another_tenants_manifest_cannot_read_that_directory(
    running: Running, tmp_path: Path
) -> None:
    """The review's proof of concept: B registers a file version whose bytes are A's manifest text (so
    its sha256 is A's directory digest D) and asks for the *directory* entry D."""
    files = {"weights.bin": b"secret weights of A" * 1000, "config.json": b"{}"}
    pairs = [(k, hashlib.sha256(v).hexdigest()) for k, v in files.items()]
    d = manifest_digest(pairs)
    running.api.tenant("tok-a", "team-a", d, uri=DIR_URI)
    assert nc.offer(running.cache("tok-a"), DIR_URI, d, laid_out(tmp_path, "a", files)).what == nc.OFFERED
    assert hashlib.sha256(manifest_text(pairs).encode()).hexdigest() == d
    running.api.tenant("tok-b", "team-b", d, uri="https://b.example.com/innocent.bin")  # a file of B's
    status, body = request(running, "GET", f"/v1/entries/directory/{d}", "tok-b")
    assert (status, b"secret weights of A" in body) == (403, False)
    assert running.refusals(R.CACHE_WRONG_KIND) == 1
    # nor the other way round: A's directory version does not read (or fill) a file entry of D
    assert request(running, "GET", f"/v1/entries/file/{d}", "tok-a")[0] == 403
    assert read(running, "tok-a", tmp_path / "a2", uri=DIR_URI, sha=d).what == nc.HIT


def test_a_version_whose_kind_is_unknown_gets_no_cache(running: Running) -> None:
    running.api.tenant("tok-a", "team-a", SHA, uri="s3://bucket/key")  # a file or a prefix: not known
    assert request(running, "GET", f"/v1/entries/file/{SHA}", "tok-a")[0] == 403
    assert running.refusals(R.CACHE_WRONG_KIND) == 1


@pytest.mark.parametrize(
    "meta",
    [
        {"annotations": {R.REVOKED_ANNOTATION: "leaked training data"}},
        {"annotations": {R.REVOKED_ANNOTATION: ""}},
        {"deletionTimestamp": "2026-12-07T14:00:00Z", "finalizers": ["x"]},
    ],
)
def test_a_revoked_or_deleting_version_neither_reads_nor_fills(
    running: Running, tmp_path: Path, meta: dict[str, Any]
) -> None:
    src = laid_out(tmp_path, "pod1", {"model.bin": DATA})
    assert nc.offer(running.cache("tok-a"), URI, SHA, src).what == nc.OFFERED
    running.api.tenant("tok-a", "team-a", SHA, **meta)
    got = read(running, "tok-a", tmp_path / "pod2")
    assert got.what == nc.REFUSED and got.detail == f"403 {R.CACHE_WITHDRAWN}"
    got = nc.offer(running.cache("tok-a"), URI, SHA, src)
    assert got.what == nc.REFUSED and R.CACHE_WITHDRAWN in got.detail


# ------------------------------------------------------------------------ 2. bounds on what a pod sends


def raw(r: Running, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request written by hand (a hostile client), the write side closed after it; the status and
    body of the answer."""
    with socket.create_connection(r.url.removeprefix("http://").split(":"), timeout=5) as s:  # type: ignore[arg-type]
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    status = int(got.split(b" ", 2)[1])
    return status, got.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    ("length", "status", "reason"),
    [
        ("-1000000000000", 411, R.CACHE_MALFORMED),
        ("0", 411, R.CACHE_MALFORMED),
        ("+17", 411, R.CACHE_MALFORMED),
        ("1_7", 411, R.CACHE_MALFORMED),
        (None, 411, R.CACHE_MALFORMED),
        (str(10 * len(DATA) + 1), 413, R.CACHE_TOO_LARGE),
    ],
)
def test_an_offer_without_a_sane_content_length_is_refused_before_anything_is_reserved(
    running: Running, length: str | None, status: int, reason: str
) -> None:
    head = f"PUT /v1/entries/file/{SHA} HTTP/1.1\nHost: x\nAuthorization: Bearer tok-a\n"
    head += f"Content-Length: {length}\n" if length is not None else ""
    got = raw(running, head, b"mvcache/1 file 1\n")
    assert got[0] == status and reason.encode() in got[1]
    assert running.refusals(reason) == 1 and running.agent.store.used_bytes() == 0
    assert running.api.calls == []  # refused before any TokenReview


def test_the_store_reserves_no_negative_zero_or_oversized_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_bytes=1000, max_entry_bytes=600)
    for size in (-(10**12), -1, 0, 601):
        with pytest.raises(Exception, match="is not taken"):
            store.begin("file", size)
    assert store.used_bytes() == 0
    store.begin("file", 600)
    assert store.used_bytes() == 600


def test_a_negative_limit_reads_nothing() -> None:
    import io

    from modelversioning.artifacts.cache_stream import Limited

    body = Limited(io.BytesIO(b"line\n" * 10), -5)
    assert (body.readline(), body.read(), body.read(3)) == (b"", b"", b"")


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Running, AgentServer]]:
    api = FakeApi()
    api.tenant("tok-a", "team-a", SHA)
    agent = Agent(Store(tmp_path / "cache", 10 * len(DATA)), api)
    with serving(agent, api, tmp_path / "cache", idle_seconds=0.3, max_requests=2) as running:
        yield running


def test_a_silent_connection_is_closed_after_the_idle_timeout(small: tuple[Running, AgentServer]) -> None:
    r, _ = small
    with socket.create_connection(("127.0.0.1", int(r.url.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(b"GET /healthz HT")  # a slow loris: never finishes its request line
        assert s.recv(100) == b""  # closed by the agent (the 5 s client timeout would raise instead)


def test_one_request_over_the_cap_gets_503_busy_at_once(small: tuple[Running, AgentServer]) -> None:
    r, server = small
    server.idle_seconds = 30.0
    port = int(r.url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]  # both slots
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            got = b""
            while chunk := s.recv(1000):
                got += chunk
        assert got.startswith(b"HTTP/1.1 503 ") and R.CACHE_BUSY.encode() in got
        assert r.refusals(R.CACHE_BUSY) == 1
    finally:
        for h in held:
            h.close()


def test_a_token_is_reviewed_once_however_often_it_is_shown(running: Running) -> None:
    for _ in range(5):
        assert request(running, "GET", f"/v1/entries/file/{SHA}", "made-up")[0] == 401
    for _ in range(3):
        assert request(running, "GET", f"/v1/entries/file/{SHA}", "tok-a")[0] == 404
    assert running.api.calls.count("review") == 2
    assert running.api.calls.count("versions team-a") == 3  # what it may read is asked every time
    running.agent.sync_gauges()
    assert (running.count("reviews"), running.count("reviews_kept")) == (2, 6)
    assert running.refusals(R.CACHE_UNAUTHENTICATED) == 5


def test_a_flood_of_made_up_tokens_is_throttled_and_refused_busy(running: Running) -> None:
    from modelversioning.domain.node_cache import Review
    from modelversioning.nodecache.reviews import Reviews

    now = [0.0]
    asked: list[str] = []
    reviews = Reviews(
        lambda t: asked.append(t) or Review(False), per_second=2.0, burst=3, clock=lambda: now[0]
    )
    assert [reviews.review(f"t{i}") is None for i in range(5)] == [False] * 3 + [True] * 2
    assert reviews.review("t0") == Review(False)  # kept: answered without asking
    now[0] += 1.0  # two more a second
    assert [reviews.review(f"u{i}") is None for i in range(3)] == [False, False, True]
    assert len(asked) == 5 and reviews.throttled == 3
    now[0] += 10.0  # the refused answer is no longer kept: asked again
    reviews.review("t0")
    assert asked[-1] == "t0"
    running.agent.reviews = Reviews(running.api.review, burst=1, per_second=0.001)
    assert request(running, "GET", f"/v1/entries/file/{SHA}", "x1")[0] == 401
    status, body = request(running, "GET", f"/v1/entries/file/{SHA}", "x2")
    assert (status, R.CACHE_BUSY.encode() in body) == (503, True)
    assert running.refusals(R.CACHE_BUSY) == 1


# ---------------------------------------------------- 3. removing an entry never removes a fresh one


def test_an_eviction_never_removes_a_fresh_entry_of_the_key_it_evicted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelversioning.nodecache import store as store_mod

    store = Store(tmp_path / "c", max_bytes=250)
    clock = iter(range(100))
    store.clock = lambda: float(next(clock))

    def put(data: bytes) -> str:
        inc = store.begin("file", len(data))
        sink = inc.open_sink("file", "data")
        sink.write(data)
        sink.close()
        digest = hashlib.sha256(data).hexdigest()
        assert inc.commit(digest)
        return digest

    a = put(b"a" * 100)
    put(b"b" * 100)
    real = store_mod.shutil.rmtree

    def racing(path: Any, *args: Any, **kw: Any) -> None:
        """The evicted entry is removed only once the lock is released: a pod offers it again first."""
        monkeypatch.setattr(store_mod.shutil, "rmtree", real)
        put(b"a" * 100)
        real(path, *args, **kw)

    monkeypatch.setattr(store_mod.shutil, "rmtree", racing)
    store.begin("file", 100)  # evicts a (least recently used)
    assert store.has(f"file-{a}") and (store.entries_dir / f"file-{a}" / "data").read_bytes() == b"a" * 100
    assert list((tmp_path / "c" / "trash").iterdir()) == []


def test_a_reader_that_found_an_entry_corrupt_never_drops_a_fresh_entry_of_that_key(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelversioning.nodecache import server as server_mod

    src = laid_out(tmp_path, "pod1", {"model.bin": DATA})
    assert nc.offer(running.cache("tok-a"), URI, SHA, src).what == nc.OFFERED
    (stored,) = (running.root / "entries").iterdir()
    (stored / "data").write_bytes(DATA[:-1] + b"?")
    meanwhile: list[str] = []

    class Slow(server_mod.Encoder):  # type: ignore[misc,name-defined]
        def body(self) -> Iterator[bytes]:
            yield from super().body()
            if not meanwhile:  # the first reader, before it drops what it read: another reader finds
                meanwhile.append("first")  # it corrupt and drops it, then a pod offers it afresh
                meanwhile.append(read(running, "tok-a", tmp_path / "other").what)
                meanwhile.append(nc.offer(running.cache("tok-a"), URI, SHA, src).what)

    monkeypatch.setattr(server_mod, "Encoder", Slow)
    assert read(running, "tok-a", tmp_path / "first").what == nc.CORRUPT
    assert meanwhile == ["first", nc.CORRUPT, nc.OFFERED]
    got = read(running, "tok-a", tmp_path / "after")
    assert got.what == nc.HIT and (tmp_path / "after" / "model.bin").read_bytes() == DATA


STOPPED_BY_SIGTERM = """
import logging, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from modelversioning.nodecache.server import Agent, serve
from modelversioning.nodecache.store import Store
from test_node_cache_protocol import FakeApi
serve(("127.0.0.1", 0), Agent(Store(Path({root!r}), 1 << 20), FakeApi()))
print("returned", flush=True)
"""


def test_the_agent_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    """The agent is PID 1 of its container, which gets no default action for SIGTERM: without a handler
    every stop waited out the 30 s grace (the e2e teardown's 42 s). Here (not PID 1) the default action
    kills it (-15), so a clean return says the handler ran."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = STOPPED_BY_SIGTERM.format(tests=str(Path(__file__).parent), root=str(tmp_path / "cache"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)  # fmt: skip
    assert child.stderr is not None
    deadline = time.monotonic() + 60
    while "node cache on" not in child.stderr.readline():
        assert time.monotonic() < deadline and child.poll() is None, "the agent never listened"
    t0 = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 0 and "returned" in out, (child.returncode, err[-2000:])
    assert "stopping" in err and time.monotonic() - t0 < 5
