"""The time-to-first-answer benchmark's phase extraction (bench/ttfa_phases.py) and its plain baseline
(bench/ttfa_plain.py): recorded watch events, answers and runtime times -> milestones and phases."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import ttfa_phases as tp  # noqa: E402
from ttfa_plain import DOWNLOAD, INIT_NAME, VERSION_LABEL, plain_objects  # noqa: E402

T0 = 1_800_000_000.0  # the apply, in wall-clock seconds
SEL = {"modelversioning.io/version": "1.2.0"}


def ts(offset: float) -> str:
    """T0 + offset as the API writes it (whole seconds, Z)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(t: float, obj: dict[str, Any], type_: str = "MODIFIED") -> dict[str, Any]:
    return {"t": T0 + t, "type": type_, "object": obj}


def pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    node: str | None = None,
    init: dict[str, Any] | None = None,
    main: dict[str, Any] | None = None,
    ready: bool = False,
    deleting: bool = False,
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "labels": dict(SEL if labels is None else labels)}
    if deleting:
        md["deletionTimestamp"] = ts(0)
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if init is not None:
        status["initContainerStatuses"] = [init]
    if main is not None:
        status["containerStatuses"] = [main]
    return {"metadata": md, "spec": {"nodeName": node}, "status": status}


def running(cid: str, started: float) -> dict[str, Any]:
    return {"containerID": f"containerd://{cid}", "state": {"running": {"startedAt": ts(started)}}}


def done(cid: str, started: float, finished: float) -> dict[str, Any]:
    term = {"startedAt": ts(started), "finishedAt": ts(finished), "exitCode": 0}
    return {"containerID": f"containerd://{cid}", "state": {"terminated": term}}


def mv(version: str, verified: bool, stage: str | None, reason: str = "Verifying") -> dict[str, Any]:
    cond = {"type": "ArtifactVerified", "status": "True" if verified else "Unknown", "reason": reason}
    status: dict[str, Any] = {"conditions": [cond]}
    if stage:
        status["stage"] = stage
    return {"metadata": {"name": f"ttfa-v{version}"}, "spec": {"version": version}, "status": status}


def route(weights: dict[str, int]) -> dict[str, Any]:
    refs = [
        {
            "name": f"slot-{v}",
            "weight": w,
            "filters": [
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"set": [{"name": "x-model-version", "value": v}]},
                }
            ],
        }
        for v, w in weights.items()
    ]
    return {"metadata": {"name": "ttfa"}, "spec": {"rules": [{"backendRefs": refs}]}}


def sample(
    t: float, status: int, header: str | None, body: str | None = None, host: str = "p"
) -> dict[str, Any]:
    return {"t": T0 + t, "status": status, "version": header, "body_version": body, "hostname": host}


P = "ttfa-main-abc-1"
OURS_PODS = [
    ev(
        -30.0,
        pod("ttfa-main-old-1", labels={"modelversioning.io/version": "1.1.0"}, node="n", ready=True),
        "ADDED",
    ),
    ev(0.40, pod(P), "ADDED"),
    ev(0.45, pod(P, node="n")),
    ev(1.30, pod(P, node="n", init=running("i1", 1))),
    ev(4.20, pod(P, node="n", init=done("i1", 1, 4), main=running("m1", 4))),
    ev(6.10, pod(P, node="n", init=done("i1", 1, 4), main=running("m1", 4), ready=True)),
]
OURS = {
    "t0": T0,
    "version": "1.2.0",
    "selector": SEL,
    "stage": "production",
    "bytes": 256 << 20,
    "pods": OURS_PODS,
    # runtime times of the containers (nanoseconds): they replace the API's whole seconds
    "runtime": {
        "i1": {"startedAt": "2027-01-15T08:00:01.250000000Z", "finishedAt": "2027-01-15T08:00:03.250000000Z"},
        "m1": {"startedAt": "2027-01-15T08:00:03.500000000Z"},
    },
    # the model server's log, timestamped by the runtime: it serves from its "loaded" line on
    "logs": {
        P: [
            "2027-01-15T08:00:03.900000000Z 2027-01-15 08:00:03,899 INFO modelversioning.modelserver: "
            "model-server ttfa 1.2.0 (variant main) on 0.0.0.0:8080",
            "2027-01-15T08:00:04.700000000Z 2027-01-15 08:00:04,699 INFO modelversioning.modelserver: "
            "loaded ttfa 1.2.0 from /models: 1 file(s), 268435456 bytes, sha256 ab",
        ]
    },
    "mvs": [
        ev(0.01, mv("1.2.0", False, None), "ADDED"),
        ev(1.80, mv("1.2.0", False, None, "RecordPending")),  # hashed: the registry's record next
        ev(2.00, mv("1.1.0", True, "production")),  # another version's status
        ev(2.50, mv("1.2.0", True, "staging")),  # verified, not at the required stage
        ev(3.00, mv("1.2.0", True, "production")),
    ],
    "routes": [
        ev(0.50, route({"1.1.0": 100, "1.2.0": 0})),  # the new slot's backend at weight 0
        ev(6.30, route({"1.1.0": 0, "1.2.0": 100})),
    ],
    "samples": [
        sample(-0.1, 200, "1.1.0"),
        sample(0.2, 200, "1.1.0"),
        sample(6.35, 503, None),
        sample(6.40, 200, "1.1.0"),
        sample(6.52, 200, "1.2.0"),
    ],
}
assert tp.epoch("2027-01-15T08:00:00Z") == T0  # the runtime times above are T0-based


