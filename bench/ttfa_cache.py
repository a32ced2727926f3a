"""The node cache's part of the time-to-first-answer benchmark (issue 26): cold against cached start of
one size, and the hit ratio of a scale-up, on the real data plane with the chart's node cache agent
(e2e/node_cache_agent.py: the DaemonSet rendered by helm, the operator told its port).

    ./dev bench --only ttfa [--ttfa-cache-mib 256 --ttfa-cache-replicas 10 --ttfa-cache-oci 1]
                                                                         (0 MiB: skipped)

* cold: the endpoint is created with one replica of a verified version whose digest no node holds: the
  init container misses, fetches from the artifact server, verifies, and offers the files to the agent.
* cached: the variant goes to 2 replicas: the new pod's init container is served by the agent.
* scale-up: back to 1, then to ``replicas``: how many of the new pods' init containers hit.

With ``--ttfa-cache-oci 1`` (:func:`run_oci`) the same three steps run for an ``oci://`` version: an
ORAS artifact (one layer, the model file) in the harness's real registry (docker-registry) on the node's
address, the operator allowed ``oci`` for the part; the registry's access log gives the layer requests
of each step (``origin_requests``: the origin's load, which the cache is there to take away).

Times are from the API write (create / scale) to the pods Ready, and the init containers' own
``node-cache: ... in X s`` lines. Printed, never asserted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from statistics import median
from typing import Any

from ttfa import artifact

from dataplane_harness import DataPlane
from helpers import Objects, model_version, wait_for
from images import OPERATOR_IMAGE
from modelversioning.api.wire import LABEL_MODEL
from node_cache_agent import init_logs, installed

MODEL = EP = "ttfacache"
OCI_VERSION = "2.0.0"  # another number than the http part's: a version number always means the same weights
TIMEOUT = 900.0
ANSWERS = ("hit", "corrupt", "miss", "refused", "unreachable", "skipped")
_LINE = re.compile(r"node-cache: (\w+) sha256:\w+ in ([0-9.]+)s")


def _pods(objs: Objects) -> list[Any]:
    return list(objs.core.list_namespaced_pod(objs.ns, label_selector=f"{LABEL_MODEL}={MODEL}").items)


def _ready(objs: Objects) -> list[Any]:
    pods = _pods(objs)
    return [
        p for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]  # fmt: skip


def _all_pods(objs: Objects) -> int:
    return len(
        objs.core.list_namespaced_pod(objs.ns, label_selector=f"modelversioning.io/model={MODEL}").items
    )


def _scale(objs: Objects, replicas: int, version: str = "1.0.0") -> float:
    """Seconds from the scale write to exactly ``replicas`` Ready pods (and no other)."""
    t0 = time.monotonic()
    variant = {"name": "main", "version": version, "weight": 100, "replicas": replicas}
    objs.patch_mep(EP, {"spec": {"variants": [variant]}})
    wait_for(
        lambda: len(_ready(objs)) == replicas and _all_pods(objs) == replicas,
        TIMEOUT,
        f"{replicas} Ready",
        0.05,
    )
    return time.monotonic() - t0


def _outcome(objs: Objects, pod: Any) -> dict[str, Any]:
    return outcome_of(init_logs(objs.core, objs.ns, pod))


def outcome_of(log: str) -> dict[str, Any]:
    """What an init container logged: the cache's answer and its time, the offer's, the verification's."""
    lines = {m.group(1): float(m.group(2)) for m in _LINE.finditer(log)}
    report = next((json.loads(ln) for ln in reversed(log.splitlines()) if ln.startswith("{")), {})
    what = next((w for w in ANSWERS if w in lines), "?")
    return {
        "cache": what,
        "lookup_s": lines.get(what),
        "offer_s": lines.get("offered"),
        "verify_s": report.get("durationSeconds"),
    }


def _version(url: str, sha: str, size: int, version: str = "1.0.0") -> dict[str, Any]:
    mv = model_version(MODEL, version, url, sha, stage="production")
    mv["spec"]["artifact"]["sizeBytes"] = size
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"], "port": 8080,
        "healthPath": "/healthz",
    }  # fmt: skip
    return mv


def run(
    dp: DataPlane, objs: Objects, mib: float, replicas: int, log: Callable[[str], None]
) -> dict[str, Any]:
    url, sha, size = artifact(dp, "node-cache.bin", mib)
    try:
        return _run(dp, objs, _version(url, sha, size), size, mib, replicas, log, lambda: None)
    finally:
        (dp.art.root / "ttfa" / "node-cache.bin").unlink(missing_ok=True)


