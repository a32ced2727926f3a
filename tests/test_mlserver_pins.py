"""The MLServer image (e2e/mlserver-constraints.txt) runs the scikit-learn, numpy, scipy and joblib the
tests train with (constraints.txt): a model pickled by one scikit-learn is loaded by the same one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl")


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return out


def test_the_mlserver_image_runs_the_scikit_learn_the_tests_train_with() -> None:
    dev, image = _pins(ROOT / "constraints.txt"), _pins(ROOT / "e2e" / "mlserver-constraints.txt")
    assert {k: dev.get(k) for k in SHARED} == {k: image.get(k) for k in SHARED}
    assert all(dev.get(k) for k in SHARED), dev
    assert image.get("mlserver") and image.get("mlserver-sklearn") == image["mlserver"]
    # the image's tag names its MLServer
    images_py = (ROOT / "e2e" / "images.py").read_text()
    assert f'MLSERVER_IMAGE = "localhost/modelversioning/mlserver:{image["mlserver"]}"' in images_py
