"""The trust policies of a ModelVersion (gather) and their material, read by reference (the verifier).

``trust_plan`` turns the Model's ``spec.trust`` and the selecting ModelPlatformPolicies' ``spec.trust``
(wire form, from the watch cache) into domain.trust's ``TrustFacts`` (each source, its requiredFrom
and its entries' ids, and a digest of what they name) plus the references to read. ``resolve`` reads
them when a verification starts, as the artifact's credentials are read: a Model's references in the
Model's namespace only (a tenant names nothing elsewhere), a platform policy's in the namespace the
policy names. Trust material is never fetched from anywhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelversioning.api.trust import PlatformTrust, TrustPolicy
from modelversioning.api.wire import MODEL
from modelversioning.artifacts import TrustEntry, TrustMaterial
from modelversioning.domain.platform_policy import Floors
from modelversioning.domain.stages import Stage
from modelversioning.domain.trust import TrustFacts, TrustSource
from modelversioning.handlers.store import Store

_LISTS = (
    ("keys", "key", "publicKeyRef"),
    ("certificates", "cert", "rootsRef"),
    ("sigstore", "sig", "trustConfigRef"),
)
_KIND = {"keys": "key", "certificates": "certificate", "sigstore": "sigstore"}


@dataclass(frozen=True)
class EntryRef:
    """One trust entry and where its document is."""

    id: str
    source: str
    kind: str  # key | certificate | sigstore
    namespace: str
    ref_kind: str  # ConfigMap | Secret
    name: str
    key: str
    identity: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class TrustPlan:
    facts: TrustFacts
    refs: tuple[EntryRef, ...] = ()


NO_TRUST = TrustPlan(TrustFacts())


class UnreadableTrust(Exception):
    """A referenced ConfigMap/Secret (or its key) cannot be read: the verification is retried."""


class Reader(Protocol):
    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...
    def read_configmap(self, namespace: str, name: str) -> dict[str, str]: ...


def trust_plan(
    namespace: str,
    model: str,
    model_trust: Mapping[str, Any] | None,
    platform: Iterable[tuple[str, Mapping[str, Any]]],
) -> TrustPlan:
    """The trust policies of a version of ``model`` in ``namespace`` (wire form; NO_TRUST: none)."""
    sources: list[TrustSource] = []
    refs: list[EntryRef] = []
    if model_trust is not None:
        _add(f"Model {model}", model_trust, TrustPolicy, namespace, sources, refs)
    for name, spec in sorted(platform, key=lambda p: p[0]):
        _add(f"ModelPlatformPolicy {name}", spec, PlatformTrust, None, sources, refs)
    if not sources:
        return NO_TRUST
    canon = [(s.name, s.required_from, s.entries) for s in sources], [r.__dict__ for r in refs]
    digest = hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]
    return TrustPlan(TrustFacts(tuple(sources), digest), tuple(refs))


def plan_for(store: Store, namespace: str, model: str, floors: Floors) -> TrustPlan:
    """The trust plan of a version of ``model`` from the watch cache (its Model's spec as stored)."""
    body = store.get(MODEL.kind, namespace, model) or {}
    return trust_plan(namespace, model, (body.get("spec") or {}).get("trust"), floors.trust)


def _add(
    source: str,
    raw: Mapping[str, Any],
    model: type[TrustPolicy] | type[PlatformTrust],
    namespace: str | None,
    sources: list[TrustSource],
    refs: list[EntryRef],
) -> None:
    try:
        spec = model.model_validate(raw).to_k8s()
    except ValidationError:  # the CRD's schema refuses it; if it got in anyway: fail closed
        sources.append(TrustSource(f"{source} (invalid trust policy)", Stage.CANDIDATE.value, ()))
        return
    ids = []
    for field, prefix, ref_field in _LISTS:
        for i, entry in enumerate(spec.get(field) or []):
            ref = entry[ref_field]
            entry_id = f"{source}: {field}/{entry.get('name') or f'{prefix}{i}'}"
            ids.append(entry_id)
            refs.append(
                EntryRef(
                    entry_id, source, _KIND[field], ref.get("namespace") or namespace or "",
                    ref.get("kind", "ConfigMap"), ref["name"], ref["key"], entry.get("identity"),
                    entry.get("issuer") or entry.get("oidcIssuer"),
                )
            )  # fmt: skip
    sources.append(TrustSource(source, spec.get("requiredFrom"), tuple(ids)))


def resolve(reader: Reader, plan: TrustPlan, signature_uri: str | None) -> TrustMaterial:
    """Read every referenced document (each ConfigMap/Secret once). Raises UnreadableTrust."""
    read: dict[tuple[str, str, str], dict[str, str]] = {}
    entries = []
    for r in plan.refs:
        at = (r.ref_kind, r.namespace, r.name)
        if at not in read:
            try:
                get = reader.read_secret if r.ref_kind == "Secret" else reader.read_configmap
                read[at] = get(r.namespace, r.name)
            except ApiException as e:
                what = "does not exist" if e.status == 404 else f"cannot be read ({e.status} {e.reason})"
                msg = f"trust policy of {r.source}: {r.ref_kind} {r.namespace}/{r.name} {what}"
                raise UnreadableTrust(msg) from None
        doc = read[at].get(r.key)
        if not doc:
            raise UnreadableTrust(
                f"trust policy of {r.source}: {r.ref_kind} {r.namespace}/{r.name} has no key {r.key!r}"
            )
        entries.append(TrustEntry(r.id, r.source, r.kind, doc, r.identity, r.issuer))
    return TrustMaterial(tuple(entries), plan.facts.policy, signature_uri)


def init_trust_json(status: Mapping[str, Any], signature_uri: str | None) -> str | None:
    """The init container's ``--trust-json`` for a version whose signature the trust policy accepted
    (status.artifact.signature: acceptedBy and its anchors), else None. Compact and stable: it is part
    of the pod template (a change of anchors is a new slot, verified with them)."""
    sig = (status.get("artifact") or {}).get("signature") or {}
    anchors = sig.get("anchors") or []
    if not isinstance(sig, Mapping) or not sig.get("acceptedBy") or not anchors:
        return None
    doc = {"entries": anchors, "signatureUri": signature_uri, "enforce": True}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
