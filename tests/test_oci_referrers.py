"""OCI referrers of signed models: the documents (artifacts.oci_referrers, pure), a registry WITH the
referrers API (a proxy in front of the real docker-registry that implements it, as distribution 3 and
the cloud registries do), and a hostile registry that answers without end or lists too much: nothing is
read past its bound and each case has its outcome."""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import TrustEntry, TrustMaterial
from modelversioning.artifacts import oci_referrers as refs
from modelversioning.artifacts.credentials import store_access
from modelversioning.artifacts.oci_signature import (
    MAX_REFERRERS_BYTES,
    read_signature,
    store_signature,
)
from modelversioning.artifacts.results import Digest, FileDigest
from modelversioning.artifacts.signature import MAX_BUNDLE_BYTES, sign_digests
from signing_keys import key_signer, pem_private

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import RegistryServer, push_oras  # noqa: E402

POLICY = ArtifactPolicy(
    allowed_schemes=["oci"],
    allowed_private_networks=["127.0.0.0/8"],
    plain_http_registries=["127.0.0.1"],
    ambient_credential_hosts=["127.0.0.1"],
    timeout_seconds=20,
)
SUBJECT = refs.Descriptor(refs.OCI_MANIFEST, "sha256:" + "ab" * 32, 512)
NOW = "2026-12-07T12:00:00Z"


# ---- the documents ----------------------------------------------------------------------------------------
def test_the_referrers_tag_of_a_digest() -> None:
    assert refs.referrers_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
    with pytest.raises(refs.ReferrerError):
        refs.referrers_tag("sha256:abc")  # not a digest: no tag made of it


def test_a_signature_manifest_refers_to_its_subject_and_names_its_bundle() -> None:
    bundle = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'
    manifest = refs.signature_manifest(bundle, SUBJECT, NOW)
    doc = json.loads(manifest)
    assert (doc["artifactType"], doc["subject"], doc["config"]["mediaType"]) == (
        refs.BUNDLE_TYPE, SUBJECT.to_dict(), refs.OCI_EMPTY,
    )  # fmt: skip
    assert doc["annotations"][refs.PREDICATE_ANNOTATION] == refs.MODEL_SIGNING_PREDICATE
    layer = refs.bundle_layer(manifest, SUBJECT.digest, MAX_BUNDLE_BYTES)
    assert layer == refs.describe(refs.BUNDLE_TYPE, bundle)
    refs.check_bundle(bundle, layer)
    with pytest.raises(refs.ReferrerError, match="does not refer to"):
        refs.bundle_layer(manifest, "sha256:" + "cd" * 32, MAX_BUNDLE_BYTES)  # another manifest's
    with pytest.raises(refs.ReferrerError, match="declared"):
        refs.bundle_layer(manifest, SUBJECT.digest, len(bundle) - 1)  # larger than the bound: unread
    for changed in (bundle[:-1], bundle[:-1] + b"!"):  # truncated, tampered
        with pytest.raises(refs.ReferrerError, match="tampered with or truncated"):
            refs.check_bundle(changed, layer)


def test_a_signature_manifest_must_name_exactly_one_bundle() -> None:
    doc = json.loads(refs.signature_manifest(b"{}", SUBJECT, NOW))
    doc["layers"].append(doc["layers"][0] | {"mediaType": "application/octet-stream"})
    with pytest.raises(refs.ReferrerError, match="exactly one"):
        refs.bundle_layer(json.dumps(doc).encode(), SUBJECT.digest, MAX_BUNDLE_BYTES)
    for bad in (b"not json", b"[]"):
        with pytest.raises(refs.ReferrerError):
            refs.bundle_layer(bad, SUBJECT.digest, MAX_BUNDLE_BYTES)


