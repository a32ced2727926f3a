"""Verification of ModelVersion artifacts (the verifier's side of the ModelVersion reconciler's gather and
act): the production verifier (stream and hash through ``modelversioning.artifacts``, in a child process),
and ``Verifications``, the fetch-and-hash jobs in a bounded, per-namespace fair pool, one per object at a
time; a finished job requeues its object."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api import wire as R
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.settings import ArtifactPolicy
from modelversioning.api.settings import Verification as VerificationSettings
from modelversioning.artifacts import FairExecutor, verify_artifact, verify_in_child
from modelversioning.domain.version_facts import VerifierFacts, VerifyResult
from modelversioning.handlers.kube import Kube
from modelversioning.handlers.trust import NO_TRUST, TrustPlan, UnreadableTrust, resolve

log = logging.getLogger(__name__)

__all__ = ["Key", "Verifications", "Verifier", "make_verifier"]

Key = tuple[str, str]  # (namespace, name)
# (uri, sha256, credentials, sizeBytes[, trust material]) -> result; the production one streams and
# hashes (make_verifier); the trust material is passed only when a trust policy applies
Verifier = Callable[..., VerifyResult]


def make_verifier(policy: ArtifactPolicy, *, in_process: bool = False) -> Verifier:
    """The production verifier: stream + hash through modelversioning.artifacts, in a child process
    with a memory limit that is killed at the deadline (``in_process``: in this process, tests). With
    trust material the signature is checked against the digests computed while hashing."""

    def verify(uri: str, sha: str, secret: Any, size: int | None = None, trust: Any = None) -> VerifyResult:
        run = verify_artifact if in_process else verify_in_child
        r = run(uri, sha, policy=policy, secret_data=secret, expected_size=size, trust=trust)
        return VerifyResult(
            str(r.reason.value), r.message, r.transient, r.actual, r.size_bytes, r.files,
            layout=r.layout, content_digest=r.content_digest,
            contents=tuple((f.path, f.sha256, f.size_bytes) for f in r.contents),
            signature=r.signature.to_dict() if r.signature is not None else None,
            io_signature=r.io_signature,
        )  # fmt: skip

    return verify


@dataclass
class _Attempt:
    uid: str
    generation: int
    future: Future[VerifyResult] | None = None
    result: VerifyResult | None = None
    failures: int = 0
    finished: float = 0.0
    started: float = field(default_factory=time.monotonic)  # asked for (it may wait for a worker)
    began: float = 0.0  # a worker began to fetch and hash (0: still waiting for one)


class Verifications:
    """Fetch-and-hash jobs in a small thread pool, one per object at a time; a finished job
    requeues its object. Holds each object's last result until the plan says to forget it."""

    def __init__(
        self,
        kube: Kube,
        verifier: Verifier,
        requeue: Callable[[str, str], None],
        settings: VerificationSettings | None = None,
    ) -> None:
        self.kube = kube
        self.verifier = verifier
        self.requeue = requeue
        cfg = settings or VerificationSettings()
        # bounded, and fair: one namespace's slow artifacts never hold another namespace's verification
        self.pool = FairExecutor(cfg.workers, cfg.per_namespace, name="verify")
        self._attempts: dict[Key, _Attempt] = {}
        self._lock = threading.Lock()
        # re-verify now: a slot's pod refused the verified digest (key -> the sha256 the pod read), and
        # the last such digest asked for, so the same refusal asks once (no loop when the store is fine)
        self._recheck: dict[Key, str] = {}
        self._asked: dict[Key, str] = {}

    def request_recheck(self, key: Key, found: str) -> bool:
        """A pod's init container read `found` where this version's digest was verified: fetch and hash
        it again at once (the object is requeued). Once per (version, digest found)."""
        with self._lock:
            if self._asked.get(key) == found:
                return False
            self._asked[key] = self._recheck[key] = found
        self.requeue(*key)
        return True

    def recheck_requested(self, key: Key) -> str | None:
        with self._lock:
            return self._recheck.get(key)

    def recheck_taken(self, key: Key) -> None:
        """The decision that read the request was made (a fetch started, or none was needed)."""
        with self._lock:
            self._recheck.pop(key, None)

    def facts(self, key: Key, uid: str) -> VerifierFacts:
        """What the verifier knows about this object (harvesting a finished job)."""
        with self._lock:
            att = self._attempts.get(key)
            if att is None or att.uid != uid:
                return VerifierFacts()
            fresh = False
            if att.future is not None:
                if not att.future.done():
                    now = time.monotonic()
                    return VerifierFacts(
                        running=True,
                        failures=att.failures,
                        running_for=now - att.began if att.began else 0.0,
                        waited_for=now - att.started,
                    )
                att.result = _result_of(key, att.future)
                att.future = None
                att.finished = time.monotonic()
                att.failures = att.failures + 1 if att.result.transient and not att.result.ok else 0
                fresh = True
            age = time.monotonic() - att.finished
            return VerifierFacts(False, att.result, att.generation, att.failures, age, fresh=fresh)

    def start(
        self,
        key: Key,
        uid: str,
        generation: int,
        model: str,
        spec: ModelVersionSpec,
        trust: TrustPlan = NO_TRUST,
    ) -> None:
        with self._lock:
            prev = self._attempts.get(key)
            failures = prev.failures if prev is not None and prev.uid == uid else 0
            att = _Attempt(uid, generation, failures=failures)
            self._attempts[key] = att
            att.future = self.pool.submit_for(key[0], self._begin, att, key, model, spec, trust)
            # requeue once the future is done (not from inside the job: it would race with done())
            att.future.add_done_callback(partial(self._done, key))

    def forget(self, key: Key, *, gone: bool = False) -> None:
        with self._lock:
            self._attempts.pop(key, None)
            if gone:
                self._recheck.pop(key, None)
                self._asked.pop(key, None)

    def _done(self, key: Key, _future: Future[VerifyResult]) -> None:
        self.requeue(*key)

    def _begin(
        self, att: _Attempt, key: Key, model: str, spec: ModelVersionSpec, trust: TrustPlan
    ) -> VerifyResult:
        """A worker took the job: from now on it is fetching and hashing (``VerifierFacts.running_for``)."""
        att.began = time.monotonic()
        return self._run(key, model, spec, trust)

    def _run(self, key: Key, model: str, spec: ModelVersionSpec, trust: TrustPlan = NO_TRUST) -> VerifyResult:
        ns = key[0]
        t0 = time.monotonic()
        creds: dict[str, str] | None = None
        if spec.artifact.secret_ref is not None:
            ref = spec.artifact.secret_ref.name
            try:
                creds = self.kube.read_secret(ns, ref)
            except ApiException as e:
                what = "does not exist" if e.status == 404 else f"cannot be read ({e.status} {e.reason})"
                return VerifyResult(R.ACCESS_DENIED, f"credentials Secret {ref!r} {what}", transient=True)
        args: tuple[Any, ...] = (spec.artifact.uri, spec.artifact.sha256, creds, spec.artifact.size_bytes)
        if trust.facts.active:  # the signers' keys and roots, by reference, as the credentials are read
            try:
                args += (resolve(self.kube, trust, spec.artifact.signature_uri),)
            except UnreadableTrust as e:
                return VerifyResult(R.ACCESS_DENIED, str(e), transient=True)
        result = self.verifier(*args)
        metrics.VERIFY_SECONDS.labels(ns).observe(time.monotonic() - t0)
        metrics.VERIFICATIONS.labels(ns, model, result.reason).inc()
        if result.ok and result.size_bytes:  # a failure's size is what some other URL returned: no oracle
            metrics.BYTES_HASHED.labels(ns).inc(result.size_bytes)
        return result


def _result_of(key: Key, future: Future[VerifyResult]) -> VerifyResult:
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - reported as a transient failure
        log.exception("verification of %s/%s crashed", *key)
        return VerifyResult(R.FETCH_FAILED, f"verification crashed: {type(e).__name__}", transient=True)
