#!/usr/bin/env python3
"""Open Inference Protocol through the gateway: MLServer (a scikit-learn model trained here) against the
reference model server, on the real node behind Traefik (e2e harness).

    python bench/oip.py [--requests 1000] [--rate 50]
    ./dev bench --only oip [--oip-requests N --oip-rate R]   (results in its JSON)

For each runtime, one endpoint with one version (1 replica), on a host of its own:
- apply to first correct prediction: from the creation of the ModelEndpoint (the version already
  verified) to the first OIP answer through Traefik that is correct (MLServer: the estimator's own
  prediction for an iris row; the reference server: the answer its rules give for that request and
  the artifact's digest, computed here), asked every 100 ms with Triton's HTTP client;
- request latency: ``--requests`` inference requests (one iris row each) paced at ``--rate`` per second
  (open loop: each is sent at its scheduled time, or at once when the previous one ran late), one
  keep-alive connection, timed at the client (Triton's HTTP client); p50 / p99 and the errors.

Printed, never asserted. Needs root (the real node), like the e2e tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from dataplane import environment, fmt, namespace, stats  # noqa: E402

from dataplane_harness import DataPlane  # noqa: E402
from helpers import Objects, cond_is, model_version, wait_for  # noqa: E402
from images import OPERATOR_IMAGE  # noqa: E402
from mlserver_models import iris, oip_body, oip_client, register, train  # noqa: E402
from modelversioning.modelserver import oip  # noqa: E402
from test_dataplane import endpoint  # noqa: E402

NS = "bench-oip"
MODEL = "iris"
REFERENCE = "reference"


def _log(msg: str) -> None:
    print(f"[bench oip] {msg}", file=sys.stderr, flush=True)


def _mlserver_version(dp: DataPlane, objs: Objects, workdir: Path) -> Callable[[dict[str, Any]], bool]:
    """The MLServer version registered (the CLI's YAML, its runtime filled in); returns the check of a
    correct answer (the estimator's prediction of the first iris row)."""
    trained = train("base")
    objs.create(register(dp, dp.cluster.kubeconfig, objs.ns, MODEL, "1.0.0", trained.data, workdir))
    x, _ = iris()
    want = trained.estimator.predict(x[:1]).tolist()
    return lambda ans: [o["data"] for o in ans["outputs"] if o["name"] == "predict"] == [want]


def _reference_version(dp: DataPlane, objs: Objects) -> Callable[[dict[str, Any]], bool]:
    """The reference server's version; a correct answer is the one its rules give (modelserver.oip)."""
    data = b"reference weights for the OIP benchmark\n"
    uri, sha = dp.art.put(f"{objs.ns}/{REFERENCE}/1.0.0/model.bin", data)
    mv = model_version(REFERENCE, "1.0.0", uri, sha, stage="production")
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE,
        "command": ["modelversioning", "model-server"],
        "port": 8080,
        "healthPath": "/v2/health/ready",
    }
    objs.create(mv)
    x, _ = iris()
    want = oip.infer(oip.parse_infer(oip_body(x[:1]), None), sha, REFERENCE, "1.0.0", None)["outputs"]
    return lambda ans: ans["outputs"] == want


def _ask(client: Any, host: str, model: str, x: Any) -> tuple[int, dict[str, Any] | None]:
    """One inference with Triton's HTTP client: (HTTP status, the answer when 200)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=False)  # JSON: Triton's binary extension is Triton's
    try:
        return 200, dict(client.infer(model, [inp], headers={"Host": host}).get_response())
    except InferenceServerException as e:
        return int(e.status()) if str(e.status() or "").isdigit() else -1, None


def first_correct(
    dp: DataPlane, objs: Objects, model: str, correct: Callable[[dict[str, Any]], bool]
) -> float:
    """Seconds from the endpoint's creation to the first correct answer through the gateway."""
    wait_for(
        lambda: cond_is(objs.mv(f"{model}-v1.0.0"), "ArtifactVerified", "True"), 120, f"{model} verified"
    )
    host = f"{model}.{objs.ns}.models.example.com"
    row = iris()[0][:1]
    client = oip_client(dp.gw)
    t0 = time.monotonic()
    objs.create(
        endpoint(replace(dp, host=host), model, model, [{"name": "main", "version": "1.0.0", "weight": 100}])
    )

    def ok() -> bool:
        try:
            status, ans = _ask(client, host, model, row)
        except Exception:  # noqa: BLE001 - not routed or not listening yet
            return False
        return status == 200 and ans is not None and correct(ans)

    wait_for(ok, 600, f"a correct answer from {model}", interval=0.1)
    return time.monotonic() - t0


def latency(dp: DataPlane, objs: Objects, model: str, requests: int, rate: float) -> dict[str, Any]:
    """``requests`` paced at ``rate``/s over one connection: latency stats and the non-200 answers."""
    host = f"{model}.{objs.ns}.models.example.com"
    row = iris()[0][:1]
    client = oip_client(dp.gw)
    times: list[float] = []
    errors = 0
    t0 = time.monotonic()
    for i in range(requests):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        try:
            status, _ = _ask(client, host, model, row)
        except Exception:  # noqa: BLE001 - counted, not fatal
            status = -1
        times.append(time.monotonic() - sent)
        errors += status != 200
    elapsed = time.monotonic() - t0
    return {**stats(times), "errors": errors, "achieved_rate": round(requests / elapsed, 1)}


def run(dp: DataPlane, requests: int, rate: float, log: Callable[[str], None] = _log) -> dict[str, Any]:
    objs = namespace(dp, NS)
    workdir = Path(dp.art.root) / "bench-oip-work"
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"requests": requests, "rate": rate}
    for name, model, setup in (
        ("mlserver", MODEL, lambda: _mlserver_version(dp, objs, workdir)),
        ("reference", REFERENCE, lambda: _reference_version(dp, objs)),
    ):
        correct = setup()
        ttfp = first_correct(dp, objs, model, correct)
        log(f"{name}: first correct prediction {ttfp:.1f}s after the endpoint was applied")
        lat = latency(dp, objs, model, requests, rate)
        lat.pop("samples_ms")
        out[name] = {"apply_to_first_correct_s": round(ttfp, 1), "latency": lat}
        log(f"{name}: {fmt(lat)}, {lat['errors']} errors, {lat['achieved_rate']}/s")
    report(out)
    return out


def report(out: dict[str, Any]) -> None:
    print(f"OIP through Traefik, {out['requests']} requests at {out['rate']:g}/s (numbers, not assertions):")
    for name in ("mlserver", "reference"):
        sec = out.get(name)
        if sec:
            lat = sec["latency"]
            print(
                f"  {name:<10} apply -> first correct prediction {sec['apply_to_first_correct_s']:.1f} s; "
                f"latency {fmt(lat)}, {lat['errors']} errors, {lat['achieved_rate']}/s achieved"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000, help="inference requests per runtime")
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    with environment() as dp:
        out = run(dp, args.requests, args.rate)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
