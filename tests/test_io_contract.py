"""The I/O contract's SemVer rule (domain.io_contract), table-tested: what counts as a change (name
added/removed, dtype, shape with -1 as any), which version is the baseline (same MAJOR, highest lower
release, prereleases never), every verdict; and the MLflow MLmodel signature reader
(artifacts.io_signature) on the column- and tensor-based forms MLflow writes."""

from __future__ import annotations

import json

import pytest

from modelversioning.api import wire as R
from modelversioning.artifacts.io_signature import (
    MAX_MLMODEL_BYTES,
    SignatureUnreadable,
    is_mlmodel,
    parse_mlmodel,
    read_signature,
)
from modelversioning.domain.io_contract import (
    IOSignature,
    Known,
    baseline,
    canonical_dtype,
    decide_contract,
    diff,
    shapes_compatible,
)


def sig(inputs=(("x", "FP32", [-1, 4]),), outputs=(("y", "FP32", [-1]),)):
    def side(ts):
        return [{"name": n, "dtype": d, "shape": s} for n, d, s in ts]

    return IOSignature.of({"inputs": side(inputs), "outputs": side(outputs)})


BASE = sig()


# ---- what is a change ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "changes"),
    [
        (sig(), []),
        (sig(inputs=(("x", "float32", [-1, 4]),)), []),  # dtypes compare canonically
        (sig(inputs=(("x", "FP32", [-1, -1]),)), []),  # -1: any size
        (sig(inputs=(("x", "FP32", [8, 4]),)), []),  # a fixed batch within the old "any"
        (sig(inputs=(("x", "FP32", []),)), []),  # an undeclared shape: any
        (sig(inputs=(("x", "FP64", [-1, 4]),)), ["input 'x' dtype FP32 -> FP64"]),
        (sig(inputs=(("x", "FP32", [-1, 5]),)), ["input 'x' shape [-1, 4] -> [-1, 5]"]),
        (sig(inputs=(("x", "FP32", [-1, 4, 1]),)), ["input 'x' shape [-1, 4] -> [-1, 4, 1]"]),
        (sig(inputs=(("z", "FP32", [-1, 4]),)), ["input 'x' removed", "input 'z' added (FP32)"]),
        (sig(inputs=(("x", "FP32", [-1, 4]), ("w", "INT64", [-1]))), ["input 'w' added (INT64)"]),
        (sig(outputs=()), ["output 'y' removed"]),
        (
            sig(outputs=(("y", "INT64", [-1, 2]),)),
            ["output 'y' dtype FP32 -> INT64", "output 'y' shape [-1] -> [-1, 2]"],
        ),
    ],
    ids=[
        "same", "dtype-alias", "any-dim", "fixed-in-any", "no-shape", "dtype", "dim", "rank", "renamed",
        "added", "output-removed", "output-dtype-and-shape",
    ],
)  # fmt: skip
def test_what_counts_as_a_change(new, changes):
    assert [str(c) for c in diff(BASE, new)] == changes


def test_shapes_are_compatible_only_with_the_same_rank_and_equal_fixed_dims():
    assert shapes_compatible((-1, 4), (2, 4)) and shapes_compatible(None, (3,))
    assert not shapes_compatible((-1, 4), (-1, 3)) and not shapes_compatible((4,), (4, 1))


def test_dtypes_have_one_spelling_for_mlflow_numpy_and_oip():
    assert {canonical_dtype(d) for d in ("double", "float64", "FP64")} == {"FP64"}
    assert {canonical_dtype(d) for d in ("long", "int64", "INT64")} == {"INT64"}
    assert {canonical_dtype(d) for d in ("string", "bytes", "BYTES", "object")} == {"BYTES"}
    assert canonical_dtype("complex128") == "COMPLEX128"  # unknown: still compared exactly


