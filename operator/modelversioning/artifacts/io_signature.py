"""The input/output signature an artifact carries: an MLflow model directory's ``MLmodel`` file.

MLflow writes ``signature.inputs`` / ``signature.outputs`` as JSON strings inside the YAML file, either
column-based (``[{"name": "x", "type": "double"}]``: each column is a tensor of shape ``[-1]``) or
tensor-based (``[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1,
4]}}]``). An unnamed tensor is named by its position (``#0``). The result is plain data
(``{inputs, outputs}`` of ``{name, dtype, shape}``) for ``domain.io_contract.IOSignature.of``.

The file is read while the artifact is hashed (``artifacts.hashing``; an oci:// layout's laid-out files:
``artifacts.oci_extract``), in the verifier's child process
with its memory limit, and only up to ``MAX_MLMODEL_BYTES``. ONNX graphs' inputs/outputs are not read
yet (they sit in a protobuf beside the weights; reading them needs the onnx package or a protobuf
reader of our own).
"""

from __future__ import annotations

import json
from typing import Any

MLMODEL = "MLmodel"
MAX_MLMODEL_BYTES = 256 * 1024
MAX_TENSORS = 256


class SignatureUnreadable(ValueError):
    """The MLmodel file has a signature that cannot be read (reported, never fatal to verification)."""


def is_mlmodel(rel_path: str) -> bool:
    """The MLmodel file of a model directory (at its root, or under one top-level directory)."""
    parts = rel_path.split("/")
    return parts[-1] == MLMODEL and len(parts) <= 2


def parse_mlmodel(data: bytes) -> dict[str, Any] | None:
    """The signature in an MLmodel file (None: the file declares none)."""
    if len(data) > MAX_MLMODEL_BYTES:
        raise SignatureUnreadable(f"MLmodel is larger than {MAX_MLMODEL_BYTES} bytes")
    import yaml  # only for an MLmodel: the init container of an artifact without one never loads it

    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise SignatureUnreadable(f"MLmodel is not YAML: {type(e).__name__}") from None
    sig = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(sig, dict):
        return None
    return {"inputs": _schema(sig.get("inputs"), "inputs"), "outputs": _schema(sig.get("outputs"), "outputs")}


def _schema(raw: Any, side: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    try:
        cols = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise SignatureUnreadable(f"MLmodel signature.{side} is not JSON") from None
    if not isinstance(cols, list):
        raise SignatureUnreadable(f"MLmodel signature.{side} is not a list")
    return [_tensor(c, i, side) for i, c in enumerate(cols[:MAX_TENSORS])]


def _tensor(col: Any, i: int, side: str) -> dict[str, Any]:
    if not isinstance(col, dict):
        raise SignatureUnreadable(f"MLmodel signature.{side}[{i}] is not an object")
    name = str(col.get("name") or f"#{i}")[:256]
    if col.get("type") == "tensor":
        spec = col.get("tensor-spec") or {}
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape] if isinstance(shape, list) else []
        return {"name": name, "dtype": str(spec.get("dtype", ""))[:64], "shape": dims[:16]}
    return {"name": name, "dtype": str(col.get("type", ""))[:64], "shape": [-1]}


def read_signature(files: dict[str, bytes]) -> dict[str, Any] | None:
    """What the MLmodel files kept while hashing say (the one nearest the root): ``{source, inputs,
    outputs}``, ``{source, error}`` when it cannot be read, None when there is none or it has no
    signature."""
    if not files:
        return None
    rel = min(files, key=lambda p: (p.count("/"), p))
    source = f"artifact {rel}"
    try:
        sig = parse_mlmodel(files[rel])
    except SignatureUnreadable as e:
        return {"source": source, "error": str(e)[:512]}
    except (RecursionError, ValueError, TypeError, AttributeError) as e:  # hostile nesting: never fatal
        return {"source": source, "error": f"MLmodel cannot be read: {type(e).__name__}"}
    return None if sig is None else {"source": source, **sig}
