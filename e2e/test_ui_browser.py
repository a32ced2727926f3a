"""`kubectl models ui` in a real browser (Debian's Chromium, headless, over the DevTools protocol:
e2e/browser.py) against the real control plane with the operator running (kwok runs the pods).

The view runs as a subprocess (`python -m modelversioning.cli.kubectl_models ... ui`), the way a user
starts it, and the browser opens the URL it prints. Checked in the browser:

- every page (fleet, model, endpoint, diff) renders the real objects; screenshots of each go to the
  directory printed (MV_UI_SCREENSHOTS, e.g. docs/ui to regenerate the README's);
- hostile strings (a lineage author, a hyperparameter, a revocation reason full of HTML and script)
  show as text and never run;
- a live update: the endpoint page shows the canary's new effective weight, without a reload, soon
  after the operator writes it (the delay is printed);
- actions behind their confirmation, as the viewer (the API server's user is recorded as the actor):
  rollout promote, promote, approve, rollback; read-only mode offers none and refuses them;
- the session cookie is held for the view's secret path prefix only: another server on 127.0.0.1
  never receives it, and the view answers 404 outside the prefix;
- a viewer whose RBAC allows only reading sees the pages, and their promotion is refused by the API
  server (shown on the page; nothing changes); the same viewer asking for all namespaces is told
  the view cannot watch them;
- accessibility: axe-core (e2e/ensure-axe.sh, from npm) runs in each page and no serious or critical
  violation is allowed (all are printed); every link, button and field of each page is reached by Tab,
  each shows where the focus is, and the confirmation's button is pressed with Enter.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from browser import Browser, chromium_path
from helpers import GROUP, Objects, cond_is, make_artifact, model_endpoint, model_version, wait_for

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    """A missing Chromium fails these tests, never skips them (`./dev test` installs it first)."""
    if chromium_path() is None:
        pytest.fail("no chromium: run e2e/ensure-chromium.sh")


E2E = Path(__file__).resolve().parent
OPERATOR_SRC = E2E.parent / "operator"
AXE_FAILS = ("serious", "critical")  # axe-core's impacts that fail the test (minor, moderate: printed)
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
STEPS = [{"setWeight": 30}, {"pause": {}}]


@pytest.fixture
def objs(kube, namespace, operator):  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> Path:
    out = Path(os.environ.get("MV_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\nscreenshots of the web view: {out.resolve()}")
    return out


@contextmanager
def ui(kubeconfig: Path, namespace: str, *extra: str) -> Iterator[str]:
    """`kubectl models ui` as a subprocess; yields the URL it prints (its secret prefix and token)."""
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_SRC)}
    env.pop("KUBECONFIG", None)
    cmd = [sys.executable, "-m", "modelversioning.cli.kubectl_models", "--kubeconfig", str(kubeconfig),
           "-n", namespace, "ui", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{20,}/\?token=\S+", line)
        if not m:
            proc.kill()
        err = proc.stderr.read() if not m and proc.stderr else ""
        assert m, f"no URL printed: {line!r} {err}"
        yield m.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            sys.stderr.write(f"---- kubectl models ui stderr ----\n{proc.stderr.read()[-4000:]}\n")


def base_of(url: str) -> str:
    return url.split("/?token=")[0]


def page(base: str, path: str) -> str:
    """The URL of one of the view's pages (``path``: from its root, e.g. ``/ns/a/models/m``)."""
    return base + path


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js, pinned and cached by e2e/ensure-axe.sh (a missing one fails, never skips)."""
    r = subprocess.run(["bash", str(E2E / "ensure-axe.sh")], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"no axe-core: e2e/ensure-axe.sh: {r.stderr[-2000:]}")
    return Path(r.stdout.strip().splitlines()[-1]).read_text()


class Accessibility:
    """axe-core and a Tab walk on each page; the findings are kept and printed, then asserted."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pages: dict[str, list[dict[str, Any]]] = {}
        self.other: dict[str, dict[str, Any]] = {}
        self.keyboard: dict[str, list[str]] = {}
        self.tabbed: dict[str, int] = {}

    def check(self, b: Browser, name: str, keyboard: bool = True) -> None:
        found = b.axe(self.source)
        self.pages[name] = list(found["violations"])
        self.other[name] = found
        if keyboard:
            self.keyboard[name], self.tabbed[name] = keyboard_problems(b)

    def report(self) -> str:
        lines = []
        for name, vs in self.pages.items():
            bad = [v for v in vs if v["impact"] in AXE_FAILS]
            more = self.other[name]
            lines.append(f"  {name}: {len(bad)} serious/critical, {len(vs) - len(bad)} other violations; "
                         f"{more['passes']} rules pass; to review by hand: {more['incomplete'] or 'none'}; "
                         f"Tab reached {self.tabbed.get(name, '-')} elements"
                         + "".join(f"\n    {v['impact']} {v['id']} ({v['count']}x): {v['help']}"
                                   + "".join(f"\n      {n}" for n in v["nodes"]) for v in vs))  # fmt: skip
            lines += [f"    keyboard: {p}" for p in self.keyboard.get(name, [])]
        return "\n".join(lines)

    def assert_clean(self, capsys: pytest.CaptureFixture[str]) -> None:
        with capsys.disabled():
            print(f"\naxe-core and keyboard, per page:\n{self.report()}")
        bad = {n: [v["id"] for v in vs if v["impact"] in AXE_FAILS] for n, vs in self.pages.items()}
        assert not any(bad.values()), f"serious or critical accessibility violations: {bad}"
        assert not any(self.keyboard.values()), f"keyboard problems: {self.keyboard}"


