"""The web view's regions page (issue 30): every endpoint, per region, from the same code as
``kubectl models which --contexts`` (:mod:`..fleet` reads each region with the person's own kubeconfig
context, all at once, each within a deadline; :func:`..fleet_views.which_fleet` makes each endpoint's
rows). A region that could not be read is Unknown, on the page and for every endpoint, never healthy.

:class:`RegionReads` is the I/O side: one read of every region at a time (single flight), kept for
:data:`FRESH_SECONDS`, so page views do not multiply the LISTs on remote clusters. :func:`regions_view`
is pure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelversioning.cli.models import fleet_views
from modelversioning.cli.models.fleet import Read

FRESH_SECONDS = 5.0  # a read of every region serves page views for this long

RegionRead = Read[dict[str, Any]]


def _ns(o: Mapping[str, Any]) -> str:
    return str((o.get("metadata") or {}).get("namespace") or "")


def _name(o: Mapping[str, Any]) -> str:
    return str((o.get("metadata") or {}).get("name") or "")


def _one_endpoint(value: Mapping[str, Any], ns: str, name: str) -> dict[str, Any]:
    """One region's read narrowed to one endpoint: what :func:`fleet.read_endpoint` returns for it."""
    ep = next((e for e in value.get("endpoints") or [] if _ns(e) == ns and _name(e) == name), None)
    model = str(((ep or {}).get("spec") or {}).get("model") or "")
    versions = [
        m for m in value.get("versions") or [] if _ns(m) == ns and (m.get("spec") or {}).get("model") == model
    ]
    return {"endpoint": ep, "versions": versions if ep is not None else [], "namespace": ns}


def regions_view(reads: Sequence[RegionRead], read_at: float) -> dict[str, Any]:
    """The regions (reachable or Unknown, with why and how long each took) and, for every endpoint
    any region has, ``which --contexts``'s view of it (:func:`fleet_views.which_fleet`)."""
    keys = sorted({(_ns(e), _name(e)) for r in reads if r.value for e in r.value.get("endpoints") or []})
    endpoints = []
    for ns, name in keys:
        narrowed = [
            Read(
                r.target,
                _one_endpoint(r.value, ns, name) if r.value is not None else None,
                r.error,
                r.seconds,
            )
            for r in reads
        ]
        endpoints.append({"namespace": ns, **fleet_views.which_fleet(narrowed, name)})
    regions = [
        {
            "region": r.target.region,
            "context": r.target.context,
            "state": fleet_views.UNKNOWN if r.error or r.value is None else "Reachable",
            "error": r.error or ("no answer" if r.value is None else ""),
            "seconds": round(r.seconds, 3),
            "endpoints": len((r.value or {}).get("endpoints") or []),
        }
        for r in reads
    ]
    return {
        "regions": regions,
        "endpoints": endpoints,
        "unknown": [r["region"] for r in regions if r["state"] == fleet_views.UNKNOWN],
        "readAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(read_at)),
    }


class RegionReads:
    """Every region read by ``read`` (which bounds each region's time: :func:`fleet.read_all`), one
    read at a time, the last kept for :data:`FRESH_SECONDS`; ``reads`` counts the reads made."""

    def __init__(self, read: Callable[[], list[RegionRead]], fresh: float = FRESH_SECONDS) -> None:
        self._read = read
        self._fresh = fresh
        self._lock = threading.Lock()
        self._last: tuple[float, list[RegionRead]] | None = None
        self.reads = 0

    def get(self) -> tuple[float, list[RegionRead]]:
        """(when, the reads): the kept ones while fresh, else a new read (one caller reads; the
        others wait for it)."""
        with self._lock:
            last = self._last
            if last is None or time.time() - last[0] > self._fresh:
                self.reads += 1
                last = self._last = (time.time(), self._read())
            return last
