"""The init container's side of the node cache (the agent is :mod:`modelversioning.nodecache`).

* :func:`read`: before fetching from the origin, ask the node's agent for the entry of the pinned digest
  (its kind known from the URI, :func:`expected_kind`). What comes back is hashed here like bytes from the
  origin (:func:`~modelversioning.artifacts.cache_stream.decode`), written under ``dest`` through the same
  :class:`~modelversioning.artifacts.dest_writer.DestWriter` and moved into place only if it is the pinned
  digest and size, and (a signed version) the signature read from its usual place accepts it. Anything
  else (no agent, a refusal, a miss, a stream that does not hash, a timeout) is ``None``: fetch from the
  origin as without a cache. A signature refusal is final (the bytes are the pinned ones).
* :func:`offer`: after the origin's bytes were verified and laid out, offer them to the agent, which hashes
  them again and keeps them only under the digest it computed.

For ``oci://`` the entry is asked for by the pinned manifest digest (``/v1/entries/oci/<manifest>``): the
agent serves the files the operator laid out from that manifest for the caller's own verified version.
Their digest, that version's ``status.artifact.contentDigest``, is pinned in the init container's own
arguments by the operator (``--node-cache-content-digest``, ``content``): the reader requires what it
hashes to be exactly that, and refuses an answer whose ``X-Modelversioning-Content-Digest`` names
another; what the agent names is never trusted. Without a pinned one the cache is not used for an
``oci://`` URI. A signed version's signature is then checked against the files, as after a fetch. An
offer after a fetch from the registry sends the files laid out only if they hash to the pinned digest
(the agent stores them only if they hash to the one it knows).

Both are bounded by one short socket timeout per step and a total deadline; neither ever fails a
verification that succeeded, and neither is tried for a URI whose kind (file or directory) is not known
before listing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.cache_stream import (
    Encoder,
    Limited,
    Sink,
    StreamError,
    decode,
    files_under,
    stream_length,
)
from modelversioning.artifacts.dest_writer import DestWriter
from modelversioning.artifacts.redact import redact_uri
from modelversioning.artifacts.results import Digest, Kind, VerifyResult
from modelversioning.artifacts.signature import TrustMaterial
from modelversioning.domain.node_cache import EntryKind, expected_kind
from modelversioning.domain.oci_ref import is_oci

HIT, MISS, REFUSED, UNREACHABLE, CORRUPT, SKIPPED = (
    "hit",
    "miss",
    "refused",
    "unreachable",
    "corrupt",
    "skipped",
)
OFFERED = "offered"
CONTENT_HEADER = "X-Modelversioning-Content-Digest"  # nodecache.server's, for an oci entry
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class NodeCache:
    """Where the node's agent listens (``http://<node IP>:<port>``) and the projected token to show it."""

    url: str
    token: str
    timeout: float = 3.0  # each connect / read / write
    log: Callable[[str], None] = lambda line: None

    def connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"node cache URL {self.url!r}: http://host:port expected")
        return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout)


@dataclass(frozen=True)
class Outcome:
    what: str  # HIT, MISS, REFUSED, UNREACHABLE, CORRUPT, SKIPPED (read) or OFFERED (offer)
    detail: str = ""
    result: VerifyResult | None = None  # a HIT's verification (or a signature's final refusal)


def _path(kind: EntryKind, digest: str) -> str:
    return f"/v1/entries/{kind}/{digest}"


def _stream_kind(kind: EntryKind) -> Kind:
    """What an entry of ``kind`` is sent as: an ``oci://`` artifact's files as a directory."""
    return "file" if kind == "file" else "directory"


