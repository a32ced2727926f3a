"""The node cache's per-namespace share (issue 26): each entry is charged to the namespace whose offer
stored it; a namespace's offers evict only its own entries to stay within its share, so a hostile tenant
registering many large versions pushes at most its share of other tenants' bytes out of the cache, and
never an entry being served."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import node_cache as nc
from modelversioning.domain.node_cache import FULL, OVER_SHARE, Entry, make_room, reserve
from modelversioning.nodecache.server import Agent
from modelversioning.nodecache.store import Full, Store
from test_node_cache_protocol import FakeApi, Running, laid_out, serving

# ------------------------------------------------------------------------------------------ the rule


def test_within_its_share_a_namespace_evicts_its_own_entries_first() -> None:
    entries = [
        Entry("a-old", 30, 1.0, owner="a"),
        Entry("b-old", 30, 2.0, owner="b"),
        Entry("b-new", 30, 3.0, owner="b"),
    ]
    # b has 60 of its share of 60: its own least recently used goes, although a's is older
    assert make_room(entries, limit=100, incoming=30, owner="b", share=60).evict == ("b-old",)
    # a (30 of 60) needs room in the cache: its own entry goes before anyone else's
    assert make_room(entries, limit=100, incoming=40, owner="a", share=60).evict == ("a-old",)
    # then others' least recently used, only as many as needed
    assert make_room(entries, limit=100, incoming=60, owner="a", share=60).evict == ("a-old", "b-old")
    # within its share but the cache is full: its own entry goes, though another's is older
    two = [Entry("a-old", 30, 1.0, owner="a"), Entry("b-new", 30, 9.0, owner="b")]
    assert make_room(two, limit=60, incoming=30, owner="b", share=60).evict == ("b-new",)
    # no share: plain least recently used (the owner's own still first)
    assert make_room(entries, limit=100, incoming=30).evict == ("a-old",)


def test_over_its_share_with_its_own_entries_in_use_nothing_of_anyone_is_evicted() -> None:
    entries = [Entry("b1", 30, 5.0, busy=True, owner="b"), Entry("b2", 30, 6.0, busy=True, owner="b"),
               Entry("a1", 10, 1.0, owner="a")]  # fmt: skip
    room = make_room(entries, limit=100, incoming=10, owner="b", share=60)
    assert (room.evict, room.fits, room.why) == ((), False, OVER_SHARE)
    assert make_room([], limit=100, incoming=70, owner="b", share=60).why == OVER_SHARE
    busy = [Entry("x", 90, 1.0, busy=True, owner="c")]
    assert make_room(busy, limit=100, incoming=20, owner="a", share=60).why == FULL


@pytest.mark.parametrize("offers", [5, 50])
def test_a_hostile_tenant_takes_at_most_its_share_of_the_others_bytes(offers: int) -> None:
    """a and c hold 40 each (recent or in use); b offers ``offers`` entries of 20 (many large versions)."""
    limit, share = 120, 60
    entries = [Entry("a1", 20, 10.0, owner="a"), Entry("a2", 20, 11.0, busy=True, owner="a"),
               Entry("c1", 20, 12.0, owner="c"), Entry("c2", 20, 13.0, owner="c")]  # fmt: skip
    evicted_others: list[str] = []
    for i in range(offers):
        room = make_room(entries, limit, 20, owner="b", share=share)
        assert room.fits
        evicted_others += [k for k in room.evict if not k.startswith("b")]
        entries = [e for e in entries if e.key not in room.evict] + [Entry(f"b{i}", 20, 100.0 + i, owner="b")]
        assert sum(e.size for e in entries if e.owner == "b") <= share
        assert sum(e.size for e in entries) <= limit
    assert "a2" not in evicted_others  # in use: never
    assert sum(20 for _ in evicted_others) <= share  # at most its share, however many it offers
    assert sum(e.size for e in entries if e.owner != "b") >= limit - share


@pytest.mark.parametrize(
    ("incoming", "staged", "busy", "expected"),
    [
        (100, 0, False, ((), 0, True)),  # free space: nothing goes
        (200, 0, False, (("b-old",), 0, True)),  # b's own idle entry makes the rest of the room
        (250, 0, False, (("b-old",), 50, True)),  # then 50 staged beyond; a's entry stays (until commit)
        (250, 60, False, ((), 0, False)),  # 50 more beyond the 100 allowed: nothing, not even b's, goes
        (250, 0, True, ((), 0, False)),  # a's entry in use: no room could be made at commit
    ],
)
def test_at_an_offers_start_only_free_space_and_its_own_idle_entries_make_room(
    incoming: int, staged: int, busy: bool, expected: tuple[tuple[str, ...], int, bool]
) -> None:
    entries = [Entry("a-old", 100, 1.0, busy=busy, owner="a"), Entry("b-old", 50, 2.0, owner="b")]
    if staged:
        entries.append(Entry("incoming-x", staged, 0.0, busy=True, owner="c"))
    room = reserve(entries, 300, incoming, owner="b", share=300, staged_beyond=staged, beyond_limit=100)
    assert (room.evict, room.beyond, room.fits) == expected


# ------------------------------------------------------------------------------------------ the store


def _put(store: Store, owner: str, name: str, size: int) -> str:
    data = (name.encode() * size)[:size]
    inc = store.begin("file", len(data), owner=owner)
    sink = inc.open_sink("file", "data")
    sink.write(data)
    sink.close()
    digest = hashlib.sha256(data).hexdigest()
    assert inc.commit(digest)
    return digest


def test_the_store_charges_the_offering_namespace_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_bytes=300, namespace_share=150)
    clock = iter(range(1000))
    store.clock = lambda: float(next(clock))
    a1 = _put(store, "a", "a1", 100)
    b = [_put(store, "b", f"b{i}", 50) for i in range(10)]  # b offers far more than its share
    assert store.has(f"file-{a1}")  # a's entry is still there
    assert store.held_by() == {"a": 100, "b": 150}
    assert [store.has(f"file-{d}") for d in b] == [False] * 7 + [True] * 3  # b evicted its own
    with store.reading("file", b[-1]), store.reading("file", b[-2]), store.reading("file", b[-3]):
        with pytest.raises(Full) as e:  # b's own are all being served: b gets no more, a loses nothing
            store.begin("file", 50, owner="b")
        assert e.value.over_share
    assert store.max_entry_bytes == 150
    again = Store(tmp_path / "c", max_bytes=300, namespace_share=150)  # a restarted agent
    assert again.held_by() == {"a": 100, "b": 150}


# -------------------------------------------------------------------------------------- over real HTTP


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Running]:
    api = FakeApi()
    agent = Agent(Store(tmp_path / "cache", 30_000, namespace_share=15_000), api)
    with serving(agent, api, tmp_path / "cache") as (r, _):
        yield r


def test_a_tenant_registering_many_large_versions_never_evicts_another_tenants_entries(
    shared: Running, tmp_path: Path
) -> None:
    """Over the agent's HTTP: team-a's model is cached; team-b registers (verifies) 8 versions of 5 KB
    each and offers them all; the cache holds 30 KB, a namespace 15 KB."""
    victim = b"a weights\n" * 1000
    versions = [(f"b{i}".encode() + b" junk\n") * 800 for i in range(8)]
    digests = [hashlib.sha256(v).hexdigest() for v in versions]
    shared.api.tenant("tok-a", "team-a", hashlib.sha256(victim).hexdigest(), uri="https://h/a.bin")
    shared.api.tenant("tok-b", "team-b", *digests, uri="https://h/b.bin")
    a_uri = "https://h/a.bin"
    assert nc.offer(shared.cache("tok-a"), a_uri, hashlib.sha256(victim).hexdigest(),
                    laid_out(tmp_path, "a", {"a.bin": victim})).what == nc.OFFERED  # fmt: skip
    for i, (data, digest) in enumerate(zip(versions, digests, strict=True)):
        got = nc.offer(
            shared.cache("tok-b"), "https://h/b.bin", digest, laid_out(tmp_path, f"b{i}", {"b.bin": data})
        )
        assert got.what == nc.OFFERED, got.detail
    held = shared.agent.store.held_by()
    assert held["team-b"] <= 15_000 and held["team-a"] == len(victim)
    hit = nc.read(shared.cache("tok-a"), a_uri, hashlib.sha256(victim).hexdigest(), tmp_path / "pod-a",
                  policy=ArtifactPolicy())  # fmt: skip
    assert hit.what == nc.HIT, hit.detail
    shared.agent.sync_gauges()
    assert shared.agent.metrics.namespaces._value.get() == 2
    assert shared.agent.metrics.namespace_bytes_max._value.get() == max(held.values())


def test_the_agents_metrics_name_no_namespace(shared: Running, tmp_path: Path) -> None:
    """/metrics answers anyone on the node: after two namespaces stored entries, it says how many
    namespaces hold entries and the largest share used, not which namespaces."""
    for ns in ("team-alpha", "team-bravo"):
        data = ns.encode() * 100
        shared.api.tenant(f"tok-{ns}", ns, hashlib.sha256(data).hexdigest(), uri="https://h/m.bin")
        got = nc.offer(shared.cache(f"tok-{ns}"), "https://h/m.bin", hashlib.sha256(data).hexdigest(),
                       laid_out(tmp_path, ns, {"m.bin": data}))  # fmt: skip
        assert got.what == nc.OFFERED, got.detail
    with urllib.request.urlopen(shared.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "team-alpha" not in text and "team-bravo" not in text and "namespace=" not in text
    assert "modelversioning_node_cache_namespaces 2.0" in text
    assert "modelversioning_node_cache_namespace_bytes_max 1000.0" in text


def test_an_offer_over_the_share_while_the_namespaces_entries_are_served_is_refused_share_exceeded(
    shared: Running, tmp_path: Path
) -> None:
    data = [bytes([65 + i]) * 7000 for i in range(3)]
    digests = [hashlib.sha256(d).hexdigest() for d in data]
    shared.api.tenant("tok-b", "team-b", *digests, uri="https://h/b.bin")
    for i in range(2):
        assert nc.offer(shared.cache("tok-b"), "https://h/b.bin", digests[i],
                        laid_out(tmp_path, f"b{i}", {"b.bin": data[i]})).what == nc.OFFERED  # fmt: skip
    with shared.agent.store.reading("file", digests[0]), shared.agent.store.reading("file", digests[1]):
        got = nc.offer(
            shared.cache("tok-b"), "https://h/b.bin", digests[2], laid_out(tmp_path, "b2", {"b.bin": data[2]})
        )
    assert got.what == nc.REFUSED and "507" in got.detail and R.CACHE_SHARE_EXCEEDED in got.detail
    assert shared.refusals(R.CACHE_SHARE_EXCEEDED) == 1


# ------------------------------------------------ an offer evicts others' entries only once it is verified


def _victims(store: Store) -> tuple[str, str]:
    """team a and c each hold an idle 100-byte entry in a 300-byte cache (a's the least recently used)."""
    clock = iter(range(1000))
    store.clock = lambda: float(next(clock))
    return _put(store, "a", "a1", 100), _put(store, "c", "c1", 100)


def test_a_hostile_namespaces_aborted_offers_never_evict_another_namespaces_entry(tmp_path: Path) -> None:
    """b offers its whole share (150 > the 100 free) 100 times and never commits (a hash mismatch, a
    dropped connection and a timeout all end in abort): a's and c's idle entries stay."""
    store = Store(tmp_path / "c", max_bytes=300, namespace_share=150)
    a1, c1 = _victims(store)
    for _ in range(100):
        inc = store.begin("file", 150, owner="b")
        sink = inc.open_sink("file", "data")
        sink.write(b"j" * 150)
        sink.close()
        inc.abort()
    assert store.has(f"file-{a1}") and store.has(f"file-{c1}")
    assert store.held_by() == {"a": 100, "c": 100} and store.evicted == 0
    assert not any((store.root / "incoming").iterdir()) and not any((store.root / "trash").iterdir())
    # a good offer of the same size still makes room: the least recently used other entry goes, at commit
    b = _put(store, "b", "b1", 150)
    assert (store.has(f"file-{a1}"), store.has(f"file-{c1}"), store.has(f"file-{b}")) == (False, True, True)
    assert store.evicted == 1


def test_an_offer_that_no_longer_fits_at_commit_is_dropped_and_nobodys_entry_in_use_goes(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "c", max_bytes=300, namespace_share=150)
    a1, c1 = _victims(store)
    data = b"b" * 150
    inc = store.begin("file", 150, owner="b")  # 100 free: 50 staged beyond the limit
    sink = inc.open_sink("file", "data")
    sink.write(data)
    sink.close()
    # both in use by the time b commits
    with store.reading("file", a1), store.reading("file", c1), pytest.raises(Full):
        inc.commit(hashlib.sha256(data).hexdigest())
    assert store.held_by() == {"a": 100, "c": 100} and store.evicted == 0
    assert not store.has(f"file-{hashlib.sha256(data).hexdigest()}")
    assert not any((store.root / "incoming").iterdir())


def test_what_is_staged_beyond_the_limit_is_bounded_and_never_taken_from_entries_in_use(
    tmp_path: Path,
) -> None:
    """Two namespaces offering at once into a full cache: the bytes received before a commit are on disk
    too; beyond the free space, at most one entry's worth (max_entry_bytes) is staged at a time, and only
    while others' idle entries could make room for it at commit."""
    store = Store(tmp_path / "c", max_bytes=300, namespace_share=150)
    a1, c1 = _victims(store)
    first = store.begin("file", 150, owner="b")  # 50 beyond the limit
    second = store.begin("file", 100, owner="d")  # 100 beyond: 150 in all, one entry's worth
    with pytest.raises(Full) as e:
        store.begin("file", 10, owner="e")  # more would pass max_bytes + max_entry_bytes on disk
    assert not e.value.over_share
    first.abort()
    second.abort()
    with store.reading("file", a1), store.reading("file", c1), pytest.raises(Full):
        store.begin("file", 150, owner="b")  # nothing idle could make room at commit: not even staged
    assert store.held_by() == {"a": 100, "c": 100} and store.evicted == 0


def _junk_offer(digest: str, size: int) -> tuple[str, bytes]:
    """An mvcache/1 stream of ``size`` junk bytes offered as ``file-<digest>`` (the head and the body)."""
    body = b"mvcache/1 file 1\n" + f"{size} b.bin\n".encode() + b"J" * size
    body += f"end {hashlib.sha256(b'J' * size).hexdigest()}\n".encode()
    head = (
        f"PUT /v1/entries/file/{digest} HTTP/1.1\nHost: x\nAuthorization: Bearer tok-b\n"
        f"Content-Length: {len(body)}\n"
    )
    return head.replace("\n", "\r\n") + "\r\n", body


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Running]:
    """A 30 KB cache, 15 KB a namespace, connections closed after 0.3 s without progress."""
    api = FakeApi()
    agent = Agent(Store(tmp_path / "cache", 30_000, namespace_share=15_000), api)
    with serving(agent, api, tmp_path / "cache", idle_seconds=0.3) as (r, _):
        yield r


