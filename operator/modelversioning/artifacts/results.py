"""What a verification produces: the :class:`Digest` an artifact hashes to (with the digest of
each of its files) and the :class:`VerifyResult` of comparing it with the registered sha256."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from modelversioning.artifacts.errors import Reason
from modelversioning.artifacts.signature import SignatureCheck

Kind = Literal["file", "directory"]


@dataclass(frozen=True)
class FileDigest:
    path: str  # relative posix path (a single-file artifact: its basename)
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Digest:
    """What an artifact hashes to. ``sha256`` is the file digest or the manifest digest."""

    sha256: str
    kind: Kind
    size_bytes: int
    files: int
    entries: tuple[FileDigest, ...] = field(repr=False, default=())
    layout: str | None = None  # oci://: oras, modelkit, modelpack or image
    content_digest: str | None = None  # oci://: the digest of the laid-out files as a directory
    skipped_links: int = 0  # oci://: symbolic links to directories or to nothing, not laid out
    # the I/O signature the artifact carries (artifacts.io_signature.read_signature; None: none found)
    io_signature: dict[str, Any] | None = None


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of one verification; safe to log, print and put in status (no secrets)."""

    reason: Reason
    uri: str  # redacted
    expected: str
    actual: str | None
    size_bytes: int | None
    files: int | None
    duration_seconds: float
    message: str
    transient: bool
    kind: Kind | None = None
    written_to: str | None = None
    layout: str | None = None  # oci:// only (see Digest)
    content_digest: str | None = None
    contents: tuple[FileDigest, ...] = ()  # oci:// only: the files laid out, by path
    signature: SignatureCheck | None = None  # with trust material: what the signature check found
    io_signature: dict[str, Any] | None = None  # see Digest.io_signature

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VERIFIED

    @property
    def outcome(self) -> str:
        return self.reason.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason.value,
            "uri": self.uri,
            "expected": self.expected,
            "actual": self.actual,
            "sizeBytes": self.size_bytes,
            "files": self.files,
            "kind": self.kind,
            "durationSeconds": round(self.duration_seconds, 3),
            "transient": self.transient,
            "message": self.message,
            "writtenTo": self.written_to,
            **(self._oci() if self.layout else {}),
            "signature": self.signature.to_dict() if self.signature is not None else None,
            "ioSignature": self.io_signature,
        }

    def _oci(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "contentDigest": self.content_digest,
            "contents": [
                {"path": f.path, "sha256": f.sha256, "sizeBytes": f.size_bytes} for f in self.contents
            ],
        }

    @staticmethod
    def contents_from(items: Any) -> tuple[FileDigest, ...]:
        """``contents`` as :meth:`to_dict` wrote them (a worker's answer)."""
        return tuple(FileDigest(str(i["path"]), str(i["sha256"]), int(i["sizeBytes"])) for i in items or ())
