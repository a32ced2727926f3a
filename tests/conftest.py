"""Every test that runs a reconciler also checks the watch cache's projection: what the operator's
code reads from a cached object must be a field that ``store.PROJECTION`` keeps for its kind.

``Store.get``/``items``/``owned``/``of_model`` hand the operator's code (not the tests' own fakes)
objects that record each key read, with its path; at the end of the test every recorded path is
checked against the projection. A reader of a dropped field (the worst bug a projection can have: a
decision made on a field that is always missing) fails the test that exercises it, whatever the
fixture holds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import modelversioning
from modelversioning.handlers import store as store_mod

OPERATOR = os.path.dirname(modelversioning.__file__) + os.sep
Path = tuple[Any, ...]
EACH = "[]"  # any element of a list
WHOLE = "*"  # every key of a map (iterated, copied, unpacked)
READERS = {"get", "items", "owned", "of_model"}  # Store methods that hand out cached objects: recorded
OTHERS = {"upsert", "delete", "is_observed", "count"}


def _ours(depth: int = 2) -> bool:
    """Is the caller of the caller (the code doing the read) the operator's code?"""
    return sys._getframe(depth).f_code.co_filename.startswith(OPERATOR)


class Reads:
    def __init__(self) -> None:
        self.paths: set[tuple[str, Path]] = set()

    def wrap(self, kind: str, value: Any, path: Path = ()) -> Any:
        if isinstance(value, dict) and not isinstance(value, _Map):
            return _Map(value, self, kind, path)
        if isinstance(value, list) and not isinstance(value, _List):
            return _List(value, self, kind, path)
        return value

    def add(self, kind: str, path: Path, depth: int = 3) -> None:
        if _ours(depth):  # _ours <- add <- the wrapper's method <- the reader
            self.paths.add((kind, path))


class _Map(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any], reads: Reads, kind: str, path: Path) -> None:
        super().__init__(data)
        self._r, self._k, self._p = reads, kind, path

    def __getitem__(self, key: Any) -> Any:
        self._r.add(self._k, (*self._p, key))
        return self._r.wrap(self._k, super().__getitem__(key), (*self._p, key))

    def get(self, key: Any, default: Any = None) -> Any:
        self._r.add(self._k, (*self._p, key))
        if not super().__contains__(key):
            return default
        return self._r.wrap(self._k, super().__getitem__(key), (*self._p, key))

    def __contains__(self, key: object) -> bool:
        self._r.add(self._k, (*self._p, key))
        return super().__contains__(key)

    def _whole(self) -> None:
        self._r.add(self._k, (*self._p, WHOLE), depth=4)

    def __iter__(self) -> Iterator[Any]:
        self._whole()
        return super().__iter__()

    def keys(self) -> Any:
        self._whole()
        return super().keys()

    def values(self) -> Any:
        self._whole()
        return [self._r.wrap(self._k, v, (*self._p, k)) for k, v in super().items()]

    def items(self) -> Any:
        self._whole()
        return [(k, self._r.wrap(self._k, v, (*self._p, k))) for k, v in super().items()]

    def copy(self) -> dict[str, Any]:
        self._whole()
        return dict(super().items())


class _List(list):  # type: ignore[type-arg]
    def __init__(self, data: list[Any], reads: Reads, kind: str, path: Path) -> None:
        super().__init__(data)
        self._r, self._k, self._p = reads, kind, path

    def __iter__(self) -> Iterator[Any]:
        for v in super().__iter__():
            yield self._r.wrap(self._k, v, (*self._p, EACH))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._r.wrap(self._k, v, (*self._p, EACH)) for v in super().__getitem__(i)]
        return self._r.wrap(self._k, super().__getitem__(i), (*self._p, EACH))


def covered(mask: Any, path: Path) -> bool:
    """Does the projection `mask` keep what a read of `path` sees?"""
    for key in path:
        if mask is store_mod.ALL:
            return True
        if key == EACH:
            if isinstance(mask, store_mod.Only):
                mask = mask.mask
                continue
            if isinstance(mask, dict):
                continue  # a map mask applies to each element of a list
            return False
        if key == WHOLE:
            return False  # every key of a value the projection trims
        if isinstance(mask, store_mod.Prefixed):
            return isinstance(key, str) and key.startswith(mask.prefix)
        if not isinstance(mask, dict) or key not in mask:
            return False
        mask = mask[key]
    return True


def uncovered(reads: Reads) -> list[str]:
    out = []
    for kind, path in sorted(reads.paths, key=repr):
        mask = store_mod.PROJECTION.get(kind)
        # a kind without a projection is kept whole, less managedFields
        ok = covered(mask, path) if mask is not None else path[:2] != ("metadata", "managedFields")
        if not ok:
            out.append(f"{kind} {'.'.join(map(str, path))}")
    return out


@pytest.fixture(autouse=True)
def cache_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    """Record the operator's reads of cached objects (see the module's docstring)."""
    reads = Reads()
    if request.node.get_closest_marker("raw_cache"):
        yield reads
        return
    Store = store_mod.Store
    public = {n for n in vars(Store) if not n.startswith("_")}
    assert public <= READERS | OTHERS, (
        f"Store has new methods {sorted(public - READERS - OTHERS)}: if they hand out cached objects, "
        "record them here like get/items/owned/of_model (READERS), else add them to OTHERS"
    )
    get, items, owned, of_model = Store.get, Store.items, Store.owned, Store.of_model

    def rec_get(self: Any, kind: str, namespace: str, name: str) -> Any:
        obj = get(self, kind, namespace, name)
        return reads.wrap(kind, obj) if obj is not None and _ours() else obj

    def rec_items(self: Any, kind: str, namespace: str | None = None) -> Iterator[Any]:
        wrap = _ours()
        for key, obj in items(self, kind, namespace):
            yield key, (reads.wrap(kind, obj) if wrap else obj)

    def rec_owned(self: Any, kind: str, namespace: str, uid: str) -> list[Any]:
        objs = owned(self, kind, namespace, uid)
        return [reads.wrap(kind, o) for o in objs] if _ours() else objs

    def rec_of_model(self: Any, kind: str, namespace: str, model: str) -> list[Any]:
        pairs = of_model(self, kind, namespace, model)
        return [(k, reads.wrap(kind, o)) for k, o in pairs] if _ours() else pairs

    monkeypatch.setattr(Store, "of_model", rec_of_model)
    monkeypatch.setattr(Store, "get", rec_get)
    monkeypatch.setattr(Store, "items", rec_items)
    monkeypatch.setattr(Store, "owned", rec_owned)
    yield reads
    missing = uncovered(reads)
    if missing:
        pytest.fail(
            "the operator read fields that the watch cache's projection drops "
            "(handlers/store.py PROJECTION): " + ", ".join(missing),
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "raw_cache: the Store hands out its own objects (identity checks), reads not recorded"
    )
