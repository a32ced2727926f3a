"""Which ModelApprovals count, what they bind to, and whether the API server records who made them.

Pure rules (the handler gathers approvals, the version's spec and the admission objects from the
watch cache):

- ``serving_digest(spec)``: sha256 of the canonical JSON of everything in a ModelVersion's spec that
  decides what answers a request: the artifact's digest and format and the whole runtime (image,
  command, args, env, port, healthPath, resources), or the catalog runtime it resolved to (also its
  protocol and source). An approval names it, so an approval of a version deleted and re-created
  with another image, command or env (or resolved from another catalog entry) does not count.
- ``admission_enforced(name, bindings, policies)``: the chart's ValidatingAdmissionPolicy ``name``
  and its binding exist now, the binding denies (validationActions has Deny) for every object (no
  matchResources) and the policy fails closed. Observed from the cluster, never from a chart value:
  deleting a binding (break-glass) stops approvals counting and requested-by being trusted at once.
- ``refusal(approval, ctx)``: why one approval does not count (None: it counts). It counts only while
  admission records approvals and requesters, for this artifact digest and serving digest, from a
  person (never a ``system:`` identity: ServiceAccounts, nodes, controllers) other than the version's
  author and the requester of the stage change, in one of the approver groups of every platform
  policy that names some (the groups the API server recorded for its creator).
- ``image_pinned(image)``: ``<name>@sha256:<64 hex>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SYSTEM_PREFIX = "system:"  # Kubernetes' own identities: system:serviceaccount:<ns>:<name>, nodes, ...
_PINNED = re.compile(r"^[^@\s]+@sha256:[a-f0-9]{64}$")
_DEFAULT_PORT = 8080  # api.modelversion_spec.Runtime's default


def image_pinned(image: str) -> bool:
    return bool(_PINNED.match(image))


def serving_inputs(spec: Mapping[str, Any], resolved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What decides the served behaviour, with the API's defaults filled in (absent == default).
    ``resolved``: status.resolvedRuntime of a version without spec.runtime (domain.runtime_catalog),
    covered whole: also its protocol and its source (kind, name, uid, generation)."""
    art = spec.get("artifact") or {}
    explicit = spec.get("runtime")
    rt = explicit or resolved or {}
    res = rt.get("resources") or {}
    runtime: dict[str, Any] = {
        "image": str(rt.get("image") or ""),
        "command": [str(c) for c in rt.get("command") or []],
        "args": [str(a) for a in rt.get("args") or []],
        "env": [
            {"name": str(e.get("name")), "value": str(e.get("value") or "")} for e in rt.get("env") or []
        ],
        "port": int(rt.get("port") or _DEFAULT_PORT),
        "healthPath": rt.get("healthPath"),
        "resources": {
            "requests": {str(k): str(v) for k, v in (res.get("requests") or {}).items()},
            "limits": {str(k): str(v) for k, v in (res.get("limits") or {}).items()},
        },
    }
    out: dict[str, Any] = {
        "v": 1,
        "artifact": {"sha256": str(art.get("sha256") or ""), "format": art.get("format")},
        "runtime": runtime,
    }
    if not explicit and resolved:  # an explicit runtime's digest is what it always was
        src = resolved.get("source") or {}
        runtime["protocol"] = str(resolved.get("protocol") or "")
        out["resolvedFrom"] = {k: src.get(k) for k in ("kind", "name", "uid", "generation")}
    return out


