"""The ModelVersion's reasons: ArtifactVerified (oci:// and signed artifacts too), StageTransition, InUse
and Deleting, status.history and its Events, and the I/O contract.

Declared in the one registry (``api.reason_registry``); ``api.reasons`` re-exports every name here
(and ``api.wire`` re-exports ``api.reasons``): code imports a reason from ``api.reasons`` or names it as
``wire.X``. Imports nothing of the project but the registry's machinery.
"""

from __future__ import annotations

from modelversioning.api.reason_registry import (
    VERSION_CONDITION,
    VERSION_EVENT,
    VERSION_STAGE,
    VERSION_VERIFIED,
    reason,
)

# ---- ModelVersion: condition ArtifactVerified (also the Warning Event's reason when it fails)
_VV = VERSION_VERIFIED
VERIFIED = reason("Verified", _VV, meaning="the artifact was read in full and hashes to spec.artifact.sha256")
VERIFYING = reason("Verifying", _VV, meaning="a fetch-and-hash is running (status Unknown)")
NOT_FOUND = reason("NotFound", _VV, meaning="nothing at the URI (yet); retried with backoff", transient=True)
FETCH_FAILED = reason(
    "FetchFailed", _VV, meaning="network or store error while reading; retried with backoff", transient=True
)
ACCESS_DENIED = reason(
    "AccessDenied", _VV, meaning="credentials missing or refused (a missing Secret is retried)", no_slot=True
)
URI_REFUSED = reason(
    "URIRefused",
    _VV,
    meaning="the artifact policy does not allow this URI (or these credentials)",
    stalls_version=True,
    no_slot=True,
)
LIMIT_EXCEEDED = reason(
    "LimitExceeded",
    _VV,
    meaning="timeoutSeconds/maxFiles/maxTotalBytes/memoryLimitBytes reached",
    no_slot=True,
    stalls_version=True,
)
SIZE_MISMATCH = reason(
    "SizeMismatch",
    _VV,
    meaning="the bytes read differ from spec.artifact.sizeBytes",
    no_slot=True,
    stalls_version=True,
)
# ---- ModelVersion: ArtifactVerified of an oci:// artifact (artifacts.oci_fetch)
TAG_WITHOUT_DIGEST = reason(
    "TagWithoutDigest",
    _VV,
    meaning="an oci:// URI without @sha256:<manifest digest> (a tag moves); admission refuses it too, and "
    "`kubectl models register` resolves a tag to its digest",
    no_slot=True,
    stalls_version=True,
)
MANIFEST_DIGEST_MISMATCH = reason(
    "ManifestDigestMismatch",
    _VV,
    meaning="the registry's manifest does not hash to the digest the oci:// URI pins",
    no_slot=True,
    stalls_version=True,
    digest_mismatch=True,
)
LAYER_DIGEST_MISMATCH = reason(
    "LayerDigestMismatch",
    _VV,
    meaning="a layer of the pinned manifest does not hash to its descriptor's digest (or is not its size); "
    "nothing of it was laid out",
    no_slot=True,
    stalls_version=True,
    digest_mismatch=True,
)
UNSUPPORTED_ARTIFACT_LAYOUT = reason(
    "UnsupportedArtifactLayout",
    _VV,
    meaning="the pinned manifest is not a layout the verifier lays out (an index, an unknown or zstd media "
    "type, foreign URLs, a digest other than sha256, no layers)",
    no_slot=True,
    stalls_version=True,
)
UNSAFE_ARCHIVE = reason(
    "UnsafeArchive",
    _VV,
    meaning="a tar layer holds an entry that would leave the model directory (an absolute path, '..', a "
    "link out) or a device/FIFO; nothing was laid out",
    no_slot=True,
    stalls_version=True,
)
# ---- ModelVersion: condition StageTransition
_VS = VERSION_STAGE
# Signed models (domain.trust): ArtifactVerified False at or beyond the trust policy's requiredFrom, and
# StageTransition False for a promotion into it; no slot (the init container checks the same).
_SIG = {"no_slot": True, "stalls_version": True}
SIGNATURE_MISSING = reason(
    "SignatureMissing", _VV, _VS, meaning="a signature is required; there is none at its location", **_SIG
)
SIGNATURE_INVALID = reason(
    "SignatureInvalid", _VV, _VS, meaning="the signature bundle is malformed, truncated or tampered", **_SIG
)
SIGNER_NOT_TRUSTED = reason(
    "SignerNotTrusted", _VV, _VS, meaning="signed by a key or identity a trust policy does not accept", **_SIG
)
SIGNATURE_DIGEST_MISMATCH = reason(
    "SignatureDigestMismatch", _VV, _VS, meaning="a valid signature over other files or digests", **_SIG
)
CERTIFICATE_EXPIRED = reason(
    "CertificateExpired", _VV, _VS, meaning="the signing certificate (or its chain) has expired", **_SIG
)
SIGNED = reason("Signed", _VV, meaning="status.artifact.signature.outcome: a valid signature over the files")
IN_EFFECT = reason("InEffect", _VS, meaning="status.stage equals spec.stage")
TRANSITION_NOT_ALLOWED = reason(
    "TransitionNotAllowed",
    _VS,
    meaning="no path in the stage graph to the requested stage",
    stalls_version=True,
)
LINEAGE_INCOMPLETE = reason(
    "LineageIncomplete", _VS, meaning="production needs every lineage field it names", stalls_version=True
)
PROMOTED = reason("Promoted", VERSION_EVENT, meaning="a hop up candidate -> staging -> production")
MOVED = reason("Moved", VERSION_EVENT, meaning="any other allowed hop, e.g. production -> archived")
METRIC_GATE_FAILED = reason(
    "MetricGateFailed", _VS, meaning="a Model's metric gate refused (message: the numbers)"
)
PRODUCTION_RECORD_INCOMPLETE = reason(
    "ProductionRecordIncomplete",
    _VS,
    VERSION_EVENT,
    meaning="a served.<figure> gate cannot be judged: the production record lacks the figure, holds it "
    "incomplete or counts too few requests (StageTransition); as a Warning Event: a closed serving "
    "period's summary was given up incomplete (status.servingHistory[].production.incomplete says why)",
)
ARCHIVE_WHILE_SERVING = reason(
    "ArchiveWhileServing",
    _VS,
    meaning="archived is refused while an endpoint routes traffic to the version (use kubectl models revoke)",
    stalls_version=True,
)
APPROVAL_REQUIRED = reason(
    "ApprovalRequired", _VS, meaning="a Model's transition needs more distinct ModelApprovals that count"
)
IMAGE_NOT_PINNED = reason(
    "ImageNotPinned",
    _VS,
    meaning="the platform's policy requires runtime.image@sha256:<digest> from this stage",
    stalls_version=True,
)
# ---- ModelVersion: conditions InUse and Deleting
SERVED = reason("Served", VERSION_CONDITION, meaning="InUse=True: an endpoint variant names this version")
NOT_SERVED = reason("NotServed", VERSION_CONDITION, meaning="InUse=False: no endpoint names this version")
IN_USE = reason(
    "InUse", VERSION_CONDITION, meaning="Deleting=False: deletion is held by the in-use finalizer"
)
# ---- ModelVersion: status.history and Events
REGISTERED = reason(
    "Registered", VERSION_EVENT, meaning="history: the first entry, when the version enters candidate"
)
STAGE_CHANGED = reason(
    "StageChanged",
    VERSION_EVENT,
    meaning="Event (Normal): the hops one walk made, with actor and reason (and the verification that "
    "allowed them, when it came in the same write)",
)
STAGE_TRANSITION_BLOCKED = reason(
    "StageTransitionBlocked", VERSION_EVENT, meaning="Event (Warning): a gate or the graph refused"
)
HISTORY_TRIMMED = reason(
    "HistoryTrimmed", VERSION_EVENT, meaning="Event (Normal): a history entry beyond the cap"
)
DELETION_HELD = reason(
    "DeletionHeld", VERSION_EVENT, meaning="Event (Warning): deletion waits until no endpoint uses it"
)
# ---- The I/O contract (domain.io_contract): ArtifactVerified, Events and status.ioSignature.contract
_IO = {"no_slot": True, "stalls_version": True}
# fmt: off
IO_SIGNATURE_CHANGED = reason("IOSignatureChanged", _VV, VERSION_EVENT, **_IO, meaning="a MINOR/PATCH "
                              "changes the I/O of the previous release of its MAJOR (the message names them)")
IO_SIGNATURE_MISSING = reason("IOSignatureMissing", _VV, VERSION_EVENT, **_IO,
                              meaning="no I/O signature, and the Model's requireSignature asks for one")
IO_CONTRACT_PENDING = reason("IOContractPending", _VV, meaning="verified, waiting for the previous release's "
                             "I/O signature to be decided (Unknown)")
IO_SIGNATURE_CHECKED = reason("IOSignatureChecked", VERSION_CONDITION, meaning="the baseline's I/O is kept")
IO_SIGNATURE_NOT_CHECKED = reason("IOSignatureNotChecked", VERSION_CONDITION,
                                  meaning="no signature, or no earlier release of the MAJOR with one")
# fmt: on
del _VV, _VS, _SIG, _IO
