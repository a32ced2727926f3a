"""The Git side of ``kubectl models wave``: read the overlays from a working tree, and commit one
promoted overlay so that nothing is half-promoted and a racing wave is refused.

``commit_overlay`` holds a lock file in the repository's git directory for the whole check-and-commit,
and commits only when HEAD is still the commit the decision was made on and the overlay still has the
content the patch was computed from (in the index and the working tree): a second wave that decided on
the same HEAD finds HEAD moved, or the overlay changed, and is refused; it changes nothing. Across
clones, the push is the serialization point: a wave's push that is not a fast-forward is rejected by the
Git server, and run again it decides on the new HEAD.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from modelversioning.cli.models.errors import EXIT_FAILED, EXIT_USAGE, Refused

LOCK_NAME = "modelversioning-wave.lock"


def _git(repo: Path, *args: str, check: bool = True, input_: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, input=input_
        )
    except FileNotFoundError:
        raise Refused("git is not installed", EXIT_FAILED) from None
    if check and done.returncode != 0:
        raise Refused(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}", EXIT_FAILED)
    return done.stdout


def toplevel(start: Path) -> Path:
    out = subprocess.run(
        ["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0:
        raise Refused(f"{start} is not in a Git working tree (give --repo)", EXIT_USAGE)
    return Path(out.stdout.strip())


def head(repo: Path) -> str:
    return _git(repo, "rev-parse", "--verify", "HEAD").strip()


def read(repo: Path, rel: str) -> str:
    """The overlay's text from the working tree. The plan and the tree are a shared repository's: an
    overlay that is a symlink, or that resolves outside the repository (through a symlinked directory),
    is refused, never followed (it would read, and the user would be shown, any file of theirs)."""
    path = repo / rel
    if path.is_symlink() or not path.resolve().is_relative_to(repo.resolve()):
        raise Refused(f"overlay {rel}: a symlink or outside {repo}: refused (never followed)", EXIT_FAILED)
    try:
        return path.read_text()
    except OSError as e:
        raise Refused(f"overlay {rel}: cannot read it in {repo}: {e}", EXIT_FAILED) from None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unified_diff(rel: str, before: str, after: str) -> str:
    """A patch `git apply` takes (paths a/ and b/ from the repository's root)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"
    )
    body = "".join(lines)
    return f"diff --git a/{rel} b/{rel}\n{body}" if body else ""


@contextmanager
def _locked(repo: Path) -> Iterator[None]:
    gitdir = Path(_git(repo, "rev-parse", "--absolute-git-dir").strip())
    with open(gitdir / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                "another wave is committing in this repository right now: refused (run again)", EXIT_FAILED
            ) from None
        yield


def commit_overlay(
    repo: Path, rel: str, base: str, before: str, after: str, message: str | Callable[[], str]
) -> str:
    """Commit ``after`` as ``rel`` on top of ``base``; Refused (nothing changed) when HEAD moved or the
    overlay is not ``before`` any more (committed, staged or in the working tree). ``message`` may be a
    function, called under the lock after those checks and before the overlay is written: it decides
    again (the wave re-reads the previous region's gate) and returns the message, or raises Refused, and
    nothing is changed."""
    with _locked(repo):
        now = head(repo)
        if now != base:
            raise Refused(
                f"HEAD moved while the wave decided ({base[:12]} -> {now[:12]}): another wave or a person "
                "committed; nothing was committed, run again",
                EXIT_FAILED,
            )
        committed = _git(repo, "show", f"HEAD:{rel}", check=False)
        if (
            committed != before
            or read(repo, rel) != before
            or _git(repo, "diff", "--cached", "--name-only", "--", rel).strip()
        ):
            raise Refused(
                f"overlay {rel} changed underneath the wave (uncommitted or staged changes, or not what was "
                "read): nothing was committed",
                EXIT_FAILED,
            )
        if callable(message):
            message = message()
        path = repo / rel
        tmp = path.with_name(f".{path.name}.wave-tmp")
        tmp.write_text(after)
        os.replace(tmp, path)
        try:
            _git(repo, "add", "--", rel)
            _git(repo, "commit", "--quiet", "-F", "-", "--", rel, input_=message)
        except Refused:
            path.write_text(before)  # nothing half-done: the overlay as it was, unstaged
            _git(repo, "reset", "--quiet", "--", rel, check=False)
            raise
        return head(repo)
