"""Container images for the real e2e node, built here from the project's own files (no registry).

Four images, each an OCI image archive cached under ``~/.cache/modelversioning/images/`` by the
sha256 of its inputs, and imported into the node's containerd (namespace ``k8s.io``) by
``e2e/node.py``:

``localhost/modelversioning/pause:1`` (``PAUSE_IMAGE``)
    the pod sandbox image: ``e2e/pause.c`` compiled statically with gcc, one layer.
``localhost/modelversioning/base:bookworm`` (``BASE_IMAGE``)
    Debian bookworm ``debootstrap --variant=minbase`` with python3 (3.11), python3-venv,
    python-is-python3 (``python`` on PATH, like ``python:3.11-slim``), ca-certificates and
    libjemalloc2 (the operator's allocator), from the
    Debian mirror apt is configured with; one layer.
``localhost/modelversioning-operator:dev`` (``OPERATOR_IMAGE``)
    the project's ``Dockerfile`` built by ``buildah bud`` (``e2e/buildah.py``: no daemon, chroot
    isolation, storage in a throw-away directory) with ``--build-arg PYTHON_IMAGE=<the base image>``;
    pip inside the build reaches PyPI and is pinned by ``constraints.txt``. The operator, the
    verify-artifact init container and the reference model server all run this image.
``localhost/modelversioning/mlserver:1.7.1`` (``MLSERVER_IMAGE``)
    MLServer (Seldon's) with its scikit-learn runtime, from PyPI on the same base
    (``e2e/mlserver.Containerfile``), pinned by ``e2e/mlserver-constraints.txt``: its scikit-learn is
    the one of ``constraints.txt`` (the tests train the models they serve with it;
    tests/test_mlserver_pins.py). A real runtime for the e2e tests and the benchmark.

    python e2e/images.py            # build what is missing, print "<ref> <archive>" per image
    python e2e/images.py --rebuild  # ignore the cache

Environment: ``MV_CACHE_DIR`` (cache root, default ``~/.cache/modelversioning``), ``MV_DEBIAN_MIRROR``
(default: the mirror of apt's sources), ``MV_IMAGE_EXTRAS`` (the Dockerfile's EXTRAS, default ``s3``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent
BUILD_NODE_SCRIPT = E2E_DIR / "build-node.sh"

PAUSE_IMAGE = "localhost/modelversioning/pause:1"
BASE_IMAGE = "localhost/modelversioning/base:bookworm"
OPERATOR_IMAGE = "localhost/modelversioning-operator:dev"
MLSERVER_IMAGE = "localhost/modelversioning/mlserver:1.7.1"

DEBIAN_SUITE = "bookworm"
# libjemalloc2: the operator image's allocator (the Dockerfile installs it where the base lacks it)
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "libjemalloc2")
# Bump when the recipe changes in a way the hashed inputs do not show.
RECIPE_VERSION = "1"

# The Dockerfile's build context as its .dockerignore allow-lists it.
OPERATOR_CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "constraints.txt",
    "operator",
)
# The MLServer image's build context (e2e/, only these files).
MLSERVER_CONTEXT = ("mlserver.Containerfile", "mlserver-constraints.txt")


class ImageBuildError(RuntimeError):
    """An image could not be built."""


@dataclass(frozen=True)
class Image:
    ref: str
    archive: Path
    digest: str  # the manifest digest
    seconds: float  # time spent building it now (0 when it came from the cache)


def _default_log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("MV_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelversioning"
    )
    return Path(base) / "images"


def _run(cmd: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-40:])
        raise ImageBuildError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")
    return res  # type: ignore[no-any-return]


def ensure_packages() -> None:
    """The Debian packages (debootstrap, buildah, gcc, containerd...): e2e/build-node.sh --packages."""
    _run(
        ["bash", str(BUILD_NODE_SCRIPT), "--packages"], "installing the node's Debian packages", timeout=1800
    )


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder per image at a time on this machine (parallel test sessions share the cache)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def no_image_build() -> Iterator[None]:
    """While held, no buildah build runs on this machine (buildah writes buildah.BUILDAH_HOST_PATHS on
    the host while it builds; a test comparing the host before and after snapshots it meanwhile)."""
    with _locked("operator"):
        yield


def _hash_files(h: hashlib._Hash, root: Path, rels: Iterable[str]) -> None:
    for rel in rels:
        p = root / rel
        paths = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in paths:
            if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc" or ".egg-info" in str(f):
                continue
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 ``URIs:`` or one-line ``deb`` sources)."""
    if os.environ.get("MV_DEBIAN_MIRROR"):
        return os.environ["MV_DEBIAN_MIRROR"]
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        with contextlib.suppress(OSError):
            text = f.read_text()
            if f.suffix == ".sources":
                for stanza in re.split(r"\n\s*\n", text):
                    fields = dict(
                        (m.group(1).lower(), m.group(2).strip())
                        for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
                    )
                    suites = fields.get("suites", "").split()
                    if DEBIAN_SUITE in suites and "deb" in fields.get("types", "").split():
                        return fields.get("uris", "").split()[0]
            else:
                for line in text.splitlines():
                    parts = re.sub(r"\[[^]]*\]", "", line).split()
                    if len(parts) >= 3 and parts[0] == "deb" and parts[2] == DEBIAN_SUITE:
                        return parts[1]
    raise ImageBuildError(f"no Debian {DEBIAN_SUITE} mirror in /etc/apt/sources.list*; set MV_DEBIAN_MIRROR")