def test_the_tag_schema_index_lists_each_referrer_once_and_keeps_the_others() -> None:
    one = refs.signature_manifest(b"{1}", SUBJECT, NOW)
    two = refs.signature_manifest(b"{2}", SUBJECT, NOW)
    foreign = {
        "mediaType": refs.OCI_MANIFEST,
        "digest": "sha256:" + "ef" * 32,
        "size": 9,
        "artifactType": "x/y",
    }
    start = json.dumps({"schemaVersion": 2, "mediaType": refs.OCI_INDEX, "manifests": [foreign]}).encode()
    index = refs.with_referrer(refs.with_referrer(refs.with_referrer(start, one), two), one)
    listed = json.loads(index)["manifests"]
    assert [m["digest"] for m in listed] == [foreign["digest"], refs.digest_of(one), refs.digest_of(two)]
    assert refs.candidates(index) == [
        refs.describe(refs.OCI_MANIFEST, one),
        refs.describe(refs.OCI_MANIFEST, two),
    ]
    assert json.loads(refs.with_referrer(None, one))["manifests"][0]["artifactType"] == refs.BUNDLE_TYPE
    with pytest.raises(refs.ReferrerError):
        refs.with_referrer(b"<html>", one)


def test_candidates_are_model_signatures_only_and_at_most_a_few() -> None:
    def entry(i: int, **over: Any) -> dict[str, Any]:
        d = {"mediaType": refs.OCI_MANIFEST, "digest": f"sha256:{i:064x}", "size": 300,
             "artifactType": refs.BUNDLE_TYPE}  # fmt: skip
        return d | over

    cosign = entry(1, annotations={refs.PREDICATE_ANNOTATION: "https://slsa.dev/provenance/v1"})
    sbom = entry(2, artifactType="application/spdx+json")
    bad = [entry(3, digest="md5:00"), entry(4, size=-1), "x", entry(5, mediaType=refs.OCI_INDEX)]
    ours = entry(6, annotations={refs.PREDICATE_ANNOTATION: refs.MODEL_SIGNING_PREDICATE})
    unannotated = entry(7)
    index = {"manifests": [cosign, sbom, *bad, ours, unannotated, ours]}
    found = refs.candidates(json.dumps(index).encode())
    assert [d.digest for d in found] == [ours["digest"], unannotated["digest"]]
    many = {"manifests": [entry(100 + i) for i in range(500)]}
    assert len(refs.candidates(json.dumps(many).encode())) == refs.MAX_CANDIDATES
    for bad_index in (b"{", b"{}", b'{"manifests": {}}'):
        with pytest.raises(refs.ReferrerError):
            refs.candidates(bad_index)


# ---- registries ------------------------------------------------------------------------------------------
def digest_of_files(files: dict[str, bytes]) -> Digest:
    entries = tuple(FileDigest(p, hashlib.sha256(b).hexdigest(), len(b)) for p, b in sorted(files.items()))
    return Digest("ab" * 32, "directory", sum(len(b) for b in files.values()), len(files), entries)


def read(uri: str, digest: Digest, entry: TrustEntry) -> Any:
    access = store_access("oci", None, env={})
    deadline = time.monotonic() + POLICY.timeout_seconds
    return read_signature(uri, access, POLICY, digest, TrustMaterial((entry,)), deadline=deadline, shown=uri)


class Server:
    """An HTTP server on 127.0.0.1 whose GET/PUT/POST/HEAD go to ``handle(method, path, headers, body)``."""

    def __init__(self, handle: Any) -> None:
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                handle(self, self.command, self.path, dict(self.headers.items()), body)

            do_GET = do_PUT = do_POST = do_HEAD = do_PATCH = _do  # noqa: N815

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.netloc = f"127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(h: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


