"""The bounds of one verification and the ``LimitExceeded`` errors that enforce them.

* time: every step runs before one deadline (``artifacts.timeoutSeconds``); a store call that may
  never return runs in a helper thread that is abandoned at the deadline (:func:`run_bounded`);
* size: ``artifacts.maxTotalBytes`` and the declared ``spec.artifact.sizeBytes`` bound what is
  listed (:func:`check_total`) and what is read (:func:`read_budget`).

``artifacts.maxFiles`` is checked where the files are listed
(:class:`~modelversioning.artifacts.listing.Listing`).

``oci://`` (:mod:`~modelversioning.artifacts.oci_fetch`): a manifest is read up to
:data:`MAX_MANIFEST_BYTES` (distribution's own limit), a manifest names at most
:data:`MAX_OCI_LAYERS` layers (and no more than ``artifacts.maxFiles``), the layers' declared sizes
and the bytes unpacked from them are bounded by ``artifacts.maxTotalBytes``, the files unpacked by
``artifacts.maxFiles``, and a token answer or error body by :data:`MAX_SMALL_BODY_BYTES`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.errors import ArtifactError, Reason

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_OCI_LAYERS = 1024
MAX_SMALL_BODY_BYTES = 1024 * 1024
MAX_TAR_HEADER_BYTES = 1024 * 1024  # one pax or GNU long-name header (a decompression bomb otherwise)


def deadline_message(shown_uri: str, policy: ArtifactPolicy) -> str:
    return (
        f"{shown_uri}: LimitExceeded: not verified within artifacts.timeoutSeconds "
        f"({policy.timeout_seconds:g}s); a slow or stalled store, or raise the limit"
    )


def deadline_exceeded(shown_uri: str, policy: ArtifactPolicy) -> ArtifactError:
    """The (permanent) error of a verification that did not finish before its deadline."""
    return ArtifactError(Reason.LIMIT_EXCEEDED, deadline_message(shown_uri, policy), transient=False)


def limit_exceeded(shown_uri: str, what: str) -> ArtifactError:
    return ArtifactError(Reason.LIMIT_EXCEEDED, f"{shown_uri}: LimitExceeded: {what}", transient=False)


def check_total(shown: str, total: int, policy: ArtifactPolicy, expected_size: int | None) -> None:
    """Raise if ``total`` bytes (listed so far) exceed maxTotalBytes or the declared size."""
    if total > policy.max_total_bytes:
        raise limit_exceeded(shown, f"larger than artifacts.maxTotalBytes ({policy.max_total_bytes} bytes)")
    if expected_size is not None and total > expected_size:
        raise ArtifactError(
            Reason.SIZE_MISMATCH,
            f"{shown}: SizeMismatch: more than spec.artifact.sizeBytes ({expected_size} bytes)",
            transient=False,
        )


def read_budget(policy: ArtifactPolicy, expected_size: int | None) -> int:
    """How many bytes may be read in all: maxTotalBytes, or less if a size was declared."""
    return policy.max_total_bytes if expected_size is None else min(policy.max_total_bytes, expected_size)


def run_bounded(fn: Callable[[], Any], deadline: float, shown: str, policy: ArtifactPolicy) -> Any:
    """``fn()``, but give up at ``deadline``: a store call that does not return (a listing or an
    ``info`` a server keeps waiting) is abandoned in its helper thread, never waited for."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="artifact-store", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    if t.is_alive():
        raise deadline_exceeded(shown, policy)
    if "error" in box:
        raise box["error"]
    return box.get("value")
