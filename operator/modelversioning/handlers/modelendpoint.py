"""ModelEndpoint reconciler: one Deployment + Service per variant, weighted routes that
only move traffic to verified, promoted, available versions, and per-variant status.

Order within one cycle:
  1. children of every resolvable variant (Deployment, Service) are applied if they drifted;
  2. the effective split is computed (domain.traffic) and the route applied if it drifted;
  3. Deployments/Services of variants removed from the spec are deleted only once the
     route we observe (watch) no longer points at them;
  4. one status patch, Events on transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.api.common import validation_message
from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion import ModelVersionSpec, expected_name
from modelversioning.api.settings import Settings
from modelversioning.domain import conditions as cond
from modelversioning.domain.conditions import FALSE, TRUE, Cond
from modelversioning.domain.stages import Stage, has_reached, one_below
from modelversioning.domain.traffic import VariantInput, effective_split, validate_declared
from modelversioning.handlers.drift import diff, status_changed
from modelversioning.handlers.instrument import instrumented
from modelversioning.handlers.kube import BY_KIND, DEPLOYMENT, MODELENDPOINT, SERVICE, Kube
from modelversioning.handlers.store import Store
from modelversioning.render import (
    EndpointRef,
    RouteInput,
    VariantTarget,
    child_name,
    render_deployment,
    render_service,
)
from modelversioning.render.routers import UnknownRouter, get_router, router_names

log = logging.getLogger(__name__)

KIND = "ModelEndpoint"
ENDPOINT_LABEL = "modelversioning.io/endpoint"
VARIANT_LABEL = "modelversioning.io/variant"


@dataclass
class _VariantState:
    variant: Variant
    mv_name: str
    mv: ModelVersionSpec | None
    mv_status: dict[str, Any]
    eligible: bool
    reason: str
    message: str
    ready_replicas: int = 0
    verified: bool = False
    stage: str | None = None


def deployment_rolled_out(
    dep: dict[str, Any] | None, want_sha: str, want_replicas: int
) -> tuple[bool, int, str]:
    """(available, ready replicas, why not) for a Deployment observed through the watch."""
    if dep is None:
        return False, 0, "Deployment not created yet"
    st = dep.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    tmpl = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (tmpl.get("annotations") or {}).get("modelversioning.io/artifact-sha256") != want_sha:
        return False, ready, "Deployment is being updated to this version"
    if int(st.get("observedGeneration") or 0) < int(dep["metadata"].get("generation") or 0):
        return False, ready, "Deployment update not yet observed"
    if want_replicas == 0:
        return False, 0, "variant has 0 replicas"
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    if updated < want_replicas or available < want_replicas or ready < want_replicas:
        return False, ready, f"{available}/{want_replicas} replicas available"
    if not cond.is_true(st.get("conditions"), "Available"):
        return False, ready, "Deployment is not Available"
    return True, ready, "Deployment is available"


class ModelEndpointReconciler:
    def __init__(
        self, kube: Kube, store: Store, settings: Settings, enqueue_versions: Callable[[str, str], None]
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.enqueue_versions = enqueue_versions  # (namespace, model)

    def reconcile(self, namespace: str, name: str) -> None:
        instrumented(KIND, self._reconcile, namespace, name)

    # ----------------------------------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> None:
        body = self.store.get(KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.forget_endpoint(namespace, name)
            return  # children are garbage-collected through their owner references
        md = body["metadata"]
        gen = int(md.get("generation") or 0)
        status: dict[str, Any] = dict(body.get("status") or {})
        events: list[tuple[str, str, str]] = []
        try:
            spec = ModelEndpointSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            msg = validation_message(e)
            self._finish(
                body,
                status,
                {**status},
                [Cond("Ready", FALSE, "InvalidSpec", msg)],
                [] if _seen(status, "Ready", "InvalidSpec", msg) else [("Warning", "InvalidSpec", msg)],
                gen,
            )
            return
        ref = EndpointRef(name=name, namespace=namespace, uid=md.get("uid", ""))
        mirror_name = spec.mirror.variant if spec.mirror else None
        required = Stage(spec.required_stage)

        # 1. variants and their children ------------------------------------------------------
        states: list[_VariantState] = []
        for v in spec.variants:
            st = self._variant(ref, spec, v, required, mirror_name == v.name)
            states.append(st)

        # 2. traffic ----------------------------------------------------------------------------
        previous = {k: int(w) for k, w in (status.get("effectiveWeights") or {}).items()}
        declared = validate_declared(
            [(v.name, v.version, v.weight) for v in spec.variants], mirror_name, spec.allow_major_version_mix
        )
        live = [s for s in states if s.variant.name != mirror_name]
        split = effective_split(
            [VariantInput(s.variant.name, s.variant.version, s.variant.weight, s.eligible) for s in live],
            previous,
        )
        weights = split.weights
        conds: list[Cond] = []
        route_ok = True
        route_msg = ""
        if declared:
            msg = "; ".join(declared)
            reason = "MajorVersionMix" if "MAJOR" in msg else "InvalidSplit"
            conds.append(Cond("Degraded", TRUE, reason, msg + "; existing routes are left unchanged"))
            weights = previous
            route_ok = False
            route_msg = msg
        router_name = spec.routing.router
        if route_ok:
            try:
                router = get_router(router_name)
                if router_name not in self.settings.serving.enabled_routers:
                    raise UnknownRouter(router_name, self.settings.serving.enabled_routers)
            except UnknownRouter as e:
                disabled = router_name in router_names()
                route_msg = (
                    f"router {router_name!r} is not enabled in this operator (enabled: "
                    f"{', '.join(self.settings.serving.enabled_routers)})"
                    if disabled
                    else str(e)
                )
                route_ok = False
                weights = previous
                conds.append(
                    Cond(
                        "Degraded",
                        TRUE,
                        "RouterDisabled" if disabled else "UnknownRouter",
                        f"{route_msg}; existing routes are left unchanged",
                    )
                )
            else:
                mirror_target = None
                mirror_state = next((s for s in states if s.variant.name == mirror_name), None)
                if mirror_state is not None and mirror_state.eligible and mirror_state.mv is not None:
                    mirror_target = self._target(ref, spec, mirror_state.variant.name, mirror_state.mv, 0)
                if not weights:
                    route_msg = "no variant is ready yet; no route written"
                else:
                    dests = self._destinations(ref, spec, weights, states, status)
                    inp = RouteInput(
                        endpoint=ref,
                        spec=spec,
                        destinations=dests,
                        mirror=mirror_target,
                        mirror_percent=spec.mirror.percent if spec.mirror else 0,
                    )
                    desired = router.render(inp)
                    if desired is not None and self._apply_if_drifted(desired):
                        metrics.ROUTE_UPDATES.labels(namespace, name, router_name).inc()
                    route_msg = router.describe()
                self._delete_other_routes(namespace, name, keep_kind=router.kind or None)

        # 3. garbage: variants gone from the spec -------------------------------------------------
        routed_now = set(weights) if route_ok else set(previous)
        if mirror_name:
            routed_now.add(mirror_name)
        self._collect_removed(namespace, name, spec, routed_now, router_name if route_ok else None)

        # 4. status -------------------------------------------------------------------------------
        variants_status = []
        for s in states:
            entry: dict[str, Any] = {
                "name": s.variant.name,
                "version": s.variant.version,
                "modelVersion": s.mv_name,
                "desiredWeight": s.variant.weight,
                "effectiveWeight": int(weights.get(s.variant.name, 0))
                if s.variant.name != mirror_name
                else 0,
                "replicas": s.variant.replicas,
                "readyReplicas": s.ready_replicas,
                "artifactVerified": s.verified,
                "eligible": s.eligible,
                "reason": s.reason,
                "message": s.message,
            }
            if s.stage:
                entry["stage"] = s.stage
            if s.mv is not None:
                entry["digest"] = s.mv.artifact.sha256
            if s.variant.name == mirror_name:
                entry["mirror"] = True
            variants_status.append(entry)
        spec_names = {v.name for v in spec.variants}
        for vs in status.get("variants") or []:  # removed variants still carrying traffic
            if vs.get("name") not in spec_names and weights.get(vs.get("name"), 0) > 0:
                variants_status.append(
                    {
                        **vs,
                        "desiredWeight": 0,
                        "effectiveWeight": weights[vs["name"]],
                        "reason": "Removed",
                        "message": "removed from spec; draining",
                    }
                )

        all_eligible = all(
            s.eligible for s in states if s.variant.weight > 0 or s.variant.name == mirror_name
        )
        as_declared = (
            all(weights.get(s.variant.name, 0) == s.variant.weight for s in live)
            and set(k for k, w in weights.items() if w > 0) <= spec_names
        )
        if route_ok:
            if router_name == "none":
                conds.append(
                    Cond(
                        "RoutesReady",
                        TRUE,
                        "NoRouter",
                        "router none: traffic is not split; each variant is reachable on its own Service",
                    )
                )
            elif weights:
                conds.append(Cond("RoutesReady", TRUE, "RouteApplied", route_msg))
            else:
                conds.append(Cond("RoutesReady", FALSE, "NoEligibleVariant", split.message))
        else:
            conds.append(Cond("RoutesReady", FALSE, "RouteNotApplied", route_msg))
        if as_declared and all_eligible:
            conds.append(
                Cond("Progressing", FALSE, "Converged", "effective weights match the declared weights")
            )
        else:
            waiting = [
                f"{s.variant.name}: {s.message}"
                for s in states
                if not s.eligible and (s.variant.weight > 0 or s.variant.name == mirror_name)
            ]
            conds.append(
                Cond(
                    "Progressing",
                    TRUE,
                    split.reason if not declared else "Blocked",
                    "; ".join(waiting) or split.message,
                )
            )
        if not declared and route_ok:
            missing = [
                s for s in states if s.reason in ("MissingVersion", "InvalidVersion", "DigestMismatch")
            ]
            if missing:
                conds.append(
                    Cond(
                        "Degraded",
                        TRUE,
                        missing[0].reason,
                        "; ".join(f"{s.variant.name}: {s.message}" for s in missing),
                    )
                )
            elif weights and not split.held:
                conds.append(Cond("Degraded", FALSE, "AsExpected", "no problems detected"))
            else:
                conds.append(Cond("Degraded", TRUE, "NoEligibleVariant", split.message))
        degraded = next(c for c in conds if c.type == "Degraded")
        ready_ok = route_ok and as_declared and all_eligible and degraded.status == FALSE
        conds.insert(
            0,
            Cond(
                "Ready",
                TRUE if ready_ok else FALSE,
                "Ready" if ready_ok else (degraded.reason if degraded.status == TRUE else "Progressing"),
                _summary(weights, mirror_name, spec)
                if ready_ok
                else (
                    degraded.message
                    if degraded.status == TRUE
                    else next(c for c in conds if c.type == "Progressing").message
                ),
            ),
        )

        new_status = {
            **{k: v for k, v in status.items() if k not in ("conditions",)},
            "variants": variants_status,
            "effectiveWeights": {k: int(v) for k, v in weights.items()},
            "traffic": _summary(weights, mirror_name, spec),
            "router": router_name,
        }
        if previous != new_status["effectiveWeights"]:
            events.append(
                (
                    "Normal",
                    "TrafficShifted",
                    f"effective weights {_fmt(previous)} -> {_fmt(new_status['effectiveWeights'])}",
                )
            )
        for c in conds:
            prev = cond.get(status.get("conditions"), c.type)
            if (
                c.type in ("Degraded",)
                and c.status == TRUE
                and (prev is None or prev.get("reason") != c.reason or prev.get("status") != TRUE)
            ):
                events.append(("Warning", c.reason, c.message))
        for s in states:
            m = metrics.EFFECTIVE_WEIGHT.labels(
                namespace, name, spec.model, s.variant.name, s.variant.version
            )
            m.set(0 if s.variant.name == mirror_name else weights.get(s.variant.name, 0))
            metrics.DESIRED_WEIGHT.labels(namespace, name, spec.model, s.variant.name, s.variant.version).set(
                s.variant.weight
            )
        self._finish(body, status, new_status, conds, events, gen)
        if previous != new_status["effectiveWeights"] or _variant_set(status) != _variant_set(new_status):
            self.enqueue_versions(namespace, spec.model)

    # ----------------------------------------------------------------------------------------
    def _variant(
        self, ref: EndpointRef, spec: ModelEndpointSpec, v: Variant, required: Stage, is_mirror: bool
    ) -> _VariantState:
        mv_name = expected_name(spec.model, v.version)
        body = self.store.get("ModelVersion", ref.namespace, mv_name)
        if body is None:
            return _VariantState(
                v,
                mv_name,
                None,
                {},
                False,
                "MissingVersion",
                f"ModelVersion {mv_name} does not exist in namespace {ref.namespace}",
            )
        try:
            mv = ModelVersionSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            return _VariantState(
                v,
                mv_name,
                None,
                {},
                False,
                "InvalidVersion",
                f"ModelVersion {mv_name} is invalid: {e.error_count()} error(s)",
            )
        mv_status = body.get("status") or {}
        verified_cond = cond.get(mv_status.get("conditions"), "ArtifactVerified")
        art = mv_status.get("artifact") or {}
        verified = bool(
            verified_cond and verified_cond.get("status") == TRUE and art.get("digest") == mv.artifact.sha256
        )
        stage = mv_status.get("stage")
        # Children are applied for every resolvable variant: weight-0 variants stay warm.
        dep = render_deployment(ref, spec, v, mv, self.settings.serving)
        svc = render_service(ref, spec, v, mv)
        self._apply_if_drifted(dep)
        self._apply_if_drifted(svc)
        actual = self.store.get("Deployment", ref.namespace, dep["metadata"]["name"])
        available, ready, why = deployment_rolled_out(actual, mv.artifact.sha256, v.replicas)
        st = _VariantState(v, mv_name, mv, mv_status, False, "", "", ready, verified, stage)
        need = one_below(required) if is_mirror else required
        if not verified:
            reason = (verified_cond or {}).get("reason", "NotVerified")
            st.reason = "DigestMismatch" if reason == "DigestMismatch" else "ArtifactNotVerified"
            st.message = f"{mv_name}: ArtifactVerified is not True ({reason})"
        elif stage is None or not has_reached(Stage(stage), need):
            st.reason, st.message = "StageNotReached", f"{mv_name} is {stage or 'unknown'}; needs {need}"
        elif not available:
            st.reason, st.message = "DeploymentNotAvailable", why
        else:
            st.eligible, st.reason, st.message = True, "Eligible", f"{mv_name} verified, {stage}, available"
        return st

    def _target(
        self, ref: EndpointRef, spec: ModelEndpointSpec, variant: str, mv: ModelVersionSpec, weight: int
    ) -> VariantTarget:
        return VariantTarget(
            variant=variant,
            service=child_name(ref.name, variant),
            model=spec.model,
            version=mv.version,
            sha256=mv.artifact.sha256,
            weight=weight,
        )

    def _destinations(
        self,
        ref: EndpointRef,
        spec: ModelEndpointSpec,
        weights: dict[str, int],
        states: list[_VariantState],
        status: dict[str, Any],
    ) -> list[VariantTarget]:
        old = {vs.get("name"): vs for vs in status.get("variants") or []}
        out = []
        for s in states:
            if s.variant.name == (spec.mirror.variant if spec.mirror else None) or s.mv is None:
                continue
            out.append(self._target(ref, spec, s.variant.name, s.mv, int(weights.get(s.variant.name, 0))))
        included = {t.variant for t in out}
        for n, w in weights.items():
            # still carrying traffic but not resolvable now: removed from the spec, or its
            # ModelVersion is gone; keep routing to it with what the last status recorded
            if n in included or w <= 0:
                continue
            vs = old.get(n) or {}
            if not vs.get("version") and spec.variant(n) is not None:
                vs = {"version": spec.variant(n).version}  # type: ignore[union-attr]
            out.append(
                VariantTarget(
                    variant=n,
                    service=child_name(ref.name, n),
                    model=spec.model,
                    version=str(vs.get("version", "")),
                    sha256=str(vs.get("digest", "")),
                    weight=int(w),
                )
            )
        return out

    def _apply_if_drifted(self, desired: dict[str, Any]) -> bool:
        md = desired["metadata"]
        actual = self.store.get(desired["kind"], md["namespace"], md["name"])
        if actual is not None and not diff(desired, actual):
            return False
        if actual is not None:
            log.info(
                "%s %s/%s drifted (%s); applying",
                desired["kind"],
                md["namespace"],
                md["name"],
                ", ".join(diff(desired, actual)[:5]),
            )
        applied = self.kube.apply(desired)
        self.store.upsert(desired["kind"], applied)  # read-your-writes until the watch catches up
        return True

    def _owned(self, kind: str, namespace: str, endpoint: str) -> list[dict[str, Any]]:
        return self.store.owned(kind, namespace, endpoint)

    def _delete_other_routes(self, namespace: str, endpoint: str, keep_kind: str | None) -> None:
        for rname in router_names():
            if rname not in self.settings.serving.enabled_routers:
                continue  # not watched: nothing of that kind in the store
            kind = get_router(rname).kind
            if not kind or kind == keep_kind:
                continue
            for obj in self._owned(kind, namespace, endpoint):
                self.kube.delete(BY_KIND[kind], namespace, obj["metadata"]["name"])
                self.store.delete(kind, namespace, obj["metadata"]["name"])

    def _collect_removed(
        self,
        namespace: str,
        endpoint: str,
        spec: ModelEndpointSpec,
        routed_now: set[str],
        router_name: str | None,
    ) -> None:
        wanted = {v.name for v in spec.variants}
        still_routed = set(routed_now)
        if router_name and router_name != "none":
            router = get_router(router_name)
            for route in self._owned(router.kind, namespace, endpoint):
                still_routed |= {n for n, w in router.weights(route).items() if w > 0}
        for kind, res in (("Deployment", DEPLOYMENT), ("Service", SERVICE)):
            for obj in self._owned(kind, namespace, endpoint):
                variant = (obj["metadata"].get("labels") or {}).get(VARIANT_LABEL)
                if variant and variant not in wanted and variant not in still_routed:
                    log.info(
                        "deleting %s %s/%s of removed variant %s",
                        kind,
                        namespace,
                        obj["metadata"]["name"],
                        variant,
                    )
                    self.kube.delete(res, namespace, obj["metadata"]["name"])
                    self.store.delete(kind, namespace, obj["metadata"]["name"])

    def _finish(
        self,
        body: dict[str, Any],
        old: dict[str, Any],
        new: dict[str, Any],
        conds: list[Cond],
        events: list[tuple[str, str, str]],
        gen: int,
    ) -> None:
        md = body["metadata"]
        new = {
            **new,
            "observedGeneration": gen,
            "conditions": cond.merge_conditions(old.get("conditions"), conds, gen),
        }
        if status_changed(old, new):
            stored = self.kube.patch_status(MODELENDPOINT, md["namespace"], md["name"], new, old)
            # read-your-writes: related reconciles (servedBy, eligibility) see this status at once
            self.store.upsert(KIND, stored)
        for type_, reason, message in events:
            self.kube.event(body, type_, reason, message)


def _summary(weights: dict[str, int], mirror: str | None, spec: ModelEndpointSpec) -> str:
    parts = []
    for v in spec.variants:
        if v.name != mirror:
            parts.append(f"{v.name}@{v.version}={weights.get(v.name, 0)}")
    for n, w in weights.items():
        if spec.variant(n) is None and w > 0:
            parts.append(f"{n}={w}")
    if mirror and spec.mirror is not None:
        parts.append(
            f"mirror:{mirror}@{spec.variant(mirror).version}={spec.mirror.percent}%"  # type: ignore[union-attr]
        )
    return ",".join(parts)


def _seen(status: dict[str, Any], type_: str, reason: str, message: str) -> bool:
    prev = cond.get(status.get("conditions"), type_)
    return prev is not None and prev.get("reason") == reason and prev.get("message") == message


def _fmt(w: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(w.items())) or "none"


def _variant_set(status: dict[str, Any]) -> set[tuple[str, str]]:
    return {(str(v.get("name")), str(v.get("version"))) for v in status.get("variants") or []}


__all__ = ["ModelEndpointReconciler", "deployment_rolled_out"]
