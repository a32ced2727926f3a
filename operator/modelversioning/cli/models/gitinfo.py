"""The training code checkout: commit, origin remote and whether the tree is dirty (`git` CLI)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class GitInfo:
    root: str
    commit: str | None
    remote: str | None
    dirty: tuple[str, ...]  # `git status --porcelain` lines

    @property
    def is_dirty(self) -> bool:
        return bool(self.dirty)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(
            ["git", *args], cwd=str(cwd), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.rstrip("\n") if r.returncode == 0 else None


def redact_remote(url: str) -> str:
    """A remote URL without credentials (https://user:token@host/x.git -> https://host/x.git)."""
    parts = urlsplit(url)
    if parts.scheme and parts.hostname and (parts.username or parts.password):
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def git_info(path: Path) -> GitInfo | None:
    """None when `path` is not inside a git work tree (or git is not installed)."""
    if shutil.which("git") is None:
        return None
    root = _git(path, "rev-parse", "--show-toplevel")  # porcelain lines start with a space: no strip()
    if root is None:
        return None
    commit = (_git(path, "rev-parse", "HEAD") or "").strip()  # empty in a repository without commits
    remote = (_git(path, "remote", "get-url", "origin") or "").strip()
    status = _git(path, "status", "--porcelain")
    dirty = tuple(line for line in (status or "").splitlines() if line.strip())
    return GitInfo(
        root=root, commit=commit or None, remote=redact_remote(remote) if remote else None, dirty=dirty
    )
