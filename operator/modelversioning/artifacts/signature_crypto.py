"""model-signing's verifiers and signers, given trust material as bytes (artifacts.signature uses them).

model-signing (pinned at 1.1.1) reads keys and certificates from files; the thin subclasses here load
them from the bytes the operator read from ConfigMaps and Secrets and leave every check to the
library's own code: the DSSE signature (``_verify_bundle``), the certificate chain (its
``_verify_certificates``: the chain must end in the given roots; model-signing checks it as of the
signing certificate's notBefore, so expiry is judged by domain.trust against the time now), the
in-toto statement and its manifest (``Verifier.verify``), and the payload and bundle a signer makes.
Importing this module imports model-signing and sigstore: only the verifier's child process, the
init container and ``kubectl models register --sign-key`` do.
"""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from model_signing import manifest as ms_manifest
from model_signing._hashing import hashing as ms_hashing
from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore_pb
from model_signing._signing import signing as ms_signing
from OpenSSL import crypto
from sigstore_models.bundle import v1 as bundle_pb

from modelversioning.api import wire as R
from modelversioning.artifacts.signature import TrustEntry


@dataclass(frozen=True)
class SignedFiles:
    """The manifest a valid signature covers: its serialization and (name, sha256 hex) per file."""

    serialization: Mapping[str, Any]
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Verified:
    outcome: str  # R.SIGNED, R.SIGNATURE_INVALID or R.SIGNER_NOT_TRUSTED
    message: str
    method: str | None = None
    signer: str | None = None
    issuer: str | None = None
    not_after: str | None = None
    matched: tuple[str, ...] = ()
    manifest: SignedFiles | None = None


class _Malformed(ValueError):
    pass


# ---- model-signing's classes, loaded from bytes ----------------------------------------------------


def _ec_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    sign_ec_key._check_supported_ec_key(key)
    return key


class _KeyVerifier(sign_ec_key.Verifier):  # type: ignore[misc]
    def __init__(self, pem: bytes) -> None:  # noqa: D107 - the library's, from bytes
        self._public_key = _ec_public_key(pem)


class _CertVerifier(sign_certificate.Verifier):  # type: ignore[misc]
    def __init__(self, roots_pem: bytes) -> None:
        self._log_fingerprints = False
        self._store = crypto.X509Store()
        for root in x509.load_pem_x509_certificates(roots_pem):
            self._store.add_cert(crypto.X509.from_cryptography(root))


class _KeySigner(sign_ec_key.Signer):  # type: ignore[misc]
    def __init__(self, key_pem: bytes, password: bytes | None = None) -> None:
        self._private_key = serialization.load_pem_private_key(key_pem, password)
        if not isinstance(self._private_key, ec.EllipticCurvePrivateKey):
            raise ValueError("the signing key must be an ECDSA private key (P-256, P-384 or P-521)")
        sign_ec_key._check_supported_ec_key(self._private_key.public_key())


class _CertSigner(sign_certificate.Signer):  # type: ignore[misc]
    def __init__(self, key_pem: bytes, cert_pem: bytes, password: bytes | None = None) -> None:
        _KeySigner.__init__(self, key_pem, password)  # type: ignore[arg-type]
        certs = x509.load_pem_x509_certificates(cert_pem)
        self._signing_certificate, self._trust_chain = certs[0], certs[1:]
        if self._private_key.public_key() != self._signing_certificate.public_key():
            raise ValueError("the certificate's public key is not the signing key's")


def sign_manifest(
    files: Sequence[tuple[str, str]],
    model_name: str,
    key_pem: bytes,
    cert_pem: bytes | None = None,
    password: bytes | None = None,
) -> bytes:
    """The bundle (JSON) model-signing makes for these (name, sha256 hex) files."""
    items = [
        ms_manifest.FileManifestItem(
            path=pathlib.PurePosixPath(name), digest=ms_hashing.Digest("sha256", bytes.fromhex(sha))
        )
        for name, sha in files
    ]
    payload = ms_signing.Payload(
        ms_manifest.Manifest(model_name, items, ms_manifest._FileSerialization("sha256"))
    )
    signer = _KeySigner(key_pem, password) if cert_pem is None else _CertSigner(key_pem, cert_pem, password)
    bundle: Any = signer.sign(payload)  # sign_sigstore_pb.Signature
    return str(bundle.bundle.to_json()).encode("utf-8")


