"""The operator runs the same allocator in the tests and benchmarks (e2e/operator_proc.py) as in its
image (the Dockerfile): memory measured here is the image's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("# ---- runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def operator_proc():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("operator_proc", ROOT / "e2e" / "operator_proc.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_operator_process_gets_the_images_allocator() -> None:
    image = dockerfile_env()
    ours = operator_proc().allocator_env()
    assert image["PYTHONMALLOC"] == ours["PYTHONMALLOC"] == "malloc"
    assert image["MALLOC_CONF"] == ours["MALLOC_CONF"]
    for preload in (image["LD_PRELOAD"], ours["LD_PRELOAD"]):
        assert preload.endswith("/libjemalloc.so.2")
    assert Path(ours["LD_PRELOAD"]).exists()
