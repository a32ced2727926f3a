"""Values given on the command line or in files: ``k=v`` options and JSON objects of scalars
(metrics, hyperparameters, environment). Pure; refusals are usage errors (exit 2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelversioning.cli.models.errors import EXIT_USAGE, Refused


def parse_scalar(text: str) -> str | int | float | bool:
    """A hyperparameter value: JSON number/bool when it parses as one, else the string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool | int | float):
        return value
    return text


def parse_pairs(items: Sequence[str], what: str, numeric: bool) -> dict[str, Any]:
    """``k=v`` options into a dict; numeric values for metrics. Raises Refused (usage, exit 2)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise Refused(f"{what} {item!r}: expected KEY=VALUE", code=EXIT_USAGE)
        if numeric:
            try:
                out[key] = float(raw)
            except ValueError:
                raise Refused(f"{what} {item!r}: {raw!r} is not a number", code=EXIT_USAGE) from None
            if out[key].is_integer() and re.fullmatch(r"[+-]?\d+", raw.strip()):
                out[key] = int(raw)
        else:
            out[key] = parse_scalar(raw)
    return out


def load_mapping(path: Path, what: str, numeric: bool) -> dict[str, Any]:
    """A JSON object of scalars (numbers for metrics) from a file. Raises Refused (exit 2)."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise Refused(f"{what} {path}: {e.strerror or e}", code=EXIT_USAGE) from None
    except ValueError as e:
        raise Refused(f"{what} {path}: not valid JSON ({e})", code=EXIT_USAGE) from None
    if not isinstance(data, dict):
        raise Refused(f"{what} {path}: expected a JSON object of key: value", code=EXIT_USAGE)
    for k, v in data.items():
        if numeric and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise Refused(f"{what} {path}: {k!r} is not a number ({v!r})", code=EXIT_USAGE)
        if not numeric and not isinstance(v, str | int | float | bool):
            raise Refused(f"{what} {path}: {k!r} must be a string, number or boolean", code=EXIT_USAGE)
    return dict(data)
