"""Signatures of ``oci://`` artifacts as OCI referrers: the documents, built and read (pure: bytes in and
out, no registry; :mod:`~modelversioning.artifacts.oci_signature` does the requests).

A model-signing bundle (a Sigstore bundle, JSON) is stored the way cosign stores a Sigstore bundle
(its BUNDLE_SPEC), so generic tools (``oras discover``, ``regctl``) list it and copy it with the model:

* the bundle is a blob; a **referrer manifest** (an OCI image manifest) names it as its one layer, has
  ``artifactType`` and layer media type ``application/vnd.dev.sigstore.bundle.v0.3+json``, the empty
  config, the model's manifest as its ``subject``, and the annotations
  ``dev.sigstore.bundle.predicateType: https://model_signing/signature/v1.0`` (model-signing's in-toto
  predicate: tells a model signature from cosign's image signatures and attestations),
  ``dev.sigstore.bundle.content: dsse-envelope`` and ``org.opencontainers.image.created``;
* it is found by the **referrers API** (``GET /v2/<repo>/referrers/<digest>``: an image index of the
  manifests whose subject is the digest) or, on a registry without it (distribution 2.8), by the
  **referrers tag schema**: an image index tagged ``sha256-<hex of the digest>`` that the pusher keeps.

Reading trusts nothing the registry says: an index is bounded in bytes by the caller and here in
candidates (:data:`MAX_CANDIDATES` descriptors of signature manifests are looked at, the rest ignored),
a referrer manifest must hash to its descriptor's digest (checked by the caller), name exactly one
bundle layer of at most ``max_bundle`` declared bytes, and the bundle's bytes must hash to that layer's
digest. The signature itself is then checked against the digests the verifier computed
(:func:`~modelversioning.artifacts.signature.check_signature`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"  # artifactType and the layer's media type
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
CREATED_ANNOTATION = "org.opencontainers.image.created"
MODEL_SIGNING_PREDICATE = "https://model_signing/signature/v1.0"
MAX_CANDIDATES = 8  # signature manifests fetched and checked, at most, per verification
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class ReferrerError(ValueError):
    """A document of the registry's that is not what it must be (the message says why)."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # sha256:<hex>
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def describe(media_type: str, data: bytes) -> Descriptor:
    return Descriptor(media_type, digest_of(data), len(data))


def referrers_tag(digest: str) -> str:
    """The tag schema's tag of ``digest``'s referrers: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    if not _DIGEST.match(digest):
        raise ReferrerError(f"not a sha256 digest: {digest!r}")
    return digest.replace(":", "-", 1)


# ---- building (kubectl models register --sign-key) -------------------------------------------------------
def signature_manifest(bundle: bytes, subject: Descriptor, created: str) -> bytes:
    """The referrer manifest of ``bundle`` (its blob and the empty config are pushed separately)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_TYPE,
        "config": describe(OCI_EMPTY, EMPTY_CONFIG).to_dict(),
        "layers": [describe(BUNDLE_TYPE, bundle).to_dict()],
        "subject": subject.to_dict(),
        "annotations": signature_annotations(created),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def signature_annotations(created: str) -> dict[str, str]:
    return {
        CONTENT_ANNOTATION: "dsse-envelope",
        PREDICATE_ANNOTATION: MODEL_SIGNING_PREDICATE,
        CREATED_ANNOTATION: created,
    }


def with_referrer(index: bytes | None, manifest: bytes) -> bytes:
    """The tag schema's index (``index``: the one tagged now, None: none yet) with the referrer
    ``manifest`` listed (once: listing it again changes nothing); the other entries are kept."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index is not None:
        try:
            found = json.loads(index)
        except ValueError:
            raise ReferrerError("the referrers tag holds no JSON") from None
        if not isinstance(found, dict) or not isinstance(found.get("manifests", []), list):
            raise ReferrerError("the referrers tag holds no image index")
        doc = found | {
            "mediaType": OCI_INDEX,
            "schemaVersion": 2,
            "manifests": list(found.get("manifests", [])),
        }
    parsed = json.loads(manifest)
    entry = describe(OCI_MANIFEST, manifest).to_dict() | {"artifactType": parsed.get("artifactType")}
    if parsed.get("annotations"):
        entry["annotations"] = parsed["annotations"]
    if not any(isinstance(m, dict) and m.get("digest") == entry["digest"] for m in doc["manifests"]):
        doc["manifests"].append(entry)
    return json.dumps(doc, separators=(",", ":")).encode()


# ---- reading (the operator's verification and the init container) ----------------------------------------
def candidates(index: bytes) -> list[Descriptor]:
    """The model signatures an index lists (the referrers API's answer or the tag schema's index): the
    descriptors of OCI manifests whose artifactType is a Sigstore bundle and whose predicate, when the
    descriptor names one, is model-signing's; at most :data:`MAX_CANDIDATES`, in the index's order."""
    try:
        doc = json.loads(index)
    except ValueError:
        raise ReferrerError("the referrers index is not JSON") from None
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(manifests, list):
        raise ReferrerError("the referrers index lists no manifests")
    out: list[Descriptor] = []
    for m in manifests:
        if not isinstance(m, dict) or m.get("artifactType") != BUNDLE_TYPE:
            continue
        found = m.get("annotations")
        notes: dict[str, Any] = found if isinstance(found, dict) else {}
        if notes.get(PREDICATE_ANNOTATION, MODEL_SIGNING_PREDICATE) != MODEL_SIGNING_PREDICATE:
            continue  # cosign's signatures and attestations of the same manifest
        d = _descriptor(m)
        if d is not None and d.media_type == OCI_MANIFEST and d not in out:
            out.append(d)
        if len(out) == MAX_CANDIDATES:
            break
    return out


def bundle_layer(manifest: bytes, subject: str, max_bundle: int) -> Descriptor:
    """The bundle's descriptor in a referrer manifest (already checked against its digest) that must
    refer to ``subject`` and name one bundle of at most ``max_bundle`` bytes. Raises ReferrerError."""
    try:
        doc = json.loads(manifest)
    except ValueError:
        raise ReferrerError("the signature's manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise ReferrerError("the signature's manifest is not an object")
    refers = _descriptor(doc.get("subject"))
    if refers is None or refers.digest != subject:
        raise ReferrerError(f"the signature's manifest does not refer to {subject}")
    layers = doc.get("layers")
    found = [_descriptor(x) for x in layers] if isinstance(layers, list) else []
    bundles = [d for d in found if d is not None and d.media_type == BUNDLE_TYPE]
    if len(bundles) != 1 or len(found) != 1:
        raise ReferrerError("the signature's manifest does not name exactly one Sigstore bundle")
    if bundles[0].size > max_bundle:
        raise ReferrerError(f"its bundle is declared {bundles[0].size} bytes (at most {max_bundle})")
    return bundles[0]


def check_bundle(data: bytes, layer: Descriptor) -> None:
    """The bundle's bytes are its descriptor's (tampered or truncated in the registry otherwise)."""
    if len(data) != layer.size or digest_of(data) != layer.digest:
        raise ReferrerError(
            f"the bundle read ({len(data)} bytes) is not the one its manifest names ({layer.size} bytes, "
            f"{layer.digest}): tampered with or truncated"
        )


def _descriptor(value: object) -> Descriptor | None:
    if not isinstance(value, Mapping):
        return None
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    return Descriptor(media_type, digest, size)


__all__ = [
    "BUNDLE_TYPE", "Descriptor", "ReferrerError", "bundle_layer", "candidates", "check_bundle",
    "describe", "referrers_tag", "signature_manifest", "with_referrer",
]  # fmt: skip
