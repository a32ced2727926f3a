"""Signed oci:// models on the real data plane (issue 26, part 2): a real registry (docker-registry,
distribution 2.8, htpasswd: no referrers API, so signatures are found by the referrers tag schema) on the
real node's address, keys made here, signatures made by model-signing's own code through
`kubectl models register --sign-key` (a subprocess of the console script), real pods whose init
container (the operator image) verifies the manifest, the layers and the signature again, Traefik in
front, real requests.

A Model's trust policy requires a signature by its release key from the first stage:

* a version signed by the release key rolls out and answers (the operator and the pod both found the
  referrer and accepted it);
* an unsigned version is refused (ArtifactVerified False, SignatureMissing), no Deployment is made for
  it, and of 1,000 requests sent while the endpoint asks for it, none reach it: the signed version
  answers all;
* a version re-signed by a stranger's key is refused with SignerNotTrusted, the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import GROUP, VERSION, Objects, cond_is, wait_for
from images import OPERATOR_IMAGE
from oci_registry import Pushed, push_oras
from test_dataplane import endpoint, live_on, predict
from test_oci_e2e import SECRET, objs, registry  # noqa: F401 - the fixtures: the registry, its Secret

pytestmark = pytest.mark.timeout(1800)
BIN = Path(sys.executable).parent / "kubectl-models"
CLI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
MODEL = "ocisigned"
LINEAGE = [
    "--image", "registry.k8s.io/pause:3.10", "--dataset", "tx", "--dataset-version", "2024-09-30",
    "--metric", "auc=0.95", "--author", "jane", "--framework", "xgb",
    "--code-repository", "https://git.example.com/ml/fraud.git", "--code-commit", "3f9c2a1d8e4b5a6c7d8e",
]  # fmt: skip


def key_files(where: Path, name: str) -> tuple[Path, str]:
    """(the PEM private key file, the PEM public key) of a new ECDSA P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = where / f"{name}.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return path, key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()


def register(reg: tuple[Any, Any], o: Objects, tmp_path: Path, version: str, sign_key: Path | None) -> Pushed:
    """An ORAS artifact pushed as <ns>/<model>:<version>, registered by `kubectl models register` from its
    tag (signed with --sign-key: the bundle is pushed as a referrer, with your docker login), created with
    the registry Secret, the reference model server as runtime and stage production."""
    pull, push = reg
    # 64 KiB, not a few bytes: register records sizeBytes, and the model volume's emptyDir sizeLimit is
    # sizeBytes + 20 %, which the kubelet compares with disk usage in blocks (a 33-byte model's pod is
    # evicted: 'Usage of EmptyDir volume "model" exceeds the limit "40"'; render.deployment, reported)
    data = f"{MODEL} {version} weights {os.urandom(4).hex()}\n".encode().ljust(64 * 1024, b"#")
    pushed = push_oras(push.url, f"{o.ns}/{MODEL}", {"model.bin": data}, tag=version)
    login = tmp_path / f"docker-{version}"
    login.mkdir()
    (login / "config.json").write_text(pull.docker_config())
    argv = ["register", MODEL, version, "--artifact", f"oci://{pull.netloc}/{o.ns}/{MODEL}:{version}",
            "--plain-http", *LINEAGE, *(["--sign-key", str(sign_key)] if sign_key else [])]  # fmt: skip
    env = {**os.environ, "DOCKER_CONFIG": str(login), "COLUMNS": "250"}
    env.pop("KUBECONFIG", None)
    r = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    if sign_key:
        assert "signed (key, OpenSSF Model Signing)" in r.stderr and "tag schema sha256-" in r.stderr, (
            r.stderr
        )
    mv = yaml.safe_load(r.stdout)
    assert mv["spec"]["artifact"]["sha256"] == pushed.hex
    mv["spec"]["artifact"]["secretRef"] = {"name": SECRET}
    mv["spec"]["stage"] = "production"
    mv["spec"]["runtime"] = {
        "image": OPERATOR_IMAGE, "command": ["modelversioning", "model-server"], "port": 8080,
        "healthPath": "/healthz",
    }  # fmt: skip
    o.create(mv)
    return pushed


def trust_policy(o: Objects, public_pem: str) -> None:
    """The release key in a ConfigMap; the Model requires its signature from the first stage."""
    o.core.create_namespaced_config_map(
        o.ns, {"metadata": {"name": "release-key"}, "data": {"key.pub": public_pem}}
    )
    trust = {
        "requiredFrom": "candidate",
        "keys": [{"name": "release", "publicKeyRef": {"name": "release-key", "key": "key.pub"}}],
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": MODEL},
            "spec": {"trust": trust}}  # fmt: skip
    o.co.create_namespaced_custom_object(GROUP, VERSION, o.ns, "models", body)


def deployments_of(o: Objects, version: str) -> list[str]:
    found = o.apps.list_namespaced_deployment(o.ns, label_selector=f"{GROUP}/version={version}")
    return [d.metadata.name for d in found.items]


def pods_now(o: Objects) -> list[tuple[str, str, bool, int]]:
    """(name, created, ready, restarts) of the namespace's pods: what served while requests were sent."""
    out = []
    for p in o.core.list_namespaced_pod(o.ns).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        restarts = sum(c.restart_count for c in p.status.container_statuses or [])
        out.append((p.metadata.name, p.metadata.creation_timestamp.isoformat(), ready, restarts))
    return out


