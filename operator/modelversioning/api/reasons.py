"""The registry of every condition/Event reason the operator reports, with its properties: the one
import surface of the reasons.

Part of the wire vocabulary: ``api.wire`` re-exports every name here, so code names a reason as
``wire.READY`` (or ``R.READY``) wherever it is declared. Each reason is declared once, in the module of
the kind it belongs to, and re-exported here: ``api.endpoint_reasons`` (ModelEndpoint),
``api.version_reasons`` (ModelVersion), ``api.model_reasons`` (Model: the registry's record and
retention), ``api.runtime_reasons`` (the runtime catalog); the reasons of both kinds (kstatus) are
declared here. ``from modelversioning.api.reasons import X`` works for every one of them. Like
``wire``, these modules import nothing of the project but the registry's machinery
(``api.reason_registry``), and no third-party package.
"""

from __future__ import annotations

# The registry (api.reason_registry) and every reason declared in it; `reason()` registers one and
# returns the plain string, so code compares and writes strings while the tables below are derived
# from one declaration.
from modelversioning.api.reason_registry import ENDPOINT_CONDITION as ENDPOINT_CONDITION
from modelversioning.api.reason_registry import ENDPOINT_EVENT as ENDPOINT_EVENT
from modelversioning.api.reason_registry import ENDPOINT_VARIANT as ENDPOINT_VARIANT
from modelversioning.api.reason_registry import KSTATUS as KSTATUS
from modelversioning.api.reason_registry import MODEL_CONDITION as MODEL_CONDITION
from modelversioning.api.reason_registry import MODEL_EVENT as MODEL_EVENT
from modelversioning.api.reason_registry import REASONS as REASONS
from modelversioning.api.reason_registry import RETIRED as RETIRED
from modelversioning.api.reason_registry import ROLLBACK_READY as ROLLBACK_READY
from modelversioning.api.reason_registry import ROUTE_SPLIT as ROUTE_SPLIT
from modelversioning.api.reason_registry import VERSION_CONDITION as VERSION_CONDITION
from modelversioning.api.reason_registry import VERSION_EVENT as VERSION_EVENT
from modelversioning.api.reason_registry import VERSION_STAGE as VERSION_STAGE
from modelversioning.api.reason_registry import VERSION_VERIFIED as VERSION_VERIFIED
from modelversioning.api.reason_registry import ReasonInfo as ReasonInfo
from modelversioning.api.reason_registry import reason as reason

# ---- kstatus conditions Reconciling / Stalled (both kinds; domain.kstatus)
RECONCILED = reason("Reconciled", KSTATUS, meaning="Reconciling=False: nothing in progress")
NOT_STALLED = reason("NotStalled", KSTATUS, meaning="Stalled=False: no permanent failure")

# The reasons of each kind, declared in their own modules (re-exported here and by api.wire): before the
# tables below, so that they count in them.
from modelversioning.api.endpoint_reasons import *  # noqa: E402, F403
from modelversioning.api.model_reasons import *  # noqa: E402, F403
from modelversioning.api.runtime_reasons import *  # noqa: E402, F403
from modelversioning.api.version_reasons import *  # noqa: E402, F403

# The derived tables (one declaration above, several readers).
ENDPOINT_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_endpoint)
VERSION_STALLS = frozenset(n for n, i in REASONS.items() if i.stalls_version)
PERMANENT = frozenset(n for n, i in REASONS.items() if i.permanent)
TRANSIENT = frozenset(n for n, i in REASONS.items() if i.transient)
# the I/O contract's refusals and wait: the bytes themselves were verified (not fetched again for them)
CONTRACT_REASONS = frozenset({IO_SIGNATURE_CHANGED, IO_SIGNATURE_MISSING, IO_CONTRACT_PENDING})  # noqa: F405
NO_SLOT = frozenset(n for n, i in REASONS.items() if i.no_slot)
DIGEST_MISMATCHES = frozenset(n for n, i in REASONS.items() if i.digest_mismatch)
