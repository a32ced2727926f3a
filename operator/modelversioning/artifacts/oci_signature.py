"""Signatures of ``oci://`` artifacts: found, read and checked (the operator's verification and the init
container), and stored (``kubectl models register --sign-key``), as OCI referrers of the pinned manifest
(the documents: :mod:`~modelversioning.artifacts.oci_referrers`).

Reading, with the artifact's own registry client (:class:`~modelversioning.artifacts.oci_registry.
Registry`: the URI policy on every request and address, the credentials of artifact.secretRef bound to
the registry's host, the verification's deadline):

1. the referrers API (``GET /v2/<repo>/referrers/<digest>``), at most :data:`MAX_REFERRERS_BYTES`;
   where it is missing (404) or lists no model signature, the tag schema's index ``sha256-<hex>``
   (same bound);
2. at most ``oci_referrers.MAX_CANDIDATES`` signature manifests, each read by digest (small) and
   checked against it, must refer to this manifest and name one bundle of at most
   ``signature.MAX_BUNDLE_BYTES``; the bundle is read (bounded) and checked against its digest;
3. each bundle is checked against the trust material and the per-file digests the verifier computed
   while streaming the layers (hash once). The first that is ``Signed`` is the answer; without one,
   the most telling failure (a valid signature over other files, then a malformed or tampered bundle,
   then an untrusted signer); without any signature, ``SignatureMissing``.

A registry that lists nothing is "no signature"; a document that is too large or malformed is
``SignatureInvalid`` (never fetched past its bound); a registry that cannot be read (access refused,
network) raises, like the artifact's own read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from modelversioning.api import wire as R
from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts import oci_referrers as refs
from modelversioning.artifacts.credentials import StoreAccess
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.oci_fetch import pinned_ref
from modelversioning.artifacts.oci_registry import Registry
from modelversioning.artifacts.results import Digest
from modelversioning.artifacts.signature import (
    MAX_BUNDLE_BYTES,
    SignatureCheck,
    TrustMaterial,
    check_signature,
)
from modelversioning.domain.oci_ref import OciRef

MAX_REFERRERS_BYTES = 256 * 1024  # an index of a few hundred referrers; a larger one is refused unread
MAX_SIGNATURE_MANIFEST_BYTES = 64 * 1024
# which failure to report when no referrer is a valid signature (the first found of the most telling)
_TELLING = (R.SIGNATURE_DIGEST_MISMATCH, R.SIGNATURE_INVALID, R.SIGNER_NOT_TRUSTED)


def read_signature(
    uri: str,
    access: StoreAccess,
    policy: ArtifactPolicy,
    digest: Digest,
    trust: TrustMaterial,
    *,
    deadline: float,
    shown: str,
) -> SignatureCheck:
    """What the referrers of the pinned manifest say of its signature (see the module docstring)."""
    ref = pinned_ref(uri, shown)
    assert ref.digest is not None
    with Registry(ref, access, policy, deadline, shown) as registry:
        try:
            found = _signature_manifests(registry, ref.digest)
        except refs.ReferrerError as e:
            return _invalid(shown, str(e))
        except ArtifactError as e:
            if e.reason is Reason.LIMIT_EXCEEDED and time.monotonic() < deadline:
                return _invalid(shown, e.message)
            raise
        if not found:
            why = f"{shown}: no signature: the registry lists no model-signing referrer of {ref.digest}"
            return SignatureCheck(R.SIGNATURE_MISSING, why, uri=shown)
        checks = [_check_one(registry, ref, d, digest, trust, deadline) for d in found]
    signed = [c for c in checks if c.signed]
    if signed:
        return signed[0]
    return min(checks, key=lambda c: _TELLING.index(c.outcome) if c.outcome in _TELLING else len(_TELLING))


def _signature_manifests(registry: Registry, digest: str) -> list[refs.Descriptor]:
    """The candidates: the referrers API's, else (none, or no API) the tag schema's index."""
    index = registry.referrers(digest, refs.BUNDLE_TYPE, MAX_REFERRERS_BYTES)
    found = refs.candidates(index) if index is not None else []
    if found:
        return found
    try:
        body, _ = registry.manifest(refs.referrers_tag(digest), MAX_REFERRERS_BYTES)
    except ArtifactError as e:
        if e.reason is Reason.NOT_FOUND:
            return []
        raise
    return refs.candidates(body)


def _check_one(
    registry: Registry, ref: OciRef, d: refs.Descriptor, digest: Digest, trust: TrustMaterial, deadline: float
) -> SignatureCheck:
    """One referrer: its manifest and bundle read (bounded, checked against their digests), then the
    bundle checked against the trust material and the verified digests."""
    where = f"oci://{ref.registry}/{ref.repository}@{d.digest}"
    try:
        if d.size > MAX_SIGNATURE_MANIFEST_BYTES:
            limit = MAX_SIGNATURE_MANIFEST_BYTES
            raise refs.ReferrerError(f"its manifest is declared {d.size} bytes (at most {limit})")
        body, _ = registry.manifest(d.digest, MAX_SIGNATURE_MANIFEST_BYTES)
        if refs.digest_of(body) != d.digest:
            raise refs.ReferrerError("the signature's manifest does not hash to the digest the index gives")
        layer = refs.bundle_layer(body, str(ref.digest), MAX_BUNDLE_BYTES)
        data = registry.small_blob(layer.digest, MAX_BUNDLE_BYTES)
        refs.check_bundle(data, layer)
    except refs.ReferrerError as e:
        return _invalid(where, str(e))
    except ArtifactError as e:
        if e.reason in (Reason.LIMIT_EXCEEDED, Reason.NOT_FOUND) and time.monotonic() < deadline:
            return _invalid(where, e.message)  # listed, but not there in full
        raise
    return check_signature(data, digest, trust, shown=where)


def _invalid(shown: str, why: str) -> SignatureCheck:
    text = why if why.startswith(shown) else f"{shown}: {why}"
    return SignatureCheck(R.SIGNATURE_INVALID, text, uri=shown)


# ---- storing --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    location: str  # oci://host/repo@sha256:<the referrer manifest's digest>
    via: str  # "referrers API" or "tag schema sha256-<hex>"


def push_signature(
    uri: str,
    bundle: bytes,
    access: StoreAccess,
    policy: ArtifactPolicy,
    *,
    deadline: float,
    shown: str,
    now: Callable[[], str],
) -> Stored:
    """Store ``bundle`` as a referrer of the pinned manifest: its blob, the empty config and the referrer
    manifest are pushed; a registry that answers the push with ``OCI-Subject`` (or that has the referrers
    API) lists it itself, else the tag schema's index gets it (read, extended, pushed back: a concurrent
    signer of the same manifest may win that race; sign again)."""
    ref = pinned_ref(uri, shown)
    assert ref.digest is not None
    with Registry(ref, access, policy, deadline, shown) as registry:
        body, media_type = registry.manifest(ref.digest)
        subject = refs.Descriptor(media_type or refs.OCI_MANIFEST, ref.digest, len(body))
        registry.push_blob(refs.EMPTY_CONFIG)
        registry.push_blob(bundle)
        manifest = refs.signature_manifest(bundle, subject, now())
        digest = refs.digest_of(manifest)
        headers = registry.put_manifest(digest, manifest, refs.OCI_MANIFEST)
        location = f"oci://{ref.registry}/{ref.repository}@{digest}"
        listed = headers.get("OCI-Subject") is not None
        if listed or registry.referrers(ref.digest, refs.BUNDLE_TYPE, MAX_REFERRERS_BYTES) is not None:
            return Stored(location, "referrers API")
        tag = refs.referrers_tag(ref.digest)
        try:
            index: bytes | None = registry.manifest(tag, MAX_REFERRERS_BYTES)[0]
        except ArtifactError as e:
            if e.reason is not Reason.NOT_FOUND:
                raise
            index = None
        registry.put_manifest(tag, refs.with_referrer(index, manifest), refs.OCI_INDEX)
        return Stored(location, f"tag schema {tag}")


def store_signature(uri: str, bundle: bytes, policy: ArtifactPolicy) -> Stored:
    """:func:`push_signature` with the URI policy and your own docker config's credentials applied, as
    :func:`~modelversioning.artifacts.oci_fetch.resolve_reference` does (``kubectl models register``).
    Raises ArtifactError."""
    from modelversioning.artifacts.classify import classified_error
    from modelversioning.artifacts.credentials import bind_credentials, store_access
    from modelversioning.artifacts.policy import check_uri
    from modelversioning.artifacts.redact import redact_text, redact_uri
    from modelversioning.domain.conditions import now_rfc3339

    shown = redact_uri(uri)
    access = None
    try:
        refusal = check_uri(uri, policy)
        if refusal:
            raise ArtifactError(Reason.URI_REFUSED, f"{shown}: {Reason.URI_REFUSED.value}: {refusal}")
        access = bind_credentials(uri, store_access("oci", None), policy, None)
        deadline = time.monotonic() + policy.timeout_seconds
        return push_signature(uri, bundle, access, policy, deadline=deadline, shown=shown, now=now_rfc3339)
    except Exception as e:  # the network, the resolver, the policy inside the client
        error = e if isinstance(e, ArtifactError) else classified_error(e, shown)
        secrets = access.secret_values if access else frozenset()
        raise ArtifactError(
            error.reason, redact_text(error.message, secrets), transient=error.transient
        ) from None