def test_epoch_reads_the_api_and_the_runtime_formats() -> None:
    assert tp.epoch("2027-01-15T08:00:00Z") == T0
    assert tp.epoch("2027-01-15T09:00:00+01:00") == T0
    assert tp.epoch("2027-01-15T08:00:01.123456789Z") == pytest.approx(T0 + 1.123456)
    assert tp.epoch("2027-01-15T08:00:01.5+00:00") == T0 + 1.5
    assert tp.epoch("") is None and tp.epoch(None) is None


@pytest.mark.parametrize(
    ("weights", "serves"),
    [
        ({"1.2.0": 100}, True),
        ({"1.1.0": 100, "1.2.0": 0}, False),
        ({"1.1.0": 100}, False),
        ({"1.2.0": 1}, True),
    ],
)
def test_a_route_serves_a_version_only_with_a_share(weights: dict[str, int], serves: bool) -> None:
    assert tp.route_serves(route(weights), "1.2.0") is serves


def test_a_backend_without_weight_has_the_default_share() -> None:
    r = route({"1.2.0": 5})
    del r["spec"]["rules"][0]["backendRefs"][0]["weight"]
    assert tp.route_serves(r, "1.2.0")


@pytest.mark.parametrize(
    ("s", "who"),
    [
        (sample(0, 200, "1.2.0", "1.2.0"), "1.2.0"),
        (sample(0, 200, None, "1.2.0"), "1.2.0"),  # the plain side's route sets no header
        (sample(0, 503, "1.2.0", None), None),
        (sample(0, -1, None, None), None),
    ],
)
def test_who_answered(s: dict[str, Any], who: str | None) -> None:
    assert tp.answered_by(s) == who


def test_ours_milestones_from_the_recorded_events() -> None:
    ms = tp.milestones(OURS)
    rel = {k: (round(v - T0, 3) if v is not None else None) for k, v in ms.items()}
    assert rel == {
        "apply": 0.0,
        "hashed": 1.8,
        "verified": 3.0,  # at the required stage: not the staging status at 2.5, not 1.1.0's
        "pod_created": 0.4,  # the new version's pod, not the old one
        "scheduled": 0.45,
        "init_started": 1.25,  # the runtime's nanoseconds, not the API's whole seconds
        "init_finished": 3.25,
        "server_started": 3.5,
        "loaded": 4.7,
        "ready": 6.1,
        "route_written": 6.3,  # the new backend with a share, not at weight 0
        "first_answer": 6.52,  # answered by 1.2.0, not the 503 nor 1.1.0 after the route
    }


def test_ours_phases_and_init_throughput() -> None:
    out = tp.summarize(OURS)
    assert out["phases_s"] == {
        "verify": 3.0,
        "hash": 1.8,
        "record": 1.2,
        "create": 0.4,
        "schedule": 0.05,
        "sandbox": 0.8,
        "init": 2.0,
        "server": 0.25,
        "ready": 2.6,
        "load": 1.2,
        "probe": 1.4,  # loaded -> Ready: the readiness probe's period
        "route": 0.2,  # from the later of ready (6.1) and verified (3.0)
        "answer": 0.22,  # from the later of ready and the route
        "total": 6.52,
    }
    assert out["init_mib_s"] == 128.0  # 256 MiB in 2 s
    assert out["without_probe_s"] == 5.12
    assert out["verification_on_critical_path"] is False


