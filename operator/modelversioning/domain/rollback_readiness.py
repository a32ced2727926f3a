"""Rollback readiness: could the endpoint's fallback take all its live traffic now? (issue #28, part 4)

**The fallback** is what ``kubectl models rollback`` (without ``--to``) moves traffic to, decided from
the same facts the CLI reads (the declared weights and status.effectiveWeights), before eligibility:

- the *primary* is the live variant (never the mirror) with the highest version among those that take
  traffic now or are declared to (weight > 0): the version a rollback would undo;
- the *fallback* is, among the other live variants, the one with the highest version below the
  primary's (ties: more traffic now, then the name). Only a variant already in spec.variants can take
  traffic in one route write (its slot is deployed and warm), so an older version that served once
  (status.routeHistory) but is no variant any more is not a fallback: ``NoFallback`` names it.

**Ready** means every check holds (``check``); the first failing one, in this order, is the reason and
the message names every one that fails:

- a variant below the primary exists (``NoFallback``);
- the same MAJOR as the primary (``FallbackMajorMismatch``);
- not revoked, not archived, at requiredStage for the whole share, no canary exception
  (``FallbackWithdrawn``, domain.revocation);
- its ModelVersion exists, validates and is ArtifactVerified=True for its sha256 (``FallbackNotVerified``);
- its artifact is still at its URI with the verified size and file count: a probe, never the bytes
  (``FallbackArtifactMissing``; ``FallbackArtifactUnchecked`` when the store did not answer);
- its pods pull its runtime image (``FallbackImageUnresolvable``, the pods' status);
- its slot is ours, Available, with a ready pod (``FallbackNotWarm``).

The decision is advisory: it never changes eligibility, the route, Ready or Degraded (so neither kstatus
nor Argo CD health); it is the ``RollbackReady`` condition and a gauge. While the artifact probe of an
otherwise ready fallback has no answer yet, a condition the probe decided stays as it is (``decide``
returns None: a restarted operator writes nothing until a probe finds something else); any other is
``Unknown/FallbackArtifactUnchecked`` until the probe answers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelversioning.api import wire as R
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond
from modelversioning.domain.endpoint_facts import (
    ArtifactCheck,
    EndpointFacts,
    SlotFacts,
    VariantFacts,
    VersionFacts,
)
from modelversioning.domain.revocation import withdrawal
from modelversioning.domain.semver import SemVer
from modelversioning.domain.stages import Stage

CONDITION = R.ROLLBACK_READY_CONDITION


__all__ = ["ArtifactCheck", "Choice", "Readiness", "choose", "choose_for", "decide", "for_endpoint"]

PENDING = ArtifactCheck("")


@dataclass(frozen=True)
class Choice:
    primary: VariantFacts | None  # None: nothing takes or is declared to take traffic
    fallback: VariantFacts | None  # None: no live variant below the primary
    # the newest version below the primary that served before (status.routeHistory), for NoFallback's hint
    served_before: str = ""


@functools.lru_cache(maxsize=4096)  # a few versions, parsed on every endpoint reconcile
def _key(version: str) -> tuple[int, SemVer | None, str]:
    try:
        return (1, SemVer.parse(version), version)
    except ValueError:
        return (0, None, version)


def _sort_key(version: str) -> tuple[int, SemVer, str]:
    k = _key(version)
    return (k[0], k[1] or SemVer(0, 0, 0), k[2])


def choose(
    variants: Sequence[VariantFacts], weights: Mapping[str, int], served: Sequence[str] = ()
) -> Choice:
    """The primary and the fallback (see the module docstring). ``weights``: what each variant carries
    now (status.effectiveWeights); ``served``: versions status.routeHistory says served before."""
    live = [v for v in variants if not v.mirror]
    serving = [v for v in live if weights.get(v.name, 0) > 0 or v.weight > 0]
    if not serving:
        return Choice(None, None)
    primary = max(serving, key=lambda v: (_sort_key(v.version), weights.get(v.name, 0)))
    top = _sort_key(primary.version)
    below = [v for v in live if v.name != primary.name and _sort_key(v.version) < top]
    if not below:
        earlier = sorted({s for s in served if _sort_key(s) < top}, key=_sort_key)
        return Choice(primary, None, earlier[-1] if earlier else "")
    fallback = max(below, key=lambda v: (_sort_key(v.version), weights.get(v.name, 0), v.name))
    return Choice(primary, fallback)


@dataclass(frozen=True)
class Readiness:
    status: str  # True, False, Unknown
    reason: str
    message: str
    primary: str = ""  # variant names ("" : none)
    fallback: str = ""
    fallback_version: str = ""

    @property
    def ready(self) -> bool:
        return self.status == TRUE

    def condition(self) -> Cond:
        return Cond(CONDITION, self.status, self.reason, self.message[:1024])


def _major(version: str) -> int | None:
    k = _key(version)[1]
    return k.major if k is not None else None


def _verified(mv: VersionFacts | None, problem: tuple[str, str] | None) -> str:
    """Why the fallback's ModelVersion is not verified for its digest ("" : it is)."""
    if problem is not None:
        return f"{problem[0]}: {problem[1]}"
    if mv is None:
        return "its ModelVersion is not in the cache"
    if not mv.verified:
        return f"ArtifactVerified is not True for sha256 {mv.digest[:12]} ({mv.verify_reason or 'not yet'})"
    return ""


