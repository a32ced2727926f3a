"""The node cache under attack (a security review): a file version whose bytes are another tenant's
manifest text, withdrawn versions, hostile Content-Lengths, slow and many connections, a flood of
tokens, and evictions racing fresh entries of the same key."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_node_cache_protocol import DATA, DIR_URI, SHA, URI, FakeApi, Running, laid_out, read

from modelversioning.api import wire as R
from modelversioning.artifacts import node_cache as nc
from modelversioning.artifacts.cache_stream import Encoder, SourceFile
from modelversioning.artifacts.manifest import manifest_digest, manifest_text
from modelversioning.nodecache.server import Agent, AgentServer
from modelversioning.nodecache.store import Store


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    api = FakeApi()
    api.tenant("tok-a", "team-a", SHA)
    agent = Agent(Store(tmp_path / "cache", 10 * len(DATA)), api)
    server = AgentServer(("127.0.0.1", 0), agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Running(agent, api, f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "cache")
    finally:
        server.shutdown()
        server.server_close()


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