def test_verification_after_ready_is_on_the_critical_path_and_starts_the_route_phase() -> None:
    rec = {
        **OURS,
        "mvs": [ev(7.0, mv("1.2.0", True, "production"))],
        "routes": [ev(7.1, route({"1.2.0": 100}))],
        "samples": [sample(7.3, 200, "1.2.0")],
    }
    out = tp.summarize(rec)
    assert out["verification_on_critical_path"] is True
    assert out["phases_s"]["route"] == 0.1  # from verified (7.0), not from ready (6.1)
    assert out["phases_s"]["answer"] == 0.2


def test_without_runtime_times_the_apis_seconds_are_used() -> None:
    ms = tp.milestones({**OURS, "runtime": {}})
    assert (ms["init_started"], ms["init_finished"], ms["server_started"]) == (T0 + 1, T0 + 4, T0 + 4)


def test_the_plain_side_has_no_verification_and_no_route() -> None:
    sel = {VERSION_LABEL: "1.2.0"}
    pods = [
        ev(0.30, pod("plain-1", labels=sel), "ADDED"),
        ev(0.32, pod("plain-1", labels=sel, node="n")),
        ev(3.40, pod("plain-1", labels=sel, node="n", init=done("a", 1, 3), main=running("b", 3))),
        ev(
            5.00, pod("plain-1", labels=sel, node="n", init=done("a", 1, 3), main=running("b", 3), ready=True)
        ),
    ]
    rec = {
        "t0": T0,
        "version": "1.2.0",
        "selector": sel,
        "bytes": 256 << 20,
        "pods": pods,
        "samples": [sample(5.1, 200, None, "1.1.0"), sample(5.2, 200, None, "1.2.0")],
    }
    out = tp.summarize(rec)
    ph = out["phases_s"]
    assert ph["verify"] is None and ph["route"] is None
    assert ph["answer"] == 0.2 and ph["total"] == 5.2  # from ready: nothing else to wait for
    assert out["init_mib_s"] == 128.0
    assert "verification_on_critical_path" not in out


def test_without_the_servers_log_there_is_no_load_nor_probe_phase() -> None:
    out = tp.summarize({**OURS, "logs": {P: ["2027-01-15T08:00:03.900000000Z ... on 0.0.0.0:8080"]}})
    assert out["phases_s"]["load"] is None and out["phases_s"]["probe"] is None
    assert out["phases_s"]["ready"] == 2.6 and out["without_probe_s"] is None


def test_no_answer_yet_leaves_the_total_open() -> None:
    ph = tp.summarize({**OURS, "samples": [sample(7.0, 200, "1.1.0")]})["phases_s"]
    assert ph["total"] is None and ph["answer"] is None and ph["ready"] == 2.6


@pytest.mark.parametrize(("ours", "plain", "want"), [(12.0, 10.0, 1.2), (5.0, None, None), (None, 4.0, None)])
def test_ratio(ours: float | None, plain: float | None, want: float | None) -> None:
    assert tp.ratio(ours, plain) == want


def scaled_pods() -> list[dict[str, Any]]:
    sel = {VERSION_LABEL: "1.2.0"}
    base = dict(labels=sel, node="n")
    evs = [ev(-50.0, pod("p0", **base, ready=True), "ADDED")]  # serving before the scale-up
    evs += [ev(0.3, pod(n, labels=sel), "ADDED") for n in ("p1", "p2")]
    evs += [
        ev(1.0 + i, pod(n, **base, init=done(f"i{n}", 1, 3 + i), main=running(f"m{n}", 3 + i)))
        for i, n in enumerate(("p1", "p2"))
    ]
    evs += [ev(4.0, pod("p1", **base, ready=True))]
    evs += [ev(4.5, pod("p0", **base, ready=True, deleting=True))]  # a Ready pod that is leaving
    evs += [ev(5.0, pod("p2", **base, ready=True))]
    evs += [ev(5.5, pod("p0", **base, ready=False))]  # back (not deleting): not Ready for a moment
    evs += [ev(6.0, pod("p0", **base, ready=True))]
    return evs


