"""HTTP side of the reference model server: stdlib ThreadingHTTPServer + prometheus_client.

Routes (main port):
    POST /v1/predict, GET|POST /   a prediction (JSON), subject to injected faults
    /v2/...                        the Open Inference Protocol (:mod:`.oip`): health, model metadata,
                                   ready; POST /v2/models/{name}/infer, subject to injected faults
                                   (counted as handler "predict", like /v1/predict)
    GET <health path>, /healthz    200 once the model is loaded and verified, else 503 + reason
    GET /metrics                   Prometheus text format
Admin port (only with ``admin_port`` AND ``admin_token``; no Service exposes it):
    GET /faults, PUT|POST /faults  read / change errorRate, latencyMs, errorSeed at runtime; every
                                   request needs ``Authorization: Bearer <admin_token>`` (else 401,
                                   nothing read); without a token the port is not opened
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from modelversioning import __version__
from modelversioning.modelserver import oip
from modelversioning.modelserver.body import BodyError, read_body
from modelversioning.modelserver.faults import FaultInjector, Faults, token_matches
from modelversioning.modelserver.metrics import ServerMetrics
from modelversioning.modelserver.model import LoadedModel, ModelLoadError, load_model

log = logging.getLogger("modelversioning.modelserver")

MAX_BODY = 1 << 20
PREDICT_PATHS = ("/", "/v1/predict")
DEFAULT_HEALTH_PATH = "/healthz"
RELOAD_INTERVAL = 1.0  # seconds between load attempts while the model is not loaded


@dataclass(frozen=True)
class Identity:
    """Who is answering: the operator sets MODEL_NAME/VERSION/SHA256; variant is optional."""

    model: str
    version: str
    sha256: str | None = None  # pinned digest (MODEL_SHA256)
    sha256_of: str = "content"  # MODEL_SHA256_OF: "oci-manifest" for an oci:// artifact
    variant: str = ""
    hostname: str = field(default_factory=socket.gethostname)


@dataclass(frozen=True)
class ServerConfig:
    model_path: str
    identity: Identity
    host: str = "0.0.0.0"
    port: int = 8080
    health_path: str = DEFAULT_HEALTH_PATH
    faults: Faults = field(default_factory=Faults)
    admin_port: int | None = None  # None: no admin listener
    admin_token: str | None = field(default=None, repr=False)  # None: no admin listener either
    access_log: bool = False
    drain_seconds: float = 5.0  # after SIGTERM: health 503, predictions still answered, then exit
    signature: oip.Signature | None = None  # the version's inputs/outputs (OIP metadata, infer checks)


class ModelServer:
    """The server object; ``start()`` serves in background threads, ``serve_forever()`` blocks."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.identity = config.identity
        self.faults = FaultInjector(config.faults)
        self.metrics = ServerMetrics(config.identity)
        self.metrics.set_faults(config.faults)
        self.model: LoadedModel | None = None
        self.load_error: str | None = "not loaded yet"
        self.draining = False
        self._load_lock = threading.Lock()
        self._last_attempt = 0.0
        self._threads: list[threading.Thread] = []
        self.httpd = _HTTPServer((config.host, config.port), _MainHandler, self)
        self.admin: _HTTPServer | None = None
        if config.admin_port is not None and config.admin_token:
            self.admin = _HTTPServer((config.host, config.admin_port), _AdminHandler, self)
        elif config.admin_port is not None:
            log.warning(
                "admin port %d not opened: the fault port needs a token (MODEL_SERVER_ADMIN_TOKEN or "
                "MODEL_SERVER_ADMIN_TOKEN_FILE)",
                config.admin_port,
            )

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def admin_port(self) -> int | None:
        return int(self.admin.server_address[1]) if self.admin is not None else None

    def try_load(self, force: bool = False) -> bool:
        """Load the artifact unless loaded; rate-limited to one attempt per RELOAD_INTERVAL."""
        if self.model is not None:
            return True
        with self._load_lock:
            if self.model is not None:
                return True
            now = time.monotonic()
            if not force and now - self._last_attempt < RELOAD_INTERVAL:
                return False
            self._last_attempt = now
            try:
                model = load_model(
                    self.config.model_path,
                    self.identity.sha256,
                    pinned_manifest=self.identity.sha256_of == "oci-manifest",
                )
            except (ModelLoadError, OSError) as e:
                if str(e) != self.load_error:
                    log.error("model not loaded: %s", e)
                self.load_error = str(e)
                return False
            self.model = model
            self.load_error = None
            self.metrics.loaded.labels(*self.metrics.values).set(1)
            self.metrics.artifact_bytes.labels(*self.metrics.values).set(model.size_bytes)
            log.info(
                "loaded %s %s from %s: %d file(s), %d bytes, sha256 %s",
                self.identity.model,
                self.identity.version,
                model.path,
                len(model.files),
                model.size_bytes,
                model.sha256,
            )
            return True

    def set_faults(self, faults: Faults) -> None:
        self.faults.configure(faults)
        self.metrics.set_faults(faults)
        log.warning("faults now: error rate %s, latency %s ms", faults.error_rate, faults.latency_ms)

    def start(self) -> ModelServer:
        """Load the model (once, now) and serve in daemon threads; returns self."""
        self.try_load(force=True)
        for srv in (self.httpd, self.admin):
            if srv is not None:
                t = threading.Thread(target=srv.serve_forever, name=f"modelserver-{srv.server_port}")
                t.daemon = True
                t.start()
                self._threads.append(t)
        return self

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` is called (from another thread or a signal handler)."""
        self.start()
        # Join with a timeout: the signal handlers (SIGTERM: drain) run in this thread, and an
        # untimed join could keep them from running (the process then ignored SIGTERM, at random).
        while any(t.is_alive() for t in self._threads):
            for t in self._threads:
                t.join(0.2)

    def shutdown(self) -> None:
        for srv in (self.httpd, self.admin):
            if srv is not None:
                srv.shutdown()
        for srv in (self.httpd, self.admin):
            if srv is not None:
                srv.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ answers
    def describe(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "model": ident.model,
            "version": ident.version,
            "sha256": self.model.sha256 if self.model is not None else ident.sha256,
            "variant": ident.variant or None,
            "hostname": ident.hostname,
        }

    def predict(self, payload: bytes) -> dict[str, Any]:
        """Deterministic: the same model digest and input always give the same prediction."""
        assert self.model is not None
        h = hashlib.sha256(self.model.sha256.encode() + b"\0" + payload).digest()
        score = int.from_bytes(h[:8], "big") / 2**64
        return {
            **self.describe(),
            "prediction": {"score": round(score, 6), "label": "positive" if score >= 0.5 else "negative"},
            "input_sha256": hashlib.sha256(payload).hexdigest(),
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: ModelServer):
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end, so their threads do
    server_version = "modelversioning-model-server"
    # TCP_NODELAY: the headers and the body leave in two writes; with Nagle's algorithm the body waited
    # for the client's delayed ACK of the headers, 40 ms on every keep-alive answer (measured with
    # Triton's HTTP client: p50 43.9 ms, 0.6 ms without)
    disable_nagle_algorithm = True
    sys_version = ""
    server: _HTTPServer

    @property
    def app(self) -> ModelServer:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.config.access_log:
            log.info("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked, at most MAX_BODY bytes read), or None after
        answering 400/413 and closing the connection (its framing is lost)."""
        try:
            return read_body(self.rfile, self.headers, MAX_BODY)
        except BodyError as e:
            self.close_connection = True
            self._send_json(e.code, {"error": e.message})
            return None

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj, sort_keys=True).encode() + b"\n", "application/json", headers)


class _MainHandler(_Handler):
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        start = time.perf_counter()
        path = self.path.split("?", 1)[0]
        app = self.app
        health_paths = {app.config.health_path, DEFAULT_HEALTH_PATH}
        reason: str | None
        if path.startswith("/v2") and (found := self._oip(path)) is not None:
            handler, code, reason = found
        elif path in PREDICT_PATHS and (self.command in ("GET", "HEAD", "POST")):
            if path == "/v1/predict" and self.command != "POST":
                handler, code, reason = "predict", 405, "bad_request"
                self._send_json(code, {"error": "use POST /v1/predict", **app.describe()})
            else:
                handler = "predict"
                code, reason = self._predict()
        elif path in health_paths and self.command in ("GET", "HEAD"):
            handler = "health"
            if app.draining:
                code, reason = 503, "draining"
                self._send_json(503, {"status": "draining", **app.describe()})
            elif app.try_load():
                code, reason = 200, None
                self._send_json(200, {"status": "ok", **app.describe()})
            else:
                code, reason = 503, "not_loaded"
                self._send_json(503, {"status": "unavailable", "reason": app.load_error, **app.describe()})
        elif path == "/metrics" and self.command in ("GET", "HEAD"):
            handler, code, reason = "metrics", 200, None
            self._send(200, generate_latest(app.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            handler, code, reason = "other", 404, "not_found"
            self._send_json(404, {"error": f"no route for {self.command} {path}"})
        m = app.metrics
        m.requests.labels(*m.values, handler, self.command, str(code)).inc()
        if reason is not None:
            m.errors.labels(*m.values, handler, reason).inc()
        m.latency.labels(*m.values, handler).observe(time.perf_counter() - start)

    def _predict(self) -> tuple[int, str | None]:
        app = self.app
        body = self._read_body() if self.command == "POST" else b""
        if body is None:
            return 400, "bad_request"
        if not app.try_load():
            self._send_json(503, {"error": "model not loaded", "reason": app.load_error, **app.describe()})
            return 503, "not_loaded"
        fail, delay = app.faults.next()
        if delay > 0:
            time.sleep(delay)
        if fail:
            self._send_json(500, {"error": "injected failure", **app.describe()})
            return 500, "injected"
        try:
            answer = app.predict(body)
        except Exception as e:  # a reference server reports, it does not crash
            log.exception("prediction failed")
            self._send_json(500, {"error": f"internal: {e}", **app.describe()})
            return 500, "internal"
        self._send_json(200, answer)
        return 200, None

    def _oip(self, path: str) -> tuple[str, int, str | None] | None:
        """An Open Inference Protocol route answered: (handler, code, error reason); None when
        ``path`` is none of the protocol's."""
        app = self.app
        try:
            route = oip.route(path, app.identity.model, app.identity.version)
        except oip.OipError as e:
            self._send_json(e.code, e.body())
            return "other", e.code, "not_found"
        if route is None:
            return None
        kinds = {"infer": "predict", "metadata": "metadata", "server_metadata": "metadata"}
        handler = kinds.get(route.kind, "health")
        if self.command != route.method and not (self.command == "HEAD" and route.method == "GET"):
            self.close_connection = True  # a body we do not read would be taken for the next request
            self._send_json(405, {"error": f"use {route.method} {path}"})
            return handler, 405, "bad_request"
        if route.kind == "infer":
            return (handler, *self._infer())
        if route.kind == "live":
            self._send_json(200, {"live": True})
        elif route.kind == "metadata":
            self._send_json(200, oip.metadata(app.identity.model, app.identity.version, app.config.signature))
        elif route.kind == "server_metadata":
            self._send_json(200, oip.server_metadata(__version__))
        elif app.draining:
            self._send_json(503, {"ready": False, "error": "draining"})
            return handler, 503, "draining"
        elif not app.try_load():
            self._send_json(503, {"ready": False, "error": f"model not loaded: {app.load_error}"})
            return handler, 503, "not_loaded"
        else:
            self._send_json(200, {"ready": True})
        return handler, 200, None

    def _infer(self) -> tuple[int, str | None]:
        """POST /v2/models/{name}/infer: checked (400), then faults, then the deterministic answer."""
        app = self.app
        body = self._read_body()
        if body is None:
            return 400, "bad_request"
        if not app.try_load():
            self._send_json(503, {"error": f"model not loaded: {app.load_error}"})
            return 503, "not_loaded"
        assert app.model is not None
        ident = app.identity
        try:
            request = oip.parse_infer(body, app.config.signature)
            answer = oip.infer(request, app.model.sha256, ident.model, ident.version, app.config.signature)
        except oip.OipError as e:
            self._send_json(e.code, e.body())
            return e.code, "bad_request"
        fail, delay = app.faults.next()
        if delay > 0:
            time.sleep(delay)
        if fail:
            self._send_json(500, {"error": "injected failure"})
            return 500, "injected"
        # who answered, as the protocol's parameters (strings)
        answer["parameters"] = {
            "sha256": app.model.sha256,
            "hostname": ident.hostname,
            "variant": ident.variant,
        }
        self._send_json(200, answer)
        return 200, None


class _AdminHandler(_Handler):
    def _authorized(self) -> bool:
        """The bearer token, checked before anything else (a refused request's body is not read)."""
        token = self.app.config.admin_token
        if token and token_matches(token, self.headers.get("Authorization")):
            return True
        self.close_connection = True
        self._send_json(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="faults"'})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.split("?", 1)[0] == "/faults":
            self._send_json(200, self.app.faults.faults.to_json())
        else:
            self._send_json(404, {"error": "GET /faults or PUT /faults"})

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        if self.path.split("?", 1)[0] != "/faults":
            self._send_json(404, {"error": "GET /faults or PUT /faults"})
            return
        body = self._read_body()
        if body is None:
            return
        try:
            faults = Faults.from_json(json.loads(body or b"{}"), base=self.app.faults.faults)
        except (ValueError, TypeError) as e:
            self._send_json(400, {"error": str(e)})
            return
        self.app.set_faults(faults)
        self._send_json(200, faults.to_json())

    do_POST = do_PUT


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT: in-flight requests finish, then the process exits."""
    import signal

    server = ModelServer(config)

    def drain_then_stop() -> None:
        # The endpoint is taken out of the Service while the pod terminates, concurrently with the
        # signal: keep answering (health failing) for a while so no routed request is refused.
        time.sleep(config.drain_seconds)
        server.shutdown()

    def stop(signum: int, _frame: object) -> None:
        if server.draining:
            log.info("signal %d again: stopping now", signum)
            threading.Thread(target=server.shutdown, daemon=True).start()
            return
        log.info("signal %d: draining for %ss, then stopping", signum, config.drain_seconds)
        server.draining = True
        threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "model-server %s %s (variant %s) on %s:%d, health %s, faults %s%s",
        config.identity.model,
        config.identity.version,
        config.identity.variant or "-",
        config.host,
        server.port,
        config.health_path,
        config.faults.to_json(),
        f", admin port {server.admin_port}" if server.admin is not None else "",
    )
    server.serve_forever()
