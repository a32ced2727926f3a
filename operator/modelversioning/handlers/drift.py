"""Does an existing child object still carry everything we want it to? (subset comparison)

The API server adds defaults (and normalizes quantities), so a child is in sync
when every field we set has the value we set; extra fields are ignored.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX: dict[str, Decimal | int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def _quantity(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return Decimal(str(v))
    if not isinstance(v, str):
        return None
    m = _QTY.match(v)
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2) or ""])
    except InvalidOperation:
        return None


_RESOURCE_KEYS = frozenset({"resources", "requests", "limits"})
_EMPTY: tuple[Any, ...] = ({}, [], "", False, 0)
_VALUED = frozenset({"replicas", "weight"})  # zero is a value there, not an empty field


def diff(desired: Any, actual: Any, path: str = "", in_resources: bool = False) -> list[str]:
    """Paths where `actual` does not carry the `desired` value (empty = in sync)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return [path or "."]
        out: list[str] = []
        for k, v in desired.items():
            if v is None:
                continue
            sub = f"{path}.{k}"
            if k not in actual:
                if v in _EMPTY and k not in _VALUED:
                    continue  # the API server drops empty values
                out.append(sub)
                continue
            out.extend(diff(v, actual[k], sub, in_resources or k in _RESOURCE_KEYS))
        return out
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return [path]
        out = []
        for i, (d, a) in enumerate(zip(desired, actual, strict=True)):
            out.extend(diff(d, a, f"{path}[{i}]", in_resources))
        return out
    if desired == actual or _same_scalar(desired, actual, in_resources):
        return []
    return [path]


def in_sync(desired: Any, actual: Any, in_resources: bool = False) -> bool:
    """``not diff(desired, actual)``, without building a path for every field: a reconcile checks
    every slot and the route (a Deployment is ~100 fields), and all of them are usually in sync."""
    if desired == actual:
        return True  # equal is in sync (a subset of itself)
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        for k, v in desired.items():
            if v is None:
                continue
            if k not in actual:
                if v in _EMPTY and k not in _VALUED:
                    continue  # the API server drops empty values
                return False
            if not in_sync(v, actual[k], in_resources or k in _RESOURCE_KEYS):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(in_sync(d, a, in_resources) for d, a in zip(desired, actual, strict=True))
    return _same_scalar(desired, actual, in_resources)


def _same_scalar(desired: Any, actual: Any, in_resources: bool) -> bool:
    """Unequal scalars that are the same value: a normalized quantity, an int written as a float."""
    if in_resources:
        qd, qa = _quantity(desired), _quantity(actual)
        if qd is not None and qd == qa:
            return True
    return (
        isinstance(desired, int | float)
        and isinstance(actual, int | float)
        and float(desired) == float(actual)
    )


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Does a computed status differ from the stored one (absent and empty values count as equal)?"""

    def norm(status: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if v not in (None, [], {})}

    return norm(old) != norm(new)