def keyboard_problems(b: Browser, attempts: int = 3) -> tuple[list[str], int]:
    """Tab from the top: every link, button and field is reached, each with a visible focus (what is
    wrong; how many got the focus). A live update that replaces the focused element mid-walk sends the
    focus to the page and ends that walk early (seen once in a loaded CI run: the fleet page's last two
    links "not reached"), so an incomplete walk is tried again, up to ``attempts`` walks: an element
    that cannot take the focus fails every one of them."""
    for _ in range(attempts):
        want = b.focusables()
        seen = b.tab_through(limit=len(want) + 5)
        reached = {f["key"] for f in seen}
        missing = [f"not reached by Tab: {w['what']}" for w in want if w["key"] not in reached]
        if not missing:
            break
    problems = missing + [f"focus not visible on {f['what']}" for f in seen if not f["visible"]]
    if not want:
        problems.append("nothing to focus on the page")
    return problems, len(seen)


def press_tab_until(b: Browser, text: str, limit: int = 60) -> None:
    """Tab until the focused element's text is ``text`` (as a keyboard user reaches a button)."""
    b.focus_top()
    for _ in range(limit):
        b.press("Tab")
        f = b.focused()
        if f and f["text"] == text:
            return
    raise AssertionError(f"no {text!r} reached by Tab")


def the_cookie_stays_under_the_prefix(b: Browser, base: str) -> None:
    """After the token is traded for the cookie: the browser holds it for the secret prefix only, sends
    it to no other server on 127.0.0.1 (cookies ignore ports; the path does not), and the view itself
    answers 404 outside the prefix."""
    (cookie,) = b.page("Network.getCookies", {"urls": [base + "/"]})["cookies"]
    assert cookie["path"] == urlsplit(base).path + "/" and urlsplit(base).path.startswith("/s/")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    seen: list[str | None] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            seen.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"another local server")

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        b.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        b.goto(f"http://127.0.0.1:{other.server_address[1]}/s/")
    finally:
        other.shutdown()
    assert len(seen) >= 2 and all(c is None for c in seen), seen  # (the favicon asked for too)
    port_root = base.rsplit("/s/", 1)[0]
    b.goto(port_root + "/")
    assert b.js("document.body.innerText").strip() == "not found"


def register(objs: Objects, root: Path, version: str, stage: str, **lineage: Any) -> None:
    uri, sha = make_artifact(root, f"{objs.ns}-fraud", version)
    mv = model_version("fraud", version, uri, sha, stage=stage)
    mv["spec"]["lineage"].update(lineage)
    mv["spec"]["lineage"]["codeCommit"] = f"{version.replace('.', '')}c0ffee"
    mv["spec"]["metrics"] = {"auc": 0.9 + int(version.split(".")[1]) / 100, "latency_p99_ms": 12.0}
    objs.create(mv)


