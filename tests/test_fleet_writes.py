"""What a new fleet costs in API writes (issue #25), played in process (tests/fleet_sim.py): the three
real reconcilers, an API that records every write, the watch and the Deployment controller. Every
watcher of the API server pays for each write, so the budget per new object is pinned here by cause;
and while the fleet converges, the promises hold at every single write:

- no version status says ArtifactVerified=True before the registry's record (its Model's
  status.versions) holds its number and digest;
- no route sends traffic to a version that is not verified and in production, nor to one that is not
  protected from deletion yet (the in-use finalizer, or with the in-use admission policy enforced, a
  status.servedBy record naming the endpoint).

The benchmark's order: 4 models with 5 versions each (stage production), then one endpoint per model
(stable 1.0.0 at 90, canary 1.1.0 at 10).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from admission_fixture import enforce
from fleet_sim import Fleet, Write, by_cause, endpoints_fleet, models_fleet
from modelversioning.api.wire import IN_USE_FINALIZER, IN_USE_POLICY
from modelversioning.domain.version_verify import QUIET_LIMIT, RECORD_GRACE

MODELS, PER_MODEL = 4, 5
VERSIONS = MODELS * PER_MODEL
CHILDREN = ("Deployment", "Service", "VirtualService")


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


class Promises:
    """Checks every write as it is made (the API's state right after it)."""

    def __init__(self, fleet: Fleet, admission: bool) -> None:
        self.fleet, self.admission = fleet, admission
        self.routes_checked = self.verified_checked = 0
        fleet.api.on_write.append(self.check)

    def check(self, w: Write, obj: dict[str, Any] | None) -> None:
        if obj is None:
            return
        if w.kind == "ModelVersion" and w.cause.endswith("/status"):
            self.verified_only_when_recorded(obj)
        if w.kind == "VirtualService":
            self.routes_only_to_verified_protected_versions(obj)

    def verified_only_when_recorded(self, mv: dict[str, Any]) -> None:
        if cond(mv, "ArtifactVerified").get("status") != "True":
            return
        spec = mv["spec"]
        model = self.fleet.api.get("Model", spec["model"])
        records = (model.get("status") or {}).get("versions") or []
        mine = {(r["version"], r["digest"]) for r in records}
        assert (spec["version"], spec["artifact"]["sha256"]) in mine, (
            f"{mv['metadata']['name']} verified early"
        )
        self.verified_checked += 1

    def routes_only_to_verified_protected_versions(self, vs: dict[str, Any]) -> None:
        endpoint = vs["metadata"]["name"]
        for route in vs["spec"]["http"][0]["route"]:
            if not route.get("weight"):
                continue
            hdrs = route["headers"]["response"]["set"]
            mv = self.fleet.api.get("ModelVersion", f"{hdrs['x-model-name']}-v{hdrs['x-model-version']}")
            st = mv.get("status") or {}
            assert cond(mv, "ArtifactVerified").get("status") == "True" and st.get("stage") == "production"
            if self.admission:
                assert endpoint in {s["endpoint"] for s in st.get("servedBy") or []}, "no servedBy record yet"
            else:
                assert IN_USE_FINALIZER in (mv["metadata"].get("finalizers") or []), "no finalizer yet"
            self.routes_checked += 1


def play(admission: bool = False) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], Fleet]:
    """The versions' writes, then the endpoints' (and what they caused on the versions). ``admission``:
    the chart's in-use policy bound and denying, as the operator's watch cache shows it."""
    fleet = Fleet()
    if admission:
        enforce(fleet.store, (IN_USE_POLICY,))
    promises = Promises(fleet, admission)
    fleet.create(*models_fleet(MODELS, PER_MODEL))
    fleet.settle()
    mark = fleet.mark()
    fleet.create(*endpoints_fleet(MODELS))
    fleet.settle()
    assert promises.verified_checked >= VERSIONS and promises.routes_checked == 2 * MODELS
    return by_cause(fleet.api.writes[:mark]), by_cause(fleet.writes_since(mark)), fleet


def per(counts: Counter[tuple[str, str]], n: int, kinds: tuple[str, ...]) -> dict[str, float]:
    return {cause: round(c / n, 2) for (kind, cause), c in sorted(counts.items()) if kind in kinds}


# ---- a new ModelVersion ---------------------------------------------------------------------------

VERSION_BEFORE = {  # issue #25 as found: 1.2 status writes and 2.4 Events per version
    "patch modelversions/status": 1.2,  # the first of a model: RecordPending, then Verified
    "Event ArtifactVerified": 1.0,
    "Event StageChanged": 1.0,
    "Event StageTransitionBlocked": 0.2,  # the first of a model: a Warning while it waits for the record
    "Event ModelCreated": 0.2,
}
VERSION_WRITES = {  # Events only for transitions a person acts on: the walk's StageChanged
    "patch modelversions/status": 1.0,  # once: verified, recorded and walked to production
    "Event StageChanged": 1.0,  # it also says that the artifact was verified
}
REGISTRY_WRITES = {"create models": 0.2, "patch models/status": 0.4}  # the Model's record (registry)


