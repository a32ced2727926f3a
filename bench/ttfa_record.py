"""What bench/ttfa.py records: every watch event of a kind in a namespace (``Recorder``) and every
answer of one client polling the gateway (``Poller``), each with the wall time the benchmark saw it."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import ttfa_phases as tp
from kubernetes import client, watch

from dataplane_harness import DataPlane

POLL_INTERVAL = 0.02  # seconds between the client's requests: the first answer's resolution
BODY = b'{"inputs": [1, 2, 3]}'


def _trim(obj: dict[str, Any]) -> dict[str, Any]:
    """What the phases read of an object (pods are big)."""
    md = obj.get("metadata") or {}
    keep = {k: md[k] for k in ("name", "labels", "creationTimestamp", "deletionTimestamp") if k in md}
    out: dict[str, Any] = {"metadata": keep}
    if "containers" in (obj.get("spec") or {}):  # a pod
        st = obj.get("status") or {}
        out["spec"] = {"nodeName": (obj.get("spec") or {}).get("nodeName")}
        out["status"] = {
            k: st[k] for k in ("conditions", "initContainerStatuses", "containerStatuses") if k in st
        }
    else:
        out["spec"], out["status"] = obj.get("spec") or {}, obj.get("status") or {}
    return out


class Recorder:
    """Every watch event of one kind in the namespace: {"t": time.time() seen, "type", "object"}."""

    def __init__(self, list_fn: Callable[..., Any], *args: Any) -> None:
        self.list_fn, self.args = list_fn, args
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(10)

    def since(self, t0: float) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["t"] >= t0]

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            kw: dict[str, Any] = {"timeout_seconds": 5, **({"resource_version": rv} if rv else {})}
            try:
                for ev in watch.Watch().stream(self.list_fn, *self.args, **kw):  # type: ignore[no-untyped-call]
                    raw = ev["raw_object"]
                    rv = raw["metadata"]["resourceVersion"]
                    rec = {"t": time.time(), "type": ev["type"], "object": _trim(raw)}
                    with self._lock:
                        self.events.append(rec)
                    if self._stop.is_set():
                        return
            except client.ApiException as e:
                if e.status == 410:
                    rv = None
                time.sleep(0.1)
            except Exception:  # noqa: BLE001 - a dropped connection: resume from the last version
                time.sleep(0.1)


class Poller:
    """One client polling the gateway for one host (a keep-alive connection, a request every
    POLL_INTERVAL): every answer with who gave it (the header and the body) and the pod's hostname."""

    def __init__(self, dp: DataPlane, host: str) -> None:
        self.dp, self.host = dp, host
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(30)

    def _run(self) -> None:
        gw = self.dp.gw
        hdrs = {"Host": self.host, "Content-Type": "application/json"}
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            conn = conn or http.client.HTTPConnection(gw._client_host, gw.web_port, timeout=10)
            s: dict[str, Any] = {"status": -1, "version": None, "body_version": None, "hostname": None}
            try:
                conn.request("POST", "/v1/predict", body=BODY, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                s["status"], s["version"] = resp.status, resp.getheader("x-model-version")
                if resp.status == 200:
                    body = json.loads(data)
                    s["body_version"], s["hostname"] = body.get("version"), body.get("hostname")
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = None
            s["t"] = time.time()
            self.samples.append(s)
            self._stop.wait(POLL_INTERVAL)

    def since(self, t0: float) -> list[dict[str, Any]]:
        return [s for s in list(self.samples) if s["t"] >= t0]

    def answered(self, version: str, t0: float) -> bool:
        return tp.first_answer(self.since(t0), version, t0) is not None
