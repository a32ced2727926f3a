"""The web view's in-cluster mode (cli/models/ui/incluster.py, server.py, incluster_main.py): the proxy's
identity headers believed only with the proxy's secret, the impersonation allowlist checked before
anything is allocated, bounded identities, pages filtered by the viewer's access reviews, actions as
the viewer (impersonation headers on the wire)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from modelversioning.api.wire import MODELENDPOINT, MODELVERSION, Resource
from modelversioning.cli.models import apiserver
from modelversioning.cli.models.ui import incluster_main
from modelversioning.cli.models.ui.incluster import AccessReviews, ProxyTrust, Untrusted, Viewer, csrf_for
from modelversioning.cli.models.ui.server import InCluster, UiConfig, UiServer
from test_ui_server import FakeCluster, free_port
from ui_objects import StaticCache, ep, mv

SECRET = b"s3cret-shared-with-the-proxy-only"
HOST = "models.example.com"
TRUST = ProxyTrust(SECRET, frozenset({"alice", "bob"}), frozenset({"team-a", "team-b"}))
RIGHTS = {"alice": {"a"}, "bob": {"b"}}  # the namespaces each may list (the fake API server's RBAC)


def headers(
    user: str | None = "alice", secret: bytes | None = SECRET, groups: str = "", **extra: str
) -> dict[str, str]:
    h = {"Host": HOST, **extra}
    if secret is not None:
        h["X-Proxy-Secret"] = secret.decode()
    if user is not None:
        h["X-Forwarded-User"] = user
    if groups:
        h["X-Forwarded-Groups"] = groups
    return h


# ---------------------------------------------------------------------------------------- header trust
def test_the_headers_are_believed_only_with_the_proxys_secret():
    for h in (
        headers(secret=None),
        headers(secret=b"wrong"),
        headers(secret=SECRET + b"x"),
        headers(secret=SECRET[:-1]),
        headers(secret=b""),
    ):
        with pytest.raises(Untrusted) as e:
            TRUST.viewer(h)
        assert e.value.status == 401 and "proxy" in e.value.why
    with pytest.raises(Untrusted) as e:
        TRUST.viewer(headers(user=None))
    assert e.value.status == 401
    assert TRUST.viewer(headers(groups="team-b, system:masters,team-a,unknown")) == Viewer(
        "alice", ("team-a", "team-b")
    )  # groups not on the list are dropped (RBAC only grants: fewer groups, never more rights)
    # other header names, as configured
    trust = ProxyTrust(SECRET, frozenset({"carol"}), secret_header="X-Auth-Key", user_header="X-Email")
    assert trust.viewer({"X-Auth-Key": SECRET.decode(), "X-Email": "carol"}) == Viewer("carol")
    with pytest.raises(Untrusted):
        trust.viewer(headers(user="carol"))  # X-Proxy-Secret is not this proxy's header


def test_a_repeated_identity_header_is_refused():
    """A client's own X-Forwarded-User ahead of the proxy's (a proxy that appends): never believed."""
    for name in ("X-Forwarded-User", "X-Forwarded-Groups", "X-Proxy-Secret"):
        h = CIMultiDict(headers(groups="team-a"))
        h.add(name, {"X-Proxy-Secret": SECRET.decode()}.get(name, "bob"))
        with pytest.raises(Untrusted) as e:
            TRUST.viewer(h)
        assert e.value.status == 401 and name in e.value.why


def test_only_listed_users_are_impersonated():
    for user in ("mallory", "system:admin", "system:serviceaccount:ops:modelversioning-operator", "Alice"):
        with pytest.raises(Untrusted) as e:
            TRUST.viewer(headers(user=user, groups="team-a"))
        assert e.value.status == 403 and "impersonation list" in e.value.why
    empty = ProxyTrust(SECRET, frozenset())
    with pytest.raises(Untrusted):
        empty.viewer(headers())  # an empty list impersonates nobody
    with pytest.raises(ValueError):
        ProxyTrust(b"short", frozenset({"alice"}))


def test_access_reviews_are_kept_and_bounded_in_identities():
    asked: list[tuple[str, str]] = []
    now = [0.0]

    def ask(v: Viewer, verb: str, res: Resource, ns: str) -> bool:
        asked.append((v.user, ns))
        return ns in RIGHTS.get(v.user, set())

    reviews = AccessReviews(ask, max_viewers=3, max_entries=2, clock=lambda: now[0])
    alice = Viewer("alice")
    assert reviews.allowed(alice, "list", MODELVERSION, "a") and not reviews.allowed(
        alice, "list", MODELVERSION, "b"
    )
    assert reviews.allowed(alice, "list", MODELVERSION, "a")  # kept
    assert reviews.requests == 2 and reviews.kept == 1
    now[0] = 31.0  # past the TTL: asked again
    assert reviews.allowed(alice, "list", MODELVERSION, "a") and reviews.requests == 3
    for i in range(100):
        reviews.allowed(Viewer(f"u{i}"), "list", MODELVERSION, "a")
    assert len(reviews) == 3  # the least recently used identities are dropped
    for i in range(10):
        reviews.allowed(Viewer("u99"), "list", MODELVERSION, f"ns{i}")
    assert max(len(a) for a in reviews._by_viewer.values()) <= 2

    def broken(*_: Any) -> bool:
        raise RuntimeError("API server down")

    assert not AccessReviews(broken).allowed(alice, "list", MODELVERSION, "a")  # fails closed


# --------------------------------------------------------------------------------------- the server
Run = Callable[[aiohttp.ClientSession, str, UiServer], Awaitable[None]]


def serve_in_cluster(
    test: Run,
    *objs: dict[str, Any],
    read_only: bool = True,
    asked: list[Any] | None = None,
    acted: list[tuple[str, Viewer]] | None = None,
    max_viewers: int = 8,
) -> None:
    port = free_port()
    cfg = UiConfig(
        None,
        None,
        None,
        read_only=read_only,
        token="t" * 32,
        prefix="",
        port=port,
        hosts=(HOST,),
        scheme="https",
    )

    def ask(v: Viewer, verb: str, res: Resource, ns: str) -> bool:
        if asked is not None:
            asked.append((v, verb, res.plural, ns))
        return ns in RIGHTS.get(v.user, set())

    version = mv("fraud", "1.1.0", "staging", ns="a")
    version["status"]["servingDigest"] = "sha256:" + "b" * 64
    fake = FakeCluster({"fraud-v1.1.0": version})

    def connect_as(ns: str, viewer: Viewer) -> Any:
        if acted is not None:
            acted.append((ns, viewer))
        fake.user = viewer.user
        return fake

    def never(ns: str | None) -> Any:
        raise AssertionError("the in-cluster view never acts with its own rights")

    reviews = AccessReviews(ask, max_viewers=max_viewers)
    srv = UiServer(cfg, StaticCache(*objs), never, InCluster(TRUST, reviews, connect_as))

    async def main() -> None:
        ts = TestServer(srv.app(), host="127.0.0.1", port=port)
        await ts.start_server()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
                await test(s, f"http://127.0.0.1:{port}", srv)
        finally:
            await ts.close()

    asyncio.run(main())


TWO_TEAMS = (
    mv("fraud", "1.0.0", ns="a"),
    ep("fraud", "fraud", [("stable", "1.0.0", 100)], ns="a"),
    mv("churn", "2.0.0", ns="b"),
    ep("churn", "churn", [("stable", "2.0.0", 100)], ns="b"),
)


def test_without_the_proxys_secret_nothing_is_read():
    asked: list[Any] = []

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for h in (headers(secret=None), headers(secret=b"not-the-secret")):
            for path in ("/", "/ns/a/models/fraud", "/events", "/static/ui.js"):
                async with s.get(base + path, headers=h) as r:
                    assert r.status == 401, path
                    assert "fraud" not in await r.text()
        async with s.get(base + "/", headers=headers(user="mallory")) as r:
            assert r.status == 403 and "impersonation list" in await r.text()
        async with s.get(base + "/", headers={**headers(), "Host": "evil.example"}) as r:
            assert r.status == 421
        assert asked == [] and len(srv.incluster.reviews) == 0  # type: ignore[union-attr]

    serve_in_cluster(t, *TWO_TEAMS, asked=asked)


def test_each_viewer_sees_only_the_namespaces_their_rbac_allows():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for user, mine, theirs, ns, other in (
            ("alice", "fraud", "churn", "a", "b"),
            ("bob", "churn", "fraud", "b", "a"),
        ):
            async with s.get(base + "/", headers=headers(user=user)) as r:
                body = await r.text()
                assert r.status == 200 and f">{mine}<" in body and theirs not in body, user
                assert f"as {user}" in body
            async with s.get(base + f"/ns/{ns}/models/{mine}", headers=headers(user=user)) as r:
                assert r.status == 200
            for path in (
                f"/ns/{other}/models/{theirs}",
                f"/ns/{other}/endpoints/{theirs}",
                f"/ns/{other}/models/{theirs}/diff?a=1&b=2",
            ):
                async with s.get(base + path, headers=headers(user=user)) as r:
                    assert r.status == 403, (user, path)
                    assert "may not list" in await r.text() and "stable" not in await r.text()
        assert srv.incluster is not None and len(srv.incluster.reviews) == 2

    serve_in_cluster(t, *TWO_TEAMS)


def test_made_up_identities_allocate_nothing():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for i in range(200):
            async with s.get(base + "/", headers=headers(user=f"made-up-{i}", groups="team-a")) as r:
                assert r.status == 403
        assert srv.incluster is not None and len(srv.incluster.reviews) == 0
        for groups in ("team-a", "team-b", "team-a,team-b", "", "x,y,z"):  # listed: bounded by max_viewers
            for user in ("alice", "bob"):
                async with s.get(base + "/", headers=headers(user=user, groups=groups)) as r:
                    assert r.status == 200
        assert len(srv.incluster.reviews) == 3

    serve_in_cluster(t, *TWO_TEAMS, max_viewers=3)


def test_read_only_is_the_default_and_actions_impersonate_the_viewer():
    acted: list[tuple[str, Viewer]] = []

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        origin = f"https://{HOST}"
        csrf = csrf_for(srv.cfg.token, Viewer("alice", ("team-a",)))
        form = {"model": "fraud", "version": "1.1.0", "stage": "production", "csrf": csrf}
        h = headers(groups="team-a", Origin=origin)
        if srv.cfg.read_only:
            async with s.post(base + "/ns/a/act/approve", data=form, headers=h) as r:
                assert r.status == 403 and "read-only" in await r.text()
            return
        # another viewer's CSRF field is not this one's; another origin is refused
        bad = {**form, "csrf": csrf_for(srv.cfg.token, Viewer("bob"))}
        async with s.post(base + "/ns/a/act/approve", data=bad, headers=h) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        async with s.post(
            base + "/ns/a/act/approve", data=form, headers={**h, "Origin": "http://" + HOST}
        ) as r:
            assert r.status == 403
        # bob may not read namespace a: refused before anything is done as him
        async with s.post(
            base + "/ns/a/act/approve",
            data={**form, "csrf": csrf_for(srv.cfg.token, Viewer("bob"))},
            headers=headers(user="bob", Origin=origin),
        ) as r:
            assert r.status == 403
        assert acted == []
        async with s.get(base + "/ns/a/confirm/approve?model=fraud&version=1.1.0", headers=h) as r:
            assert r.status == 200 and csrf in await r.text()
        async with s.post(base + "/ns/a/act/approve", data=form, headers=h) as r:
            assert r.status == 200, await r.text()
            assert "by alice" in await r.text()
        assert acted == [("a", Viewer("alice", ("team-a",)))]

    serve_in_cluster(t, *TWO_TEAMS)  # the default: read-only
    serve_in_cluster(t, *TWO_TEAMS, read_only=False, acted=acted)


# ------------------------------------------------------------------------------- on the wire, and config
def test_impersonation_headers_and_the_rotating_token_on_the_wire(tmp_path: Path):
    got: list[dict[str, list[str]]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append(
                {
                    k: self.headers.get_all(k) or []
                    for k in ("Authorization", "Impersonate-User", "Impersonate-Group")
                }
            )
            body = b'{"status": {"allowed": true}}'
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("first\n")
    try:
        creds = apiserver.Credentials(
            f"http://127.0.0.1:{srv.server_address[1]}",
            token_file=str(token),
            impersonate_user="alice",
            impersonate_groups=("team-a", "team-b"),
        )
        api = apiserver.HttpApi(creds)
        api.self_subject_review()
        token.write_text("second\n")
        api.self_subject_review()
        plain = apiserver.HttpApi(apiserver.Credentials(creds.server, "Bearer own"))
        assert plain.subject_access_review({"verb": "list"}, "bob", ["team-b"])["status"]["allowed"] is True
    finally:
        srv.shutdown()
    assert got[0] == {
        "Authorization": ["Bearer first"],
        "Impersonate-User": ["alice"],
        "Impersonate-Group": ["team-a", "team-b"],
    }
    assert got[1]["Authorization"] == ["Bearer second"]  # re-read: a projected token rotates
    assert got[2] == {"Authorization": ["Bearer own"], "Impersonate-User": [], "Impersonate-Group": []}


def test_the_in_cluster_config_is_checked(tmp_path: Path):
    good = {"hosts": [HOST], "impersonation": {"users": ["alice"], "groups": ["team-a"]}}
    cfg, _cache, server = incluster_main.build(good, SECRET, None)
    assert (
        cfg.read_only
        and cfg.root == ""
        and cfg.allowed_hosts() == {HOST}
        and cfg.origins() == {f"https://{HOST}"}
    )
    assert server.incluster is not None and server.incluster.trust.users == {"alice"}
    for bad in (
        {},
        {"hosts": []},
        {"hosts": [HOST], "scheme": "ftp"},
        {"hosts": [HOST], "impersonation": {"users": "alice"}},
    ):
        with pytest.raises(ValueError):
            incluster_main.build(bad, SECRET, None)
    with pytest.raises(ValueError):
        incluster_main.build(good, b"short", None)
    conf = tmp_path / "c.yaml"
    conf.write_text("hosts: []\n")
    (tmp_path / "s").write_bytes(SECRET)
    assert incluster_main.main(["--config", str(conf), "--proxy-secret-file", str(tmp_path / "s")]) == 2


# ------------------------------------------------------------------------------------------ live streams
async def _next_event(r: aiohttp.ClientResponse, within: float) -> bytes | None:
    try:
        return await asyncio.wait_for(r.content.readuntil(b"\n\n"), within)
    except TimeoutError:
        return None


def test_a_live_stream_tells_a_viewer_only_of_changes_they_may_list():
    """The stream used to send every watch event's global revision to every viewer: bob learned when
    (and how often) team a's objects changed. Now: a change only of what the viewer may list, counted
    per stream."""

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        loop = asyncio.get_running_loop()

        async def change(ns: str, weight: int) -> None:
            moved = ep("churn", "churn", [("stable", "2.0.0", 100)], ns=ns, effective={"stable": weight})
            await loop.run_in_executor(
                None, srv.cache.apply_event, MODELENDPOINT, {"type": "MODIFIED", "object": moved}
            )

        async with (
            s.get(base + "/events", headers=headers(user="alice")) as alice,
            s.get(base + "/events", headers=headers(user="bob")) as bob,
        ):
            for r in (alice, bob):
                assert r.status == 200 and (await _next_event(r, 1.0) or b"").startswith(b"event: hello")
            for weight in (90, 80, 70):  # team b's endpoint moves three times
                await change("b", weight)
                assert await _next_event(bob, 1.0) is not None
            assert await _next_event(alice, 0.5) is None  # alice hears nothing of it
            await change("a", 50)
            told = await _next_event(alice, 1.0)
            assert told == b"event: change\ndata: 1\n\n", told  # her first, not the cache's 4th change
            assert await _next_event(bob, 0.3) is None

    serve_in_cluster(t, *TWO_TEAMS)


def test_live_streams_are_bounded_per_viewer_and_in_all():
    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        from modelversioning.cli.models.ui import server as ui_server

        held = []
        for _ in range(ui_server.SSE_PER_VIEWER):
            r = await s.get(base + "/events", headers=headers(user="alice"))
            assert r.status == 200
            held.append(r)
        async with s.get(base + "/events", headers=headers(user="alice")) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "30"
        async with s.get(base + "/events", headers=headers(user="bob")) as r:
            assert r.status == 200  # another viewer is not refused for alice's tabs
        held.pop().close()
        for _ in range(100):  # the server sees the closed stream when it next writes or is cancelled
            async with s.get(base + "/events", headers=headers(user="alice")) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a closed stream was never given back")
        for r in held:
            r.close()

    serve_in_cluster(t, *TWO_TEAMS)


def test_pages_of_made_up_namespaces_cost_a_bounded_number_of_reviews():
    """Each namespace a viewer names in a URL is a SubjectAccessReview (kept, but a made-up name is a
    new review every time): a viewer's page views may ask PAGE_REVIEWS_BURST at once and
    PAGE_REVIEWS_PER_SECOND after, then 429, whether the namespace holds objects or not (one path, so
    neither the answer nor its timing says which)."""
    from modelversioning.cli.models.ui import incluster

    asked: list[Any] = []

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        statuses = []
        for i in range(200):
            async with s.get(base + f"/ns/made-up-{i}/models/fraud", headers=headers(user="alice")) as r:
                statuses.append(r.status)
        refused = statuses.count(429)
        assert set(statuses) == {403, 429} and refused >= 150, statuses
        assert len(asked) <= incluster.PAGE_REVIEWS_BURST + 10, len(asked)  # + the loop's seconds x 5
        async with s.get(base + "/ns/b/models/churn", headers=headers(user="alice")) as r:
            assert r.status == 429  # a namespace holding objects: the same answer, no review
        async with s.get(base + "/ns/a/models/fraud", headers=headers(user="bob")) as r:
            assert r.status == 403  # another viewer has a bucket of its own
        srv.incluster.reviews._buckets.clear()  # type: ignore[union-attr]  # (as after a few seconds)
        async with s.get(base + "/ns/a/models/fraud", headers=headers(user="alice")) as r:
            assert r.status == 200  # her own, as before
        async with s.get(base + "/", headers=headers(user="alice")) as r:
            assert r.status == 200  # the fleet page's reviews (namespaces holding objects) are not limited

    serve_in_cluster(t, *TWO_TEAMS, asked=asked)


def test_the_keep_alive_keeps_its_own_time_whatever_other_teams_change(monkeypatch: pytest.MonkeyPatch):
    """Found by a review: the keep-alive's wait restarted at every change anywhere, so a viewer got
    none while another team's objects changed (their timing, to ~50 ms), and a closed stream, noticed
    only at a write, held its slot as long as anyone's objects changed."""
    from modelversioning.cli.models.ui import server as ui_server

    monkeypatch.setattr(ui_server, "SSE_HEARTBEAT", 1.0)

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        loop = asyncio.get_running_loop()

        async def churn() -> None:  # team b's endpoint, every 0.2 s
            for w in range(20):
                moved = ep("churn", "churn", [("stable", "2.0.0", 100)], ns="b", effective={"stable": w})
                await loop.run_in_executor(
                    None, srv.cache.apply_event, MODELENDPOINT, {"type": "MODIFIED", "object": moved}
                )
                await asyncio.sleep(0.2)

        async with s.get(base + "/events", headers=headers(user="alice")) as alice:
            assert (await _next_event(alice, 1.0) or b"").startswith(b"event: hello")
            busy = asyncio.create_task(churn())
            got = []
            while not busy.done():
                line = await _next_event(alice, 0.5)
                if line is not None:
                    got.append(line)
            await busy
        assert got and all(line == b": keep-alive\n\n" for line in got), got  # ~4 s: 3-4 of them

    serve_in_cluster(t, *TWO_TEAMS)