@pytest.mark.parametrize("admission", [False, True], ids=["finalizer", "admission"])
def test_a_new_version_costs_its_status_and_its_stage_event(admission: bool) -> None:
    versions, _, fleet = play(admission)
    assert per(versions, VERSIONS, ("ModelVersion",)) == VERSION_WRITES
    assert sum(VERSION_WRITES.values()) <= 2 < sum(VERSION_BEFORE.values())  # issue #25's budget: 2
    assert per(versions, VERSIONS, ("Model",)) == REGISTRY_WRITES
    assert sum(versions.values()) == sum(
        c for (k, _), c in versions.items() if k in ("ModelVersion", "Model")
    )
    assert all(cond(b, "Ready").get("status") == "True" for (k, _, _), b in fleet.api.objects.items()
               if k == "ModelVersion")  # fmt: skip


@pytest.mark.parametrize(
    ("late_by", "status_writes"),
    [
        # the cluster's order under load: the Model's reconcile queued behind thousands of others
        pytest.param(RECORD_GRACE + 1, 1.0, id="model-late-by-6s:-one-status-write"),
        # the bound: a version goes at most QUIET_LIMIT without status, then says it waits (RecordPending)
        pytest.param(QUIET_LIMIT + 1, 2.0, id="model-late-past-the-quiet-limit:-pending-first"),
    ],
)
def test_a_model_reconciled_late_still_costs_one_status_write_per_version(
    monkeypatch: pytest.MonkeyPatch, late_by: float, status_writes: float
) -> None:
    """Issue #25 on a cluster: a version verified before its Model has recorded it waits quietly while
    its Model (which exists: its reconcile is queued) catches up, instead of RecordPending first."""
    import time as _time  # the clock the verifier's bookkeeping reads

    real, offset = _time.monotonic, [0.0]
    monkeypatch.setattr(_time, "monotonic", lambda: real() + offset[0])
    fleet = Fleet(late=lambda: offset.__setitem__(0, late_by))
    promises = Promises(fleet, admission=False)
    fleet.create(*models_fleet(MODELS, PER_MODEL))
    fleet.settle()
    assert offset[0] == late_by  # the Models did run last
    got = per(by_cause(fleet.api.writes), VERSIONS, ("ModelVersion",))
    assert got == {**VERSION_WRITES, "patch modelversions/status": status_writes}
    assert promises.verified_checked >= VERSIONS  # and none said verified before the record


# ---- a new ModelEndpoint --------------------------------------------------------------------------

ENDPOINT_BEFORE = {  # on the endpoint, and on the two versions it serves
    "patch modelendpoints (finalizers)": 1.0,  # the drain finalizer (route first on deletion)
    "patch modelendpoints/status": 3.0,  # progress, its message again, Ready
    "Event TrafficShifted": 1.0,  # the first route: none -> 90/10
    "patch modelversions (finalizers)": 2.0,  # in-use
    "patch modelversions/status": 4.0,  # servedBy at weight 0, then at its weight
}


# issue #25 asked for 4 per new endpoint beyond its children: 9 and 7 now (11 before). Left: the drain
# finalizer, and per variant the servedBy record before traffic and its weight once it takes traffic.
ENDPOINT_FINALIZER = {
    "patch modelendpoints (finalizers)": 1.0,
    "patch modelendpoints/status": 2.0,  # progress (observedGeneration), then Ready
    "patch modelversions (finalizers)": 2.0,
    "patch modelversions/status": 4.0,
}


ENDPOINT_ADMISSION = {  # the in-use admission policy enforced: status.servedBy is the protection
    "patch modelendpoints (finalizers)": 1.0,
    "patch modelendpoints/status": 2.0,
    "patch modelversions/status": 4.0,
}


@pytest.mark.parametrize(
    ("admission", "want"),
    [
        pytest.param(False, ENDPOINT_FINALIZER, id="finalizer"),
        pytest.param(True, ENDPOINT_ADMISSION, id="admission"),
    ],
)
def test_a_new_endpoint_costs(admission: bool, want: dict[str, float]) -> None:
    _, endpoints, _ = play(admission)
    assert per(endpoints, MODELS, ("ModelEndpoint", "ModelVersion")) == want
    assert per(endpoints, MODELS, CHILDREN) == {
        "create deployments": 2.0,
        "create services": 2.0,
        "create virtualservices": 1.0,
    }
    assert not per(endpoints, MODELS, ("Model",))  # the record holds: nothing new to write
