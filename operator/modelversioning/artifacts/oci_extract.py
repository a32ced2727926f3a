"""Laying out the layers of an OCI artifact: each layer's bytes hashed while they stream, files written
(or, without a destination, only hashed) as they come, and nothing trusted before the layer's digest
matched.

* :class:`LayerReader` is a layer as a file: it hashes and counts every byte that passes, never reads
  past the descriptor's size (+1, to notice a longer blob), and :meth:`~LayerReader.verify` says
  whether the bytes were the pinned ones (``LayerDigestMismatch`` otherwise).
* :class:`Tree` holds what is laid out: relative path -> :class:`FileDigest`, written under a
  temporary directory (:class:`~modelversioning.artifacts.dest_writer.DestWriter` moves the files
  into place once every layer matched, and deletes them otherwise).
* :func:`unpack_tar` reads a tar(+gzip) layer in one pass (Python's ``tarfile`` in stream mode, never
  its ``extract``): regular files and directories only; a hard link, or a symbolic link to a file laid
  out before it, becomes a hard link inside the tree (never a link); a name or link that leaves the
  tree (absolute, ``..``), a device or a FIFO is ``UnsafeArchive``; another symbolic link (to a
  directory, to nothing) is not laid out; pax/GNU headers are bounded (``MAX_TAR_HEADER_BYTES``);
  the files and bytes unpacked count against ``maxFiles``/``maxTotalBytes``. When the archive is
  refused, the rest of the layer is still read and hashed: a layer whose digest differs is reported as
  ``LayerDigestMismatch`` (the bytes were not the pinned ones), not as a problem of its content.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.io_signature import MAX_MLMODEL_BYTES, is_mlmodel, read_signature
from modelversioning.artifacts.limits import MAX_TAR_HEADER_BYTES, deadline_exceeded, limit_exceeded
from modelversioning.artifacts.manifest import check_relative_path
from modelversioning.artifacts.oci_layout import Layer, unsupported
from modelversioning.artifacts.results import FileDigest

ReadChunk = Callable[[int], bytes]
_META_TYPES = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


def unsafe(shown: str, detail: str) -> ArtifactError:
    return ArtifactError(Reason.UNSAFE_ARCHIVE, f"{shown}: {Reason.UNSAFE_ARCHIVE.value}: {detail}")


class LayerReader:
    """The bytes of one layer as a file object, hashed and counted as they pass."""

    def __init__(
        self, read: ReadChunk, layer: Layer, *, shown: str, policy: ArtifactPolicy, deadline: float,
        progress: Callable[[int], None],
    ) -> None:  # fmt: skip
        self._read = read
        self.layer = layer
        self.shown = shown
        self.policy = policy
        self.deadline = deadline
        self.progress = progress
        self.hash = hashlib.sha256()
        self.count = 0
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        if self.eof:
            return b""
        if time.monotonic() > self.deadline:
            raise deadline_exceeded(self.shown, self.policy)
        want = self.policy.chunk_size if n is None or n < 0 else max(1, n)
        data = self._read(min(want, self.layer.size + 1 - self.count))
        if not data:
            self.eof = True
            return b""
        self.hash.update(data)
        self.count += len(data)
        self.progress(len(data))
        if self.count > self.layer.size:
            raise self.mismatch(f"longer than its descriptor's size ({self.layer.size} bytes)")
        return data

    def drain(self) -> None:
        while self.read(self.policy.chunk_size):
            pass

    def mismatch(self, what: str) -> ArtifactError:
        reason = Reason.LAYER_DIGEST_MISMATCH
        return ArtifactError(
            reason,
            f"{self.shown}: {reason.value}: layer {self.layer.index} ({self.layer.digest}) {what}; "
            "nothing of it was laid out",
        )

    def verify(self) -> None:
        """Raise LayerDigestMismatch unless every byte was read and they hash to the layer's digest."""
        self.drain()
        if self.count != self.layer.size:
            raise self.mismatch(f"is {self.count} bytes, its descriptor says {self.layer.size}")
        if "sha256:" + self.hash.hexdigest() != self.layer.digest:
            raise self.mismatch("does not hash to its digest")


