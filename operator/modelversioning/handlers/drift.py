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
                if v in ({}, [], "", False, 0) and k not in ("replicas", "weight"):
                    continue  # the API server drops empty values
                out.append(sub)
                continue
            out.extend(diff(v, actual[k], sub, in_resources or k in ("resources", "requests", "limits")))
        return out
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return [path]
        out = []
        for i, (d, a) in enumerate(zip(desired, actual, strict=True)):
            out.extend(diff(d, a, f"{path}[{i}]", in_resources))
        return out
    if desired == actual:
        return []
    if in_resources:
        qd, qa = _quantity(desired), _quantity(actual)
        if qd is not None and qd == qa:
            return []
    if (
        isinstance(desired, int | float)
        and isinstance(actual, int | float)
        and float(desired) == float(actual)
    ):
        return []
    return [path]


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Does a computed status differ from the stored one (absent and empty values count as equal)?"""

    def norm(status: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if v not in (None, [], {})}

    return norm(old) != norm(new)