def test_the_digest_ignores_order_and_spelling_but_not_content():
    a = sig(inputs=(("x", "float32", [-1, 4]), ("w", "long", [-1])))
    b = sig(inputs=(("w", "INT64", [-1]), ("x", "FP32", [-1, 4])))
    assert a.digest() == b.digest()
    assert a.digest() != sig(inputs=(("x", "FP32", [-1, 4]), ("w", "INT64", [-1, 1]))).digest()


# ---- the baseline -------------------------------------------------------------------------------


def k(version, s=BASE, **kw):
    return Known(version, s, **kw)


@pytest.mark.parametrize(
    ("version", "known", "want"),
    [
        ("1.1.0", [k("1.0.0")], "1.0.0"),
        ("1.2.0", [k("1.0.0"), k("1.1.0"), k("1.3.0")], "1.1.0"),  # the highest LOWER one
        ("1.0.1", [k("1.0.0"), k("0.9.0")], "1.0.0"),
        ("2.0.0", [k("1.0.0"), k("1.9.0")], None),  # a MAJOR bump has none
        ("2.1.0", [k("1.9.0"), k("2.0.0")], "2.0.0"),  # the same MAJOR only
        ("1.2.0", [k("1.0.0"), k("1.1.0-rc.1")], "1.0.0"),  # prereleases are never a baseline
        ("1.2.0-rc.1", [k("1.1.0"), k("1.2.0-rc.0")], "1.1.0"),  # a prerelease: its release line
        ("2.0.0-rc.2", [k("1.5.0"), k("2.0.0-rc.1")], None),  # a new MAJOR's prerelease: free
        ("1.1.0", [k("1.0.0", None), k("0.1.0")], None),  # no signature known: skipped
        ("1.1.0", [k("1.0.0", None, digest="d" * 64)], "1.0.0"),  # the record's digest counts
        ("1.1.0", [k("1.0.0"), k("1.0.5", None, pending=True)], "1.0.5"),  # a pending one: wait
        ("not-semver", [k("1.0.0")], None),
    ],
    ids=[
        "previous", "highest-lower", "patch", "major-bump", "same-major", "no-prerelease-baseline",
        "prerelease-line", "major-prerelease", "unsigned-skipped", "record-digest", "pending", "invalid",
    ],
)  # fmt: skip
def test_the_baseline_is_the_previous_release_of_the_same_major(version, known, want):
    got = baseline(version, known)
    assert (got.version if got else None) == want


# ---- the verdicts -------------------------------------------------------------------------------

CHANGED = sig(inputs=(("x", "FP32", [-1, 5]),))


@pytest.mark.parametrize(
    ("version", "new", "known", "require", "accepted", "reason"),
    [
        ("1.1.0", BASE, [k("1.0.0")], False, True, R.IO_SIGNATURE_CHECKED),
        ("1.1.0", CHANGED, [k("1.0.0")], False, False, R.IO_SIGNATURE_CHANGED),
        ("1.0.1", CHANGED, [k("1.0.0")], False, False, R.IO_SIGNATURE_CHANGED),
        ("1.2.0-rc.1", CHANGED, [k("1.1.0")], False, False, R.IO_SIGNATURE_CHANGED),
        ("2.0.0", CHANGED, [k("1.0.0")], False, True, R.IO_SIGNATURE_NOT_CHECKED),
        ("1.1.0", CHANGED, [], False, True, R.IO_SIGNATURE_NOT_CHECKED),
        ("1.1.0", None, [k("1.0.0")], False, True, R.IO_SIGNATURE_NOT_CHECKED),
        ("1.1.0", None, [k("1.0.0")], True, False, R.IO_SIGNATURE_MISSING),
        ("1.1.0", CHANGED, [k("1.0.0", None, pending=True)], False, False, R.IO_CONTRACT_PENDING),
        ("1.1.0", BASE, [k("1.0.0", None, digest=BASE.digest())], False, True, R.IO_SIGNATURE_CHECKED),
        ("1.1.0", CHANGED, [k("1.0.0", None, digest=BASE.digest())], False, False, R.IO_SIGNATURE_CHANGED),
    ],
    ids=[
        "same", "minor-changed", "patch-changed", "prerelease-changed", "major-changed", "no-baseline",
        "unsigned", "unsigned-required", "baseline-pending", "deleted-baseline-same",
        "deleted-baseline-changed",
    ],
)  # fmt: skip
def test_the_semver_rule(version, new, known, require, accepted, reason):
    v = decide_contract(version, new, known, require=require)
    assert (v.accepted, v.reason) == (accepted, reason)


