"""In-memory view of the objects the operator watches, fed only by watch events.

Reconcilers read from here instead of calling the API, so an idle operator
makes no requests beyond its watches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[Key, dict[str, Any]]] = {}

    def upsert(self, kind: str, body: dict[str, Any]) -> None:
        md = body.get("metadata", {})
        with self._lock:
            self._objs.setdefault(kind, {})[(md.get("namespace", ""), md["name"])] = body

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objs.get(kind, {}).pop((namespace, name), None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objs.get(kind, {}).get((namespace, name))

    def items(self, kind: str, namespace: str | None = None) -> Iterator[tuple[Key, dict[str, Any]]]:
        with self._lock:
            snapshot = list(self._objs.get(kind, {}).items())
        for key, body in snapshot:
            if namespace is None or key[0] == namespace:
                yield key, body

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._objs.get(kind, {}))
