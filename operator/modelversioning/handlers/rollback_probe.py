"""Is each endpoint's fallback artifact still at its URI? (the gather side of RollbackReady; issue #28.)

The endpoint reconcile never does I/O: it asks ``ArtifactProbes.check`` for the fallback's ModelVersion
and gets the last answer kept in memory (or "no answer yet"). A probe (``artifacts.probe``: a HEAD,
stat or listing of the verified URI, never the bytes, in the verifier's worker process under the URI
policy and credentials rules) runs on the **verification pool** (``FairExecutor``: the same bounded
threads as verification, one namespace at a time per worker, round-robin across namespaces), so
probes and verifications together never exceed ``verification.workers``.

Bounds, so that a tenant cannot turn it into a way of making the operator fetch URLs:

- only a version the operator verified is probed (ArtifactVerified=True for its spec's sha256): its
  URI was already fetched whole under the same policy; nothing new is reachable;
- keyed by (namespace, ModelVersion, uid, sha256), not by endpoint: a thousand endpoints falling back
  to one version cost one probe per ``serving.rollbackProbeSeconds``;
- at most one probe per key queued or running; a key's answer is re-asked only when it is older than
  ``serving.rollbackProbeSeconds``, and only when an endpoint reconciles (a drift check runs an endpoint
  whose probe is due, ``due``); at most ``MAX_KEYS`` answers kept (the oldest dropped first).

A finished probe re-queues the endpoints that asked only when its answer changed state (Present ->
Missing, ...), so an idle cluster's re-probes write nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api import wire as W
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import FairExecutor
from modelversioning.artifacts.probe import ProbeResult
from modelversioning.domain.endpoint_facts import ArtifactCheck, VariantFacts

log = logging.getLogger(__name__)

MAX_KEYS = 4096
MAX_WATCHERS = 256  # endpoints re-queued per key when its answer changes (more: the drift check finds them)
Key = tuple[str, str, str, str]  # namespace, ModelVersion, uid, sha256
Probe = Callable[..., ProbeResult]  # (uri, *, policy, secret_data, expected_size, expected_files)
PENDING = ArtifactCheck("")


class ArtifactProbes:
    def __init__(
        self,
        pool: FairExecutor,
        policy: ArtifactPolicy,
        read_secret: Callable[[str, str], dict[str, str]],
        requeue: Callable[[str, str], None],
        every: float,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if probe is None:
            from modelversioning.artifacts.runner import probe_in_child

            probe = probe_in_child
        self.pool, self.policy, self.read_secret, self.requeue = pool, policy, read_secret, requeue
        self.every, self.probe, self.clock = every, probe, clock
        self._lock = threading.Lock()
        self._results: OrderedDict[Key, tuple[ArtifactCheck, float]] = OrderedDict()
        self._asked: set[Key] = set()
        self._watchers: dict[Key, set[str]] = {}  # key -> endpoints (names in key[0]) that asked
        self._of_endpoint: dict[tuple[str, str], Key] = {}  # endpoint -> the key its fallback has
        self.probes = 0  # probes started (tests, the bench)

    def check(
        self, namespace: str, endpoint: str, fallback: VariantFacts | None, mv: Mapping[str, Any] | None
    ) -> ArtifactCheck:
        """The kept answer for the fallback's artifact (asking for a new one when due), or PENDING."""
        if self.every <= 0:
            return ArtifactCheck(W.PROBE_PRESENT, "not probed (serving.rollbackProbeSeconds is 0)")
        facts = fallback.mv if fallback is not None else None
        if facts is None or not facts.verified or mv is None:  # only what the operator verified is probed
            with self._lock:
                self._of_endpoint.pop((namespace, endpoint), None)
            return PENDING
        key: Key = (namespace, facts.name, facts.uid, facts.digest)
        with self._lock:
            self._of_endpoint[(namespace, endpoint)] = key
            watchers = self._watchers.setdefault(key, set())
            if len(watchers) < MAX_WATCHERS:
                watchers.add(endpoint)
            got = self._results.get(key)
            if (got is None or self.clock() - got[1] >= self.every) and key not in self._asked:
                self._asked.add(key)
                self.probes += 1
                self.pool.submit_for(namespace, self._run, key, _target(mv))
        return got[0] if got is not None else PENDING

    def due(self, namespace: str, endpoint: str) -> bool:
        """Is the probe of this endpoint's fallback due (so a drift check must not skip its reconcile)?"""
        with self._lock:
            key = self._of_endpoint.get((namespace, endpoint))
            if key is None or key in self._asked:
                return False
            got = self._results.get(key)
            return got is None or self.clock() - got[1] >= self.every

    def forget(self, namespace: str, endpoint: str) -> None:
        with self._lock:
            key = self._of_endpoint.pop((namespace, endpoint), None)
            if key is not None:
                self._watchers.get(key, set()).discard(endpoint)

    def _run(self, key: Key, target: Target) -> None:
        ns = key[0]
        try:
            result = self._probe(ns, target)
        except Exception as e:  # noqa: BLE001 - reported as not known, never as present
            log.exception("probe of %s/%s crashed", ns, key[1])
            result = ProbeResult(W.PROBE_UNREACHABLE, f"the probe failed: {type(e).__name__}")
        check = ArtifactCheck(result.state, result.message)
        with self._lock:
            self._asked.discard(key)
            before = self._results.pop(key, None)
            self._results[key] = (check, self.clock())
            while len(self._results) > MAX_KEYS:
                old, _ = self._results.popitem(last=False)
                self._watchers.pop(old, None)
            changed = before is None or before[0].state != check.state
            watchers = sorted(self._watchers.get(key, ())) if changed else []
        for endpoint in watchers:
            self.requeue(ns, endpoint)

    def _probe(self, ns: str, t: Target) -> ProbeResult:
        creds = None
        if t.secret:
            try:
                creds = self.read_secret(ns, t.secret)
            except Exception as e:  # noqa: BLE001 - an unreadable Secret: not known
                return ProbeResult(
                    W.PROBE_UNREACHABLE, f"credentials Secret {t.secret!r} cannot be read ({e})"[:512]
                )
        return self.probe(
            t.uri, policy=self.policy, secret_data=creds, expected_size=t.size, expected_files=t.files
        )


@dataclass(frozen=True)
class Target:
    """What a probe needs of a ModelVersion: its URI, its Secret's name, what the verification recorded."""

    uri: str
    secret: str
    size: int | None
    files: int | None


def _target(mv: Mapping[str, Any]) -> Target:
    artifact = (mv.get("spec") or {}).get("artifact") or {}
    verified = (mv.get("status") or {}).get("artifact") or {}
    size, files = verified.get("sizeBytes"), verified.get("files")
    return Target(
        str(artifact.get("uri") or ""),
        str((artifact.get("secretRef") or {}).get("name") or ""),
        int(size) if size is not None else None,
        int(files) if files is not None else None,
    )
