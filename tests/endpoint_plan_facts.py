"""The facts of tests/test_endpoint_plan.py's table tests: a ModelEndpoint's variants, versions and
slots as a reconcile would gather them (domain.endpoint_plan), and the version edit under traffic
that most rows start from."""

from __future__ import annotations

from dataclasses import replace

from modelversioning.domain import endpoint_plan as P
from modelversioning.domain import endpoint_status as S

OLD, NEW = "a" * 64, "b" * 64


def mv(version: str = "2.3.8", *, digest: str = OLD, uid: str = "uid-1", verified: bool = True,
       stage: str | None = "production", reason: str = "Verified") -> P.VersionFacts:  # fmt: skip
    return P.VersionFacts(f"m-v{version}", uid, version, digest, verified, reason, stage)


def slot(name: str, available: bool = True, replicas: int = 1) -> P.SlotFacts:
    """A slot whose Deployment and Service both carry the endpoint's controller reference."""
    why = "Deployment is available" if available else "0/1 replicas available"
    return P.SlotFacts(name, True, available, replicas if available else 0, replicas, why, ours=True)


def pin(version: str = "2.3.8", slot_: str = "ep-stable-old", digest: str = OLD, uid: str = "uid-1") -> P.Pin:
    return P.Pin(version, uid, digest, slot_)


def variant(name: str = "stable", version: str = "2.3.8", weight: int = 100, **kw: object) -> P.VariantFacts:
    base = P.VariantFacts(name, version, weight, 1, False, mv(version))
    return replace(base, **kw)  # type: ignore[arg-type]


def facts(*variants: P.VariantFacts, **kw: object) -> P.EndpointFacts:
    base = P.EndpointFacts(
        required_stage="production",
        variants=tuple(variants),
        previous_weights={},
        allow_major_mix=False,
        router="gatewayAPI",
        router_problem=None,
        owned_slots=frozenset(),
        routed={},
        routes_known=True,
        draining={},
        now=1000.0,
        drain_seconds=10.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def report(f: P.EndpointFacts, plan: P.Plan, out: P.Outcome | None = None) -> S.Report:
    return S.report(f, plan, out or P.Outcome(route_message="routed"), {})


def cond(rep: S.Report, type_: str) -> tuple[str, str]:
    c = next(c for c in rep.conditions if c.type == type_)
    return c.status, c.reason


# ------------------------------------------------------------------------- a version edit under traffic

# The endpoint served 2.3.8 from slot ep-stable-old at 100 %; the user edits the only variant to 2.4.1.
EDITED = variant(
    version="2.4.1",
    mv=mv("2.4.1", digest=NEW, uid="uid-2", verified=False, stage="candidate", reason="Verifying"),
    desired=P.SlotFacts("ep-stable-new"),
    pin=pin(),
    pinned=slot("ep-stable-old"),
    pinned_mv=mv("2.3.8"),
)
EDIT_FACTS = facts(
    EDITED,
    previous_weights={"stable": 100},
    owned_slots=frozenset({"ep-stable-old"}),
    routed={"ep-stable-old": 100},
)