def no_script_ran(b: Browser) -> None:
    assert b.js("window.__xss === undefined"), "a tenant's string ran as script"
    assert b.dialogs() == []


def on_page(b: Browser, path_part: str) -> None:
    """Until the browser has loaded a page whose path contains ``path_part`` (after a click)."""
    b.wait(f"location.pathname.includes({path_part!r}) && document.readyState === 'complete'", 30)


def effective_cell(variant: str) -> str:
    return f"(document.querySelector('tr[data-variant={variant}] .effective') || {{}}).innerText"


def test_the_web_view_in_chromium(cluster, objs, artifact_root, shots, axe_source, capsys):  # type: ignore[no-untyped-def]
    ns = objs.ns
    a11y = Accessibility(axe_source)
    register(objs, artifact_root, "1.0.0", "production")
    register(objs, artifact_root, "1.1.0", "production")
    register(objs, artifact_root, "1.2.0", "candidate", author=XSS, hyperparameters={"note": XSS})
    register(objs, artifact_root, "1.3.0", "candidate")
    objs.patch_mv("fraud-v1.2.0", {"metadata": {"annotations": {f"{GROUP}/revoked": XSS}}})
    strategy = {"canary": {"variant": "canary", "baseline": "stable", "steps": STEPS}}
    variants = [{"name": "stable", "version": "1.0.0", "weight": 100},
                {"name": "canary", "version": "1.1.0", "weight": 0}]  # fmt: skip
    objs.create(model_endpoint("fraud", "fraud", variants, strategy=strategy))
    wait_for(lambda: cond_is(objs.mep("fraud"), "Ready", "True"), 120, "endpoint Ready")
    wait_for(lambda: (objs.mv("fraud-v1.3.0").get("status") or {}).get("servingDigest"), 60, "servingDigest")

    with ui(cluster.kubeconfig, ns) as url, Browser() as b:
        base = base_of(url)
        b.goto(url)  # the token becomes a cookie; the address bar loses it
        assert "token=" not in b.js("location.href")
        b.wait("!!document.getElementById('live').innerText.startsWith('live')", 10)
        main = b.text()
        assert "fraud" in main and "stable 1.0.0 100%" in main
        assert "revoked" in main and XSS in main  # the attention list: the reason, as text
        no_script_ran(b)
        b.screenshot(shots / "fleet.png")
        a11y.check(b, "fleet")

        # ---- model and diff: hostile lineage shown as text -------------------------------------
        b.goto(page(base, f"/ns/{ns}/models/fraud"))
        main = b.text()
        assert XSS in main and "1.3.0" in main and "Lineage" in main
        assert b.js("document.querySelectorAll('svg.graph g.node').length") >= 5
        no_script_ran(b)
        b.screenshot(shots / "model.png")
        a11y.check(b, "model")
        b.goto(page(base, f"/ns/{ns}/models/fraud/diff?a=1.1.0&b=1.2.0"))
        assert XSS in b.text() and "auc" in b.text()
        no_script_ran(b)
        b.screenshot(shots / "diff.png")
        a11y.check(b, "diff")

        # ---- live: the operator moves the canary to 30%; the page follows without a reload ---------
        b.goto(f"{base}/ns/{ns}/endpoints/fraud")
        b.wait(f"{effective_cell('stable')} === '100%'", 10)
        b.js("window.__same_page = true")
        press_tab_until(b, "Roll back…")  # a keyboard user's focus, which the live update must keep
        seen_api: list[float] = []

        def watch_api() -> None:
            while not seen_api:
                eff = (objs.mep("fraud").get("status") or {}).get("effectiveWeights") or {}
                if eff.get("canary") == 30:
                    seen_api.append(time.monotonic())
                time.sleep(0.02)

        poller = threading.Thread(target=watch_api, daemon=True)
        poller.start()
        go = [
            {"name": "stable", "version": "1.0.0", "weight": 0},
            {"name": "canary", "version": "1.1.0", "weight": 100},
        ]
        objs.patch_mep("fraud", {"spec": {"variants": go}})
        b.wait(f"{effective_cell('canary')} === '30%'", 60, interval=0.02)
        seen_page = time.monotonic()
        poller.join(10)
        assert b.js("window.__same_page === true"), "the page was reloaded"
        assert (b.focused() or {}).get("text") == "Roll back…", "the live update lost the keyboard focus"
        delay = seen_page - seen_api[0]
        with capsys.disabled():
            print(f"\noperator wrote canary 30% -> the page showed it: {delay * 1000:.0f} ms (no reload)")
        assert delay < 1.5
        b.wait("!!document.querySelector('main').innerText.includes('paused until promoted')", 60)
        b.screenshot(shots / "endpoint.png")
        a11y.check(b, "endpoint (rollout paused)")

        # ---- actions, each behind its confirmation, as the viewer --------------------------------
        # by keyboard: Tab to the link, Enter; Tab to the confirmation's button, Enter
        press_tab_until(b, "Promote rollout…")
        b.press("Enter")
        on_page(b, "/confirm/rollout-promote")
        b.screenshot(shots / "confirm.png")
        a11y.check(b, "confirm")
        press_tab_until(b, "Confirm")
        b.press("Enter")
        b.wait("!!document.getElementById('result')", 60)
        a11y.check(b, "result")
        assert "done" in b.text("h1"), b.text()
        last = objs.mep("fraud")["status"]["rollout"]["lastAction"]
        assert last["kind"] == "promote" and last["by"] == "admin"
        wait_for(lambda: (objs.mep("fraud")["status"].get("effectiveWeights") or {}).get("canary") == 100, 60,
                 "the rollout finished")  # fmt: skip

        b.goto(f"{base}/ns/{ns}/models/fraud")
        b.click("tr#v-1\\.3\\.0 a[href*='/confirm/promote']")
        on_page(b, "/confirm/promote")
        b.fill("input[name=stage]", "staging")
        b.fill("input[name=reason]", "from the web view")
        b.click("button[type=submit]")
        b.wait("!!document.getElementById('result')", 90)
        assert "fraud-v1.3.0 is now staging" in b.text(), b.text()
        hist = objs.mv("fraud-v1.3.0")["status"]["history"][-1]
        assert (hist["to"], hist["actor"], hist["reason"]) == ("staging", "admin", "from the web view")

        b.goto(f"{base}/ns/{ns}/models/fraud")
        b.click("tr#v-1\\.3\\.0 a[href*='/confirm/approve']")
        on_page(b, "/confirm/approve")
        b.fill("input[name=stage]", "production")
        b.fill("input[name=reason]", XSS)
        b.click("button[type=submit]")
        b.wait("!!document.getElementById('result')", 60)
        assert "approved for production by admin" in b.text(), b.text()
        co = client.CustomObjectsApi(objs.api)
        approvals = co.list_namespaced_custom_object(GROUP, "v1alpha1", ns, "modelapprovals")["items"]
        assert [(a["spec"]["version"], a["spec"]["approver"], a["spec"]["comment"]) for a in approvals] == [
            ("1.3.0", "admin", XSS)
        ]
        b.goto(f"{base}/ns/{ns}/models/fraud")
        assert f"production: admin ({XSS})" in b.text()
        no_script_ran(b)

        b.goto(f"{base}/ns/{ns}/endpoints/fraud")
        b.click("a[href*='/confirm/rollback']")
        on_page(b, "/confirm/rollback")
        b.fill("input[name=reason]", "bad canary")
        b.click("button[type=submit]")
        b.wait("!!document.getElementById('result')", 60)
        assert "rolled back fraud to stable (1.0.0)" in b.text(), b.text()
        assert objs.mep("fraud")["metadata"]["annotations"][f"{GROUP}/requested-by"] == "admin"
        b.screenshot(shots / "result.png")
        b.goto(page(base, "/ns/bad!name/models/fraud"))
        assert "not a name" in b.text()
        a11y.check(b, "error")
        b.goto(f"{base}/ns/{ns}/endpoints/fraud")
        b.wait(f"{effective_cell('stable')} === '100%'", 30)

        # which version answered at a moment: `which --at`'s answer, from status.routeHistory
        def changes() -> int:
            return len((objs.mep("fraud")["status"].get("routeHistory") or {}).get("changes") or [])

        wait_for(lambda: changes() >= 3, 30, "the route changes recorded")
        b.fill("input[name=at]", "now")
        b.click("form[action*='/endpoints/fraud'] button[type=submit]")
        b.wait("!!document.getElementById('which-answer')", 30)
        answer = b.text("#which-answer")
        assert "stable" in answer and "1.0.0" in answer and "100%" in answer, answer
        b.goto(f"{base}/ns/{ns}/endpoints/fraud?at=2000-01-01T00:00:00Z")
        assert "before the route history" in b.text("#which-answer")

    # ---- read-only: no action offered, and none accepted ------------------------------------------
    with ui(cluster.kubeconfig, ns, "--read-only") as url, Browser() as b:
        base = base_of(url)
        b.goto(url)
        for path in (f"/ns/{ns}/models/fraud", f"/ns/{ns}/endpoints/fraud"):
            b.goto(base + path)
            assert b.js("document.querySelectorAll('a[href*=\"/confirm/\"]').length") == 0
            assert "read-only" in b.text("header")
            a11y.check(b, f"read-only {path.split('/')[3]}")
        status = b.js(
            f"fetch('{base}/ns/{ns}/act/rollback', {{method: 'POST', body: new URLSearchParams("
            "{endpoint: 'fraud', csrf: 'x'})}).then(r => r.status)"
        )
        assert status == 403
    assert objs.mep("fraud")["metadata"]["annotations"][f"{GROUP}/reason"] == "bad canary"
    a11y.assert_clean(capsys)


