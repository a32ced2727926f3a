"""The artifact digest: sha256 of a file, or of a directory's manifest.

This format is part of the API: users compute it themselves when they register a model
(``kubectl models register`` does it for local directories with :func:`digest_local`).

Single file
    ``artifact.sha256`` is the sha256 of the file's bytes (what ``sha256sum FILE`` prints).

Directory / prefix (``file:///dir/``, ``s3://bucket/prefix/``, ``gs://bucket/prefix/``)
    ``artifact.sha256`` is the sha256 of the *manifest*, a UTF-8 text with one line per file::

        <relative/posix/path> <sha256 hex of the file>\\n

    * ``relative/posix/path`` is the file's path relative to the directory/prefix, with ``/``
      separators, no leading ``./`` or ``/``, no ``.``, ``..`` or empty components, encoded
      as UTF-8; it may contain spaces (the digest is the last 64 characters of the line) but
      not newlines.
    * the hex digest is 64 lowercase characters; path and digest are separated by ONE space.
    * every line, including the last, ends with ``\\n``; there is no header or trailer.
    * lines are sorted by path, in Unicode code point order (the same as byte order of the
      UTF-8 encoding, i.e. ``LC_ALL=C sort``). Sort by the path, not the whole line.
    * every regular file below the directory is listed, at any depth, including empty and
      hidden files; directories themselves (and empty directories) are not listed. For local
      directories, symbolic links are followed (their targets must stay under a file root).
      An object-store prefix lists every object whose key starts with ``prefix/``.
    * a directory without any file has no digest (verification reports NotFound).

    Python (3.11+)::

        import hashlib, os

        def artifact_sha256(root):
            rels = sorted(
                os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                for d, _, names in os.walk(root, followlinks=True) for f in names
            )
            manifest = ""
            for rel in rels:
                with open(os.path.join(root, rel), "rb") as fh:
                    manifest += f"{rel} {hashlib.file_digest(fh, 'sha256').hexdigest()}\\n"
            return hashlib.sha256(manifest.encode("utf-8")).hexdigest()

    Shell (GNU coreutils, file names without newlines; ``-L`` follows symbolic links)::

        cd model && find -L . -type f -printf '%P\\n' | LC_ALL=C sort | while IFS= read -r f; do
          printf '%s %s\\n' "$f" "$(sha256sum < "$f" | cut -d' ' -f1)"; done | sha256sum
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["check_relative_path", "manifest_digest", "manifest_text"]


def check_relative_path(rel: str) -> str | None:
    """Why ``rel`` cannot appear in a manifest (or be written under a destination), or None."""
    if not rel:
        return "empty path"
    if "\n" in rel or "\r" in rel or "\x00" in rel:
        return f"path {rel!r} contains a newline or NUL"
    if rel.startswith("/") or "\\" in rel:
        return f"path {rel!r} is absolute or contains a backslash"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return f"path {rel!r} has an empty, '.' or '..' component"
    return None


def manifest_text(entries: Iterable[tuple[str, str]]) -> str:
    """The manifest for ``(relative_path, sha256hex)`` pairs, in any order."""
    lines = []
    for rel, digest in sorted(entries, key=lambda e: e[0]):
        problem = check_relative_path(rel)
        if problem:
            raise ValueError(problem)
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError(f"{digest!r} is not a lowercase sha256 hex digest")
        lines.append(f"{rel} {digest}\n")
    return "".join(lines)


def manifest_digest(entries: Iterable[tuple[str, str]]) -> str:
    """sha256 hex of :func:`manifest_text`."""
    return hashlib.sha256(manifest_text(entries).encode("utf-8")).hexdigest()
