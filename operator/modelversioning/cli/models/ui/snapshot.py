"""What the web view's watch cache holds at one revision (:class:`Snapshot`): the pages' input, pure
data (no cluster access here, so :mod:`.pages` stays pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    """The objects as the cache holds them at one revision (lists: never mutated by the cache)."""

    revision: int
    versions: tuple[Mapping[str, Any], ...]
    endpoints: tuple[Mapping[str, Any], ...]
    models: tuple[Mapping[str, Any], ...]
    approvals: tuple[Mapping[str, Any], ...]
    errors: Mapping[str, str] = field(default_factory=dict)  # kind -> why it is not watched
    synced: bool = True  # every kind has been listed once
