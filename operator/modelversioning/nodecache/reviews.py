"""TokenReviews, bounded: every request to the agent carries a token, and asking the API server about
each would let any pod on the node make the agent send unlimited TokenReviews (a flood of made-up
tokens, or one refused token sent again and again).

* An answer is kept for a short time, keyed by the token's sha256 (never the token itself): ``ttl`` for
  an authenticated one, ``negative_ttl`` for a refused one. A failure to ask is not kept.
* Reviews actually sent are rate limited (a token bucket: ``per_second``, ``burst``); beyond it
  :meth:`Reviews.review` answers None and the agent refuses with 503 ``Busy`` (the reader fetches from
  the origin).
* At most ``max_entries`` answers are kept (expired ones go first, then the oldest).

What is kept is only who the token is (namespace, node); which versions that namespace may read is
still asked on every request, so a revocation applies at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from modelversioning.domain.node_cache import Review


class Reviews:
    def __init__(
        self,
        ask: Callable[[str], Review],
        *,
        ttl: float = 30.0,
        negative_ttl: float = 10.0,
        per_second: float = 20.0,
        burst: int = 100,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ask, self.ttl, self.negative_ttl = ask, ttl, negative_ttl
        self.per_second, self.burst, self.max_entries, self.clock = per_second, burst, max_entries, clock
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, Review]] = {}  # sha256 of the token -> (expires, answer)
        self._tokens, self._refilled = float(burst), clock()
        self.sent = self.cached = self.throttled = 0  # counts (the agent's metrics read them)

    def review(self, token: str) -> Review | None:
        """The TokenReview of ``token``, kept or asked now; None: too many reviews asked (throttled).
        Raises what ``ask`` raises (a failure to ask, not kept)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            now = self.clock()
            kept = self._kept.get(key)
            if kept is not None and kept[0] > now:
                self.cached += 1
                return kept[1]
            if not self._take(now):
                self.throttled += 1
                return None
            self.sent += 1
        answer = self.ask(token)
        if not answer.error:
            with self._lock:
                self._keep(key, answer, self.clock())
        return answer

    def _take(self, now: float) -> bool:
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _keep(self, key: str, answer: Review, now: float) -> None:
        if len(self._kept) >= self.max_entries:
            for k in [k for k, (expires, _) in self._kept.items() if expires <= now]:
                del self._kept[k]
            while len(self._kept) >= self.max_entries:
                del self._kept[next(iter(self._kept))]  # the oldest kept
        self._kept.pop(key, None)
        self._kept[key] = (now + (self.ttl if answer.authenticated else self.negative_ttl), answer)
