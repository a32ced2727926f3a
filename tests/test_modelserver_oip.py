"""The reference model server's Open Inference Protocol (KServe V2 REST), with real HTTP requests on
loopback, and the protocol's rules (modelserver.oip) on their own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelversioning.modelserver import Faults, Identity, ModelServer, ServerConfig, oip
from test_modelserver import _json, _request, _value, _wait

WEIGHTS = b"iris 1.2.0 weights\n" * 10
SHA = hashlib.sha256(WEIGHTS).hexdigest()
SIGNATURE = oip.parse_signature(
    json.dumps(
        {
            "inputs": [{"name": "features", "dtype": "float64", "shape": [-1, 4]}],
            "outputs": [
                {"name": "predict", "dtype": "long", "shape": [-1, 1]},
                {"name": "proba", "datatype": "FP32", "shape": [-1, 3]},
            ],
        }
    )
)
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _infer_body(rows: list[list[float]], name: str = "features", **extra: Any) -> bytes:
    flat = [v for r in rows for v in r]
    inp = {"name": name, "shape": [len(rows), 4], "datatype": "FP64", "data": flat}
    return json.dumps({"inputs": [inp], **extra}).encode()


def _serve(tmp_path: Path, **kwargs: Any) -> ModelServer:
    (tmp_path / "model.joblib").write_bytes(WEIGHTS)
    identity = Identity(model="iris", version="1.2.0", sha256=SHA, variant="main", hostname="pod-a")
    config = ServerConfig(str(tmp_path), identity, host="127.0.0.1", port=0, **kwargs)
    return ModelServer(config)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[str]:
    """A server without a signature."""
    with _serve(tmp_path) as srv:
        yield f"http://127.0.0.1:{srv.port}"


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[str]:
    with _serve(tmp_path, signature=SIGNATURE) as srv:
        yield f"http://127.0.0.1:{srv.port}"


# ------------------------------------------------------------------------------------ health, metadata
def test_health_ready_and_metadata_per_the_protocol(signed: str) -> None:
    assert _json(signed + "/v2/health/live") == (200, {"live": True})
    assert _json(signed + "/v2/health/ready") == (200, {"ready": True})
    assert _json(signed + "/v2/models/iris/ready") == (200, {"ready": True})
    assert _json(signed + "/v2/models/iris/versions/1.2.0/ready") == (200, {"ready": True})
    code, meta = _json(signed + "/v2/models/iris")
    assert code == 200
    # dtypes of the signature in the protocol's spelling, -1 kept: what a contract check compares
    assert meta == {
        "name": "iris",
        "versions": ["1.2.0"],
        "platform": oip.PLATFORM,
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "proba", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    assert _json(signed + "/v2/models/iris/versions/1.2.0") == (200, meta)
    code, server = _json(signed + "/v2")
    assert code == 200 and server["name"] == "modelversioning-model-server"


def test_another_model_or_version_is_404_with_an_error_body(signed: str) -> None:
    assert _json(signed + "/v2/models/other") == (404, {"error": "Model other not found"})
    code, body = _json(signed + "/v2/models/iris/versions/9.9.9/infer", "POST", _infer_body(ROWS))
    assert code == 404 and "9.9.9" in body["error"]
    code, body = _json(signed + "/v2/models/other/ready")
    assert code == 404 and set(body) == {"error"}


def test_wrong_method_is_405(signed: str) -> None:
    code, body = _json(signed + "/v2/models/iris/infer")
    assert code == 405 and body["error"] == "use POST /v2/models/iris/infer"
    code, _ = _json(signed + "/v2/models/iris", "POST", b"{}")
    assert code == 405


def test_not_loaded_is_not_ready_and_infer_is_503(tmp_path: Path) -> None:
    srv = _serve(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"other bytes")  # digest mismatch: never loads
    with srv:
        base = f"http://127.0.0.1:{srv.port}"
        assert _json(base + "/v2/health/live") == (200, {"live": True})
        for path in ("/v2/health/ready", "/v2/models/iris/ready"):
            code, body = _json(base + path)
            assert code == 503 and body["ready"] is False and "does not match" in body["error"], body
        code, body = _json(base + "/v2/models/iris/infer", "POST", _infer_body(ROWS))
        assert code == 503 and "not loaded" in body["error"]


def test_metadata_without_a_signature_names_the_score_output(plain: str) -> None:
    code, meta = _json(plain + "/v2/models/iris")
    assert code == 200 and meta["inputs"] == []
    assert meta["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [-1]}]


# ------------------------------------------------------------------------------------------ infer
def test_infer_answers_per_the_protocol_and_per_row(signed: str) -> None:
    code, ans = _json(signed + "/v2/models/iris/infer", "POST", _infer_body(ROWS, id="req-1"))
    assert code == 200, ans
    assert (ans["model_name"], ans["model_version"], ans["id"]) == ("iris", "1.2.0", "req-1")
    assert ans["parameters"] == {"sha256": SHA, "hostname": "pod-a", "variant": "main"}
    out = {o["name"]: o for o in ans["outputs"]}
    assert (out["predict"]["datatype"], out["predict"]["shape"]) == ("INT64", [2, 1])
    assert (out["proba"]["datatype"], out["proba"]["shape"]) == ("FP32", [2, 3])
    assert all(isinstance(v, int) for v in out["predict"]["data"])
    # the same row gets the same answer alone or in a batch; another row another one
    code, one = _json(signed + "/v2/models/iris/infer", "POST", _infer_body(ROWS[1:]))
    assert code == 200 and "id" not in one
    solo = {o["name"]: o["data"] for o in one["outputs"]}
    assert solo["proba"] == out["proba"]["data"][3:] and solo["predict"] == out["predict"]["data"][1:]
    assert out["proba"]["data"][:3] != out["proba"]["data"][3:]


def test_requested_outputs_only_in_their_order(signed: str) -> None:
    body = _infer_body(ROWS, outputs=[{"name": "proba"}])
    code, ans = _json(signed + "/v2/models/iris/infer", "POST", body)
    assert code == 200 and [o["name"] for o in ans["outputs"]] == ["proba"]
    code, err = _json(signed + "/v2/models/iris/infer", "POST", _infer_body(ROWS, outputs=[{"name": "x"}]))
    assert code == 400 and "unknown output 'x'" in err["error"]


def test_without_a_signature_any_input_gets_one_score_per_row(plain: str) -> None:
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "INT32", "data": [1, 2, 3]}]}
    code, ans = _json(plain + "/v2/models/iris/infer", "POST", json.dumps(body).encode())
    assert code == 200
    (score,) = ans["outputs"]
    assert (score["name"], score["datatype"], score["shape"]) == ("score", "FP64", [3])
    assert all(0 <= v < 1 for v in score["data"]) and len(set(score["data"])) == 3


WRONG = [
    (b"{not json", "not JSON"),
    (b"[]", "non-empty list of inputs"),
    (json.dumps({"inputs": []}).encode(), "non-empty list of inputs"),
    (_infer_body([[1.0, 2.0, 3.0, 4.0]]).replace(b'"shape": [1, 4]', b'"shape": "1x4"'), "shape must be"),
    (_infer_body([[1.0, 2.0, 3.0, 4.0]]).replace(b'"shape": [1, 4]', b'"shape": [2, 4]'), "holds 8 elements"),
    (_infer_body([[1.0, 2.0, 3.0, 4.0]]).replace(b'"FP64"', b'"FP99"'), "unknown datatype"),
    (_infer_body([[1.0, 2.0, 3.0, 4.0]]).replace(b"1.0", b'"a"'), "does not match datatype"),
    (
        _infer_body([[1.0, 2.0, 3.0]]).replace(b'"shape": [1, 4]', b'"shape": [1, 3]'),
        "the model takes [-1, 4]",
    ),
    (_infer_body(ROWS).replace(b'"FP64"', b'"FP32"'), "the model takes FP64"),
    (_infer_body(ROWS, name="x"), "input 'features' is missing"),
]


@pytest.mark.parametrize(("body", "message"), WRONG, ids=[m for _, m in WRONG])
def test_a_wrong_request_is_400_with_an_error_body(signed: str, body: bytes, message: str) -> None:
    code, headers, data = _request(signed + "/v2/models/iris/infer", "POST", body)
    answer = json.loads(data)
    assert (code, headers["content-type"], set(answer)) == (400, "application/json", {"error"}), answer
    assert message in answer["error"], answer


def test_an_extra_input_is_400(signed: str) -> None:
    req = json.loads(_infer_body(ROWS))
    req["inputs"].append({"name": "more", "shape": [1], "datatype": "FP64", "data": [1.0]})
    code, err = _json(signed + "/v2/models/iris/infer", "POST", json.dumps(req).encode())
    assert code == 400 and "unexpected input 'more'" in err["error"]


# ------------------------------------------------------------------------------------ faults, metrics
def test_faults_apply_to_infer_and_count_as_predictions(tmp_path: Path) -> None:
    with _serve(tmp_path, signature=SIGNATURE, faults=Faults(error_rate=0.5)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        codes = [_json(base + "/v2/models/iris/infer", "POST", _infer_body(ROWS))[0] for _ in range(10)]
        assert codes.count(500) == 5 and codes.count(200) == 5, codes
        # a wrong request is refused before the faults: 400, never an injected 500, and not counted in
        # the schedule (the next two are one 500 and one 200 again)
        assert _json(base + "/v2/models/iris/infer", "POST", b"{}")[0] == 400
        pair = sorted(_json(base + "/v2/models/iris/infer", "POST", _infer_body(ROWS))[0] for _ in range(2))
        assert pair == [200, 500]
        _wait("the counters", lambda: _value(base, "modelserver_requests_total", handler="predict") == 13)
        assert _value(base, "modelserver_requests_total", handler="predict", code="500") == 6
        assert _value(base, "modelserver_requests_total", handler="predict", code="400") == 1
        assert _value(base, "modelserver_request_errors_total", handler="predict", reason="bad_request") == 1


def test_latency_applies_to_infer(tmp_path: Path) -> None:
    import time

    with _serve(tmp_path, faults=Faults(latency_ms=300)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        t0 = time.perf_counter()
        assert _json(base + "/v2/models/iris/infer", "POST", _infer_body(ROWS))[0] == 200
        assert time.perf_counter() - t0 >= 0.3
        t0 = time.perf_counter()
        assert _json(base + "/v2/models/iris", "GET")[0] == 200  # metadata is no prediction: no latency
        assert time.perf_counter() - t0 < 0.3


def test_the_health_path_may_be_the_protocols(tmp_path: Path) -> None:
    with _serve(tmp_path, health_path="/v2/health/ready") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        assert _json(base + "/v2/health/ready") == (200, {"ready": True})
        srv.draining = True
        assert _json(base + "/v2/health/ready") == (503, {"ready": False, "error": "draining"})
        assert _json(base + "/v2/models/iris/ready")[0] == 503


# ------------------------------------------------------------------------------------------ signatures
def test_signature_dtypes_are_spelled_the_protocols_way() -> None:
    assert [
        oip.datatype_of(d) for d in ("float", "double", "long", "integer", "string", "bool", "uint8")
    ] == [
        "FP32",
        "FP64",
        "INT64",
        "INT32",
        "BYTES",
        "BOOL",
        "UINT8",
    ]
    with pytest.raises(ValueError, match="unknown tensor dtype"):
        oip.datatype_of("complex128")


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"inputs": [{"dtype": "float32", "shape": [1]}]}',
        '{"inputs": [{"name": "a", "dtype": "float32", "shape": [-2]}]}',
        '{"inputs": [{"name": "a", "dtype": "float32"}, {"name": "a", "dtype": "int64"}]}',
    ],
    ids=["not-an-object", "no-name", "bad-shape", "repeated"],
)
def test_a_bad_signature_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        oip.parse_signature(text)


def test_answers_are_not_held_back_by_nagles_algorithm(plain: str) -> None:
    """Keep-alive answers leave at once: without TCP_NODELAY the body (a second write after the
    headers) waited for the client's delayed ACK, 40 ms per answer."""
    import http.client
    import time
    from urllib.parse import urlparse

    from modelversioning.modelserver.server import _MainHandler

    assert _MainHandler.disable_nagle_algorithm is True
    url = urlparse(plain)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    took = []
    for _ in range(21):
        t0 = time.perf_counter()
        conn.request(
            "POST",
            "/v2/models/iris/infer",
            body=_infer_body(ROWS),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        took.append(time.perf_counter() - t0)
    conn.close()
    assert sorted(took)[10] < 0.035, sorted(took)