def key_fingerprint(pem: str | bytes) -> str:
    """model-signing's key hint: sha256 of the public key's PEM (SubjectPublicKeyInfo)."""
    import hashlib

    raw = pem.encode() if isinstance(pem, str) else pem
    key = _ec_public_key(raw)
    spki = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


# ---- verification ----------------------------------------------------------------------------------


def verify_bundle(parsed: Mapping[str, Any], entries: Sequence[TrustEntry]) -> Verified:
    """Which trust entries verify this bundle (parsed JSON), and the files it signs."""
    vm = parsed.get("verificationMaterial")
    if not isinstance(vm, Mapping):
        return Verified(R.SIGNATURE_INVALID, "not a Sigstore bundle: no verificationMaterial")
    try:
        if "publicKey" in vm:
            return _by_key(parsed, [e for e in entries if e.kind == "key"])
        if "x509CertificateChain" in vm:
            return _by_certificate(parsed, [e for e in entries if e.kind == "certificate"])
        if "certificate" in vm:
            return _by_sigstore(parsed, [e for e in entries if e.kind == "sigstore"])
    except _Malformed as e:
        return Verified(R.SIGNATURE_INVALID, f"not a valid Sigstore bundle (truncated or tampered?): {e}")
    return Verified(R.SIGNATURE_INVALID, "not a model-signing bundle: unknown verification material")


def _pb_signature(parsed: Mapping[str, Any]) -> Any:
    """model-signing's ``sign_sigstore_pb.Signature.read``, from the parsed JSON."""
    d = copy.deepcopy(dict(parsed))
    try:
        vm = d["verificationMaterial"]
        vm.setdefault("tlogEntries", [])
        if "publicKey" in vm:
            vm["publicKey"].setdefault("hint", None)
            for k in ("rawBytes", "keyDetails"):
                vm["publicKey"].pop(k, None)
        bundle = bundle_pb.Bundle.from_dict(d)
        if bundle.media_type != sign_sigstore_pb._BUNDLE_MEDIA_TYPE or bundle.dsse_envelope is None:
            raise _Malformed(f"media type {bundle.media_type!r} without a DSSE envelope")
        if not bundle.dsse_envelope.signatures:
            raise _Malformed("the DSSE envelope has no signature")
        return sign_sigstore_pb.Signature(bundle)
    except _Malformed:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _Malformed(_short(e)) from None


def _attempts(
    chosen: Sequence[TrustEntry], make: Callable[[TrustEntry], Any], signature: Any
) -> tuple[list[tuple[TrustEntry, Any]], list[tuple[str, str]]]:
    """Verify with each chosen entry: ([(entry, manifest)], [(outcome, why)] of those that failed)."""
    ok, failed = [], []
    for entry in chosen:
        try:
            ok.append((entry, make(entry).verify(signature)))
        except crypto.X509StoreContextError as e:
            failed.append((R.SIGNER_NOT_TRUSTED, f"its chain does not end in the roots of {entry.id}: {e}"))
        except crypto_exceptions.InvalidSignature:
            failed.append((R.SIGNATURE_INVALID, "the signature does not verify over its payload (tampered?)"))
        except (ValueError, KeyError, TypeError) as e:
            bad_cert = "cannot be used for signing" in str(e)
            failed.append((R.SIGNER_NOT_TRUSTED if bad_cert else R.SIGNATURE_INVALID, _short(e)))
    return ok, failed


def _by_key(parsed: Mapping[str, Any], keys: Sequence[TrustEntry]) -> Verified:
    signature = _pb_signature(parsed)
    hint = signature.bundle.verification_material.public_key.hint
    signer = f"sha256:{hint}" if hint else "a key the bundle does not name"
    chosen = [k for k in keys if not hint or _fingerprint_or_none(k.pem) == hint]
    if not chosen:
        return Verified(
            R.SIGNER_NOT_TRUSTED, f"signed by key {signer}, which no trust policy names", "key", signer
        )
    ok, failed = _attempts(chosen, lambda e: _KeyVerifier(e.pem.encode()), signature)
    if not ok:
        outcome = failed[0][0] if hint else R.SIGNER_NOT_TRUSTED
        return Verified(outcome, f"key {signer}: {failed[0][1]}", "key", signer)
    return _signed("key", signer, None, None, ok)


