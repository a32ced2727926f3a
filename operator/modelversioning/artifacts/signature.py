"""Signed models (OpenSSF Model Signing, ``model-signing`` 1.1.1): where a signature lives, checking one
against the digests the verifier computed, and signing those digests (``kubectl models register``).

Hash once. A model-signing signature is a Sigstore bundle whose DSSE payload is an in-toto statement
listing every file of the model with its sha256 (the ``files`` serialization). The verifier has just
computed the sha256 of every file it read (``Digest.entries``, the lines of our manifest), so the signed
list is compared with those digests instead of hashing the files a second time: the signature check
costs a few milliseconds whatever the model's size. The bundle is verified by model-signing's own
verifiers (key, certificate chain, keyless Sigstore), given the trust material as bytes.

Where the signature lives (``signature_location``): ``spec.artifact.signatureUri`` when given, else
beside the artifact: ``<file>.sig`` for a file, ``<directory>.sig`` for a directory or prefix
(``s3://b/models/fraud/2.4.1/`` -> ``s3://b/models/fraud/2.4.1.sig``), read with the artifact's
credentials under the same URI policy. Beside, not inside, so that signing never changes the directory's
digest; a signature inside the directory (a Hugging Face ``model.sig``) works when named by
signatureUri: it is the one file the signature need not cover. An http(s) URL with a query has no
default (give signatureUri). ``oci://`` has none here: its signatures are OCI referrers of the pinned
manifest, found through the registry (:mod:`~modelversioning.artifacts.oci_signature`).

What the check reports (``SignatureCheck.outcome``): ``Signed`` (valid, over exactly these files, and
``matched`` lists the trust entries that verified it), ``SignatureMissing``, ``SignatureInvalid``
(malformed, truncated, tampered), ``SignerNotTrusted`` (no entry's key or identity verifies it), or
``SignatureDigestMismatch`` (valid, over other files or digests). Whether that is accepted is the
trust policy's decision (domain.trust): certificate expiry is judged there, against the time now.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelversioning.api import wire as R

if TYPE_CHECKING:  # model-signing (and sigstore) load only where a signature is checked or made
    from modelversioning.artifacts.results import Digest, FileDigest
    from modelversioning.artifacts.signature_crypto import SignedFiles

MAX_BUNDLE_BYTES = 1 << 20  # a bundle is a few KiB; a larger one is refused unread
SIGNATURE_SUFFIX = ".sig"


@dataclass(frozen=True)
class TrustEntry:
    """One trusted signer, resolved: a public key, a certificate identity with its roots, or a keyless
    Sigstore identity with its trust configuration (``pem``: the PEM or JSON document)."""

    id: str  # "Model fraud: keys/release"
    source: str  # "Model fraud", "ModelPlatformPolicy corp"
    kind: str  # key | certificate | sigstore
    pem: str
    identity: str | None = None
    issuer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "source": self.source, "kind": self.kind, "pem": self.pem}
        return out | {k: v for k, v in (("identity", self.identity), ("issuer", self.issuer)) if v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrustEntry:
        return cls(
            str(d["id"]), str(d["source"]), str(d["kind"]), str(d["pem"]), d.get("identity"), d.get("issuer")
        )


@dataclass(frozen=True)
class TrustMaterial:
    """What a verification checks the signature against. ``enforce`` (the init container): refuse
    unless accepted by these entries as anchors (domain.trust.accepted_by_anchors) and unexpired."""

    entries: tuple[TrustEntry, ...] = ()
    policy: str = ""  # the trust policy's digest, recorded with the outcome
    signature_uri: str | None = None  # spec.artifact.signatureUri
    enforce: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [e.to_dict() for e in self.entries],
            "policy": self.policy,
            "signatureUri": self.signature_uri,
            "enforce": self.enforce,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrustMaterial:
        return cls(
            tuple(TrustEntry.from_dict(e) for e in d.get("entries") or ()),
            str(d.get("policy") or ""),
            d.get("signatureUri"),
            bool(d.get("enforce")),
        )


@dataclass(frozen=True)
class SignatureCheck:
    """What the verifier found (status.artifact.signature, less the policy's verdict)."""

    outcome: str  # R.SIGNED or why not
    message: str
    uri: str | None = None  # redacted
    method: str | None = None
    signer: str | None = None
    issuer: str | None = None
    not_after: str | None = None  # RFC 3339: the first certificate of the chain to expire
    matched: tuple[str, ...] = ()
    anchors: tuple[TrustEntry, ...] = field(default=(), repr=False)  # the matched entries
    policy: str = ""  # the digest of the trust policy it was checked under

    @property
    def signed(self) -> bool:
        return self.outcome == R.SIGNED

    def to_dict(self) -> dict[str, Any]:
        """The status record (camelCase): status.artifact.signature, less acceptedBy."""
        out: dict[str, Any] = {"outcome": self.outcome, "message": self.message, "policy": self.policy}
        for key, value in (
            ("uri", self.uri), ("method", self.method), ("signer", self.signer), ("issuer", self.issuer),
            ("notAfter", self.not_after),
        ):  # fmt: skip
            if value is not None:
                out[key] = value
        out["matched"] = list(self.matched)
        out["anchors"] = [a.to_dict() for a in self.anchors]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SignatureCheck:
        return cls(
            str(d["outcome"]),
            str(d.get("message") or ""),
            d.get("uri"),
            d.get("method"),
            d.get("signer"),
            d.get("issuer"),
            d.get("notAfter"),
            tuple(str(m) for m in d.get("matched") or ()),
            tuple(TrustEntry.from_dict(a) for a in d.get("anchors") or ()),
            str(d.get("policy") or ""),
        )


def signature_location(uri: str, explicit: str | None = None) -> str | None:
    """Where the signature of the artifact at ``uri`` is (None: no default for this URI, or oci://)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() == "oci":  # OCI referrers of the manifest (artifacts.oci_signature)
        return None  # whatever ``explicit`` says (admission refuses a signatureUri on oci://)
    if explicit:
        return explicit
    if parts.query or parts.fragment:  # a pre-signed or parameterized URL: say where it is
        return None
    base = uri.rstrip("/")
    if base.endswith("://") or not urlsplit(base).path.strip("/"):
        return None  # a bucket or host root has no "beside"
    return base + SIGNATURE_SUFFIX


def exempt_path(uri: str, signature_uri: str) -> str | None:
    """The signature's path inside the artifact directory, if it is there (the one file the
    signature need not cover), else None."""
    prefix = uri if uri.endswith("/") else uri + "/"
    return signature_uri[len(prefix) :] if signature_uri.startswith(prefix) else None


def missing(shown: str) -> SignatureCheck:
    return SignatureCheck(R.SIGNATURE_MISSING, f"no signature at {shown}", uri=shown)


def check_signature(
    data: bytes, digest: Digest, material: TrustMaterial, *, shown: str, exempt: str | None = None
) -> SignatureCheck:
    """Check the bundle ``data`` (read from ``shown``) against ``material`` and the digests the
    verifier computed. Never raises."""
    if len(data) > MAX_BUNDLE_BYTES:
        return _invalid(shown, f"larger than {MAX_BUNDLE_BYTES} bytes: not a signature bundle")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return _invalid(shown, f"not a JSON Sigstore bundle (truncated or corrupt?): {e}")
    if not isinstance(parsed, dict):
        return _invalid(shown, "not a JSON Sigstore bundle")
    from modelversioning.artifacts.signature_crypto import verify_bundle

    found = verify_bundle(parsed, material.entries)
    base: dict[str, Any] = {"uri": shown, "method": found.method, "signer": found.signer}
    base |= {"issuer": found.issuer, "not_after": found.not_after}
    if found.outcome != R.SIGNED:
        return SignatureCheck(found.outcome, f"{shown}: {found.message}", **base)
    assert found.manifest is not None
    problem = compare(found.manifest, digest, exempt)
    if problem is not None:
        msg = f"{shown}: a valid signature by {found.signer}, but over other files: {problem}"
        return SignatureCheck(R.SIGNATURE_DIGEST_MISMATCH, msg, **base)
    anchors = tuple(e for e in material.entries if e.id in found.matched)
    what = f"{digest.files} files" if digest.kind == "directory" else "the file"
    msg = f"{shown}: signed by {found.method} {found.signer}, over {what} verified"
    return SignatureCheck(R.SIGNED, msg, matched=found.matched, anchors=anchors, **base)


def _invalid(shown: str, why: str) -> SignatureCheck:
    return SignatureCheck(R.SIGNATURE_INVALID, f"{shown}: {why}", uri=shown)


def compare(signed: SignedFiles, digest: Digest, exempt: str | None) -> str | None:
    """Why the signed per-file sha256 list is not exactly the verified files (None: it is)."""
    method, hash_type = signed.serialization.get("method"), signed.serialization.get("hash_type")
    if method != "files" or hash_type != "sha256":
        return (
            f"signed with the {method}/{hash_type} serialization; only per-file sha256 ('files', the "
            "default) can be checked against the digests verified: re-sign with it"
        )
    have = {d.path: d.sha256 for d in digest.entries if d.path != exempt}
    want = dict(signed.files)
    if digest.kind == "file" and len(want) == 1 and len(have) == 1:
        # model-signing names a single-file model "."; other signers may use its name
        (name,) = want
        if name in (".", next(iter(have))):
            want = {next(iter(have)): want[name]}
    unsigned = sorted(set(have) - set(want))
    absent = sorted(set(want) - set(have))
    changed = sorted(p for p in set(have) & set(want) if have[p] != want[p])
    parts = [
        f"{label}: {_few(paths)}"
        for label, paths in (
            ("not signed", unsigned),
            ("signed but absent", absent),
            ("other sha256", changed),
        )
        if paths
    ]
    return "; ".join(parts) or None


def _few(paths: list[str], n: int = 5) -> str:
    more = f" and {len(paths) - n} more" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


def sign_digests(
    entries: Iterable[FileDigest],
    *,
    kind: str,
    model_name: str,
    private_key_pem: bytes,
    certificate_pem: bytes | None = None,
    password: bytes | None = None,
) -> bytes:
    """A model-signing bundle over these per-file digests (the ones just hashed: hash once), made by
    model-signing's own signers: a private key, or with ``certificate_pem`` (the signing certificate
    first, then its chain) a certificate. Raises ValueError for unusable key material."""
    from modelversioning.artifacts.signature_crypto import sign_manifest

    files = [(d.path if kind == "directory" else ".", d.sha256) for d in entries]
    return sign_manifest(files, model_name, private_key_pem, certificate_pem, password)


def model_name_of(uri_or_path: str) -> str:
    """The model's name in the signed statement (informative only): the last path component."""
    path = urlsplit(uri_or_path).path if "://" in uri_or_path else uri_or_path
    return pathlib.PurePosixPath(path.rstrip("/")).name or "model"