class Tree:
    """The files laid out so far, under ``root`` (None: only hashed)."""

    def __init__(self, root: Path | None, policy: ArtifactPolicy, shown: str, *, overlay: bool) -> None:
        self.root = root
        self.policy = policy
        self.shown = shown
        self.overlay = overlay
        self.files: dict[str, FileDigest] = {}
        self.layer_of: dict[str, int] = {}
        self.unpacked = 0
        self.skipped_links = 0
        self._dirs: set[str] | None = set()  # the parents of the files (None: to be rebuilt)
        self._explicit: set[str] = set()  # directories named by a tar entry
        self.mlmodel: dict[str, bytes] = {}  # an MLmodel file's first bytes (its I/O signature), by path

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _all_dirs(self) -> set[str]:
        if self._dirs is None:  # after a removal: rebuilt once
            self._dirs = {p for rel in self.files for p in _parents(rel)}
        return self._dirs

    def _remove(self, rel: str) -> None:
        """Remove the file ``rel`` or everything under the directory ``rel``."""
        gone = [f for f in self.files if f == rel or f.startswith(rel + "/")]
        for f in gone:
            del self.files[f]
            self.layer_of.pop(f, None)
        self._dirs = None
        self._explicit = {d for d in self._explicit if d != rel and not d.startswith(rel + "/")}
        if self.root is not None:
            path = self.root / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _conflict(self, rel: str, what: str) -> ArtifactError:
        return unsupported(self.shown, f"{rel}: {what} (only an image's layers may replace files)")

    def _free_parents(self, rel: str) -> None:
        for parent in _parents(rel):
            if parent in self.files:
                if not self.overlay:
                    raise self._conflict(rel, f"{parent} is a file")
                self._remove(parent)

    def _make_room(self, rel: str) -> None:
        """Free ``rel`` for a new file (image semantics replace; other layouts refuse a clash)."""
        self._free_parents(rel)
        if rel in self.files or rel in self._all_dirs() or rel in self._explicit:
            if not self.overlay:
                raise self._conflict(rel, "laid out twice" if rel in self.files else "a directory and a file")
            self._remove(rel)
        if len(self.files) >= self.policy.max_files:
            raise limit_exceeded(self.shown, f"more than artifacts.maxFiles ({self.policy.max_files}) files")
        if self.root is not None:
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)

    def _add(self, rel: str, digest: FileDigest, layer: int) -> None:
        self.files[rel] = digest
        self.layer_of[rel] = layer
        if self._dirs is not None:
            self._dirs.update(_parents(rel))

    # ---- what layers do ------------------------------------------------------------------------
    def write(self, rel: str, layer: int, read: ReadChunk, size_hint: int | None = None) -> FileDigest:
        """A regular file from ``read`` (until b""), hashed and (with a root) written; a new inode."""
        self._make_room(rel)
        if size_hint is not None:
            self._count(size_hint, rel)
        h, n = hashlib.sha256(), 0
        fd = None
        if self.root is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.root / rel, flags, 0o644)
        keep = bytearray() if is_mlmodel(rel) else None
        try:
            while chunk := read(self.policy.chunk_size):
                h.update(chunk)
                n += len(chunk)
                if keep is not None and len(keep) <= MAX_MLMODEL_BYTES:
                    keep += chunk[: MAX_MLMODEL_BYTES + 1 - len(keep)]
                if size_hint is None:
                    self._count(len(chunk), rel)
                if fd is not None:
                    os.write(fd, chunk)
        finally:
            if fd is not None:
                os.close(fd)
        digest = FileDigest(rel, h.hexdigest(), n)
        self._add(rel, digest, layer)
        if keep is not None:
            self.mlmodel[rel] = bytes(keep)
        return digest

    def io_signature(self) -> dict[str, Any] | None:
        """The I/O signature of the MLmodel file laid out last under each path (artifacts.io_signature)."""
        return read_signature({rel: data for rel, data in self.mlmodel.items() if rel in self.files})

    def link(self, rel: str, source: str, layer: int) -> None:
        """``rel`` as another name of the laid-out file ``source`` (a hard link inside the tree)."""
        src = self.files[source]
        if source == rel or source.startswith(rel + "/") or rel.startswith(source + "/"):
            raise unsupported(self.shown, f"{rel}: a link to itself or to a path it replaces ({source})")
        self._make_room(rel)
        if self.root is not None:
            os.link(self.root / source, self.root / rel, follow_symlinks=False)
        self._add(rel, FileDigest(rel, src.sha256, src.size_bytes), layer)

    def mkdir(self, rel: str) -> None:
        self._free_parents(rel)
        if rel in self.files:
            if not self.overlay:
                raise self._conflict(rel, "a file and a directory")
            self._remove(rel)
        self._explicit.add(rel)
        if self.root is not None:
            (self.root / rel).mkdir(parents=True, exist_ok=True)

    def whiteout(self, rel: str) -> None:
        if rel in self.files or rel in self._all_dirs() or rel in self._explicit:
            self._remove(rel)

    def opaque(self, directory: str, layer: int) -> None:
        """Empty ``directory`` of what earlier layers put there (``.wh..wh..opq``)."""
        prefix = directory + "/" if directory else ""
        for f in [f for f in self.files if f.startswith(prefix) and self.layer_of.get(f, layer) < layer]:
            self._remove(f)

    def _count(self, n: int, rel: str) -> None:
        self.unpacked += n
        if self.unpacked > self.policy.max_total_bytes:
            limit = self.policy.max_total_bytes
            raise limit_exceeded(
                self.shown, f"{rel}: unpacked more than artifacts.maxTotalBytes ({limit} bytes)"
            )

    def entries(self) -> list[FileDigest]:
        return [self.files[rel] for rel in sorted(self.files)]


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _SafeTarInfo(tarfile.TarInfo):
    """Refuses pax and GNU long-name headers larger than MAX_TAR_HEADER_BYTES before they are read
    into memory (a decompression bomb in one header otherwise)."""

    def _proc_member(self, tar: tarfile.TarFile) -> Any:
        if self.type in _META_TYPES and self.size > MAX_TAR_HEADER_BYTES:
            raise ArtifactError(
                Reason.UNSAFE_ARCHIVE,
                f"a tar metadata header of {self.size} bytes (at most {MAX_TAR_HEADER_BYTES})",
            )
        return super()._proc_member(tar)  # type: ignore[misc]