class ReferrersApi:
    """The real registry behind a proxy that has the referrers API: a manifest PUT with a subject is
    answered with OCI-Subject and indexed; GET /v2/<repo>/referrers/<digest> lists what was indexed."""

    def __init__(self, backend: RegistryServer, subject_header: bool) -> None:
        self.backend, self.indexed, self.seen = backend, {}, []  # type: ignore[var-annotated]
        self.subject_header = subject_header  # False: the pusher must ask the API whether it is there
        self.server = Server(self.handle)

    def handle(self, h: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.seen.append((method, path.split("?")[0]))
        if method == "GET" and "/referrers/" in path:
            subject = path.split("/referrers/")[1].split("?")[0]
            doc = {
                "schemaVersion": 2,
                "mediaType": refs.OCI_INDEX,
                "manifests": self.indexed.get(subject, []),
            }
            return answer(h, 200, json.dumps(doc).encode(), {"Content-Type": refs.OCI_INDEX})
        sent = {k: v for k, v in headers.items() if k.lower() in ("accept", "content-type")}
        req = urllib.request.Request(self.backend.url + path, data=body or None, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, data, got = resp.status, resp.read(), dict(resp.headers.items())
        except urllib.error.HTTPError as e:
            status, data, got = e.code, e.read(), dict(e.headers.items())
        out = {
            k: v for k, v in got.items() if k.lower() in ("content-type", "location", "docker-content-digest")
        }
        if "Location" in out:
            out["Location"] = out["Location"].replace(self.backend.netloc, self.server.netloc)
        if method == "PUT" and "/manifests/" in path and status == 201:
            doc = json.loads(body)
            if "subject" in doc:
                entry = refs.describe(refs.OCI_MANIFEST, body).to_dict() | {
                    "artifactType": doc.get("artifactType"), "annotations": doc.get("annotations", {})
                }  # fmt: skip
                self.indexed.setdefault(doc["subject"]["digest"], []).append(entry)
                if self.subject_header:
                    out["OCI-Subject"] = doc["subject"]["digest"]
        answer(h, status, data if method != "HEAD" else b"", out)


@pytest.mark.parametrize("subject_header", [True, False])
def test_a_registry_with_the_referrers_api_gets_no_tag_and_is_read_through_it(
    backend, subject_header
) -> None:
    api = ReferrersApi(backend, subject_header)
    try:
        files = {"model.onnx": b"m" * 3000}
        p = push_oras(backend.url, f"api/model{int(subject_header)}", files, tag="1.0.0")
        uri = f"oci://{api.server.netloc}/api/model{int(subject_header)}@{p.digest}"
        signer = key_signer()
        d = digest_of_files(files)
        bundle = sign_digests(
            d.entries, kind="directory", model_name="m", private_key_pem=pem_private(signer.key)
        )
        stored = store_signature(uri, bundle, POLICY)
        assert stored.via == "referrers API" and stored.location.startswith(
            f"oci://{api.server.netloc}/api/model{int(subject_header)}@"
        )
        assert not [s for s in api.seen if "sha256-" in s[1]]  # no tag schema index read or pushed
        entry = TrustEntry("Model m: keys/k", "Model m", "key", signer.public_pem)
        sig = read(uri, d, entry)
        assert (sig.outcome, sig.uri) == (R.SIGNED, stored.location), sig
        assert ("GET", f"/v2/api/model{int(subject_header)}/referrers/{p.digest}") in api.seen
        assert not [s for s in api.seen if "sha256-" in s[1]]  # found through the API
    finally:
        api.server.stop()


class Hostile:
    """A registry that answers everything it is asked with ``behaviour`` and counts what it sent."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.sent, self.asked = behaviour, 0, []  # type: ignore[var-annotated]
        self.server = Server(self.handle)

    def handle(self, h: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.asked.append(path.split("?")[0])
        if "/referrers/" in path and self.behaviour == "endless":
            h.send_response(200)
            h.send_header("Content-Type", refs.OCI_INDEX)
            h.end_headers()  # no length: the body ends when the connection does (never, here)
            chunk = b" " * 65536
            try:
                while self.sent < 64 * 1024 * 1024:
                    h.wfile.write(chunk)
                    self.sent += len(chunk)
            except OSError:
                return
            return
        if "/referrers/" in path and self.behaviour == "many":
            many = [{"mediaType": refs.OCI_MANIFEST, "digest": f"sha256:{i:064x}", "size": 300,
                     "artifactType": refs.BUNDLE_TYPE} for i in range(1000)]  # fmt: skip
            return answer(h, 200, json.dumps({"manifests": many}).encode(), {"Content-Type": refs.OCI_INDEX})
        if "/referrers/" in path and self.behaviour == "huge-bundle":
            manifest = self.huge_bundle_manifest()
            d = refs.describe(refs.OCI_MANIFEST, manifest).to_dict() | {"artifactType": refs.BUNDLE_TYPE}
            return answer(h, 200, json.dumps({"manifests": [d]}).encode(), {"Content-Type": refs.OCI_INDEX})
        if "/manifests/" in path and self.behaviour == "huge-bundle":
            return answer(h, 200, self.huge_bundle_manifest(), {"Content-Type": refs.OCI_MANIFEST})
        if "/referrers/" in path and self.behaviour == "huge-manifest":  # a signature manifest of 10 MiB
            d = {"mediaType": refs.OCI_MANIFEST, "digest": "sha256:" + "cd" * 32, "size": 10 << 20,
                 "artifactType": refs.BUNDLE_TYPE}  # fmt: skip
            return answer(h, 200, json.dumps({"manifests": [d]}).encode(), {"Content-Type": refs.OCI_INDEX})
        if "/referrers/" in path and self.behaviour == "other-manifest":  # lists one, serves another
            d = refs.describe(refs.OCI_MANIFEST, b"{}").to_dict() | {"artifactType": refs.BUNDLE_TYPE}
            return answer(h, 200, json.dumps({"manifests": [d]}).encode(), {"Content-Type": refs.OCI_INDEX})
        if "/manifests/" in path and self.behaviour == "other-manifest":
            body = refs.signature_manifest(b"{}", SUBJECT, NOW)
            return answer(h, 200, body, {"Content-Type": refs.OCI_MANIFEST})
        answer(h, 404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')

    @staticmethod
    def huge_bundle_manifest() -> bytes:
        doc = json.loads(refs.signature_manifest(b"{}", SUBJECT, NOW))
        doc["layers"][0]["size"] = 100 * 1024 * 1024
        return json.dumps(doc).encode()


@pytest.mark.parametrize("behaviour", ["endless", "many", "huge-bundle", "huge-manifest", "other-manifest"])
def test_a_hostile_registry_cannot_make_us_read_without_bound(behaviour: str) -> None:
    hostile = Hostile(behaviour)
    try:
        uri = f"oci://{hostile.server.netloc}/evil/model@{SUBJECT.digest}"
        entry = TrustEntry("Model m: keys/k", "Model m", "key", key_signer().public_pem)
        t0 = time.monotonic()
        sig = read(uri, digest_of_files({"a": b"a"}), entry)
        took = time.monotonic() - t0
    finally:
        hostile.server.stop()
    blobs = [a for a in hostile.asked if "/blobs/" in a]
    manifests = [a for a in hostile.asked if "/manifests/sha256:" in a]
    if behaviour == "endless":  # the index: refused after its bound, the connection dropped
        assert sig.outcome == R.SIGNATURE_INVALID and f"larger than {MAX_REFERRERS_BYTES}" in sig.message, sig
        print(f"the endless index: {hostile.sent} bytes sent before we hung up, {took:.2f} s")
        assert hostile.sent < 16 * 1024 * 1024 and took < 15, (hostile.sent, took)
    elif behaviour == "many":  # a thousand listed: a few looked at, none there
        assert sig.outcome == R.SIGNATURE_INVALID and len(manifests) == refs.MAX_CANDIDATES, hostile.asked
    elif behaviour == "huge-bundle":  # a bundle declared 100 MiB: never asked for
        assert sig.outcome == R.SIGNATURE_INVALID and "declared" in sig.message and not blobs, sig
    elif behaviour == "huge-manifest":  # a signature manifest declared 10 MiB: never asked for
        assert sig.outcome == R.SIGNATURE_INVALID and "declared" in sig.message and not manifests, sig
    else:  # a signature manifest that is not the one listed: its bundle never asked for
        assert sig.outcome == R.SIGNATURE_INVALID and "does not hash to" in sig.message and not blobs, sig
