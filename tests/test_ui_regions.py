"""The web view's regions page (issue 30: "the web view gets a fleet page from the same code" as
``kubectl models which --contexts``): `kubectl models ui --contexts/--all-contexts/--fleet` reads every
region with the person's kubeconfig (cli/models/fleet.py, the regions as loopback API servers of
tests/fleet_fixtures.py: answering, silent, closed), each within the region deadline, and the page shows
each endpoint per region from fleet_views.which_fleet. An unreachable region is Unknown, never healthy;
a region's text is escaped; page views share one read per few seconds."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import markupsafe
import pytest
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from fake_apiserver import Request, status
from fleet_fixtures import NEW_SHA, NS, OLD_SHA, endpoint, regions, version
from modelversioning.cli.models.app import app
from modelversioning.cli.models.context import Globals
from modelversioning.cli.models.ui import regions as ui_regions
from modelversioning.cli.models.ui import run as ui_run
from modelversioning.cli.models.ui.server import UiConfig, UiServer
from test_ui_server import authed, free_port
from ui_objects import XSS, StaticCache

NEW = {"stable": ("2.3.8", 0), "canary": ("2.4.1", 100)}
OLD = {"stable": ("2.3.8", 100), "canary": ("2.4.1", 0)}
VERSIONS = [version("2.3.8"), version("2.4.1")]


def lister(endpoints: list[dict[str, Any]], versions: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """A region's API server as the regions page reads it: LIST of ModelEndpoints and ModelVersions."""

    def route(req: Request) -> tuple[int | str, Any]:
        base = f"/apis/modelversioning.io/v1alpha1/namespaces/{NS}/"
        items = {base + "modelendpoints": endpoints, base + "modelversions": versions}.get(req.path)
        if items is None:
            return status(404, "NotFound", req.path)
        return 200, {"items": items, "metadata": {"resourceVersion": "1"}}

    return route


Page = Callable[[aiohttp.ClientSession, str, UiServer], Awaitable[None]]


def serve_regions(kubeconfig: Path, contexts: str, test: Page, timeout: float = 1.5) -> None:
    """The view as `kubectl models ui --kubeconfig K -n models --contexts C` builds it (run.build)."""
    port = free_port()
    g = Globals(str(kubeconfig), None, NS)
    targets = ui_run.region_targets(g, contexts, False, None)
    cfg, _cache, srv = ui_run.build(
        str(kubeconfig), None, NS, False, g=g, regions=targets, region_timeout=timeout
    )
    cfg.port = port
    srv.cache = StaticCache()  # the local watch cache is not what this page reads

    async def main() -> None:
        ts = TestServer(srv.app(), host="127.0.0.1", port=port)
        await ts.start_server()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
                await test(s, f"http://127.0.0.1:{port}{cfg.root}", srv)  # every route under the prefix
        finally:
            await ts.close()

    asyncio.run(main())


def rows(page: str, region: str) -> list[str]:
    """The text of the table rows of one region in the endpoint tables (its first row carries
    data-region; the next ones are its other variants, until the next region's row)."""
    out: list[str] = []
    mine = False
    for attrs, inner in re.findall(r"<tr([^>]*)>(.*?)</tr>", page, re.S):
        m = re.search(r'data-region="([^"]*)"', attrs)
        if m:
            mine = html.unescape(m.group(1)) == region
        if mine:
            out.append(" ".join(html.unescape(re.sub(r"<[^>]+>", " ", inner)).split()))
    return out


def test_each_endpoint_per_region_and_an_unreachable_region_is_unknown(tmp_path: Path) -> None:
    answers = {
        "us-east": lister([endpoint("us-east", NEW)], VERSIONS),
        "eu-west": lister([endpoint("eu-west", OLD, phase=None)], VERSIONS),
        "ap-south": "silent",
        "sa-east": "closed",
        "empty": lister([], []),
    }
    seen: dict[str, Any] = {}

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        t0 = time.monotonic()
        async with s.get(base + "/regions", headers=authed(srv)) as r:
            seen["status"], seen["page"] = r.status, await r.text()
        seen["seconds"] = time.monotonic() - t0
        async with s.get(base + "/", headers=authed(srv)) as r:
            seen["fleet"] = await r.text()
        seen["root"] = srv.cfg.root

    with regions(tmp_path, answers) as kc:
        serve_regions(kc, "us-east,eu-west,ap-south,sa-east,empty", t)
    page = seen["page"]
    assert seen["status"] == 200
    assert seen["seconds"] < 1.5 + 1.0, "a silent region held the page past its deadline"
    assert f'href="{seen["root"]}/regions"' in seen["fleet"]  # the header links the page
    us, eu = rows(page, "us-east"), rows(page, "eu-west")
    assert us == [
        f"us-east stable 2.3.8 0% 1/1 production {OLD_SHA[:12]} Succeeded Ready=True",
        f"canary 2.4.1 100% 1/1 production {NEW_SHA[:12]}",
    ], us
    assert eu == [
        f"eu-west stable 2.3.8 100% 1/1 production {OLD_SHA[:12]} - Ready=True",
        f"canary 2.4.1 0% 1/1 production {NEW_SHA[:12]}",
    ], eu
    for region in ("ap-south", "sa-east"):  # unknown, with why; no version, weight or Ready for them
        got = rows(page, region)
        assert len(got) == 1 and "Unknown" in got[0], got
        assert "%" not in got[0] and "Ready" not in got[0], got
    assert "no answer within 1.5s" in page
    empty = rows(page, "empty")
    assert len(empty) == 1 and "NotFound" in empty[0], empty
    assert "ap-south, sa-east could not be read" in page