def test_scale_up_counts_ready_pods_and_the_distinct_pods_answering() -> None:
    samples = [
        sample(-1, 200, None, "1.2.0", "p0"),
        sample(4.1, 200, None, "1.2.0", "p1"),
        sample(4.2, 200, None, "1.2.0", "p1"),
        sample(5.9, 503, None, None, "p2"),
        sample(6.1, 200, None, "1.2.0", "p0"),
        sample(6.2, 200, None, "1.2.0", "p2"),
    ]
    rec = {
        "t0": T0,
        "version": "1.2.0",
        "selector": {VERSION_LABEL: "1.2.0"},
        "bytes": 64 << 20,
        "pods": scaled_pods(),
        "samples": samples,
    }
    out = tp.scale_up(rec, 3)
    assert out["new_pods"] == 2
    assert out["all_ready_s"] == 6.0  # not 5.0: p0 was leaving then, and not Ready at 5.5
    assert out["all_answering_s"] == 6.2  # p0's answer before t0 does not count, nor p2's 503
    assert out["answering_pods"] == 3
    assert out["init_s_median"] == 2.5 and out["init_s_max"] == 3.0
    assert out["init_mib_s_combined"] == 42.7  # 2 x 64 MiB from 1 s to 4 s
    # what was Ready before the change never completes it: the first event after t0 does
    assert tp.scale_up(rec, 1)["all_ready_s"] == 0.3


def test_the_phase_table_says_ours_plain_and_the_difference() -> None:
    entry = {
        "mib": 256,
        "version": "1.2.0",
        "first": "plain",
        "ratio": 1.3,
        "ours": tp.summarize(OURS),
        "plain": {"phases_s": {**tp.summarize(OURS)["phases_s"], "init": 1.5}, "init_mib_s": 170.7},
    }
    lines = tp.table_lines(entry)
    assert "x1.3 (goal <= 1.2x at 256 MiB)" in lines[0]
    init = next(line for line in lines if line.strip().startswith("init container: download"))
    assert init.split()[-3:] == ["2.00", "1.50", "0.50"]


# ------------------------------------------------------------------------------------ the baseline
def ours_deployment() -> dict[str, Any]:
    init = {
        "name": "verify-artifact",
        "image": "img:dev",
        "imagePullPolicy": "Never",
        "args": ["verify-artifact", "http://a/x.bin", "--sha256", "f" * 64, "--dest", "/models"],
        "volumeMounts": [
            {"name": "model", "mountPath": "/models"},
            {"name": "tmp-verify", "mountPath": "/tmp"},
        ],
        "securityContext": {"readOnlyRootFilesystem": True},
    }
    server = {
        "name": "model-server",
        "image": "img:dev",
        "env": [{"name": "MODEL_VERSION", "value": "1.2.0"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
    }
    template = {
        "metadata": {"labels": {"modelversioning.io/version": "1.2.0"}, "annotations": {"a": "b"}},
        "spec": {
            "initContainers": [init],
            "containers": [server],
            "volumes": [{"name": "model", "emptyDir": {}}],
            "nodeSelector": {"node": "real"},
        },
    }
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return {"spec": {"replicas": 1, "strategy": strategy, "template": template}}


def test_the_plain_deployment_is_our_pod_with_a_download_instead_of_our_init_container() -> None:
    ours = ours_deployment()
    dep, svc, rt = plain_objects(
        ours, "ttfa-plain", "ns", "1.2.0", "http://a/x.bin", "plain.example.com", {"name": "gw"}, replicas=3
    )
    spec, ours_spec = dep["spec"]["template"]["spec"], ours["spec"]["template"]["spec"]
    assert spec["containers"] == ours_spec["containers"]  # the same model server, probe and env
    assert spec["volumes"] == ours_spec["volumes"] and spec["nodeSelector"] == ours_spec["nodeSelector"]
    (init,) = spec["initContainers"]
    assert init["name"] == INIT_NAME and init["command"] == [
        "python",
        "-c",
        DOWNLOAD,
        "http://a/x.bin",
        "/models/x.bin",
    ]
    assert (
        "--sha256" not in init["command"]
        and init["volumeMounts"] == ours_spec["initContainers"][0]["volumeMounts"]
    )
    assert init["securityContext"] == {"readOnlyRootFilesystem": True}
    assert dep["spec"]["template"]["metadata"] == {"labels": {"app": "ttfa-plain", VERSION_LABEL: "1.2.0"}}
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"] == {"app": "ttfa-plain"}
    assert dep["spec"]["strategy"] == ours["spec"]["strategy"] and dep["spec"]["replicas"] == 3
    assert rt["spec"]["hostnames"] == ["plain.example.com"] and rt["spec"]["parentRefs"] == [{"name": "gw"}]
    assert rt["spec"]["rules"][0]["backendRefs"] == [{"name": "ttfa-plain", "port": 80}]
    # ours is left as it was
    assert ours["spec"]["template"]["spec"]["initContainers"][0]["name"] == "verify-artifact"
