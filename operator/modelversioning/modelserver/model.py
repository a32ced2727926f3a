"""Loading the verified artifact from MODEL_PATH and computing its digest.

The init container writes a file artifact as ``MODEL_PATH/<basename>`` and a directory artifact
with its relative paths, so a mount holding exactly one file may be either: its digest is the
file's sha256 or the manifest digest of the directory, and both are accepted against the pinned
sha256. Without a pinned sha256 the reported digest is the file's (one file) or the manifest's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


def manifest_digest(entries: list[tuple[str, str]]) -> str:
    """The directory digest of ``modelversioning.artifacts.manifest`` (sha256 of sorted
    ``<relative/path> <sha256>\\n`` lines). Re-stated here because importing ``modelversioning.artifacts``
    pulls in fsspec and aiohttp (over a second of start-up); tests/test_modelserver.py checks both agree."""
    text = "".join(f"{rel} {digest}\n" for rel, digest in sorted(entries, key=lambda e: e[0]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ModelLoadError(Exception):
    """The artifact is missing, unreadable or does not match the pinned digest."""


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    sha256: str  # the digest that matched (or the natural one when nothing was pinned)
    files: tuple[tuple[str, int], ...]  # (relative path, size) in manifest order

    @property
    def size_bytes(self) -> int:
        return sum(size for _, size in self.files)


def _file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def load_model(
    path: str | os.PathLike[str], expected_sha256: str | None = None, *, pinned_manifest: bool = False
) -> LoadedModel:
    """Read every file of the artifact at ``path`` and check its digest against ``expected_sha256``.
    ``pinned_manifest`` (an oci:// artifact, MODEL_SHA256_OF=oci-manifest): the pinned digest is the OCI
    manifest's, which the files cannot be hashed back to; the init container verified the manifest and
    every layer, so the files are read and the pinned digest reported as is."""
    root = Path(path)
    if not root.exists():
        raise ModelLoadError(f"model path {root} does not exist")
    expected = (expected_sha256 or "").strip().lower() or None
    if root.is_file():
        digest, size = _file_sha256(root)
        candidates = {digest}
        files: tuple[tuple[str, int], ...] = ((root.name, size),)
    elif root.is_dir():
        entries: list[tuple[str, str, int]] = []
        try:
            for d, _dirs, names in os.walk(root, followlinks=True, onerror=_raise):
                for name in names:
                    full = Path(d) / name
                    if not full.is_file():
                        continue
                    rel = full.relative_to(root).as_posix()
                    digest, size = _file_sha256(full)
                    entries.append((rel, digest, size))
        except OSError as e:
            raise ModelLoadError(f"reading {root}: {e}") from e
        if not entries:
            raise ModelLoadError(f"model path {root} holds no file (was the artifact verified into it?)")
        entries.sort(key=lambda e: e[0])
        manifest = manifest_digest([(rel, digest) for rel, digest, _ in entries])
        # One file: the file's own digest first (a file artifact), then the manifest's.
        candidates = {entries[0][1], manifest} if len(entries) == 1 else {manifest}
        digest = entries[0][1] if len(entries) == 1 else manifest
        files = tuple((rel, size) for rel, _, size in entries)
    else:
        raise ModelLoadError(f"model path {root} is neither a file nor a directory")
    if expected is not None and pinned_manifest:
        digest = expected
    elif expected is not None:
        if expected not in candidates:
            raise ModelLoadError(f"artifact digest {digest} does not match the pinned sha256 {expected}")
        digest = expected
    return LoadedModel(path=root, sha256=digest, files=files)


def _raise(error: OSError) -> None:
    raise error
