"""Pure decisions of ``kubectl models``: what to register, where to roll back to, whether a
promotion is done. Objects in (dicts), data or :class:`Refused` out; no API access here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from modelversioning.api.common import DNS_LABEL, validation_message
from modelversioning.api.modelversion import PRODUCTION_LINEAGE, ModelVersion, expected_name
from modelversioning.api.wire import (
    API_VERSION,
    LABEL_MODEL,
    REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    REQUESTED_STAGE_ANNOTATION,
)
from modelversioning.cli.models.views import condition, meta_of, spec_of, status_of, version_key
from modelversioning.domain.semver import InvalidVersion, SemVer

STAGES = ("candidate", "staging", "production", "archived")


class Refused(Exception):
    """The operation is refused; the message says why (exit code in ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---- key=value and JSON inputs ------------------------------------------------------------------
def parse_scalar(text: str) -> str | int | float | bool:
    """A hyperparameter value: JSON number/bool when it parses as one, else the string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool | int | float):
        return value
    return text


def parse_pairs(items: Sequence[str], what: str, numeric: bool) -> dict[str, Any]:
    """``k=v`` options into a dict; numeric values for metrics. Raises Refused (usage, exit 2)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise Refused(f"{what} {item!r}: expected KEY=VALUE", code=2)
        if numeric:
            try:
                out[key] = float(raw)
            except ValueError:
                raise Refused(f"{what} {item!r}: {raw!r} is not a number", code=2) from None
            if out[key].is_integer() and re.fullmatch(r"[+-]?\d+", raw.strip()):
                out[key] = int(raw)
        else:
            out[key] = parse_scalar(raw)
    return out


def load_mapping(path: Path, what: str, numeric: bool) -> dict[str, Any]:
    """A JSON object of scalars (numbers for metrics) from a file. Raises Refused (exit 2)."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise Refused(f"{what} {path}: {e.strerror or e}", code=2) from None
    except ValueError as e:
        raise Refused(f"{what} {path}: not valid JSON ({e})", code=2) from None
    if not isinstance(data, dict):
        raise Refused(f"{what} {path}: expected a JSON object of key: value", code=2)
    for k, v in data.items():
        if numeric and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise Refused(f"{what} {path}: {k!r} is not a number ({v!r})", code=2)
        if not numeric and not isinstance(v, str | int | float | bool):
            raise Refused(f"{what} {path}: {k!r} must be a string, number or boolean", code=2)
    return dict(data)


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---- register -------------------------------------------------------------------------------------
@dataclass
class RegisterInputs:
    """What `kubectl models register` was told (plus what git said)."""

    model: str
    version: str
    artifact: str | None = None
    image: str | None = None
    port: int | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    dataset_sha256: str | None = None
    dataset_uri: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    author: str | None = None
    framework: str | None = None
    trained_at: str | None = None
    code_repository: str | None = None
    code_commit: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    stage: str = "candidate"
    format: str | None = None
    description: str | None = None


def identity_errors(model: str, version: str) -> list[str]:
    """Cheap checks done before hashing anything."""
    errors = []
    if not re.match(DNS_LABEL, model) or len(model) > 63:
        errors.append(f"model {model!r} must be a DNS label (lowercase letters, digits, '-'; at most 63)")
    try:
        SemVer.parse(version)
    except InvalidVersion as e:
        errors.append(f"version {e}")
    return errors


def missing_metadata(inp: RegisterInputs) -> list[str]:
    """Each missing piece of metadata, named with the option(s) that provide it."""
    missing: list[str] = []
    if not inp.artifact:
        missing.append("artifact (--artifact URI_OR_PATH)")
    if not inp.image:
        missing.append("runtime.image (--image)")
    if not inp.dataset and not (inp.dataset_version or inp.dataset_sha256):
        missing.append("lineage.dataset (--dataset and --dataset-version/--dataset-sha256)")
    elif not inp.dataset:
        missing.append("lineage.dataset.name (--dataset)")
    elif not (inp.dataset_version or inp.dataset_sha256):
        missing.append(
            "lineage.dataset.version or lineage.dataset.sha256 (--dataset-version/--dataset-sha256)"
        )
    if not inp.metrics:
        missing.append("metrics (--metrics FILE or --metric k=v)")
    if not inp.code_commit:
        missing.append("lineage.codeCommit (--code-commit, or run inside the training code's git checkout)")
    if inp.stage == "production":
        missing.extend(f"{m} (for --stage production)" for m in missing_for_production(inp))
    return missing


_LINEAGE_OPTION = {
    "codeRepository": "lineage.codeRepository (--code-repository, or a git remote 'origin')",
    "codeCommit": "",  # reported by missing_metadata already
    "dataset": "",
    "trainedAt": "lineage.trainedAt (--trained-at)",
    "author": "lineage.author (--author)",
    "framework": "lineage.framework (--framework)",
}


def missing_for_production(inp: RegisterInputs) -> list[str]:
    """Lineage the operator requires before production (PRODUCTION_LINEAGE) that was not given."""
    have = {
        "codeRepository": inp.code_repository,
        "codeCommit": inp.code_commit,
        "dataset": inp.dataset,
        "trainedAt": inp.trained_at,
        "author": inp.author,
        "framework": inp.framework,
    }
    return [_LINEAGE_OPTION[f] for f in PRODUCTION_LINEAGE if not have.get(f) and _LINEAGE_OPTION.get(f)]


def build_manifest(
    inp: RegisterInputs,
    *,
    uri: str,
    sha256: str,
    size_bytes: int | None = None,
    annotations: Mapping[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The ModelVersion manifest (not yet validated)."""
    dataset: dict[str, Any] = {"name": inp.dataset}
    for key, value in (
        ("version", inp.dataset_version),
        ("sha256", inp.dataset_sha256),
        ("uri", inp.dataset_uri),
    ):
        if value:
            dataset[key] = value
    lineage: dict[str, Any] = {}
    for key, value in (("codeRepository", inp.code_repository), ("codeCommit", inp.code_commit)):
        if value:
            lineage[key] = value
    lineage["dataset"] = dataset
    if inp.hyperparameters:
        lineage["hyperparameters"] = dict(inp.hyperparameters)
    for key, value in (("trainedAt", inp.trained_at), ("author", inp.author), ("framework", inp.framework)):
        if value:
            lineage[key] = value
    if inp.environment:
        lineage["environment"] = dict(inp.environment)
    artifact: dict[str, Any] = {"uri": uri, "sha256": sha256}
    if size_bytes is not None:
        artifact["sizeBytes"] = size_bytes
    if inp.format:
        artifact["format"] = inp.format
    runtime: dict[str, Any] = {"image": inp.image}
    if inp.port is not None:
        runtime["port"] = inp.port
    metadata: dict[str, Any] = {"name": expected_name(inp.model, inp.version)}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {LABEL_MODEL: inp.model}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "model": inp.model,
        "version": inp.version,
        "artifact": artifact,
        "lineage": lineage,
        "metrics": dict(inp.metrics),
        "runtime": runtime,
        "stage": inp.stage,
    }
    if inp.description:
        spec["description"] = inp.description
    return {"apiVersion": API_VERSION, "kind": "ModelVersion", "metadata": metadata, "spec": spec}


