"""The reference model server (`modelversioning model-server`), with real HTTP requests on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelversioning.artifacts.manifest import manifest_digest as api_manifest_digest
from modelversioning.modelserver import (
    FaultInjector,
    Faults,
    Identity,
    ModelLoadError,
    ModelServer,
    ServerConfig,
    load_model,
)
from modelversioning.modelserver import model as model_mod
from modelversioning.modelserver import server as server_mod

WEIGHTS = b"fraud-detector 2.4.1 weights\n" * 100
SHA = hashlib.sha256(WEIGHTS).hexdigest()
TOKEN = "fault-port-token-0123456789"


# ---------------------------------------------------------------------------------------------- helpers
def _request(
    url: str, method: str = "GET", body: bytes | None = None, timeout: float = 10, token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _json(
    url: str, method: str = "GET", body: bytes | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    code, _, data = _request(url, method, body, token=token)
    return code, json.loads(data)


def _samples(base: str, name: str) -> list[tuple[dict[str, str], float]]:
    code, _, data = _request(base + "/metrics")
    assert code == 200
    out = []
    for family in text_string_to_metric_families(data.decode()):
        for s in family.samples:
            if s.name == name:
                out.append((dict(s.labels), float(s.value)))
    return out


def _value(base: str, name: str, **labels: str) -> float:
    return sum(v for lbls, v in _samples(base, name) if all(lbls.get(k) == x for k, x in labels.items()))


def _wait(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    (d / "model.bin").write_bytes(WEIGHTS)
    return d


def _server(model_path: Path, **kwargs: Any) -> ModelServer:
    identity = kwargs.pop("identity", None) or Identity(
        model="fraud-detector", version="2.4.1", sha256=SHA, variant="canary", hostname="pod-a"
    )
    return ModelServer(
        ServerConfig(model_path=str(model_path), identity=identity, host="127.0.0.1", port=0, **kwargs)
    )


@pytest.fixture
def served(model_dir: Path) -> Iterator[tuple[ModelServer, str]]:
    with _server(model_dir) as srv:
        yield srv, f"http://127.0.0.1:{srv.port}"


# ---------------------------------------------------------------------------------------------- loading
def test_load_single_file_artifact(model_dir: Path) -> None:
    m = load_model(model_dir, SHA)
    assert m.sha256 == SHA and m.files == (("model.bin", len(WEIGHTS)),) and m.size_bytes == len(WEIGHTS)
    assert load_model(model_dir / "model.bin", SHA).sha256 == SHA  # MODEL_PATH naming the file itself
    assert load_model(model_dir).sha256 == SHA  # nothing pinned: a lone file reports its own digest


def test_load_directory_artifact_uses_the_api_manifest_digest(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "sub").mkdir(parents=True)
    files = {"weights.bin": b"w" * 10, "sub/config.json": b"{}", ".hidden": b""}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    expected = api_manifest_digest((rel, hashlib.sha256(data).hexdigest()) for rel, data in files.items())
    assert load_model(root).sha256 == expected
    assert load_model(root, expected.upper()).sha256 == expected
    # A one-file directory artifact: the manifest digest is accepted as well as the file's.
    one = tmp_path / "one"
    one.mkdir()
    (one / "x.bin").write_bytes(WEIGHTS)
    manifest = api_manifest_digest([("x.bin", SHA)])
    assert model_mod.manifest_digest([("x.bin", SHA)]) == manifest
    assert load_model(one, manifest).sha256 == manifest


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "holds no file"),
        (lambda p: (p.mkdir(), (p / "model.bin").write_bytes(b"tampered")), "does not match the pinned"),
    ],
)
def test_load_refuses_missing_empty_or_tampered(
    tmp_path: Path, setup: Callable[[Path], Any], message: str
) -> None:
    p = tmp_path / "models"
    setup(p)
    with pytest.raises(ModelLoadError, match=message):
        load_model(p, SHA)


# ---------------------------------------------------------------------------------------------- faults
def test_error_schedule_is_evenly_spread_and_exact() -> None:
    inj = FaultInjector(Faults(error_rate=0.1))
    fails = [i for i in range(1, 101) if inj.next()[0]]
    assert fails == list(range(10, 101, 10))
    inj.configure(Faults(error_rate=0.25))
    assert sum(inj.next()[0] for _ in range(1000)) == 250
    inj.configure(Faults(error_rate=1 / 3))
    outcomes = [inj.next()[0] for _ in range(99)]
    assert sum(outcomes) == 33 and all(sum(outcomes[i : i + 3]) == 1 for i in range(0, 99, 3))
    assert not any(FaultInjector(Faults()).next()[0] for _ in range(100))
    assert all(FaultInjector(Faults(error_rate=1.0)).next()[0] for _ in range(100))


def test_seeded_error_schedule_is_reproducible() -> None:
    def run() -> list[bool]:
        inj = FaultInjector(Faults(error_rate=0.3, error_seed=42))
        return [inj.next()[0] for _ in range(500)]

    a = run()
    assert a == run()
    assert 100 < sum(a) < 200  # ~150 expected


def test_faults_validation_and_json() -> None:
    for bad in ({"error_rate": 1.5}, {"error_rate": -0.1}, {"latency_ms": -1}, {"error_rate": float("nan")}):
        with pytest.raises(ValueError):
            Faults(**bad)
    base = Faults(error_rate=0.2, latency_ms=5)
    assert Faults.from_json({"latencyMs": 100}, base) == Faults(error_rate=0.2, latency_ms=100)
    for bad_json in ([], {"errorRate": "x"}, {"errorRate": True}, {"bogus": 1}, {"errorSeed": 1.5}):
        with pytest.raises(ValueError):
            Faults.from_json(bad_json, base)
    assert FaultInjector(Faults(latency_ms=250)).next() == (False, 0.25)


# ---------------------------------------------------------------------------------------------- HTTP
def test_predict_names_model_version_digest_variant_and_pod(served: tuple[ModelServer, str]) -> None:
    _, base = served
    code, headers, data = _request(base + "/v1/predict", "POST", b'{"amount": 12.5}')
    assert code == 200, data
    body = json.loads(data)
    assert body["model"] == "fraud-detector" and body["version"] == "2.4.1"
    assert body["sha256"] == SHA and body["variant"] == "canary" and body["hostname"] == "pod-a"
    assert body["prediction"]["label"] in ("positive", "negative")
    assert 0 <= body["prediction"]["score"] < 1
    # The x-model-* headers are the route's job: the server never sets them (so tests tell them apart).
    assert not [h for h in headers if h.startswith("x-model") or h == "x-endpoint-variant"]
    # Deterministic: same input, same answer; GET / is a prediction on an empty input.
    assert _json(base + "/v1/predict", "POST", b'{"amount": 12.5}')[1] == body
    code, root = _json(base + "/")
    assert (
        code == 200 and root["version"] == "2.4.1" and root["input_sha256"] == hashlib.sha256(b"").hexdigest()
    )
    assert _json(base + "/", "POST", b"")[1] == root
    assert _request(base + "/v1/predict")[0] == 405
    assert _request(base + "/nope")[0] == 404


def test_health_and_custom_health_path(model_dir: Path) -> None:
    with _server(model_dir, health_path="/ready") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        for path in ("/ready", "/healthz"):
            code, body = _json(base + path)
            assert code == 200 and body["status"] == "ok" and body["sha256"] == SHA
        assert _request(base + "/ready", "HEAD")[0] == 200


def test_metrics_count_requests_by_code_with_model_version_variant(served: tuple[ModelServer, str]) -> None:
    _, base = served
    for _ in range(3):
        assert _request(base + "/v1/predict", "POST", b"{}")[0] == 200
    _request(base + "/nope")
    ident = {"model": "fraud-detector", "version": "2.4.1", "variant": "canary"}
    assert _value(base, "modelserver_requests_total", handler="predict", code="200", **ident) == 3
    assert _value(base, "modelserver_requests_total", handler="other", code="404", **ident) == 1
    assert _value(base, "modelserver_request_errors_total", reason="not_found", **ident) == 1
    assert _value(base, "modelserver_request_duration_seconds_count", handler="predict", **ident) == 3
    buckets = [lbls["le"] for lbls, _ in _samples(base, "modelserver_request_duration_seconds_bucket")]
    assert "0.005" in buckets and "+Inf" in buckets
    assert _value(base, "modelserver_model_loaded", **ident) == 1
    assert _value(base, "modelserver_model_artifact_bytes", **ident) == len(WEIGHTS)
    info = _samples(base, "modelserver_model_info")
    assert info == [({**ident, "sha256": SHA, "hostname": "pod-a"}, 1.0)]
    assert _samples(base, "process_cpu_seconds_total")


def test_predict_series_exist_at_zero_before_any_request(served: tuple[ModelServer, str]) -> None:
    """5xx / all over a version that never failed is 0, not "no data" (inconclusive to an analysis)."""
    _, base = served
    predict = {
        (lbls["code"], v)
        for lbls, v in _samples(base, "modelserver_requests_total")
        if lbls["handler"] == "predict"
    }
    assert predict == {("200", 0.0), ("500", 0.0), ("503", 0.0)}, predict
    assert any(
        lbls.get("reason") == "injected" for lbls, _ in _samples(base, "modelserver_request_errors_total")
    )
    assert _value(base, "modelserver_request_duration_seconds_count", handler="predict") == 0


def test_metrics_without_a_variant_have_no_variant_label(model_dir: Path) -> None:
    """An empty label would hide the pod's variant label that Prometheus adds (honor_labels)."""
    with _server(model_dir, identity=Identity(model="m", version="1.0.0", hostname="h")) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        assert _request(base + "/v1/predict", "POST", b"{}")[0] == 200
        assert _json(base + "/")[1]["variant"] is None
        for name in ("modelserver_requests_total", "modelserver_model_info", "modelserver_model_loaded"):
            samples = _samples(base, name)
            assert samples and all("variant" not in lbls for lbls, _ in samples), samples


