"""``oci://`` artifact references: ``oci://<registry host[:port]>/<repository>[:<tag>][@sha256:<hex>]``.

The grammar is the OCI distribution reference grammar (distribution/reference), restricted to what we
fetch: a registry host (a DNS name or an IPv4 address, with an optional port; IPv6 literals are not
supported), a repository of lowercase path components, an optional tag and an optional ``sha256`` digest.
A ModelVersion must name the digest (the manifest's sha256): a tag moves, a digest does not. The
same pattern is the CRD's CEL rule (RE2 syntax, no backslashes so it sits in a CEL string literal)
and is used by Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "oci"
_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOST = rf"{_LABEL}([.]{_LABEL})*"
_PORT = r"(:[0-9]{1,5})?"
_COMPONENT = r"[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
# Any oci:// reference (tag and/or digest, or neither: then the registry's "latest" would be meant).
REFERENCE_PATTERN = rf"^oci://(?P<registry>{_HOST}{_PORT})/(?P<repository>{_REPOSITORY})(:(?P<tag>{_TAG}))?(@(?P<digest>{_DIGEST}))?$"
# What a ModelVersion may name: the digest is required.
PINNED_PATTERN = rf"^oci://{_HOST}{_PORT}/{_REPOSITORY}(:{_TAG})?@{_DIGEST}$"
_REFERENCE_RE = re.compile(REFERENCE_PATTERN)
MAX_REPOSITORY = 255


class ReferenceError(ValueError):
    """Not an oci:// reference we can fetch (the message says what is wrong)."""


@dataclass(frozen=True)
class OciRef:
    registry: str  # host[:port] as written (lowercase)
    repository: str
    tag: str | None
    digest: str | None  # "sha256:<hex>"

    @property
    def host(self) -> str:
        """The host name (or IPv4 address), without the port."""
        return self.registry.rsplit(":", 1)[0]

    @property
    def port(self) -> int | None:
        return int(self.registry.rsplit(":", 1)[1]) if ":" in self.registry else None

    @property
    def digest_hex(self) -> str | None:
        return self.digest.removeprefix("sha256:") if self.digest else None

    def pinned(self, digest: str) -> str:
        """This reference pinned to ``digest`` (``sha256:<hex>`` or the bare hex); the tag is kept, for
        people (the digest alone decides what is fetched)."""
        hexdigest = digest.removeprefix("sha256:")
        tag = f":{self.tag}" if self.tag else ""
        return f"oci://{self.registry}/{self.repository}{tag}@sha256:{hexdigest}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"oci://{self.registry}/{self.repository}{tag}{digest}"


def parse(uri: str) -> OciRef:
    """The reference ``uri`` names. Raises :class:`ReferenceError`."""
    m = _REFERENCE_RE.match(uri)
    if m is None:
        raise ReferenceError(
            f"{uri[:200]!r} is not an oci:// reference: oci://<registry host[:port]>/<repository>"
            "[:<tag>]@sha256:<manifest digest> (repository: lowercase path components)"
        )
    registry = m.group("registry").lower()
    repository = m.group("repository")
    if len(repository) > MAX_REPOSITORY:
        raise ReferenceError(f"the repository name is longer than {MAX_REPOSITORY} characters")
    port = OciRef(registry, repository, None, None).port
    if port is not None and not 0 < port < 65536:
        raise ReferenceError(f"port {port} is not a TCP port")
    return OciRef(registry, repository, m.group("tag"), m.group("digest"))


def is_oci(uri: str) -> bool:
    return uri[:6].lower() == "oci://"


def tag_without_digest(uri: str) -> str | None:
    """Why an oci:// URI may not be registered as written (no digest), or None when it is pinned or
    not an oci:// URI at all."""
    if not is_oci(uri):
        return None
    try:
        ref = parse(uri)
    except ReferenceError as e:
        return str(e)
    if ref.digest is None:
        what = f"a tag ({ref.tag}) without a digest" if ref.tag else "no digest"
        return (
            f"{uri}: {what}: an oci:// artifact must be pinned by its manifest digest "
            "(oci://host/repo@sha256:<digest>; `kubectl models register --artifact oci://host/repo:tag` "
            "resolves a tag)"
        )
    return None
