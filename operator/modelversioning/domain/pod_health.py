"""What a slot's pods say about it, read purely from their status: the first problem worth reporting
on the endpoint (Degraded, with a Warning Event), or nothing.

The kubelet keeps retrying every one of these (a back-off, a restart, another probe), so none is a
verdict on the variant: its eligibility and the route do not change (traffic goes to verified ready
pods only, whatever this says). Only the pod status is read (Events are not watched); a message holds
only what stays the same from one retry to the next (no counts, no ages), so a pod that keeps failing
the same way writes the endpoint's status once.

In order (the first found, pods by name):
- the verify-artifact init container exited non-zero: its termination message is the verifier's JSON
  (``--output json``): ``DigestMismatch`` with the digest the pod read, or ``ArtifactCheckFailed``
  with the verifier's reason and message (or the exit code and the last line of its log);
- an image cannot be pulled (``ErrImagePull``, ``ImagePullBackOff``, ...): ``ImagePullFailed``;
- a container keeps exiting (``CrashLoopBackOff``, or restarted and not ready): ``CrashLoop``;
- a container has run for ``not_ready_seconds`` without becoming ready: ``RuntimeNotReady``, naming
  the readiness probe that has not passed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.timestamps import parse_rfc3339

PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
CRASH_LOOP_BACKOFF = "CrashLoopBackOff"
MESSAGE_CHARS = 300  # of a termination message's last line


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str  # names the pod and container; the caller adds the variant and slot
    found: str | None = None  # DigestMismatch: the sha256 the pod's init container read


@dataclass(frozen=True)
class SlotHealth:
    problem: PodProblem | None = None
    recheck_after: float | None = None  # a running, not ready pod reaches the bound in this many seconds


def slot_health(
    pods: Iterable[Mapping[str, Any]], now: float, not_ready_seconds: float, probe: str = ""
) -> SlotHealth:
    """The first problem of a slot's pods (see the module's order), and when to look again for a pod
    that runs, not ready, short of the bound. Terminating and finished pods are not read."""
    live = sorted((p for p in pods if _live(p)), key=lambda p: str(p["metadata"].get("name", "")))
    for check in (_init_failed, _pull_failed, _crash_loop):
        for pod in live:
            if (found := check(pod)) is not None:
                return SlotHealth(found)
    waits = []
    for pod in live:
        found, wait = _not_ready(pod, now, not_ready_seconds, probe)
        if found is not None:
            return SlotHealth(found)
        if wait is not None:
            waits.append(wait)
    return SlotHealth(None, min(waits) if waits else None)


def _live(pod: Mapping[str, Any]) -> bool:
    md = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return not md.get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def _statuses(pod: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [s for s in (pod.get("status") or {}).get(key) or [] if isinstance(s, Mapping)]


def _failed_run(cs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The terminated state of a run that exited non-zero: the current one, or the last one while the
    kubelet backs off or runs it again (so a retry in progress does not hide the failure)."""
    for key in ("state", "lastState"):
        term = (cs.get(key) or {}).get("terminated") or {}
        if term and int(term.get("exitCode") or 0) != 0:
            return term
    return None


def _init_failed(pod: Mapping[str, Any]) -> PodProblem | None:
    for cs in _statuses(pod, "initContainerStatuses"):
        if cs.get("ready") or (term := _failed_run(cs)) is None:
            continue
        where = f"pod {_name(pod)}: init container {cs.get('name', '')}"
        doc = verifier_report(str(term.get("message") or ""))
        if doc is not None and doc.get("reason") in R.DIGEST_MISMATCHES:
            found = str(doc.get("actual") or "") or None
            read = f"the bytes read hash to sha256 {found}" if found else "the bytes read do not match"
            if doc.get("reason") != R.DIGEST_MISMATCH:  # an oci:// manifest or layer
                read = f"{doc.get('reason')}: {str(doc.get('message', ''))[:512]}"
            msg = f"{where} refused the artifact: {read}, not {doc.get('expected', '')}"
            return PodProblem(R.DIGEST_MISMATCH, msg, found)
        if doc is not None:
            msg = f"{where} could not verify the artifact: {doc.get('reason')}: {doc.get('message', '')}"
            return PodProblem(R.ARTIFACT_CHECK_FAILED, msg[:1024])
        return PodProblem(R.ARTIFACT_CHECK_FAILED, f"{where} {_exited(term)}")
    return None


def verifier_report(message: str) -> dict[str, Any] | None:
    """The verifier's JSON result in a termination message (its last such line: the log may hold
    other lines before it), None when there is none."""
    for line in reversed(message.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "reason" in doc:
            return doc
    return None


def _exited(term: Mapping[str, Any]) -> str:
    """'exited with code N (Reason): <last line of its message>'."""
    why = f" ({term['reason']})" if term.get("reason") else ""
    lines = [x for x in str(term.get("message") or "").strip().splitlines() if x.strip()]
    last = f": {lines[-1].strip()[:MESSAGE_CHARS]}" if lines else ""
    return f"exited with code {term.get('exitCode')}{why}{last}"


def _pull_failed(pod: Mapping[str, Any]) -> PodProblem | None:
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _statuses(pod, key):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_FAILURES:
                who = f"pod {_name(pod)}: container {cs.get('name', '')}"
                return PodProblem(R.IMAGE_PULL_FAILED, f"{who} cannot pull image {cs.get('image', '')}")
    return None


def _crash_loop(pod: Mapping[str, Any]) -> PodProblem | None:
    for cs in _statuses(pod, "containerStatuses"):
        if cs.get("ready"):
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") == CRASH_LOOP_BACKOFF or (int(cs.get("restartCount") or 0) > 0 and last):
            how = _exited(last) if last else "exits"
            return PodProblem(
                R.CRASH_LOOP, f"pod {_name(pod)}: container {cs.get('name', '')} keeps exiting: {how}"
            )
    return None


def _not_ready(
    pod: Mapping[str, Any], now: float, bound: float, probe: str
) -> tuple[PodProblem | None, float | None]:
    for cs in _statuses(pod, "containerStatuses"):
        started = parse_rfc3339(str(((cs.get("state") or {}).get("running") or {}).get("startedAt") or ""))
        if cs.get("ready") or started is None:
            continue
        left = bound - (now - started.timestamp())
        if left > 0:
            return None, left
        what = f"its readiness probe ({probe})" if probe else "its readiness probe"
        msg = (
            f"pod {_name(pod)}: container {cs.get('name', '')} is running and not ready {bound:g}s after it "
            f"started: {what} has not passed"
        )
        return PodProblem(R.RUNTIME_NOT_READY, msg), None
    return None, None


def probe_text(probe: Mapping[str, Any] | None) -> str:
    """A readiness probe in a few words ('GET /health on port http', 'TCP port http'), '' without one."""
    if not probe:
        return ""
    if (get := probe.get("httpGet")) is not None:
        return f"GET {get.get('path', '/')} on port {get.get('port', '')}"
    if (tcp := probe.get("tcpSocket")) is not None:
        return f"TCP port {tcp.get('port', '')}"
    if (ex := probe.get("exec")) is not None:
        return f"exec {' '.join(str(c) for c in ex.get('command') or [])}"
    return ""