def test_over_http_junk_dropped_and_stalled_offers_leave_every_other_namespaces_entry(
    impatient: Running, tmp_path: Path
) -> None:
    """team-a and team-c hold 10 KB each (10 KB free); team-b, with one verified uncached version,
    offers its whole share 50 times with bytes that do not hash (422), 45 times drops the connection in
    the middle of the body and 5 times stalls until the agent's idle timeout. Then a good offer from b
    evicts a's entry (the least recently used), at commit."""
    r = impatient
    port = int(r.url.rsplit(":", 1)[1])
    mine = {ns: (ns[-1].encode() + b" weights\n") * 1000 for ns in ("team-a", "team-c")}
    for i, (ns, data) in enumerate(mine.items()):
        r.api.tenant(f"tok-{ns}", ns, hashlib.sha256(data).hexdigest(), uri="https://h/m.bin")
        got = nc.offer(r.cache(f"tok-{ns}"), "https://h/m.bin", hashlib.sha256(data).hexdigest(),
                       laid_out(tmp_path, f"src{i}", {"m.bin": data}))  # fmt: skip
        assert got.what == nc.OFFERED, got.detail
    good = b"b weights\n" * 1490
    target = hashlib.sha256(good).hexdigest()
    r.api.tenant("tok-b", "team-b", target, uri="https://h/m.bin")
    head, body = _junk_offer(target, len(good))
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + body)
            assert b" 422 " in s.recv(65536).split(b"\r\n", 1)[0]
    for _ in range(45):  # dropped in the middle of the body
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + body[: len(body) // 2])
    deadline = time.monotonic() + 10
    ended = (R.CACHE_MALFORMED, R.CACHE_FULL, R.CACHE_SHARE_EXCEEDED)
    while sum(r.refusals(k) for k in ended) < 45 and time.monotonic() < deadline:
        time.sleep(0.05)  # every dropped offer aborted (or refused at once: b's share is being received)
    assert r.agent.store.used_bytes() == 20_000
    for _ in range(5):  # stalled: the agent gives up after its idle timeout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + body[: len(body) // 2])
            assert b" 400 " in s.recv(65536).split(b"\r\n", 1)[0]
    assert r.agent.store.held_by() == {"team-a": 10_000, "team-c": 10_000} and r.agent.store.evicted == 0
    for ns, data in mine.items():
        hit = nc.read(r.cache(f"tok-{ns}"), "https://h/m.bin", hashlib.sha256(data).hexdigest(),
                      tmp_path / f"pod-{ns}", policy=ArtifactPolicy())  # fmt: skip
        assert hit.what == nc.HIT, hit.detail
    # team-c's entry was read last: a's is the least recently used and goes for b's verified offer
    got = nc.offer(r.cache("tok-b"), "https://h/m.bin", target, laid_out(tmp_path, "b", {"m.bin": good}))
    assert got.what == nc.OFFERED and got.detail.startswith("201"), got.detail
    assert r.agent.store.held_by() == {"team-b": len(good), "team-c": 10_000}
