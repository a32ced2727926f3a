"""Trust policy for signed models (OpenSSF Model Signing). What a ModelVersion's status records of its
signature is the artifact's (api.artifact: SignatureRecord, TrustAnchor).

A Model's ``spec.trust`` and a ModelPlatformPolicy's ``spec.trust`` say from which stage a version
must carry a signature that a trusted signer made over exactly its files, and which signers are
trusted: public keys, certificate identities (with their roots), or, untested, keyless Sigstore
identities. Trust material is always given by reference (a key of a ConfigMap or Secret): a Model's
references are read in the Model's namespace only, a platform policy's in the namespace it names.
Nothing is fetched from the internet. The decision (the strictest of the Model's and the
platforms' policies) is domain.trust's; docs/security.md ("Signed models") explains it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelversioning.api.common import DNS_LABEL, ApiModel

_KEY = r"^[-._a-zA-Z0-9]+$"  # a ConfigMap/Secret data key
# api.modelversion_spec.STAGE_NAME (which imports this module; tests/test_trust_api.py keeps them equal)
STAGE_NAME = r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$"


class PemRef(ApiModel):
    """A PEM (or, for sigstore, JSON) document in a key of a ConfigMap or Secret of the Model's
    namespace."""

    kind: Literal["ConfigMap", "Secret"] = Field(default="ConfigMap", description="ConfigMap or Secret.")
    name: str = Field(max_length=253, description="Its name (in the Model's namespace).")
    key: str = Field(max_length=253, pattern=_KEY, description="The data key that holds the document.")


class PlatformPemRef(PemRef):
    """As PemRef, in a namespace the platform names (usually its own)."""

    name: str = Field(max_length=253, description="Its name (in its namespace).")
    namespace: str = Field(max_length=63, pattern=DNS_LABEL, description="The namespace that holds it.")


_NAME = Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]


class TrustedKey(ApiModel):
    name: _NAME | None = Field(default=None, description="A label for status and Events (default: key<i>).")
    public_key_ref: PemRef = Field(description="A PEM public key (ECDSA P-256, P-384 or P-521).")


class TrustedCertificate(ApiModel):
    name: _NAME | None = Field(default=None, description="A label for status and Events (default: cert<i>).")
    identity: str = Field(
        max_length=1024,
        description="The signing certificate's identity: one of its subjectAltNames (e-mail, URI, DNS) or, "
        "without any, its subject common name; matched exactly.",
    )
    issuer: str | None = Field(
        default=None,
        max_length=1024,
        description="The signing certificate's issuer: its RFC 4514 distinguished name or common name; "
        "matched exactly. Unset: any issuer that chains to rootsRef.",
    )
    roots_ref: PemRef = Field(
        description="PEM certificates: the roots (trust anchors) the chain must end in."
    )


class TrustedSigstore(ApiModel):
    """Keyless Sigstore bundles (Fulcio certificate, Rekor entry), verified offline against a trusted
    root given by reference. Untested here (no Fulcio or Rekor can be reached): docs/security.md."""

    name: _NAME | None = Field(
        default=None, description="A label for status and Events (default: sigstore<i>)."
    )
    identity: str = Field(max_length=1024, description="The certificate identity (subjectAltName), exactly.")
    oidc_issuer: str = Field(max_length=1024, description="The OIDC issuer that Fulcio recorded, exactly.")
    trust_config_ref: PemRef = Field(
        description="A Sigstore ClientTrustConfig JSON (its trustedRoot: Fulcio CAs, Rekor keys)."
    )


class TrustPolicy(ApiModel):
    """A Model's trust policy (``spec.trust``)."""

    required_from: str | None = Field(
        default=None,
        max_length=32,
        pattern=STAGE_NAME,
        description="Versions at this stage or beyond it (in the Model's stage order) need a signature "
        "accepted here and by the platform's policies: below it a version serves as before and its "
        "promotion into this stage is refused; at or beyond it ArtifactVerified is False without one. "
        "Unset: signatures are checked and recorded, required only where a platform policy requires them.",
    )
    keys: list[TrustedKey] = Field(default_factory=list, max_length=16, description="Trusted public keys.")
    certificates: list[TrustedCertificate] = Field(
        default_factory=list, max_length=16, description="Trusted certificate identities and their roots."
    )
    sigstore: list[TrustedSigstore] = Field(
        default_factory=list, max_length=8, description="Trusted keyless Sigstore identities (untested)."
    )


class PlatformTrustedKey(TrustedKey):
    public_key_ref: PlatformPemRef = Field(description="A PEM public key (ECDSA P-256, P-384 or P-521).")


class PlatformTrustedCertificate(TrustedCertificate):
    roots_ref: PlatformPemRef = Field(description="PEM certificates: the roots the chain must end in.")


class PlatformTrustedSigstore(TrustedSigstore):
    trust_config_ref: PlatformPemRef = Field(description="A Sigstore ClientTrustConfig JSON.")


class PlatformTrust(ApiModel):
    """A platform floor (ModelPlatformPolicy ``spec.trust``): the earliest stage that needs a signature
    wins, and a signer must be trusted by every policy that lists signers (the Model's too)."""

    required_from: str | None = Field(
        default=None,
        max_length=32,
        pattern=STAGE_NAME,
        description="Versions at this stage or beyond it need an accepted signature, whatever the Model "
        "says.",
    )
    keys: list[PlatformTrustedKey] = Field(default_factory=list, max_length=16)
    certificates: list[PlatformTrustedCertificate] = Field(default_factory=list, max_length=16)
    sigstore: list[PlatformTrustedSigstore] = Field(default_factory=list, max_length=8)
