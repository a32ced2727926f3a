"""The node cache for ``oci://`` artifacts (issue 26): an entry asked for by the pinned manifest digest is
the directory of files the operator laid out from it for the caller's own verified version
(``status.artifact.contentDigest``); the reader hashes what it gets against that digest. A real registry
(``docker-registry``) for the command's round trip: a second pod starts without a blob request."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import node_cache as nc
from modelversioning.artifacts import verify_artifact
from modelversioning.artifacts.manifest import manifest_digest
from modelversioning.cli import verify as verify_cli
from modelversioning.domain.node_cache import Review, authorize
from modelversioning.nodecache.server import Agent, AgentServer
from modelversioning.nodecache.store import Store
from test_node_cache_protocol import FakeApi, Running, laid_out, serving

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import RegistryServer, push_oras  # noqa: E402

MANIFEST = "c" * 64
FILES = {"model.bin": b"oci weights\n" * 4000, "cfg/labels.json": b'{"0": "ok"}'}
CONTENT = manifest_digest((k, hashlib.sha256(v).hexdigest()) for k, v in FILES.items())
OCI_URI = f"oci://registry.example.com/team/fraud@sha256:{MANIFEST}"
TENANT = Review(True, "system:serviceaccount:team-a:default", (R.NODE_CACHE_AUDIENCE,))
POLICY = ArtifactPolicy(
    allowed_schemes=["oci"], allowed_private_networks=["127.0.0.0/8"], plain_http_registries=["127.0.0.1"]
)


def oci_version(
    ns: str, content: str | None = CONTENT, uri: str = OCI_URI, sha: str = MANIFEST
) -> dict[str, Any]:
    artifact: dict[str, Any] = {"digest": sha}
    if content is not None:
        artifact["contentDigest"] = content
    return {
        "metadata": {"namespace": ns, "name": f"m-{ns}"},
        "spec": {"artifact": {"sha256": sha, "uri": uri}},
        "status": {"artifact": artifact, "conditions": [{"type": "ArtifactVerified", "status": "True"}]},
    }


# ------------------------------------------------------------------------------------------ the rule


def test_an_oci_entry_is_the_callers_own_verified_versions_content_digest() -> None:
    d = authorize(TENANT, "oci", MANIFEST, [oci_version("team-a")])
    assert (d.allowed, d.content, d.version) == (True, CONTENT, "m-team-a")
    # verified, but no contentDigest recorded (or not a digest): nothing to name the entry by
    for bad in (None, "", "../etc", "C" * 64):
        d = authorize(TENANT, "oci", MANIFEST, [oci_version("team-a", content=bad)])
        assert (d.allowed, d.reason) == (False, R.CACHE_NOT_VERIFIED), bad
    # another namespace's verified version of the same manifest does not count
    d = authorize(TENANT, "oci", MANIFEST, [oci_version("team-b")])
    assert (d.allowed, d.reason) == (False, R.CACHE_NO_VERSION)


def test_an_oci_version_reads_only_through_its_manifest_and_others_never_through_it() -> None:
    # an oci version cannot ask for the directory entry of its files directly (nor a file)
    for kind, digest in (("directory", CONTENT), ("file", MANIFEST), ("directory", MANIFEST)):
        d = authorize(TENANT, kind, digest, [oci_version("team-a", sha=digest)])
        assert (d.allowed, d.reason) == (False, R.CACHE_WRONG_KIND), kind
    # a directory (or file) version whose digest happens to be a manifest's: not an oci entry
    d = authorize(TENANT, "oci", MANIFEST, [oci_version("team-a", uri="https://h/dir/")])
    assert (d.allowed, d.reason) == (False, R.CACHE_WRONG_KIND)


# ----------------------------------------------------------------------------------- over real HTTP


@pytest.fixture
def oci_running(tmp_path: Path) -> Iterator[Running]:
    api = FakeApi()
    api.tokens["tok-a"] = TENANT
    api.versions_by_ns["team-a"] = [oci_version("team-a")]
    api.tokens["tok-b"] = Review(True, "system:serviceaccount:team-b:default", (R.NODE_CACHE_AUDIENCE,))
    with serving(Agent(Store(tmp_path / "cache", 1 << 24), api), api, tmp_path / "cache") as (r, _):
        yield r


def _read(r: Running, token: str, dest: Path, content: str = CONTENT) -> nc.Outcome:
    """What the init container reads, with the contentDigest the operator pinned in its arguments."""
    return nc.read(
        r.cache(token), OCI_URI, MANIFEST, dest, policy=ArtifactPolicy(), expected_size=10, content=content
    )


def test_oci_files_are_offered_by_manifest_stored_by_content_and_read_back_hashed(
    oci_running: Running, tmp_path: Path
) -> None:
    assert _read(oci_running, "tok-a", tmp_path / "pod0").what == nc.MISS
    src = laid_out(tmp_path, "pod1", FILES)
    assert nc.offer(oci_running.cache("tok-a"), OCI_URI, MANIFEST, src).what == nc.OFFERED
    entry = oci_running.root / "entries" / f"directory-{CONTENT}"
    assert (entry / "files" / "model.bin").read_bytes() == FILES["model.bin"]
    assert (entry / "owner").read_text() == "team-a"
    got = _read(oci_running, "tok-a", tmp_path / "pod2")  # sizeBytes (the layers') is not the files'
    assert got.what == nc.HIT and got.result is not None and got.result.ok, got.detail
    assert (got.result.expected, got.result.actual, got.result.content_digest) == (
        MANIFEST,
        MANIFEST,
        CONTENT,
    )
    assert (tmp_path / "pod2" / "cfg" / "labels.json").read_bytes() == FILES["cfg/labels.json"]
    # another tenant (no version of that manifest) is refused before anything is looked up
    got = _read(oci_running, "tok-b", tmp_path / "pod3")
    assert got.what == nc.REFUSED and R.CACHE_NO_VERSION in got.detail


def test_files_that_are_not_the_versions_content_are_neither_stored_nor_served(
    oci_running: Running, tmp_path: Path
) -> None:
    other = laid_out(tmp_path, "evil", {**FILES, "model.bin": b"poisoned"})
    done = nc.offer(oci_running.cache("tok-a"), OCI_URI, MANIFEST, other)
    assert done.what == nc.REFUSED and "422" in done.detail
    assert oci_running.refusals(R.CACHE_OFFER_MISMATCH) == 1
    assert (
        nc.offer(oci_running.cache("tok-a"), OCI_URI, MANIFEST, laid_out(tmp_path, "ok", FILES)).what
        == nc.OFFERED
    )
    # the entry's bytes changed on the node's disk: dropped, never served
    (oci_running.root / "entries" / f"directory-{CONTENT}" / "files" / "model.bin").write_bytes(b"x" * 48000)
    got = _read(oci_running, "tok-a", tmp_path / "pod")
    assert got.what == nc.CORRUPT
    assert not (tmp_path / "pod").exists() or not any((tmp_path / "pod").iterdir())
    assert oci_running.refusals(R.CACHE_ENTRY_CORRUPT) == 1
    assert not (oci_running.root / "entries" / f"directory-{CONTENT}").exists()


class _Liar:
    """An agent (the node's, compromised, or anything listening on its port) that names ``named`` as the
    files' digest and sends the files ``files``, well-formed and hashing to what they are."""

    def __init__(self, tmp_path: Path, named: str, files: dict[str, bytes]) -> None:
        import http.server

        from modelversioning.artifacts.cache_stream import Encoder, files_under

        src = laid_out(tmp_path, "evil", files)
        enc = Encoder("directory", files_under(src, "directory"))
        body = b"".join(enc.body()) + enc.trailer()

        class Liar(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header(nc.CONTENT_HEADER, named)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def read(self, dest: Path, content: str = CONTENT) -> nc.Outcome:
        try:
            cache = nc.NodeCache(f"http://127.0.0.1:{self.srv.server_address[1]}", "t")
            return nc.read(cache, OCI_URI, MANIFEST, dest, policy=ArtifactPolicy(), content=content)
        finally:
            self.srv.shutdown()
            self.srv.server_close()


OTHER_FILES = {"model.bin": b"other"}
OTHER = manifest_digest((k, hashlib.sha256(v).hexdigest()) for k, v in OTHER_FILES.items())


def test_the_reader_refuses_an_agent_naming_another_content_digest_with_files_matching_it(
    tmp_path: Path,
) -> None:
    """The agent names OTHER and sends files that do hash to OTHER: the pod pinned CONTENT (the verified
    contentDigest the operator rendered into its arguments), so nothing is laid out."""
    got = _Liar(tmp_path, OTHER, OTHER_FILES).read(tmp_path / "pod")
    assert got.what == nc.CORRUPT and "not the pinned one" in got.detail, got.detail
    assert not (tmp_path / "pod").exists() or not any((tmp_path / "pod").iterdir())


def test_the_reader_refuses_files_that_do_not_hash_to_the_pinned_content_digest(tmp_path: Path) -> None:
    """The agent names the pinned digest but sends other (well-formed, self-consistent) files."""
    got = _Liar(tmp_path, CONTENT, OTHER_FILES).read(tmp_path / "pod")
    assert got.what == nc.CORRUPT and "not the pinned contentDigest" in got.detail, got.detail
    assert not any((tmp_path / "pod").iterdir())


def test_without_a_pinned_content_digest_an_oci_pod_does_not_use_the_cache(
    oci_running: Running, tmp_path: Path
) -> None:
    assert nc.offer(oci_running.cache("tok-a"), OCI_URI, MANIFEST, laid_out(tmp_path, "s", FILES)).what == (
        nc.OFFERED
    )
    for content in ("", "sha256:" + CONTENT, OTHER[:63]):
        got = _read(oci_running, "tok-a", tmp_path / "pod", content=content)
        assert got.what == nc.SKIPPED and not (tmp_path / "pod").exists(), got
    assert oci_running.count("hits") == 0  # not even asked


# ------------------------------------------------------------------- the command, a real registry


def test_a_second_pod_starts_from_the_cache_without_a_blob_request_to_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RegistryServer.start(tmp_path / "registry") as reg:
        pushed = push_oras(reg.url, "team/fraud", FILES, tag="1.0.0")
        uri = f"oci://{reg.netloc}/team/fraud:1.0.0@{pushed.digest}"
        checked = verify_artifact(uri, pushed.hex, policy=POLICY)  # the operator's verification
        assert checked.ok and checked.content_digest == CONTENT
        api = FakeApi()
        api.tokens["tok-a"] = TENANT
        api.versions_by_ns["team-a"] = [oci_version("team-a", uri=uri, sha=pushed.hex)]
        agent = Agent(Store(tmp_path / "cache", 1 << 24), api)
        server = AgentServer(("127.0.0.1", 0), agent)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (tmp_path / "token").write_text("tok-a\n")

        def pod(name: str) -> tuple[int, dict[str, Any], str]:
            argv = [uri, "--sha256", pushed.hex, "--dest", str(tmp_path / name), "--output", "json",
                    "--size-bytes", str(pushed.size), "--env-credentials", "secret",
                    "--policy-json", POLICY.model_dump_json(by_alias=True),
                    "--node-cache", f"http://127.0.0.1:{server.server_address[1]}",
                    "--node-cache-token-file", str(tmp_path / "token"),
                    "--node-cache-content-digest", CONTENT]  # fmt: skip
            code = verify_cli.main(argv)
            out, err = capsys.readouterr()
            return code, json.loads(out), err

        try:
            code, out, err = pod("pod1")
            assert (code, out["reason"]) == (0, "Verified") and "node-cache: miss" in err, err
            assert "node-cache: offered" in err and "201" in err, err
            blobs = sum(1 for line in reg.access_log() if "/blobs/" in line)
            code, out, err = pod("pod2")
            assert (code, out["reason"], out["actual"]) == (0, "Verified", pushed.hex), err
            assert "node-cache: hit" in err and "from the node cache" in out["message"]
            assert sum(1 for line in reg.access_log() if "/blobs/" in line) == blobs  # no layer pulled
            assert (tmp_path / "pod2" / "model.bin").read_bytes() == FILES["model.bin"]
            # the entry tampered with on the node: refused, the registry serves the third pod
            shutil.rmtree(tmp_path / "pod2")
            (tmp_path / "cache" / "entries" / f"directory-{CONTENT}" / "files" / "model.bin").write_bytes(
                b"y" * len(FILES["model.bin"])
            )
            code, out, err = pod("pod3")
            assert (code, out["reason"]) == (0, "Verified") and "node-cache: corrupt" in err, err
            assert "from the node cache" not in out["message"]
            assert sum(1 for line in reg.access_log() if "/blobs/" in line) > blobs
            assert (tmp_path / "pod3" / "model.bin").read_bytes() == FILES["model.bin"]
        finally:
            server.shutdown()
            server.server_close()
