"""The platform's floors for one namespace: which ModelPlatformPolicies select it, and what they allow.

Pure: policies arrive as (name, spec) in wire form (camelCase dicts, already validated against the
API model), the namespace as its labels. Several policies may select one namespace; each applies, so
every check here must pass for every policy that sets it (the strictest wins). Without a policy the
floors are absent (``Floors()``), except retention, which deletes nothing without a storage root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROOT_PATTERN = r"^[a-z][a-z0-9+.-]*://[^\s]*/$"
DEFAULT_TRUSTED_SOURCES = frozenset({"traefik", "istio"})
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# schemes that name the same store: a URI cannot slip past a root by its spelling
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def host_pattern_ok(pattern: str) -> bool:
    name = pattern[2:] if pattern.startswith("*.") else pattern
    return bool(_DNS_NAME.match(name)) and len(name) <= 253


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches every namespace."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key", ""), req.get("operator"), set(req.get("values") or [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # unknown operator: select nothing rather than everything
    return True


def canonical_uri(uri: str) -> str | None:
    """One spelling per object: scheme aliases folded, no '.', '..' or empty segments (None: refuse)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        return None
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())
    lead = "/" if rest.startswith("/") else ""
    trail = "/" if rest.endswith("/") else ""
    parts = rest.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in rest or "%2" in rest.lower():
        return None
    return f"{scheme}://{lead}{'/'.join(parts)}{trail}"


@dataclass(frozen=True)
class Floors:
    """What the policies selecting one namespace require; the default is 'no policy'."""

    policies: tuple[str, ...] = ()
    min_required_stages: tuple[str, ...] = ()
    pinned_images_from: tuple[str, ...] = ()
    allowed_tolerations: tuple[tuple[Mapping[str, Any], ...], ...] = ()
    allowed_hosts: tuple[tuple[str, ...], ...] = ()
    min_interval_seconds: int = 0
    trusted_sources: frozenset[str] = DEFAULT_TRUSTED_SOURCES
    promotion_ceilings: Mapping[str, float] = field(default_factory=dict)
    free_queries_refused: bool = False
    io_signature_required_by: tuple[str, ...] = ()  # policies whose serving.requireIOSignature is set
    approver_groups: tuple[frozenset[str], ...] = ()
    storage_roots: tuple[tuple[str, ...], ...] = ()
    trust: tuple[
        tuple[str, Mapping[str, Any]], ...
    ] = ()  # (policy, spec.trust): signed models (domain.trust)

    def host_allowed(self, host: str) -> bool:
        return all(any(_host_matches(p, host) for p in allowed) for allowed in self.allowed_hosts)

    def toleration_allowed(self, toleration: Mapping[str, Any]) -> bool:
        return all(
            any(_toleration_within(toleration, a) for a in allowed) for allowed in self.allowed_tolerations
        )

    def approver_allowed(self, groups: Iterable[str]) -> bool:
        have = set(groups)
        return all(have & wanted for wanted in self.approver_groups)

    def storage_root_of(self, uri: str) -> str | None:
        """The root (of the first policy) a URI lies strictly under, when every policy that names roots
        has one containing it; None: retention may not delete it (no root, or outside one)."""
        if not self.storage_roots or (c := canonical_uri(uri)) is None:
            return None
        found: str | None = None
        for roots in self.storage_roots:
            inside = [r for r in roots if (cr := canonical_uri(r)) and c.startswith(cr) and c != cr]
            if not inside:
                return None
            found = found or inside[0]
        return found


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _toleration_within(t: Mapping[str, Any], allowed: Mapping[str, Any]) -> bool:
    for key in ("key", "operator", "value", "effect"):
        if t.get(key) != allowed.get(key):
            return False
    cap, mine = allowed.get("tolerationSeconds"), t.get("tolerationSeconds")
    return cap is None or (mine is not None and mine <= cap)