def _by_certificate(parsed: Mapping[str, Any], certs: Sequence[TrustEntry]) -> Verified:
    signature = _pb_signature(parsed)
    try:
        chain = [
            x509.load_der_x509_certificate(c.raw_bytes)
            for c in signature.bundle.verification_material.x509_certificate_chain.certificates
        ]
        leaf = chain[0]
    except (ValueError, IndexError, AttributeError) as e:
        raise _Malformed(f"its certificate chain: {_short(e)}") from None
    ids = identities(leaf)
    signer = ids[0] if ids else leaf.subject.rfc4514_string()
    issuer = leaf.issuer.rfc4514_string()
    issuer_names = {issuer, *_common_names(leaf.issuer)}
    not_after = min(c.not_valid_after_utc for c in chain).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    facts = ("certificate", signer, issuer, not_after)
    named = [e for e in certs if e.identity in ids and (not e.issuer or e.issuer in issuer_names)]
    if not named:
        why = f"signed by certificate {signer} (issuer {issuer}), which no trust policy names"
        return Verified(R.SIGNER_NOT_TRUSTED, why, *facts)
    ok, failed = _attempts(named, lambda e: _CertVerifier(e.pem.encode()), signature)
    if not ok:
        outcome = R.SIGNATURE_INVALID if any(o == R.SIGNATURE_INVALID for o, _ in failed) else failed[0][0]
        why = next(w for o, w in failed if o == outcome)
        return Verified(outcome, f"certificate {signer}: {why}", *facts)
    return _signed(*facts, ok)


def _by_sigstore(parsed: Mapping[str, Any], entries: Sequence[TrustEntry]) -> Verified:
    """Keyless Sigstore bundles, offline against each entry's trust configuration (untested here)."""
    from model_signing._signing import sign_sigstore
    from sigstore import models as sigstore_models
    from sigstore import verify as sigstore_verify

    try:
        signature = sign_sigstore.Signature(sigstore_models.Bundle.from_json(json.dumps(parsed)))
    except Exception as e:  # noqa: BLE001 - sigstore raises its own errors for a malformed bundle
        raise _Malformed(_short(e)) from None

    def make(entry: TrustEntry) -> Any:
        verifier = object.__new__(sign_sigstore.Verifier)
        config = sigstore_models.ClientTrustConfig.from_json(entry.pem)
        verifier._verifier = sigstore_verify.Verifier(trusted_root=config.trusted_root)
        identity, issuer = str(entry.identity or ""), str(entry.issuer or "")
        verifier._policy = sigstore_verify.policy.Identity(identity=identity, issuer=issuer)
        return verifier

    ok, failed = [], []
    for entry in entries:
        try:
            ok.append((entry, make(entry).verify(signature)))
        except Exception as e:  # noqa: BLE001 - sigstore's VerificationError and friends: not this signer
            failed.append(_short(e))
    if not ok:
        why = failed[0] if failed else "no trust policy names a Sigstore identity"
        return Verified(R.SIGNER_NOT_TRUSTED, f"Sigstore bundle: {why}", "sigstore", "a Sigstore identity")
    return _signed("sigstore", str(ok[0][0].identity), ok[0][0].issuer, None, ok)


def _signed(
    method: str, signer: str, issuer: str | None, not_after: str | None, ok: list[tuple[TrustEntry, Any]]
) -> Verified:
    m = ok[0][1]
    files = tuple((str(rd.identifier), str(rd.digest.digest_hex)) for rd in m.resource_descriptors())
    signed = SignedFiles(dict(m.serialization_type), files)
    matched = tuple(e.id for e, _ in ok)
    return Verified(R.SIGNED, "valid", method, signer, issuer, not_after, matched, signed)


def identities(cert: x509.Certificate) -> list[str]:
    """A certificate's identities: its subjectAltNames (e-mail, URI, DNS), else its common names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return _common_names(cert.subject)
    out: list[str] = []
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        out += [str(v) for v in san.get_values_for_type(kind)]
    return out or _common_names(cert.subject)


def _common_names(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _fingerprint_or_none(pem: str) -> str | None:
    try:
        return key_fingerprint(pem)
    except ValueError:
        return None


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:300]
