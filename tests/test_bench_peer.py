"""The peer benchmark's decisions that need no cluster (bench/peer_*.py): when a controller counts as
quiet before a block, what Argo Rollouts' metrics and log say about a block, and the weights of the
routes each side writes."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "e2e")]
import peer_argo  # noqa: E402
import peer_flagger  # noqa: E402
import peer_metrics  # noqa: E402

NOW = 1_800_000_000.0


def rs(seconds_from_now: float | None, replicas: int, name: str = "ro-0001-abc") -> Any:
    ann = {}
    if seconds_from_now is not None:
        when = dt.datetime.fromtimestamp(NOW + seconds_from_now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ann["scale-down-deadline"] = when  # v1alpha1.DefaultReplicaSetScaleDownDeadlineAnnotationKey
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, annotations=ann), spec=SimpleNamespace(replicas=replicas)
    )


@pytest.mark.parametrize(
    ("ahead", "replicas", "pending"),
    [
        (20, 1, True),  # Argo scales it down in 20 s
        (-5, 1, True),  # due, not written yet
        (-5, 0, False),  # done (after an abort the annotation stays on a scaled-down ReplicaSet)
        (-40, 1, False),  # long past: not a delayed scale-down any more
        (None, 1, False),  # no delayed scale-down at all
    ],
)
def test_a_delayed_scale_down_is_pending_until_it_is_written(
    ahead: float | None, replicas: int, pending: bool
) -> None:
    assert peer_argo.scale_down_pending([rs(ahead, replicas)], NOW) == (["ro-0001-abc"] if pending else [])


def snapshot(text: str) -> peer_metrics.Snapshot:
    return peer_metrics.parse(text)


def test_argo_is_idle_only_with_every_queue_empty_and_no_reconcile_running() -> None:
    base = 'workqueue_depth{name="Rollouts"} 0\nworkqueue_depth{name="Services"} 0\n'
    running = 'workqueue_longest_running_processor_seconds{name="Rollouts"} '
    assert peer_argo.idle(snapshot(base + running + "0\n"))
    assert not peer_argo.idle(snapshot(base.replace('Services"} 0', 'Services"} 2') + running + "0\n"))
    assert not peer_argo.idle(snapshot(base + running + "0.25\n"))
    assert not peer_argo.idle({})  # not answering: not known to be idle


def test_ours_is_idle_with_nothing_queued_or_running_whatever_is_scheduled() -> None:
    keys = 'modelversioning_workqueue_keys{state="%s"} %d\n'
    quiet = keys % ("queued", 0) + keys % ("running", 0) + keys % ("scheduled", 7)
    assert peer_metrics.ours_idle(snapshot(quiet))
    assert not peer_metrics.ours_idle(snapshot(quiet.replace('running"} 0', 'running"} 1')))
    assert not peer_metrics.ours_idle(snapshot(quiet.replace('queued"} 0', 'queued"} 3')))
    assert not peer_metrics.ours_idle({})  # an operator without the gauge is not known to be idle


def test_wait_quiet_needs_every_check_at_once_and_records_each_ones_wait() -> None:
    calls = {"slow": 0, "flappy": 0}
    ticks = iter(range(100))  # the clock: 0 at the start, then 1, 2, ... at each round of checks

    def slow() -> bool:  # busy for three rounds
        calls["slow"] += 1
        return calls["slow"] > 3

    def flappy() -> bool:  # quiet, busy again in round 2, then quiet for good
        calls["flappy"] += 1
        return calls["flappy"] != 2

    out = peer_metrics.wait_quiet(
        {"slow": slow, "flappy": flappy}, timeout=100, stable=0.0, poll=0.0, clock=lambda: next(ticks)
    )
    # flappy's wait counts from the last time it turned quiet (round 3), not the first (round 1)
    assert out == {"total_s": 4, "slow_s": 4, "flappy_s": 3}
    with pytest.raises(RuntimeError, match="never"):
        peer_metrics.wait_quiet(
            {"never": lambda: False}, timeout=3, stable=0.0, poll=0.0, clock=lambda: next(ticks)
        )


REQ = (
    'controller_clientset_k8s_request_total{kind="%s",name="x",namespace="n",status_code="%d",verb="%s"} %d\n'
)


def test_block_metrics_are_the_difference_of_two_scrapes() -> None:
    before = snapshot(
        'workqueue_adds_total{name="Rollouts"} 10\n'
        'workqueue_queue_duration_seconds_sum{name="Rollouts"} 1.0\n'
        'workqueue_queue_duration_seconds_count{name="Rollouts"} 10\n' + REQ % ("ro-0001", 200, "Patch", 2)
    )
    after = snapshot(
        'workqueue_adds_total{name="Rollouts"} 14\nworkqueue_adds_total{name="Services"} 3\n'
        'workqueue_queue_duration_seconds_sum{name="Rollouts"} 1.2\n'
        'workqueue_queue_duration_seconds_count{name="Rollouts"} 14\n'
        + REQ % ("ro-0001", 200, "Patch", 5)
        + REQ % ("replicasets", 409, "Update", 1)
    )
    m = peer_argo.block_metrics(before, after)
    assert m["adds"] == {"Rollouts": 4.0, "Services": 3.0}
    assert m["rollouts_queue_wait_mean_ms"] == 50.0  # 0.2 s over 4 items
    assert m["api_requests"] == {"patch rollouts": 3, "update replicasets": 1}  # a status patch: by name
    assert m["api_errors"] == {"409 update replicasets": 1}


def test_throttling_is_read_from_client_gos_log_lines(tmp_path: Path) -> None:
    argo = peer_argo.ArgoProcess(Path("/nonexistent"), tmp_path / "kc", tmp_path, "defaults", [])
    argo.log_path.write_text(
        "I1207 request.go:629] Waited for 1.2s due to client-side throttling, not priority and fairness, "
        "request: GET:https://x/apis/argoproj.io/v1alpha1/namespaces/bench-argo/rollouts/ro-0001\n"
        "I1207 request.go:629] Waited for 350.5ms due to client-side throttling, not priority and fairness\n"
        # a retry's wait, not the rate limiter's
        "I1207 request.go:629] Waited for 2s, retries: 1 - request: GET:https://x\n"
    )
    assert argo.throttled(0, argo.log_offset()) == {"requests": 2, "seconds": 1.55, "max_s": 1.2}
    assert argo.throttled(argo.log_offset(), argo.log_offset())["requests"] == 0


def test_route_weights_of_each_side() -> None:
    flagger = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fl-0001-primary", "weight": 80},
                        {"name": "fl-0001-canary", "weight": 20},
                    ]
                }
            ]
        }
    }
    assert peer_flagger.flagger_route_weights(flagger) == {"stable": 80, "canary": 20}
    assert peer_flagger.flagger_route_weights(None) is None

    def ref(variant: str, weight: int) -> dict[str, Any]:
        hdr = {"name": "x-endpoint-variant", "value": variant}
        filt = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [hdr]}}
        return {"name": f"au-0001-{variant}-abc", "weight": weight, "filters": [filt]}

    ours = {"spec": {"rules": [{"backendRefs": [ref("stable", 100)]}]}}  # the canary's backend gone
    assert peer_flagger.our_route_weights(ours) == {"stable": 100, "canary": 0}


def test_the_prometheus_text_parser_keeps_escaped_label_values() -> None:
    snap = peer_metrics.parse('m{a="x\\"y",b="z"} 3\n# HELP m\nplain 1.5\nbad{a="1"} NaNx\n')
    assert snap == {("m", (("a", 'x\\"y'), ("b", "z"))): 3.0, ("plain", ()): 1.5}
