"""The production record on the real data plane: two versions serve real traffic through Traefik from
real pods with different error rates (the reference model server's --error-rate), one after the
other; once their serving periods close the operator summarises them from the real Prometheus.

- each version's closed period holds a request count within 2 % of what the test received from that
  version (counted by the x-model-version header the route sets) and its error ratio;
- `kubectl models compare` shows both, side by side with their offline metrics (-o json and table);
- a Model gate `served.errorRatio <= 0.05 over 100 requests` on staging -> production lets the good
  version through and blocks the worse one (MetricGateFailed, with the numbers);
- a KPI that reads another namespace's series cannot be written (the API refuses the namespace label).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from dataplane_harness import DataPlane
from helpers import GROUP, VERSION, Objects, cond_is, condition, kubectl_models, wait_for
from test_dataplane import endpoint, register

pytestmark = pytest.mark.timeout(1800)
PREDICT = "/v1/predict"
RATES = {"1.0.0": 0.02, "1.1.0": 0.2}
PER_VERSION = 400  # requests sent to each version, 20 per second
GATE = "served.errorRatio <= 0.05 over 100 requests"


@pytest.fixture
def objs(kube, namespace, dp) -> Objects:  # type: ignore[no-untyped-def]
    return Objects(kube, namespace)


def cli(cluster: Any, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl_models(cluster.kubeconfig, ns, *args, timeout=120)


def send(dp: DataPlane, n: int, rate: float = 20.0) -> Counter[tuple[str, int]]:
    """n requests, one at a time at about `rate` per second: (x-model-version, status) of each."""
    got: Counter[tuple[str, int]] = Counter()
    start = time.monotonic()
    for i in range(n):
        r = dp.gw.request(PREDICT, host=dp.host, method="POST", body=b'{"inputs": [1, 2, 3]}')
        got[(r.headers.get("x-model-version", "-"), r.status)] += 1
        pause = start + (i + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return got


def settled_on(dp: DataPlane, version: str, seen: Counter[tuple[str, int]]) -> bool:
    """20 responses in a row from `version` (kept in `seen`: they count as sent)."""
    batch = send(dp, 20, rate=20)
    seen.update(batch)
    return all(v == version for v, _ in batch)


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "transitions": [
                {"from": "candidate", "to": "staging"},
                {"from": "staging", "to": "production", "metrics": [GATE]},
            ],
            "production": {
                "kpis": [
                    {
                        "name": "served",
                        "numerator": {
                            "metric": "modelserver_requests_total",
                            "labels": {"version": "{{version}}"},
                        },
                    }
                ]
            },
        },
    }


def closed_summaries(objs: Objects, version: str) -> list[dict[str, Any]]:
    periods = (objs.mv(f"prod-v{version}").get("status") or {}).get("servingHistory") or []
    return [p for p in periods if p.get("to")]


def final(objs: Objects, version: str) -> dict[str, Any] | None:
    closed = closed_summaries(objs, version)
    if closed and all((p.get("production") or {}).get("final") for p in closed):
        return closed[0]
    return None


def test_two_versions_records_compare_and_a_gate_on_production_error_ratio(  # type: ignore[no-untyped-def]
    dp, objs, cluster
):
    co = objs.co
    co.create_namespaced_custom_object(GROUP, VERSION, objs.ns, "models", model("prod"))
    hostile = model("other")
    hostile["spec"]["production"]["kpis"][0]["numerator"]["labels"] = {"namespace": "kube-system"}
    with pytest.raises(ApiException) as refused:
        co.create_namespaced_custom_object(GROUP, VERSION, objs.ns, "models", hostile)
    assert refused.value.status == 422 and "namespace" in str(refused.value.body)
    for v, rate in RATES.items():
        register(dp, objs, "prod", v, stage="staging", runtime={"args": ["--error-rate", str(rate)]})
    # blue alone first, green added at 0 % once blue serves: created together, whichever slot is ready
    # first takes the whole split for a moment (a real serving period of a second, with no traffic
    # through the gateway yet, whose summary stays incomplete: never zero) and this test compares
    # periods that carried the requests it sent
    objs.create(endpoint(dp, "prod", "prod", [{"name": "blue", "version": "1.0.0", "weight": 100}],
                         requiredStage="staging"))  # fmt: skip
    wait_for(lambda: cond_is(objs.mep("prod"), "Ready", "True"), 300, "Ready on real pods")
    variants = objs.mep("prod")["spec"]["variants"] + [{"name": "green", "version": "1.1.0", "weight": 0}]
    objs.patch_mep("prod", {"spec": {"variants": variants}})
    objs.slot("prod", "green", timeout=300)
    wait_for(lambda: cond_is(objs.mep("prod"), "Ready", "True"), 300, "green deployed at 0 %")
    # three phases; a response counts for the period of the version (and slot) that answered it
    phases: list[Counter[tuple[str, int]]] = [Counter(), Counter(), Counter()]
    wait_for(lambda: settled_on(dp, "1.0.0", phases[0]), 120, "1.0.0 answers through Traefik")
    phases[0].update(send(dp, PER_VERSION))
    objs.set_weights("prod", {"blue": 0, "green": 100})  # blue's first period closes
    wait_for(lambda: settled_on(dp, "1.1.0", phases[1]), 120, "all traffic on 1.1.0")
    phases[1].update(send(dp, PER_VERSION))
    # blue's first period is summarised up to `settle` (30 s) after it closed, from blue's slot: blue
    # takes traffic again only once that summary is final, so none of phase 3 can be counted in it
    blue = wait_for(lambda: final(objs, "1.0.0"), 240, "1.0.0's first period summarised")
    objs.set_weights("prod", {"blue": 100, "green": 0})  # green's period closes; blue's second opens
    wait_for(lambda: settled_on(dp, "1.0.0", phases[2]), 120, "back on 1.0.0")
    phases[0].pop(("-", 404), None)  # before Traefik had read the new route: the gateway's own 404
    for ph in phases:
        assert set(ph) <= {(v, c) for v in RATES for c in (200, 500)}, ph

    def count(version: str, *which: int, errors: bool = False) -> int:
        return sum(
            n
            for i in which
            for (v, code), n in phases[i].items()
            if v == version and (code >= 500 or not errors)
        )

    # blue's first period: phase 1 and what still reached it after the flip; green's: phase 2 and its tail
    # (1.0.0's answers of phase 3 are its second period, still open: not compared)
    want = {"1.0.0": (count("1.0.0", 0, 1), count("1.0.0", 0, 1, errors=True)),
            "1.1.0": (count("1.1.0", 1, 2), count("1.1.0", 1, 2, errors=True))}  # fmt: skip
    try:
        green = wait_for(lambda: final(objs, "1.1.0"), 240, "1.1.0's period summarised")
    except AssertionError as e:  # say what the record holds
        history = (objs.mv("prod-v1.1.0").get("status") or {}).get("servingHistory")
        raise AssertionError(f"{e}; 1.1.0's servingHistory: {json.dumps(history)}") from None
    print(f"received (requests, errors) {want}; records {blue['production']} / {green['production']}")
    for version, rec in (("1.0.0", blue), ("1.1.0", green)):
        p = rec["production"]
        sent, failed = want[version]
        assert p["source"] == "traefik" and p["final"] is True and "incomplete" not in p, p
        assert abs(p["requests"] - sent) <= 0.02 * sent, (version, p["requests"], sent)
        assert abs(p["errorRatio"] - failed / sent) <= 0.01, (version, p["errorRatio"], failed / sent)
        assert abs(p["errorRatio"] - RATES[version]) <= 0.02, (version, p["errorRatio"])
        assert p["latencyP50Seconds"] > 0 and p["latencyP99Seconds"] >= p["latencyP50Seconds"]
        (kpi,) = p["kpis"]
        assert kpi["name"] == "served" and kpi["value"] > 0  # the model server's own count, in our namespace
    # compare: side by side, offline and in production
    out = cli(cluster, objs.ns, "compare", "prod", "-o", "json")
    assert out.returncode == 0, out.stderr
    view = {r["version"]: r for r in json.loads(out.stdout)["versions"]}
    assert view["1.1.0"]["production"]["errorRatio"] > view["1.0.0"]["production"]["errorRatio"]
    assert view["1.0.0"]["metrics"] == {"auc": 0.9}
    table = cli(cluster, objs.ns, "compare", "prod")
    assert table.returncode == 0 and "ERRORS" in table.stdout and "1.1.0" in table.stdout, table.stdout
    print(table.stdout)
    # the gate: the good one reaches production, the worse one is blocked with the numbers
    for v in RATES:
        objs.patch_mv(f"prod-v{v}", {"spec": {"stage": "production"}})
    wait_for(
        lambda: (objs.mv("prod-v1.0.0").get("status") or {}).get("stage") == "production",
        120,
        "1.0.0 promoted",
    )

    def blocked() -> dict[str, Any] | None:
        c = condition(objs.mv("prod-v1.1.0"), "StageTransition")
        return c if c and c.get("reason") == "MetricGateFailed" else None

    c = wait_for(blocked, 120, "1.1.0 blocked by the served gate")
    assert "served.errorRatio" in c["message"] and "> 0.05" in c["message"], c
    assert (objs.mv("prod-v1.1.0").get("status") or {}).get("stage") == "staging"


@pytest.mark.parametrize(
    ("kpi", "why"),
    [
        ({"metric": "up", "labels": {"namespace": "kube-system"}}, "not namespace"),
        ({"metric": "up", "labels": {"__name__": "secret_total"}}, "label names"),
        ({"metric": 'up{namespace="kube-system"}'}, "spec.production.kpis[0].numerator.metric"),
        ({"metric": "sum(up) or up"}, "spec.production.kpis[0].numerator.metric"),
    ],
)
def test_the_api_server_refuses_a_kpi_that_could_leave_the_namespace(kube, namespace, kpi, why):  # type: ignore[no-untyped-def]
    """Control lane: the CRD's schema and CEL rules (generated from api/), on the real API server."""
    from kubernetes import client

    co = client.CustomObjectsApi(kube)
    body = model("hostile")
    body["spec"]["production"]["kpis"][0]["numerator"] = kpi
    with pytest.raises(ApiException) as refused:
        co.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", body)
    assert refused.value.status == 422 and why in str(refused.value.body), refused.value.body


def test_the_api_server_takes_production_gates_and_refuses_a_malformed_one(kube, namespace):  # type: ignore[no-untyped-def]
    from kubernetes import client

    co = client.CustomObjectsApi(kube)
    good = model("gated")
    good["spec"]["transitions"][1]["metrics"] = [
        GATE,
        "served.latencyP99Seconds < 0.5",
        "served.kpi.served >= 10 over 50 requests",
        "auc >= production.auc - 0.005",  # the existing syntax keeps working beside it
    ]
    co.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", good)
    for bad in ("served.errorate <= 0.01", "served.errorRatio <= production.errorRatio"):
        body = model(f"bad-{len(bad)}")
        body["spec"]["transitions"][1]["metrics"] = [bad]
        with pytest.raises(ApiException) as refused:
            co.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", body)
        body_text = str(refused.value.body)  # (the API server's JSON escapes < and >)
        assert refused.value.status == 422 and "spec.transitions[1].metrics" in body_text, bad
        assert "served.\\u003cfigure\\u003e" in body_text, body_text
