"""Time to first answer on the real data plane (bench/dataplane.py's environment: a real node, Traefik,
Prometheus, the artifact server and the operator).

    ./dev bench --only ttfa [--ttfa-sizes 10,256,1024] [--ttfa-replicas 5]

For each size a random file is written under the artifact server's directory (a ttfa/ directory
removed at the end). Then, on the endpoint ``ttfa`` (one variant, one replica, serving the previous
version), from the API create of a new ModelVersion and the endpoint change that serves it, to the
first 2xx through Traefik whose x-model-version is the new version; and, beside it, a plain Deployment
(bench/ttfa_plain.py: our pod template with a urllib download instead of our init container, a plain
Service and HTTPRoute on the same Gateway) rolled to the same file, to its first answer by the new
version. The two alternate which goes first. Every watch event of the namespace's pods,
ModelVersions and HTTPRoutes and every answer of the polling client is recorded (the records file),
and bench/ttfa_phases.py turns them into the phase table. Then, at the middle size, a scale-up of
the serving version from 1 to ``replicas`` pods (ours: the variant's replicas; plain: the
Deployment's), until every pod is Ready and each has answered through the gateway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ttfa_phases as tp
from ttfa_plain import VERSION_LABEL, plain_objects
from ttfa_record import POLL_INTERVAL, Poller, Recorder

from dataplane_harness import DataPlane
from helpers import Objects, cond_is, model_version, wait_for
from images import OPERATOR_IMAGE
from modelversioning.api.wire import LABEL_MODEL_VERSION

NS = "bench-ttfa"
MODEL = EP = "ttfa"
PLAIN = "ttfa-plain"
HOST, PLAIN_HOST = "ttfa.bench.example.com", "ttfa-plain.bench.example.com"
STAGE = "production"
TIMEOUT = 900.0  # one side of one size, 1 GiB on a loaded 2-core machine included


# ---------------------------------------------------------------------------------------- objects
def artifact(dp: DataPlane, name: str, mib: float) -> tuple[str, str, int]:
    """A file of random bytes under the artifact server's ttfa/ directory: (url, sha256, size)."""
    size = int(mib * (1 << 20))
    h, left = hashlib.sha256(), size
    path = dp.art.root / "ttfa" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        while left:
            chunk = os.urandom(min(left, 4 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return f"{dp.art.base}/ttfa/{name}", h.hexdigest(), size


def version_object(version: str, url: str, sha: str, size: int) -> dict[str, Any]:
    mv = model_version(MODEL, version, url, sha, stage=STAGE)
    mv["spec"]["artifact"]["sizeBytes"] = size
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE,
        "command": ["modelversioning", "model-server"],
        "port": 8080,
        "healthPath": "/healthz",
    }
    return mv


def variants(version: str, replicas: int = 1) -> list[dict[str, Any]]:
    return [{"name": "main", "version": version, "weight": 100, "replicas": replicas}]


def endpoint_object(dp: DataPlane, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": EP},
        "spec": {
            "model": MODEL,
            "variants": variants(version),
            "routing": {"router": "gatewayAPI", "hosts": [HOST], "parentRefs": [dp.gw.parent_ref()]},
            "placement": dp.placement,
        },
    }


def rendered(ep: dict[str, Any], mv: dict[str, Any], serving: dict[str, Any]) -> dict[str, Any]:
    """Our Deployment for `mv` as the operator renders it (the plain baseline's pod template)."""
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.api.settings import Serving
    from modelversioning.render.deployment import render_deployment
    from modelversioning.render.values import EndpointRef

    spec = ModelEndpointSpec.model_validate({**ep["spec"], "variants": variants(mv["spec"]["version"])})
    version = ModelVersionSpec.model_validate(mv["spec"])
    ref = EndpointRef(EP, NS, "00000000-0000-0000-0000-000000000000")
    return render_deployment(ref, spec, spec.variants[0], version, Serving.model_validate(serving))


class Sides:
    """Ours (the endpoint) and the plain Deployment in one namespace, with the recorders and the
    objects' current versions."""

    def __init__(self, dp: DataPlane, objs: Objects, serving: dict[str, Any]) -> None:
        self.dp, self.objs, self.serving = dp, objs, serving
        self.ep: dict[str, Any] = {}
        self.pods = Recorder(objs.core.list_namespaced_pod, NS)
        self.mvs = Recorder(
            objs.co.list_namespaced_custom_object, "modelversioning.io", "v1alpha1", NS, "modelversions"
        )
        self.routes = Recorder(
            objs.co.list_namespaced_custom_object, "gateway.networking.k8s.io", "v1", NS, "httproutes"
        )

    def start(self, version: str, url: str, sha: str, size: int) -> None:
        """Both sides serving `version`, answering through Traefik."""
        mv = version_object(version, url, sha, size)
        self.objs.create(mv)
        self.ep = endpoint_object(self.dp, version)
        self.objs.create(self.ep)
        dep, svc, route = self._plain(mv, url)
        self.objs.apps.create_namespaced_deployment(NS, dep)
        self.objs.core.create_namespaced_service(NS, svc)
        self.objs.co.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NS, "httproutes", route
        )
        wait_for(lambda: cond_is(self.objs.mep(EP), "Ready", "True"), 300, "the ttfa endpoint Ready")
        for host in (HOST, PLAIN_HOST):
            with Poller(self.dp, host) as p:
                t0 = time.time()
                wait_for(lambda p=p, t0=t0: p.answered(version, t0), 120, f"{host} answering {version}")

    def _plain(self, mv: dict[str, Any], url: str, replicas: int = 1) -> tuple[dict[str, Any], ...]:
        ours = rendered(self.ep, mv, self.serving)
        return plain_objects(
            ours,
            PLAIN,
            NS,
            mv["spec"]["version"],
            url,
            PLAIN_HOST,
            self.dp.gw.parent_ref(),
            replicas=replicas,
        )

    # -- the changes measured: each returns t0, the wall time just before its first API write
    def ours_to(self, mv: dict[str, Any]) -> float:
        body = json.loads(json.dumps(mv))  # the client may fill in what it sends
        t0 = time.time()
        self.objs.create(body)
        self.objs.patch_mep(EP, {"spec": {"variants": variants(mv["spec"]["version"])}})
        return t0

    def plain_to(self, mv: dict[str, Any], url: str) -> float:
        dep = self._plain(mv, url)[0]
        live = self.objs.apps.read_namespaced_deployment(PLAIN, NS)
        body = self.objs.api.sanitize_for_serialization(live)
        body["spec"]["template"] = dep["spec"]["template"]
        t0 = time.time()
        self.objs.apps.replace_namespaced_deployment(PLAIN, NS, body)
        return t0

    def ours_scale(self, version: str, replicas: int) -> float:
        t0 = time.time()
        self.objs.patch_mep(EP, {"spec": {"variants": variants(version, replicas)}})
        return t0

    def plain_scale(self, replicas: int) -> float:
        t0 = time.time()
        self.objs.apps.patch_namespaced_deployment_scale(PLAIN, NS, {"spec": {"replicas": replicas}})
        return t0

    def quiet(self, pods: int, timeout: float = 300) -> None:
        """Nothing left over from the last change: `pods` pods, all Ready, none terminating, and two
        Deployments (the endpoint's one slot and the plain one)."""

        def settled() -> bool:
            ps = self.objs.core.list_namespaced_pod(NS).items
            deps = self.objs.apps.list_namespaced_deployment(NS).items
            ready = [
                p
                for p in ps
                if not p.metadata.deletion_timestamp
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            return len(ps) == len(ready) == pods and len(deps) == 2

        wait_for(settled, timeout, f"the namespace quiet ({pods} pods Ready, none terminating)", 0.5)


def _runtime(dp: DataPlane, pods: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The container runtime's own start and finish times (nanoseconds) of the recorded pods'
    containers (crictl inspect on the real node)."""
    ids = set()
    for ev in pods:
        st = ev["object"].get("status") or {}
        for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
            if cs.get("containerID"):
                ids.add(cs["containerID"].partition("://")[2])
    out: dict[str, dict[str, str]] = {}
    for cid in sorted(ids):
        with contextlib.suppress(Exception):
            st = json.loads(dp.node.crictl("inspect", cid, timeout=30))["status"]
            out[cid] = {
                k: st[k] for k in ("startedAt", "finishedAt") if not str(st.get(k, "0001")).startswith("0001")
            }
    return out


def _record(
    s: Sides,
    t0: float,
    version: str,
    selector: dict[str, str],
    size: int,
    ours: bool,
    samples: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the phases read of one measured change: every event of the version's pods (a scale-up
    counts the pod that was there before), the ModelVersions' and routes' since t0, the answers."""
    pods = [e for e in s.pods.since(0.0) if tp.labels_match(e["object"], selector)]
    rec: dict[str, Any] = {
        "t0": t0,
        "version": version,
        "selector": selector,
        "stage": STAGE,
        "bytes": size,
        "pods": pods,
        "samples": samples,
        "runtime": _runtime(s.dp, pods),
    }
    if ours:
        rec["mvs"], rec["routes"] = s.mvs.since(t0), s.routes.since(t0)
    rec["logs"] = {n: _server_log(s.objs, n) for n in tp.pod_names(pods, selector, t0)}
    return rec


def _server_log(objs: Objects, pod: str) -> list[str]:
    """The model server's first log lines, each with the runtime's timestamp."""
    try:
        text = objs.core.read_namespaced_pod_log(pod, NS, container="model-server", timestamps=True)
    except Exception:  # noqa: BLE001 - a pod gone meanwhile: no "loaded" milestone
        return []
    return str(text).splitlines()[:40]


def selector(ours: bool, version: str) -> dict[str, str]:
    return {LABEL_MODEL_VERSION: version} if ours else {VERSION_LABEL: version}


def one_side(s: Sides, ours: bool, mv: dict[str, Any], url: str, size: int) -> dict[str, Any]:
    """One cold change to a new version, recorded until the first answer by that version."""
    version = mv["spec"]["version"]
    with Poller(s.dp, HOST if ours else PLAIN_HOST) as p:
        t0 = s.ours_to(mv) if ours else s.plain_to(mv, url)
        wait_for(lambda: p.answered(version, t0), TIMEOUT, f"the first answer of {version}", 0.05)
        time.sleep(0.5)  # the watch events of that moment
    return _record(s, t0, version, selector(ours, version), size, ours, p.since(t0))


def scale_side(s: Sides, ours: bool, version: str, size: int, replicas: int) -> dict[str, Any]:
    with Poller(s.dp, HOST if ours else PLAIN_HOST) as p:
        t0 = s.ours_scale(version, replicas) if ours else s.plain_scale(replicas)

        def answering() -> bool:
            hosts = {x["hostname"] for x in p.since(t0) if tp.answered_by(x) == version}
            return len(hosts) >= replicas

        wait_for(answering, TIMEOUT, f"{replicas} pods answering", 0.05)
        time.sleep(0.5)
    return _record(s, t0, version, selector(ours, version), size, ours, p.since(t0))


# ---------------------------------------------------------------------------------------------- run
def run(
    dp: DataPlane,
    objs: Objects,
    serving: dict[str, Any],
    sizes_mib: list[float],
    replicas: int,
    log: Callable[[str], None],
    records: Path | None = None,
) -> dict[str, Any]:
    """Both sides for each size (cold), then the scale-up at the middle size; the phase tables printed
    and returned, every recorded event and answer written to `records`."""
    out: dict[str, Any] = {
        "sizes_mib": sizes_mib,
        "replicas": replicas,
        "poll_interval_s": POLL_INTERVAL,
        "sizes": [],
    }
    raw: dict[str, Any] = {"sizes": []}
    s = Sides(dp, objs, serving)
    try:
        _sizes(s, sizes_mib, replicas, log, out, raw)
    except Exception as e:  # noqa: BLE001 - keep what was measured: the section reports the error
        log(f"ttfa FAILED: {e!r}\n{traceback.format_exc()}")
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(dp.art.root / "ttfa", ignore_errors=True)
        if records is not None:
            records.parent.mkdir(parents=True, exist_ok=True)
            records.write_text(json.dumps(raw))
            out["records"] = str(records)
    print("\n".join(tp.report_lines(out)))
    return out


def _sizes(
    s: Sides,
    sizes_mib: list[float],
    replicas: int,
    log: Callable[[str], None],
    out: dict[str, Any],
    raw: dict[str, Any],
) -> None:
    with s.pods, s.mvs, s.routes:
        s.start("1.0.0", *artifact(s.dp, "1.0.0.bin", 1 / 256))
        s.quiet(2)
        for i, mib in enumerate(sizes_mib):
            version = f"1.{i + 1}.0"
            order = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")
            size, recs, entry = _one_size(s, mib, version, order, log)
            raw["sizes"].append({"mib": mib, **recs})
            out["sizes"].append(entry)
            if i == len(sizes_mib) // 2 and replicas > 1:
                raw["scale_up"], out["scale_up"] = scale_up(s, order, version, mib, size, replicas, log)


def _one_size(
    s: Sides, mib: float, version: str, order: tuple[str, ...], log: Callable[[str], None]
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Both sides, cold, to a new version whose file is `mib` MiB: (size, records, summary)."""
    url, sha, size = artifact(s.dp, f"{version}.bin", mib)
    mv = version_object(version, url, sha, size)
    load = [round(os.getloadavg()[0], 2)]
    recs: dict[str, Any] = {}
    for side in order:
        log(f"ttfa: {mib:g} MiB, {side}: {version}")
        recs[side] = one_side(s, side == "ours", mv, url, size)
        s.quiet(2)
    load.append(round(os.getloadavg()[0], 2))
    entry = size_summary(mib, size, version, order, recs)
    entry["loadavg_1m"] = load
    log("\n".join(tp.table_lines(entry)))
    return size, recs, entry


def size_summary(
    mib: float, size: int, version: str, order: tuple[str, ...], recs: dict[str, Any]
) -> dict[str, Any]:
    ours, plain = tp.summarize(recs["ours"]), tp.summarize(recs["plain"])
    return {
        "mib": mib,
        "bytes": size,
        "version": version,
        "first": order[0],
        "ours": ours,
        "plain": plain,
        "ratio": tp.ratio(ours["phases_s"]["total"], plain["phases_s"]["total"]),
    }


def scale_up(
    s: Sides,
    order: tuple[str, ...],
    version: str,
    mib: float,
    size: int,
    replicas: int,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each side from 1 to `replicas` pods of the version it serves, then back to 1."""
    recs: dict[str, Any] = {}
    for side in order:
        ours = side == "ours"
        log(f"ttfa: scale-up of {version} ({mib:g} MiB), {side}: 1 -> {replicas}")
        recs[side] = scale_side(s, ours, version, size, replicas)
        if ours:
            s.ours_scale(version, 1)
        else:
            s.plain_scale(1)
        s.quiet(2)
    res = {side: tp.scale_up(recs[side], replicas) for side in order}
    summary = {
        "mib": mib,
        "version": version,
        **res,
        "ratio": tp.ratio(res["ours"]["all_answering_s"], res["plain"]["all_answering_s"]),
    }
    return {"mib": mib, **recs}, summary
