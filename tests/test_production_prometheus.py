"""The production record's PromQL against a real Prometheus (the host's ``prometheus`` binary; skipped
without one; e2e/test_production_record_e2e.py does the same through Traefik on the real node).

A stub exporter plays Traefik (per-Service request counters created at their first request, a latency
histogram) and a shop (a KPI counter, in this namespace and in another one). Checked: a segment's count
is exact (not the ~5 % ``increase()`` alone gets wrong), another slot of the same variant and another
namespace's KPI series are not counted, a quiet segment is a true 0 (the series exist), a counter reset
falls back to ``increase()``, and a KPI that matches nothing is no data, never 0."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelversioning.analysis.production import Scope, measure_segment
from modelversioning.analysis.prometheus import PrometheusClient
from modelversioning.api.model import Kpi
from modelversioning.domain.production import Segment, merge

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    """A missing Prometheus fails these tests, never skips them (`./dev test` installs it first:
    e2e/build-dataplane.sh)."""
    if PROMETHEUS is None:
        pytest.fail("no prometheus binary on PATH: run e2e/build-dataplane.sh (apt-get install prometheus)")


ROUTER = "httproute-team-a-ep-gw-gw-traefik-ep-web-0-0123456789abcdef0123"
MINE = f"{ROUTER}-svc-team-a-ep-a-0a1b2c3d4e-80@kubernetesgateway"
OTHER_SLOT = f"{ROUTER}-svc-team-a-ep-a-ffffffffff-80@kubernetesgateway"


class Exporter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.kpi: dict[str, int] = {}
        exporter = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def text(self) -> str:
        with self.lock:
            lines = [
                f'traefik_service_requests_total{{service="{s}",code="{c}",method="POST"}} {n}'
                for (s, c), n in self.counts.items()
            ]
            for s in {s for s, _ in self.counts}:
                total = sum(n for (t, _), n in self.counts.items() if t == s)
                for le in ("0.1", "0.3", "+Inf"):
                    lines.append(
                        f'traefik_service_request_duration_seconds_bucket{{service="{s}",le="{le}"}} {total}'
                    )
            lines += [
                f'shop_conversions_total{{namespace="{ns}",v="1.0.0"}} {n}' for ns, n in self.kpi.items()
            ]
        return "\n".join(lines) + "\n"

    def serve(self, n: int, every: int = 0) -> None:
        """n requests to our slot (every `every`-th a 500), one to the other slot each, at ~50/s."""
        for i in range(n):
            code = "500" if every and i % every == every - 1 else "200"
            with self.lock:
                self.counts[(MINE, code)] = self.counts.get((MINE, code), 0) + 1
                self.counts[(OTHER_SLOT, "200")] = self.counts.get((OTHER_SLOT, "200"), 0) + 1
                self.kpi["team-a"] = self.kpi.get("team-a", 0) + 1
                self.kpi["team-b"] = self.kpi.get("team-b", 0) + 7
            time.sleep(0.02)

    def reset(self) -> None:  # the gateway restarted: its counters start again from 0
        with self.lock:
            self.counts = {k: 0 for k in self.counts}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusClient, Exporter]]:
    exp = Exporter()
    d: Path = tmp_path_factory.mktemp("prom")
    (d / "p.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: x\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exp.httpd.server_address[1]}']}}]\n"
    )
    port = _free_port()
    assert PROMETHEUS is not None
    p = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={d}/p.yml",
            f"--storage.tsdb.path={d}/db",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = PrometheusClient(f"http://127.0.0.1:{port}", 5)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.query_vector("up", None)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield client, exp
    finally:
        p.terminate()
        p.wait(10)
        exp.httpd.shutdown()


KPI = Kpi.model_validate(
    {"name": "conv", "numerator": {"metric": "shop_conversions_total", "labels": {"v": "{{version}}"}}}
)
NONE = Kpi.model_validate({"name": "none", "numerator": {"metric": "nothing_total"}})
SCOPE = Scope("team-a", "m", "1.0.0", "traefik", (KPI, NONE))


def segment(start: datetime, end: datetime) -> Segment:
    return Segment("ep", "a", "x", start, end, True, ("ep-a-0a1b2c3d4e",))


def settle() -> datetime:
    time.sleep(3.0)  # the last increments scraped
    return datetime.now(UTC)


def test_segments_count_exactly_scoped_to_the_slot_and_namespace(
    prom: tuple[PrometheusClient, Exporter],
) -> None:
    client, exp = prom
    time.sleep(2.0)
    t0 = datetime.now(UTC)
    time.sleep(1.5)
    exp.serve(200, every=20)  # the series are created by the first request, inside the segment
    t1 = settle()
    one = measure_segment(SCOPE, segment(t0, t1), client.query, client.query_vector)
    assert (one.error, one.requests, one.errors) == (None, 200.0, 10.0)
    assert one.kpis[0].numerator == 200.0 and one.kpis[0].error is None  # team-b's 1400 not counted
    assert one.kpis[1].error is not None and one.kpis[1].numerator is None  # no data, never 0
    exp.serve(100, every=10)
    t2 = settle()
    two = measure_segment(SCOPE, segment(t1, t2), client.query, client.query_vector)
    assert (two.requests, two.errors) == (100.0, 10.0)  # adjacent: nothing counted twice, nothing lost
    quiet = measure_segment(SCOPE, segment(t2, settle()), client.query, client.query_vector)
    assert (quiet.error, quiet.requests, quiet.errors) == (None, 0.0, 0.0)  # the series exist: a true 0
    summary = merge(merge(None, one, "traefik"), two, "traefik")
    assert (summary["requests"], summary["errors"], summary["errorRatio"]) == (
        300,
        20,
        pytest.approx(20 / 300, abs=1e-6),
    )


def test_after_a_counter_reset_increase_answers(prom: tuple[PrometheusClient, Exporter]) -> None:
    client, exp = prom
    t0 = settle()
    exp.serve(60)
    time.sleep(2.0)
    exp.reset()
    exp.serve(60)
    t1 = settle()
    got = measure_segment(SCOPE, segment(t0, t1), client.query, client.query_vector)
    # the difference of last values would say 60 - (what was there before): increase() says ~120
    assert got.requests is not None and 100 <= got.requests <= 140, got.requests


def test_prometheus_down_is_an_error_not_a_zero() -> None:
    down = PrometheusClient(f"http://127.0.0.1:{_free_port()}", 2)
    now = datetime.now(UTC)
    got = measure_segment(SCOPE, segment(now - timedelta(seconds=60), now), down.query, down.query_vector)
    assert got.error is not None and got.error.startswith("traefik: Prometheus unreachable")
    assert got.requests is None and got.kpis == ()