def validate_manifest(doc: Mapping[str, Any]) -> ModelVersion:
    """Validate with the API's pydantic model; Refused (exit 2) listing every problem."""
    try:
        return ModelVersion.model_validate(dict(doc))
    except ValidationError as e:
        raise Refused("invalid ModelVersion: " + validation_message(e), code=2) from None


# ---- promote ----------------------------------------------------------------------------------------
PromoteState = Literal["done", "blocked", "waiting"]


@dataclass(frozen=True)
class PromoteResult:
    state: PromoteState
    stage: str | None  # status.stage now
    reason: str = ""
    message: str = ""
    new_history: tuple[dict[str, Any], ...] = ()


def promote_patch(stage: str, actor: str, reason: str | None) -> dict[str, Any]:
    """JSON merge patch: spec.stage plus who asked for which stage and why (a null reason removes a
    stale one, so the operator records its default)."""
    return {
        "metadata": {
            "annotations": {
                REQUESTED_BY_ANNOTATION: actor,
                REQUESTED_STAGE_ANNOTATION: stage,
                REASON_ANNOTATION: reason or None,
            }
        },
        "spec": {"stage": stage},
    }


def promote_state(mv: Mapping[str, Any], stage: str, generation: int, history_before: int) -> PromoteResult:
    """Where a requested promotion stands, as observed on the ModelVersion.

    done: status.stage == stage (as observed for `generation` or later);
    blocked: StageTransition=False for this generation (reason + message say why not);
    waiting: anything else (not yet reconciled, artifact still being verified...).
    """
    st = status_of(mv)
    observed = int(st.get("observedGeneration") or 0)
    history = [dict(h) for h in st.get("history") or []]
    new = tuple(history[history_before:])
    if st.get("stage") == stage and observed >= generation:
        return PromoteResult("done", stage, new_history=new)
    c = condition(mv, "StageTransition")
    if (
        c
        and c.get("status") == "False"
        and int(c.get("observedGeneration") or 0) >= generation
        and observed >= generation
    ):
        return PromoteResult(
            "blocked", st.get("stage"), str(c.get("reason", "")), str(c.get("message", "")), new
        )
    if c and c.get("status") == "Unknown" and observed >= generation:
        return PromoteResult(
            "waiting", st.get("stage"), str(c.get("reason", "")), str(c.get("message", "")), new
        )
    return PromoteResult(
        "waiting", st.get("stage"), "Pending", "waiting for the operator to observe the request", new
    )


