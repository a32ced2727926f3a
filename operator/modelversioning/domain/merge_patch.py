"""RFC 7386 JSON merge patch, applied as the API server applies ``application/merge-patch+json``: a key
set to null is removed, an object is merged key by key, anything else replaces. Pure; the result shares
nothing with its inputs (the fakes and the CLI's printed manifests may change it)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["apply_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` merged into ``target`` (a patch that is not an object replaces the target whole)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply_merge_patch(out.get(k), v)
    return out