def test_a_regions_text_is_escaped(tmp_path: Path) -> None:
    ep = endpoint("r1", NEW)
    ep["status"]["variants"][1]["name"] = XSS
    ep["status"]["variants"][1]["serving"]["version"] = XSS
    ep["status"]["region"] = XSS
    answers = {"r1": lister([ep], VERSIONS)}
    got: dict[str, str] = {}

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        async with s.get(base + "/regions", headers=authed(srv)) as r:
            got["page"] = await r.text()

    with regions(tmp_path, answers) as kc:
        serve_regions(kc, "r1", t)
    page = got["page"]
    assert "<script>" not in page and "<img" not in page
    assert page.count(str(markupsafe.escape(XSS))) >= 3, page  # the variant, its version, status.region


def test_page_views_share_one_read_of_the_regions(tmp_path: Path) -> None:
    answers = {"r1": lister([endpoint("r1", NEW)], VERSIONS)}
    got: dict[str, int] = {}

    async def t(s: aiohttp.ClientSession, base: str, srv: UiServer) -> None:
        for _ in range(5):
            async with s.get(base + "/regions", headers=authed(srv)) as r:
                assert r.status == 200
        assert srv.regions is not None
        got["reads"] = srv.regions.reads

    with regions(tmp_path, answers) as kc:
        serve_regions(kc, "r1", t)
    assert got["reads"] == 1


def test_reads_are_kept_while_fresh_then_read_again() -> None:
    calls: list[float] = []

    def read() -> list[Any]:
        calls.append(time.time())
        return []

    rr = ui_regions.RegionReads(read, fresh=0.2)
    a = rr.get()
    assert rr.get() is a and len(calls) == 1
    time.sleep(0.25)
    assert rr.get() is not a and len(calls) == 2


def test_without_regions_there_is_no_regions_page() -> None:
    port = free_port()
    cfg = UiConfig(None, None, "ml", port=port)
    srv = UiServer(cfg, StaticCache(), lambda ns: None)  # type: ignore[arg-type,return-value]
    got: dict[str, Any] = {}

    async def main() -> None:
        ts = TestServer(srv.app(), host="127.0.0.1", port=port)
        await ts.start_server()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
                base = f"http://127.0.0.1:{port}{cfg.root}"
                async with s.get(base + "/regions", headers=authed(srv)) as r:
                    got["status"] = r.status
                async with s.get(base + "/", headers=authed(srv)) as r:
                    got["fleet"] = await r.text()
        finally:
            await ts.close()

    asyncio.run(main())
    assert got["status"] == 404 and "/regions" not in got["fleet"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--contexts", "r1,nowhere"], "context nowhere is not in the kubeconfig"),
        (["--contexts", "r1", "--all-contexts"], "give one of --contexts, --all-contexts and --fleet"),
    ],
)
def test_bad_region_options_are_refused_before_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str], message: str) -> None:  # fmt: skip
    served: list[Any] = []
    monkeypatch.setattr(ui_run, "serve", lambda *a, **k: served.append((a, k)))
    with regions(tmp_path, {"r1": lister([], [])}) as kc:
        res = CliRunner().invoke(app, ["--kubeconfig", str(kc), "-n", NS, "ui", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and served == []


def test_the_ui_command_passes_the_regions_to_the_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr(ui_run, "serve", lambda *a, **k: served.append((a, k)))
    with regions(tmp_path, {"r1": lister([], []), "r2": lister([], [])}) as kc:
        res = CliRunner().invoke(app, ["--kubeconfig", str(kc), "-n", NS, "ui", "--all-contexts",
                                       "--region-timeout", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    ((_, kwargs),) = served
    assert [t.region for t in kwargs["regions"]] == ["r1", "r2"] and kwargs["region_timeout"] == 3.0
