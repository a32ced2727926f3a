"""The fallback artifact probe (artifacts.probe, RollbackReady): is a verified artifact still at its URI,
by a HEAD, a stat or a listing, never its bytes; under the URI policy like a verification."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts.probe import probe_artifact
from modelversioning.artifacts.runner import probe_in_child

LOOPBACK = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[tuple[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, head: bool) -> None:
        self.seen.append(("HEAD" if head else "GET", self.path))
        body = self.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.seen.append(("BODY", self.path))

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.files = {"/m.bin": b"weights" * 100}
    _Handler.seen = []
    yield f"http://{server.server_address[0]}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_present_missing_changed_by_head_only(http_base: str) -> None:
    assert probe_artifact(f"{http_base}/m.bin", policy=LOOPBACK, expected_size=700).state == R.PROBE_PRESENT
    assert probe_artifact(f"{http_base}/m.bin", policy=LOOPBACK, expected_size=701).state == R.PROBE_CHANGED
    del _Handler.files["/m.bin"]  # the store deleted it
    r = probe_artifact(f"{http_base}/m.bin", policy=LOOPBACK, expected_size=700)
    assert r.state == R.PROBE_MISSING, r.message
    assert ("BODY", "/m.bin") not in _Handler.seen  # never the bytes (fsspec GETs a 404 once more)


def test_the_uri_policy_applies(http_base: str, tmp_path: Path) -> None:
    # loopback is private: refused unless the platform allows it, like a verification
    r = probe_artifact(f"{http_base}/m.bin", policy=ArtifactPolicy(), expected_size=700)
    assert r.state == R.PROBE_UNREACHABLE and "private" in r.message
    assert _Handler.seen == []  # refused before connecting
    meta = probe_artifact(
        "http://169.254.169.254/latest/meta-data/", policy=ArtifactPolicy(allow_private_networks=True)
    )
    assert meta.state == R.PROBE_UNREACHABLE
    outside = probe_artifact("file:///etc/passwd", policy=ArtifactPolicy(file_roots=[str(tmp_path)]))
    assert outside.state == R.PROBE_UNREACHABLE and "allowed file root" in outside.message


def test_files_and_directories(tmp_path: Path) -> None:
    policy = ArtifactPolicy(file_roots=[str(tmp_path)])
    d = tmp_path / "model"
    d.mkdir()
    (d / "a.bin").write_bytes(b"aaaa")
    (d / "b.bin").write_bytes(b"bb")
    uri = f"file://{d}/"
    assert probe_artifact(uri, policy=policy, expected_size=6, expected_files=2).state == R.PROBE_PRESENT
    (d / "c.bin").write_bytes(b"c")
    assert probe_artifact(uri, policy=policy, expected_size=6, expected_files=2).state == R.PROBE_CHANGED
    for f in d.iterdir():
        f.unlink()
    assert probe_artifact(uri, policy=policy, expected_size=6, expected_files=2).state == R.PROBE_MISSING
    assert probe_artifact(f"file://{tmp_path}/gone.bin", policy=policy).state == R.PROBE_MISSING


def test_in_the_worker_process(http_base: str) -> None:
    r = probe_in_child(f"{http_base}/m.bin", policy=LOOPBACK, expected_size=700, expected_files=1)
    assert r.state == R.PROBE_PRESENT, r.message
    r = probe_in_child(f"{http_base}/gone.bin", policy=LOOPBACK, expected_size=700, expected_files=1)
    assert r.state == R.PROBE_MISSING, r.message


def test_a_store_that_does_not_answer_is_unreachable_not_missing() -> None:
    policy = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"], timeout_seconds=2)
    r = probe_artifact("http://127.0.0.1:9/m.bin", policy=policy)  # discard port: refused
    assert r.state == R.PROBE_UNREACHABLE, r.message
