"""bench/ttfa_cache.py reads what the init container logged: the node cache's answer and times."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "e2e")]

import ttfa_cache  # noqa: E402

HIT = 'node-cache: hit sha256:0123456789ab in 0.42s\n{"ok": true, "durationSeconds": 0.41}\n'
MISS = (
    "node-cache: miss sha256:0123456789ab in 0.01s (Miss)\n"
    '{"ok": true, "durationSeconds": 2.5}\n'
    "node-cache: offered sha256:0123456789ab in 0.90s (201 {})\n"
)


def test_a_hit_and_a_miss_with_its_offer() -> None:
    assert ttfa_cache.outcome_of(HIT) == {"cache": "hit", "lookup_s": 0.42, "offer_s": None, "verify_s": 0.41}
    assert ttfa_cache.outcome_of(MISS) == {"cache": "miss", "lookup_s": 0.01, "offer_s": 0.9, "verify_s": 2.5}


def test_a_corrupt_entry_is_told_apart_from_a_miss_and_nothing_logged_is_unknown() -> None:
    assert ttfa_cache.outcome_of(MISS.replace("miss", "corrupt"))["cache"] == "corrupt"
    assert ttfa_cache.outcome_of("")["cache"] == "?"
