"""The input/output signature an artifact carries: an MLflow model directory's ``MLmodel`` file.

MLflow writes ``signature.inputs`` / ``signature.outputs`` as JSON strings inside the YAML file, either
column-based (``[{"name": "x", "type": "double"}]``: each column is a tensor of shape ``[-1]``) or
tensor-based (``[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1,
4]}}]``). An unnamed tensor is named by its position (``#0``). The result is plain data
(``{inputs, outputs}`` of ``{name, dtype, shape}``) for ``domain.io_contract.IOSignature.of``.

The file is read while the artifact is hashed (``artifacts.hashing``; an oci:// layout's laid-out files:
``artifacts.oci_extract``), in the verifier's child process
with its memory limit, and only up to ``MAX_MLMODEL_BYTES``. The YAML is composed by a SafeLoader that
refuses anchors and aliases (a 387-byte "billion laughs" file expands to 10^9 nodes) and stops at
``MAX_YAML_NODES`` nodes or ``MAX_YAML_DEPTH`` levels; only values that are already strings are taken
(never the text of a container). Any failure is the "unreadable signature" record, never a failed
verification. ONNX graphs' inputs/outputs are not read
yet (they sit in a protobuf beside the weights; reading them needs the onnx package or a protobuf
reader of our own).
"""

from __future__ import annotations

import json
from typing import Any

MLMODEL = "MLmodel"
MAX_MLMODEL_BYTES = 256 * 1024
MAX_TENSORS = 256
MAX_YAML_NODES = 10_000  # an MLmodel has a few dozen
MAX_YAML_DEPTH = 32


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
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureUnreadable("MLmodel is not YAML: UnicodeDecodeError") from None
    loader = _bounded_loader(yaml)(text)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as e:
        raise SignatureUnreadable(f"MLmodel is not YAML: {type(e).__name__}") from None
    finally:
        loader.dispose()
    sig = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(sig, dict):
        return None
    return {"inputs": _schema(sig.get("inputs"), "inputs"), "outputs": _schema(sig.get("outputs"), "outputs")}


def _bounded_loader(yaml: Any) -> Any:
    """A SafeLoader that refuses anchors and aliases and counts the nodes and levels it composes."""

    class Bounded(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        nodes = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise SignatureUnreadable("MLmodel uses YAML anchors or aliases")
            self.nodes += 1
            if self.nodes > MAX_YAML_NODES or self.depth >= MAX_YAML_DEPTH:
                raise SignatureUnreadable(
                    f"MLmodel has more than {MAX_YAML_NODES} YAML nodes or {MAX_YAML_DEPTH} levels"
                )
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Bounded


def _text(value: Any, default: str, where: str) -> str:
    """A value that is already a string (absent: ``default``); anything else is unreadable."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise SignatureUnreadable(f"MLmodel signature.{where} is not a string")
    return value


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
    where = f"{side}[{i}]"
    name = _text(col.get("name"), f"#{i}", f"{where}.name")[:256]
    kind = _text(col.get("type"), "", f"{where}.type")[:64]
    if kind == "tensor":
        spec = col.get("tensor-spec")
        spec = spec if isinstance(spec, dict) else {}
        shape = spec.get("shape")
        dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape] if isinstance(shape, list) else []
        return {
            "name": name,
            "dtype": _text(spec.get("dtype"), "", f"{where}.dtype")[:64],
            "shape": dims[:16],
        }
    return {"name": name, "dtype": kind, "shape": [-1]}


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
    except Exception as e:  # noqa: BLE001 - hostile input (nesting, memory...): never a failed verification
        return {"source": source, "error": f"MLmodel cannot be read: {type(e).__name__}"}
    return None if sig is None else {"source": source, **sig}
