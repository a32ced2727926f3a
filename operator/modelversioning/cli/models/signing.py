"""``kubectl models register --sign-key KEY [--sign-cert CERT]``: sign the artifact with the OpenSSF
Model Signing format from the per-file digests register has just computed (hashed once), with
model-signing's own signers, and store the signature where the operator reads it
(``artifacts.signature.signature_location``): beside the artifact (``<file>.sig``, ``<directory>.sig``)
or at ``--signature-uri``. file://, s3:// and gs:// are written in place (your own credentials, as
register reads them); an http(s) location is read-only, so the bundle is written locally beside the
artifact and you publish it there. An ``oci://`` artifact's signature is an OCI referrer of its manifest
(``artifacts.oci_signature``): its files are fetched and hashed as the pod lays them out, and the bundle
is pushed to the same registry (the referrers API, else the ``sha256-<hex>`` tag schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from modelversioning.cli.models.errors import EXIT_USAGE, Refused

if TYPE_CHECKING:  # the plugin starts without the artifacts package (pydantic): loaded when signing
    from modelversioning.api.settings import ArtifactPolicy
    from modelversioning.artifacts.results import Digest


@dataclass(frozen=True)
class Signing:
    key: Path  # PEM private key (ECDSA P-256/384/521, unencrypted)
    cert: Path | None = None  # PEM: the signing certificate first, then its chain
    signature_uri: str | None = None  # --signature-uri (recorded as spec.artifact.signatureUri)


@dataclass(frozen=True)
class Signed:
    written: str  # where the bundle was written
    location: str  # where the operator reads it
    method: str
    note: str | None = None  # what the user still has to do (publish an http(s) signature)


def signing_of(key: Path | None, cert: Path | None, signature_uri: str | None) -> Signing | None:
    """The signing options, checked before any hashing (None: no signing)."""
    if key is None:
        if cert is not None or signature_uri is not None:
            raise Refused("--sign-cert and --signature-uri need --sign-key", code=EXIT_USAGE)
        return None
    for what, path in (("--sign-key", key), ("--sign-cert", cert)):
        if path is not None and not path.is_file():
            raise Refused(f"{what} {path}: no such file", code=EXIT_USAGE)
    if signature_uri is not None and "://" not in signature_uri:
        raise Refused(f"--signature-uri {signature_uri!r} must be an absolute URI", code=EXIT_USAGE)
    return Signing(key, cert, signature_uri)


def _bundle(signing: Signing, digest: Digest, model_name: str) -> bytes:
    """model-signing's bundle over ``digest``'s per-file sha256 (hashed once, just now)."""
    from modelversioning.artifacts.signature import sign_digests

    try:
        return sign_digests(
            digest.entries,
            kind=digest.kind,
            model_name=model_name,
            private_key_pem=signing.key.read_bytes(),
            certificate_pem=signing.cert.read_bytes() if signing.cert is not None else None,
        )
    except (ValueError, TypeError, OSError) as e:
        raise Refused(f"cannot sign with {signing.key}: {e}") from None


def _method(signing: Signing) -> str:
    return "certificate" if signing.cert is not None else "key"


def sign_and_push_oci(signing: Signing, digest: Digest, uri: str, policy: ArtifactPolicy) -> Signed:
    """Sign the files an ``oci://`` artifact lays out (``digest``: fetched and hashed) and push the bundle
    as a referrer of its manifest (``uri``: pinned), with your own docker config's credentials."""
    from modelversioning.artifacts import ArtifactError
    from modelversioning.artifacts.oci_signature import store_signature
    from modelversioning.domain import oci_ref

    if signing.signature_uri is not None:
        raise Refused("--signature-uri: an oci:// artifact's signature is an OCI referrer", code=EXIT_USAGE)
    bundle = _bundle(signing, digest, oci_ref.parse(uri).repository.rsplit("/", 1)[-1])
    try:
        stored = store_signature(uri, bundle, policy)
    except ArtifactError as e:
        raise Refused(f"cannot store the signature in the registry: {e}") from None
    return Signed(f"{stored.location} ({stored.via})", stored.location, _method(signing))


def sign_and_store(signing: Signing, digest: Digest, uri: str, local: Path | None) -> Signed:
    """Sign ``digest``'s files and store the bundle (see the module docstring)."""
    from modelversioning.artifacts.signature import model_name_of, signature_location

    location = signature_location(uri, signing.signature_uri)
    if location is None:
        raise Refused(f"{uri} has no default signature location; give --signature-uri", code=EXIT_USAGE)
    bundle = _bundle(signing, digest, model_name_of(str(local) if local is not None else uri))
    method = _method(signing)
    if urlsplit(location).scheme in ("http", "https"):
        base = Path(str(local).rstrip("/")) if local is not None else Path(model_name_of(uri))
        out = base.with_name(base.name + ".sig")
        out.write_bytes(bundle)
        note = f"publish {out} at {location} (an http(s) location is read-only here)"
        return Signed(str(out), location, method, note)
    import fsspec

    try:
        with fsspec.open(location, "wb") as f:
            f.write(bundle)
    except OSError as e:
        raise Refused(f"cannot write the signature to {location}: {e}") from None
    return Signed(location, location, method)
