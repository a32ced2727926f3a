"""The recorder of the operator's reads of cached objects (used by ``conftest.py``'s autouse fixture;
imported by name from tests, never as ``conftest``: with e2e/ collected in the same session that
name is e2e's conftest)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import modelversioning
from modelversioning.handlers import store as store_mod

OPERATOR = os.path.dirname(modelversioning.__file__) + os.sep
Path = tuple[Any, ...]
EACH = "[]"  # any element of a list
WHOLE = "*"  # every key of a map (iterated, copied, unpacked)
READERS = {
    "get",
    "items",
    "owned",
    "of_model",
    "cluster_scoped",
    "of_slot",
}  # Store methods that hand out cached objects: recorded
# Store methods that hand out no cached object (names, versions, counts, NOTES)
OTHERS = {
    "upsert",
    "delete",
    "is_observed",
    "holds",
    "recording",  # records resourceVersions and names, hands out no object
    "unchanged",
    "count",
    "keys",
    "versions",
    "model_keys",
    "has",
    "notes",
    "owned_names",
    "rv",  # a resourceVersion, recorded as the read of that version
    "blob",  # pickled bytes, compared only (equal bytes, same object); recorded as the read
}


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
