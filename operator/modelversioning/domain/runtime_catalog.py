"""Which catalog runtime a ModelVersion without ``spec.runtime`` runs, decided purely.

The handler gathers the catalog from the watch cache (the ModelRuntimes of the version's namespace and
every ClusterModelRuntime, validated, in wire form) into ``RuntimeFacts``; ``resolve_runtime`` decides:

- An explicit ``spec.runtime`` wins: nothing is resolved, no condition.
- A runtime already resolved (``status.resolvedRuntime``) stays, whatever the catalog says now: an
  approval binds it (the serving digest covers it), so a later catalog edit never changes what the
  version runs; a new version picks the edit up.
- Else ``spec.runtimeRef``: it must exist (a ModelRuntime only in the version's own namespace: a
  tenant never sees another's), validate, not be disabled, and support the version's format when the
  version has one (``spec.format``, else ``lineage.framework``).
- Else by format: among the enabled runtimes whose supported formats match with ``autoSelect``, the
  highest ``priority`` (none: below any), a namespaced one before a cluster one, then by name.
- Each failure has its own reason (api.runtime_reasons); the condition says what to do.

A format matches a supported format when the names are equal ignoring case and the versions agree:
either has none, they are equal, or the version's is a finer one of the runtime's major ("1.3" of "1").
``lineage.framework`` is read as ``<name>[-<version>]`` ("xgboost-2.0": xgboost, 2.0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelversioning.api import wire as R
from modelversioning.domain.conditions import FALSE, TRUE, Cond

COND = R.RUNTIME_RESOLVED_CONDITION
NAMESPACED, CLUSTER = R.MODELRUNTIME.kind, R.CLUSTERMODELRUNTIME.kind
DEFAULT_PORT = 8080  # KServe's, when the container lists no port
DEFAULT_PROTOCOL = "v1"  # KServe's, when a runtime lists no protocolVersions
HEALTH_BY_PROTOCOL = {"v2": "/v2/health/ready"}  # the Open Inference Protocol's server-ready path
_FRAMEWORK = re.compile(r"^(?P<name>.+?)[-_ =@]v?(?P<version>\d[0-9A-Za-z.]*)$")


@dataclass(frozen=True)
class Format:
    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


def framework_format(framework: str | None) -> Format | None:
    """lineage.framework as a format: "xgboost-2.0" -> xgboost 2.0, "sklearn" -> sklearn."""
    fw = (framework or "").strip()
    if not fw:
        return None
    m = _FRAMEWORK.match(fw)
    return Format(m["name"], m["version"]) if m else Format(fw)


@dataclass(frozen=True)
class CatalogRuntime:
    """One ModelRuntime / ClusterModelRuntime as cached."""

    kind: str  # NAMESPACED or CLUSTER
    name: str
    namespace: str = ""  # "" for a ClusterModelRuntime
    uid: str = ""
    generation: int = 0
    spec: Mapping[str, Any] | None = None  # validated, wire form (camelCase); None: invalid
    invalid: str = ""  # why it does not validate

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RuntimeFacts:
    namespace: str
    explicit: bool = False  # spec.runtime is given
    ref: tuple[str, str] | None = None  # spec.runtimeRef (kind, "" = either: namespaced first; name)
    format: Format | None = None  # spec.format, else lineage.framework
    resolved: Mapping[str, Any] | None = None  # status.resolvedRuntime as stored
    catalog: tuple[CatalogRuntime, ...] = ()


@dataclass(frozen=True)
class Resolution:
    resolved: Mapping[str, Any] | None = None  # status.resolvedRuntime (None: explicit, or failed)
    cond: Cond | None = None  # RuntimeResolved (None: an explicit spec.runtime)

    @property
    def ok(self) -> bool:
        return self.cond is None or self.cond.status == TRUE

    @property
    def image(self) -> str:
        """The resolved image ("" unresolved): the platform's image rules apply to it too."""
        return str((self.resolved or {}).get("image") or "")


EXPLICIT = Resolution()


def resolve_runtime(facts: RuntimeFacts) -> Resolution:
    """The runtime the version runs (see the module's rules)."""
    if facts.explicit:
        return EXPLICIT
    if facts.resolved:
        return _resolved(facts.resolved)
    visible = tuple(r for r in facts.catalog if r.kind == CLUSTER or r.namespace == facts.namespace)
    if facts.ref is not None:
        return _by_ref(facts, visible)
    return _by_format(facts, visible)