def viewer_kubeconfig(cluster: Any, objs: Objects, tmp_path: Path) -> tuple[Path, str]:
    """A ServiceAccount that may read our objects in the namespace and nothing else; its kubeconfig."""
    objs.core.create_namespaced_service_account(
        objs.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="viewer"))
    )
    rbac = client.RbacAuthorizationV1Api(objs.api)
    plurals = ["modelversions", "modelendpoints", "models", "modelapprovals"]
    rbac.create_namespaced_role(objs.ns, {"metadata": {"name": "model-viewer"}, "rules": [
        {"apiGroups": [GROUP], "resources": plurals, "verbs": ["get", "list", "watch"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding(objs.ns, {
        "metadata": {"name": "model-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "model-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": objs.ns}],
    })  # fmt: skip
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = objs.core.create_namespaced_service_account_token("viewer", objs.ns, req).status.token
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cfg["users"] = [{"name": "viewer", "user": {"token": token}}]
    for c in cfg["contexts"]:
        c["context"]["user"] = "viewer"
    path = tmp_path / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path, f"system:serviceaccount:{objs.ns}:viewer"


def test_a_viewer_without_rights_is_refused_by_the_api_server(cluster, objs, artifact_root, shots, tmp_path):  # type: ignore[no-untyped-def]
    ns = objs.ns
    register(objs, artifact_root, "2.0.0", "candidate")
    kubeconfig, viewer = viewer_kubeconfig(cluster, objs, tmp_path)
    with ui(kubeconfig, ns) as url, Browser() as b:
        base = base_of(url)
        b.goto(url)
        the_cookie_stays_under_the_prefix(b, base)
        b.goto(f"{base}/ns/{ns}/models/fraud")
        b.wait("!!document.querySelector('tr#v-2\\\\.0\\\\.0')", 30)  # the viewer may read
        b.click("tr#v-2\\.0\\.0 a[href*='/confirm/promote']")
        on_page(b, "/confirm/promote")
        b.fill("input[name=stage]", "staging")
        b.click("button[type=submit]")
        b.wait("!!document.getElementById('result')", 60)
        text = b.text()
        assert "not done" in text and "forbidden" in text.lower() and f"As {viewer}." in text, text
        b.screenshot(shots / "refused.png")
    mv = objs.mv("fraud-v2.0.0")
    assert mv["spec"]["stage"] == "candidate" and f"{GROUP}/requested-by" not in (
        mv["metadata"].get("annotations") or {}
    )
    # the same viewer asking for every namespace: nothing of any other namespace, and told why
    with ui(kubeconfig, ns, "-A") as url, Browser() as b:
        b.goto(url)
        b.wait("!!document.querySelector('main').innerText.includes('Not watching ModelVersion')", 30)
        assert "forbidden" in b.text().lower()
        assert b.js("document.querySelectorAll('table.fleet tbody tr').length") == 0