def test_a_refusal_names_the_changed_tensor_what_changed_and_the_way_out():
    v = decide_contract("1.1.0", CHANGED, [k("1.0.0")])
    assert v.baseline == "1.0.0"
    assert "input 'x' shape [-1, 4] -> [-1, 5]" in v.message
    assert "1.0.0" in v.message and "2.0.0" in v.message


def test_a_refusal_against_a_deleted_baseline_says_why_no_tensor_is_named():
    v = decide_contract("1.1.0", CHANGED, [k("1.0.0", None, digest=BASE.digest())])
    assert "cannot be named" in v.message and BASE.digest()[:12] in v.message


def test_the_status_record_is_bounded_and_says_so():
    many = IOSignature.of({"inputs": [{"name": f"i{n}", "dtype": "FP32"} for n in range(100)]})
    rec = many.to_status()
    assert len(rec["inputs"]) == 64 and rec["truncated"] is True
    assert "truncated" not in BASE.to_status()


# ---- the MLflow MLmodel file --------------------------------------------------------------------

COLUMNS = json.dumps([{"name": "sepal length (cm)", "type": "double"}, {"type": "long", "required": True}])
TENSORS = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}, "name": "x"}])
MLMODEL = f"""artifact_path: model
flavors:
  sklearn:
    pickled_model: model.pkl
signature:
  inputs: '{COLUMNS}'
  outputs: '{TENSORS}'
  params: null
"""


def test_an_mlmodel_signature_is_read_in_both_forms_mlflow_writes():
    got = parse_mlmodel(MLMODEL.encode())
    assert got["inputs"] == [
        {"name": "sepal length (cm)", "dtype": "double", "shape": [-1]},
        {"name": "#1", "dtype": "long", "shape": [-1]},
    ]
    assert got["outputs"] == [{"name": "x", "dtype": "float64", "shape": [-1, 4]}]
    assert IOSignature.of(got).outputs[0].dtype == "FP64"


@pytest.mark.parametrize(
    "text",
    [
        "signature:\n  inputs: '[{'\n", "signature:\n  inputs: '{\"a\": 1}'\n", ": : :\n\t- [",
        "signature:\n  inputs: '[1]'\n",
    ],
    ids=["bad-json", "not-a-list", "not-yaml", "not-an-object"],
)  # fmt: skip
def test_an_unreadable_mlmodel_signature_is_an_error_not_a_crash(text):
    with pytest.raises(SignatureUnreadable):
        parse_mlmodel(text.encode())


def test_an_mlmodel_without_a_signature_has_none_and_a_huge_one_is_refused():
    assert parse_mlmodel(b"flavors: {}\n") is None
    with pytest.raises(SignatureUnreadable, match="larger"):
        parse_mlmodel(b"#" * (MAX_MLMODEL_BYTES + 1))


def test_the_mlmodel_nearest_the_root_is_used_and_errors_are_reported():
    assert is_mlmodel("MLmodel") and is_mlmodel("model/MLmodel") and not is_mlmodel("a/b/MLmodel")
    got = read_signature({"model/MLmodel": b"signature: {inputs: '[{'}", "MLmodel": MLMODEL.encode()})
    assert got is not None and got["source"] == "artifact MLmodel" and len(got["inputs"]) == 2
    bad = read_signature({"MLmodel": b"signature:\n  inputs: '[{'\n"})
    assert bad is not None and "not JSON" in bad["error"]
    assert read_signature({}) is None