def test_error_rate_answers_exactly_that_share_with_500(model_dir: Path) -> None:
    with _server(model_dir, faults=Faults(error_rate=0.25)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        codes = [_request(base + "/v1/predict", "POST", b"{}")[0] for _ in range(40)]
        assert codes.count(500) == 10 and codes.count(200) == 30
        code, body = _json(base + "/v1/predict", "POST", b"{}")  # 41st: not a failure slot
        assert code == 200
        failed = next(i for i, c in enumerate(codes) if c == 500)
        assert failed == 3  # requests 4, 8, 12, ...
        assert _value(base, "modelserver_requests_total", handler="predict", code="500") == 10
        assert _value(base, "modelserver_request_errors_total", handler="predict", reason="injected") == 10
        assert _value(base, "modelserver_fault_error_rate") == 0.25
        # An injected failure still says who answered.
        for _ in range(2):  # requests 42, 43; 44 fails
            _request(base + "/v1/predict", "POST", b"{}")
        code, _, data = _request(base + "/v1/predict", "POST", b"{}")
        assert code == 500 and json.loads(data)["version"] == "2.4.1"
        assert _json(base + "/healthz")[0] == 200  # a misbehaving version stays ready, as in real life


def test_added_latency_is_applied_and_measured(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # which requests slept is recorded, not timed: a probe's round trip can take over 150 ms on a busy
    # machine without any latency added, and a prediction's can exceed any upper bound
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)  # the time module the server's handlers use
    with _server(model_dir, faults=Faults(latency_ms=150)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        t0 = time.monotonic()
        assert _request(base + "/v1/predict", "POST", b"{}")[0] == 200
        assert time.monotonic() - t0 >= 0.15
        assert slept == [0.15]
        assert _request(base + "/healthz")[0] == 200
        assert slept == [0.15]  # probes are not slowed down
        assert _value(base, "modelserver_request_duration_seconds_bucket", handler="predict", le="0.1") == 0
        assert _value(base, "modelserver_request_duration_seconds_sum", handler="predict") >= 0.15
        assert _value(base, "modelserver_request_duration_seconds_count", handler="predict") == 1
        assert _value(base, "modelserver_fault_latency_seconds") == pytest.approx(0.15)


def test_missing_artifact_is_never_healthy_until_it_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_mod, "RELOAD_INTERVAL", 0.05)
    mount = tmp_path / "models"
    with _server(mount) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        code, body = _json(base + "/healthz")
        assert code == 503 and "does not exist" in body["reason"]
        code, body = _json(base + "/v1/predict", "POST", b"{}")
        assert code == 503 and body["error"] == "model not loaded"
        assert _value(base, "modelserver_model_loaded") == 0
        assert _value(base, "modelserver_request_errors_total", reason="not_loaded") == 2
        mount.mkdir()
        (mount / "model.bin").write_bytes(b"tampered")
        _wait(
            "the digest mismatch to be reported",
            lambda: "does not match" in _json(base + "/healthz")[1]["reason"],
        )
        (mount / "model.bin").write_bytes(WEIGHTS)
        _wait("the server to load the model", lambda: _json(base + "/healthz")[0] == 200)
        assert _json(base + "/v1/predict", "POST", b"{}")[0] == 200
        assert _value(base, "modelserver_model_loaded") == 1


def test_admin_port_changes_faults_at_runtime(model_dir: Path) -> None:
    with _server(model_dir, admin_port=0, admin_token=TOKEN) as srv:
        base, admin = f"http://127.0.0.1:{srv.port}", f"http://127.0.0.1:{srv.admin_port}"
        assert srv.admin_port and srv.admin_port != srv.port
        assert _json(admin + "/faults", token=TOKEN) == (
            200,
            {"errorRate": 0.0, "latencyMs": 0.0, "errorSeed": None},
        )
        code, body = _json(admin + "/faults", "PUT", b'{"errorRate": 0.5}', TOKEN)
        assert code == 200 and body["errorRate"] == 0.5
        codes = [_request(base + "/v1/predict", "POST", b"{}")[0] for _ in range(10)]
        assert codes == [200, 500] * 5
        assert _value(base, "modelserver_fault_error_rate") == 0.5
        assert _request(admin + "/faults", "PUT", b'{"errorRate": 2}', token=TOKEN)[0] == 400
        assert _request(admin + "/faults", "PUT", b"not json", token=TOKEN)[0] == 400
        assert _request(base + "/faults", "PUT", b"{}")[0] in (404, 501)  # never on the served port
        assert _json(admin + "/faults", "PUT", b'{"errorRate": 0}', TOKEN)[0] == 200
        assert all(_request(base + "/v1/predict", "POST", b"{}")[0] == 200 for _ in range(5))


def test_no_admin_port_by_default(served: tuple[ModelServer, str]) -> None:
    srv, _ = served
    assert srv.admin is None and srv.admin_port is None


def test_concurrent_requests_and_chunked_body(served: tuple[ModelServer, str]) -> None:
    import concurrent.futures
    import http.client

    _, base = served
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda i: _request(base + "/v1/predict", "POST", b'{"i": %d}' % i)[0], range(64))
        )
    assert codes == [200] * 64
    conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", "/v1/predict", body=iter([b'{"a":', b" 1}"]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["input_sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    conn.request("POST", "/v1/predict", body=b"{}")  # the keep-alive connection is reusable
    assert conn.getresponse().status == 200
    conn.close()


