"""What the I/O contract rule reads from the watch cache (the gather step of ``domain.version_contract``):
the version's declared signature, the accepted contracts of its model's other versions (their
status.ioSignature, written by the operator only, and the Model's record of deleted ones), which lower
versions are still being decided, and the Model's policy (spec.ioContract).

Only versions registered no later than this one are offered (the rule:
``domain.version_contract.registered_before``): the registry's memory (the Model's
``status.versions[].firstSeen``), else the ModelVersion's creationTimestamp, to the second. A lower
version registered later never re-judges this one; it is itself checked against the highest lower
release registered before it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelversioning.api import wire as R
from modelversioning.api.model import ModelSpec
from modelversioning.api.modelversion_spec import ModelVersionSpec
from modelversioning.api.wire import MODEL
from modelversioning.domain import conditions as cond
from modelversioning.domain.io_contract import IOSignature, Known
from modelversioning.domain.platform_policy import Floors
from modelversioning.domain.version_contract import registered_before
from modelversioning.domain.version_facts import ContractFacts
from modelversioning.handlers.store import Store

ACCEPTED = frozenset({R.IO_SIGNATURE_CHECKED, R.IO_SIGNATURE_NOT_CHECKED})


def accepted_signature_digest(status: Mapping[str, Any]) -> str:
    """The digest of a version's accepted I/O signature ("": none, or refused by the contract)."""
    rec = status.get("ioSignature")
    if not isinstance(rec, Mapping) or not rec.get("digest"):
        return ""
    contract = rec.get("contract") or {}
    return str(rec["digest"]) if contract.get("reason") in ACCEPTED else ""


def known_of(status: Mapping[str, Any], version: str, deleting: bool) -> Known | None:
    """What one ModelVersion's status says of its contract (None: nothing to compare with)."""
    rec = status.get("ioSignature")
    if isinstance(rec, Mapping) and (rec.get("contract") or {}).get("reason") in ACCEPTED:
        digest = accepted_signature_digest(status)
        if not digest:
            return None
        whole = None if rec.get("truncated") else IOSignature.of(rec)  # a truncated one: its digest only
        return Known(version, whole, digest)
    verified = cond.get(status.get("conditions"), "ArtifactVerified") or {}
    undecided = (
        not isinstance(rec, Mapping) or (rec.get("contract") or {}).get("reason") == R.IO_CONTRACT_PENDING
    )
    if undecided and verified.get("status") != "False" and not deleting:
        return Known(version, pending=True)  # being verified: its contract is decided soon
    return None


def contract_facts(
    store: Store, namespace: str, name: str, spec: ModelVersionSpec, floors: Floors | None = None
) -> ContractFacts:
    """The I/O contract's facts for the ModelVersion ``name`` (``floors``: the platform's policies)."""
    mbody = store.get(MODEL.kind, namespace, spec.model) or {}
    records = [r for r in (mbody.get("status") or {}).get("versions") or [] if isinstance(r, Mapping)]
    first_seen = {str(r.get("version", "")): r.get("firstSeen") for r in records}
    mine = first_seen.get(spec.version) or _created(store.get("ModelVersion", namespace, name))
    known: dict[str, Known] = {}
    later: set[str] = set()
    for (_, other), body in store.of_model("ModelVersion", namespace, spec.model):
        version = str((body.get("spec") or {}).get("version", ""))
        if other == name or not version:
            continue
        if not registered_before(first_seen.get(version) or _created(body), mine):
            later.add(version)
            continue  # registered after this version: never its baseline
        deleting = bool((body.get("metadata") or {}).get("deletionTimestamp"))
        k = known_of(body.get("status") or {}, version, deleting)
        if k is not None:
            known[version] = k
    for r in records:
        v, digest = str(r.get("version", "")), r.get("signatureDigest")
        if not digest or v in known or v in later or v == spec.version:
            continue
        if not registered_before(r.get("firstSeen"), mine):
            continue
        known[v] = Known(v, digest=str(digest))  # its ModelVersion is gone: the record remembers
    require, by = _required(mbody, spec.model)
    if not require and floors is not None and floors.io_signature_required_by:
        policies = ", ".join(floors.io_signature_required_by)
        require, by = True, f"ModelPlatformPolicy {policies}: spec.serving.requireIOSignature"
    declared = spec.signature.to_k8s() if spec.signature is not None else None
    return ContractFacts(declared=declared, known=tuple(known.values()), require=require, required_by=by)


def _created(body: Mapping[str, Any] | None) -> Any:
    return ((body or {}).get("metadata") or {}).get("creationTimestamp")


def _required(mbody: Mapping[str, Any], model: str) -> tuple[bool, str]:
    try:
        mspec = ModelSpec.model_validate(mbody.get("spec") or {})
    except ValueError:
        return False, ""
    if mspec.io_contract.require_signature:
        return True, f"Model {model}: spec.ioContract.requireSignature"
    return False, ""
