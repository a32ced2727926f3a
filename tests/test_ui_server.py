"""The web view's HTTP layer (cli/models/ui/server.py) over a real aiohttp server on 127.0.0.1: the Host
check (DNS rebinding), the token and its cookie, CSRF on every action, read-only mode, the security
headers, escaping of tenant-controlled strings, server-sent events on a cache change, and actions
through the same code as `kubectl models` (operations) as the viewer."""

from __future__ import annotations

import asyncio
import html
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from modelversioning.api.wire import MODELENDPOINT, MODELVERSION
from modelversioning.cli.models.errors import ClusterError
from modelversioning.cli.models.ui import forms as ui_forms
from modelversioning.cli.models.ui import server as ui_server
from modelversioning.cli.models.ui.server import UiConfig, UiServer
from ui_objects import XSS, StaticCache, approval, ep, mv


class FakeCluster:
    """What operations needs of a Cluster, recording what it is asked; `refuse` makes writes 403."""

    def __init__(self, objs: dict[str, dict[str, Any]], user: str = "alice", refuse: bool = False) -> None:
        self.objs, self.user, self.refuse = objs, user, refuse
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    def current_user(self) -> str:
        return self.user

    def current_identity(self) -> tuple[str, list[str]]:
        return self.user, ["team-a"]

    def get(self, res: Any, name: str) -> dict[str, Any]:
        if name not in self.objs:
            raise ClusterError(f'Error from server (NotFound): "{name}" not found', 404)
        return self.objs[name]

    def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            raise ClusterError(
                f'Error from server (Forbidden): modelapprovals is forbidden: User "{self.user}" cannot',
                403,
            )
        self.created.append(body)
        return body

    def merge_patch(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            raise ClusterError(f'Error from server (Forbidden): User "{self.user}" cannot patch', 403)
        self.patched.append((name, patch))
        return self.objs[name]

    def wait(self, res: Any, name: str, check: Callable[[Any], Any], timeout: float) -> Any:
        """The operator's answer: the stage asked for, or the declared weights on the route."""
        obj = dict(self.objs[name])
        patch = next((p for n, p in reversed(self.patched) if n == name), {})
        declared = {v["name"]: v["weight"] for v in (patch.get("spec") or {}).get("variants") or []}
        stage = (patch.get("spec") or {}).get("stage")
        obj["status"] = {**obj["status"], "observedGeneration": 99, **({"stage": stage} if stage else {})}
        if declared:
            obj["status"]["effectiveWeights"] = declared
        return check(obj)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


VERSION_OBJ = mv("fraud", "1.1.0", "staging")
VERSION_OBJ["status"]["servingDigest"] = "sha256:" + "b" * 64
VERSION_OBJ["metadata"]["generation"] = 3


def hostile() -> list[dict[str, Any]]:
    """Objects whose tenant-controlled strings are HTML/JS."""
    bad = mv("fraud", "1.0.0", dataset=XSS, commit=XSS, annotations={"modelversioning.io/revoked": XSS},
             history=[{"from": "staging", "to": "production", "at": "2026-12-01T00:00:00Z", "actor": XSS,
                       "reason": XSS}])  # fmt: skip
    bad["spec"]["lineage"]["author"] = XSS
    bad["spec"]["metrics"] = {XSS: 1.0}
    e = ep("fraud", "fraud", [("stable", "1.0.0", 100)])
    e["status"]["conditions"][0] |= {"status": "False", "reason": "Broken", "message": XSS}
    return [bad, e, approval("fraud", "1.0.0", "production", XSS)]


Run = Callable[[aiohttp.ClientSession, str, UiServer], Awaitable[None]]


def serve(
    test: Run, *objs: dict[str, Any], read_only: bool = False, cluster: FakeCluster | None = None
) -> None:
    """Run ``test(session, base_url, server)`` against the view on a free port of 127.0.0.1."""
    port = free_port()
    cfg = UiConfig(None, None, "ml", read_only=read_only, port=port)
    fake = cluster or FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ})
    srv = UiServer(cfg, StaticCache(*objs), lambda ns: fake)  # type: ignore[arg-type,return-value]

    async def main() -> None:
        ts = TestServer(srv.app(), host="127.0.0.1", port=port)
        await ts.start_server()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
                await test(s, f"http://127.0.0.1:{port}{cfg.root}", srv)  # every route is under the prefix
        finally:
            await ts.close()

    asyncio.run(main())


def authed(srv: UiServer, **extra: str) -> dict[str, str]:
    return {"Cookie": f"{srv.cfg.cookie}={srv.cfg.token}", **extra}


