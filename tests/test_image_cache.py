"""The image cache keeps the newest few archives of an image, not only the last one built
(e2e/images.py): checkouts sharing one cache must not evict each other's archive."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "e2e")]

import images  # noqa: E402


def _archive(root: Path, name: str, mtime: float) -> Path:
    p = root / f"{name}.tar"
    p.write_bytes(b"x")
    os.utime(p, (mtime, mtime))
    return p


def test_the_newest_archives_survive_and_only_older_ones_are_stale(tmp_path: Path) -> None:
    olds = [_archive(tmp_path, f"operator-{i:016x}", 1000.0 + i) for i in range(6)]
    _archive(tmp_path, "mlserver-0000000000000001", 1.0)  # another image: never counted
    built = _archive(tmp_path, "operator-ffffffffffffffff", 2000.0)
    stale = images.stale_archives(tmp_path, "operator", built)
    # the one just built plus the KEEP_ARCHIVES - 1 newest others stay
    kept = olds[len(olds) - (images.KEEP_ARCHIVES - 1) :]
    assert sorted(stale) == sorted(set(olds) - set(kept))
    assert built not in stale


def test_a_cache_hit_marks_the_archive_used(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MV_CACHE_DIR", str(tmp_path))
    builder = images.ImageBuilder(log=None)
    builder.root = tmp_path
    archive = _archive(tmp_path, "operator-aaaaaaaaaaaaaaaa", 5.0)
    meta = {"ref": "r", "archive": str(archive), "digest": "sha256:0", "key": "a" * 64}
    (tmp_path / "operator-aaaaaaaaaaaaaaaa.json").write_text(json.dumps(meta))
    assert builder._cached("operator", "a" * 64) is not None
    assert archive.stat().st_mtime > 1000.0
