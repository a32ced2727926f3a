"""A model version's I/O contract, decided purely: its signature (inputs and outputs: name, dtype,
shape), the signature's digest, what changed between two signatures, and the SemVer rule.

The rule (README, "Versions"; docs/design.md, "The I/O contract"): MAJOR = breaking input/output
change. A MINOR or PATCH release whose inputs or outputs differ from the previous release of the same
MAJOR (``baseline``: the highest lower release of that MAJOR the registry remembers a signature of) is
refused with ``R.IO_SIGNATURE_CHANGED``, naming each changed tensor and what changed. A MAJOR's first
release (X.0.0) has no baseline of its MAJOR, so it may change anything.

- Differ: a tensor added or removed (by name), its dtype changed (compared canonically: ``float64``,
  ``double`` and ``FP64`` are one dtype), or its shape changed: another rank, or a dimension fixed on
  both sides with another size; ``-1`` (MLflow, ONNX, OIP) and an undeclared shape mean any size.
- Prereleases: a prerelease is never a baseline (SemVer: unstable); a prerelease is checked against
  the release line it is heading for, i.e. the highest lower release of its MAJOR: 1.2.0-rc.1 must keep
  1.1.0's contract, and 2.0.0-rc.1 may change anything.
- No baseline signature, or no signature on the new version: accepted, saying the contract was not
  checked (``require``: refused with ``R.IO_SIGNATURE_MISSING`` instead when the version has none).
- A baseline known only by its digest (its ModelVersion is gone, the Model's record keeps the digest):
  a different digest is refused too; the message says the tensor cannot be named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.semver import InvalidVersion, SemVer

# canonical dtype names (the Open Inference Protocol's) for the spellings MLflow, numpy, ONNX and OIP use
_DTYPES = {
    "bool": "BOOL", "boolean": "BOOL",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "integer": "INT32", "int": "INT32",
    "int64": "INT64", "long": "INT64",
    "fp16": "FP16", "float16": "FP16", "half": "FP16",
    "fp32": "FP32", "float32": "FP32", "float": "FP32",
    "fp64": "FP64", "float64": "FP64", "double": "FP64",
    "bf16": "BF16", "bfloat16": "BF16",
    "bytes": "BYTES", "string": "BYTES", "str": "BYTES", "binary": "BYTES", "object": "BYTES",
}  # fmt: skip
MAX_TENSORS = 256  # per side, as spec.signature allows
STATUS_TENSORS = 64  # per side in status.ioSignature; the digest covers them all


def canonical_dtype(dtype: str) -> str:
    """One spelling per dtype (unknown ones upper-cased, so they still compare exactly)."""
    d = dtype.strip()
    return _DTYPES.get(d.lower(), d.upper())


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # canonical
    shape: tuple[int, ...] | None = None  # None: not declared (any); -1: any size in that dimension

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out


@dataclass(frozen=True)
class IOSignature:
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> IOSignature:
        """From spec.signature / status.ioSignature / what the artifact reader found: ``{inputs,
        outputs}`` of ``{name, dtype, shape}`` (an empty or absent shape: not declared)."""
        return cls(_tensors(data.get("inputs")), _tensors(data.get("outputs")))

    def digest(self) -> str:
        """sha256 of the canonical form: tensors by name, canonical dtypes, -1 for any size."""
        canon = {
            side: sorted([t.name, t.dtype, list(t.shape) if t.shape is not None else None] for t in ts)
            for side, ts in (("inputs", self.inputs), ("outputs", self.outputs))
        }
        return hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()

    def to_status(self) -> dict[str, Any]:
        """The bounded record: at most STATUS_TENSORS per side (``truncated``: more were declared)."""
        out: dict[str, Any] = {
            "inputs": [t.to_status() for t in self.inputs[:STATUS_TENSORS]],
            "outputs": [t.to_status() for t in self.outputs[:STATUS_TENSORS]],
        }
        if len(self.inputs) > STATUS_TENSORS or len(self.outputs) > STATUS_TENSORS:
            out["truncated"] = True
        return out


def _tensors(raw: Any) -> tuple[Tensor, ...]:
    out = []
    for t in (raw if isinstance(raw, list) else [])[:MAX_TENSORS]:
        if not isinstance(t, Mapping) or not t.get("name"):
            continue
        shape = t.get("shape")
        dims = tuple(int(d) if isinstance(d, int) and d >= 0 else -1 for d in shape) if shape else None
        out.append(Tensor(str(t["name"])[:256], canonical_dtype(str(t.get("dtype", ""))[:64]), dims))
    return tuple(out)


# ---------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    side: str  # input | output
    tensor: str
    what: str  # "added", "removed", "dtype FP32 -> FP64", "shape [-1, 4] -> [-1, 5]"

    def __str__(self) -> str:
        return f"{self.side} {self.tensor!r} {self.what}"


def shapes_compatible(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    """Same rank, and every dimension fixed on both sides has the same size (-1 / None: any)."""
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def diff(old: IOSignature, new: IOSignature) -> tuple[Change, ...]:
    """What differs from ``old`` to ``new``, inputs then outputs, by tensor name."""
    out: list[Change] = []
    for side, before, after in (("input", old.inputs, new.inputs), ("output", old.outputs, new.outputs)):
        was, now = {t.name: t for t in before}, {t.name: t for t in after}
        for name in sorted(was.keys() - now.keys()):
            out.append(Change(side, name, "removed"))
        for name in sorted(now.keys() - was.keys()):
            out.append(Change(side, name, f"added ({now[name].dtype})"))
        for name in sorted(was.keys() & now.keys()):
            a, b = was[name], now[name]
            if a.dtype != b.dtype:
                out.append(Change(side, name, f"dtype {a.dtype} -> {b.dtype}"))
            if not shapes_compatible(a.shape, b.shape):
                out.append(Change(side, name, f"shape {_shape(a.shape)} -> {_shape(b.shape)}"))
    return tuple(out)


def _shape(s: tuple[int, ...] | None) -> str:
    return "any" if s is None else "[" + ", ".join(str(d) for d in s) + "]"


def describe(changes: Sequence[Change], limit: int = 8) -> str:
    shown = "; ".join(str(c) for c in changes[:limit])
    more = len(changes) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------------- rule


@dataclass(frozen=True)
class Known:
    """What the registry knows of another version's contract: its full signature (its ModelVersion
    is in the cache) or only the digest the Model's record keeps."""

    version: str
    signature: IOSignature | None = None
    digest: str | None = None
    # its contract is not decided yet (its ModelVersion is being verified): a version it would be the
    # baseline of waits for it (``R.IO_CONTRACT_PENDING``)
    pending: bool = False