def test_the_token_opens_a_session_cookie_and_nothing_else_does():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + "/") as r:
            assert r.status == 401
            assert "URL that kubectl models ui printed" in await r.text()
        async with s.get(base + "/?token=wrong") as r:
            assert r.status == 401 and "set-cookie" not in r.headers
        async with s.get(base + f"/ns/ml/models/fraud?token={srv.cfg.token}", allow_redirects=False) as r:
            assert r.status == 303
            # the token leaves the address bar; the secret prefix stays
            assert r.headers["Location"] == srv.cfg.root + "/ns/ml/models/fraud"
            cookie = r.headers["Set-Cookie"]
            assert f"{srv.cfg.cookie}={srv.cfg.token}" in cookie
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        async with s.get(base + "/", headers={"Cookie": f"{srv.cfg.cookie}=guess"}) as r:
            assert r.status == 401
        async with s.get(base + "/", headers=authed(srv)) as r:
            assert r.status == 200
        async with s.get(base + "/events", headers={"Cookie": f"{srv.cfg.cookie}=guess"}) as r:
            assert r.status == 401

    serve(t, *hostile())


def test_the_session_cookie_is_scoped_to_the_secret_path_prefix():
    """Cookies are not scoped by port: Path=/s/<prefix>/ is what keeps the browser from sending the
    token to another server on 127.0.0.1 (it would have to be asked for a URL naming the prefix)."""

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + f"/?token={srv.cfg.token}", allow_redirects=False) as r:
            assert r.status == 303
            morsel = r.cookies[srv.cfg.cookie]
            assert morsel["path"] == f"/s/{srv.cfg.prefix}/" and len(srv.cfg.prefix) >= 20
            assert morsel["httponly"] and morsel["samesite"] == "Strict"
        url = srv.cfg.url()
        assert url.startswith(f"http://127.0.0.1:{srv.cfg.port}/s/{srv.cfg.prefix}/?token=")
        other = UiConfig(None, None, "ml", port=srv.cfg.port)
        assert other.prefix != srv.cfg.prefix and other.token != srv.cfg.token  # random per server

    serve(t)


def test_a_request_outside_the_prefix_is_404_and_touches_nothing():
    """Even with the right cookie, the right token or the right CSRF field: no page, no cookie, no
    action, no event stream."""

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        origin = f"http://127.0.0.1:{srv.cfg.port}"
        prefix = srv.cfg.prefix
        paths = ["/", "/events", "/favicon.ico", "/static/ui.js", "/ns/ml/models/fraud", "/s/",
                 f"/s/{prefix}", f"/s/{prefix[:-1]}/", f"/s/{prefix}x/", f"/s/x/s/{prefix}/",
                 f"/S/{prefix}/", f"/{prefix}/"]  # fmt: skip
        for path in paths:
            async with s.get(origin + path + f"?token={srv.cfg.token}", headers=authed(srv)) as r:
                assert r.status == 404, path
                assert "set-cookie" not in r.headers and await r.text() == "not found\n", path
        form = {"model": "fraud", "version": "1.1.0", "stage": "production", "csrf": srv.cfg.csrf}
        for path in ("/ns/ml/act/approve", "/s/wrong/ns/ml/act/approve"):
            async with s.post(origin + path, data=form, headers=authed(srv, Origin=origin)) as r:
                assert r.status == 404, path
        assert cluster.created == []
        async with s.get(base + "/", headers=authed(srv)) as r:  # the same cookie under the prefix
            assert r.status == 200

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ})
    serve(t, VERSION_OBJ, cluster=cluster)


def test_every_link_form_script_and_event_stream_is_under_the_prefix():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        root = srv.cfg.root
        pages = (
            "/",
            "/ns/ml/models/fraud",
            "/ns/ml/endpoints/fraud",
            "/ns/ml/models/fraud/diff?a=1.1.0&b=1.1.0",
            "/ns/ml/confirm/rollback?endpoint=fraud",
        )
        for path in pages:
            async with s.get(base + path, headers=authed(srv)) as r:
                assert r.status == 200, path
                body = await r.text()
            urls = re.findall(r'(?:href|src|action)="([^"#][^"]*)"', body)  # (#main: the skip link, in-page)
            assert urls and all(u.startswith(root + "/") for u in urls), (path, urls)
            assert f'data-root="{root}"' in body
        async with s.get(base + "/static/ui.js", headers=authed(srv)) as r:
            assert 'getAttribute("data-root") + "/events"' in await r.text()

    strat = {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}]}}
    serve(t, VERSION_OBJ, ep("fraud", "fraud", [("stable", "1.1.0", 100)], strategy=strat))