def member_path(name: str, prefix: str, shown: str) -> str:
    """The relative path of a tar entry under ``prefix`` ("" for the archive's root entry)."""
    if name.startswith("/"):
        raise unsafe(shown, f"the entry {name[:200]!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe(shown, f"the entry {name[:200]!r} leaves the model directory ('..')")
    rel = "/".join([prefix, *parts] if prefix else parts)
    if rel and (problem := check_relative_path(rel)):
        raise unsafe(shown, problem)
    return rel


def link_target(rel: str, linkname: str, *, image: bool, shown: str) -> str:
    """Where a symbolic link at ``rel`` points, inside the tree; UnsafeArchive if it leaves it. An
    image's absolute link is relative to the image's root (as in the container)."""
    if linkname.startswith("/"):
        if not image:
            raise unsafe(shown, f"{rel}: a symbolic link to the absolute path {linkname[:200]!r}")
        target = posixpath.normpath(linkname.lstrip("/"))
    else:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if target == ".." or target.startswith("../"):
        raise unsafe(shown, f"{rel}: a symbolic link out of the model directory ({linkname[:200]!r})")
    return target


def unpack_tar(reader: LayerReader, tree: Tree, shown: str) -> None:
    """Unpack the tar(+gzip) layer of ``reader`` into ``tree``, then verify the layer's digest. A
    refused archive is reported only once its bytes are known to be the pinned ones."""
    layer = reader.layer
    mode = "r|gz" if layer.compression == "gzip" else "r|"
    try:
        with tarfile.open(fileobj=reader, mode=mode, tarinfo=_SafeTarInfo, bufsize=64 * 1024) as tar:  # type: ignore[call-overload]
            for member in tar:
                _member(tar, member, layer, tree, shown)
    except (tarfile.TarError, zlib.error, EOFError) as e:
        reader.verify()  # LayerDigestMismatch wins: the bytes were not the pinned ones
        kind = "tar+gzip" if layer.compression == "gzip" else "tar"
        raise unsupported(shown, f"layer {layer.index} is not a valid {kind} archive ({e})") from None
    except ArtifactError as e:
        if e.reason in (Reason.UNSAFE_ARCHIVE, Reason.UNSUPPORTED_LAYOUT, Reason.LIMIT_EXCEEDED):
            reader.verify()
            if not e.message.startswith(shown):
                raise ArtifactError(e.reason, f"{shown}: {e.reason.value}: {e.message}") from None
        raise
    reader.verify()


def _member(tar: tarfile.TarFile, m: tarfile.TarInfo, layer: Layer, tree: Tree, shown: str) -> None:
    rel = member_path(m.name, layer.path, shown)
    image = tree.overlay
    base = posixpath.basename(rel)
    if image and base.startswith(".wh."):
        directory = posixpath.dirname(rel)
        if base == ".wh..wh..opq":
            tree.opaque(directory, layer.index)
        else:
            tree.whiteout(posixpath.join(directory, base[len(".wh.") :]))
        return
    if not rel:
        return  # the archive's root directory
    if m.ischr() or m.isblk() or m.isfifo():
        raise unsafe(shown, f"{rel}: a device or FIFO")
    if m.issparse() or m.type not in tarfile.SUPPORTED_TYPES:
        raise unsupported(shown, f"{rel}: tar entry type {m.type!r} is not supported")
    if m.isdir():
        tree.mkdir(rel)
    elif m.isreg():
        f = tar.extractfile(m)
        assert f is not None
        tree.write(rel, layer.index, f.read, size_hint=m.size)
    elif m.islnk():
        target = member_path(m.linkname, layer.path, shown)
        if target not in tree.files:
            raise unsupported(
                shown, f"{rel}: a hard link to {target!r}, which is not a file laid out before it"
            )
        tree.link(rel, target, layer.index)
    elif m.issym():
        target = link_target(rel, m.linkname, image=image, shown=shown)
        if target in tree.files:
            tree.link(rel, target, layer.index)
        else:
            tree.skipped_links += 1  # to a directory or to nothing: not laid out
