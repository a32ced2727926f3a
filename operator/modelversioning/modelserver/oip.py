"""The Open Inference Protocol (KServe V2 REST) of the reference model server: routes, validation and
answers, without HTTP (server.py sends them).

Routes (``{name}`` is the server's model, ``/versions/{version}`` optional and then its version):
    GET  /v2/health/live, /v2/health/ready, /v2          server liveness, readiness, metadata
    GET  /v2/models/{name}[/versions/{version}]          model metadata (name, versions, platform,
                                                         inputs, outputs)
    GET  /v2/models/{name}[/versions/{version}]/ready    model readiness
    POST /v2/models/{name}[/versions/{version}]/infer    inference

Errors are ``{"error": "<message>"}`` with 400 (a request that does not fit the protocol or the
model's signature), 404 (another model or version), 405 (wrong method) or 503 (not ready).

The model's inputs and outputs are its signature when the server was given one (``MODEL_SIGNATURE``,
the ModelVersion's ``spec.signature``): requests are checked against it (names, datatypes, shapes,
-1 any size) and the outputs are the signature's. Without one any input is accepted and the output is
``score`` (FP64, one per row). Every value is deterministic: a function of the artifact's digest, the
output's name, the element's index and the input row it belongs to (the leading dimension is the
batch), so the same row gets the same answer in any batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64", "BYTES"}
)
# Signature dtypes as MLflow, numpy and ONNX spell them -> the protocol's datatype.
_DTYPE_ALIASES = {
    "float": "FP32", "float32": "FP32", "double": "FP64", "float64": "FP64", "float16": "FP16",
    "half": "FP16", "integer": "INT32", "int": "INT64", "long": "INT64", "bool": "BOOL",
    "boolean": "BOOL", "string": "BYTES", "str": "BYTES", "binary": "BYTES", "bytes": "BYTES",
    "object": "BYTES",
    **{f"int{n}": f"INT{n}" for n in (8, 16, 32, 64)},
    **{f"uint{n}": f"UINT{n}" for n in (8, 16, 32, 64)},
}  # fmt: skip
PLATFORM = "modelversioning-reference"
DEFAULT_OUTPUT = "score"
MAX_ELEMENTS = 1 << 20  # per input and per answer: the body limit keeps requests far below it
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?/?$")


class OipError(Exception):
    """An OIP error answer: HTTP ``code`` and ``{"error": message}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message}


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


def datatype_of(dtype: str) -> str:
    """The protocol's datatype for a signature dtype (FP32, float32, float, double, long...)."""
    if dtype.upper() in DATATYPES:
        return dtype.upper()
    if dtype.lower() in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[dtype.lower()]
    raise ValueError(f"unknown tensor dtype {dtype!r} (expected one of {', '.join(sorted(DATATYPES))})")


def parse_signature(text: str) -> Signature:
    """A signature from JSON: ``{"inputs": [{"name", "dtype" (or "datatype"), "shape"}], "outputs":
    [...]}`` (the ModelVersion's spec.signature); ValueError when it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a signature is a JSON object with inputs and outputs")

    def tensors(key: str) -> tuple[TensorMeta, ...]:
        out = []
        for t in data.get(key) or []:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise ValueError(f"signature {key}: each tensor needs a name")
            shape = t.get("shape") or []
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
                raise ValueError(f"signature {key} {t['name']!r}: shape {shape!r} is not a list of sizes")
            dtype = str(t.get("datatype") or t.get("dtype") or "")
            out.append(TensorMeta(t["name"], datatype_of(dtype), tuple(shape)))
        if len({t.name for t in out}) != len(out):
            raise ValueError(f"signature {key}: tensor names repeat")
        return tuple(out)

    return Signature(tensors("inputs"), tensors("outputs"))


# ------------------------------------------------------------------------------------------ routes
@dataclass(frozen=True)
class Route:
    kind: str  # live, server_ready, server_metadata, metadata, ready, infer
    method: str  # the one it answers (GET or POST)


def route(path: str, model: str, version: str) -> Route | None:
    """The OIP route of ``path`` (None: not an OIP path); OipError 404 for another model or version."""
    fixed = {"/v2/health/live": "live", "/v2/health/ready": "server_ready", "/v2": "server_metadata"}
    if path.rstrip("/") in fixed:
        return Route(fixed[path.rstrip("/")], "GET")
    m = _MODEL_PATH.match(path)
    if m is None:
        return None
    name, ver, action = m.group(1), m.group(2), m.group(3)
    if name != model:
        raise OipError(404, f"Model {name} not found")
    if ver is not None and ver != version:
        raise OipError(404, f"Model {name} has no version {ver} (it serves {version})")
    kind = {None: "metadata", "/ready": "ready", "/infer": "infer"}[action]
    return Route(kind, "POST" if kind == "infer" else "GET")


def metadata(model: str, version: str, signature: Signature | None) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the OIP model metadata."""
    inputs = [t.to_json() for t in signature.inputs] if signature else []
    outputs = (
        [t.to_json() for t in signature.outputs]
        if signature
        else [{"name": DEFAULT_OUTPUT, "datatype": "FP64", "shape": [-1]}]
    )
    return {"name": model, "versions": [version], "platform": PLATFORM, "inputs": inputs, "outputs": outputs}


