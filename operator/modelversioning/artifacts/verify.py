"""Streaming verification of model artifacts (any fsspec URI) against their sha256.

Bytes are hashed while they are read, ``policy.chunk_size`` at a time; nothing is downloaded
first. The digest of a directory/prefix is the sha256 of its manifest (see
:mod:`modelversioning.artifacts.manifest`); its files are hashed in parallel
(``policy.max_workers`` threads pulling from one list, at most one chunk in memory per thread).

Bounded: every step (connecting, response headers, the listing, ``info``, every read) runs under
one deadline (``policy.timeout_seconds``): the HTTP client's total timeout, and listing/``info`` in a
helper thread that is abandoned at the deadline. An s3 prefix is listed page by page and the
listing stops at ``policy.max_files`` (+1) files or ``policy.max_total_bytes``; no artifact is read
past ``max_total_bytes`` or a declared ``expected_size``. Reaching a limit is ``LimitExceeded``
(permanent, the message names the setting). The operator also runs each verification in a child
process with a memory limit (:mod:`modelversioning.artifacts.runner`), so nothing here can take
the operator down or be left running.

* A read is only ever reported as a digest when it was complete: the byte count is compared
  with the size the store reported (when it reports one), and a stream that ends early (e.g.
  HTTP Content-Length larger than the body) is FetchFailed.
* ``dest`` (the init-container form) writes the bytes while hashing, to a temporary name inside
  ``dest``; files are renamed into place only after the digest matched, and the partial output
  is deleted otherwise. A file artifact lands at ``dest/<basename>``, a directory keeps its
  relative paths under ``dest``.
* Outcomes (:class:`~modelversioning.artifacts.errors.Reason`) and whether retrying may help:

  ==============  =========  ==========================================================
  Verified        --         the digest matched
  DigestMismatch  no         the bytes are not the registered ones
  NotFound        **yes**    nothing at the URI (yet): artifacts are often uploaded after
                             the ModelVersion is registered, so the operator retries with
                             backoff and says so in the message
  AccessDenied    no         credentials missing/wrong (PermissionError, S3 403 /
                             AccessDenied / InvalidAccessKeyId, HTTP 401/403)
  FetchFailed     yes        network/store errors, timeouts, truncated reads
  URIRefused      no         the URI policy refused the URI (or a redirect/address), or the
                             credentials may not be sent to that host
  LimitExceeded   no         timeoutSeconds, maxFiles, maxTotalBytes (or, in the runner, the
                             memory limit) was reached
  SizeMismatch    no         the bytes differ from the declared ``expected_size``
  ==============  =========  ==========================================================

Messages never contain credentials, URI user info or query strings (pre-signed URLs), and a
mismatch never reports what the URI *did* hash to (``VerifyResult.actual`` has it, for the CLI):
the operator must not be an oracle for the content of URLs that are not the expected artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts.backends import open_filesystem
from modelversioning.artifacts.classify import NOT_FOUND_HINT, classify_exception, describe
from modelversioning.artifacts.credentials import (
    HOSTS_KEY,
    SETTING_KEYS,
    StoreAccess,
    bind_credentials,
    store_access,
)
from modelversioning.artifacts.errors import TRANSIENT_REASONS, ArtifactError, Reason, TruncatedReadError
from modelversioning.artifacts.manifest import check_relative_path, manifest_digest
from modelversioning.artifacts.policy import check_uri, path_under_roots, resolve_file_path
from modelversioning.artifacts.redact import redact_text, redact_uri
from modelversioning.artifacts.results import Digest, FileDigest, Kind, VerifyResult

ProgressCallback = Callable[[int, int | None], None]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PARTIAL_PREFIX = ".mv-partial-"


# ---------------------------------------------------------------------------------------------
# public entry points


def verify_artifact(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy | None = None,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    dest: str | os.PathLike[str] | None = None,
    expected_size: int | None = None,
) -> VerifyResult:
    """Stream ``uri`` and compare its digest with ``expected_sha256``. Never raises for
    fetch/policy problems (they are results); raises ValueError for a malformed expected digest.
    ``expected_size``: ``spec.artifact.sizeBytes`` (total bytes); no more is read, and a
    different size is SizeMismatch.

    ``secret_data``: decoded data of ``artifact.secretRef`` (None: the process environment, see
    :mod:`~modelversioning.artifacts.credentials`). ``env`` replaces os.environ (tests).
    ``progress(bytes_done, bytes_total_or_None)`` is called from worker threads, serialized.
    ``dest``: also write the verified files under this directory (init-container form).
    """
    expected = expected_sha256.strip().lower()
    if not _SHA256_RE.match(expected):
        raise ValueError("expected sha256 must be 64 hex characters")
    policy = policy or ArtifactPolicy()
    start = time.monotonic()
    deadline = start + policy.timeout_seconds
    shown = redact_uri(uri)
    secret_values = _secret_values(secret_data)

    def result(
        reason: Reason,
        message: str,
        *,
        transient: bool | None = None,
        digest: Digest | None = None,
        written_to: str | None = None,
    ) -> VerifyResult:
        return VerifyResult(
            reason=reason,
            uri=shown,
            expected=expected,
            actual=digest.sha256 if digest else None,
            size_bytes=digest.size_bytes if digest else None,
            files=digest.files if digest else None,
            duration_seconds=time.monotonic() - start,
            message=redact_text(message, secret_values),
            transient=reason in TRANSIENT_REASONS if transient is None else transient,
            kind=digest.kind if digest else None,
            written_to=written_to,
        )

    writer = _Writer(Path(dest)) if dest is not None else None
    try:
        access = _access_for(uri, secret_data, env)
        secret_values |= access.secret_values
        digest = _digest(
            uri, access, policy, progress=progress, writer=writer, deadline=deadline,
            expected_size=expected_size, env=env,
        )  # fmt: skip
    except ArtifactError as e:
        if writer:
            writer.discard()
        return result(e.reason, e.message, transient=e.transient)
    except Exception as e:
        if writer:
            writer.discard()
        if time.monotonic() >= deadline:
            return result(Reason.LIMIT_EXCEEDED, _deadline_message(shown, policy), transient=False)
        reason, transient, detail = classify_exception(e)
        return result(reason, describe(reason, shown, detail), transient=transient)

    size = _human_size(digest.size_bytes)
    what = f"{digest.files} files, {size}" if digest.kind == "directory" else size
    if digest.sha256 != expected:
        if writer:
            writer.discard()
        return result(
            Reason.DIGEST_MISMATCH,
            f"{shown}: DigestMismatch: the bytes read do not hash to the expected sha256 {expected}; "
            "fix the URI or register a new version",
            digest=digest,
        )
    if expected_size is not None and digest.size_bytes != expected_size:
        if writer:
            writer.discard()
        return result(
            Reason.SIZE_MISMATCH,
            f"{shown}: SizeMismatch: read {digest.size_bytes} bytes, "
            f"spec.artifact.sizeBytes is {expected_size}",
            digest=digest,
        )
    written_to: str | None = None
    if writer:
        try:
            written_to = str(writer.commit())
        except OSError as e:
            writer.discard()
            return result(
                Reason.FETCH_FAILED,
                f"{shown}: verified, but moving the files into {dest} failed: {e}",
                digest=digest,
                transient=False,
            )
    return result(
        Reason.VERIFIED,
        f"{shown}: sha256 {digest.sha256} verified ({what})",
        digest=digest,
        written_to=written_to,
    )


def compute_digest(
    uri: str,
    *,
    policy: ArtifactPolicy | None = None,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> Digest:
    """The digest of ``uri`` (file sha256 or manifest digest). Raises :class:`ArtifactError`."""
    policy = policy or ArtifactPolicy()
    shown = redact_uri(uri)
    access: StoreAccess | None = None
    deadline = time.monotonic() + policy.timeout_seconds
    try:
        access = _access_for(uri, secret_data, env)
        return _digest(uri, access, policy, progress=progress, writer=None, deadline=deadline, env=env)
    except ArtifactError:
        raise
    except Exception as e:
        if time.monotonic() >= deadline:
            message = _deadline_message(shown, policy)
            raise ArtifactError(Reason.LIMIT_EXCEEDED, message, transient=False) from None
        reason, transient, detail = classify_exception(e)
        secrets_ = _secret_values(secret_data) | (access.secret_values if access else frozenset())
        raise ArtifactError(
            reason, redact_text(describe(reason, shown, detail), secrets_), transient=transient
        ) from None


def digest_local(
    path: str | os.PathLike[str],
    *,
    max_workers: int = 4,
    chunk_size: int = 4 * 1024 * 1024,
    progress: ProgressCallback | None = None,
) -> Digest:
    """The digest of a local file or directory (what ``artifact.sha256`` must be).

    For ``kubectl models register``: no URI policy applies (it runs on the user's machine).
    Raises :class:`ArtifactError` (e.g. NotFound).
    """
    real = Path(os.path.realpath(path))
    policy = ArtifactPolicy(
        allowed_schemes=["file"],
        file_roots=["/"],
        max_workers=max_workers,
        chunk_size=chunk_size,
        timeout_seconds=1e9,
        max_files=1 << 62,
        max_total_bytes=1 << 62,
    )
    uri = real.as_uri() + ("/" if real.is_dir() else "")
    return compute_digest(uri, policy=policy, env={}, progress=progress)


def _secret_values(secret_data: Mapping[str, str] | None) -> frozenset[str]:
    """Every Secret value that is not a known non-secret setting (endpoint, region...)."""
    return frozenset(v for k, v in (secret_data or {}).items() if v and k not in SETTING_KEYS | {HOSTS_KEY})


# ---------------------------------------------------------------------------------------------
# messages


def _deadline_message(shown_uri: str, policy: ArtifactPolicy) -> str:
    return (
        f"{shown_uri}: LimitExceeded: not verified within artifacts.timeoutSeconds "
        f"({policy.timeout_seconds:g}s); a slow or stalled store, or raise the limit"
    )


def _limit(shown_uri: str, what: str) -> ArtifactError:
    return ArtifactError(Reason.LIMIT_EXCEEDED, f"{shown_uri}: LimitExceeded: {what}", transient=False)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# the work


def _access_for(
    uri: str, secret_data: Mapping[str, str] | None, env: Mapping[str, str] | None
) -> StoreAccess:
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    return store_access(scheme, secret_data, env=env)


@dataclass(slots=True)
class _Entry:
    rel: str
    path: str  # file-system path for fs.open
    size: int | None


@dataclass
class _Plan:
    fs: Any
    kind: Kind
    entries: list[_Entry]
    open_kwargs: dict[str, Any]


def _basename(uri: str) -> str:
    name = unquote(PurePosixPath(urlsplit(uri).path).name)
    return name if name and check_relative_path(name) is None else "artifact"


def _bounded(fn: Callable[[], Any], deadline: float, shown: str, policy: ArtifactPolicy) -> Any:
    """``fn()``, but give up at ``deadline``: a store call that does not return (a listing or an
    ``info`` a server keeps waiting) is abandoned in its helper thread, never waited for."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="artifact-store", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    if t.is_alive():
        raise ArtifactError(Reason.LIMIT_EXCEEDED, _deadline_message(shown, policy), transient=False)
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _Listing:
    """Collects a directory's files and stops at the limits."""

    def __init__(self, shown: str, policy: ArtifactPolicy, expected_size: int | None) -> None:
        self.shown = shown
        self.policy = policy
        self.max_bytes = policy.max_total_bytes
        self.expected_size = expected_size
        self.entries: list[_Entry] = []
        self.total = 0

    def add(self, rel: str, path: str, size: int | None) -> None:
        problem = check_relative_path(rel)
        if problem:
            raise ArtifactError(Reason.URI_REFUSED, f"{self.shown}: cannot verify a directory with {problem}")
        self.entries.append(_Entry(rel, path, size))
        if len(self.entries) > self.policy.max_files:
            raise _limit(self.shown, f"more than artifacts.maxFiles ({self.policy.max_files}) files")
        self.total += size or 0
        _check_total(self.shown, self.total, self.policy, self.expected_size)


def _check_total(shown: str, total: int, policy: ArtifactPolicy, expected_size: int | None) -> None:
    if total > policy.max_total_bytes:
        raise _limit(shown, f"larger than artifacts.maxTotalBytes ({policy.max_total_bytes} bytes)")
    if expected_size is not None and total > expected_size:
        raise ArtifactError(
            Reason.SIZE_MISMATCH,
            f"{shown}: SizeMismatch: more than spec.artifact.sizeBytes ({expected_size} bytes)",
            transient=False,
        )


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


def _plan(
    uri: str, access: StoreAccess, policy: ArtifactPolicy, deadline: float, expected_size: int | None
) -> _Plan:
    scheme = access.scheme
    shown = redact_uri(uri)
    fs = open_filesystem(access, policy, deadline)
    if scheme in ("http", "https"):
        # HTTP directories cannot be listed: an http(s) URI is always one file.
        info = _bounded(lambda: fs.info(uri), deadline, shown, policy)
        size = info.get("size")
        if size is not None:
            _check_total(shown, int(size), policy, expected_size)
        return _Plan(fs, "file", [_Entry(_basename(uri), uri, size)], {"block_size": 0, "size": size})

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
        info = _bounded(lambda: fs.info(root), deadline, shown, policy)
        if info.get("type") == "file":
            size = info.get("size")
            if size is not None:
                _check_total(shown, int(size), policy, expected_size)
            return _Plan(fs, "file", [_Entry(_basename(uri), root, size)], open_kwargs)

    listing = _Listing(shown, policy, expected_size)
    if scheme == "file":
        _list_local(root, policy, shown, listing)
    else:
        _bounded(lambda: _list_store(fs, scheme, root, listing), deadline, shown, policy)
    if not listing.entries:
        raise ArtifactError(Reason.NOT_FOUND, f"{shown}: NotFound: no files there; {NOT_FOUND_HINT}")
    listing.entries.sort(key=lambda e: e.rel)
    return _Plan(fs, "directory", listing.entries, open_kwargs)


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
            problem = check_relative_path(rel)
            if problem:
                raise ArtifactError(Reason.URI_REFUSED, f"{shown}: cannot verify a directory with {problem}")
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


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._callback:
            self._callback(0, self._total)

    def add(self, n: int) -> int:
        with self._lock:
            self._done += n
            if self._callback:
                self._callback(self._done, self._total)
            return self._done


class _Stopped(Exception):
    pass


class _Writer:
    """Writes under ``dest`` via a temporary name; ``commit`` moves everything into place or, if
    any move fails, removes what it had moved (a directory is never left half committed)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.token = secrets.token_hex(6)
        self.kind: Kind | None = None
        self.name: str | None = None
        self.rels: list[str] = []

    @property
    def tmp(self) -> Path:
        if self.kind == "file":
            return self.dest / f".{self.name}{PARTIAL_PREFIX}{self.token}"
        return self.dest / f"{PARTIAL_PREFIX}{self.token}"

    def prepare(self, kind: Kind, entries: list[_Entry]) -> None:
        self.dest.mkdir(parents=True, exist_ok=True)
        for stale in self.dest.iterdir():  # left by a run that was killed (init container restart)
            if PARTIAL_PREFIX in stale.name and not stale.is_symlink():
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        self.kind = kind
        self.rels = [e.rel for e in entries]
        if kind == "file":
            self.name = entries[0].rel
        else:
            self.tmp.mkdir()

    def path_for(self, rel: str) -> Path:
        if self.kind == "file":
            return self.tmp
        out = self.tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def commit(self) -> Path:
        dest_real = Path(os.path.realpath(self.dest))
        if self.kind == "file":
            assert self.name is not None
            target = self.dest / self.name
            os.replace(self.tmp, target)
            return target
        moved: list[Path] = []
        made: list[Path] = []  # directories this commit created, outermost first
        try:
            for rel in self.rels:
                target = self.dest / rel
                missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
                target.parent.mkdir(parents=True, exist_ok=True)
                made += reversed(missing)
                parent_real = Path(os.path.realpath(target.parent))
                if parent_real != dest_real and not parent_real.is_relative_to(dest_real):
                    raise OSError(f"{rel}: destination directory leaves {self.dest}")
                os.replace(self.tmp / rel, target)
                moved.append(target)
        except BaseException:
            for target in moved:
                target.unlink(missing_ok=True)
            for d in reversed(made):  # innermost first; only if empty (never another's files)
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.dest

    def discard(self) -> None:
        if self.kind is None:
            return
        tmp = self.tmp
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _hash_entry(
    plan: _Plan,
    entry: _Entry,
    policy: ArtifactPolicy,
    deadline: float,
    stop: threading.Event,
    progress: _Progress,
    out_path: Path | None,
    budget: int,
    shown: str,
) -> FileDigest:
    """sha256 of one file; never reads past ``budget`` bytes in total (all files, ``progress``)."""
    h = hashlib.sha256()
    n = 0
    chunk_size = policy.chunk_size
    out = open(out_path, "wb") if out_path is not None else None  # noqa: SIM115
    try:
        with plan.fs.open(entry.path, "rb", **plan.open_kwargs) as f:
            while True:
                if stop.is_set():
                    raise _Stopped()
                if time.monotonic() > deadline:
                    raise _limit(
                        shown, f"not verified within artifacts.timeoutSeconds ({policy.timeout_seconds:g}s)"
                    )
                chunk = f.read(chunk_size)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                if out is not None:
                    out.write(chunk)
                if progress.add(len(chunk)) > budget:
                    raise _limit(shown, f"read more than the allowed {budget} bytes")
    finally:
        if out is not None:
            out.close()
    if entry.size is not None and n != entry.size:
        what = "truncated" if n < entry.size else "longer than reported"
        raise TruncatedReadError(f"{entry.rel}: read {n} of {entry.size} bytes ({what})")
    return FileDigest(entry.rel, h.hexdigest(), n)


def _digest(
    uri: str,
    access: StoreAccess,
    policy: ArtifactPolicy,
    *,
    progress: ProgressCallback | None,
    writer: _Writer | None,
    deadline: float | None = None,
    expected_size: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Digest:
    if deadline is None:
        deadline = time.monotonic() + policy.timeout_seconds
    shown = redact_uri(uri)
    refusal = check_uri(uri, policy, endpoint_url=access.endpoint_url)
    if refusal:
        if not refusal.startswith(shown):
            refusal = describe(Reason.URI_REFUSED, shown, refusal)
        raise ArtifactError(Reason.URI_REFUSED, refusal)
    try:
        access = bind_credentials(uri, access, policy, env)
    except ArtifactError as e:
        raise ArtifactError(e.reason, describe(e.reason, shown, e.message), transient=e.transient) from None
    plan = _plan(uri, access, policy, deadline, expected_size)
    sizes = [e.size for e in plan.entries]
    total = sum(s for s in sizes if s is not None) if None not in sizes else None
    budget = policy.max_total_bytes if expected_size is None else min(policy.max_total_bytes, expected_size)
    tracker = _Progress(progress, total)
    tracker.start()
    if writer:
        writer.prepare(plan.kind, plan.entries)
    stop = threading.Event()

    def one(entry: _Entry) -> FileDigest:
        out = writer.path_for(entry.rel) if writer else None
        return _hash_entry(plan, entry, policy, deadline, stop, tracker, out, budget, shown)

    if len(plan.entries) == 1 and plan.kind == "file":
        file_digest = one(plan.entries[0])
        return Digest(file_digest.sha256, "file", file_digest.size_bytes, 1, (file_digest,))

    # a fixed set of workers pulling the next file: no future (or thread) per file
    entries = plan.entries
    results: list[FileDigest | None] = [None] * len(entries)
    errors: list[BaseException] = []
    next_index = iter(range(len(entries)))
    lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = one(entries[i])
            except BaseException as e:  # noqa: BLE001 - the first error is raised below
                if not isinstance(e, _Stopped):
                    with lock:
                        errors.append(e)
                stop.set()
                return

    workers = [
        threading.Thread(target=work, name="artifact-hash", daemon=True)
        for _ in range(max(1, min(policy.max_workers, len(entries))))
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()) + 5.0)
    if any(t.is_alive() for t in workers):
        stop.set()
        raise ArtifactError(Reason.LIMIT_EXCEEDED, _deadline_message(shown, policy), transient=False)
    if errors:
        raise errors[0]
    done = [d for d in results if d is not None]
    assert len(done) == len(entries)
    return Digest(
        manifest_digest((d.path, d.sha256) for d in done),
        "directory",
        sum(d.size_bytes for d in done),
        len(done),
        tuple(done),
    )
