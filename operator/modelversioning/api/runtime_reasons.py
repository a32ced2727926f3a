"""The reasons of the runtime catalog (api.runtime, domain.runtime_catalog): a ModelVersion without an
explicit ``spec.runtime`` resolves one from a ModelRuntime / ClusterModelRuntime when it is verified.

Declared in the one registry (``api.reason_registry``) and re-exported by ``api.wire`` like every
other reason. Imports nothing of the project but the registry's machinery.
"""

from __future__ import annotations

from modelversioning.api.reason_registry import (
    ENDPOINT_VARIANT,
    VERSION_CONDITION,
    VERSION_EVENT,
    VERSION_STAGE,
    reason,
)

# The ModelVersion's condition RuntimeResolved (only on a version without spec.runtime), also its Ready,
# the Warning Event when it fails and the StageTransition that refuses a promotion meanwhile.
RUNTIME_RESOLVED_CONDITION = "RuntimeResolved"
_RV = (VERSION_CONDITION, VERSION_EVENT, VERSION_STAGE)
# a failure needs a person (fix the catalog, or register a version that names another runtime): it
# stalls the version; the catalog's next change resolves it again (nothing else does)
_FAILED = {"stalls_version": True}

RUNTIME_RESOLVED = reason(
    "Resolved",
    VERSION_CONDITION,
    meaning="RuntimeResolved=True: status.resolvedRuntime holds the catalog runtime the version runs, for "
    "good",
)
RUNTIME_NOT_FOUND = reason(
    "RuntimeNotFound",
    *_RV,
    meaning="spec.runtimeRef names a ModelRuntime (in the version's namespace) or ClusterModelRuntime that "
    "does not exist",
    **_FAILED,
)
RUNTIME_DISABLED = reason(
    "RuntimeDisabled", *_RV, meaning="spec.runtimeRef names a runtime whose spec.disabled is true", **_FAILED
)
NO_RUNTIME_FOR_FORMAT = reason(
    "NoRuntimeForFormat",
    *_RV,
    meaning="no enabled runtime the version may see supports its format (spec.format, else "
    "lineage.framework) with autoSelect",
    **_FAILED,
)
RUNTIME_FORMAT_MISMATCH = reason(
    "RuntimeFormatMismatch",
    *_RV,
    meaning="spec.runtimeRef names a runtime whose supportedModelFormats do not include the version's format",
    **_FAILED,
)
INVALID_RUNTIME = reason(
    "InvalidRuntime",
    *_RV,
    meaning="spec.runtimeRef names a runtime whose spec does not validate (the message says why)",
    **_FAILED,
)
RUNTIME_NOT_RESOLVED = reason(
    "RuntimeNotResolved",
    ENDPOINT_VARIANT,
    meaning="the ModelVersion has no spec.runtime and no status.resolvedRuntime (yet): nothing is rendered",
)
del _RV, _FAILED