def serving_digest(spec: Mapping[str, Any], resolved: Mapping[str, Any] | None = None) -> str:
    """sha256 (hex) of the canonical JSON of ``serving_inputs(spec, resolved)`` (wire form, camelCase);
    "" for a version without spec.runtime whose runtime is not resolved (nothing an approval can name)."""
    if not spec.get("runtime") and not resolved:
        return ""
    doc = json.dumps(serving_inputs(spec, resolved), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(doc.encode()).hexdigest()


# ------------------------------------------------------------------------------ admission, observed


def admission_enforced(
    name: str, bindings: Mapping[str, Mapping[str, Any]], policies: Mapping[str, Mapping[str, Any]]
) -> bool:
    """The policy ``name`` is in force now: bound by a binding of the same name that denies, for
    every object, and the policy does not ignore its own failures. ``bindings`` / ``policies``: name ->
    object as cached."""
    binding, policy = bindings.get(name), policies.get(name)
    if binding is None or policy is None:
        return False
    spec, pspec = binding.get("spec") or {}, policy.get("spec") or {}
    return (
        spec.get("policyName") == name
        and "Deny" in (spec.get("validationActions") or [])
        and not spec.get("matchResources")  # narrowed (a selector): not the chart's, not trusted
        and pspec.get("failurePolicy", "Fail") == "Fail"
    )


# ------------------------------------------------------------------------------------- approvals


@dataclass(frozen=True)
class Approval:
    """One ModelApproval as stored."""

    approver: str
    stage: str
    sha256: str
    serving_digest: str = ""
    groups: tuple[str, ...] = ()  # spec.approverGroups (admission: a subset of the creator's groups)


@dataclass(frozen=True)
class ApprovalContext:
    """What an approval of one version is checked against."""

    sha256: str
    serving_digest: str
    authors: frozenset[str] = frozenset()  # spec.lineage.author
    requesters: frozenset[str] = frozenset()  # who asked for the stage change (requested-by, actor)
    recorded: bool = False  # admission records approvers and requesters now (both policies enforced)
    approver_groups: tuple[frozenset[str], ...] = field(default=())  # one set per policy naming groups


def refusal(a: Approval, ctx: ApprovalContext) -> str | None:
    """Why ``a`` does not count (None: it counts)."""
    if not ctx.recorded:
        return "not recorded by the API server (the admission policies are not observed enforced)"
    if a.sha256 != ctx.sha256:
        return f"for other weights (sha256 {a.sha256[:12]})"
    if not ctx.serving_digest:  # a catalog runtime not resolved (yet): nothing serves, nothing to approve
        return "the version's runtime is not resolved: there is no serving digest to approve"
    if a.serving_digest != ctx.serving_digest:
        return f"for another serving digest ({a.serving_digest[:12] or 'none'}): image, command or env differ"
    if a.approver.startswith(SYSTEM_PREFIX):
        return "a ServiceAccount or system identity is not a person"
    if a.approver in ctx.authors:
        return "self-approval by the author"
    if a.approver in ctx.requesters:
        return "self-approval by the requester"
    if not all(set(a.groups) & wanted for wanted in ctx.approver_groups):
        return "not in the platform's approver groups"
    return None


def count(
    approvals: Iterable[Approval], ctx: ApprovalContext
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(stage -> distinct approvers that count, stage -> "<approver> (<why not>)" for those that do
    not), both sorted. An approver with one approval that counts is not listed as refused."""
    ok: dict[str, set[str]] = {}
    no: dict[str, dict[str, str]] = {}
    for a in approvals:
        why = refusal(a, ctx)
        if why is None:
            ok.setdefault(a.stage, set()).add(a.approver)
        else:
            no.setdefault(a.stage, {}).setdefault(a.approver, why)
    counted = {s: tuple(sorted(users)) for s, users in ok.items()}
    refused = {
        s: tuple(f"{u} ({w})" for u, w in sorted(m.items()) if u not in ok.get(s, set()))
        for s, m in no.items()
    }
    return counted, {s: r for s, r in refused.items() if r}


# ---------------------------------------------------------------------------------- pinned images


def pin_required(dst: str, pinned_from: Iterable[str], order: tuple[str, ...]) -> str | None:
    """The policy stage that requires a pinned image to enter ``dst`` (None: none does). Archiving
    never needs one (it withdraws). A stage the graph does not know requires it everywhere (fail
    closed: the policy names a stage this Model has not got)."""
    if dst == "archived":
        return None
    for stage in pinned_from:
        if stage not in order or dst not in order or order.index(dst) >= order.index(stage):
            return stage
    return None