# ---------------------------------------------------------------------------------------------- process
def _entry_point() -> list[str]:
    exe = shutil.which("modelversioning", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "modelversioning"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rendered_server_env(mount: Path) -> tuple[list[str], dict[str, str]]:
    """The model-server container of a Deployment rendered by the operator: args and env."""
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.api.settings import Serving
    from modelversioning.render import EndpointRef, render_deployment

    version = ModelVersionSpec.model_validate(
        {
            "model": "fraud-detector",
            "version": "2.4.1",
            "artifact": {"uri": "s3://models/fraud-detector/2.4.1/model.bin", "sha256": SHA},
            "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "2024-09-30"}},
            "metrics": {"auc": 0.95},
            "runtime": {
                "image": "modelversioning-operator:dev",
                "args": ["model-server", "--port", "8080"],
                "port": 8080,
                "healthPath": "/healthz",
                "env": [{"name": "MODEL_SERVER_ERROR_RATE", "value": "0.5"}],
            },
        }
    )
    spec = ModelEndpointSpec.model_validate(
        {"model": "fraud-detector", "variants": [{"name": "canary", "version": "2.4.1", "weight": 100}]}
    )
    dep = render_deployment(
        EndpointRef("fraud", "ml", "uid-1"),
        spec,
        spec.variants[0],
        version,
        Serving(model_mount_path=str(mount)),
    )
    container = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "model-server")
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return list(container.get("args", [])), env


