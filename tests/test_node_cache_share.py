"""The node cache's per-namespace share (issue 26): each entry is charged to the namespace whose offer
stored it; a namespace's offers evict only its own entries to stay within its share, so a hostile tenant
registering many large versions pushes at most its share of other tenants' bytes out of the cache, and
never an entry being served."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import node_cache as nc
from modelversioning.domain.node_cache import FULL, OVER_SHARE, Entry, make_room
from modelversioning.nodecache.server import Agent, AgentServer
from modelversioning.nodecache.store import Full, Store
from test_node_cache_protocol import FakeApi, Running, laid_out

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
    server = AgentServer(("127.0.0.1", 0), agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Running(agent, api, f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "cache")
    finally:
        server.shutdown()
        server.server_close()


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
    assert shared.agent.metrics.namespace_bytes.labels("team-b")._value.get() == held["team-b"]


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
