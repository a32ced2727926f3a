"""Unit tests for modelversioning.artifacts and the verify-artifact CLI (no cluster, loopback only)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import (
    ArtifactError,
    Reason,
    check_address,
    check_uri,
    classify_exception,
    compute_digest,
    digest_local,
    manifest_digest,
    manifest_text,
    redact_text,
    redact_uri,
    storage_options,
    store_access,
    verify_artifact,
)
from modelversioning.artifacts.credentials import HOSTS_KEY
from modelversioning.cli.verify import main

SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA_HELLO = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
WRONG = "0" * 64

# The manifest of the tree built by `tree()`, written out by hand, and its digest (also what
#   find -L . -type f -printf '%P\n' | LC_ALL=C sort | while ...; done | sha256sum
# prints for that tree).
TREE_MANIFEST = f"a.txt {SHA_ABC}\nsub/empty {SHA_EMPTY}\nsub/with space {SHA_HELLO}\n"
TREE_DIGEST = "44f6e35b5a81468822a799d2948c6c00a9b2f8e57c10bcfcc10edaa0f4eb63ab"


# The loopback test servers are "private": allowed explicitly, as a platform would allow its store.
LOOPBACK = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])


def policy_for(*roots: Path, **kw: Any) -> ArtifactPolicy:
    return ArtifactPolicy(file_roots=[str(r) for r in roots], chunk_size=64 * 1024, **kw)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    # Created in an order unlike the manifest order.
    (d / "sub" / "with space").write_bytes(b"hello")
    (d / "sub" / "empty").write_bytes(b"")
    (d / "a.txt").write_bytes(b"abc")
    return d


# --------------------------------------------------------------------------------------------
# digests and the manifest


def test_known_vectors(tmp_path: Path) -> None:
    assert hashlib.sha256(b"").hexdigest() == SHA_EMPTY
    assert hashlib.sha256(b"abc").hexdigest() == SHA_ABC
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "abc.bin").write_bytes(b"abc")
    policy = policy_for(tmp_path)
    for name, sha, size in (("empty.bin", SHA_EMPTY, 0), ("abc.bin", SHA_ABC, 3)):
        r = verify_artifact(f"file://{tmp_path}/{name}", sha, policy=policy)
        assert r.ok, r.message
        assert (r.reason, r.actual, r.size_bytes, r.files, r.kind) == (Reason.VERIFIED, sha, size, 1, "file")
        assert r.transient is False
        assert digest_local(tmp_path / name).sha256 == sha


def test_directory_manifest_hand_computed(tree: Path) -> None:
    assert hashlib.sha256(TREE_MANIFEST.encode()).hexdigest() == TREE_DIGEST
    d = digest_local(tree)
    assert (d.sha256, d.kind, d.files, d.size_bytes) == (TREE_DIGEST, "directory", 3, 8)
    assert [(e.path, e.sha256) for e in d.entries] == [
        ("a.txt", SHA_ABC),
        ("sub/empty", SHA_EMPTY),
        ("sub/with space", SHA_HELLO),
    ]
    entries = [(e.path, e.sha256) for e in d.entries]
    assert manifest_text(reversed(entries)) == TREE_MANIFEST
    assert manifest_digest(entries) == TREE_DIGEST
    policy = policy_for(tree.parent)
    for uri in (f"file://{tree}", f"file://{tree}/"):
        r = verify_artifact(uri, TREE_DIGEST, policy=policy)
        assert r.ok, r.message
        assert (r.files, r.size_bytes, r.kind) == (3, 8, "directory")


def _doc_block(title: str) -> str:
    """The indented code block after ``title`` in the manifest module docstring."""
    import textwrap

    import modelversioning.artifacts.manifest as m

    doc = m.__doc__ or ""
    rest = doc[doc.index(title) :].split("::\n", 1)[1]
    lines = []
    for line in rest.splitlines()[1:]:
        if line.strip() and not line.startswith("        "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_documented_recipes_compute_the_same_digest(tree: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(_doc_block("Python (3.11+)"), namespace)
    assert namespace["artifact_sha256"](str(tree)) == TREE_DIGEST
    script = _doc_block("Shell (GNU").replace("cd model", f"cd '{tree}'")
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split()[0] == TREE_DIGEST


def test_manifest_sorted_by_path_in_code_point_order() -> None:
    # ' ' (0x20) < '.' (0x2e) < '/' (0x2f) < 'B' < 'a' < 'é': by path, not by whole line.
    entries = [
        ("é", SHA_ABC),
        ("a/b", SHA_ABC),
        ("a.b", SHA_ABC),
        ("a b", SHA_ABC),
        ("B", SHA_ABC),
        ("a", "f" * 64),
    ]
    text = manifest_text(entries)
    assert [line.rsplit(" ", 1)[0] for line in text.splitlines()] == ["B", "a", "a b", "a.b", "a/b", "é"]
    assert manifest_digest(entries) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    with pytest.raises(ValueError):
        manifest_text([("../x", SHA_ABC)])
    with pytest.raises(ValueError):
        manifest_text([("a\nb", SHA_ABC)])


def test_parallel_hashing_is_order_independent(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    expected = []
    for i in reversed(range(24)):  # created in reverse; sizes straddle the chunk size
        data = bytes([i]) * (1000 + i * 7000)
        (d / f"part-{i:02d}.bin").write_bytes(data)
        expected.append((f"part-{i:02d}.bin", hashlib.sha256(data).hexdigest()))
    want = manifest_digest(expected)
    digests = {
        workers: verify_artifact(
            f"file://{d}/", want, policy=policy_for(tmp_path, max_workers=workers)
        ).actual
        for workers in (1, 3, 8)
    }
    assert set(digests.values()) == {want}
    assert digest_local(d, max_workers=8).sha256 == want


def test_wrong_digest_is_mismatch(tree: Path) -> None:
    r = verify_artifact(f"file://{tree}/a.txt", WRONG, policy=policy_for(tree))
    assert r.reason is Reason.DIGEST_MISMATCH and not r.ok
    assert r.actual == SHA_ABC and r.expected == WRONG and r.transient is False
    r = verify_artifact(f"file://{tree}/", WRONG, policy=policy_for(tree))
    assert r.reason is Reason.DIGEST_MISMATCH and r.actual == TREE_DIGEST


def test_expected_digest_must_be_hex() -> None:
    with pytest.raises(ValueError):
        verify_artifact("file:///x", "abc")


def test_not_found(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    r = verify_artifact(f"file://{tmp_path}/missing.onnx", SHA_ABC, policy=policy)
    assert r.reason is Reason.NOT_FOUND and r.transient is True
    assert "not have been uploaded yet" in r.message
    (tmp_path / "empty-dir").mkdir()
    r = verify_artifact(f"file://{tmp_path}/empty-dir/", SHA_EMPTY, policy=policy)
    assert r.reason is Reason.NOT_FOUND
    with pytest.raises(ArtifactError) as e:
        digest_local(tmp_path / "missing")
    assert e.value.reason is Reason.NOT_FOUND


def test_progress_callback(tree: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    r = verify_artifact(
        f"file://{tree}/", TREE_DIGEST, policy=policy_for(tree), progress=lambda d, t: calls.append((d, t))
    )
    assert r.ok
    assert calls[0] == (0, 8) and calls[-1] == (8, 8)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --------------------------------------------------------------------------------------------
# partial reads: a custom fsspec backend whose stream ends early, and HTTP below


class _ShortFS(AbstractFileSystem):
    """Reports 100 bytes, delivers 50 (or delivers slowly)."""

    protocol = "shortread"
    slow = False

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return {"name": path, "size": 100, "type": "file"}

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if self.slow:
            return _SlowBytes(b"x" * 100)
        return io.BytesIO(b"x" * 50)


class _SlowBytes(io.BytesIO):
    def read(self, n: int | None = -1) -> bytes:
        time.sleep(0.05)
        return super().read(1)


@pytest.fixture
def shortfs() -> Iterator[type[_ShortFS]]:
    fsspec.register_implementation("shortread", _ShortFS, clobber=True)
    yield _ShortFS
    _ShortFS.slow = False


def test_truncated_stream_is_fetch_failed_not_a_digest(shortfs: type[_ShortFS], tmp_path: Path) -> None:
    policy = ArtifactPolicy(allowed_schemes=["shortread"])
    sha_of_50 = hashlib.sha256(b"x" * 50).hexdigest()
    r = verify_artifact("shortread://bucket/model.bin", sha_of_50, policy=policy, dest=tmp_path / "out")
    assert r.reason is Reason.FETCH_FAILED and r.transient is True
    assert r.actual is None
    assert "read 50 of 100 bytes" in r.message
    assert list((tmp_path / "out").iterdir()) == []  # the partial file was deleted


def test_timeout_is_a_permanent_limit(shortfs: type[_ShortFS]) -> None:
    shortfs.slow = True
    policy = ArtifactPolicy(allowed_schemes=["shortread"], timeout_seconds=0.1)
    r = verify_artifact("shortread://bucket/model.bin", WRONG, policy=policy)
    assert r.reason is Reason.LIMIT_EXCEEDED and r.transient is False
    assert "artifacts.timeoutSeconds" in r.message


# --------------------------------------------------------------------------------------------
# HTTP against a real local server


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}
    seen_headers: list[dict[str, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _route(self, head: bool) -> None:
        type(self).seen_headers.append(dict(self.headers))
        path = self.path.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, headers, body, get_length = route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        length = len(body) if head or get_length is None else get_length
        if status < 300 or status >= 400:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body[:length])
            self.wfile.flush()
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    _Handler.routes = {
        "/abc.bin": (200, {}, b"abc", None),
        # HEAD says 100, GET promises 100 but sends 50 and closes.
        "/cut.bin": (200, {}, b"y" * 50, 100),
        # HEAD says 50 (body length) but GET promises (and sends) 20: the store "lies".
        "/short.bin": (200, {}, b"z" * 50, 20),
        "/private.bin": (403, {}, b"no", None),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"", None),
        "/to-elsewhere": (302, {"Location": "http://evil.example/x"}, b"", None),
        "/to-abc": (302, {"Location": "/abc.bin"}, b"", None),
    }
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def test_http_file_verified(http_base: str) -> None:
    r = verify_artifact(f"{http_base}/abc.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.ok, r.message
    assert (r.size_bytes, r.files, r.kind) == (3, 1, "file")
    r = verify_artifact(f"{http_base}/to-abc", SHA_ABC, policy=LOOPBACK, env={})
    assert r.ok, r.message  # a redirect within policy is followed


def test_http_content_length_larger_than_body(http_base: str, tmp_path: Path) -> None:
    r = verify_artifact(
        f"{http_base}/cut.bin",
        hashlib.sha256(b"y" * 50).hexdigest(),
        policy=LOOPBACK,
        env={},
        dest=tmp_path,
    )
    assert r.reason is Reason.FETCH_FAILED and r.transient and r.actual is None, r.message
    assert list(tmp_path.iterdir()) == []


def test_http_size_differs_from_reported(http_base: str) -> None:
    r = verify_artifact(
        f"{http_base}/short.bin", hashlib.sha256(b"z" * 20).hexdigest(), policy=LOOPBACK, env={}
    )
    assert r.reason is Reason.FETCH_FAILED and r.actual is None, r.message
    assert "read 20 of 50 bytes" in r.message


def test_http_not_found_and_denied(http_base: str) -> None:
    r = verify_artifact(f"{http_base}/nope.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.NOT_FOUND and r.transient, r.message
    r = verify_artifact(f"{http_base}/private.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.ACCESS_DENIED and not r.transient, r.message


def test_http_redirects_are_checked(http_base: str) -> None:
    r = verify_artifact(f"{http_base}/to-metadata", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.URI_REFUSED, r.message
    assert "metadata" in r.message
    policy = ArtifactPolicy(allowed_hosts=["127.0.0.1"], allowed_private_networks=["127.0.0.0/8"])
    r = verify_artifact(f"{http_base}/to-elsewhere", SHA_ABC, policy=policy, env={})
    assert r.reason is Reason.URI_REFUSED and "allowedHosts" in r.message, r.message


def test_http_private_network_refused_when_disallowed(http_base: str) -> None:
    r = verify_artifact(f"{http_base}/abc.bin", SHA_ABC, policy=ArtifactPolicy())  # the default
    assert r.reason is Reason.URI_REFUSED and "loopback/private" in r.message


def test_http_credentials_sent_but_never_shown(http_base: str) -> None:
    token = "tok-very-secret-123"
    _Handler.seen_headers.clear()
    uri = f"{http_base}/private.bin?X-Amz-Signature=SIGSECRET&X-Amz-Credential=AKIAEXAMPLE"
    secret = {"HTTP_AUTHORIZATION": token, HOSTS_KEY: "127.0.0.1"}
    r = verify_artifact(uri, SHA_ABC, policy=LOOPBACK, secret_data=secret)
    assert r.reason is Reason.ACCESS_DENIED
    assert any(h.get("Authorization") == f"Bearer {token}" for h in _Handler.seen_headers)
    blob = json.dumps(r.to_dict()) + repr(r)
    for secret in (token, "SIGSECRET", "AKIAEXAMPLE"):
        assert secret not in blob
    assert r.uri == f"{http_base}/private.bin?REDACTED"


# --------------------------------------------------------------------------------------------
# URI policy


def _fake_resolver(answers: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int | None) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    "uri, needle",
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest", "metadata"),
        ("http://100.100.100.200/latest", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://METADATA./x", "metadata"),
        ("http://169.254.10.10/model.onnx", "link-local"),
        ("http://[fe80::1]/model.onnx", "link-local"),
        ("http://[::ffff:169.254.169.254]/x", "metadata"),
        ("ftp://example.com/model.onnx", "allowedSchemes"),
        ("https://user:pass@example.com/model.onnx", "Secret"),
        ("s3://AKIA:secret@bucket/model.onnx", "Secret"),
        ("model.onnx", "absolute"),
    ],
)
def test_policy_refusals(uri: str, needle: str) -> None:
    refusal = check_uri(uri, ArtifactPolicy(), resolver=_fake_resolver({}))
    assert refusal is not None and needle in refusal
    assert "user:pass" not in refusal and "AKIA" not in refusal


def test_policy_resolves_names() -> None:
    resolver = _fake_resolver(
        {
            "sneaky.example": ["93.184.216.34", "169.254.169.254"],
            "ok.example": ["93.184.216.34"],
            "internal.example": ["10.1.2.3"],
        }
    )
    assert "resolves to a refused address" in (
        check_uri("https://sneaky.example/m", ArtifactPolicy(), resolver=resolver) or ""
    )
    assert check_uri("https://ok.example/m", ArtifactPolicy(), resolver=resolver) is None
    loose = ArtifactPolicy(allow_private_networks=True)
    assert check_uri("https://internal.example/m", loose, resolver=resolver) is None
    strict = ArtifactPolicy()  # the default
    assert check_uri("https://internal.example/m", strict, resolver=resolver) is not None
    assert check_uri("https://ok.example/m", strict, resolver=resolver) is None
    # unresolvable names are not refused by the policy (the fetch fails instead)
    assert check_uri("https://unknown.example/m", strict, resolver=resolver) is None
    # odd numeric forms are resolved by the system resolver to 169.254.169.254
    assert check_uri("http://2852039166/", ArtifactPolicy()) is not None


def test_policy_private_networks() -> None:
    loose, strict = ArtifactPolicy(allow_private_networks=True), ArtifactPolicy()
    for uri in ("http://127.0.0.1:8080/m", "http://10.0.0.1/m", "http://[::1]/m", "http://100.64.1.1/m"):
        assert check_uri(uri, loose) is None, uri
        assert "allowPrivateNetworks" in (check_uri(uri, strict) or ""), uri
    assert check_address("8.8.8.8", strict) is None
    assert check_address("169.254.1.1", loose) is not None


def test_policy_host_allow_list() -> None:
    policy = ArtifactPolicy(allowed_hosts=["models.example.com", "*.blob.example.net"])
    no_dns = _fake_resolver({})
    assert check_uri("https://models.example.com/m", policy, resolver=no_dns) is None
    assert check_uri("https://MODELS.example.com./m", policy, resolver=no_dns) is None
    assert check_uri("https://a.b.blob.example.net/m", policy, resolver=no_dns) is None
    assert check_uri("https://blob.example.net/m", policy, resolver=no_dns) is not None
    assert check_uri("https://evil.com/m", policy, resolver=no_dns) is not None
    assert check_uri("https://models.example.com.evil.com/m", policy, resolver=no_dns) is not None
    # s3: the endpoint is the host; no endpoint means the AWS default
    assert check_uri("s3://bucket/m", policy) is not None
    assert check_uri("s3://bucket/m", policy, endpoint_url="https://models.example.com") is None
    assert check_uri("s3://bucket/m", ArtifactPolicy(allowed_hosts=["*.amazonaws.com"])) is None


def test_policy_s3_endpoint_is_checked() -> None:
    policy = ArtifactPolicy(allow_private_networks=True)
    assert "metadata" in (check_uri("s3://b/m", policy, endpoint_url="http://169.254.169.254") or "")
    assert check_uri("s3://b/m", policy, endpoint_url="http://127.0.0.1:9000") is None
    access = store_access("s3", {"AWS_ENDPOINT_URL": "http://169.254.169.254:80"}, env={})
    r = verify_artifact(
        "s3://b/m", SHA_ABC, policy=policy, secret_data={"AWS_ENDPOINT_URL": access.endpoint_url or ""}
    )
    assert r.reason is Reason.URI_REFUSED
    # an endpoint from the environment is checked as well
    r = verify_artifact(
        "s3://b/m", SHA_ABC, policy=policy, env={"AWS_ENDPOINT_URL_S3": "http://[fe80::1]:9000"}
    )
    assert r.reason is Reason.URI_REFUSED


def test_policy_file_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    (root / "m" / "model.bin").write_bytes(b"abc")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"abc")
    (root / "escape.bin").symlink_to(outside / "secret.txt")
    (root / "escape-dir").symlink_to(outside)
    policy = policy_for(root)
    assert check_uri(f"file://{root}/m/model.bin", policy) is None
    assert check_uri(f"file://localhost{root}/m/model.bin", policy) is None
    assert check_uri(f"file://{root}/m/../../outside/secret.txt", policy) is not None
    assert check_uri(f"file://{outside}/secret.txt", policy) is not None
    assert check_uri(f"file://{root}/escape.bin", policy) is not None
    assert check_uri(f"file://{root}/escape-dir/", policy) is not None
    assert check_uri(f"file://otherhost{root}/m/model.bin", policy) is not None
    assert "fileRoots" in (check_uri(f"file://{root}/m/model.bin", ArtifactPolicy()) or "")
    r = verify_artifact(f"file://{root}/escape.bin", SHA_ABC, policy=policy)
    assert r.reason is Reason.URI_REFUSED and not r.transient
    # a symlink inside a directory artifact that leaves the roots refuses the whole directory
    (root / "m" / "leak.txt").symlink_to(outside / "secret.txt")
    r = verify_artifact(f"file://{root}/m/", SHA_ABC, policy=policy)
    assert r.reason is Reason.URI_REFUSED and "leak.txt" in r.message
    # ... and one that stays inside is followed
    (root / "m" / "leak.txt").unlink()
    (root / "m" / "alias.bin").symlink_to(root / "m" / "model.bin")
    want = manifest_digest([("alias.bin", SHA_ABC), ("model.bin", SHA_ABC)])
    assert verify_artifact(f"file://{root}/m/", want, policy=policy).ok


def test_local_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_bytes(b"abc")
    (d / "sub" / "loop").symlink_to(d)
    r = verify_artifact(f"file://{d}/", WRONG, policy=policy_for(tmp_path))
    assert r.reason is Reason.FETCH_FAILED and "loop" in r.message and not r.transient
    (d / "sub" / "loop").unlink()
    (d / "dangling").symlink_to(tmp_path / "gone")
    r = verify_artifact(f"file://{d}/", WRONG, policy=policy_for(tmp_path))
    assert r.reason is Reason.FETCH_FAILED and "broken" in r.message


def test_refused_scheme_result() -> None:
    r = verify_artifact("ftp://example.com/m", SHA_ABC, policy=ArtifactPolicy())
    assert r.reason is Reason.URI_REFUSED and r.transient is False and not r.ok


# --------------------------------------------------------------------------------------------
# redaction, credentials, exception mapping


def test_redact_uri_and_text() -> None:
    assert redact_uri("https://u:p@host:8443/m.onnx?X-Amz-Signature=abc#frag") == (
        "https://REDACTED@host:8443/m.onnx?REDACTED#REDACTED"
    )
    assert redact_uri("s3://bucket/prefix/") == "s3://bucket/prefix/"
    text = "GET https://h/x?sig=1 failed with key hunter22 (url='http://a:b@h/y')"
    out = redact_text(text, ["hunter22"])
    assert "sig=1" not in out and "hunter22" not in out and "a:b" not in out


def test_storage_options_from_secret_and_env() -> None:
    secret = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "AWS_SESSION_TOKEN": "tok",
        "AWS_ENDPOINT_URL_S3": "http://minio.svc:9000",
        "AWS_ENDPOINT_URL": "http://ignored:9000",
        "AWS_REGION": "eu-west-1",
        HOSTS_KEY: "minio.svc",
    }
    opts = storage_options("s3", secret, env={"AWS_ACCESS_KEY_ID": "OPERATOR"})
    assert opts == {
        "key": "AKIDEXAMPLE",
        "secret": "wJalrXUtnFEMI",
        "token": "tok",
        "endpoint_url": "http://minio.svc:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    # a Secret without keys is anonymous, never the operator's identity; endpoint from env
    opts = storage_options("s3", {}, env={"AWS_ACCESS_KEY_ID": "OPERATOR", "AWS_ENDPOINT_URL": "http://e:1"})
    assert opts == {"anon": True, "endpoint_url": "http://e:1"}
    # no Secret: the SDK chain (env/IRSA) finds credentials itself
    assert storage_options("s3", None, env={"AWS_REGION": "us-east-2"}) == {
        "client_kwargs": {"region_name": "us-east-2"}
    }
    bound = {HOSTS_KEY: "models.example.com"}
    https = storage_options("https", {"HTTP_AUTHORIZATION": "abc", **bound})
    assert https["headers"]["Authorization"] == "Bearer abc"
    assert (
        storage_options("https", {"HTTP_AUTHORIZATION": "Basic eHg=", **bound})["headers"]["Authorization"]
        == "Basic eHg="
    )
    assert "Authorization" not in storage_options("https", None, env={})["headers"]
    key = '{"type": "service_account"}'
    gs = storage_options("gs", {"GOOGLE_APPLICATION_CREDENTIALS_JSON": key, **bound})
    assert gs["token"] == {"type": "service_account"}
    assert storage_options("gs", {}, env={})["token"] == "anon"
    access = store_access("s3", secret, env={})
    assert "wJalrXUtnFEMI" not in repr(access) and "AKIDEXAMPLE" not in repr(access)
    assert {"AKIDEXAMPLE", "wJalrXUtnFEMI", "tok"} <= access.secret_values


def test_bad_credentials_are_access_denied() -> None:
    r = verify_artifact(
        "s3://b/m", SHA_ABC, policy=ArtifactPolicy(), secret_data={"AWS_ACCESS_KEY_ID": "only-id"}
    )
    assert r.reason is Reason.ACCESS_DENIED and "only-id" not in r.message
    r = verify_artifact(
        "gs://b/m",
        SHA_ABC,
        policy=ArtifactPolicy(),
        secret_data={"GOOGLE_APPLICATION_CREDENTIALS_JSON": "{not json"},
    )
    assert r.reason in (Reason.ACCESS_DENIED, Reason.URI_REFUSED)


class ClientError(Exception):  # shaped like botocore.exceptions.ClientError
    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_classify_exception() -> None:
    import aiohttp

    assert classify_exception(FileNotFoundError("x"))[:2] == (Reason.NOT_FOUND, True)
    assert classify_exception(PermissionError("x"))[:2] == (Reason.ACCESS_DENIED, False)
    assert classify_exception(RuntimeError("x"))[:2] == (Reason.FETCH_FAILED, True)
    assert classify_exception(TimeoutError())[:2] == (Reason.FETCH_FAILED, True)
    for code, reason in (
        ("AccessDenied", Reason.ACCESS_DENIED),
        ("InvalidAccessKeyId", Reason.ACCESS_DENIED),
        ("403", Reason.ACCESS_DENIED),
        ("NoSuchKey", Reason.NOT_FOUND),
        ("SlowDown", Reason.FETCH_FAILED),
    ):
        wrapped = OSError("wrapped")
        wrapped.__cause__ = ClientError(code, 400)
        assert classify_exception(wrapped)[0] is reason, code
    info = aiohttp.RequestInfo(
        url=__import__("yarl").URL("http://h/x"),
        method="GET",
        headers={},  # type: ignore[arg-type]
        real_url=__import__("yarl").URL("http://h/x"),
    )
    for status, reason in (
        (401, Reason.ACCESS_DENIED),
        (403, Reason.ACCESS_DENIED),
        (404, Reason.NOT_FOUND),
        (503, Reason.FETCH_FAILED),
    ):
        err = aiohttp.ClientResponseError(info, (), status=status)
        fnf = FileNotFoundError("http://h/x")  # how fsspec's HTTP info wraps every failure
        fnf.__cause__ = err
        assert classify_exception(fnf)[0] is reason, status
    conn = FileNotFoundError("http://h/x")
    conn.__cause__ = aiohttp.ClientConnectionError("refused")
    assert classify_exception(conn)[0] is Reason.FETCH_FAILED


def test_compute_digest_raises_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as e:
        compute_digest("ftp://x/y", policy=ArtifactPolicy())
    assert e.value.reason is Reason.URI_REFUSED


# --------------------------------------------------------------------------------------------
# the init-container form


def test_dest_written_only_on_success(tree: Path, tmp_path: Path) -> None:
    policy = policy_for(tree)
    out = tmp_path / "out"
    r = verify_artifact(f"file://{tree}/", WRONG, policy=policy, dest=out)
    assert r.reason is Reason.DIGEST_MISMATCH
    assert list(out.iterdir()) == []
    r = verify_artifact(f"file://{tree}/", TREE_DIGEST, policy=policy, dest=out)
    assert r.ok and r.written_to == str(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a.txt", "sub/empty", "sub/with space"]
    assert (out / "sub" / "with space").read_bytes() == b"hello"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    single = tmp_path / "single"
    r = verify_artifact(f"file://{tree}/a.txt", WRONG, policy=policy, dest=single)
    assert not r.ok and list(single.iterdir()) == []
    r = verify_artifact(f"file://{tree}/a.txt", SHA_ABC, policy=policy, dest=single)
    assert r.ok and [p.name for p in single.iterdir()] == ["a.txt"]
    assert (single / "a.txt").read_bytes() == b"abc"


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_exit_codes_and_json(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELVERSIONING_CONFIG", raising=False)
    root = ["--allow-file-root", str(tree)]
    assert main([f"file://{tree}/", "--sha256", TREE_DIGEST, *root]) == 0
    assert "verified" in capsys.readouterr().out

    assert main([f"file://{tree}/", "--sha256", WRONG, "--output", "json", *root]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["reason"] == "DigestMismatch" and doc["actual"] == TREE_DIGEST and doc["ok"] is False

    assert main([f"file://{tree}/missing", "--sha256", WRONG, "-o", "json", *root]) == 3
    assert json.loads(capsys.readouterr().out)["reason"] == "NotFound"

    assert main([f"file://{tree}/", "--sha256", TREE_DIGEST]) == 2  # no file roots
    assert "fileRoots" in capsys.readouterr().err
    assert main(["http://169.254.169.254/x", "--sha256", TREE_DIGEST]) == 2
    assert main([f"file://{tree}/", "--sha256", "nothex"]) == 2
    assert main([f"file://{tree}/", "--sha256", TREE_DIGEST, "--output", "xml"]) == 2
    assert main([]) == 2
    capsys.readouterr()

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"artifacts:\n  fileRoots: [{tree}]\n  maxWorkers: 2\n")
    dest = tmp_path / "dest"
    assert (
        main(
            [
                f"file://{tree}/a.txt",
                "--sha256",
                SHA_ABC,
                "--policy-file",
                str(policy_file),
                "--dest",
                str(dest),
                "-o",
                "json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["writtenTo"] == str(dest / "a.txt")
    assert (dest / "a.txt").read_bytes() == b"abc"
    policy_file.write_text("allowedSchemes: [https]\n")
    assert main([f"file://{tree}/a.txt", "--sha256", SHA_ABC, "--policy-file", str(policy_file)]) == 2
    policy_file.write_text("bogusKey: 1\n")
    assert main([f"file://{tree}/a.txt", "--sha256", SHA_ABC, "--policy-file", str(policy_file)]) == 2


def test_cli_as_subprocess(tree: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELVERSIONING_CONFIG"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelversioning.cli.verify",
            f"file://{tree}/",
            "--sha256",
            TREE_DIGEST,
            "--allow-file-root",
            str(tree),
            "--dest",
            str(tmp_path / "out"),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["reason"] == "Verified" and doc["files"] == 3
    assert (tmp_path / "out" / "sub" / "empty").exists()