def floors_for(
    namespace: str, labels: Mapping[str, str], policies: Iterable[tuple[str, Mapping[str, Any]]]
) -> Floors:
    chosen = sorted((n, s) for n, s in policies if selector_matches(s.get("namespaceSelector") or {}, labels))
    if not chosen:
        return Floors()
    serving = [(s.get("serving") or {}) for _, s in chosen]
    analysis = [(s.get("analysis") or {}) for _, s in chosen]
    approvals = [(s.get("approvals") or {}) for _, s in chosen]
    retention = [(s.get("retention") or {}) for _, s in chosen]
    trusted: frozenset[str] | None = None  # each policy that lists sources narrows the set
    for a in analysis:
        if a.get("trustedSources") is not None:
            mine = frozenset(a["trustedSources"])
            trusted = mine if trusted is None else trusted & mine
    ceilings: dict[str, float] = {}
    for a in analysis:
        for c in a.get("promotionCeilings") or []:
            ceilings[c["template"]] = min(ceilings.get(c["template"], c["max"]), c["max"])
    return Floors(
        policies=tuple(n for n, _ in chosen),
        min_required_stages=tuple(s["minRequiredStage"] for s in serving if s.get("minRequiredStage")),
        pinned_images_from=tuple(s["pinnedImagesFrom"] for s in serving if s.get("pinnedImagesFrom")),
        allowed_tolerations=tuple(
            tuple(s["allowedTolerations"]) for s in serving if s.get("allowedTolerations") is not None
        ),
        allowed_hosts=tuple(tuple(s["allowedHosts"]) for s in serving if s.get("allowedHosts") is not None),
        min_interval_seconds=max((_seconds(a.get("minInterval")) for a in analysis), default=0),
        trusted_sources=DEFAULT_TRUSTED_SOURCES if trusted is None else trusted,
        free_queries_refused=any(a.get("freeQueries") == "Refused" for a in analysis),
        promotion_ceilings=ceilings,
        approver_groups=tuple(
            frozenset(a["approverGroups"]) for a in approvals if a.get("approverGroups") is not None
        ),
        storage_roots=tuple(
            tuple(r.replace("{namespace}", namespace) for r in x["storageRoots"])
            for x in retention
            if x.get("storageRoots")
        ),
        trust=tuple((n, s["trust"]) for n, s in chosen if s.get("trust")),
        io_signature_required_by=tuple(
            n for n, s in chosen if (s.get("serving") or {}).get("requireIOSignature")
        ),
    )


_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str | None) -> int:
    if not text:
        return 0
    return int(text[:-1]) * _UNIT[text[-1]]


def effective_required_stage(requested: str, floors: Floors) -> str:
    """The endpoint's requiredStage raised to the policies' floor (a tenant may be stricter only)."""
    ranked = [s for s in (requested, *floors.min_required_stages) if s in _SERVING_RANK]
    return max(ranked, key=_SERVING_RANK.__getitem__, default=requested)


def endpoint_violations(
    floors: Floors, hosts: Iterable[str], tolerations: Iterable[Mapping[str, Any]]
) -> list[str]:
    """What an endpoint's spec claims beyond the policies (hosts, tolerations); empty: nothing."""
    out = [
        f"host {h!r} is not allowed by policy {_names(floors)}" for h in hosts if not floors.host_allowed(h)
    ]
    for t in tolerations:
        if not floors.toleration_allowed(t):
            shown = ",".join(f"{k}={v}" for k, v in sorted(t.items()) if v is not None)
            out.append(f"toleration {shown} is not allowed by policy {_names(floors)}")
    return out


def analysis_violations(
    floors: Floors, interval_seconds: float | None, metrics: Iterable[Mapping[str, Any]]
) -> list[str]:
    """What an endpoint's analysis (wire form) asks beyond the policies: an interval below the
    policy's minimum, a free PromQL query where the policy refuses them; empty: nothing."""
    out = []
    if interval_seconds is not None and interval_seconds < floors.min_interval_seconds:
        out.append(
            f"analysis interval {interval_seconds:g}s is below the minimum {floors.min_interval_seconds}s of "
            f"policy {_names(floors)}"
        )
    if floors.free_queries_refused:
        free = [str(m.get("name", "?")) for m in metrics if m.get("query") is not None]
        if free:
            out.append(
                f"metrics {', '.join(free)} are free queries, refused by policy {_names(floors)}: use the "
                "built-in templates (error-rate, latency)"
            )
    return out


def promotion_untrusted(floors: Floors, metrics: Iterable[Mapping[str, Any]]) -> str | None:
    """Why these analysis metrics (wire form) cannot earn a promotion here (None: they can). Each must be
    a built-in template (never a free query the endpoint's author wrote), read from a trusted source
    (the canary's own runtime only when a policy trusts it), with a threshold no looser than the
    policies' ceiling for its template."""
    metrics = list(metrics)
    if not metrics:
        return "no metric was measured"
    for m in metrics:
        name = m.get("name", "?")
        if m.get("query") is not None or m.get("template") is None:
            return f"metric {name} is a free query: only built-in templates earn a promotion"
        source = m.get("source") or "modelServer"
        if source not in floors.trusted_sources:
            trusted = ", ".join(sorted(floors.trusted_sources)) or "none"
            return f"metric {name} reads {source}, not a trusted source ({trusted})"
        ceiling = floors.promotion_ceilings.get(m["template"])
        if ceiling is not None and (m.get("max") is None or m["max"] > ceiling):
            tpl = m["template"]
            return f"metric {name}'s max {m.get('max')} is looser than the policy's {ceiling} for {tpl}"
    return None


def _names(floors: Floors) -> str:
    return ", ".join(floors.policies) or "(none)"


_SERVING_RANK = {"candidate": 0, "staging": 1, "production": 2}
