"""Timing and error accounting shared by the reconcilers."""

from __future__ import annotations

import time
from collections.abc import Callable

from modelversioning import metrics
from modelversioning.handlers.workqueue import Requeue


def instrumented(kind: str, reconcile: Callable[[str, str], None], namespace: str, name: str) -> None:
    t0 = time.monotonic()
    try:
        reconcile(namespace, name)
    except Requeue:
        raise  # waiting, not failing
    except Exception as e:
        metrics.RECONCILE_ERRORS.labels(kind, type(e).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - t0)
