"""Debian's Chromium, headless, driven over the DevTools protocol (one WebSocket, websocket-client):
enough to load a page, read it, click, wait for a condition in the page and take a screenshot. For the
browser tests of `kubectl models ui` (e2e/test_ui_browser.py). The browser is installed by
e2e/ensure-chromium.sh (./dev's packages lane).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import websocket


class BrowserError(Exception):
    pass


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page (tab); ``events`` keeps what the page reported (console
    messages, dialogs, exceptions)."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        exe = chromium_path()
        if exe is None:
            raise BrowserError("chromium not found: run e2e/ensure-chromium.sh")
        self.profile = Path(tempfile.mkdtemp(prefix="mv-chromium-"))
        args = [
            exe, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--password-store=basic", "--use-mock-keychain",
            f"--window-size={width},{height}", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
            "about:blank",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # root in a container: Chromium's sandbox needs user namespaces
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrowserError(f"chromium did not start: {err[-2000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.page(f"{domain}.enable")
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip

    # ---- the protocol ---------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            got = json.loads(self.ws.recv())
            if got.get("id") == msg_id:
                if "error" in got:
                    raise BrowserError(f"{method}: {got['error']}")
                return dict(got.get("result") or {})
            if "method" in got:
                self.events.append(got)
                if got["method"] == "Page.javascriptDialogOpening":  # never leave a dialog open
                    self.ws.send(json.dumps({"id": next(self._ids), "sessionId": got.get("sessionId"),
                                             "method": "Page.handleJavaScriptDialog",
                                             "params": {"accept": True}}))  # fmt: skip
            if time.monotonic() > deadline:
                raise BrowserError(f"{method}: no answer in {timeout}s")

    def page(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        return self.call(method, params, self.session, timeout)

    # ---- what a test does -------------------------------------------------------------------------
    def goto(self, url: str, timeout: float = 30) -> None:
        """Load ``url`` and wait until the new document is complete (not the one it replaces)."""
        self.js("window.__mv_old_page = true")
        self.page("Page.navigate", {"url": url})
        self.wait("!window.__mv_old_page && document.readyState === 'complete'", timeout)

    def js(self, expression: str) -> Any:
        r = self.page(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        return (r.get("result") or {}).get("value")

    def wait(self, expression: str, timeout: float = 30, interval: float = 0.05) -> Any:
        """Until ``expression`` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.js(expression)
            except BrowserError:  # navigating: the context is being replaced
                last = None
            if last:
                return last
            time.sleep(interval)
        try:
            page = "(document.body ? document.body.innerText : '').slice(0, 999)"
            where = self.js(f"location.href + ': ' + {page}")
        except BrowserError as e:
            where = str(e)
        raise BrowserError(f"timed out after {timeout}s waiting for {expression} (last: {last!r}) at {where}")

    def click(self, selector: str) -> None:
        """Click the element (a real mouse event at its centre, as a person would)."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if not box:
            raise BrowserError(f"no element {selector}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.page(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    def fill(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(text)}")

    def text(self, selector: str = "main") -> str:
        return str(self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''"))

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG, once it is loaded and laid out (retried while a navigation lands)."""
        data = None
        for _ in range(20):
            self.wait("document.readyState === 'complete' && document.body && document.body.scrollWidth > 0")
            try:
                shot = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
                data = shot["data"]
                break
            except BrowserError:
                time.sleep(0.1)
        if data is None:
            raise BrowserError(f"no screenshot of {self.js('location.href')}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def press(self, key: str, shift: bool = False) -> None:
        """One key as a keyboard sends it (keyDown with the character, keyUp): Tab, Enter, Space."""
        code, vk, char = KEYS[key]
        mods = 8 if shift else 0
        event: dict[str, Any] = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": mods}
        self.page("Input.dispatchKeyEvent", {**event, "type": "keyDown", **({"text": char} if char else {})})
        self.page("Input.dispatchKeyEvent", {**event, "type": "keyUp"})

    def focused(self) -> dict[str, Any] | None:
        """The focused element (None: the document itself): a description, its key and whether its
        focus can be seen (an outline or a box shadow drawn by :focus / :focus-visible)."""
        return self.js(_FOCUSED)  # type: ignore[no-any-return]

    def focusables(self) -> list[dict[str, Any]]:
        """Every element a keyboard should reach (links, buttons, fields, selects; shown, enabled)."""
        return list(self.js(_FOCUSABLES) or [])

    def focus_top(self) -> None:
        """Put the keyboard's starting point before everything in the page (a blur alone leaves it where
        the last focused element was): the next Tab reaches the first focusable element."""
        self.js("(() => { const s = document.createElement('span'); s.tabIndex = -1;"
                " document.body.prepend(s); s.focus(); window.scrollTo(0, 0);"
                " s.addEventListener('blur', () => s.remove()); return true; })()")  # fmt: skip

    def tab_through(self, limit: int = 300) -> list[dict[str, Any]]:
        """Press Tab from the top of the page until the focus leaves the page or comes back to the
        first element: what got the focus, in order."""
        self.focus_top()
        seen: list[dict[str, Any]] = []
        for _ in range(limit):
            self.press("Tab")
            f = self.focused()
            if f is None or (seen and f["key"] == seen[0]["key"]):
                break
            seen.append(f)
        return seen

    def axe(self, source: str) -> dict[str, Any]:
        """Run axe-core (``source``: axe.min.js) in the page: ``violations`` (each with id, impact, help
        and the first nodes), the number of rules that ``passes`` and the ``incomplete`` ones (to review
        by hand). Evaluated over DevTools, so the page's CSP (no inline script) does not stop it."""
        if not self.js("typeof window.axe === 'object'"):
            self.js(source + "\n;true")
        return dict(self.js(_AXE_RUN))

    def dialogs(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.call("Browser.close", timeout=5)
        try:
            self.ws.close()
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


KEYS = {"Tab": ("Tab", 9, ""), "Enter": ("Enter", 13, "\r"), " ": ("Space", 32, " ")}

_FOCUSED = """(() => {
  const e = document.activeElement;
  if (!e || e === document.body || e === document.documentElement) return null;
  const s = getComputedStyle(e);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 1;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  const r = e.getBoundingClientRect();
  const href = e.getAttribute('href');
  const what = e.tagName.toLowerCase() + (href ? ' ' + href : '') + (e.name ? ' [' + e.name + ']' : '');
  return {key: e.dataset.mvKey || (e.dataset.mvKey = String(Math.random())), what: what,
          text: (e.innerText || e.value || '').trim().slice(0, 60), visible: outline || shadow,
          onScreen: r.width > 0 && r.height > 0};
})()"""

_AXE_RUN = """axe.run(document).then(r => ({passes: r.passes.length,
  incomplete: r.incomplete.map(v => v.id + ' (' + v.impact + ')'),
  violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, count: v.nodes.length,
    nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' | '
      + (n.failureSummary || '').replace(/\\s+/g, ' ').slice(0, 300))}))}))"""

_FOCUSABLES = """Array.from(document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])'))
  .filter(e => !e.disabled && e.getClientRects().length > 0)
  .map(e => ({key: e.dataset.mvKey || (e.dataset.mvKey = String(Math.random())),
              what: e.tagName.toLowerCase() + (e.getAttribute('href') ? ' ' + e.getAttribute('href') : '')
                    + (e.name ? ' [' + e.name + ']' : '')}))"""