def _by_ref(facts: RuntimeFacts, visible: tuple[CatalogRuntime, ...]) -> Resolution:
    assert facts.ref is not None
    kind, name = facts.ref
    kinds = (kind,) if kind else (NAMESPACED, CLUSTER)  # no kind: KServe's lookup, namespaced first
    rt = next((r for k in kinds for r in visible if (r.kind, r.name) == (k, name)), None)
    where = f" in namespace {facts.namespace}" if kind != CLUSTER else ""
    kind = kind or f"{NAMESPACED} or {CLUSTER}"
    if rt is None:
        return _failed(
            R.RUNTIME_NOT_FOUND,
            f"spec.runtimeRef names {kind} {name}, which does not exist{where}; create it, or register a "
            "version that names another runtime",
        )
    if rt.spec is None:
        return _failed(R.INVALID_RUNTIME, f"{rt.label} does not validate: {rt.invalid}")
    if rt.spec.get("disabled"):
        return _failed(
            R.RUNTIME_DISABLED,
            f"{rt.label} is disabled (spec.disabled); enable it, or register a version that names another",
        )
    fmt = facts.format
    if fmt is not None and not any(_matches(fmt, f) for f in _formats(rt.spec)):
        supported = ", ".join(_shown(f) for f in _formats(rt.spec)) or "none"
        return _failed(
            R.RUNTIME_FORMAT_MISMATCH,
            f"{rt.label} does not support the version's format {fmt} (it supports: {supported}); name a "
            "runtime that does, or correct spec.format",
        )
    return _resolved(resolved_from(rt))


def _by_format(facts: RuntimeFacts, visible: tuple[CatalogRuntime, ...]) -> Resolution:
    fmt = facts.format
    if fmt is None:  # admission and the spec's validation refuse this; fail closed all the same
        return _failed(R.NO_RUNTIME_FOR_FORMAT, "the version names no runtime and no format")
    best = choose(fmt, visible)
    if best is None:
        return _failed(
            R.NO_RUNTIME_FOR_FORMAT,
            f"no enabled runtime with autoSelect supports format {fmt} (ModelRuntimes in namespace "
            f"{facts.namespace}, ClusterModelRuntimes); add one, or name one in spec.runtimeRef",
        )
    return _resolved(resolved_from(best))


def choose(fmt: Format, catalog: tuple[CatalogRuntime, ...]) -> CatalogRuntime | None:
    """The auto-selected runtime for `fmt`: highest priority, namespaced before cluster, then by name."""
    ranked: list[tuple[tuple[int, int, str], CatalogRuntime]] = []
    for rt in catalog:
        if rt.spec is None or rt.spec.get("disabled"):
            continue
        fits = [f for f in _formats(rt.spec) if f.get("autoSelect") and _matches(fmt, f)]
        if fits:
            priority = max(int(f.get("priority") or 0) for f in fits)
            ranked.append(((-priority, 0 if rt.kind == NAMESPACED else 1, rt.name), rt))
    return min(ranked, key=lambda x: x[0])[1] if ranked else None


def _matches(fmt: Format, supported: Mapping[str, Any]) -> bool:
    if str(supported.get("name") or "").lower() != fmt.name.lower():
        return False
    theirs, ours = supported.get("version"), fmt.version
    if not theirs or not ours:
        return True
    return ours == theirs or ours.startswith(f"{theirs}.")


def _formats(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [f for f in spec.get("supportedModelFormats") or [] if isinstance(f, Mapping)]


def _shown(f: Mapping[str, Any]) -> str:
    return f"{f.get('name')} {f['version']}" if f.get("version") else str(f.get("name"))


def resolved_from(rt: CatalogRuntime) -> dict[str, Any]:
    """status.resolvedRuntime of a catalog runtime: its container's image, command, args, env, port,
    resources; its protocol (the first HTTP one listed, else v1) and health path (readinessProbe's
    httpGet.path, else the protocol's own: v2's server-ready path, v1's none: a TCP check); its source."""
    assert rt.spec is not None
    c = (rt.spec.get("containers") or [{}])[0]
    protocols = [p for p in rt.spec.get("protocolVersions") or [] if not str(p).startswith("grpc")]
    protocol = str(protocols[0]) if protocols else DEFAULT_PROTOCOL
    ports = c.get("ports") or []
    probe = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
    health = probe or HEALTH_BY_PROTOCOL.get(protocol)
    out: dict[str, Any] = {
        "image": str(c.get("image") or ""),
        "command": [str(x) for x in c.get("command") or []],
        "args": [str(x) for x in c.get("args") or []],
        "env": [{"name": str(e.get("name")), "value": str(e.get("value") or "")} for e in c.get("env") or []],
        "port": int(ports[0].get("containerPort") or DEFAULT_PORT) if ports else DEFAULT_PORT,
        "protocol": protocol,
        "source": {"kind": rt.kind, "name": rt.name, "uid": rt.uid, "generation": rt.generation},
    }
    if health:
        out["healthPath"] = str(health)
    resources = {k: dict(v) for k, v in (c.get("resources") or {}).items() if v}  # empty parts left out
    if resources:
        out["resources"] = resources
    return out


def _resolved(resolved: Mapping[str, Any]) -> Resolution:
    src = resolved.get("source") or {}
    what = f"{src.get('kind')} {src.get('name')} (generation {src.get('generation')})"
    msg = f"runs {resolved.get('image')} from {what}, protocol {resolved.get('protocol')}"
    return Resolution(dict(resolved), Cond(COND, TRUE, R.RUNTIME_RESOLVED, msg))


def _failed(reason: str, message: str) -> Resolution:
    return Resolution(None, Cond(COND, FALSE, reason, message))
