"""Injected misbehaviour: a share of predictions answered 500, and added latency.

The default schedule is deterministic and evenly spread: request n (1-based) fails when
``floor(n * rate) > floor((n - 1) * rate)``, so exactly ``floor(n * rate)`` of the first n requests
fail and any window of k consecutive requests holds ``k * rate`` failures, +-1. With a seed the
schedule is pseudo-random instead (``random.Random(seed)``, reproducible for one process).

The fault port (``--admin-port``) changes them at runtime. It requires a bearer token
(:func:`admin_token`: ``$MODEL_SERVER_ADMIN_TOKEN`` or the file ``$MODEL_SERVER_ADMIN_TOKEN_FILE``
names) compared in constant time (:func:`token_matches`); without a token it is not opened at all.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

ADMIN_TOKEN_ENV = "MODEL_SERVER_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "MODEL_SERVER_ADMIN_TOKEN_FILE"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # 0..1: share of predictions answered 500
    latency_ms: float = 0.0  # added to every prediction
    error_seed: int | None = None  # None: evenly spread; else seeded random

    def __post_init__(self) -> None:
        if not (0.0 <= self.error_rate <= 1.0) or math.isnan(self.error_rate):
            raise ValueError(f"error rate must be within 0..1, not {self.error_rate}")
        if not (0.0 <= self.latency_ms <= 600_000) or math.isnan(self.latency_ms):
            raise ValueError(f"latency must be within 0..600000 ms, not {self.latency_ms}")

    def to_json(self) -> dict[str, Any]:
        return {"errorRate": self.error_rate, "latencyMs": self.latency_ms, "errorSeed": self.error_seed}

    @classmethod
    def from_json(cls, data: Any, base: Faults | None = None) -> Faults:
        """Faults from a JSON object (keys errorRate, latencyMs, errorSeed); missing keys keep ``base``."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object with errorRate, latencyMs and/or errorSeed")
        unknown = set(data) - {"errorRate", "latencyMs", "errorSeed"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        base = base or cls()
        seed = data.get("errorSeed", base.error_seed)
        for key in ("errorRate", "latencyMs"):
            if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int | float)):
                raise ValueError(f"{key} must be a number")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("errorSeed must be an integer or null")
        return cls(
            error_rate=float(data.get("errorRate", base.error_rate)),
            latency_ms=float(data.get("latencyMs", base.latency_ms)),
            error_seed=seed,
        )


class FaultInjector:
    """Thread-safe: decides, request by request, whether to fail; can be reconfigured live."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._faults = Faults()
        self._rate = Fraction(0)
        self._count = 0
        self._random: random.Random | None = None
        self.configure(faults or Faults())

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def configure(self, faults: Faults) -> None:
        """Apply new faults; the schedule restarts at request 1."""
        with self._lock:
            self._faults = faults
            self._rate = Fraction(faults.error_rate).limit_denominator(1_000_000)
            self._count = 0
            self._random = random.Random(faults.error_seed) if faults.error_seed is not None else None

    def next(self) -> tuple[bool, float]:
        """(fail this request?, seconds of latency to add) for the next prediction."""
        with self._lock:
            self._count += 1
            n = self._count
            if self._rate == 0:
                fail = False
            elif self._random is not None:
                fail = self._random.random() < self._faults.error_rate
            else:
                fail = math.floor(n * self._rate) > math.floor((n - 1) * self._rate)
            return fail, self._faults.latency_ms / 1000.0


def admin_token(env: Mapping[str, str]) -> str | None:
    """The fault port's token: ``$MODEL_SERVER_ADMIN_TOKEN``, else the content of the file
    ``$MODEL_SERVER_ADMIN_TOKEN_FILE`` names (surrounding whitespace stripped); None when neither is
    set. OSError when the file cannot be read, ValueError when the token is shorter than
    MIN_TOKEN_CHARS characters."""
    token = env.get(ADMIN_TOKEN_ENV, "").strip()
    if not token and env.get(ADMIN_TOKEN_FILE_ENV):
        token = Path(env[ADMIN_TOKEN_FILE_ENV]).read_text().strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the fault port's token must have at least {MIN_TOKEN_CHARS} characters")
    return token or None


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether an Authorization header is ``Bearer <expected>``. The tokens are compared as sha256
    digests with hmac.compare_digest: in constant time, their lengths included."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    same = hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )
    return same and scheme.lower() == "bearer" and bool(expected)
