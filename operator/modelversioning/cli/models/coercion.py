"""Parameter values of ``kubectl models`` without pydantic at start.

Typer (0.2x) coerces every parameter's value, ``None`` and defaults included, through a pydantic
TypeAdapter built on first use: loading pydantic and building the adapters is ~0.1 s of CPU, 40 % of
what ``kubectl models rollback`` spent before its first API request (issue #25). The values our
commands take are plain (a string, a number with bounds, an option of a StrEnum), so
:func:`plain_values` coerces those here, to what typer's adapters make of them, and hands everything
else to typer's own coercion: another type, a value it would refuse (so that its message is
typer's), a normalising context. If typer stops asking a parameter for its coercion this way, nothing
changes but the start's speed (tests/test_cli_start.py would say so).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from typing import Any

_INT = re.compile(r"[0-9]+\Z")
_FLOAT = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
_TYPERS = object()  # "not plain: typer's coercion decides"


def plain_value(value: Any, annotation: Any, info: Any, ctx: Any) -> Any:
    """`value` coerced as typer's adapter would for `annotation` (`info`: its ParameterInfo), or
    _TYPERS when this is not a plain case."""
    if annotation is str:
        return value if type(value) is str else _TYPERS
    if annotation is bool:
        return value if type(value) is bool else _TYPERS
    if annotation is float or annotation is int:
        if isinstance(value, str):
            pattern = _INT if annotation is int else _FLOAT
            number: Any = annotation(value) if pattern.match(value) else None
        else:
            ok = type(value) is int or (type(value) is float and annotation is float)
            number = annotation(value) if ok else None
        if number is None or getattr(info, "clamp", False):
            return _TYPERS
        low, high = getattr(info, "min", None), getattr(info, "max", None)
        in_range = (low is None or number >= low) and (high is None or number <= high)
        return number if in_range else _TYPERS
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if getattr(ctx, "token_normalize_func", None) is not None or not getattr(
            info, "case_sensitive", True
        ):
            return _TYPERS
        if isinstance(value, annotation):
            return value
        matches = [m for m in annotation if isinstance(value, str) and str(m.value) == value]
        return matches[0] if matches else _TYPERS
    return _TYPERS


class _Plain:
    """What typer's parameter asks for its coercion (``.coerce(value, param=, ctx=)``)."""

    def __init__(self, typers: Callable[[], Any]) -> None:
        self._typers = typers

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if not (param.multiple or param.nargs != 1):
            if value is None:
                return None
            desc = param.type_descriptor
            out = plain_value(value, desc.annotation, desc.parameter_info, ctx)
            if out is not _TYPERS:
                return out
        return self._typers().coerce(value, param=param, ctx=ctx)


def _plain(param: Any) -> None:
    typers = getattr(param, "get_runtime_param", None)
    if typers is not None and hasattr(param, "type_descriptor") and "get_runtime_param" not in vars(param):
        plain = _Plain(typers)
        param.get_runtime_param = lambda: plain


def plain_values(command: Any) -> Any:
    """`command` (its subcommands, its --help option) with plain values coerced without pydantic."""
    for param in getattr(command, "params", ()):
        _plain(param)
    get_help_option = getattr(command, "get_help_option", None)
    if get_help_option is not None and "get_help_option" not in vars(command):

        def help_option(ctx: Any) -> Any:
            option = get_help_option(ctx)  # made on first use
            if option is not None:
                _plain(option)
            return option

        command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        plain_values(sub)
    return command
