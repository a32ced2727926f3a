"""The reason registry's machinery: where a reason appears, its properties (``ReasonInfo``), the
registry itself (``REASONS``), the retired names, and ``reason()`` that declares one. The reasons are
declared in ``api.reasons`` (re-exported by ``api.wire``). Imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------- reasons
# Every condition/Event reason the operator reports (CamelCase, stable: users and alerts match on
# them), with its properties. `reason()` registers one and returns the plain string, so code compares
# and writes strings while the tables below are derived from one declaration.

ENDPOINT_VARIANT = "ModelEndpoint status.variants[].reason"
ENDPOINT_CONDITION = "ModelEndpoint condition"
ENDPOINT_EVENT = "ModelEndpoint Event"
ROLLBACK_READY = "ModelEndpoint condition RollbackReady (advisory: never Degraded, never stalls)"
ROUTE_SPLIT = "ModelEndpoint route split (RoutesReady message)"
VERSION_VERIFIED = "ModelVersion ArtifactVerified"
VERSION_STAGE = "ModelVersion StageTransition"
VERSION_CONDITION = "ModelVersion condition"
VERSION_EVENT = "ModelVersion Event / status.history"
MODEL_CONDITION = "Model condition"
MODEL_EVENT = "Model Event"
KSTATUS = "kstatus condition Reconciling / Stalled (every kind)"


@dataclass(frozen=True)
class ReasonInfo:
    name: str
    where: tuple[str, ...]  # the conditions / Events that carry it
    meaning: str
    # kstatus Stalled (Flux) and Argo CD Degraded: as a ModelEndpoint's Degraded reason, or as the
    # reason of a ModelVersion's failed ArtifactVerified/StageTransition
    stalls_endpoint: bool = False
    stalls_version: bool = False
    permanent: bool = False  # a variant with it is bad until its spec changes (no retry fixes it)
    transient: bool = False  # the operator retries by itself; reported as progressing, never stalled
    no_slot: bool = False  # a version failing verification with it never gets a slot (Deployment)
    # the bytes are not the pinned ones (a file, a manifest or a layer): the variant says DigestMismatch,
    # the ModelVersion keeps it for the generation, an init container reporting it refuses the slot
    digest_mismatch: bool = False


REASONS: dict[str, ReasonInfo] = {}

# Event reasons the operator posted once and no longer does (issue #25: an Event is for a transition a
# person acts on; every Event costs a write that each watcher of the API server pays for). Never
# declared again, so that no alert still matching one of them ever sees it with another meaning.
RETIRED: dict[str, str] = {
    "ArtifactVerified": "a verified artifact is in ArtifactVerified=True and status.artifact; the "
    "StageChanged Event of a walk the verification allowed says it too",
    "ModelCreated": "the Model the operator creates as the registry's record carries the "
    "modelversioning.io/created-by annotation",
}


def reason(name: str, *where: str, meaning: str, **props: bool) -> str:
    if name in REASONS:
        raise ValueError(f"reason {name} declared twice")
    if name in RETIRED:
        raise ValueError(f"reason {name} was retired ({RETIRED[name]}): choose another name")
    REASONS[name] = ReasonInfo(name, where, meaning, **props)
    return name