def read(
    cache: NodeCache,
    uri: str,
    expected: str,
    dest: Path,
    *,
    policy: ArtifactPolicy,
    expected_size: int | None = None,
    trust: TrustMaterial | None = None,
    secret_data: Mapping[str, str] | None = None,
    content: str = "",
) -> Outcome:
    """The artifact from the node cache into ``dest`` (see the module docstring); ``content``: an
    ``oci://`` version's pinned contentDigest (none: no cache for it)."""
    kind = expected_kind(uri)
    if kind is None:
        return Outcome(SKIPPED, "the URI does not say whether it is a file or a directory")
    if kind == "oci" and not _HEX64.match(content):
        return Outcome(SKIPPED, "no content digest pinned for an oci:// version")
    start = time.monotonic()
    deadline = start + policy.timeout_seconds
    try:
        conn = cache.connection()
        conn.request("GET", _path(kind, expected), headers={"Authorization": f"Bearer {cache.token}"})
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException, ValueError) as e:
        return Outcome(UNREACHABLE, str(e))
    try:
        if resp.status != 200:
            return _not_served(resp)
        named = resp.getheader(CONTENT_HEADER) or ""
        if kind == "oci" and named != content:  # the pinned digest decides; another name: refused
            return Outcome(CORRUPT, f"the agent named content digest {named[:71]!r}, not the pinned one")
        writer = DestWriter(dest)
        try:
            got = _receive(resp, _stream_kind(kind), uri, writer, policy, expected_size, deadline)
        except (StreamError, OSError, http.client.HTTPException, ValueError) as e:
            writer.discard()
            return Outcome(CORRUPT, f"refused what the agent sent: {e}")
    finally:
        conn.close()
    if kind == "oci":
        if got.sha256 != content:  # decode hashed it: it must be the pinned contentDigest
            writer.discard()
            return Outcome(CORRUPT, f"the files hash to {got.sha256}, not the pinned contentDigest")
        got, expected_size = replace(got, sha256=expected, content_digest=content), None
    return _verified(got, writer, uri, expected, dest, start, policy, expected_size, trust, secret_data)


def _not_served(resp: http.client.HTTPResponse) -> Outcome:
    try:
        reason = str(json.loads(resp.read(4096)).get("reason", ""))
    except (ValueError, OSError, http.client.HTTPException, AttributeError):
        reason = ""
    if resp.status == 404:
        return Outcome(MISS, reason)
    return Outcome(REFUSED, f"{resp.status} {reason}".strip())


def _receive(
    resp: http.client.HTTPResponse,
    kind: Kind,
    uri: str,
    writer: DestWriter,
    policy: ArtifactPolicy,
    expected_size: int | None,
    deadline: float,
) -> Digest:
    if kind == "file":
        name = uri.rstrip("/").rsplit("/", 1)[-1] or "model"
        writer.prepare("file", [name])
    else:
        writer.prepare_tree()
    rels: list[str] = []

    def open_sink(got: Kind, rel: str) -> Sink:
        if got != kind:
            raise StreamError(f"a {got} entry, a {kind} was asked for")
        rels.append(rel)
        return open(writer.path_for(rel), "wb")  # noqa: SIM115 (closed by decode)

    def check() -> None:
        if time.monotonic() > deadline:
            raise StreamError("not received within artifacts.timeoutSeconds")

    length = int(resp.getheader("Content-Length") or 0)
    sized = expected_size is not None and not is_oci(uri)  # oci: sizeBytes is the layers'
    limit = expected_size if sized and expected_size is not None else policy.max_total_bytes
    got = decode(Limited(resp, length), open_sink, max_bytes=limit, max_files=policy.max_files, check=check)
    if kind == "directory":
        writer.rels = rels
    files = got.files
    if kind == "file" and writer.name:  # the file's name is this URI's basename, whatever the entry says
        files = tuple(replace(f, path=writer.name) for f in got.files)
    return Digest(got.sha256, kind, got.size_bytes, len(files), entries=files)


def _verified(
    digest: Digest,
    writer: DestWriter,
    uri: str,
    expected: str,
    dest: Path,
    start: float,
    policy: ArtifactPolicy,
    expected_size: int | None,
    trust: TrustMaterial | None,
    secret_data: Mapping[str, str] | None,
) -> Outcome:
    """The pinned digest and size, the signature, then the files moved into place (verify.py's steps)."""
    from modelversioning.artifacts import verify as v

    report = v._Report(redact_uri(uri), expected, start, v._secret_values(secret_data))
    mismatch = report.mismatch(digest, expected_size, writer)  # discards the files when it mismatches
    if mismatch is not None:
        return Outcome(CORRUPT, mismatch.message)
    if trust is not None:
        deadline = start + policy.timeout_seconds
        try:
            report.signature = v._signature(uri, digest, trust, policy, secret_data, None, deadline)
        except Exception as e:
            writer.discard()
            return Outcome(
                UNREACHABLE,
                f"the signature could not be read: {v._failure(e, report.shown, policy, deadline).message}",
            )
        refusal = v.enforced(report.signature, trust) if trust.enforce else None
        if refusal is not None:
            writer.discard()
            return Outcome(
                HIT, "the signature is refused", report.result(refusal[0], refusal[1], digest=digest)
            )
    result = v._commit(report, digest, writer, dest)
    if not result.ok:
        return Outcome(CORRUPT, result.message)
    return Outcome(HIT, "", replace(result, message=result.message + " (from the node cache)"))


