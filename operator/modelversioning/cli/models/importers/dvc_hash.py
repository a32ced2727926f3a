"""The bytes behind ``kubectl models register --dvc``: the artifact's sha256, computed in the same
pass that checks its md5 against what DVC recorded (a directory: each file against the ``.dir``
listing in the cache). Refused when the workspace changed since ``dvc commit``/``dvc repro``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from modelversioning.cli.models.errors import EXIT_FAILED, Refused
from modelversioning.cli.models.importers.dvc import CHUNK, DvcInputs, Progress, cache_path, file_md5


def hash_verified(inputs: DvcInputs, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256, size) of the artifact, checking that its bytes are the ones DVC recorded (md5),
    in one pass for a file. Refused when they are not."""
    art = inputs.artifact
    local = inputs.local
    if local is None:
        raise Refused(
            f"{art.path} ({inputs.source}) is neither in the DVC cache nor in the workspace: `dvc pull` it",
            EXIT_FAILED,
        )
    if art.is_dir:
        return _hash_dir(inputs, local, progress)
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    n = 0
    total = local.stat().st_size
    with open(local, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            n += len(chunk)
            if progress:
                progress(n, total)
    if md5.hexdigest() != art.md5:
        raise Refused(
            f"{local}: md5 {md5.hexdigest()}, but {inputs.source} recorded {art.md5} for {art.path}: the "
            "bytes changed since DVC recorded them (run `dvc commit` or `dvc repro`, or `dvc checkout`)",
            EXIT_FAILED,
        )
    return sha.hexdigest(), n


def _hash_dir(inputs: DvcInputs, local: Path, progress: Progress | None) -> tuple[str, int]:
    from modelversioning.artifacts import ArtifactError, digest_local

    listing = cache_path(inputs.root, inputs.artifact)
    if not listing.is_file():
        raise Refused(
            f"{inputs.artifact.path} ({inputs.source}): the .dir listing {listing} is not in the DVC cache, "
            "so the workspace cannot be checked against DVC: `dvc fetch` it",
            EXIT_FAILED,
        )
    try:
        entries = json.loads(listing.read_text())
        want = {str(e["relpath"]): str(e["md5"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Refused(f"{listing}: not a DVC .dir listing ({e})", EXIT_FAILED) from None
    have = {
        os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/"): os.path.join(d, f)
        for d, _, files in os.walk(local, followlinks=True)
        for f in files
    }
    changed = sorted(
        set(want) ^ set(have) | {r for r in set(want) & set(have) if file_md5(Path(have[r])) != want[r]}
    )
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise Refused(
            f"{local}: differs from what {inputs.source} recorded ({len(changed)} paths: {shown}); run "
            "`dvc checkout` (or `dvc commit`)",
            EXIT_FAILED,
        )
    try:
        d = digest_local(local, progress=progress)
    except ArtifactError as e:
        raise Refused(f"cannot hash the artifact: {e}", EXIT_FAILED) from None
    return d.sha256, d.size_bytes