# ---- rollback ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackPlan:
    endpoint: str
    target: str  # variant name
    version: str
    rolled_back: str | None  # the variant whose version is being rolled back (None with --to)
    before: dict[str, int]  # live variant -> weight it carries now
    after: dict[str, int]  # live variant -> declared weight after the patch
    patch: dict[str, Any]  # JSON merge patch of the ModelEndpoint
    why: str
    noop: bool = False


def live_variants(ep: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = spec_of(ep)
    mirror = (spec.get("mirror") or {}).get("variant")
    return [dict(v) for v in spec.get("variants") or [] if v.get("name") != mirror]


def current_weights(ep: Mapping[str, Any]) -> dict[str, int]:
    """What each live variant carries now: status.effectiveWeights, or the declared weights before
    the operator has reported any."""
    st = status_of(ep)
    if st.get("effectiveWeights"):
        eff = {k: int(v) for k, v in st["effectiveWeights"].items()}
        return {v["name"]: eff.get(v["name"], 0) for v in live_variants(ep)}
    return {v["name"]: int(v.get("weight", 0)) for v in live_variants(ep)}


def _eligibility(ep: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
    out: dict[str, tuple[bool, str]] = {}
    for vs in status_of(ep).get("variants") or []:
        why = f"{vs.get('reason') or 'NotEligible'}: {vs.get('message') or ''}".rstrip(": ")
        out[str(vs.get("name"))] = (bool(vs.get("eligible")), why)
    return out


def choose_rollback_target(
    ep: Mapping[str, Any], to: str | None = None, force: bool = False
) -> tuple[dict[str, Any], str | None, str]:
    """(target variant, variant rolled back, why).

    Default rule: the rollout being rolled back is the live variant with the highest version that
    carries traffic now or is declared to (spec weight > 0); the target is, among the other live
    variants that are eligible (status.variants[].eligible), the one with the highest version below
    it. E.g. stable 2.3.8 (0%) and canary 2.4.1 (100%, or 10% mid-canary) -> stable. A mirror
    variant is never a target.

    With ``to``: the live variant running that version (or named so); it must be in spec.variants,
    and eligible unless ``force``.
    """
    name = meta_of(ep).get("name")
    live = live_variants(ep)
    weights = current_weights(ep)
    eligible = _eligibility(ep)
    mirror = (spec_of(ep).get("mirror") or {}).get("variant")
    listing = ", ".join(f"{v['name']}={v.get('version')}" for v in spec_of(ep).get("variants") or [])

    def elig(v: Mapping[str, Any]) -> tuple[bool, str]:
        return eligible.get(str(v["name"]), (False, "the operator has not reported this variant yet"))

    if to is not None:
        matches = [v for v in live if v.get("version") == to] or [v for v in live if v.get("name") == to]
        if not matches:
            if mirror and to in (
                mirror,
                next(
                    (v.get("version") for v in spec_of(ep).get("variants") or [] if v.get("name") == mirror),
                    None,
                ),
            ):
                raise Refused(
                    f"{to} is the mirror (shadow) variant of ModelEndpoint {name}; it takes no live "
                    "traffic and cannot be a rollback target"
                )
            raise Refused(
                f"ModelEndpoint {name} has no variant running version {to} (variants: {listing}); "
                "rollback only moves traffic between variants already in spec.variants: add it "
                "(weight 0) and wait until it is ready first"
            )
        target = max(matches, key=lambda v: (weights.get(v["name"], 0), str(v["name"])))
        ok, why = elig(target)
        if not ok and not force:
            raise Refused(
                f"variant {target['name']} ({target.get('version')}) of ModelEndpoint {name} is not "
                f"eligible for live traffic ({why}); the operator would hold the traffic where it is. "
                "Fix that first, or pass --force to edit the weights anyway"
            )
        return target, None, f"--to {to}"

    # The rollout to undo: what carries traffic now, or is declared to (a rollout the operator still holds).
    serving = [v for v in live if weights.get(v["name"], 0) > 0 or int(v.get("weight", 0)) > 0]
    if not serving:
        raise Refused(
            f"no live variant of ModelEndpoint {name} carries or is declared to carry traffic; pass --to"
        )
    newest = max(serving, key=lambda v: (version_key(str(v.get("version"))), weights.get(v["name"], 0)))
    below = [
        v
        for v in live
        if v["name"] != newest["name"]
        and version_key(str(v.get("version"))) < version_key(str(newest.get("version")))
    ]
    candidates = [v for v in below if elig(v)[0]]
    if not candidates:
        if not below:
            raise Refused(
                f"nothing to roll back to: {newest['name']} ({newest.get('version')}) is the lowest "
                f"version among the live variants of ModelEndpoint {name} ({listing}); add the previous "
                "version as a variant (weight 0) or pass --to VERSION"
            )
        reasons = "; ".join(f"{v['name']} ({v.get('version')}): {elig(v)[1]}" for v in below)
        raise Refused(
            f"no variant below {newest['name']} ({newest.get('version')}) is eligible for live traffic: "
            f"{reasons}"
        )
    target = max(
        candidates,
        key=lambda v: (version_key(str(v.get("version"))), weights.get(v["name"], 0), str(v["name"])),
    )
    why = (
        f"{newest['name']} ({newest.get('version')}) is the newest version taking traffic; "
        f"{target['name']} ({target.get('version')}) is the highest eligible version below it"
    )
    return target, str(newest["name"]), why


def plan_rollback(ep: Mapping[str, Any], to: str | None = None, force: bool = False) -> RollbackPlan:
    """Target 100, every other live variant 0 (kept deployed and warm); the mirror is untouched."""
    target, rolled_back, why = choose_rollback_target(ep, to, force)
    spec = spec_of(ep)
    mirror = (spec.get("mirror") or {}).get("variant")
    variants = []
    after: dict[str, int] = {}
    for v in spec.get("variants") or []:
        nv = dict(v)
        if v.get("name") != mirror:
            nv["weight"] = 100 if v["name"] == target["name"] else 0
            after[str(v["name"])] = nv["weight"]
        variants.append(nv)
    before = current_weights(ep)
    declared = {str(v["name"]): int(v.get("weight", 0)) for v in live_variants(ep)}
    noop = declared == after and before == after
    return RollbackPlan(
        endpoint=str(meta_of(ep).get("name")),
        target=str(target["name"]),
        version=str(target.get("version")),
        rolled_back=rolled_back,
        before=before,
        after=after,
        patch={"spec": {"variants": variants}},
        why=why,
        noop=noop,
    )


def rollback_done(weights: Mapping[str, int] | None, target: str) -> bool:
    """True when the observed split sends 100% of live traffic to `target`."""
    if not weights:
        return False
    return int(weights.get(target, 0)) == 100 and sum(int(w) for k, w in weights.items() if k != target) == 0


_VOLATILE_METADATA = (
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)


def clean_manifest(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as it would be committed to Git: no status, no server-populated metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    md = dict(out.get("metadata") or {})
    for k in _VOLATILE_METADATA:
        md.pop(k, None)
    ann = {
        k: v
        for k, v in (md.get("annotations") or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    out["metadata"] = md
    return out


def apply_merge_patch(obj: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (what the API server does with application/merge-patch+json)."""
    out = copy.deepcopy(dict(obj))
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping):
            current = out.get(k)
            out[k] = apply_merge_patch(current if isinstance(current, Mapping) else {}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def names_of(objs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(meta_of(o).get("name")) for o in objs]
