"""The web view's HTTP layer (aiohttp's server, Jinja2 templates with autoescaping): a fixed set of
routes over the shared watch cache, server-sent events when it changes, and the actions of
``kubectl models`` (:mod:`..operations`) behind a confirmation.

Security model (local mode: the server holds the user's kubeconfig, so anything that can talk to it
acts as the user):

- it listens on 127.0.0.1 only;
- DNS rebinding: a request whose Host header is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused
  (421) before anything else, so a page from another name that resolves to 127.0.0.1 cannot read it;
- every route lives under a secret, random path prefix ``/s/<prefix>/`` (16 random bytes, in the
  printed URL); a request outside it is answered 404 before anything else is looked at, whatever
  cookie it carries;
- an unguessable token (32 random bytes) in the printed URL; the first request with it gets an
  HttpOnly, SameSite=Strict cookie holding it, with ``Path=/s/<prefix>/`` (and is redirected to the URL
  without it, so it is not kept in the history; no Referer leaves the view: Referrer-Policy
  same-origin); every other request without that cookie is refused (401). Cookies are not scoped by
  port: without the path, the browser would send the token to every server on 127.0.0.1; with it, only
  to a URL that names the secret prefix;
- CSRF: every action is a POST with a form field derived from the token (a page of another origin cannot
  read it), an Origin header (when the browser sends one) equal to ours, and Sec-Fetch-Site (when sent)
  same-origin; GETs change nothing;
- Content-Security-Policy without inline scripts or styles (``default-src 'none'``; the script and the
  stylesheet are this package's files), frame-ancestors 'none', no caching;
- it is never a proxy: the routes are fixed, the cluster is only read through the watch cache and
  written through :mod:`..operations` (a ModelVersion's stage, a ModelApproval, an endpoint's weights or
  rollout-action annotation), never at a path a request names;
- read-only mode hides the actions and refuses their routes (403).

In the cluster (:mod:`.incluster`, the chart's ``ui.enabled``) the same server runs behind an
authenticating proxy: no prefix, no token cookie; the viewer is the one the proxy's headers name, on a
request carrying the proxy's secret; the Host must be one of the configured hosts; pages show what the
viewer's SubjectAccessReviews allow; actions impersonate the viewer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from modelversioning.cli.models.errors import ClusterError, Refused
from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui import live, pages
from modelversioning.cli.models.ui.cache import WatchCache
from modelversioning.cli.models.ui.forms import action_fields, name_param, run_action
from modelversioning.cli.models.ui.incluster import (
    KIND_OF_PAGE,
    AccessReviews,
    ProxyTrust,
    Throttled,
    Untrusted,
    Viewer,
    csrf_for,
    visible,
)
from modelversioning.cli.models.ui.regions import RegionReads, regions_view
from modelversioning.cli.models.ui.snapshot import Snapshot

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VIEWER = web.RequestKey("viewer", Viewer)  # in-cluster: who the proxy says is asking

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # no Referer leaves the view; within it the browser keeps sending Origin with a form's POST
    # (with no-referrer, Chromium sends "Origin: null", which the CSRF check refuses)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"ui.js": "application/javascript", "ui.css": "text/css"}
SSE_HEARTBEAT = 15.0
SSE_COALESCE = 0.05  # changes this close together go out as one event
# Live streams held at once: per viewer (in-cluster: per identity; local: the one user) and in all.
# One more is refused (429) rather than let one viewer's tabs or a script hold the server.
SSE_PER_VIEWER = 8
SSE_TOTAL = 256
RENDER_SAMPLES = 10_000  # the render times kept (the newest): a view left open for days stays bounded

ACTIONS = {
    "promote": "Promote a version to a stage",
    "approve": "Approve a version for a stage",
    "rollback": "Roll the endpoint back",
    "rollout-promote": "Promote the rollout (skip the current pause)",
    "rollout-abort": "Abort the rollout (traffic back to where it started)",
    "rollout-retry": "Retry the rollout from its first step",
}


@dataclass
class UiConfig:
    kubeconfig: str | None
    context: str | None
    namespace: str | None  # None: all namespaces
    read_only: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    region_timeout: float = 10.0  # seconds each region has on the regions page (--region-timeout)
    port: int = 0  # set once bound
    prefix: str = field(default_factory=lambda: secrets.token_urlsafe(16))  # the secret path segment
    hosts: tuple[str, ...] = ()  # in-cluster: the Host headers accepted (empty: 127.0.0.1/localhost:PORT)
    scheme: str = "http"  # in-cluster: how browsers reach it (the Origin a form's POST must carry)

    @property
    def root(self) -> str:
        """Where every route lives (no trailing slash): ``/s/<prefix>`` (in-cluster, no prefix: "")."""
        return f"/s/{self.prefix}" if self.prefix else ""

    def url(self) -> str:
        """The URL to print: the prefix and the token (which the first request turns into a cookie)."""
        return f"http://127.0.0.1:{self.port}{self.root}/?token={self.token}"

    @property
    def cookie(self) -> str:
        return f"mv-ui-{self.port}"

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"csrf", hashlib.sha256).hexdigest()

    def allowed_hosts(self) -> set[str]:
        if self.hosts:
            return set(self.hosts)
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def origins(self) -> set[str]:
        return {f"{self.scheme}://{h}" for h in self.allowed_hosts()}


@dataclass
class InCluster:
    """What the in-cluster mode adds (:mod:`.incluster`): whose headers to trust, the viewers' access
    reviews, and a Cluster impersonating a viewer in a namespace (for actions)."""

    trust: ProxyTrust
    reviews: AccessReviews
    connect_as: Callable[[str, Viewer], Cluster]


def _templates(root: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelversioning.cli.models.ui", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped: names, annotations and lineage are tenants'
        undefined=jinja2.ChainableUndefined,  # an absent optional field renders as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["root"] = root  # every link, form, script and stylesheet starts with it
    env.globals["pct"] = lambda v: f"{int(v)}%" if v is not None else "-"
    env.filters["q"] = lambda d: urlencode({k: v for k, v in d.items() if v is not None})
    env.filters["seg"] = lambda v: quote(str(v), safe="")  # one URL path segment
    return env


class UiServer:
    """The aiohttp application around a :class:`WatchCache` (its threads fill it; this reads it)."""

    def __init__(
        self,
        cfg: UiConfig,
        cache: WatchCache,
        connect: Callable[[str | None], Cluster],
        incluster: InCluster | None = None,
        regions: RegionReads | None = None,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.connect = connect  # a Cluster for an action in a namespace (the viewer's credentials)
        self.incluster = incluster  # None: local mode (token cookie, the user's kubeconfig)
        self.regions = regions  # the regions page's reads (kubectl models ui --contexts ...), else None
        self.env = _templates(cfg.root)
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # server time per page, the newest RENDER_SAMPLES (the benchmark prints them)
        self.render_seconds: deque[float] = deque(maxlen=RENDER_SAMPLES)
        self._fleet: tuple[int, str] | None = None  # (revision, HTML)
        self._streams: dict[str, int] = {}  # live streams held, per viewer

    # ---- app ------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        r = self.cfg.root  # every route under the secret prefix (the guard 404s anything else first)
        app.router.add_get(r + "/", self.fleet)
        app.router.add_get(r + "/static/{file}", self.static)
        app.router.add_get(r + "/favicon.ico", self.favicon)
        app.router.add_get(r + "/events", self.events)
        if self.regions is not None:
            app.router.add_get(r + "/regions", self.regions_page)
        app.router.add_get(r + "/ns/{ns}/models/{model}", self.model)
        app.router.add_get(r + "/ns/{ns}/models/{model}/diff", self.diff)
        app.router.add_get(r + "/ns/{ns}/endpoints/{name}", self.endpoint)
        app.router.add_get(r + "/ns/{ns}/confirm/{action}", self.confirm)
        app.router.add_post(r + "/ns/{ns}/act/{action}", self.act)
        app.on_startup.append(self._started)
        return app

    async def _started(self, _app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self.cache.on_change = self._wake_threadsafe

    def _wake_threadsafe(self, _rev: int) -> None:
        loop, ev = self._loop, self._changed
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    # ---- the guard: Host, token, headers ----------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await self._checked(request, handler)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        cfg = self.cfg
        if request.headers.get("Host", "") not in cfg.allowed_hosts():
            return web.Response(status=421, text="misdirected request: wrong Host header\n")
        if not request.path.startswith(cfg.root + "/"):
            # outside the secret prefix: nothing is read (no cookie, no token, no form), nothing rendered
            return web.Response(status=404, text="not found\n")
        if self.incluster is not None:
            try:  # the proxy's secret first: without it no other header is read
                request[VIEWER] = self.incluster.trust.viewer(request.headers)
            except Untrusted as e:
                return self._denied(e.why, e.status)
            return await self._handled(request, handler)
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), cfg.token.encode()):
                return self._denied("that token is not this server's")
            resp = web.Response(
                status=303, headers={"Location": str(request.rel_url.without_query_params("token"))}
            )
            resp.set_cookie(cfg.cookie, cfg.token, httponly=True, samesite="Strict", path=cfg.root + "/")
            return resp
        cookie = request.cookies.get(cfg.cookie, "")
        if not hmac.compare_digest(cookie.encode(), cfg.token.encode()):
            return self._denied("open the URL that kubectl models ui printed (it carries the token)")
        return await self._handled(request, handler)

    async def _handled(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET":
            refused = await self._csrf(request)
            if refused is not None:
                return refused
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status >= 400:
                return self._page("error.html", {"status": e.status, "message": e.reason}, e.status)
            raise

    async def _csrf(self, request: web.Request) -> web.Response | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.cfg.origins():
            return self._denied(f"cross-origin request from {origin}", 403)
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return self._denied("cross-site request", 403)
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")).encode(), self._csrf_of(request).encode()):
            return self._denied("missing or wrong CSRF token: reload the page", 403)
        return None

    def _denied(self, why: str, status: int = 401) -> web.Response:
        return self._page("error.html", {"status": status, "message": why}, status)

    def _csrf_of(self, request: web.Request | None) -> str:
        viewer = request.get(VIEWER) if request is not None else None
        return csrf_for(self.cfg.token, viewer) if isinstance(viewer, Viewer) else self.cfg.csrf

    async def _snap(self, request: web.Request, ns: str | None = None, page: str | None = None) -> Snapshot:
        """The cache as this request may see it. In-cluster: only what the viewer's access reviews
        allow, and a page of a namespace where they may not list its kind is 403."""
        snap = self.cache.snapshot()
        viewer = request.get(VIEWER)
        if self.incluster is None or not isinstance(viewer, Viewer):
            return snap
        reviews, loop = self.incluster.reviews, asyncio.get_running_loop()
        if ns is not None and page is not None:
            res = KIND_OF_PAGE[page]
            try:  # rate limited per viewer: each namespace named in a URL is a review of the API server
                ask = partial(reviews.allowed, viewer, "list", res, ns, limited=True)
                ok = await loop.run_in_executor(None, ask)
            except Throttled as e:
                raise web.HTTPTooManyRequests(reason=str(e), headers={"Retry-After": "5"}) from None
            if not ok:
                raise web.HTTPForbidden(reason=f"{viewer.user} may not list {res.plural} in {ns}")
        return await loop.run_in_executor(None, visible, snap, viewer, reviews)

    # ---- rendering ------------------------------------------------------------------------------
    def _page(
        self, template: str, data: Mapping[str, Any], status: int = 200, request: web.Request | None = None
    ) -> web.Response:
        viewer = request.get(VIEWER) if request is not None else None
        scope = self.cfg.namespace or "all namespaces"
        if isinstance(viewer, Viewer):
            scope = f"as {viewer.user}: the namespaces you may read"
        ctx = {
            "data": data,
            "read_only": self.cfg.read_only,
            "csrf": self._csrf_of(request),
            "scope": scope,
            "actions": ACTIONS,
            "live": template not in ("confirm.html", "result.html", "error.html", "regions.html"),
            "regions": self.regions is not None,
            "region_timeout": self.cfg.region_timeout,
        }
        html = self.env.get_template(template).render(**ctx)
        return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)

    def _timed(
        self, template: str, build: Callable[[], Mapping[str, Any]], request: web.Request | None = None
    ) -> web.Response:
        t0 = time.perf_counter()
        resp = self._page(template, build(), request=request)
        self.render_seconds.append(time.perf_counter() - t0)
        return resp

    # ---- pages ----------------------------------------------------------------------------------
    async def fleet(self, request: web.Request) -> web.StreamResponse:
        """Rendered once per cache revision (it shows nothing that depends on the clock): every
        browser that refetches it on the same change event gets the same bytes."""
        if self.incluster is not None:  # per viewer: not one page for all
            seen = await self._snap(request)
            return self._timed("fleet.html", lambda: pages.fleet_page(seen, datetime.now(UTC)), request)
        snap = self.cache.snapshot()
        cached = self._fleet
        if cached is None or cached[0] != snap.revision:
            resp = self._timed("fleet.html", lambda: pages.fleet_page(snap, datetime.now(UTC)))
            assert resp.text is not None
            self._fleet = cached = (snap.revision, resp.text)
        else:
            self.render_seconds.append(0.0)
        return web.Response(text=cached[1], content_type="text/html", charset="utf-8")

    async def model(self, request: web.Request) -> web.StreamResponse:
        ns, model = name_param(request, "ns"), name_param(request, "model")
        snap = await self._snap(request, ns, "models")
        return self._timed(
            "model.html", lambda: pages.model_page(snap, ns, model, datetime.now(UTC)), request
        )

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        ns, name = name_param(request, "ns"), name_param(request, "name")
        at = request.query.get("at") or None
        snap = await self._snap(request, ns, "endpoints")
        return self._timed(
            "endpoint.html", lambda: pages.endpoint_page(snap, ns, name, at, time.time()), request
        )

    async def diff(self, request: web.Request) -> web.StreamResponse:
        ns, model = name_param(request, "ns"), name_param(request, "model")
        a, b = request.query.get("a", ""), request.query.get("b", "")
        snap = await self._snap(request, ns, "models")
        return self._timed("diff.html", lambda: pages.diff_page(snap, ns, model, a[:253], b[:253]), request)

    async def regions_page(self, request: web.Request) -> web.StreamResponse:
        """Each endpoint per region (``which --contexts``'s view); the regions are read off the event
        loop, each within its deadline, and at most once per :data:`.regions.FRESH_SECONDS`. Not live:
        the watch cache is this cluster's; the page says when it read and links a new read."""
        assert self.regions is not None
        loop = asyncio.get_running_loop()
        read_at, reads = await loop.run_in_executor(None, self.regions.get)
        return self._timed("regions.html", lambda: regions_view(reads, read_at), request)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("modelversioning.cli.models.ui").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name])

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    # ---- live -----------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        """text/event-stream: `change` whenever a watch event arrives that concerns the viewer (in-cluster:
        of a kind they may list in its namespace; the data is a count of this stream's changes, never
        the cache's revision, which counts every namespace's). At most SSE_PER_VIEWER streams per
        viewer and SSE_TOTAL in all."""
        viewer = request.get(VIEWER)
        who = viewer.key if isinstance(viewer, Viewer) else ""
        if self._streams.get(who, 0) >= SSE_PER_VIEWER or sum(self._streams.values()) >= SSE_TOTAL:
            return web.Response(
                status=429, headers={"Retry-After": "30"}, text="too many live pages open; close some\n"
            )
        self._streams[who] = self._streams.get(who, 0) + 1
        try:
            assert self._changed is not None
            reviews = self.incluster.reviews if self.incluster is not None else None
            seen = viewer if isinstance(viewer, Viewer) else None
            changed, beat = self._changed, (SSE_HEARTBEAT, SSE_COALESCE)
            return await live.stream(request, self.cache, changed, seen, reviews, *beat)
        finally:
            self._streams[who] -= 1
            if not self._streams[who]:
                del self._streams[who]

    # ---- actions --------------------------------------------------------------------------------
    async def confirm(self, request: web.Request) -> web.StreamResponse:
        ns, action = name_param(request, "ns"), request.match_info["action"]
        if self.cfg.read_only:
            raise web.HTTPForbidden(reason="read-only: actions are off (kubectl models ui --read-only)")
        if action not in ACTIONS:
            raise web.HTTPNotFound(reason=f"no action {action}")
        self._in_scope(ns)
        await self._snap(request, ns, "models")  # in-cluster: a namespace the viewer cannot read is 403
        fields = action_fields(request.query, action, confirmed=False)
        return self._page("confirm.html", {"ns": ns, "action": action, "fields": fields}, request=request)

    async def act(self, request: web.Request) -> web.StreamResponse:
        ns, action = name_param(request, "ns"), request.match_info["action"]
        if self.cfg.read_only:
            raise web.HTTPForbidden(reason="read-only: actions are off (kubectl models ui --read-only)")
        if action not in ACTIONS:
            raise web.HTTPNotFound(reason=f"no action {action}")
        self._in_scope(ns)
        await self._snap(request, ns, "models")
        fields = action_fields(await request.post(), action, confirmed=True)
        loop = asyncio.get_running_loop()
        viewer = request.get(VIEWER)
        ok, message, actor = await loop.run_in_executor(None, self._perform, ns, action, fields, viewer)
        data = {"ns": ns, "action": action, "fields": fields, "ok": ok, "message": message, "actor": actor}
        status = 200 if ok else 403 if "Forbidden" in message else 409
        return self._page("result.html", data, status, request=request)

    def _in_scope(self, ns: str) -> None:
        """A view started with -n acts only there (as it shows only there)."""
        if self.cfg.namespace is not None and ns != self.cfg.namespace:
            raise web.HTTPForbidden(reason=f"this view serves namespace {self.cfg.namespace}, not {ns}")

    def _perform(
        self, ns: str, action: str, f: Mapping[str, str], viewer: Viewer | None = None
    ) -> tuple[bool, str, str]:
        """Run the action as the viewer (a Cluster of their kubeconfig in ``ns``; in-cluster, one that
        impersonates them): (applied, what happened or why not, who the API server says acted)."""
        actor = "?"
        try:
            if self.incluster is not None:
                if viewer is None:  # the guard sets it on every in-cluster request
                    raise Refused("no viewer")
                cluster = self.incluster.connect_as(ns, viewer)
            else:
                cluster = self.connect(ns)
            actor = cluster.current_user()
            return True, run_action(cluster, action, f), actor
        except Refused as e:
            return False, e.message, actor
        except ClusterError as e:
            return False, e.message, actor