def test_cli_runs_with_the_rendered_pod_env_and_drains_on_sigterm(model_dir: Path, tmp_path: Path) -> None:
    args, pod_env = _rendered_server_env(model_dir)
    assert args[0] == "model-server"  # the image's ENTRYPOINT is `modelversioning`
    assert pod_env["MODEL_PATH"] == str(model_dir) and pod_env["MODEL_SHA256"] == SHA
    port = _free_port()
    args = [a if a != "8080" else str(port) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "MODEL_SERVER_"))}
    env.update(pod_env)
    env.update(MODEL_SERVER_HOST="127.0.0.1", MODEL_SERVER_DRAIN_SECONDS="1")
    # Its log goes to a file: a pipe nobody reads fills up (one access-log line per health poll on a
    # slow start) and blocks the server, signal handler included: it never drained (a flaky failure).
    log_path = tmp_path / "model-server.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([*_entry_point(), *args], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return _request(base + "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        t0 = time.monotonic()
        _wait("model-server to become healthy", healthy, timeout=30)
        started = time.monotonic() - t0
        codes = [_json(base + "/v1/predict", "POST", b"{}") for _ in range(4)]
        assert [c for c, _ in codes] == [200, 500, 200, 500]  # runtime.env reaches the server
        body = codes[0][1]
        assert (
            body["version"] == "2.4.1" and body["sha256"] == SHA and body["hostname"] == socket.gethostname()
        )
        if "MODEL_VARIANT" in pod_env:
            assert body["variant"] == pod_env["MODEL_VARIANT"]
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        # Draining: health fails at once, predictions are still answered, then the process exits.
        _wait(
            "health to report draining", lambda: _request(base + "/healthz", timeout=1)[0] == 503, timeout=5
        )
        assert _request(base + "/v1/predict", "POST", b"{}", timeout=1)[0] in (200, 500)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - t_term >= 0.9
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log_file.close()
    out = log_path.read_text()
    assert "loaded fraud-detector 2.4.1" in out, out
    print(f"model-server process healthy {started:.2f}s after exec")


def test_cli_refuses_bad_fault_settings(model_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    res = subprocess.run(
        [*_entry_point(), "model-server", "--error-rate", "3"],
        env={**env, "MODEL_PATH": str(model_dir), "MODEL_NAME": "m", "MODEL_VERSION": "1.0.0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "error rate" in res.stderr
