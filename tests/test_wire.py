"""One vocabulary for what we put on the wire (api.wire): names are declared there and only there, and
the properties of every reason (stalls, permanent, transient, no slot) are one table."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from modelversioning.api import wire
from modelversioning.artifacts.errors import TRANSIENT_REASONS, Reason
from modelversioning.domain import endpoint_plan, endpoint_status, kstatus

OPERATOR = Path(__file__).resolve().parents[1] / "operator" / "modelversioning"


@cache
def _sources() -> tuple[tuple[str, str], ...]:
    """(path relative to the package, source) of every module of the operator, read once."""
    return tuple((str(p.relative_to(OPERATOR)), p.read_text()) for p in sorted(OPERATOR.rglob("*.py")))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (documentation may spell names out)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def wire_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts included, docstrings not) that spells a
    name of our API group: `modelversioning.io` alone or any `.../modelversioning.io/...` name."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docs
        and (wire.GROUP + "/" in n.value or n.value.strip(".") == wire.GROUP)
    ]


def test_no_module_outside_api_spells_a_name_of_ours() -> None:
    found = []
    for path in sorted(OPERATOR.rglob("*.py")):
        if path.parent.name == "api":
            continue
        found += [
            f"{path.relative_to(OPERATOR)}:{line}: {text!r}" for line, text in wire_literals(path.read_text())
        ]
    assert found == [], "declare these in api/wire.py and import them:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "hits"),
    [
        ('X = "modelversioning.io/requested-by"', 1),
        ('X = f"{a}/x" if b else "tag.modelversioning.io/best"', 1),
        ('GROUP = "modelversioning.io"', 1),
        ('def f():\n    """reads modelversioning.io/requested-by"""\n    return 1', 0),
        ("# modelversioning.io/in-use in a comment\nX = 1", 0),
        ('X = "modelversioning.iox"', 0),
    ],
)
def test_the_literal_finder_finds_what_it_must(source: str, hits: int) -> None:
    assert len(wire_literals(source)) == hits


def _cond_and_event_reason_literals(source: str) -> list[tuple[int, str]]:
    """Reasons written as literals: Cond(type, status, "Reason", ...), ("Warning"|"Normal", "Reason", m)."""
    out = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "Cond":
            if len(n.args) >= 3 and isinstance(n.args[2], ast.Constant):
                out.append((n.lineno, str(n.args[2].value)))
        elif isinstance(n, ast.Tuple | ast.Call):
            elts = n.elts if isinstance(n, ast.Tuple) else n.args
            for a, b in zip(elts, elts[1:], strict=False):
                if (
                    isinstance(a, ast.Constant)
                    and a.value in ("Warning", "Normal")
                    and isinstance(b, ast.Constant)
                ):
                    out.append((n.lineno, str(b.value)))
    return out


# The response headers we add or read (api.wire HEADER_*): declared once, never spelled elsewhere.
HEADERS = frozenset(v for k, v in vars(wire).items() if k.startswith("HEADER_") and isinstance(v, str))


def header_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (docstrings not) that is one of our response headers."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docs
        and n.value.strip().lower() in HEADERS
    ]


def test_no_module_outside_api_spells_a_header_of_ours() -> None:
    assert {"x-model-version", "x-model-unavailable"} <= HEADERS
    assert header_literals('H = "x-model-version"\n') == [(1, "x-model-version")]
    found = [
        f"{rel}:{line}: {text!r}"
        for rel, src in _sources()
        if not rel.startswith("api/")
        for line, text in header_literals(src)
    ]
    assert found == [], "name these headers from api.wire:\n" + "\n".join(found)


# A Kubernetes-style annotation or label key (prefix/name), ours or another project's: declared in api/.
_KEY_LITERAL = re.compile(
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.(io|com|dev|org)/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def key_literals(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
        and _KEY_LITERAL.match(n.value)
    ]  # fmt: skip


def test_no_module_outside_api_spells_an_annotation_or_label_key() -> None:
    assert key_literals('k = "kubectl.kubernetes.io/last-applied-configuration"\n') != []
    found = [
        f"{rel}:{line}: {text!r}"
        for rel, src in _sources()
        if not rel.startswith("api/")
        for line, text in key_literals(src)
    ]
    assert found == [], "declare these keys in api/wire.py and import them:\n" + "\n".join(found)


def test_every_condition_and_event_reason_is_named_from_the_registry() -> None:
    found = []
    for path in sorted(OPERATOR.rglob("*.py")):
        if path.name == "wire.py":
            continue
        found += [
            f"{path.relative_to(OPERATOR)}:{ln}: {r}"
            for ln, r in _cond_and_event_reason_literals(path.read_text())
        ]
    assert found == [], "name these reasons from api.wire (declare them there first):\n" + "\n".join(found)


def test_the_reason_finder_finds_literals() -> None:
    src = (
        'Cond("Ready", TRUE, "Fine", "m")\nevents.append(("Warning", "Oops", msg))\npost("Normal", "Hi", m)\n'
    )
    assert sorted(r for _, r in _cond_and_event_reason_literals(src)) == ["Fine", "Hi", "Oops"]
    assert _cond_and_event_reason_literals('Cond("Ready", TRUE, R.READY, "m")') == []


# What each property means for users, pinned: changing one is a decision (kstatus/Flux, Argo CD's
# health scripts in docs/argocd and the alerts of platform teams read them), not a side effect.
# an oci:// artifact refused for good (artifacts.oci_fetch): no slot, the version stalls
OCI_REFUSALS = (
    "TagWithoutDigest", "ManifestDigestMismatch", "LayerDigestMismatch", "UnsupportedArtifactLayout",
    "UnsafeArchive",
)  # fmt: skip
# a signed model refused by its trust policy (domain.trust): no slot, the version stalls
SIGNATURE_REFUSALS = (
    "SignatureMissing", "SignatureInvalid", "SignerNotTrusted", "SignatureDigestMismatch",
    "CertificateExpired",
)  # fmt: skip
# a MINOR/PATCH release that breaks the I/O contract, or has no signature where one is required
# (domain.io_contract): no slot, the version stalls (its spec is immutable: a new version fixes it)
IO_CONTRACT_REFUSALS = ("IOSignatureChanged", "IOSignatureMissing")
# a version without spec.runtime whose catalog runtime cannot be resolved (domain.runtime_catalog): the
# version stalls until the catalog changes (its variants say RuntimeNotResolved: nothing is rendered)
RUNTIME_REFUSALS = (
    "RuntimeNotFound", "RuntimeDisabled", "NoRuntimeForFormat", "RuntimeFormatMismatch", "InvalidRuntime",
)  # fmt: skip
EXPECTED = {
    "stalls_endpoint": {
        "MissingVersion", "InvalidVersion", "DigestMismatch", "ModelVersionReplaced", "ChildRejected",
        "ChildConflict", "InvalidSpec", "MajorVersionMix", "InvalidSplit", "RouterDisabled", "UnknownRouter",
        "MirrorUnsupported", "RolloutFailed", "RolloutAborted", "PolicyViolation", "Revoked", "Withdrawn",
        "Quarantined",
    },
    "stalls_version": {
        "DigestMismatch", "URIRefused", "InvalidSpec", "TransitionNotAllowed", "LineageIncomplete",
        "ImageNotPinned", "SizeMismatch", "LimitExceeded", "ArchiveWhileServing", "Quarantined",
        *OCI_REFUSALS,
        *SIGNATURE_REFUSALS,  # until a new signature or another trust policy
        *IO_CONTRACT_REFUSALS,
        *RUNTIME_REFUSALS,  # until the catalog changes
    },
    "permanent": {
        "MissingVersion", "InvalidVersion", "DigestMismatch", "ModelVersionReplaced", "ChildRejected",
        "ChildConflict", "InvalidSpec", "PolicyViolation", "Revoked", "Withdrawn", "Quarantined",
    },
    "transient": {"NotFound", "FetchFailed", "ChildApplyRetrying"},
    "no_slot": {
        "URIRefused", "DigestMismatch", "SizeMismatch", "LimitExceeded", "AccessDenied", "VersionReused",
        "ArtifactDeleted", *OCI_REFUSALS, *SIGNATURE_REFUSALS, *IO_CONTRACT_REFUSALS,
    },
    # the bytes are not the pinned ones: the variant says DigestMismatch, the version keeps it
    "digest_mismatch": {"DigestMismatch", "ManifestDigestMismatch", "LayerDigestMismatch"},
}  # fmt: skip


@pytest.mark.parametrize("prop", sorted(EXPECTED))
def test_each_reason_property_is_declared_once_for_the_right_reasons(prop: str) -> None:
    assert {n for n, info in wire.REASONS.items() if getattr(info, prop)} == EXPECTED[prop]


def test_the_readers_use_the_registry_tables() -> None:
    assert kstatus.ENDPOINT_STALLED == wire.ENDPOINT_STALLS == EXPECTED["stalls_endpoint"]
    assert kstatus.VERSION_STALLED == wire.VERSION_STALLS == EXPECTED["stalls_version"]
    assert endpoint_status.PERMANENT == wire.PERMANENT
    assert endpoint_plan.NO_SLOT_REASONS == wire.NO_SLOT
    assert EXPECTED["digest_mismatch"] == wire.DIGEST_MISMATCHES
    assert TRANSIENT_REASONS == {r for r in Reason if r in wire.TRANSIENT} == {"NotFound", "FetchFailed"}
    assert {r.value for r in Reason} <= set(wire.REASONS)


def test_a_transient_reason_never_stalls_and_a_stalling_one_is_never_transient() -> None:
    for info in wire.REASONS.values():
        assert not (info.transient and (info.stalls_endpoint or info.stalls_version or info.permanent)), info


def test_every_reason_is_camel_case_and_says_where_it_appears() -> None:
    for name, info in wire.REASONS.items():
        assert name[0].isupper() and name.isalnum() and info.where and info.meaning, name


def test_a_reason_cannot_be_declared_twice() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        wire.reason(wire.READY, wire.ENDPOINT_CONDITION, meaning="again")


def test_a_retired_event_reason_is_never_declared_again() -> None:
    """Issue #25: the operator no longer posts these; an alert matching one never sees it reused."""
    assert set(wire.RETIRED) == {"ArtifactVerified", "ModelCreated"}
    assert not set(wire.RETIRED) & set(wire.REASONS)
    for name in wire.RETIRED:
        with pytest.raises(ValueError, match="retired"):
            wire.reason(name, wire.VERSION_EVENT, meaning="again")


def test_resource_paths() -> None:
    assert wire.MODELVERSION.path("ns", "m-v1.0.0", "status") == (
        "/apis/modelversioning.io/v1alpha1/namespaces/ns/modelversions/m-v1.0.0/status"
    )
    assert wire.SERVICE.path("ns") == "/api/v1/namespaces/ns/services"
    assert wire.MODEL.path(None) == "/apis/modelversioning.io/v1alpha1/models"
    assert wire.MODELAPPROVAL.qualified == "modelapprovals.modelversioning.io"
    assert wire.DEPLOYMENT.api_version == "apps/v1" and wire.SECRET.api_version == "v1"
