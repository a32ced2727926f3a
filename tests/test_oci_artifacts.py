"""oci:// artifacts end to end through a REAL registry (Debian's docker-registry, distribution 2.8, on
loopback; e2e/oci_registry.py): the three layouts laid out, the manifest and every layer verified while
they stream, tampering on the registry's disk refused, and nothing laid out that was not verified."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, manifest_digest, verify_artifact, verify_in_child

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import (  # noqa: E402
    OCI_IMAGE_CONFIG,
    OCI_LAYER_TAR,
    OCI_LAYER_TGZ,
    RegistryServer,
    link_entry,
    push_artifact,
    push_oras,
    tar_bytes,
)

POLICY = ArtifactPolicy(
    allowed_schemes=["oci"], allowed_private_networks=["127.0.0.0/8"], plain_http_registries=["127.0.0.1"]
)
WEIGHTS = os.urandom(300_000)
KIT_CONFIG = ("application/vnd.kitops.modelkit.config.v1+json", b'{"manifestVersion": "1.0.0"}')
MODELPACK_CONFIG = ("application/vnd.cncf.model.config.v1+json", b'{"descriptor": {"name": "fraud"}}')


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uri(reg: RegistryServer, repo: str, digest: str, tag: str = "") -> str:
    return f"oci://{reg.netloc}/{repo}{':' + tag if tag else ''}@{digest}"


def laid_out(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def test_an_oras_artifact_is_verified_and_its_files_laid_out_by_title(registry, tmp_path):
    files = {"model.onnx": WEIGHTS, "config/labels.json": b'{"0": "ok"}'}
    pushed = push_oras(registry.url, "models/oras", files, tag="2.3.8")
    u = uri(registry, "models/oras", pushed.digest, "2.3.8")

    checked = verify_artifact(u, pushed.hex, policy=POLICY)  # the operator's form: hashed, not written
    assert checked.ok, checked.message
    assert (checked.actual, checked.layout, checked.files, checked.size_bytes) == (
        pushed.hex,
        "oras",
        2,
        pushed.size,
    )
    assert {(f.path, f.sha256) for f in checked.contents} == {(k, sha(v)) for k, v in files.items()}
    assert checked.content_digest == manifest_digest((k, sha(v)) for k, v in files.items())

    dest = tmp_path / "models"
    written = verify_artifact(u, pushed.hex, policy=POLICY, dest=dest, expected_size=pushed.size)
    assert written.ok and written.written_to == str(dest)
    assert laid_out(dest) == files  # nothing else: no partial or temporary names left


def test_a_kitops_modelkit_lays_out_its_tar_layers_at_the_root(registry, tmp_path):
    model = tar_bytes([("model/weights.bin", WEIGHTS)])
    docs = tar_bytes([("README.md", b"# fraud\n")], gz=True)
    pushed = push_artifact(
        registry.url, "models/kit",
        [(model, {"mediaType": "application/vnd.kitops.modelkit.model.v1.tar"}),
         (docs, {"mediaType": "application/vnd.kitops.modelkit.docs.v1.tar+gzip"})],
        config=KIT_CONFIG,
    )  # fmt: skip
    r = verify_artifact(uri(registry, "models/kit", pushed.digest), pushed.hex, policy=POLICY, dest=tmp_path)
    assert r.ok and r.layout == "modelkit", r.message
    assert laid_out(tmp_path) == {"model/weights.bin": WEIGHTS, "README.md": b"# fraud\n"}


def test_a_cncf_modelpack_lays_out_tar_and_raw_layers(registry, tmp_path):
    weights = tar_bytes([("model.safetensors", WEIGHTS)])
    pushed = push_artifact(
        registry.url, "models/modelpack",
        [(weights, {"mediaType": "application/vnd.cncf.model.weight.v1.tar"}),
         (b'{"vocab": 3}', {"mediaType": "application/vnd.cncf.model.weight.config.v1.raw",
                           "annotations": {"org.cncf.model.filepath": "tokenizer/config.json"}})],
        config=MODELPACK_CONFIG, artifact_type="application/vnd.cncf.model.manifest.v1+json",
    )  # fmt: skip
    r = verify_artifact(
        uri(registry, "models/modelpack", pushed.digest), pushed.hex, policy=POLICY, dest=tmp_path
    )
    assert r.ok and r.layout == "modelpack", r.message
    assert laid_out(tmp_path) == {"model.safetensors": WEIGHTS, "tokenizer/config.json": b'{"vocab": 3}'}


def test_a_plain_image_is_unpacked_layer_over_layer(registry, tmp_path):
    """Image semantics: a later layer replaces a file and whites one out; a hard link and an in-tree
    symbolic link become hard links (never links), a link to a directory or to /proc is not laid out."""
    base = tar_bytes(
        [("models/model.onnx", b"old weights"), ("models/stale.txt", b"gone"), ("models/keep.txt", b"kept"),
         link_entry("models/keep-hard.txt", "models/keep.txt", hard=True),
         link_entry("etc/mtab", "/proc/mounts"), link_entry("models/dir-link", ".")],
        gz=True,
    )  # fmt: skip
    top = tar_bytes(
        [("models/model.onnx", WEIGHTS), ("models/.wh.stale.txt", b""),
         link_entry("models/alias", "model.onnx")],
        gz=True,
    )  # fmt: skip
    pushed = push_artifact(
        registry.url, "models/modelcar",
        [(base, {"mediaType": OCI_LAYER_TGZ}), (top, {"mediaType": OCI_LAYER_TGZ})],
        config=(OCI_IMAGE_CONFIG, b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}'),
    )  # fmt: skip
    r = verify_artifact(
        uri(registry, "models/modelcar", pushed.digest), pushed.hex, policy=POLICY, dest=tmp_path
    )
    assert r.ok and r.layout == "image", r.message
    assert laid_out(tmp_path) == {
        "models/model.onnx": WEIGHTS, "models/alias": WEIGHTS, "models/keep.txt": b"kept",
        "models/keep-hard.txt": b"kept",
    }  # fmt: skip
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))
    assert (tmp_path / "models/alias").stat().st_ino == (tmp_path / "models/model.onnx").stat().st_ino
    assert "2 symbolic links not laid out" in r.message
    assert {f.path: f.sha256 for f in r.contents}["models/alias"] == sha(WEIGHTS)


def test_a_tampered_manifest_is_refused_before_anything_is_fetched(registry, tmp_path):
    pushed = push_oras(registry.url, "models/tampered-manifest", {"model.onnx": os.urandom(99)})
    stored = registry.blob_path(pushed.digest)
    stored.write_bytes(stored.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    before = len(registry.access_log())
    r = verify_artifact(
        uri(registry, "models/tampered-manifest", pushed.digest), pushed.hex, policy=POLICY, dest=tmp_path
    )
    assert r.reason is Reason.MANIFEST_DIGEST_MISMATCH and not r.transient, r.message
    assert laid_out(tmp_path) == {} and list(tmp_path.iterdir()) == []
    assert not [line for line in registry.access_log()[before:] if "/blobs/" in line]


@pytest.mark.parametrize("change", ["same size", "longer", "shorter"])
def test_a_tampered_layer_is_refused_and_nothing_of_the_artifact_is_laid_out(registry, tmp_path, change):
    # blobs are shared by every repository of the registry: what is tampered with is this test's own
    pushed = push_oras(
        registry.url,
        f"models/tampered-{change.replace(' ', '-')}",
        {"a.json": os.urandom(9), "b.bin": os.urandom(9000)},
    )
    stored = registry.blob_path(pushed.layers[1])
    data = stored.read_bytes()
    tampered = {"same size": bytes([data[0] ^ 1]) + data[1:], "longer": data + b"!", "shorter": data[:-1]}[
        change
    ]
    stored.write_bytes(tampered)
    u = uri(registry, f"models/tampered-{change.replace(' ', '-')}", pushed.digest)
    r = verify_artifact(u, pushed.hex, policy=POLICY, dest=tmp_path)
    assert r.reason is Reason.LAYER_DIGEST_MISMATCH and not r.transient, r.message
    assert pushed.layers[1] in r.message
    assert list(tmp_path.iterdir()) == []  # a.json (its layer matched) was not laid out either


def test_an_unsafe_tar_is_refused_only_once_its_bytes_are_the_pinned_ones(registry, tmp_path):
    """A tar entry leaving the model directory is UnsafeArchive; the same entry in a layer that is not the
    pinned one is LayerDigestMismatch (the content of unverified bytes is never what is reported)."""
    safe, evil = tar_bytes([("aa/x", b"1")], gz=False), tar_bytes([("../x", b"1")], gz=False)
    assert len(safe) == len(evil)
    layer = {"mediaType": "application/vnd.kitops.modelkit.model.v1.tar"}
    bad = push_artifact(registry.url, "models/evil", [(evil, layer)], config=KIT_CONFIG)
    r = verify_artifact(uri(registry, "models/evil", bad.digest), bad.hex, policy=POLICY, dest=tmp_path / "d")
    assert r.reason is Reason.UNSAFE_ARCHIVE and "'..'" in r.message, r.message
    assert not (tmp_path / "x").exists()

    swapped = push_artifact(
        registry.url, "models/swapped", [(safe, layer)], config=KIT_CONFIG
    )  # its own blob
    registry.blob_path(swapped.layers[0]).write_bytes(evil)
    r = verify_artifact(uri(registry, "models/swapped", swapped.digest), swapped.hex, policy=POLICY)
    assert r.reason is Reason.LAYER_DIGEST_MISMATCH, r.message


def _entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (("../../etc/cron.d/x", b"x"), "'..'"),
        (("/etc/passwd", b"x"), "absolute path"),
        (_entry("models/out", tarfile.SYMTYPE, "../../../etc/shadow"), "out of the model directory"),
        (_entry("models/abs", tarfile.SYMTYPE, "/etc/shadow"), "absolute path"),
        (_entry("models/dev", tarfile.CHRTYPE), "device or FIFO"),
        (_entry("models/fifo", tarfile.FIFOTYPE), "device or FIFO"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-absolute", "device", "fifo"],
)
def test_tar_entries_that_leave_the_model_directory_are_refused(registry, tmp_path, entry, says):
    layer = tar_bytes([("models/ok.bin", b"fine"), entry], gz=True)
    repo = f"models/unsafe-{abs(hash(says)) % 10_000}-{len(layer)}"
    pushed = push_artifact(
        registry.url, repo, [(layer, {"mediaType": "application/vnd.cncf.model.weight.v1.tar+gzip"})],
        config=MODELPACK_CONFIG,
    )  # fmt: skip
    dest = tmp_path / "dest"
    r = verify_artifact(uri(registry, repo, pushed.digest), pushed.hex, policy=POLICY, dest=dest)
    assert r.reason is Reason.UNSAFE_ARCHIVE and says in r.message, r.message
    assert laid_out(dest) == {} and sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_the_verifier_child_process_reports_the_laid_out_files(registry):
    pushed = push_oras(registry.url, "models/child", {"model.onnx": WEIGHTS})
    r = verify_in_child(uri(registry, "models/child", pushed.digest), pushed.hex, policy=POLICY)
    assert r.ok, r.message
    assert [(f.path, f.sha256, f.size_bytes) for f in r.contents] == [
        ("model.onnx", sha(WEIGHTS), len(WEIGHTS))
    ]
    assert (r.layout, r.content_digest) == ("oras", manifest_digest([("model.onnx", sha(WEIGHTS))]))


def test_a_declared_size_other_than_the_layers_is_refused_before_fetching(registry):
    pushed = push_oras(registry.url, "models/sized", {"model.onnx": WEIGHTS})
    before = len(registry.access_log())
    r = verify_artifact(
        uri(registry, "models/sized", pushed.digest), pushed.hex, policy=POLICY, expected_size=pushed.size + 1
    )
    assert r.reason is Reason.SIZE_MISMATCH, r.message
    assert not [line for line in registry.access_log()[before:] if "/blobs/" in line]


def test_the_gzip_of_a_layer_cannot_unpack_past_max_total_bytes(registry):
    bomb = tar_bytes([("zeros.bin", bytes(4_000_000))], gz=True)
    assert len(bomb) < 100_000
    pushed = push_artifact(
        registry.url, "models/bomb", [(bomb, {"mediaType": OCI_LAYER_TGZ})],
        config=(OCI_IMAGE_CONFIG, b"{}"),
    )  # fmt: skip
    small = POLICY.model_copy(update={"max_total_bytes": 1_000_000})
    r = verify_artifact(uri(registry, "models/bomb", pushed.digest), pushed.hex, policy=small)
    assert r.reason is Reason.LIMIT_EXCEEDED and "maxTotalBytes" in r.message, r.message


def test_the_layer_count_and_the_declared_sizes_are_capped_before_any_layer_is_fetched(registry):
    pushed = push_oras(registry.url, "models/many", {f"f{i}": bytes([i]) * 10 for i in range(3)})
    u = uri(registry, "models/many", pushed.digest)
    before = len(registry.access_log())
    r = verify_artifact(u, pushed.hex, policy=POLICY.model_copy(update={"max_files": 2}))
    assert r.reason is Reason.LIMIT_EXCEEDED and "3 layers (at most 2)" in r.message, r.message
    r = verify_artifact(u, pushed.hex, policy=POLICY.model_copy(update={"max_total_bytes": 29}))
    assert r.reason is Reason.LIMIT_EXCEEDED and "maxTotalBytes" in r.message, r.message
    assert not [line for line in registry.access_log()[before:] if "/blobs/" in line]


def test_a_manifest_larger_than_the_cap_is_refused(registry, monkeypatch):
    from modelversioning.artifacts import oci_registry

    pushed = push_oras(registry.url, "models/big-manifest", {"model.onnx": b"x"})
    monkeypatch.setattr(oci_registry, "MAX_MANIFEST_BYTES", len(pushed.manifest) - 1)
    r = verify_artifact(uri(registry, "models/big-manifest", pushed.digest), pushed.hex, policy=POLICY)
    assert r.reason is Reason.LIMIT_EXCEEDED and "manifest is larger" in r.message, r.message


@pytest.mark.parametrize(
    ("layers", "says"),
    [
        ([(b"z", {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd"})], "zstd"),
        ([(b"x", {"mediaType": "application/x-unknown"})], "no supported layout"),
        ([(b"x", {"mediaType": OCI_LAYER_TAR, "urls": ["http://elsewhere/x"]})], "foreign layer"),
        ([(b"x", {"mediaType": "application/vnd.cncf.model.weight.v1.raw"})], "org.cncf.model.filepath"),
    ],
    ids=["zstd", "unknown", "foreign", "raw-without-path"],
)
def test_layouts_we_do_not_lay_out_are_refused_before_any_layer_is_fetched(registry, layers, says):
    repo = f"models/unsupported-{says.split()[0].replace('.', '-')}"
    pushed = push_artifact(registry.url, repo, layers)
    r = verify_artifact(uri(registry, repo, pushed.digest), pushed.hex, policy=POLICY)
    assert r.reason is Reason.UNSUPPORTED_LAYOUT and says in r.message, r.message


def test_an_image_index_is_refused_with_what_to_pin_instead(registry):
    from oci_registry import push_manifest

    image = push_oras(registry.url, "models/indexed", {"model.onnx": b"w"})
    index = (
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": '
        b'[{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "' + image.digest.encode()
        + b'", "size": ' + str(len(image.manifest)).encode() + b"}]}"
    )  # fmt: skip
    digest = push_manifest(
        registry.url, "models/indexed", "multi", index, "application/vnd.oci.image.index.v1+json"
    )
    r = verify_artifact(
        uri(registry, "models/indexed", digest), digest.removeprefix("sha256:"), policy=POLICY
    )
    assert r.reason is Reason.UNSUPPORTED_LAYOUT and "pin the manifest of one platform" in r.message


def test_a_tag_without_a_digest_is_refused_without_asking_the_registry(registry):
    before = len(registry.access_log())
    r = verify_artifact(f"oci://{registry.netloc}/models/oras:2.3.8", "a" * 64, policy=POLICY)
    assert r.reason is Reason.TAG_WITHOUT_DIGEST and "kubectl models register" in r.message, r.message
    assert registry.access_log()[before:] == []


def test_artifact_sha256_must_be_the_digest_the_uri_pins(registry):
    pushed = push_oras(registry.url, "models/pinned", {"model.onnx": b"w"})
    r = verify_artifact(uri(registry, "models/pinned", pushed.digest), "b" * 64, policy=POLICY)
    assert r.reason is Reason.DIGEST_MISMATCH and "the manifest digest the URI pins" in r.message


def test_the_uri_policy_applies_to_the_registry_host(registry):
    pushed = push_oras(registry.url, "models/policy", {"model.onnx": b"w"})
    u = uri(registry, "models/policy", pushed.digest)
    for policy, says in [
        (POLICY.model_copy(update={"allowed_private_networks": []}), "loopback/private"),
        (POLICY.model_copy(update={"allowed_hosts": ["registry.example.com"]}), "allowedHosts"),
        (POLICY.model_copy(update={"allowed_schemes": ["https", "s3"]}), "allowedSchemes"),
    ]:
        r = verify_artifact(u, pushed.hex, policy=policy)
        assert r.reason is Reason.URI_REFUSED and says in r.message, r.message


def test_a_gzip_layer_that_is_not_gzip_is_refused_as_a_layout_problem(registry):
    pushed = push_artifact(registry.url, "models/notgzip", [(b"plain bytes", {"mediaType": OCI_LAYER_TGZ})])
    r = verify_artifact(uri(registry, "models/notgzip", pushed.digest), pushed.hex, policy=POLICY)
    assert r.reason is Reason.UNSUPPORTED_LAYOUT and "not a valid tar+gzip" in r.message, r.message


def test_a_huge_tar_metadata_header_is_refused_before_it_is_read_into_memory(registry):
    """A pax header of 2 MiB (a few KiB gzipped): refused from its declared size, never read whole."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("model.bin")
        info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
        tar.addfile(info, io.BytesIO(b""))
    layer = gzip.compress(buf.getvalue())
    pushed = push_artifact(registry.url, "models/pax", [(layer, {"mediaType": OCI_LAYER_TGZ})])
    r = verify_artifact(uri(registry, "models/pax", pushed.digest), pushed.hex, policy=POLICY)
    assert r.reason is Reason.UNSAFE_ARCHIVE and "metadata header" in r.message, r.message