def run_oci(
    dp: DataPlane, objs: Objects, mib: float, replicas: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """:func:`run` for an ``oci://`` version in a real registry on the node's address."""
    import os
    import tempfile
    from pathlib import Path

    import yaml

    from node import NODE_IP
    from oci_registry import RegistryServer, push_oras

    size = int(mib * (1 << 20))
    op = dp.operator
    before = op.config.read_text()
    cfg = yaml.safe_load(before) or {}
    artifacts = cfg.setdefault("artifacts", {})
    artifacts["allowedSchemes"] = ["s3", "gs", "gcs", "https", "http", "file", "oci"]  # as test_oci_e2e
    artifacts["plainHttpRegistries"] = [NODE_IP]
    with (
        tempfile.TemporaryDirectory(prefix="ttfa-oci-") as root,
        RegistryServer.start(Path(root), host=NODE_IP) as reg,
    ):
        pushed = push_oras(reg.url, f"{objs.ns}/{MODEL}", {"model.bin": os.urandom(size)}, tag=OCI_VERSION)
        uri = f"oci://{reg.netloc}/{objs.ns}/{MODEL}:{OCI_VERSION}@{pushed.digest}"
        layer = f"/blobs/{pushed.layers[0]}"
        op.config.write_text(yaml.safe_dump(cfg))
        op.restart()
        try:
            mv = _version(uri, pushed.hex, pushed.size, OCI_VERSION)
            out = _run(dp, objs, mv, size, mib, replicas, log,
                       lambda: sum(1 for ln in reg.access_log() if layer in ln))  # fmt: skip
        finally:
            op.config.write_text(before)
            op.restart()
    return {"source": "oci", **out}


def _run(
    dp: DataPlane,
    objs: Objects,
    mv: dict[str, Any],
    size: int,
    mib: float,
    replicas: int,
    log: Callable[[str], None],
    origin_requests: Callable[[], int | None],
) -> dict[str, Any]:
    version = str(mv["spec"]["version"])
    with installed(dp, objs.api, max_bytes=max(4 * size, 64 << 20)):
        objs.create(mv)
        wait_for(lambda: _verified(objs, version), TIMEOUT, "the version verified")
        from test_dataplane import endpoint

        ep = endpoint(dp, EP, MODEL, [{"name": "main", "version": version, "weight": 100, "replicas": 1}])
        n0 = origin_requests()
        t0 = time.monotonic()
        objs.create(ep)
        wait_for(lambda: len(_ready(objs)) == 1, TIMEOUT, "the first pod Ready", 0.05)
        cold = {"ready_s": round(time.monotonic() - t0, 2), **_outcome(objs, _ready(objs)[0])}
        n1 = origin_requests()
        known = {p.metadata.name for p in _ready(objs)}
        cached_s = _scale(objs, 2, version)
        (second,) = [p for p in _ready(objs) if p.metadata.name not in known]
        cached = {"ready_s": round(cached_s, 2), **_outcome(objs, second)}
        n2 = origin_requests()
        _scale(objs, 1, version)
        known = {p.metadata.name for p in _ready(objs)}
        n3 = origin_requests()
        up_s = _scale(objs, replicas, version)
        n4 = origin_requests()
        new = [_outcome(objs, p) for p in _ready(objs) if p.metadata.name not in known]
        hits = sum(1 for o in new if o["cache"] == "hit")
        if n0 is not None and n1 is not None and n2 is not None and n3 is not None and n4 is not None:
            cold["origin_requests"], cached["origin_requests"] = n1 - n0, n2 - n1
            scale_requests: int | None = n4 - n3
        else:
            scale_requests = None
        objs.co.delete_namespaced_custom_object(
            "modelversioning.io", "v1alpha1", objs.ns, "modelendpoints", EP
        )
        wait_for(lambda: _all_pods(objs) == 0, TIMEOUT, "the pods gone")
        objs.delete_mv(f"{MODEL}-v{version}")
    out = {
        "mib": mib,
        "cold": cold,
        "cached": cached,
        "scale_up": {
            "replicas": replicas, "new_pods": len(new), "hits": hits,
            "hit_ratio": round(hits / len(new), 3) if new else None, "all_ready_s": round(up_s, 2),
            "lookup_s_median": _median([o["lookup_s"] for o in new if o["cache"] == "hit"]),
            "origin_requests": scale_requests,
        },
    }  # fmt: skip
    log(f"ttfa node cache ({mib:g} MiB, {mv['spec']['artifact']['uri'].split(':', 1)[0]}): cold {cold} / "
        f"cached {cached}")  # fmt: skip
    log(f"ttfa node cache: scale-up 1 -> {replicas}: {hits}/{len(new)} hits, all Ready in {up_s:.2f} s")
    return out


def _verified(objs: Objects, version: str) -> bool:
    conds = (objs.mv(f"{MODEL}-v{version}").get("status") or {}).get("conditions") or []
    return any(c.get("type") == "ArtifactVerified" and c.get("status") == "True" for c in conds)


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(median(vals), 3) if vals else None
