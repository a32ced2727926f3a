"""The canary's runtime asked for its model metadata before it takes traffic (the gather side of
``domain.runtime_contract``), when the Model's ``spec.ioContract.checkRuntimeMetadata`` is on and the
canary's version has an accepted signature (status.ioSignature).

The read (``analysis.oip``: the variant's own Service only, a short deadline, a size cap, no redirect)
runs on a small pool of its own (``FairExecutor``: one read per namespace at a time, round-robin across
namespaces), never on a reconcile worker; its result is kept per (slot, recorded signature) and a
finished read re-queues its endpoint. An answer that could not be read is asked again after
``RUNTIME_RECHECK_SECONDS``; a match or a mismatch is kept for as long as the slot and the signature are
the same (at most ``MAX_RESULTS`` of them, the oldest dropped first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from modelversioning.analysis.oip import (
    RuntimeUnanswered,
    model_metadata,
    served_signature,
    service_address,
    service_host,
    summary,
)
from modelversioning.api.model import ModelSpec
from modelversioning.api.modelendpoint import ModelEndpointSpec
from modelversioning.api.wire import MODEL, expected_name
from modelversioning.artifacts import FairExecutor
from modelversioning.domain.endpoint_facts import VariantFacts
from modelversioning.domain.io_contract import IOSignature
from modelversioning.domain.runtime_contract import (
    PENDING,
    RUNTIME_RECHECK_SECONDS,
    RuntimeCheck,
    runtime_verdict,
)
from modelversioning.handlers.contract import ACCEPTED
from modelversioning.handlers.store import Store

MAX_RESULTS = 4096
Key = tuple[str, str, str, int, str, str]  # namespace, endpoint, slot, port, OIP model name, digest


class RuntimeProbes:
    def __init__(
        self,
        requeue: Callable[[str, str], None],
        workers: int = 1,
        per_namespace: int = 1,
        read: Callable[..., dict[str, Any]] = model_metadata,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requeue = requeue  # (namespace, endpoint)
        self.read = read
        self.clock = clock
        self.pool = FairExecutor(workers, per_namespace, name="oip")
        self._lock = threading.Lock()
        self._results: OrderedDict[Key, tuple[RuntimeCheck, float]] = OrderedDict()
        self._asked: set[Key] = set()

    def check(self, key: Key, version: str, recorded: IOSignature, address: str) -> RuntimeCheck:
        """The kept result for ``key``, or PENDING after asking ``address`` (the slot Service's cluster
        IP) once at a time per key."""
        with self._lock:
            got = self._results.get(key)
            fresh = got is not None and self.clock() - got[1] < RUNTIME_RECHECK_SECONDS
            if got is not None and (got[0].state != PENDING or fresh):
                return got[0]
            if key not in self._asked:
                self._asked.add(key)
                self.pool.submit_for(key[0], self._run, key, version, recorded, address)
        said = got[0].message if got is not None else "asking the canary's runtime for its OIP model metadata"
        return RuntimeCheck(PENDING, said)

    def _run(self, key: Key, version: str, recorded: IOSignature, address: str) -> None:
        ns, endpoint, slot, port, model, _ = key
        try:
            meta = self.read(service_host(slot, ns), port, model, address=address)
            check = runtime_verdict(version, recorded, served_signature(meta))
        except RuntimeUnanswered as e:
            said = summary(e, 240)
            check = RuntimeCheck(
                PENDING, f"the canary's runtime gave no OIP model metadata for {model}: {said}"
            )
        with self._lock:
            self._asked.discard(key)
            self._results.pop(key, None)
            self._results[key] = (check, self.clock())
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
        self.requeue(ns, endpoint)


def recorded_signature(mv: Mapping[str, Any] | None) -> IOSignature | None:
    """A version's accepted, whole signature (None: none, refused, or truncated in status)."""
    rec = ((mv or {}).get("status") or {}).get("ioSignature")
    if not isinstance(rec, Mapping) or rec.get("truncated") or not rec.get("digest"):
        return None
    if (rec.get("contract") or {}).get("reason") not in ACCEPTED:
        return None
    return IOSignature.of(rec)


def runtime_check(
    store: Store,
    probes: RuntimeProbes | None,
    namespace: str,
    endpoint: str,
    spec: ModelEndpointSpec,
    variants: list[VariantFacts],
    endpoint_uid: str,
) -> RuntimeCheck | None:
    """What holds the canary (None: nothing to check: no rollout, the policy is off, no signature).
    Only the cluster IP of the canary slot's own Service (controlled by the endpoint ``endpoint_uid``,
    type ClusterIP) is ever asked; anything else holds it, saying why."""
    if probes is None or spec.strategy is None or not _enabled(store, namespace, spec.model):
        return None
    canary = spec.variant(spec.strategy.canary.variant)
    if canary is None:
        return None
    mv = store.get("ModelVersion", namespace, expected_name(spec.model, canary.version))
    recorded = recorded_signature(mv)
    if recorded is None:
        return None
    slot = next((v.desired for v in variants if v.name == canary.name), None)
    if slot is None or not (slot.ours and slot.available):
        return RuntimeCheck(PENDING, "waiting for the canary's slot to be available to ask its runtime")
    try:
        address = service_address(
            store.get("Service", namespace, slot.name), slot.name, namespace, endpoint_uid
        )
    except RuntimeUnanswered as e:
        return RuntimeCheck(PENDING, f"the canary's runtime is not asked: {e}")
    key: Key = (namespace, endpoint, slot.name, spec.port, spec.model, recorded.digest())
    return probes.check(key, canary.version, recorded, address)


def _enabled(store: Store, namespace: str, model: str) -> bool:
    body = store.get(MODEL.kind, namespace, model) or {}
    try:
        return ModelSpec.model_validate(body.get("spec") or {}).io_contract.check_runtime_metadata
    except ValueError:
        return False