def thousand(dp, o: Objects, when: str) -> Counter[tuple[int, str | None]]:  # type: ignore[no-untyped-def]
    """1,000 requests through Traefik: (status, x-model-version) counted; what served them if any failed."""
    before = pods_now(o)
    rs = predict(dp, 1000)
    seen = Counter((r.status, r.headers.get("x-model-version")) for r in rs)
    print(f"1,000 requests {when}: {dict(seen)}")
    bad = [i for i, r in enumerate(rs) if r.status != 200]
    if bad:
        status = json.dumps(o.mep(MODEL).get("status"))[:2000]
        print(
            f"non-200 at requests {bad[0]}..{bad[-1]} ({len(bad)}); pods before {before}, after {pods_now(o)}"
        )
        print(f"deployments {deployments_of(o, '1.0.0')}; endpoint status {status}")
        failed = [e for e in dp.gw.access_log(dp.host) if e.get("DownstreamStatus") != 200]
        print(f"traefik: {len(failed)} failed, first {failed[:2]}\nlast {failed[-1:]}\n{dp.gw.logs(30)}")
        print(f"route {json.dumps(o.httproute(MODEL).get('spec'))}")
        print(f"body of a failure: {rs[bad[0]].body[:300]!r}")
        events = o.core.list_namespaced_event(o.ns).items
        print(
            "events: "
            + "; ".join(f"{e.involved_object.name} {e.reason}: {e.message}" for e in events)[-3000:]
        )
        kubelet = [ln for ln in dp.node.logs("kubelet", 400).splitlines() if o.ns in ln]
        print("kubelet: " + "\n".join(kubelet[-25:]))
    return seen


def init_log(o: Objects, version: str) -> dict[str, Any]:
    """The verify-artifact init container's JSON report of a Ready pod of ``version``."""
    pods = o.core.list_namespaced_pod(o.ns, label_selector=f"{GROUP}/version={version}").items
    ready = [
        p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    assert ready, [p.metadata.name for p in pods]
    log = o.core.read_namespaced_pod_log(ready[0].metadata.name, o.ns, container="verify-artifact")
    return dict(json.loads([ln for ln in log.splitlines() if ln.startswith("{")][-1]))


def refused_and_never_answers(dp, o: Objects, version: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    """``version`` is refused with ``reason``; the endpoint asks for it (100%), yet no Deployment is made
    for it and 1,000 requests are all answered by 1.0.0."""
    name = f"{MODEL}-v{version}"
    wait_for(lambda: cond_is(o.mv(name), "ArtifactVerified", "False", reason), 180, f"{version}: {reason}")
    verified = next(c for c in o.mv(name)["status"]["conditions"] if c["type"] == "ArtifactVerified")
    print(f"{version}: {verified['reason']}: {verified['message']}")
    o.patch_mep(MODEL, {"spec": {"variants": [{"name": "main", "version": version, "weight": 100}]}})

    def variant_refused() -> bool:
        st = o.mep(MODEL).get("status") or {}
        (v,) = st.get("variants") or [{}]
        return st.get("observedGeneration") == o.mep(MODEL)["metadata"]["generation"] and bool(
            v.get("reason")
        )

    wait_for(variant_refused, 120, f"the endpoint has seen {version} and says why it does not serve it")
    seen = thousand(dp, o, f"while the endpoint asks for {version}")
    variant = o.mep(MODEL)["status"]["variants"][0]
    print(f"variant {variant.get('reason')}")
    assert seen == Counter({(200, "1.0.0"): 1000}), seen
    assert deployments_of(o, version) == [], deployments_of(o, version)
    assert any(e.reason == reason for e in o.events(name)), [e.reason for e in o.events(name)]
    o.patch_mep(MODEL, {"spec": {"variants": [{"name": "main", "version": "1.0.0", "weight": 100}]}})


def test_signed_oci_versions_under_a_trust_policy(dp, objs, registry, tmp_path):  # type: ignore[no-untyped-def]  # noqa: F811
    release_key, release_pub = key_files(tmp_path, "release")
    stranger_key, _ = key_files(tmp_path, "stranger")
    trust_policy(objs, release_pub)

    # (a) signed by the release key: verified with its signer, rolls out, answers through Traefik
    register(registry, objs, tmp_path, "1.0.0", release_key)
    wait_for(lambda: cond_is(objs.mv(f"{MODEL}-v1.0.0"), "ArtifactVerified", "True"), 180, "1.0.0 verified")
    sig = objs.mv(f"{MODEL}-v1.0.0")["status"]["artifact"]["signature"]
    assert (sig["outcome"], sig["method"], sig["acceptedBy"]) == ("Signed", "key", f"Model {MODEL}"), sig
    assert sig["uri"].startswith(f"oci://{registry[0].netloc}/{objs.ns}/{MODEL}@sha256:"), sig
    objs.create(endpoint(dp, MODEL, MODEL, [{"name": "main", "version": "1.0.0", "weight": 100}]))
    wait_for(lambda: cond_is(objs.mep(MODEL), "Ready", "True"), 300, "1.0.0 Ready on real pods")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 answers through Traefik")
    baseline = thousand(dp, objs, "to the signed version")
    assert baseline == Counter({(200, "1.0.0"): 1000}), baseline
    report = init_log(objs, "1.0.0")  # the pod read the referrer and checked it again
    assert (report["reason"], report["signature"]["outcome"]) == ("Verified", "Signed"), report

    # (b) unsigned: SignatureMissing, no Deployment, none of 1,000 requests
    register(registry, objs, tmp_path, "1.1.0", None)
    refused_and_never_answers(dp, objs, "1.1.0", "SignatureMissing")

    # (c) re-signed by a stranger's key: SignerNotTrusted, the same way
    register(registry, objs, tmp_path, "1.2.0", stranger_key)
    refused_and_never_answers(dp, objs, "1.2.0", "SignerNotTrusted")
    wait_for(lambda: live_on(dp, {"1.0.0": 1}), 60, "1.0.0 still answers")
