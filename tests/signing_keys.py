"""Real key material for the signed-model tests: ECDSA keys and a certificate chain made here with
`cryptography`, and signatures made by model-signing's own signing code (its public API, which
hashes the model itself), never hand-made JSON."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import model_signing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_public(key: ec.EllipticCurvePrivateKey) -> str:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate | None = None  # the signing certificate (None: a bare key)
    chain: tuple[x509.Certificate, ...] = ()  # intermediates, then the root

    @property
    def public_pem(self) -> str:
        return pem_public(self.key)

    def files(self, where: Path, name: str) -> tuple[Path, Path | None, list[Path]]:
        """(private key, signing certificate, chain) as PEM files, for model-signing's API."""
        key = where / f"{name}.key"
        key.write_bytes(pem_private(self.key))
        if self.cert is None:
            return key, None, []
        cert = where / f"{name}.crt"
        cert.write_bytes(pem_cert(self.cert))
        chain = where / f"{name}-chain.pem"
        chain.write_bytes(b"".join(pem_cert(c) for c in self.chain))
        return key, cert, [chain]

    def sign(self, model: Path, signature: Path, tmp: Path) -> Path:
        """Sign ``model`` with model-signing's own code (its public signing API: it hashes the files
        itself with sha256 per file); git paths are not ignored, so every file is covered."""
        key, cert, chain = self.files(tmp, f"signer-{id(self)}")
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
        config = model_signing.signing.Config().set_hashing_config(hashing)
        if cert is None:
            config.use_elliptic_key_signer(private_key=key)
        else:
            config.use_certificate_signer(private_key=key, signing_certificate=cert, certificate_chain=chain)
        config.sign(model, signature)
        return signature


def key_signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP256R1()))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca(cn: str = "Acme Model Signing Root") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def cert_signer(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    email: str = "release@acme.example",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Signer:
    """A signing certificate for ``email`` issued by ``root`` (code signing, digitalSignature)."""
    ca_key, ca_cert = root
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Acme release pipeline"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Signer(key, cert, (ca_cert,))


def payload_of(bundle: dict) -> dict:
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def with_payload(bundle: dict, payload: dict) -> dict:
    """The bundle with its DSSE payload replaced (its signature left as it was: tampered)."""
    out = json.loads(json.dumps(bundle))
    out["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return out
