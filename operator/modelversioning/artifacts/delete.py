"""Delete exactly the objects a version verified (retention), never "a prefix recursively".

``delete_verified`` runs in the verifier's worker process (``runner.delete_in_child``), under the
same URI policy, credentials rules and limits as verification: a URI the operator may not fetch it
may not delete either; ``http(s)`` artifacts cannot be deleted (no protocol for it). It

1. lists the artifact as verification does (a prefix page by page, stopping at ``artifacts.maxFiles``
   + 1 objects or ``maxTotalBytes``, everything before ``artifacts.timeoutSeconds``);
2. hashes every listed object and refuses unless the digest is the version's verified sha256 (the
   manifest digest covers every relative path: an object added, removed or changed since the
   verification changes it) and the file count and size are the verified ones;
3. for ``file://``, refuses a path with a symbolic link anywhere (the bytes must be where the URI
   says, not behind a link into someone else's tree);
4. deletes those objects one by one (an object store: in batches), then removes the directories that
   became empty (``rmdir``, never recursive); a second deadline bounds this step.

``dry_run`` stops after step 3 and says what would go. Nothing at the URI counts as already deleted
(idempotent). A refusal (``refused``) deletes nothing and is permanent for these bytes; a failure
(``ok`` False, not refused) may be retried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.credentials import CredentialsError, bind_credentials, store_access
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.hashing import hash_plan
from modelversioning.artifacts.limits import run_bounded
from modelversioning.artifacts.listing import ReadPlan, plan_reading
from modelversioning.artifacts.policy import check_uri, resolve_file_path
from modelversioning.artifacts.redact import redact_text, redact_uri

DELETABLE_SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs"})
SHOWN_OBJECTS = 10  # relative paths carried back (the rest are counted)
_REFUSING = frozenset(
    {Reason.LIMIT_EXCEEDED, Reason.URI_REFUSED, Reason.DIGEST_MISMATCH, Reason.SIZE_MISMATCH}
)


@dataclass(frozen=True)
class DeleteResult:
    ok: bool
    message: str  # safe to show (no credentials)
    existed: bool = True
    refused: bool = False  # not provably the verified objects (or a limit): nothing deleted
    objects: tuple[str, ...] = ()  # the first relative paths deleted (dry run: that would be)
    count: int = 0  # objects in all

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "existed": self.existed,
            "refused": self.refused,
            "objects": list(self.objects),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeleteResult:
        return cls(
            bool(d["ok"]),
            str(d["message"]),
            bool(d.get("existed", True)),
            bool(d.get("refused", False)),
            tuple(str(o) for o in d.get("objects") or ())[:SHOWN_OBJECTS],
            int(d.get("count") or 0),
        )


def _refused(message: str) -> DeleteResult:
    return DeleteResult(False, message, refused=True)


def delete_verified(
    uri: str,
    expected_sha256: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    expected_files: int | None = None,
    dry_run: bool = False,
) -> DeleteResult:
    """Delete the objects at ``uri`` if (and only if) they hash to ``expected_sha256`` (see above)."""
    shown = redact_uri(uri)
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme not in DELETABLE_SCHEMES:
        return _refused(f"{shown}: {scheme or 'this'}:// artifacts cannot be deleted by the operator")
    secrets = tuple(secret_data.values()) if secret_data else ()
    try:
        access = store_access(scheme, secret_data, env=env)
        refusal = check_uri(uri, policy, endpoint_url=access.endpoint_url)
        if refusal:
            return _refused(refusal if shown in refusal else f"{shown}: {refusal}")
        access = bind_credentials(uri, access, policy, env)
        deadline = time.monotonic() + policy.timeout_seconds
        try:
            plan = plan_reading(uri, access, policy, deadline, expected_size)
        except FileNotFoundError:  # nothing at the URI (a later step's vanished file is a failure)
            return DeleteResult(True, f"{shown} was already gone", existed=False)
        if scheme == "file" and (link := _symlink_in(uri, plan)) is not None:
            return _refused(
                f"{shown}: {link} is a symbolic link; retention deletes only what lies at the URI"
            )
        digest = hash_plan(
            plan, policy, deadline=deadline, shown=shown, expected_size=expected_size, progress=None,
            writer=None,
        )  # fmt: skip
        if digest.sha256 != expected_sha256 or (
            expected_files is not None and digest.files != expected_files
        ):
            return _refused(
                f"{shown}: the objects there no longer hash to the verified sha256 {expected_sha256[:12]} "
                f"({digest.files} objects listed); nothing deleted"
            )
        rels = tuple(e.rel for e in plan.entries)
        if dry_run:
            return DeleteResult(True, f"{shown}: hashes to the verified sha256", objects=rels[:SHOWN_OBJECTS],
                                count=len(rels))  # fmt: skip
        _remove(plan, scheme, policy, shown)
        return DeleteResult(True, f"{shown} deleted", objects=rels[:SHOWN_OBJECTS], count=len(rels))
    except ArtifactError as e:
        if e.reason is Reason.NOT_FOUND:
            return DeleteResult(True, f"{shown} was already gone", existed=False)
        msg = redact_text(e.message if shown in e.message else f"{shown}: {e.message}", secrets)
        return _refused(msg) if e.reason in _REFUSING else DeleteResult(False, msg)
    except CredentialsError as e:
        return DeleteResult(False, redact_text(f"{shown}: {e}", secrets))
    except (OSError, ValueError) as e:
        return DeleteResult(False, redact_text(f"{shown}: {type(e).__name__}: {e}", secrets))


def _symlink_in(uri: str, plan: ReadPlan) -> str | None:
    """The first path of a file:// artifact that is (or lies behind) a symbolic link, or None."""
    literal = os.path.normpath(unquote(urlsplit(uri).path))
    real = resolve_file_path(uri).as_posix()
    if literal != real:
        return literal
    if plan.kind == "file":
        return None
    for e in plan.entries:
        if e.path != os.path.join(real, e.rel):
            return os.path.join(literal, e.rel)
    return None