@pytest.mark.parametrize(
    "entries",
    [
        [("a", b"1"), link_entry("a", "a", hard=True)],
        [("a", b"1"), link_entry("a", "a")],
        [("d/f", b"1"), link_entry("d", "d/f", hard=True)],
    ],
    ids=["hard-self", "sym-self", "over-its-own-target"],
)
def test_a_link_that_would_replace_its_own_target_is_refused(registry, tmp_path, entries):
    layer = tar_bytes(entries, gz=True)
    repo = f"models/selflink-{abs(hash(layer)) % 100_000}"
    pushed = push_artifact(registry.url, repo, [(layer, {"mediaType": OCI_LAYER_TGZ})])
    r = verify_artifact(uri(registry, repo, pushed.digest), pushed.hex, policy=POLICY, dest=tmp_path / "d")
    assert r.reason is Reason.UNSUPPORTED_LAYOUT and "link to itself or to a path it replaces" in r.message
    assert laid_out(tmp_path) == {}


def test_the_operators_verifier_carries_the_contents_into_its_result(registry):
    from modelversioning.handlers.verification import make_verifier

    pushed = push_oras(registry.url, "models/operator", {"model.onnx": b"w" * 10})
    verify = make_verifier(POLICY, in_process=True)
    res = verify(uri(registry, "models/operator", pushed.digest), pushed.hex, None, None)
    assert res.ok and res.layout == "oras" and res.contents == (("model.onnx", sha(b"w" * 10), 10),)
    assert res.content_digest == manifest_digest([("model.onnx", sha(b"w" * 10))])


def test_an_mlmodel_laid_out_from_an_oci_layout_gives_its_io_signature(registry):
    """An MLflow model pushed as a modelkit: its MLmodel's signature is read while the layer is
    unpacked and hashed (artifacts.io_signature), as for a directory artifact."""
    cols = json.dumps([{"name": "petal width (cm)", "type": "double"}])
    mlmodel = f"flavors: {{}}\nsignature:\n  inputs: '{cols}'\n  outputs: '{cols}'\n".encode()
    model = tar_bytes([("model/MLmodel", mlmodel), ("model/model.pkl", WEIGHTS)])
    pushed = push_artifact(
        registry.url, "models/mlflow-kit",
        [(model, {"mediaType": "application/vnd.kitops.modelkit.model.v1.tar"})], config=KIT_CONFIG,
    )  # fmt: skip
    r = verify_artifact(uri(registry, "models/mlflow-kit", pushed.digest), pushed.hex, policy=POLICY)
    assert r.ok, r.message
    assert r.io_signature == {
        "source": "artifact model/MLmodel",
        "inputs": [{"name": "petal width (cm)", "dtype": "double", "shape": [-1]}],
        "outputs": [{"name": "petal width (cm)", "dtype": "double", "shape": [-1]}],
    }