def server_metadata(server_version: str) -> dict[str, Any]:
    return {"name": "modelversioning-model-server", "version": server_version, "extensions": []}


# ------------------------------------------------------------------------------------------- infer
@dataclass(frozen=True)
class Input:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: tuple[Any, ...]  # flattened, row-major


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]  # the requested outputs' names; empty: all

    @property
    def batch(self) -> int:
        """The leading dimension of the first input (1 for a scalar)."""
        shape = self.inputs[0].shape
        return shape[0] if shape else 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fits(datatype: str, v: Any) -> bool:
    """Whether a JSON value is an element of ``datatype``."""
    if datatype == "BOOL":
        return isinstance(v, bool)
    if datatype == "BYTES":
        return isinstance(v, str)
    if datatype.startswith("FP"):
        return _is_int(v) or isinstance(v, float)
    return _is_int(v) and (v >= 0 or not datatype.startswith("U"))


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
        if len(out) > MAX_ELEMENTS:
            raise OipError(400, f"more than {MAX_ELEMENTS} elements in one input")
    return out


def _parse_input(raw: Any, i: int) -> Input:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise OipError(400, f"inputs[{i}]: an input is an object with a name, shape, datatype and data")
    name = raw["name"]
    shape, datatype = raw.get("shape"), raw.get("datatype")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise OipError(400, f"input {name!r}: shape must be a list of sizes (>= 0), not {shape!r}")
    if datatype not in DATATYPES:
        raise OipError(400, f"input {name!r}: unknown datatype {datatype!r}")
    if "data" not in raw:
        raise OipError(400, f"input {name!r}: no data")
    data = _flatten(raw["data"])
    size = math.prod(shape)
    if len(data) != size:
        raise OipError(400, f"input {name!r}: shape {shape} holds {size} elements, data has {len(data)}")
    if not all(_fits(datatype, v) for v in data):
        raise OipError(400, f"input {name!r}: data does not match datatype {datatype}")
    return Input(name, datatype, tuple(shape), tuple(data))


