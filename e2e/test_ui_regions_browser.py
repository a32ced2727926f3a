"""The web view's regions page in Chromium (issue 30: "the web view gets a fleet page from the same
code" as `which --contexts`): `kubectl models ui --contexts us-east,eu-west,ap-south`, the regions being
loopback API servers (tests/fleet_fixtures.py: two answering with their endpoint, one that accepts
connections and never answers), not control planes: the page's logic is `fleet.read_all` +
`fleet_views.which_fleet` whatever serves the API, and three control planes with Flux cost minutes
(e2e/test_regions_e2e.py). Checked: each endpoint per region (version, digest, weight, rollout, Ready),
the silent region Unknown (never healthy) within its deadline, a region's hostile text shown as text,
axe-core and the keyboard as on the other pages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from browser import Browser, chromium_path
from test_ui_browser import XSS, Accessibility, axe_source, base_of, no_script_ran, page, shots, ui  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_apiserver import Request, status  # noqa: E402
from fleet_fixtures import NEW_SHA, NS, OLD_SHA, endpoint, regions, version  # noqa: E402

pytestmark = pytest.mark.timeout(300)
NEW = {"stable": ("2.3.8", 0), "canary": ("2.4.1", 100)}
OLD = {"stable": ("2.3.8", 100), "canary": ("2.4.1", 0)}


def api(endpoints: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """A region's API server: LISTs of our four kinds in the namespace; a watch is dropped (the view's
    own watch cache then waits a second and lists again)."""
    versions = [version("2.3.8"), version("2.4.1")]

    def route(req: Request) -> tuple[int | str, Any]:
        if req.query.get("watch"):
            return "drop", None
        base = f"/apis/modelversioning.io/v1alpha1/namespaces/{NS}/"
        items = {"modelendpoints": endpoints, "modelversions": versions, "models": [], "modelapprovals": []}
        kind = req.path.removeprefix(base)
        if kind not in items:
            return status(404, "NotFound", req.path)
        return 200, {"items": items[kind], "metadata": {"resourceVersion": "1"}}

    return route


def test_the_regions_page_in_chromium(tmp_path, shots, axe_source, capsys):  # type: ignore[no-untyped-def]  # noqa: F811
    if chromium_path() is None:
        pytest.fail("no chromium: run e2e/ensure-chromium.sh")
    hostile = endpoint("eu-west", OLD, phase=None)
    hostile["status"]["variants"][1]["serving"]["version"] = XSS
    answers = {"us-east": api([endpoint("us-east", NEW)]), "eu-west": api([hostile]), "ap-south": "silent"}
    a11y = Accessibility(axe_source)
    with regions(tmp_path, answers) as kc, ui(kc, NS, "--contexts", "us-east,eu-west,ap-south",
                                               "--region-timeout", "2") as url, Browser() as b:  # fmt: skip
        b.goto(url)
        b.click("nav a[href$='/regions']")
        b.wait("location.pathname.endsWith('/regions') && !!document.querySelector('tr[data-region]')", 30)

        def row(region: str) -> str:
            return str(b.js(f"document.querySelector('tr[data-region=\"{region}\"]').innerText"))

        def rows(region: str) -> list[str]:
            return list(b.js(
                f"(() => {{ const out = []; let r = document.querySelector('tr[data-region=\"{region}\"]');"
                " do { out.push(r.innerText.replace(/\\s+/g, ' ').trim()); r = r.nextElementSibling; }"
                " while (r && !r.dataset.region); return out; })()"
            ))  # fmt: skip

        us, eu = rows("us-east"), rows("eu-west")
        assert us == [f"us-east stable 2.3.8 0% 1/1 production {OLD_SHA[:12]} Succeeded Ready=True",
                      f"canary 2.4.1 100% 1/1 production {NEW_SHA[:12]}"], us  # fmt: skip
        assert eu[0] == f"eu-west stable 2.3.8 100% 1/1 production {OLD_SHA[:12]} - Ready=True", eu
        assert XSS in eu[1], eu  # a region's text, shown as text
        south = row("ap-south")
        assert "Unknown" in south and "no answer within 2s" in south and "%" not in south, south
        assert "ap-south could not be read" in b.text("#unknown")
        no_script_ran(b)
        if os.environ.get("MV_UI_SCREENSHOTS"):
            b.screenshot(shots / "regions.png")
        a11y.check(b, "regions")
        b.goto(page(base_of(url), "/"))
        a11y.check(b, "fleet (with regions)")
    a11y.assert_clean(capsys)
