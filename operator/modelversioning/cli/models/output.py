"""The output formats of ``kubectl models`` (-o/--output), apart from the rendering itself so that a
command's start does not load the tables' code."""

from __future__ import annotations

from enum import StrEnum


class Output(StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"
