"""A list+watch of one resource kind in one namespace, in a thread, recording when each event arrived.

The benchmark measures "API write -> object shows X" from these arrival times, never by polling:
``wait_event`` returns the arrival time (``time.monotonic()``) of the first event of an object,
after a given sequence number, that satisfies a predicate.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

Obj = dict[str, Any]


@dataclass
class Seen:
    seq: int
    at: float  # time.monotonic() when the event was decoded
    type: str
    obj: Obj


class Watcher:
    """Keeps the latest object per name and, per name, the events seen since ``mark()``."""

    def __init__(
        self,
        api: client.ApiClient,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        keep_history: bool = True,
    ) -> None:
        self.api = api
        self.keep_history = keep_history
        self.co = client.CustomObjectsApi(api)
        self.group, self.version, self.plural, self.ns = group, version, plural, namespace
        self.objects: dict[str, Obj] = {}
        self.last: dict[str, Seen] = {}
        self.events: dict[str, list[Seen]] = {}
        self.seq = 0
        self.total_events = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resp: Any = None
        self.error: BaseException | None = None
        self._synced = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30) -> Watcher:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.plural}", daemon=True)
        self._thread.start()
        if not self._synced.wait(timeout):
            raise RuntimeError(f"watch of {self.plural} did not sync within {timeout}s: {self.error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # best effort; the thread is a daemon
                resp.shutdown()
            with contextlib.suppress(Exception):
                resp.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ queries
    def mark(self) -> int:
        """The current sequence number; events after it are 'new'."""
        with self.cond:
            return self.seq

    def get(self, name: str) -> Obj | None:
        with self.cond:
            return self.objects.get(name)

    def forget_history(self) -> None:
        with self.cond:
            self.events.clear()

    def wait_event(self, name: str, pred: Callable[[Obj], bool], after: int, timeout: float) -> Seen | None:
        """First event of ``name`` with seq > ``after`` whose object satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        checked = 0
        with self.cond:
            while True:
                evs = self.events.get(name, [])
                for ev in evs[checked:]:
                    if ev.seq > after and ev.type != "DELETED" and pred(ev.obj):
                        return ev
                checked = len(evs)
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None and not self._thread_alive():
                    return None
                self.cond.wait(min(left, 1.0))

    def wait_until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Re-evaluate ``check`` (called with the lock held) after every event, until true or timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if check():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the thread
    def _record(self, etype: str, obj: Obj, at: float) -> None:
        name = obj["metadata"]["name"]
        with self.cond:
            self.seq += 1
            self.total_events += 1
            seen = Seen(self.seq, at, etype, obj)
            if etype == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
            self.last[name] = seen
            if self.keep_history:
                self.events.setdefault(name, []).append(seen)
            self.cond.notify_all()

    def _list(self) -> str:
        items: list[Obj] = []
        cont = None
        while True:
            kw: dict[str, Any] = {"limit": 500}
            if cont:
                kw["_continue"] = cont
            page = self.co.list_namespaced_custom_object(self.group, self.version, self.ns, self.plural, **kw)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                rv = str(page["metadata"]["resourceVersion"])
                break
        now = time.monotonic()
        with self.cond:
            names = {i["metadata"]["name"] for i in items}
            for gone in set(self.objects) - names:
                self.objects.pop(gone, None)
        for it in items:
            self._record("LISTED", it, now)
        return rv

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                    self._synced.set()
                resp = self.co.list_namespaced_custom_object(
                    self.group, self.version, self.ns, self.plural,
                    watch=True, resource_version=rv, timeout_seconds=300,
                    allow_watch_bookmarks=True, _preload_content=False,
                )
                self._resp = resp
                try:
                    for line in iter_resp_lines(resp):
                        at = time.monotonic()
                        if not line:
                            continue
                        ev = json.loads(line)
                        etype, obj = ev.get("type"), ev.get("object") or {}
                        if etype == "ERROR":
                            if obj.get("code") == 410:
                                rv = None
                            break
                        new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if new_rv:
                            rv = new_rv
                        if etype == "BOOKMARK":
                            continue
                        self._record(etype, obj, at)
                finally:
                    self._resp = None
                    resp.release_conn()
            except ApiException as e:
                if self._stop.is_set():
                    return
                if e.status == 410:
                    rv = None
                else:
                    self.error = e
                    time.sleep(0.2)
            except Exception as e:  # noqa: BLE001 - connection dropped (or stop()): reconnect or end
                if self._stop.is_set():
                    return
                self.error = e
                time.sleep(0.2)