# ---------------------------------------------------------------------------------------- OCI archives
def _blob(blobs: dict[str, bytes | Path], data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def write_oci_archive(out: Path, ref: str, layer_tar: Path, config: dict[str, object], history: str) -> str:
    """A single-layer OCI image archive whose index names the image (io.containerd.image.name and
    org.opencontainers.image.ref.name); returns the manifest digest."""
    h = hashlib.sha256()
    with layer_tar.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    layer_digest, layer_size = "sha256:" + h.hexdigest(), layer_tar.stat().st_size
    blobs: dict[str, bytes | Path] = {layer_digest: layer_tar}
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": history}],
    }
    cfg_digest, cfg_size = _blob(blobs, json.dumps(cfg, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cfg_digest,
            "size": cfg_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    man_digest, man_size = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": man_digest,
                "size": man_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    _write_layout(out, blobs, index)
    return man_digest


def _write_layout(out: Path, blobs: dict[str, bytes | Path], index: dict[str, object]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:

        def add(name: str, data: bytes | Path) -> None:
            if isinstance(data, Path):
                tar.add(str(data), arcname=name)
                return
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    tmp.replace(out)


def relabel_oci_layout(layout: Path, ref: str, out: Path) -> str:
    """An OCI layout directory (from ``buildah push ... oci:DIR``) as an archive named ``ref``."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ImageBuildError(f"{layout}: expected one manifest, found {len(manifests)}")
    manifests[0].setdefault("annotations", {}).update(
        {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
    )
    blobs: dict[str, bytes | Path] = {
        "sha256:" + p.name: p for p in sorted((layout / "blobs" / "sha256").iterdir())
    }
    _write_layout(out, blobs, index)
    return str(manifests[0]["digest"])


# ---------------------------------------------------------------------------------------- images
# Archives kept per image (the newest by mtime, the one just built included).
KEEP_ARCHIVES = 4


def stale_archives(root: Path, name: str, keep: Path) -> list[Path]:
    """`name`'s archives in `root` beyond the newest KEEP_ARCHIVES (`keep`, just built, counted first)."""

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except FileNotFoundError:  # another checkout removed it meanwhile
            return 0.0

    olds = sorted((p for p in root.glob(f"{name}-*.tar") if p != keep), key=mtime, reverse=True)
    return olds[KEEP_ARCHIVES - 1 :]


class ImageBuilder:
    def __init__(self, log: Callable[[str], None] | None = _default_log, rebuild: bool = False) -> None:
        self.log = log or (lambda _m: None)
        self.rebuild = rebuild
        self.root = cache_root()

    def _cached(self, name: str, key: str) -> Image | None:
        meta = self.root / f"{name}-{key[:16]}.json"
        if self.rebuild or not meta.is_file():
            return None
        d = json.loads(meta.read_text())
        archive = Path(d["archive"])
        try:
            os.utime(archive)  # used now: the newest archives are the ones stale_archives() keeps
        except FileNotFoundError:
            return None
        return Image(d["ref"], archive, d["digest"], 0.0)

    def _store(self, name: str, key: str, ref: str, archive: Path, digest: str, seconds: float) -> Image:
        meta = self.root / f"{name}-{key[:16]}.json"
        meta.write_text(json.dumps({"ref": ref, "archive": str(archive), "digest": digest, "key": key}))
        # Older archives of the same image: keep the newest few. Several checkouts of the project on one
        # machine (worktrees, a CI clone beside a developer's tree) build different keys of the same
        # image; deleting every other key made each one rebuild the others' archive (a CI run's first
        # real-node test spent 546 s rebuilding and waiting for the build lock, then timed out).
        for old in stale_archives(self.root, name, archive):
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        self.log(f"{ref}: built in {seconds:.0f}s ({archive.stat().st_size / 1e6:.0f} MB) -> {archive}")
        return Image(ref, archive, digest, seconds)

    def all(self) -> list[Image]:
        ensure_packages()
        pause = self.pause()
        base = self.base()
        return [pause, base, self.operator(base), self.mlserver(base)]

    # ---- pause
    def pause(self) -> Image:
        gcc = shutil.which("gcc")
        if gcc is None:
            raise ImageBuildError("gcc is required to build the pause image (apt-get install gcc libc6-dev)")
        gcc_version = _run([gcc, "--version"], "gcc --version").stdout.splitlines()[0]
        h = hashlib.sha256(f"pause {RECIPE_VERSION} {gcc_version}\n".encode())
        h.update((E2E_DIR / "pause.c").read_bytes())
        key = h.hexdigest()
        with _locked("pause"):
            if (img := self._cached("pause", key)) is not None:
                return img
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="mv-pause-") as tmp:
                rootfs = Path(tmp) / "rootfs"
                rootfs.mkdir()
                _run(
                    [gcc, "-Os", "-static", "-s", "-o", str(rootfs / "pause"), str(E2E_DIR / "pause.c")],
                    "compiling e2e/pause.c",
                )
                layer = Path(tmp) / "layer.tar"
                with tarfile.open(layer, "w") as tar:
                    tar.add(str(rootfs / "pause"), arcname="pause")
                archive = self.root / f"pause-{key[:16]}.tar"
                digest = write_oci_archive(
                    archive,
                    PAUSE_IMAGE,
                    layer,
                    {"Entrypoint": ["/pause"], "User": "65535:65535"},
                    "gcc -static e2e/pause.c",
                )
            return self._store("pause", key, PAUSE_IMAGE, archive, digest, time.monotonic() - t0)

    # ---- base
    def base(self) -> Image:
        mirror = debian_mirror()
        key = hashlib.sha256(
            f"base {RECIPE_VERSION} {DEBIAN_SUITE} {mirror} {' '.join(BASE_PACKAGES)}".encode()
        ).hexdigest()
        with _locked("base"):
            if (img := self._cached("base", key)) is not None:
                return img
            if shutil.which("debootstrap") is None:
                raise ImageBuildError(
                    "debootstrap is missing (bash e2e/build-node.sh --packages installs it)"
                )
            t0 = time.monotonic()
            self.log(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} (about 90 s)")
            tmp = Path(tempfile.mkdtemp(prefix="mv-base-", dir=self.root))
            rootfs = tmp / "rootfs"
            try:
                _run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        f"--include={','.join(BASE_PACKAGES)}",
                        DEBIAN_SUITE,
                        str(rootfs),
                        mirror,
                    ],
                    "debootstrap",
                    timeout=1800,
                )
                _unmount_under(rootfs)
                for rel in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "tmp", "run"):
                    d = rootfs / rel
                    for child in d.iterdir() if d.is_dir() else ():
                        if child.is_dir() and not child.is_symlink():
                            shutil.rmtree(child)
                        elif child.name != "lock":
                            child.unlink()
                version = _run(
                    ["chroot", str(rootfs), "python3", "-c", "import sys; print(sys.version.split()[0])"],
                    "python3 in the base rootfs",
                ).stdout.strip()
                layer = tmp / "layer.tar"
                # GNU tar keeps owners, modes, hard links and mtimes (so the .pyc files stay valid);
                # /dev, /proc and /sys are the runtime's.
                _run(
                    [
                        "tar",
                        "--numeric-owner",
                        "--xattrs",
                        "--sort=name",
                        "--exclude=./dev/*",
                        "--exclude=./proc/*",
                        "--exclude=./sys/*",
                        "-C",
                        str(rootfs),
                        "-cf",
                        str(layer),
                        ".",
                    ],
                    "packing the base rootfs",
                )
                archive = self.root / f"base-{key[:16]}.tar"
                digest = write_oci_archive(
                    archive,
                    BASE_IMAGE,
                    layer,
                    {
                        "Env": [
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "LANG=C.UTF-8",
                        ],
                        "Cmd": ["python3"],
                        "Labels": {
                            "org.opencontainers.image.description": (
                                f"Debian {DEBIAN_SUITE} minbase, Python {version}"
                            )
                        },
                    },
                    f"debootstrap --variant=minbase --include={','.join(BASE_PACKAGES)} {DEBIAN_SUITE}",
                )
            finally:
                _unmount_under(rootfs)
                shutil.rmtree(tmp, ignore_errors=True)
            return self._store("base", key, BASE_IMAGE, archive, digest, time.monotonic() - t0)

    # ---- operator (the project's Dockerfile)
    def operator(self, base: Image) -> Image:
        from buildah import bud

        extras = os.environ.get("MV_IMAGE_EXTRAS", "s3")
        h = hashlib.sha256(f"operator {RECIPE_VERSION} {base.digest} {extras}\n".encode())
        _hash_files(h, REPO_ROOT, OPERATOR_CONTEXT)
        key = h.hexdigest()
        with _locked("operator"):
            if (img := self._cached("operator", key)) is not None:
                return img
            t0 = time.monotonic()
            self.log("buildah bud of the project's Dockerfile on the local base image (pip from PyPI)")
            archive = self.root / f"operator-{key[:16]}.tar"
            dockerfile = REPO_ROOT / "Dockerfile"
            digest = bud(self.root, base, OPERATOR_IMAGE, dockerfile, REPO_ROOT, {"EXTRAS": extras}, archive)
            return self._store("operator", key, OPERATOR_IMAGE, archive, digest, time.monotonic() - t0)

    # ---- MLServer (e2e/mlserver.Containerfile, pinned by e2e/mlserver-constraints.txt)
    def mlserver(self, base: Image) -> Image:
        from buildah import bud

        h = hashlib.sha256(f"mlserver {RECIPE_VERSION} {base.digest}\n".encode())
        _hash_files(h, E2E_DIR, MLSERVER_CONTEXT)
        key = h.hexdigest()
        with _locked("mlserver"):
            if (img := self._cached("mlserver", key)) is not None:
                return img
            t0 = time.monotonic()
            # and the operator's lock: one buildah at a time on this machine, none during no_image_build()
            with (
                _locked("operator"),
                tempfile.TemporaryDirectory(prefix="mv-mlserver-ctx-", dir=self.root) as ctx,
            ):
                self.log("buildah bud of e2e/mlserver.Containerfile on the local base image (pip from PyPI)")
                archive = self.root / f"mlserver-{key[:16]}.tar"
                for rel in MLSERVER_CONTEXT:
                    shutil.copy2(E2E_DIR / rel, Path(ctx) / rel)
                containerfile = E2E_DIR / "mlserver.Containerfile"
                digest = bud(self.root, base, MLSERVER_IMAGE, containerfile, Path(ctx), {}, archive)
            return self._store("mlserver", key, MLSERVER_IMAGE, archive, digest, time.monotonic() - t0)


def _unmount_under(path: Path) -> None:
    """Unmount whatever a failed debootstrap or buildah left mounted below ``path`` (deepest first)."""
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for m in sorted((m for m in mounts if m == target or m.startswith(target + "/")), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


def build_images(log: Callable[[str], None] | None = _default_log, rebuild: bool = False) -> list[Image]:
    """Build (or take from the cache) the pause, base, operator and MLServer images."""
    return ImageBuilder(log, rebuild).all()


if __name__ == "__main__":
    for image in build_images(rebuild="--rebuild" in sys.argv[1:]):
        print(image.ref, image.archive)
