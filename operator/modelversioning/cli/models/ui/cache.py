"""The web view's one shared watch cache: a LIST then a WATCH per kind (ModelVersion, ModelEndpoint,
Model, ModelApproval), started once when the view starts, each in its own thread with its own
connection, as the viewer (the kubeconfig's credentials). Pages render from :meth:`WatchCache.snapshot`
and never ask the API server; every change bumps :attr:`WatchCache.revision` and calls ``on_change``
(the server wakes its server-sent-event streams with it).

A watch that ends (the server's timeout) resumes from the last resourceVersion; one that expires (410)
or breaks lists again. A kind the viewer may not list (403) is recorded in :attr:`WatchCache.errors` (the
pages say so) and retried slowly; the other kinds keep working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelversioning.api.wire import (
    LAST_APPLIED_ANNOTATION,
    MODEL,
    MODELAPPROVAL,
    MODELENDPOINT,
    MODELVERSION,
    Resource,
)
from modelversioning.cli.models.apiserver import WatchBroken, WatchExpired
from modelversioning.cli.models.errors import ClusterError
from modelversioning.cli.models.kube import Cluster
from modelversioning.cli.models.ui.snapshot import Snapshot

log = logging.getLogger(__name__)

KINDS: tuple[Resource, ...] = (MODELVERSION, MODELENDPOINT, MODEL, MODELAPPROVAL)
WATCH_SECONDS = 300  # one watch request's length; it resumes from the last resourceVersion
RETRY_SECONDS = 5.0  # after an error (a refused list: 30)

Key = tuple[str, str]  # (namespace, name)


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without metadata.managedFields and the last-applied annotation (memory, and nothing
    a page shows)."""
    md = dict(obj.get("metadata") or {})
    md.pop("managedFields", None)
    ann = md.get("annotations")
    if ann and LAST_APPLIED_ANNOTATION in ann:
        md["annotations"] = {k: v for k, v in ann.items() if k != LAST_APPLIED_ANNOTATION}
    return {**obj, "metadata": md}


def _key(obj: Mapping[str, Any]) -> Key:
    md = obj.get("metadata") or {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


class WatchCache:
    """One LIST + WATCH per kind, shared by every page view and event stream."""

    def __init__(
        self,
        connect: Callable[[], Cluster],
        namespace: str | None,
        kinds: tuple[Resource, ...] = KINDS,
    ) -> None:
        self._connect = connect
        self.namespace = namespace  # None: all namespaces
        self.kinds = kinds
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {k.plural: {} for k in kinds}
        self._synced: set[str] = set()
        self.errors: dict[str, str] = {}
        self.revision = 0
        # (plural, namespace) -> the revision of its last change; a listing (or a refusal) changes every
        # namespace of its kind at once: (plural -> revision). What a live stream of the in-cluster
        # view asks (changes_since) so that a viewer hears only of changes in what they may list.
        self._ns_changed: dict[tuple[str, str], int] = {}
        self._kind_replaced: dict[str, int] = {}
        self.requests = {"list": 0, "watch": 0}  # API requests the cache made (the benchmark prints them)
        self.on_change: Callable[[int], None] = lambda _rev: None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._first_sync = threading.Event()
        self._snapshot: Snapshot | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        for res in self.kinds:
            t = threading.Thread(target=self._run, args=(res,), name=f"ui-watch-{res.plural}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        """Until every kind has been listed once (or refused)."""
        return self._first_sync.wait(timeout)

    # ---- reading ----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The objects now (cached per revision: page views between two changes share one)."""
        with self._lock:
            snap = self._snapshot
            if snap is None or snap.revision != self.revision:

                def of(res: Resource) -> tuple[Mapping[str, Any], ...]:
                    return tuple(self._objects.get(res.plural, {}).values())

                snap = Snapshot(
                    self.revision,
                    of(MODELVERSION),
                    of(MODELENDPOINT),
                    of(MODEL),
                    of(MODELAPPROVAL),
                    dict(self.errors),
                    len(self._synced) == len(self.kinds),
                )
                self._snapshot = snap
            return snap

    def changes_since(self, revision: int) -> tuple[int, frozenset[tuple[str, str]], frozenset[str]]:
        """(the revision now, the (plural, namespace) pairs changed after ``revision``, the kinds
        listed or refused after it: every namespace of those)."""
        with self._lock:
            pairs = frozenset(k for k, r in self._ns_changed.items() if r > revision)
            kinds = frozenset(k for k, r in self._kind_replaced.items() if r > revision)
            return self.revision, pairs, kinds

    # ---- the watch loop -------------------------------------------------------------------------------
    def _changed(self) -> None:
        """Under the lock: a new revision; the callback after it is released (by the caller)."""
        self.revision += 1

    def _notify(self, rev: int) -> None:
        try:
            self.on_change(rev)
        except Exception:  # noqa: BLE001 - a closed event loop at shutdown
            log.debug("on_change failed", exc_info=True)

    def _replace(self, res: Resource, items: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self._objects[res.plural] = {_key(o): _slim(o) for o in items}
            self._synced.add(res.plural)
            self.errors.pop(res.kind, None)
            self._changed()
            self._kind_replaced[res.plural] = self.revision
            rev = self.revision
            if len(self._synced) == len(self.kinds):
                self._first_sync.set()
        self._notify(rev)

    def apply_event(self, res: Resource, event: Mapping[str, Any]) -> str | None:
        """One watch event into the cache; the object's resourceVersion (None: nothing to apply)."""
        kind, obj = event.get("type"), event.get("raw_object") or event.get("object")
        if not isinstance(obj, Mapping):
            return None
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
        if kind == "BOOKMARK":
            return rv
        with self._lock:
            objects = self._objects.setdefault(res.plural, {})
            if kind == "DELETED":
                objects.pop(_key(obj), None)
            elif kind in ("ADDED", "MODIFIED"):
                objects[_key(obj)] = _slim(obj)
            else:
                return rv
            self._changed()
            rev = self.revision
            self._ns_changed[(res.plural, str((obj.get("metadata") or {}).get("namespace") or ""))] = rev
        self._notify(rev)
        return rv

    def _refused(self, res: Resource, why: str) -> None:
        with self._lock:
            self.errors[res.kind] = why
            self._synced.add(res.plural)
            self._changed()
            self._kind_replaced[res.plural] = self.revision
            rev = self.revision
            if len(self._synced) == len(self.kinds):
                self._first_sync.set()
        self._notify(rev)

    def _run(self, res: Resource) -> None:
        cluster = self._connect()  # its own connection: the HTTP client is not shared between threads
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    self.requests["list"] += 1
                    items, rv = cluster.list_from(res, self.namespace)
                    self._replace(res, items)
                self.requests["watch"] += 1
                for ev in cluster.watch_from(res, self.namespace, rv or "", WATCH_SECONDS):
                    if self._stop.is_set():
                        return
                    rv = self.apply_event(res, ev) or rv
            except WatchExpired:
                rv = None
            except WatchBroken as e:
                log.debug("watch of %s broke: %s", res.plural, e)
                rv = None
                self._stop.wait(1.0)
            except ClusterError as e:
                self._refused(res, e.message)
                rv = None
                self._stop.wait(30.0 if e.status in (401, 403) else RETRY_SECONDS)
            except Exception as e:  # noqa: BLE001 - keep watching; the page shows the error
                log.warning("watch of %s failed: %s", res.plural, e)
                self._refused(res, str(e))
                rv = None
                self._stop.wait(RETRY_SECONDS)


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Polls ``check`` (tests and the benchmark)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
