"""The Model's reasons: the registry's record (its condition Ready and its Events) and retention.

Declared in the one registry (``api.reason_registry``); ``api.reasons`` re-exports every name here
(and ``api.wire`` re-exports ``api.reasons``): code imports a reason from ``api.reasons`` or names it as
``wire.X``. Imports nothing of the project but the registry's machinery.
"""

from __future__ import annotations

from modelversioning.api.reason_registry import (
    MODEL_CONDITION,
    MODEL_EVENT,
    VERSION_EVENT,
    VERSION_VERIFIED,
    reason,
)

# ---- The registry (Model)
VERSION_REUSED = reason(
    "VersionReused",
    VERSION_VERIFIED,
    meaning="the version number was registered before with another digest",
    no_slot=True,
)
RECORD_PENDING = reason(
    "RecordPending",
    VERSION_VERIFIED,
    meaning="verified, waiting for the Model's status.versions to record this version and digest (Unknown)",
)
RETENTION = reason(
    "Retention", VERSION_EVENT, meaning="history actor/reason: a Model's retention archived the version"
)
ARTIFACT_DELETED = reason(
    "ArtifactDeleted",
    VERSION_VERIFIED,
    MODEL_EVENT,
    VERSION_EVENT,
    meaning="retention deleted the artifact from storage; record kept (Event (Normal) on both)",
    no_slot=True,
)
ARTIFACT_DELETE_FAILED = reason(
    "ArtifactDeleteFailed",
    MODEL_CONDITION,
    VERSION_EVENT,
    meaning="Ready=False / Event (Warning) on the version: retention could not delete it (retried)",
)
ARTIFACT_DELETE_DUE = reason(
    "ArtifactDeleteDue",
    MODEL_EVENT,
    meaning="Event (Normal) on the Model: dry run; this artifact would be deleted now (once per version)",
)
ARTIFACT_DELETE_REFUSED = reason(
    "ArtifactDeleteRefused",
    MODEL_EVENT,
    VERSION_EVENT,
    meaning="Event (Warning) on the version and status.refusedDeletions: retention will not delete an "
    "artifact the version does not provably own (no storage root, outside it, never verified, a URI "
    "overlapping another registered one, the digest changed, a limit); nothing deleted",
)
ARCHIVE_DUE = reason(
    "ArchiveDue", MODEL_EVENT, meaning="Event (Normal) on the Model: retention archives a version"
)
MODEL_RECORDED = reason("Recorded", MODEL_CONDITION, meaning="Ready=True: every version is recorded")
INVALID_POLICY = reason("InvalidPolicy", MODEL_CONDITION, meaning="Ready=False: the policy cannot be applied")
