"""kstatus conditions derived from our own (domain.kstatus)."""

from __future__ import annotations

from modelversioning.domain import kstatus
from modelversioning.domain.conditions import FALSE, TRUE, UNKNOWN, Cond


def pair(conds: tuple[Cond, Cond]) -> tuple[str, str]:
    reconciling, stalled = conds
    return reconciling.status, stalled.status


def test_endpoint() -> None:
    ok = [
        Cond("Ready", TRUE, "Ready"),
        Cond("Progressing", FALSE, "Converged"),
        Cond("Degraded", FALSE, "AsExpected"),
    ]
    assert pair(kstatus.for_endpoint(ok)) == (FALSE, FALSE)
    rolling = [Cond("Progressing", TRUE, "RollingOut"), Cond("Degraded", FALSE, "AsExpected")]
    assert pair(kstatus.for_endpoint(rolling)) == (TRUE, FALSE)
    failed = [Cond("Progressing", FALSE, "RolloutFailed"), Cond("Degraded", TRUE, "RolloutFailed", "bad")]
    rec, st = kstatus.for_endpoint(failed)
    assert (rec.status, st.status, st.message) == (FALSE, TRUE, "bad")
    # waiting for something that will come (no eligible variant yet) is progress, not a stall
    waiting = [Cond("Progressing", TRUE, "WaitingForVariants"), Cond("Degraded", TRUE, "NoEligibleVariant")]
    assert pair(kstatus.for_endpoint(waiting)) == (TRUE, FALSE)


def test_version() -> None:
    assert pair(kstatus.for_version([Cond("ArtifactVerified", FALSE, "DigestMismatch")])) == (FALSE, TRUE)
    assert pair(kstatus.for_version([Cond("ArtifactVerified", UNKNOWN, "Verifying")])) == (TRUE, FALSE)
    assert pair(kstatus.for_version([Cond("ArtifactVerified", FALSE, "NotFound")])) == (TRUE, FALSE)
    done = [Cond("ArtifactVerified", TRUE, "Verified"), Cond("StageTransition", TRUE, "InEffect")]
    assert pair(kstatus.for_version(done)) == (FALSE, FALSE)
    # verified, its stage waiting at a gate that a person or a metric can open: in progress, not stalled
    gated = [Cond("ArtifactVerified", TRUE, "Verified"), Cond("StageTransition", FALSE, "ApprovalRequired")]
    assert pair(kstatus.for_version(gated)) == (TRUE, FALSE)