def parse_infer(body: bytes, signature: Signature | None) -> InferRequest:
    """An inference request checked against the protocol and, when known, the signature; OipError
    400 otherwise."""
    try:
        req = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise OipError(400, f"the request is not JSON: {e}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise OipError(400, "an inference request is a JSON object with a non-empty list of inputs")
    inputs = tuple(_parse_input(raw, i) for i, raw in enumerate(req["inputs"]))
    if len({t.name for t in inputs}) != len(inputs):
        raise OipError(400, "input names repeat")
    wanted = req.get("outputs") or []
    if not isinstance(wanted, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
    ):
        raise OipError(400, "outputs must be a list of objects with a name")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise OipError(400, "id must be a string")
    parsed = InferRequest(rid, inputs, tuple(o["name"] for o in wanted))
    _check_signature(parsed, signature)
    return parsed


def _check_signature(req: InferRequest, signature: Signature | None) -> None:
    known = [t.name for t in signature.outputs] if signature else [DEFAULT_OUTPUT]
    unknown = [n for n in req.outputs if n not in known]
    if unknown:
        raise OipError(400, f"unknown output {unknown[0]!r} (the model's outputs: {', '.join(known)})")
    if signature is None:
        return
    expected = {t.name: t for t in signature.inputs}
    given = {t.name: t for t in req.inputs}
    if missing := [n for n in expected if n not in given]:
        raise OipError(400, f"input {missing[0]!r} is missing (the model's inputs: {', '.join(expected)})")
    if extra := [n for n in given if n not in expected]:
        raise OipError(400, f"unexpected input {extra[0]!r} (the model's inputs: {', '.join(expected)})")
    for name, meta in expected.items():
        t = given[name]
        if t.datatype != meta.datatype:
            raise OipError(400, f"input {name!r}: datatype {t.datatype}, the model takes {meta.datatype}")
        fits = len(t.shape) == len(meta.shape) and all(
            m in (-1, d) for m, d in zip(meta.shape, t.shape, strict=True)
        )
        if not fits:
            raise OipError(400, f"input {name!r}: shape {list(t.shape)}, the model takes {list(meta.shape)}")


def _row(req: InferRequest, i: int) -> bytes:
    """The bytes of row ``i`` of every input (an input whose leading dimension is not the batch
    counts whole)."""
    parts = []
    for t in req.inputs:
        if t.shape and t.shape[0] == req.batch and req.batch > 0:
            per = len(t.data) // req.batch
            data = t.data[i * per : (i + 1) * per]
        else:
            data = t.data
        parts.append([t.name, t.datatype, list(t.shape[1:]), list(data)])
    return json.dumps(parts, separators=(",", ":")).encode()


def _whole(req: InferRequest) -> bytes:
    parts = [[t.name, t.datatype, list(t.shape), list(t.data)] for t in req.inputs]
    return json.dumps(parts, separators=(",", ":")).encode()


def _value(datatype: str, u: float) -> Any:
    if datatype == "BOOL":
        return u >= 0.5
    if datatype == "BYTES":
        return "positive" if u >= 0.5 else "negative"
    if datatype.startswith("FP"):
        return round(u, 6)
    return int(u * 100)  # INT*/UINT*: 0..99


def infer(
    req: InferRequest, sha256: str, model: str, version: str, signature: Signature | None
) -> dict[str, Any]:
    """The answer to a checked request: deterministic outputs (see the module's docstring)."""
    metas = signature.outputs if signature else (TensorMeta(DEFAULT_OUTPUT, "FP64", (-1,)),)
    if req.outputs:
        metas = tuple(next(m for m in metas if m.name == n) for n in req.outputs)
    outputs = [_output(req, sha256, meta) for meta in metas]
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if req.id is not None:
        answer["id"] = req.id
    return answer


def _output(req: InferRequest, sha256: str, meta: TensorMeta) -> dict[str, Any]:
    """One output tensor. A leading -1 is the batch (each row's elements come from that input row);
    any other -1 is 1; an output without the batch dimension comes from the whole request."""
    shape = [
        req.batch if k == 0 and d == -1 else max(d, 1) if d == -1 else d for k, d in enumerate(meta.shape)
    ]
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
        raise OipError(400, f"output {meta.name!r} would hold {size} elements")
    batched = bool(meta.shape) and meta.shape[0] == -1 and req.batch > 0
    rows = [_row(req, i) for i in range(req.batch)] if batched else [_whole(req)]
    per = size // req.batch if batched else size
    data = []
    for k in range(size):
        row, j = rows[k // per], k % per
        h = hashlib.sha256(f"{sha256}\0{meta.name}\0{j}\0".encode() + row).digest()
        data.append(_value(meta.datatype, int.from_bytes(h[:8], "big") / 2**64))
    return {"name": meta.name, "datatype": meta.datatype, "shape": shape, "data": data}