@dataclass(frozen=True)
class ContractVerdict:
    accepted: bool
    # R.IO_SIGNATURE_CHECKED, R.IO_SIGNATURE_NOT_CHECKED, R.IO_SIGNATURE_CHANGED, R.IO_SIGNATURE_MISSING
    # or R.IO_CONTRACT_PENDING (not accepted yet: the baseline's contract is being decided)
    reason: str
    message: str
    baseline: str | None = None  # the version compared with
    changes: tuple[Change, ...] = ()


def baseline(version: str, known: Sequence[Known]) -> Known | None:
    """The previous release of the same MAJOR with a known signature: the highest lower release (no
    prerelease) of ``version``'s MAJOR (None: none, or ``version`` is not a semantic version)."""
    try:
        me = SemVer.parse(version)
    except InvalidVersion:
        return None
    best: tuple[SemVer, Known] | None = None
    for k in known:
        try:
            v = SemVer.parse(k.version)
        except InvalidVersion:
            continue
        if v.major != me.major or v.is_prerelease or not v < me:
            continue
        if k.signature is None and not k.digest and not k.pending:
            continue
        if best is None or best[0] < v:
            best = (v, k)
    return best[1] if best is not None else None


def decide_contract(
    version: str, signature: IOSignature | None, known: Sequence[Known], *, require: bool = False
) -> ContractVerdict:
    """The SemVer I/O rule for ``version`` with ``signature`` against the registry's ``known``
    contracts of the model's other versions (only accepted ones count: see ``contract_known``)."""
    if signature is None:
        if require:
            msg = (
                f"{version} declares no input/output signature and the policy requires one (requireSignature)"
            )
            return ContractVerdict(False, R.IO_SIGNATURE_MISSING, msg)
        return ContractVerdict(
            True, R.IO_SIGNATURE_NOT_CHECKED, "no signature: the I/O contract is not checked"
        )
    base = baseline(version, known)
    if base is None:
        what = f"no earlier {_major(version)}.x release with a signature"
        return ContractVerdict(True, R.IO_SIGNATURE_NOT_CHECKED, f"{what}: the I/O contract is not checked")
    if base.pending:
        msg = f"waiting for {base.version}'s I/O signature (being verified) to check the contract against"
        return ContractVerdict(False, R.IO_CONTRACT_PENDING, msg, base.version)
    if base.signature is not None:
        changes = diff(base.signature, signature)
        if not changes:
            return ContractVerdict(
                True, R.IO_SIGNATURE_CHECKED, f"same inputs/outputs as {base.version}", base.version
            )
        msg = (
            f"{version} changes the input/output signature of {base.version} ({describe(changes)}); a "
            f"breaking I/O change needs a new MAJOR version ({_major(version) + 1}.0.0)"
        )
        return ContractVerdict(False, R.IO_SIGNATURE_CHANGED, msg, base.version, changes)
    if base.digest == signature.digest():
        return ContractVerdict(
            True, R.IO_SIGNATURE_CHECKED, f"same signature digest as {base.version}", base.version
        )
    msg = (
        f"{version}'s input/output signature differs from {base.version}'s (recorded sha256 "
        f"{str(base.digest)[:12]}; its ModelVersion is gone, so the changed tensor cannot be named); a "
        f"breaking I/O change needs a new MAJOR version ({_major(version) + 1}.0.0)"
    )
    return ContractVerdict(False, R.IO_SIGNATURE_CHANGED, msg, base.version)


def _major(version: str) -> int:
    try:
        return SemVer.parse(version).major
    except InvalidVersion:
        return 0