def test_a_foreign_host_header_is_refused_before_anything_else():
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends Host: evil.example:PORT."""

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        port = srv.cfg.port
        for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"localhost.evil:{port}"):
            async with s.get(base + f"/?token={srv.cfg.token}", headers={**authed(srv), "Host": host}) as r:
                assert r.status == 421, host
                assert "set-cookie" not in r.headers
        async with s.get(base + "/", headers={**authed(srv), "Host": f"localhost:{port}"}) as r:
            assert r.status == 200

    serve(t)


def test_security_headers_and_no_inline_script():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for path in (
            "/",
            "/ns/ml/models/fraud",
            "/ns/ml/endpoints/fraud",
            "/ns/ml/models/fraud/diff?a=1.0.0&b=1.0.0",
        ):
            async with s.get(base + path, headers=authed(srv)) as r:
                assert r.status == 200, path
                csp = r.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
                assert "frame-ancestors 'none'" in csp
                assert r.headers["Referrer-Policy"] == "same-origin"  # not no-referrer: Origin: null
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                body = await r.text()
                assert re.findall(r"<script(?![^>]*\bsrc=)", body) == [], path  # only <script src=...>
                assert " style=" not in body and " on" + "error=" not in body.lower().replace(
                    "onerror=alert", ""
                )

    serve(t, *hostile())


def test_tenant_strings_are_escaped_on_every_page():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for path in (
            "/",
            "/ns/ml/models/fraud",
            "/ns/ml/endpoints/fraud",
            "/ns/ml/models/fraud/diff?a=1.0.0&b=1.0.0",
        ):
            async with s.get(base + path, headers=authed(srv)) as r:
                body = await r.text()
                assert "<script>alert" not in body and "<img src=x" not in body, path
                assert html.escape(XSS, quote=True)[:30] in body or "&lt;script&gt;" in body, path

    serve(t, *hostile())


def test_an_action_needs_the_csrf_field_and_our_origin():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        url = base + "/ns/ml/act/approve"
        form = {"model": "fraud", "version": "1.1.0", "stage": "production", "reason": "ok"}
        async with s.post(url, data=form, headers=authed(srv)) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        async with s.post(
            url, data={**form, "csrf": srv.cfg.csrf}, headers=authed(srv, Origin="http://evil.example")
        ) as r:
            assert r.status == 403 and "cross-origin" in await r.text()
        async with s.post(
            url, data={**form, "csrf": srv.cfg.csrf}, headers=authed(srv, **{"Sec-Fetch-Site": "same-site"})
        ) as r:
            assert r.status == 403
        async with s.post(url, data={**form, "csrf": srv.cfg.csrf}) as r:  # no cookie
            assert r.status == 401
        assert cluster.created == []
        async with s.get(
            base + "/ns/ml/confirm/approve?model=fraud&version=1.1.0&stage=production", headers=authed(srv)
        ) as r:
            assert r.status == 200 and srv.cfg.csrf in await r.text()
        assert cluster.created == []  # a GET changes nothing
        origin = f"http://127.0.0.1:{srv.cfg.port}"
        async with s.post(url, data={**form, "csrf": srv.cfg.csrf}, headers=authed(srv, Origin=origin)) as r:
            assert r.status == 200, await r.text()
            assert "approved for production by alice" in await r.text()
        (body,) = cluster.created
        assert body["spec"]["approver"] == "alice" and body["spec"]["approverGroups"] == ["team-a"]
        assert body["spec"]["servingDigest"] == VERSION_OBJ["status"]["servingDigest"]

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ})
    serve(t, VERSION_OBJ, cluster=cluster)


def test_promote_goes_through_the_cli_code_as_the_viewer():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        form = {
            "model": "fraud",
            "version": "1.1.0",
            "stage": "production",
            "reason": "green",
            "csrf": srv.cfg.csrf,
        }
        async with s.post(base + "/ns/ml/act/promote", data=form, headers=authed(srv)) as r:
            assert r.status == 200, await r.text()
            assert (
                "fraud-v1.1.0 is now production" in await r.text() or "already production" in await r.text()
            )
        ((name, patch),) = cluster.patched
        assert name == "fraud-v1.1.0" and patch["spec"] == {"stage": "production"}
        ann = patch["metadata"]["annotations"]
        assert ann["modelversioning.io/requested-by"] == "bob" and ann["modelversioning.io/reason"] == "green"

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ}, user="bob")
    serve(t, VERSION_OBJ, cluster=cluster)


def test_rollback_goes_through_the_cli_code_as_the_viewer():
    rollout_ep = ep("fraud", "fraud", [("stable", "1.0.0", 0), ("canary", "1.1.0", 100)])

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        form = {"endpoint": "fraud", "reason": "bad canary", "csrf": srv.cfg.csrf}
        async with s.post(base + "/ns/ml/act/rollback", data=form, headers=authed(srv)) as r:
            text = await r.text()
            assert r.status == 200, text
            assert "rolled back fraud to stable (1.0.0)" in text and "As carol." in text
        ((name, patch),) = cluster.patched
        assert name == "fraud"
        assert {v["name"]: v["weight"] for v in patch["spec"]["variants"]} == {"stable": 100, "canary": 0}
        ann = patch["metadata"]["annotations"]
        assert (
            ann["modelversioning.io/requested-by"] == "carol"
            and ann["modelversioning.io/reason"] == "bad canary"
        )
        assert patch["metadata"]["resourceVersion"] == "1"  # guarded like the command's

    cluster = FakeCluster({"fraud": rollout_ep}, user="carol")
    serve(t, rollout_ep, cluster=cluster)


def test_a_refusal_of_the_api_server_is_shown_and_nothing_is_done():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        form = {"model": "fraud", "version": "1.1.0", "stage": "production", "csrf": srv.cfg.csrf}
        async with s.post(base + "/ns/ml/act/approve", data=form, headers=authed(srv)) as r:
            assert r.status == 403
            text = await r.text()
            assert "forbidden" in text and "not done" in text

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ}, user="mallory", refuse=True)
    serve(t, VERSION_OBJ, cluster=cluster)


def test_bad_action_input_is_refused():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        cases = [
            ("/ns/ml/act/delete-everything", {"endpoint": "fraud"}, 404),
            ("/ns/ml/act/promote", {"model": "fraud", "version": "1.1.0"}, 400),  # no stage
            ("/ns/ml/act/promote", {"model": "../../api", "version": "1", "stage": "x"}, 400),
            ("/ns/ml/act/promote", {"model": "fraud", "version": "1.1.0", "stage": "<b>"}, 400),
            ("/ns/ml/act/rollback", {"endpoint": "fraud", "reason": "x" * 1025}, 400),
            ("/ns/..%2F..%2Fapi/act/rollback", {"endpoint": "fraud"}, 400),
            ("/ns/other-team/act/rollback", {"endpoint": "fraud"}, 403),  # the view serves -n ml only
        ]
        for path, form, status in cases:
            async with s.post(base + path, data={**form, "csrf": srv.cfg.csrf}, headers=authed(srv)) as r:
                assert r.status == status, (path, form, await r.text())
        async with s.get(base + "/ns/other-team/confirm/rollback?endpoint=fraud", headers=authed(srv)) as r:
            assert r.status == 403 and "serves namespace ml" in await r.text()
        assert cluster.patched == [] and cluster.created == []

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ})
    serve(t, VERSION_OBJ, cluster=cluster)


def test_read_only_hides_and_refuses_every_action():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for path in ("/ns/ml/models/fraud", "/ns/ml/endpoints/fraud"):
            async with s.get(base + path, headers=authed(srv)) as r:
                body = await r.text()
                assert "/confirm/" not in body and "read-only" in body
        async with s.get(base + "/ns/ml/confirm/rollback?endpoint=fraud", headers=authed(srv)) as r:
            assert r.status == 403
        form = {"model": "fraud", "version": "1.1.0", "stage": "production", "csrf": srv.cfg.csrf}
        async with s.post(base + "/ns/ml/act/promote", data=form, headers=authed(srv)) as r:
            assert r.status == 403 and "read-only" in await r.text()
        assert cluster.patched == []

    cluster = FakeCluster({VERSION_OBJ["metadata"]["name"]: VERSION_OBJ})
    strat = {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}]}}
    serve(t, VERSION_OBJ, ep("fraud", "fraud", [("stable", "1.1.0", 100)], strategy=strat), read_only=True,
          cluster=cluster)  # fmt: skip


def test_actions_are_offered_when_not_read_only():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + "/ns/ml/endpoints/fraud", headers=authed(srv)) as r:
            body = await r.text()
        for action in ("rollback", "rollout-promote", "rollout-abort", "rollout-retry"):
            assert f"/ns/ml/confirm/{action}?endpoint=fraud" in body, action

    strat = {"canary": {"variant": "canary", "baseline": "stable", "steps": [{"setWeight": 10}]}}
    serve(t, VERSION_OBJ, ep("fraud", "fraud", [("stable", "1.1.0", 100)], strategy=strat))


def test_static_files_are_only_ours():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + "/static/ui.js", headers=authed(srv)) as r:
            assert r.status == 200 and r.content_type == "application/javascript"
            assert "EventSource" in await r.text()
        for bad in ("/static/server.py", "/static/..%2Fserver.py", "/static/%2e%2e%2fcache.py"):
            async with s.get(base + bad, headers=authed(srv)) as r:
                assert r.status == 404, bad

    serve(t)


def test_a_watch_event_reaches_the_event_stream_within_a_second():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + "/", headers=authed(srv)) as r:
            assert "stable 1.1.0 <b>100%</b>" in await r.text()
        async with s.get(base + "/events", headers=authed(srv)) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            assert (await r.content.readuntil(b"\n\n")).startswith(b"event: hello")
            moved = ep("fraud", "fraud", [("stable", "1.1.0", 100)], effective={"stable": 50})
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await loop.run_in_executor(
                None, srv.cache.apply_event, MODELENDPOINT, {"type": "MODIFIED", "object": moved}
            )
            line = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 1.0)
            assert line.startswith(b"event: change") and loop.time() - t0 < 1.0
        async with s.get(base + "/ns/ml/endpoints/fraud", headers=authed(srv)) as r:
            assert "50%" in await r.text()  # the page renders the cache as it is now
        async with s.get(base + "/", headers=authed(srv)) as r:
            assert "stable 1.1.0 <b>50%</b>" in await r.text()  # the fleet page too (a new revision)

    serve(t, VERSION_OBJ, ep("fraud", "fraud", [("stable", "1.1.0", 100)]))


def test_the_cache_counts_no_request_per_page_view():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for _ in range(5):
            async with s.get(base + "/", headers=authed(srv)) as r:
                assert r.status == 200
        assert srv.cache.requests == {"list": 0, "watch": 0}
        assert len(srv.render_seconds) == 5

    serve(t, VERSION_OBJ)


def test_the_render_times_kept_are_bounded(monkeypatch: pytest.MonkeyPatch):
    """A view left open on a busy cluster renders forever: only the newest samples are kept."""
    monkeypatch.setattr(ui_server, "RENDER_SAMPLES", 3)

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for _ in range(5):
            async with s.get(base + "/ns/ml/endpoints/fraud", headers=authed(srv)) as r:
                assert r.status == 200
        assert len(srv.render_seconds) == 3

    serve(t, VERSION_OBJ, ep("fraud", "fraud", [("stable", "1.1.0", 100)]))


@pytest.mark.parametrize("kind", ["DELETED", "MODIFIED"])
def test_cache_applies_watch_events(kind: str):
    cache = StaticCache(VERSION_OBJ)
    before = cache.revision
    changed = {
        **VERSION_OBJ,
        "metadata": {**VERSION_OBJ["metadata"], "resourceVersion": "7", "managedFields": [{}]},
    }
    assert cache.apply_event(MODELVERSION, {"type": kind, "object": changed}) == "7"
    snap = cache.snapshot()
    assert snap.revision == before + 1
    if kind == "DELETED":
        assert snap.versions == ()
    else:
        (only,) = snap.versions
        assert "managedFields" not in only["metadata"]
    assert cache.snapshot() is snap  # unchanged: the same snapshot
    assert (
        cache.apply_event(
            MODELVERSION, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
        )
        == "9"
    )
    assert cache.revision == before + 1


def test_run_action_maps_every_action_to_operations(monkeypatch):
    called: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        ui_forms.ops, "rollout_action", lambda c, e, k, t: called.append((k, e)) or (["ok"], True)
    )
    for kind in ("promote", "abort", "retry"):
        assert ui_forms.run_action(object(), f"rollout-{kind}", {"endpoint": "fraud"}) == "ok"  # type: ignore[arg-type]
    assert called == [("promote", "fraud"), ("abort", "fraud"), ("retry", "fraud")]
    monkeypatch.setattr(ui_forms.ops, "rollout_action", lambda c, e, k, t: (["not in this phase"], False))
    with pytest.raises(ui_forms.Refused, match="not in this phase"):
        ui_forms.run_action(object(), "rollout-abort", {"endpoint": "fraud"})  # type: ignore[arg-type]
