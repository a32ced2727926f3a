"""The node cache's fill/read protocol over real HTTP: the agent (nodecache) on loopback with a fake
TokenReview and fake ModelVersions, the init container's side (artifacts.node_cache) and the
verify-artifact command with --node-cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import node_cache as nc
from modelversioning.artifacts.cache_stream import Encoder, SourceFile
from modelversioning.artifacts.manifest import manifest_digest
from modelversioning.cli import verify as verify_cli
from modelversioning.domain.node_cache import Review
from modelversioning.nodecache.kube import ApiError
from modelversioning.nodecache.server import Agent, AgentServer
from modelversioning.nodecache.store import Store

DATA = b"fraud weights v1\n" * 5000
SHA = hashlib.sha256(DATA).hexdigest()
URI = "https://models.example.com/fraud/model.bin"
DIR_URI = "s3://bucket/fraud/2/"


@dataclass
class FakeApi:
    """Tokens -> TokenReview answers; namespaces -> their ModelVersions; every call recorded."""

    tokens: dict[str, Review] = field(default_factory=dict)
    versions_by_ns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    down: bool = False
    calls: list[str] = field(default_factory=list)

    def review(self, token: str) -> Review:
        self.calls.append("review")
        if self.down:
            raise ApiError("connection refused")
        return self.tokens.get(token, Review(False))

    def versions(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(f"versions {namespace}")
        return self.versions_by_ns.get(namespace, [])

    def tenant(
        self, token: str, ns: str, *digests: str, verified: str = "True", uri: str = URI, **meta: Any
    ) -> None:
        """``uri``: the versions' spec.artifact.uri (its kind is the kind they may read: URI a file,
        DIR_URI a directory); ``meta``: more metadata (annotations, deletionTimestamp)."""
        self.tokens[token] = Review(True, f"system:serviceaccount:{ns}:default", (R.NODE_CACHE_AUDIENCE,))
        self.versions_by_ns[ns] = [
            {
                "metadata": {"namespace": ns, "name": f"v{i}", **meta},
                "spec": {"artifact": {"sha256": d, "uri": uri}},
                "status": {
                    "artifact": {"digest": d},
                    "conditions": [{"type": "ArtifactVerified", "status": verified}],
                },
            }
            for i, d in enumerate(digests)
        ]


@dataclass
class Running:
    agent: Agent
    api: FakeApi
    url: str
    root: Path

    def cache(self, token: str) -> nc.NodeCache:
        return nc.NodeCache(self.url, token, timeout=5.0)

    def refusals(self, reason: str) -> float:
        return self.agent.metrics.refusals.labels(reason)._value.get()  # type: ignore[no-any-return]

    def count(self, name: str) -> float:
        return getattr(self.agent.metrics, name)._value.get()  # type: ignore[no-any-return]


@contextlib.contextmanager
def serving(agent: Agent, api: FakeApi, root: Path, **server: Any) -> Iterator[tuple[Running, AgentServer]]:
    """``agent`` behind a real AgentServer on loopback (``server``: its keyword settings) for the test."""
    srv = AgentServer(("127.0.0.1", 0), agent, **server)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield Running(agent, api, f"http://127.0.0.1:{srv.server_address[1]}", root), srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    api = FakeApi()
    api.tenant("tok-a", "team-a", SHA)
    api.tenant("tok-b", "team-b")  # another tenant: no version of SHA
    with serving(Agent(Store(tmp_path / "cache", 10 * len(DATA)), api), api, tmp_path / "cache") as (r, _):
        yield r


def laid_out(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    d = tmp_path / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def read(r: Running, token: str, dest: Path, uri: str = URI, sha: str = SHA, **kw: Any) -> nc.Outcome:
    return nc.read(r.cache(token), uri, sha, dest, policy=ArtifactPolicy(), **kw)


def test_an_offer_is_stored_and_read_back_into_dest_hashed_by_the_reader(
    running: Running, tmp_path: Path
) -> None:
    src = laid_out(tmp_path, "pod1", {"model.bin": DATA})
    assert read(running, "tok-a", tmp_path / "pod0").what == nc.MISS
    assert nc.offer(running.cache("tok-a"), URI, SHA, src).what == nc.OFFERED
    assert running.count("stored") == 1
    got = read(running, "tok-a", tmp_path / "pod2")
    assert got.what == nc.HIT and got.result is not None and got.result.ok
    assert (got.result.actual, got.result.size_bytes) == (SHA, len(DATA))
    assert (tmp_path / "pod2" / "model.bin").read_bytes() == DATA
    assert "from the node cache" in got.result.message
    assert (running.count("hits"), running.count("misses"), running.count("bytes_served")) == (
        1,
        1,
        len(DATA),
    )


def test_a_directory_round_trips_under_its_manifest_digest(running: Running, tmp_path: Path) -> None:
    files = {"config.json": b"{}", "weights/a.bin": b"a" * 3000, "weights/b.bin": b""}
    digest = manifest_digest((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
    uri = DIR_URI
    running.api.tenant("tok-a", "team-a", digest, uri=uri)
    src = laid_out(tmp_path, "pod1", files)
    assert nc.offer(running.cache("tok-a"), uri, digest, src).what == nc.OFFERED
    got = read(running, "tok-a", tmp_path / "pod2", uri=uri, sha=digest)
    assert got.what == nc.HIT, got.detail
    assert {
        p.relative_to(tmp_path / "pod2").as_posix() for p in (tmp_path / "pod2").rglob("*") if p.is_file()
    } == set(files)
    # the same digest asked for as a file: not the kind of the caller's version (and another entry)
    got = read(running, "tok-a", tmp_path / "pod3", uri="https://h/x", sha=digest)
    assert (got.what, got.detail) == (nc.REFUSED, f"403 {R.CACHE_WRONG_KIND}")


def test_another_namespace_without_a_verified_version_gets_403_even_for_a_digest_on_the_node(
    running: Running, tmp_path: Path
) -> None:
    nc.offer(running.cache("tok-a"), URI, SHA, laid_out(tmp_path, "pod1", {"model.bin": DATA}))
    got = read(running, "tok-b", tmp_path / "hostile")
    assert (got.what, got.detail) == (nc.REFUSED, f"403 {R.CACHE_NO_VERSION}")
    assert not (tmp_path / "hostile").exists() or list((tmp_path / "hostile").iterdir()) == []
    assert running.refusals(R.CACHE_NO_VERSION) == 1
    assert running.api.calls[-1] == "versions team-b"  # only the caller's namespace is looked at
    # nor can it fill: a refused offer stores nothing
    other = laid_out(tmp_path, "junk", {"model.bin": b"junk"})
    assert (
        nc.offer(running.cache("tok-b"), URI, hashlib.sha256(b"junk").hexdigest(), other).what == nc.REFUSED
    )


def test_refusals_come_before_presence_so_nobody_learns_what_the_node_holds(
    running: Running, tmp_path: Path
) -> None:
    assert read(running, "no-such-token", tmp_path / "x").detail == f"401 {R.CACHE_UNAUTHENTICATED}"
    assert read(running, "", tmp_path / "x").detail == f"401 {R.CACHE_UNAUTHENTICATED}"
    running.api.tenant("tok-c", "team-c", SHA, verified="False")
    assert read(running, "tok-c", tmp_path / "x").detail == f"403 {R.CACHE_NOT_VERIFIED}"
    running.api.down = True
    assert read(running, "tok-a", tmp_path / "x").detail == f"503 {R.CACHE_REVIEW_FAILED}"
    assert running.count("misses") == 0


def test_offered_bytes_that_do_not_hash_to_the_digest_offered_are_not_stored(
    running: Running, tmp_path: Path
) -> None:
    src = laid_out(tmp_path, "pod1", {"model.bin": b"poison"})
    got = nc.offer(running.cache("tok-a"), URI, SHA, src)
    assert (got.what, got.detail.split()[0]) == (nc.REFUSED, "422")
    assert running.refusals(R.CACHE_OFFER_MISMATCH) == 1
    assert read(running, "tok-a", tmp_path / "pod2").what == nc.MISS
    assert (
        list((running.root / "entries").iterdir()) == [] and list((running.root / "incoming").iterdir()) == []
    )


def test_an_entry_changed_on_the_nodes_disk_is_never_served_and_is_dropped(
    running: Running, tmp_path: Path
) -> None:
    nc.offer(running.cache("tok-a"), URI, SHA, laid_out(tmp_path, "pod1", {"model.bin": DATA}))
    (stored,) = (running.root / "entries").iterdir()
    tampered = bytearray(DATA)
    tampered[-1] ^= 1
    (stored / "data").write_bytes(bytes(tampered))
    got = read(running, "tok-a", tmp_path / "pod2")
    assert got.what == nc.CORRUPT and got.result is None
    assert list((tmp_path / "pod2").iterdir()) == []  # nothing laid out
    assert running.refusals(R.CACHE_ENTRY_CORRUPT) == 1 and running.count("hits") == 0
    assert list((running.root / "entries").iterdir()) == []
    assert read(running, "tok-a", tmp_path / "pod3").what == nc.MISS


def test_the_reader_hashes_what_it_gets_even_from_an_agent_that_lies(tmp_path: Path) -> None:
    """A stream that is well formed but not the pinned digest (an agent that does not check) is refused."""
    src = laid_out(tmp_path, "evil", {"model.bin": b"other bytes"})
    enc = Encoder("file", [SourceFile("model.bin", src / "model.bin", 11)])
    body = b"".join(enc.body()) + enc.trailer()

    import http.server

    class Liar(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cache = nc.NodeCache(f"http://127.0.0.1:{srv.server_address[1]}", "t")
        got = nc.read(cache, URI, SHA, tmp_path / "pod", policy=ArtifactPolicy())
    finally:
        srv.shutdown()
        srv.server_close()
    assert got.what == nc.CORRUPT and "DigestMismatch" in got.detail
    assert list((tmp_path / "pod").iterdir()) == []


def test_an_absent_agent_is_unreachable_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    t0 = time.monotonic()
    got = nc.read(
        nc.NodeCache(f"http://127.0.0.1:{port}", "t", timeout=3), URI, SHA, tmp_path, policy=ArtifactPolicy()
    )
    assert got.what == nc.UNREACHABLE and time.monotonic() - t0 < 3


def test_a_token_review_is_read_with_the_pods_node() -> None:
    from modelversioning.nodecache.kube import review_of

    status = {
        "authenticated": True,
        "audiences": [R.NODE_CACHE_AUDIENCE],
        "user": {"username": "system:serviceaccount:a:default", "extra": {R.TOKEN_NODE_NAME_EXTRA: ["n1"]}},
    }
    assert review_of(status) == Review(
        True, "system:serviceaccount:a:default", (R.NODE_CACHE_AUDIENCE,), node="n1"
    )
    assert review_of({"authenticated": False}) == Review(False)


def test_uris_of_unknown_kind_never_use_the_cache_and_oci_asks_by_manifest() -> None:
    assert nc.expected_kind("oci://r/x@sha256:" + SHA) == "oci"  # tests/test_node_cache_oci.py
    assert nc.expected_kind("s3://bucket/key") is None
    assert nc.expected_kind("s3://bucket/prefix/") == "directory"
    assert nc.expected_kind("http://h/model.bin") == "file"


def test_eviction_makes_room_for_an_offer_and_spares_an_entry_being_served(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_bytes=250)
    clock = iter(range(100))
    store.clock = lambda: float(next(clock))

    def put(name: str, size: int) -> str:
        data = name.encode() * size
        inc = store.begin("file", len(data))
        sink = inc.open_sink("file", "data")
        sink.write(data)
        sink.close()
        digest = hashlib.sha256(data).hexdigest()
        assert inc.commit(digest)
        return digest

    a, b = put("a", 100), put("b", 100)
    with store.reading("file", a) as files:  # a is used after b, and is being served now
        assert files is not None
        c = put("c", 100)  # room for c: b goes (least recently used and idle), a stays (leased)
        assert (store.has(f"file-{a}"), store.has(f"file-{b}"), store.has(f"file-{c}")) == (True, False, True)
        with pytest.raises(Exception, match="do not fit"):
            store.begin("file", 200)  # would need a, which is being served
    assert store.evicted == 1
    put("d", 200)  # a is idle again: a and c go
    assert store.count() == 1 and store.evicted == 3


# ------------------------------------------------------------------------------------- the command


def test_verify_artifact_fills_then_starts_a_second_pod_from_the_cache_without_the_origin(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"a.bin": b"x" * 2048, "sub/b.bin": b"y"}
    origin = laid_out(tmp_path, "origin", files)
    digest = manifest_digest((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
    running.api.tenant("tok-a", "team-a", digest, uri=DIR_URI)
    (tmp_path / "token").write_text("tok-a\n")
    policy = ArtifactPolicy(file_roots=[str(tmp_path)]).model_dump_json(by_alias=True)

    def pod(name: str) -> tuple[int, dict[str, Any], str]:
        argv = [origin.as_uri() + "/", "--sha256", digest, "--dest", str(tmp_path / name), "--output", "json",
                "--env-credentials", "secret", "--policy-json", policy, "--node-cache", running.url,
                "--node-cache-token-file", str(tmp_path / "token")]  # fmt: skip
        code = verify_cli.main(argv)
        out, err = capsys.readouterr()
        return code, json.loads(out), err

    code, out, err = pod("pod1")
    assert (
        (code, out["reason"]) == (0, "Verified")
        and "node-cache: miss" in err
        and "node-cache: offered" in err
    )
    for rel in files:  # the origin is gone: the second pod can only start from the cache
        (origin / rel).unlink()
    code, out, err = pod("pod2")
    assert (code, out["reason"], out["actual"]) == (0, "Verified", digest), err
    assert "node-cache: hit" in err and "from the node cache" in out["message"]
    assert (tmp_path / "pod2" / "sub" / "b.bin").read_bytes() == b"y"


def test_verify_artifact_with_an_absent_agent_fetches_from_the_origin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    origin = laid_out(tmp_path, "origin", {"a.bin": b"z"})
    digest = manifest_digest([("a.bin", hashlib.sha256(b"z").hexdigest())])
    (tmp_path / "token").write_text("t")
    policy = ArtifactPolicy(file_roots=[str(tmp_path)]).model_dump_json(by_alias=True)
    argv = [origin.as_uri() + "/", "--sha256", digest, "--dest", str(tmp_path / "pod"), "--output", "json",
            "--policy-json", policy, "--node-cache", "http://127.0.0.1:9", "--node-cache-token-file",
            str(tmp_path / "token")]  # fmt: skip
    assert verify_cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["reason"] == "Verified" and "node-cache: unreachable" in err
    assert (tmp_path / "pod" / "a.bin").read_bytes() == b"z"