def offer(cache: NodeCache, uri: str, digest: str, dest: Path, *, deadline_seconds: float = 600.0) -> Outcome:
    """Offer the verified files under ``dest`` to the agent (which hashes them itself)."""
    kind = expected_kind(uri)
    if kind is None:
        return Outcome(SKIPPED, "the URI does not say whether it is a file or a directory")
    try:
        files = files_under(dest, _stream_kind(kind))
        encoder = Encoder(_stream_kind(kind), files)
        conn = cache.connection()
    except (OSError, ValueError) as e:
        return Outcome(UNREACHABLE, str(e))
    deadline = time.monotonic() + deadline_seconds

    def body() -> object:
        for chunk in encoder.body():
            if time.monotonic() > deadline:
                raise TimeoutError("the offer took too long")
            yield chunk
        yield encoder.trailer()

    headers = {
        "Authorization": f"Bearer {cache.token}",
        "Content-Length": str(stream_length(_stream_kind(kind), files)),
        "Content-Type": "application/octet-stream",
    }
    try:
        with contextlib.suppress(OSError):  # the agent answered (a refusal) and closed early: read why
            conn.request("PUT", _path(kind, digest), body=body(), headers=headers)  # type: ignore[arg-type]
        resp = conn.getresponse()
        answer = resp.read(4096).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException, StreamError) as e:
        return Outcome(UNREACHABLE, str(e))
    finally:
        conn.close()
    return Outcome(OFFERED if resp.status in (200, 201) else REFUSED, f"{resp.status} {answer}")


def from_environment(
    url: str, token_file: str, timeout: float, log: Callable[[str], None]
) -> NodeCache | None:
    """The cache the init container was rendered with (None: the token is not there)."""
    try:
        token = Path(token_file).read_text().strip()
    except OSError as e:
        log(f"node-cache: no token ({e}); not used")
        return None
    return NodeCache(url=url, token=token, timeout=timeout, log=log) if token else None


def lookup(
    cache: NodeCache | None, uri: str, expected: str, dest: Path | None, **kwargs: Any
) -> tuple[Outcome, VerifyResult | None]:
    """:func:`read`, logged (``node-cache: hit|miss|...``); the VerifyResult to report, None: fetch from
    the origin."""
    if cache is None or dest is None:
        return Outcome(SKIPPED, "off"), None
    t0 = time.monotonic()
    got = read(cache, uri, expected, dest, **kwargs)
    took = f"{time.monotonic() - t0:.2f}s"
    cache.log(
        f"node-cache: {got.what} sha256:{expected[:12]} in {took}"
        + (f" ({got.detail})" if got.detail else "")
    )
    return got, got.result


def offer_after(
    cache: NodeCache | None,
    got: Outcome,
    result: VerifyResult,
    uri: str,
    dest: Path | None,
    content: str = "",
) -> None:
    """After a verification from the origin: offer the files if the agent said it has no such entry (a
    miss, or an entry it could not serve), logged; never fails anything. ``oci://``: only files that
    hash to the pinned ``content`` digest."""
    if cache is None or dest is None or not result.ok or got.what not in (MISS, CORRUPT):
        return
    if is_oci(uri) and (not _HEX64.match(content) or result.content_digest != content):
        cache.log(f"node-cache: not offered (files {result.content_digest} are not the pinned digest)")
        return
    t0 = time.monotonic()
    done = offer(cache, uri, result.expected, dest)
    took = f"{time.monotonic() - t0:.2f}s"
    cache.log(f"node-cache: {done.what} sha256:{result.expected[:12]} in {took} ({done.detail})")
