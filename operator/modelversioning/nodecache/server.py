"""The node agent's HTTP server (``modelversioning node-cache``): the only process that reads or writes
the node's cache directory.

* ``GET /v1/entries/<kind>/<sha256>``, ``Authorization: Bearer <projected token>``: the entry as an
  ``mvcache/1`` stream (:mod:`modelversioning.artifacts.cache_stream`), if the caller may have it
  (:func:`modelversioning.domain.node_cache.authorize`; 401/403/503 with the reason otherwise) and it
  is here (404: a miss). Authorization comes first, so a refused caller never learns what the node holds.
  The agent hashes the entry while sending it and leaves out the trailer (and drops the entry) when its
  bytes no longer hash to its name: the reader refuses the stream and fetches from the origin.
* ``PUT /v1/entries/<kind>/<sha256>`` (same token and rule): an offer. Its Content-Length is checked
  first (411 Malformed without a valid one, more than zero; 413 TooLarge over the store's largest entry).
  The agent hashes what it receives and stores it only if that is the digest and kind offered (422
  OfferMismatch otherwise); 200 if already here, 507 CacheFull if there is no room. Other namespaces'
  idle entries are evicted for it only once its bytes hashed to the digest offered (at commit), never at
  its start (:class:`~modelversioning.nodecache.store.Store`): an offer that fails or is dropped costs
  nobody else anything.
* ``GET|PUT /v1/entries/oci/<manifest sha256>``: an ``oci://`` version's files. The caller's verified
  version of that manifest names, in ``status.artifact.contentDigest`` (written by the operator only),
  the digest of the files laid out from it; the entry served or stored is the ``directory`` entry of
  that digest, and the answer says which (``X-Modelversioning-Content-Digest``). The reader does not
  take that name: it hashes what it gets against the contentDigest the operator pinned in its own
  arguments, and refuses an answer naming another. An offer must hash to it too.
* Each stored entry is charged to the offering namespace; a namespace over its share
  (``namespace_share``) gets 507 ShareExceeded, and its offers never evict another's entries to stay
  within it (:func:`modelversioning.domain.node_cache.make_room`).
* ``GET /metrics`` (Prometheus, ``modelversioning_node_cache_*``; unauthenticated, so no label names a
  namespace: how many hold entries and the largest share used only), ``GET /healthz``.

Bounds against a hostile pod on the node: at most ``max_requests`` connections are handled at once (one
more gets 503 Busy at once and is closed, without a thread), each socket times out after
``idle_seconds`` without progress, an offer has a deadline, and TokenReviews are kept briefly and rate
limited (:mod:`modelversioning.nodecache.reviews`).
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from modelversioning.api import wire as R
from modelversioning.artifacts.cache_stream import Encoder, Limited, StreamError, decode, stream_length
from modelversioning.domain.node_cache import Decision, Review, authorize, caller_namespace
from modelversioning.nodecache.kube import ApiError, ClusterApi
from modelversioning.nodecache.reviews import Reviews
from modelversioning.nodecache.store import Full, Lease, Store, entry_key

log = logging.getLogger("modelversioning.nodecache")
_PATH = re.compile(r"^/v1/entries/(file|directory|oci)/([0-9a-f]{64})$")
CONTENT_HEADER = "X-Modelversioning-Content-Digest"  # oci: the digest of the files served
MAX_FILES = 100_000
DRAIN_BYTES = 1 << 20
_LENGTH = re.compile(r"^[0-9]{1,19}$")
_BUSY_BODY = json.dumps({"reason": R.CACHE_BUSY}).encode() + b"\n"
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\n\r\n".encode()
    + _BUSY_BODY
)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r, p = self.registry, "modelversioning_node_cache_"
        self.hits = Counter(p + "hits_total", "Entries served (every byte hashed to its name)", registry=r)
        self.misses = Counter(p + "misses_total", "Authorized reads of a digest not on this node", registry=r)
        self.bytes_served = Counter(p + "served_bytes_total", "Bytes of artifact files served", registry=r)
        self.stored = Counter(
            p + "stored_total", "Offers stored (they hashed to the digest offered)", registry=r
        )
        self.evictions = Counter(p + "evictions_total", "Entries evicted to make room (LRU)", registry=r)
        self.refusals = Counter(p + "refusals_total", "Requests refused, by reason", ["reason"], registry=r)
        self.reviews = Counter(p + "token_reviews_total", "TokenReviews sent to the API server", registry=r)
        self.reviews_kept = Counter(
            p + "token_reviews_kept_total", "Tokens answered from a recent TokenReview", registry=r
        )
        self.entries = Gauge(p + "entries", "Entries on this node", registry=r)
        self.bytes = Gauge(p + "bytes", "Bytes held (entries and entries being written)", registry=r)
        # no namespace label: /metrics is unauthenticated, and which namespaces use the cache on a node
        # is nobody else's business (issue 26); the aggregate only
        self.namespaces = Gauge(p + "namespaces", "Namespaces charged for entries on this node", registry=r)
        self.namespace_bytes_max = Gauge(
            p + "namespace_bytes_max", "The most bytes any one namespace is charged for", registry=r
        )
        for reason in R.CACHE_REFUSALS:
            self.refusals.labels(reason)


class Agent:
    """The decisions and the store behind the HTTP handler (tests drive it through real HTTP)."""

    def __init__(self, store: Store, api: ClusterApi, metrics: Metrics | None = None, node: str = "") -> None:
        self.store, self.api, self.metrics, self.node = store, api, metrics or Metrics(), node
        self.reviews = Reviews(api.review)
        self._evicted_seen = 0
        self._reviews_seen = (0, 0)
        self._lock = threading.Lock()

    def decide(self, token: str, kind: str, digest: str) -> Decision:
        if not token:
            return Decision.refuse(401, R.CACHE_UNAUTHENTICATED)
        try:
            review = self.reviews.review(token)
            if review is None:
                return Decision.refuse(503, R.CACHE_BUSY)
            who = caller_namespace(review, self.node)
            versions = self.api.versions(who.namespace) if who.allowed else []
        except ApiError as e:
            log.warning("refused: the API server could not be asked: %s", e)
            review, versions = Review(False, error=str(e)), []
        return authorize(review, kind, digest, versions, self.node)

    def refused(self, reason: str) -> None:
        self.metrics.refusals.labels(reason).inc()

    def sync_gauges(self) -> None:
        with self._lock:
            evicted = self.store.evicted
            self.metrics.evictions.inc(evicted - self._evicted_seen)
            self._evicted_seen = evicted
            sent, kept = self.reviews.sent, self.reviews.cached
            self.metrics.reviews.inc(sent - self._reviews_seen[0])
            self.metrics.reviews_kept.inc(kept - self._reviews_seen[1])
            self._reviews_seen = (sent, kept)
        self.metrics.entries.set(self.store.count())
        self.metrics.bytes.set(self.store.used_bytes())
        held = {ns: size for ns, size in self.store.held_by().items() if size}
        self.metrics.namespaces.set(len(held))
        self.metrics.namespace_bytes_max.set(max(held.values(), default=0))


class Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_seconds)  # every read and write of this connection

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, sort_keys=True).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _refuse(self, status: int, reason: str, **extra: Any) -> None:
        self.server.agent.refused(reason)
        self._answer(status, {"reason": reason, **extra})
        if self.command == "PUT":  # read a little of an unread offer: closing on it would reset the answer
            try:
                self.connection.settimeout(1.0)
                self.rfile.read(min(max(self._length() or 0, 0), DRAIN_BYTES))
            except (OSError, ValueError):
                pass

    def _authorized(self) -> tuple[str, str, Decision] | None:
        m = _PATH.match(self.path)
        if m is None:
            self._answer(404, {"reason": "NoSuchPath"})
            return None
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        decision = self.server.agent.decide(token, m.group(1), m.group(2))
        if not decision.allowed:
            log.info(
                "refused %s %s from %s: %s", self.command, self.path, decision.namespace, decision.reason
            )
            self._refuse(decision.status, decision.reason)
            return None
        if m.group(1) == "oci":  # the directory entry of the files the operator laid out from it
            return "directory", decision.content, decision
        return m.group(1), m.group(2), decision

    def do_GET(self) -> None:  # noqa: N802
        agent = self.server.agent
        if self.path == "/healthz":
            self._answer(200, {"ok": True})
            return
        if self.path == "/metrics":
            agent.sync_gauges()
            data = generate_latest(agent.metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        got = self._authorized()
        if got is None:
            return
        kind, digest, decision = got
        with agent.store.reading(kind, digest) as lease:  # type: ignore[arg-type]
            if lease is None:
                agent.metrics.misses.inc()
                self._answer(404, {"reason": "Miss"})
                return
            self._serve(kind, digest, lease, decision)

    def _serve(self, kind: str, digest: str, lease: Lease, decision: Decision) -> None:
        agent = self.server.agent
        files, sent = lease.files, 0
        try:
            encoder = Encoder(kind, files)  # type: ignore[arg-type]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header(CONTENT_HEADER, digest)
            self.send_header("Content-Length", str(stream_length(kind, files)))  # type: ignore[arg-type]
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for chunk in encoder.body():
                self.wfile.write(chunk)
                sent += len(chunk)
            ok = encoder.digest == digest
        except (StreamError, OSError) as e:
            log.warning("entry %s-%s unreadable: %s", kind, digest, e)
            ok = False
        if not ok:  # no trailer: the reader refuses what it got and fetches from the origin
            log.warning("entry %s-%s does not hash to its name: dropped, not served", kind, digest)
            agent.store.drop(lease)  # the entry it read, not a fresh one of that key
            agent.refused(R.CACHE_ENTRY_CORRUPT)
            self._abort()
            return
        self.wfile.write(encoder.trailer())
        agent.metrics.hits.inc()
        agent.metrics.bytes_served.inc(sum(f.size for f in files))
        log.info("hit %s-%s for %s (%s)", kind, digest[:12], decision.namespace, decision.version)

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _length(self) -> int | None:
        """The request's Content-Length: None unless exactly one, all digits (no sign, no Transfer-
        Encoding beside it)."""
        values = self.headers.get_all("Content-Length") or []
        if len(values) != 1 or self.headers.get("Transfer-Encoding") or not _LENGTH.match(values[0].strip()):
            return None
        return int(values[0].strip())

    def do_PUT(self) -> None:  # noqa: N802
        agent = self.server.agent
        length = self._length()
        if not length:  # none, not a number, or 0: a negative reservation would undo the size limit
            self._refuse(411, R.CACHE_MALFORMED)
            return
        if length > agent.store.max_entry_bytes:
            self._refuse(413, R.CACHE_TOO_LARGE, max_bytes=agent.store.max_entry_bytes)
            return
        got = self._authorized()
        if got is None:
            return
        kind, digest, decision = got
        if agent.store.has(entry_key(kind, digest)):  # type: ignore[arg-type]
            self._answer(200, {"stored": False, "present": True})
            return
        try:
            incoming = agent.store.begin(kind, length, owner=decision.namespace)  # type: ignore[arg-type]
        except Full as e:
            log.info("offer of %s-%s by %s refused: %s", kind, digest[:12], decision.namespace, e)
            self._refuse(507, R.CACHE_SHARE_EXCEEDED if e.over_share else R.CACHE_FULL, message=str(e))
            return
        self._receive(incoming, kind, digest, length, decision)

    def _receive(self, incoming: Any, kind: str, digest: str, length: int, decision: Decision) -> None:
        agent = self.server.agent
        deadline = time.monotonic() + self.server.offer_seconds

        def check() -> None:
            if time.monotonic() > deadline:
                raise StreamError("the offer took too long")

        try:
            got = decode(
                Limited(self.rfile, length),
                incoming.open_sink,
                max_bytes=length,
                max_files=MAX_FILES,
                check=check,
            )
        except (StreamError, OSError, ValueError) as e:
            incoming.abort()
            self._refuse(400, R.CACHE_MALFORMED, message=str(e)[:200])
            return
        if got.kind != kind or got.sha256 != digest:
            incoming.abort()
            log.warning("offer from %s hashes to %s-%s, not %s-%s", decision.namespace, got.kind,
                        got.sha256, kind, digest)  # fmt: skip
            self._refuse(422, R.CACHE_OFFER_MISMATCH)
            return
        try:
            stored = incoming.commit(digest)
        except Full as e:  # others' entries went into use meanwhile: the new entry goes, not theirs
            log.info("offer of %s-%s by %s dropped: %s", kind, digest[:12], decision.namespace, e)
            self._refuse(507, R.CACHE_FULL, message=str(e))
            return
        if stored:
            agent.metrics.stored.inc()
            log.info(
                "stored %s-%s (%d bytes) offered by %s", kind, digest[:12], got.size_bytes, decision.namespace
            )
        agent.sync_gauges()
        self._answer(201 if stored else 200, {"stored": stored})


class AgentServer(ThreadingHTTPServer):
    """``max_requests`` connections at once (one more: 503 Busy, closed at once, no thread started);
    ``idle_seconds``: a connection's socket timeout; ``offer_seconds``: an offer's deadline."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        agent: Agent,
        offer_seconds: float = 600.0,
        idle_seconds: float = 30.0,
        max_requests: int = 64,
    ) -> None:
        self.agent, self.offer_seconds, self.idle_seconds = agent, offer_seconds, idle_seconds
        self.slots = threading.BoundedSemaphore(max_requests)
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.agent.refused(R.CACHE_BUSY)
            try:  # a few bytes into an empty send buffer: never blocks the accepting thread
                request.setblocking(False)
                request.send(BUSY_ANSWER)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(address: tuple[str, int], agent: Agent) -> None:
    """Until SIGTERM or SIGINT. The agent is its container's PID 1, which the kernel gives no default
    action for SIGTERM: without a handler every stop (a DaemonSet rollout, a drain) waited out the pod's
    30 s grace for the SIGKILL. Requests in flight are cut: a reader goes to the origin, an unfinished
    offer's staging file is removed at the next start."""
    server = AgentServer(address, agent)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, name="stop", daemon=True).start()  # not from its loop

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    log.info("node cache on %s:%d, %s (%d bytes at most)", *server.server_address[:2], agent.store.root,
             agent.store.max_bytes)  # fmt: skip
    try:
        server.serve_forever()
    finally:
        server.server_close()