@pytest.mark.parametrize(
    "hostile",
    [b"signature: " + b"[" * 50_000, b"signature:\n  inputs: '" + b"[" * 100_000 + b"'\n"],
    ids=["deep-yaml", "deep-json"],
)
def test_a_hostile_mlmodel_is_an_error_record_never_a_failed_verification(hostile):
    got = read_signature({"MLmodel": hostile})
    assert got is not None and got["error"] and "inputs" not in got


def _laughs(levels: int) -> bytes:
    """A "billion laughs" MLmodel: each level an anchored list of ten aliases of the one before."""
    y, prev = "a: &a [x,x,x,x,x,x,x,x,x,x]\n", "a"
    for i in range(1, levels):
        n = chr(ord("a") + i)
        y += f"{n}: &{n} [" + ",".join([f"*{prev}"] * 10) + "]\n"
        prev = n
    return (y + f"signature:\n  inputs:\n    - name: *{prev}\n      type: double\n").encode()


@pytest.mark.parametrize(
    "text",
    [_laughs(4), b"a: &a 1\nsignature: {inputs: '[]'}\n", b"signature: &s {inputs: '[]'}\nb: *s\n"],
    ids=["laughs", "anchor", "alias"],
)
def test_yaml_anchors_and_aliases_are_refused_as_an_unreadable_signature(text):
    got = read_signature({"MLmodel": text})
    assert got == {"source": "artifact MLmodel", "error": "MLmodel uses YAML anchors or aliases"}


def test_a_billion_laughs_mlmodel_is_refused_at_once_under_a_memory_limit():
    """387 bytes that expand to 10^9 scalars: refused while composing, in a child with 1 GiB of
    address space (the init container has none: it would grow until OOM-killed)."""
    import subprocess
    import sys

    child = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from modelversioning.artifacts.io_signature import read_signature\n"
        "print(read_signature({'MLmodel': sys.stdin.buffer.read()}))\n"
    )
    bomb = _laughs(9)
    assert len(bomb) < 400
    out = subprocess.run([sys.executable, "-c", child], input=bomb, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-500:]
    assert "YAML anchors or aliases" in out.stdout.decode()


@pytest.mark.parametrize(
    ("cols", "what"),
    [
        ([{"name": ["a"] * 3, "type": "double"}], "name"),
        ([{"name": "a", "type": {"x": 1}}], "type"),
        ([{"name": "a", "type": "tensor", "tensor-spec": {"dtype": [1], "shape": [-1]}}], "dtype"),
    ],
    ids=["name", "type", "dtype"],
)
def test_only_string_values_are_taken_never_the_text_of_a_container(cols, what):
    got = read_signature({"MLmodel": f"signature:\n  inputs: '{json.dumps(cols)}'\n".encode()})
    assert got is not None and got["error"] == f"MLmodel signature.inputs[0].{what} is not a string"


def test_an_mlmodel_with_too_many_yaml_nodes_or_levels_is_unreadable():
    wide = b"flavors: [" + b"1," * 20_000 + b"1]\nsignature: {inputs: '[]'}\n"
    assert len(wide) < MAX_MLMODEL_BYTES
    got = read_signature({"MLmodel": wide})
    assert got is not None and "YAML nodes" in got["error"]
    deep = read_signature({"MLmodel": b"signature: " + b"[" * 40 + b"]" * 40 + b"\n"})
    assert deep is not None and "32 levels" in deep["error"]


def test_any_failure_reading_the_mlmodel_is_an_unreadable_record(monkeypatch):
    import modelversioning.artifacts.io_signature as mod

    def boom(data: bytes) -> None:
        raise MemoryError

    monkeypatch.setattr(mod, "parse_mlmodel", boom)
    assert read_signature({"MLmodel": b"x"}) == {
        "source": "artifact MLmodel",
        "error": "MLmodel cannot be read: MemoryError",
    }
