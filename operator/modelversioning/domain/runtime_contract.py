"""The runtime's word checked against the version's recorded signature during a canary (pure): with the
Model's ``spec.ioContract.checkRuntimeMetadata``, a canary whose runtime's Open Inference Protocol model
metadata has not been read, or differs from the version's accepted ``status.ioSignature``, is held at 0%
(its share goes to the baseline) with a reason; the rollout's state is kept meanwhile (no step, no
analysis, no pause elapses on a canary that takes nothing).

- ``RuntimeCheck``: what the probe found (handlers.runtime_contract asks, analysis.oip reads).
- ``runtime_verdict``: the recorded signature against the served one, with ``io_contract.diff``: any
  change (a tensor added or removed, a dtype, a shape with -1 as any) is a mismatch.
- ``held``: the weights with the canary's share given to the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelversioning.api import wire as R
from modelversioning.domain.io_contract import IOSignature, describe, diff

OK, PENDING, MISMATCH = "ok", "pending", "mismatch"
RUNTIME_RECHECK_SECONDS = 10.0  # a held canary (pending or unreadable metadata) is looked at again after


@dataclass(frozen=True)
class RuntimeCheck:
    state: str  # ok | pending | mismatch
    message: str = ""

    @property
    def reason(self) -> str:
        return R.RUNTIME_SIGNATURE_MISMATCH if self.state == MISMATCH else R.RUNTIME_CONTRACT_PENDING


def runtime_verdict(version: str, recorded: IOSignature, served: IOSignature) -> RuntimeCheck:
    """Does the runtime serve the inputs/outputs ``version`` recorded?"""
    changes = diff(recorded, served)
    if not changes:
        return RuntimeCheck(OK, f"the runtime's OIP metadata matches {version}'s signature")
    return RuntimeCheck(
        MISMATCH,
        f"the canary's runtime serves other inputs/outputs than {version}'s recorded signature "
        f"({describe(changes)}; recorded -> served): held at 0%",
    )


def held(weights: Mapping[str, int], canary: str, baseline: str) -> dict[str, int]:
    """The canary takes nothing; its share goes to the baseline."""
    out = {k: int(v) for k, v in weights.items()}
    out[baseline] = out.get(baseline, 0) + out.get(canary, 0)
    out[canary] = 0
    return out
