"""The artifact of a ModelVersion (spec.artifact, with where its signature is) and what verification
records (status.artifact, with what was found of the signature), with the rules that keep credentials
out of URIs (CEL for the API server, pydantic for the operator). The trust policies that judge a
signature are a Model's and a platform's (api.trust)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelversioning.api.common import SHA256_HEX, ApiModel, StatusModel, cel, validations
from modelversioning.domain import oci_ref
from modelversioning.domain.version_facts import CONTENTS_LIMIT

# Credentials never belong in the spec (it is readable by everyone who may read the object, and
# copied into Events, status and logs): no user info in a URI, no signed query string (pre-signed
# S3/GCS URLs, Azure SAS). Checked by the API server (CEL) and by the operator (pydantic).
USERINFO_PATTERN = "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@"
SIGNED_QUERY_PATTERN = (
    "(?i)[?&](x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential"
    "|signature|sig|awsaccesskeyid|access_token|token)="
)
NO_USERINFO = cel(
    f"!self.matches('{USERINFO_PATTERN}')",
    "URIs must not contain credentials (user info); put them in a Secret and reference it",
)
_NO_SIGNED_QUERY = cel(
    f"!self.matches('{SIGNED_QUERY_PATTERN}')",
    "artifact.uri must not carry a signed query string (a pre-signed URL is a credential); "
    "reference a Secret with artifact.secretRef",
)


def no_credentials_in_uri(value: str | None, what: str, *, query: bool = False) -> str | None:
    if value is None:
        return value
    if re.match(USERINFO_PATTERN, value):
        raise ValueError(f"{what} must not contain credentials (user info); put them in a Secret")
    if query and re.search(SIGNED_QUERY_PATTERN.removeprefix("(?i)"), value, re.IGNORECASE):
        raise ValueError(f"{what} must not carry a signed query string (a pre-signed URL is a credential)")
    return value


class SecretRef(ApiModel):
    name: str = Field(max_length=253, description="Name of a Secret in the same namespace.")


# oci:// artifacts are pinned by their manifest digest, which is then artifact.sha256 (domain.oci_ref).
_OCI_PINNED = cel(
    f"!self.uri.startsWith('oci://') || self.uri.matches('{oci_ref.PINNED_PATTERN}')",
    "an oci:// artifact must be pinned by its manifest digest: oci://host/repo[:tag]@sha256:<digest> "
    "(a tag moves; `kubectl models register --artifact oci://host/repo:tag` resolves it)",
)
_OCI_SHA256 = cel(
    "!self.uri.startsWith('oci://') || self.uri.endsWith('@sha256:' + self.sha256)",
    "for an oci:// artifact, artifact.sha256 is the manifest digest the URI pins",
)


# Signatures of oci:// artifacts are OCI referrers of the pinned manifest (artifacts.oci_signature).
_OCI_NO_SIGNATURE_URI_MESSAGE = (
    "an oci:// artifact has no signatureUri: its signatures are OCI referrers of its manifest (the "
    "referrers API or the sha256-<digest> tag schema; `kubectl models register --sign-key` pushes them)"
)
_OCI_NO_SIGNATURE_URI = cel(
    "!self.uri.startsWith('oci://') || !has(self.signatureUri)", _OCI_NO_SIGNATURE_URI_MESSAGE
)


class Artifact(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(_OCI_PINNED, _OCI_SHA256, _OCI_NO_SIGNATURE_URI)
    }

    uri: str = Field(
        max_length=2048,
        description="Where the model lives: s3://, gs://, http(s)://, file:// (a file or a directory/prefix),"
        " or oci://host/repo[:tag]@sha256:<manifest digest> (an ORAS artifact, a KitOps ModelKit / CNCF "
        "ModelPack, or an OCI image).",
        json_schema_extra=validations(
            cel(
                "self.matches('^[a-z][a-z0-9+.-]*://.+')",
                "artifact.uri must be an absolute URI with a scheme, e.g. s3://bucket/models/fraud/2.3.8/",
            ),
            NO_USERINFO,
            _NO_SIGNED_QUERY,
        ),
    )
    sha256: str = Field(
        max_length=64,
        description="sha256 of the file, or for a directory the sha256 of its manifest "
        "(sorted lines 'relative/path <sha256 of file>'), or for oci:// the manifest digest.",
        json_schema_extra=validations(
            cel(f"self.matches('{SHA256_HEX}')", "artifact.sha256 must be 64 lowercase hex characters")
        ),
    )
    size_bytes: int | None = Field(default=None, ge=0, description="Total size in bytes, if known.")
    format: str | None = Field(default=None, max_length=63, description="e.g. onnx, safetensors, pickle.")
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Credentials for the artifact store, by reference only (keys such as "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL; .dockerconfigjson for oci://).",
    )
    signature_uri: str | None = Field(
        default=None,
        max_length=2048,
        description="Where its OpenSSF Model Signing signature is (default: beside the artifact, <file>.sig "
        "or <directory>.sig; not for oci://, whose signatures are OCI referrers of its manifest); read with "
        "the artifact's credentials and URI policy.",
        json_schema_extra=validations(NO_USERINFO, _NO_SIGNED_QUERY),
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return str(no_credentials_in_uri(v, "artifact.uri", query=True))

    @field_validator("signature_uri")
    @classmethod
    def _sig_uri(cls, v: str | None) -> str | None:
        return no_credentials_in_uri(v, "artifact.signatureUri", query=True)

    @model_validator(mode="after")
    def _oci_pinned(self) -> Artifact:
        if not oci_ref.is_oci(self.uri):
            return self
        problem = oci_ref.tag_without_digest(self.uri)
        if problem:
            raise ValueError(problem)
        if oci_ref.parse(self.uri).digest_hex != self.sha256:
            raise ValueError("for an oci:// artifact, artifact.sha256 is the manifest digest the URI pins")
        if self.signature_uri is not None:
            raise ValueError(_OCI_NO_SIGNATURE_URI_MESSAGE)
        return self

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        import re

        if not re.match(SHA256_HEX, v):
            raise ValueError("artifact.sha256 must be 64 lowercase hex characters")
        return v


class ArtifactFile(StatusModel):
    path: str = Field(max_length=4096)
    sha256: str = Field(max_length=64)
    size_bytes: int = Field(ge=0)


class FoundTensor(StatusModel):
    name: str = Field(max_length=256)
    dtype: str = Field(max_length=64)
    shape: list[int] = Field(
        default_factory=list, max_length=16, description="-1: any size; []: not declared."
    )


class FoundSignature(StatusModel):
    """The input/output signature the artifact carries (an MLflow MLmodel file's), read while hashing."""

    source: str = Field(max_length=300, description="Where it was read, e.g. 'artifact MLmodel'.")
    error: str | None = Field(default=None, max_length=512, description="Why it could not be read.")
    inputs: list[FoundTensor] = Field(default_factory=list, max_length=256)
    outputs: list[FoundTensor] = Field(default_factory=list, max_length=256)


class TrustAnchor(StatusModel):
    """Trust material that accepted the signature: what the init container verifies against again."""

    id: str = Field(max_length=512)
    source: str = Field(max_length=320)
    kind: Literal["key", "certificate", "sigstore"]
    pem: str = Field(max_length=65536)
    identity: str | None = Field(default=None, max_length=1024)
    issuer: str | None = Field(default=None, max_length=1024)


class SignatureRecord(StatusModel):
    """What the verifier found of the signature (status.artifact.signature)."""

    outcome: str = Field(max_length=64, description="Signed, or why not (the ArtifactVerified reasons).")
    message: str = Field(default="", max_length=4096)
    uri: str | None = Field(default=None, max_length=2048, description="Where the signature was read.")
    method: Literal["key", "certificate", "sigstore"] | None = None
    signer: str | None = Field(default=None, max_length=1024, description="Key fingerprint or identity.")
    issuer: str | None = Field(default=None, max_length=1024)
    not_after: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    matched: list[str] = Field(
        default_factory=list, max_length=64, description="Trust entries that verified it."
    )
    accepted_by: str | None = Field(
        default=None, max_length=2048, description="The trust policies that accepted it (None: not accepted)."
    )
    policy: str = Field(
        default="", max_length=64, description="Digest of the trust policy it was checked under."
    )
    anchors: list[TrustAnchor] = Field(default_factory=list, max_length=16)


class VerifiedArtifact(StatusModel):
    digest: str = Field(max_length=64)
    size_bytes: int | None = Field(default=None, ge=0)
    files: int | None = Field(default=None, ge=0)
    verified_at: str = Field(json_schema_extra={"format": "date-time"})
    layout: str | None = Field(
        default=None, max_length=32, description="oci://: oras, modelkit, modelpack or image."
    )
    content_digest: str | None = Field(
        default=None,
        max_length=64,
        description="oci://: the digest the laid-out files have as a directory (the format of "
        "artifact.sha256 for a directory), comparable with a local copy.",
    )
    contents: list[ArtifactFile] | None = Field(
        default=None,
        max_length=CONTENTS_LIMIT,
        description=f"oci://: the files laid out, with their sha256 (the first {CONTENTS_LIMIT} by path).",
    )
    signature: SignatureRecord | None = None
    io_signature: FoundSignature | None = None
