"""What to read for an artifact URI: one file, or every file below a directory/prefix.

An http(s) URI is always one file (HTTP directories cannot be listed). Otherwise the store's
``info`` tells a file from a directory/prefix (a URI ending in ``/`` is always a directory): a
local directory is walked following symbolic links, which must stay under the policy's file
roots; an s3 prefix is listed page by page, so the listing stops mid-way at ``artifacts.maxFiles``
(+1) files or ``artifacts.maxTotalBytes``; other stores are listed whole, then checked. Every
relative path must be one a manifest line can hold
(:func:`~modelversioning.artifacts.manifest.check_relative_path`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.classify import NOT_FOUND_HINT
from modelversioning.artifacts.credentials import StoreAccess
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.filesystems import open_filesystem
from modelversioning.artifacts.limits import check_total, limit_exceeded, run_bounded
from modelversioning.artifacts.manifest import check_relative_path
from modelversioning.artifacts.policy import path_under_roots, resolve_file_path
from modelversioning.artifacts.redact import redact_uri
from modelversioning.artifacts.results import Kind


@dataclass(slots=True)
class Entry:
    rel: str
    path: str  # file-system path for fs.open
    size: int | None


@dataclass
class ReadPlan:
    """The file system to read from, the files to read (sorted by ``rel``) and how to open them."""

    fs: Any
    kind: Kind
    entries: list[Entry]
    open_kwargs: dict[str, Any]


def _basename(uri: str) -> str:
    name = unquote(PurePosixPath(urlsplit(uri).path).name)
    return name if name and check_relative_path(name) is None else "artifact"


def _refuse_unlisted_path(shown: str, rel: str) -> None:
    """Refuse a relative path that a manifest line cannot hold (see the manifest format)."""
    problem = check_relative_path(rel)
    if problem:
        raise ArtifactError(Reason.URI_REFUSED, f"{shown}: cannot verify a directory with {problem}")


def _checked_size(
    info: Mapping[str, Any], shown: str, policy: ArtifactPolicy, expected_size: int | None
) -> Any:
    """The size ``info`` reports for a single file (None: unknown), checked against the limits."""
    size = info.get("size")
    if size is not None:
        check_total(shown, int(size), policy, expected_size)
    return size


class _Listing:
    """Collects a directory's files and stops at the limits."""

    def __init__(self, shown: str, policy: ArtifactPolicy, expected_size: int | None) -> None:
        self.shown = shown
        self.policy = policy
        self.expected_size = expected_size
        self.entries: list[Entry] = []
        self.total = 0

    def add(self, rel: str, path: str, size: int | None) -> None:
        _refuse_unlisted_path(self.shown, rel)
        self.entries.append(Entry(rel, path, size))
        if len(self.entries) > self.policy.max_files:
            raise limit_exceeded(self.shown, f"more than artifacts.maxFiles ({self.policy.max_files}) files")
        self.total += size or 0
        check_total(self.shown, self.total, self.policy, self.expected_size)


def _list_store(fs: Any, scheme: str, root: str, listing: _Listing) -> None:
    """Every object below ``root/``; an s3 prefix page by page (stops at a limit mid-listing)."""
    prefix = root.rstrip("/") + "/"

    def take(path: str, info: Mapping[str, Any]) -> None:
        if info.get("type") != "file" or not path.startswith(prefix) or path.endswith("/"):
            return
        size = info.get("size")
        listing.add(path[len(prefix) :], path, int(size) if size is not None else None)

    if scheme in ("s3", "s3a") and hasattr(fs, "_iterdir") and hasattr(fs, "split_path"):
        from fsspec.asyn import sync

        bucket, key, _ = fs.split_path(root)

        async def pages() -> None:
            async for info in fs._iterdir(bucket, delimiter="", prefix=key.rstrip("/") + "/"):
                take(str(info.get("name", "")), info)

        sync(fs.loop, pages)
        return
    # other stores: fsspec has no streaming listing; the limits apply once it is complete
    for path, info in fs.find(root, withdirs=False, detail=True).items():
        take(path, info)


def _raise(e: OSError) -> None:
    raise e


def _list_local(root: str, policy: ArtifactPolicy, shown: str, listing: _Listing) -> None:
    """Regular files below ``root``, following symbolic links (like ``find -L root -type f``);
    every file's real path must stay under the policy's file roots."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_raise):
        here = os.path.realpath(dirpath)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                target = Path(os.path.realpath(full))
                if Path(here) == target or Path(here).is_relative_to(target):
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    raise ArtifactError(
                        Reason.FETCH_FAILED, f"{shown}: {rel} is a symbolic link loop", transient=False
                    )
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            _refuse_unlisted_path(shown, rel)
            real = os.path.realpath(full)
            if not path_under_roots(real, policy.file_roots):
                raise ArtifactError(
                    Reason.URI_REFUSED,
                    f"{shown}: {rel} is a symbolic link that leaves the allowed file roots",
                )
            try:
                st = os.stat(real)
            except FileNotFoundError:
                raise ArtifactError(
                    Reason.FETCH_FAILED, f"{shown}: {rel} is a broken symbolic link", transient=False
                ) from None
            if stat.S_ISREG(st.st_mode):
                listing.add(rel, real, st.st_size)


def plan_reading(
    uri: str, access: StoreAccess, policy: ArtifactPolicy, deadline: float, expected_size: int | None
) -> ReadPlan:
    """What to read for ``uri`` (see the module docstring); raises at a limit or if nothing is there."""
    scheme = access.scheme
    shown = redact_uri(uri)
    fs = open_filesystem(access, policy, deadline)
    if scheme in ("http", "https"):
        # HTTP directories cannot be listed: an http(s) URI is always one file.
        info = run_bounded(lambda: fs.info(uri), deadline, shown, policy)
        size = _checked_size(info, shown, policy, expected_size)
        return ReadPlan(fs, "file", [Entry(_basename(uri), uri, size)], {"block_size": 0, "size": size})

    if scheme == "file":
        real = resolve_file_path(uri)
        root = real.as_posix()
    else:
        root = fs._strip_protocol(uri)
    root = root.rstrip("/") or root
    open_kwargs: dict[str, Any] = {}
    if scheme in ("s3", "s3a", "gs", "gcs"):
        open_kwargs = {"block_size": policy.chunk_size, "cache_type": "none"}

    as_dir = uri.endswith("/")
    if not as_dir:
        info = run_bounded(lambda: fs.info(root), deadline, shown, policy)
        if info.get("type") == "file":
            size = _checked_size(info, shown, policy, expected_size)
            return ReadPlan(fs, "file", [Entry(_basename(uri), root, size)], open_kwargs)

    listing = _Listing(shown, policy, expected_size)
    if scheme == "file":
        _list_local(root, policy, shown, listing)
    else:
        run_bounded(lambda: _list_store(fs, scheme, root, listing), deadline, shown, policy)
    if not listing.entries:
        raise ArtifactError(Reason.NOT_FOUND, f"{shown}: NotFound: no files there; {NOT_FOUND_HINT}")
    listing.entries.sort(key=lambda e: e.rel)
    return ReadPlan(fs, "directory", listing.entries, open_kwargs)