def _remove(plan: ReadPlan, scheme: str, policy: ArtifactPolicy, shown: str) -> None:
    """Delete exactly the planned objects (a fresh deadline), then the directories left empty."""
    deadline = time.monotonic() + policy.timeout_seconds
    paths = [e.path for e in plan.entries]
    if scheme != "file":
        if any(c in p for p in paths for c in "*?["):  # fsspec would read a glob: one by one
            run_bounded(lambda: [plan.fs.rm_file(p) for p in paths], deadline, shown, policy)
        else:  # batched (s3: 1,000 keys a request), never recursive
            run_bounded(lambda: plan.fs.rm(paths, recursive=False), deadline, shown, policy)
        return
    for p in paths:
        if time.monotonic() > deadline:
            raise ArtifactError(Reason.FETCH_FAILED, f"{shown}: the deletion ran past its deadline")
        if os.path.isdir(p) and not os.path.islink(p):
            raise ArtifactError(Reason.FETCH_FAILED, f"{shown}: {p} became a directory")
        os.remove(p)
    if plan.kind == "directory":
        _remove_empty_dirs(plan)
    left = [p for p in paths if os.path.lexists(p)]
    if left:
        raise ArtifactError(Reason.FETCH_FAILED, f"{shown}: {len(left)} objects still exist after the delete")


def _remove_empty_dirs(plan: ReadPlan) -> None:
    """``rmdir`` the directories of the deleted files, deepest first, up to the artifact's own root
    (the common prefix of its files minus their relative paths); a directory that is not empty stays."""
    first = plan.entries[0]
    root = first.path[: len(first.path) - len(first.rel)].rstrip("/")
    dirs: set[str] = {root}
    for e in plan.entries:
        for parent in PurePosixPath(e.rel).parents:
            if str(parent) != ".":
                dirs.add(os.path.join(root, str(parent)))
    for d in sorted(dirs, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            continue  # not empty (something else lives there) or already gone: leave it
