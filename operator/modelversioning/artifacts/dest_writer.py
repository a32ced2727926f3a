"""Writing a verified artifact under ``dest`` (the init-container form of verification).

The bytes are written while they are hashed, under a temporary name inside ``dest``
(``PARTIAL_PREFIX``); :meth:`DestWriter.commit` moves them into place only after the digest
matched, :meth:`DestWriter.discard` deletes the partial output otherwise. A file artifact lands at
``dest/<basename>``, a directory keeps its relative paths under ``dest``. Partial output left by a
run that was killed is removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from modelversioning.artifacts.results import Kind

PARTIAL_PREFIX = ".mv-partial-"


class DestWriter:
    """Writes under ``dest`` via a temporary name; ``commit`` moves everything into place or, if
    any move fails, removes what it had moved (a directory is never left half committed)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.token = secrets.token_hex(6)
        self.kind: Kind | None = None
        self.name: str | None = None
        self.rels: list[str] = []

    @property
    def tmp(self) -> Path:
        if self.kind == "file":
            return self.dest / f".{self.name}{PARTIAL_PREFIX}{self.token}"
        return self.dest / f"{PARTIAL_PREFIX}{self.token}"

    def prepare(self, kind: Kind, rels: list[str]) -> None:
        """Remove stale partial output, and make room for the files ``rels`` (relative paths)."""
        self.dest.mkdir(parents=True, exist_ok=True)
        for stale in self.dest.iterdir():  # left by a run that was killed (init container restart)
            if PARTIAL_PREFIX in stale.name and not stale.is_symlink():
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        self.kind = kind
        self.rels = list(rels)
        if kind == "file":
            self.name = rels[0]
        else:
            self.tmp.mkdir()

    def prepare_tree(self) -> Path:
        """``prepare`` for files not known in advance (``oci://`` layers): the temporary directory to
        write them under; set ``rels`` to what was written before :meth:`commit`."""
        self.prepare("directory", [])
        return self.tmp

    def path_for(self, rel: str) -> Path:
        if self.kind == "file":
            return self.tmp
        out = self.tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def commit(self) -> Path:
        dest_real = Path(os.path.realpath(self.dest))
        if self.kind == "file":
            assert self.name is not None
            target = self.dest / self.name
            os.replace(self.tmp, target)
            return target
        moved: list[Path] = []
        made: list[Path] = []  # directories this commit created, outermost first
        try:
            for rel in self.rels:
                target = self.dest / rel
                missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
                target.parent.mkdir(parents=True, exist_ok=True)
                made += reversed(missing)
                parent_real = Path(os.path.realpath(target.parent))
                if parent_real != dest_real and not parent_real.is_relative_to(dest_real):
                    raise OSError(f"{rel}: destination directory leaves {self.dest}")
                os.replace(self.tmp / rel, target)
                moved.append(target)
        except BaseException:
            for target in moved:
                target.unlink(missing_ok=True)
            for d in reversed(made):  # innermost first; only if empty (never another's files)
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.dest

    def discard(self) -> None:
        if self.kind is None:
            return
        tmp = self.tmp
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