def _warm(slot: SlotFacts | None) -> str:
    """Why the fallback's slot could not take traffic in one route write ("" : it could)."""
    if slot is None:
        return "it has no slot (it cannot be rendered)"
    if slot.conflict:
        return f"its slot {slot.name} is not ours: {slot.conflict}"
    if not slot.exists or not slot.ours:
        return f"its slot {slot.name} is not deployed ({slot.why})"
    if slot.replicas == 0:
        return f"its slot {slot.name} is scaled to 0 replicas"
    if not slot.available or slot.ready_replicas < 1:
        return f"its slot {slot.name} has {slot.ready_replicas}/{slot.replicas} ready pods ({slot.why})"
    return ""


def _image(slot: SlotFacts | None) -> str:
    problem = slot.pod_problem if slot is not None else None
    if problem is not None and problem.reason == R.IMAGE_PULL_FAILED:
        return problem.message
    return ""


def _artifact(check: ArtifactCheck) -> tuple[str, str] | None:
    """(reason, why) when the probe says the verified bytes are not (known to be) there."""
    if check.state in (R.PROBE_MISSING, R.PROBE_CHANGED):
        return R.FALLBACK_ARTIFACT_MISSING, check.message or check.state
    if check.state == R.PROBE_UNREACHABLE:
        return R.FALLBACK_ARTIFACT_UNCHECKED, check.message or "the store did not answer"
    return None


def check(
    fallback: VariantFacts, primary: VariantFacts, required: Stage, artifact: ArtifactCheck
) -> list[tuple[str, str]]:
    """(reason, message) of every check the fallback fails, in the order of the module's table."""
    fails: list[tuple[str, str]] = []
    fm, pm = _major(fallback.version), _major(primary.version)
    if fm is None or fm != pm:
        fails.append((R.FALLBACK_MAJOR_MISMATCH,
                      f"MAJOR {fm if fm is not None else '?'} differs from {primary.version} (MAJOR {pm}): "
                      "a breaking I/O change for clients"))  # fmt: skip
    mv = fallback.mv
    if (w := withdrawal(mv, required)) and mv is not None:
        why = {R.UNAVAILABLE_REVOKED: f"revoked ({mv.revoked})", R.UNAVAILABLE_ARCHIVED: "archived"}.get(
            w, f"stage {mv.stage} is below requiredStage {required}"
        )
        fails.append((R.FALLBACK_WITHDRAWN, why))
    elif mv is not None and mv.stage is None:
        fails.append((R.FALLBACK_WITHDRAWN, f"it has no stage yet (needs {required})"))
    if why := _verified(mv, fallback.problem):
        fails.append((R.FALLBACK_NOT_VERIFIED, why))
    if (art := _artifact(artifact)) is not None:
        fails.append(art)
    if why := _image(fallback.desired):
        fails.append((R.FALLBACK_IMAGE_UNRESOLVABLE, why))
    if why := _warm(fallback.desired):
        fails.append((R.FALLBACK_NOT_WARM, why))
    return fails


# recorded reasons an unanswered probe keeps (the probe decided them: a restarted operator re-asks
# before it says anything else); any other recorded reason says "not probed yet" while it waits
_PROBED = frozenset({R.FALLBACK_READY, R.FALLBACK_ARTIFACT_MISSING, R.FALLBACK_ARTIFACT_UNCHECKED})


def decide(
    choice: Choice, required: Stage, artifact: ArtifactCheck, recorded: str | None = None
) -> Readiness | None:
    """RollbackReady for the chosen fallback (None: keep the recorded condition; see the module).
    ``recorded``: the reason of the RollbackReady condition in status (None: none)."""
    p, fb = choice.primary, choice.fallback
    if p is None:
        return Readiness(
            UNKNOWN, R.NOTHING_SERVING, "no live variant takes traffic: nothing to fall back from"
        )
    if fb is None:
        hint = f"; {choice.served_before} served before (status.routeHistory)" if choice.served_before else ""
        msg = (
            f"no live variant runs a version below {p.name} ({p.version}){hint}: keep the previous version "
            "as a variant at weight 0 so that kubectl models rollback can move traffic to it"
        )
        return Readiness(FALSE, R.NO_FALLBACK, msg, p.name)
    fails = check(fb, p, required, artifact)
    head = f"fallback {fb.name} ({fb.version}) for {p.name} ({p.version})"
    if fails:
        msg = f"{head}: " + "; ".join(f"{r}: {m}" for r, m in fails)
        return Readiness(FALSE, fails[0][0], msg, p.name, fb.name, fb.version)
    if not artifact.state:  # everything else holds; the probe has not answered yet
        if recorded in _PROBED:
            return None
        msg = f"{head}: everything but its artifact holds; the artifact has not been probed yet"
        return Readiness(UNKNOWN, R.FALLBACK_ARTIFACT_UNCHECKED, msg, p.name, fb.name, fb.version)
    slot = fb.desired.name if fb.desired is not None else "?"
    stage = fb.mv.stage if fb.mv is not None else "?"
    msg = f"{head}: verified, {stage}, same MAJOR, artifact at its URI, slot {slot} has ready pods"
    return Readiness(TRUE, R.FALLBACK_READY, msg, p.name, fb.name, fb.version)


def choose_for(f: EndpointFacts) -> Choice:
    """The choice on an endpoint's facts: status.effectiveWeights, the declared weights, and the versions
    its route history names (for NoFallback's hint)."""
    served = [s.version for c in f.history.changes for s in c.split]
    return choose(f.variants, f.previous_weights, served)


def for_endpoint(f: EndpointFacts) -> Readiness | None:
    """RollbackReady of an endpoint from its facts (the reconcile's; None: keep the recorded one)."""
    try:
        required = Stage(f.required_stage)
    except ValueError:  # a stage the built-in order does not know: no claim either way
        return None
    recorded = f.previous_conditions.get(CONDITION)
    return decide(choose_for(f), required, f.fallback_artifact, recorded[1] if recorded else None)
