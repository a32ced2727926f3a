"""The node cache's pure rules (domain.node_cache): who may read or fill an entry, and which entries
make room (least recently used, never one in use)."""

from __future__ import annotations

from typing import Any

import pytest

from modelversioning.api import wire as R
from modelversioning.domain.node_cache import Entry, Review, authorize, make_room

D = "a" * 64
OTHER = "b" * 64
TENANT = "system:serviceaccount:team-a:default"
GOOD = Review(True, TENANT, (R.NODE_CACHE_AUDIENCE,))


def mv(
    ns: str,
    sha: str,
    verified: str | None = "True",
    recorded: str | None = None,
    uri: str = "https://h/m.bin",
    **meta: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"artifact": {"digest": sha if recorded is None else recorded}}
    if verified is not None:
        status["conditions"] = [{"type": "ArtifactVerified", "status": verified}]
    return {
        "metadata": {"namespace": ns, "name": f"m-{ns}", **meta},
        "spec": {"artifact": {"sha256": sha, "uri": uri}},
        "status": status,
    }


@pytest.mark.parametrize(
    ("review", "versions", "status", "reason"),
    [
        (Review(False, error="connection refused"), [mv("team-a", D)], 503, R.CACHE_REVIEW_FAILED),
        (Review(False), [mv("team-a", D)], 401, R.CACHE_UNAUTHENTICATED),
        (Review(True, TENANT, ("https://kubernetes.default.svc",)), [mv("team-a", D)], 401,
         R.CACHE_WRONG_AUDIENCE),
        (Review(True, "alice", (R.NODE_CACHE_AUDIENCE,)), [mv("team-a", D)], 403, R.CACHE_NOT_A_POD),
        (Review(True, "system:serviceaccount::x", (R.NODE_CACHE_AUDIENCE,)), [mv("team-a", D)], 403,
         R.CACHE_NOT_A_POD),
        # a token shown at another node's agent (WrongNode); a review naming no node (before 1.30) passes
        (Review(True, TENANT, (R.NODE_CACHE_AUDIENCE,), node="node-b"), [mv("team-a", D)], 403,
         R.CACHE_WRONG_NODE),
        (Review(True, TENANT, (R.NODE_CACHE_AUDIENCE,), node="node-a"), [mv("team-a", D)], 200, ""),
        (GOOD, [], 403, R.CACHE_NO_VERSION),
        (GOOD, [mv("team-a", OTHER)], 403, R.CACHE_NO_VERSION),
        # the hostile tenant: the digest is verified, but in another namespace
        (GOOD, [mv("team-b", D)], 403, R.CACHE_NO_VERSION),
        (GOOD, [mv("team-a", D, verified="False")], 403, R.CACHE_NOT_VERIFIED),
        (GOOD, [mv("team-a", D, verified=None)], 403, R.CACHE_NOT_VERIFIED),
        # ArtifactVerified True, but what was verified is another digest (status not caught up)
        (GOOD, [mv("team-a", D, recorded=OTHER)], 403, R.CACHE_NOT_VERIFIED),
        (GOOD, [mv("team-a", D, verified="False"), mv("team-a", D)], 200, ""),
        (GOOD, [mv("team-a", D)], 200, ""),
        # a file entry is asked for: a directory version (its digest: a manifest's sha256) is no match,
        # nor a version whose kind its URI does not say (s3 key or prefix? oci://)
        (GOOD, [mv("team-a", D, uri="s3://b/dir/")], 403, R.CACHE_WRONG_KIND),
        (GOOD, [mv("team-a", D, uri="s3://b/key")], 403, R.CACHE_WRONG_KIND),
        (GOOD, [mv("team-a", D, uri="oci://r/m@sha256:" + D)], 403, R.CACHE_WRONG_KIND),
        (GOOD, [mv("team-a", D, uri="s3://b/dir/"), mv("team-a", D)], 200, ""),
        # revoked (whatever the why) or being deleted: withdrawn, even though verified
        (GOOD, [mv("team-a", D, annotations={R.REVOKED_ANNOTATION: ""})], 403, R.CACHE_WITHDRAWN),
        (GOOD, [mv("team-a", D, deletionTimestamp="2026-12-07T14:00:00Z")], 403, R.CACHE_WITHDRAWN),
        (GOOD, [mv("team-a", D, annotations={"other": "x"})], 200, ""),
    ],
)  # fmt: skip
def test_the_decision_table(review: Review, versions: list[dict[str, Any]], status: int, reason: str) -> None:
    d = authorize(review, "file", D, versions, node="node-a")
    assert (d.allowed, d.status, d.reason) == (status == 200, status, reason)
    if status == 200:
        assert (d.namespace, d.version) == ("team-a", "m-team-a")


def test_a_directory_is_asked_for_by_its_own_kind_only() -> None:
    d = authorize(GOOD, "directory", D, [mv("team-a", D, uri="https://h/x/")])
    assert (d.allowed, d.version) == (True, "m-team-a")
    d = authorize(GOOD, "directory", D, [mv("team-a", D, uri="https://h/manifest.txt")])
    assert (d.allowed, d.reason) == (False, R.CACHE_WRONG_KIND)


def test_a_verified_version_of_another_namespace_never_counts_even_beside_an_unverified_one() -> None:
    d = authorize(GOOD, "file", D, [mv("team-b", D), mv("team-a", D, verified="False")])
    assert (d.allowed, d.reason, d.namespace) == (False, R.CACHE_NOT_VERIFIED, "team-a")


# ---------------------------------------------------------------------------------------------- eviction


def test_nothing_is_evicted_while_it_fits() -> None:
    room = make_room([Entry("a", 40, 1.0), Entry("b", 40, 2.0)], limit=100, incoming=20)
    assert room.evict == () and room.fits


def test_the_least_recently_used_go_first_and_only_as_many_as_needed() -> None:
    entries = [Entry("new", 30, 9.0), Entry("old", 30, 1.0), Entry("mid", 30, 5.0)]
    assert make_room(entries, limit=100, incoming=20).evict == ("old",)
    assert make_room(entries, limit=100, incoming=50).evict == ("old", "mid")


def test_an_entry_being_served_or_written_is_never_evicted() -> None:
    entries = [Entry("old-busy", 50, 1.0, busy=True), Entry("new", 40, 5.0)]
    room = make_room(entries, limit=100, incoming=30)
    assert room.evict == ("new",) and room.fits


def test_nothing_is_evicted_when_even_every_idle_entry_would_not_make_room() -> None:
    entries = [Entry("busy", 80, 1.0, busy=True), Entry("idle", 10, 2.0)]
    room = make_room(entries, limit=100, incoming=30)
    assert room.evict == () and not room.fits
    assert make_room([], limit=100, incoming=101).fits is False


# ---------------------------------------------------------------------------------------------- render


def _rendered(serving: Any, content_digest: str = "") -> dict[str, Any]:
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.render import EndpointRef, render_deployment

    version = ModelVersionSpec.model_validate(
        {
            "model": "fraud",
            "version": "1.0.0",
            "artifact": {"uri": "https://models.example.com/fraud.bin", "sha256": D},
            "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "1"}},
            "metrics": {"auc": 0.9},
            "runtime": {"image": "ghcr.io/example/server:1"},
        }
    )
    spec = ModelEndpointSpec.model_validate(
        {"model": "fraud", "variants": [{"name": "main", "version": "1.0.0", "weight": 100}]}
    )
    ref = EndpointRef("fraud", "ml", "uid-1")
    return render_deployment(ref, spec, spec.variants[0], version, serving, content_digest=content_digest)


def test_the_cache_is_rendered_only_when_set_and_its_token_only_reaches_the_init_container() -> None:
    from modelversioning.api.settings import Serving

    off, on = _rendered(Serving()), _rendered(Serving(node_cache_port=7070))
    pod = on["spec"]["template"]["spec"]
    init, server = pod["initContainers"][0], pod["containers"][0]
    token_file = "/var/run/secrets/node-cache/token"
    assert init["args"][-4:] == [
        "--node-cache",
        "http://$(NODE_IP):7070",
        "--node-cache-token-file",
        token_file,
    ]
    assert {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}} in init["env"]
    (token,) = [v for v in pod["volumes"] if v["name"] == "node-cache-token"]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == R.NODE_CACHE_AUDIENCE
    (mount,) = [m for m in init["volumeMounts"] if m["name"] == "node-cache-token"]
    assert (
        mount["mountPath"] + "/" + token["projected"]["sources"][0]["serviceAccountToken"]["path"]
    ) == token_file
    assert "node-cache-token" not in {m["name"] for m in server["volumeMounts"]}
    assert pod["automountServiceAccountToken"] is False and not any("hostPath" in v for v in pod["volumes"])
    off_pod = off["spec"]["template"]["spec"]
    assert "--node-cache" not in off_pod["initContainers"][0]["args"]
    assert [v["name"] for v in off_pod["volumes"]] == ["model", "tmp-verify", "tmp-server"]
    assert off["metadata"]["name"] != on["metadata"]["name"]  # another pod template, another slot


def _rendered_oci(serving: Any, content_digest: str) -> dict[str, Any]:
    from modelversioning.api.modelendpoint import ModelEndpointSpec
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.render import EndpointRef, render_deployment

    version = ModelVersionSpec.model_validate(
        {
            "model": "fraud",
            "version": "1.0.0",
            "artifact": {"uri": f"oci://registry.example.com/team/fraud@sha256:{D}", "sha256": D},
            "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "1"}},
            "metrics": {"auc": 0.9},
            "runtime": {"image": "ghcr.io/example/server:1"},
        }
    )
    spec = ModelEndpointSpec.model_validate(
        {"model": "fraud", "variants": [{"name": "main", "version": "1.0.0", "weight": 100}]}
    )
    ref = EndpointRef("fraud", "ml", "uid-1")
    return render_deployment(ref, spec, spec.variants[0], version, serving, content_digest=content_digest)


def test_an_oci_pod_carries_its_verified_content_digest_or_gets_no_cache() -> None:
    """The init container checks the cache's files against the contentDigest in its own arguments,
    never the one the agent names; a version without one gets no cache rather than trust the agent."""
    from modelversioning.api.settings import Serving

    content = "e" * 64
    on = _rendered_oci(Serving(node_cache_port=7070), content)
    init = on["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][-6:] == [
        "--node-cache",
        "http://$(NODE_IP):7070",
        "--node-cache-token-file",
        "/var/run/secrets/node-cache/token",
        "--node-cache-content-digest",
        content,
    ]
    for missing in ("", "sha256:" + content, "E" * 64):
        pod = _rendered_oci(Serving(node_cache_port=7070), missing)["spec"]["template"]["spec"]
        assert not any(a.startswith("--node-cache") for a in pod["initContainers"][0]["args"])
        assert "node-cache-token" not in {v["name"] for v in pod["volumes"]}
        assert "NODE_IP" not in {e["name"] for e in pod["initContainers"][0].get("env", [])}
        assert pod == _rendered_oci(Serving(), missing)["spec"]["template"]["spec"]  # as with no cache
    # the node cache off: no digest either, whatever the version's status says
    off = _rendered_oci(Serving(), content)["spec"]["template"]["spec"]["initContainers"][0]
    assert content not in off["args"]


def test_the_content_digest_leaves_other_versions_pod_templates_as_they_were() -> None:
    """A https:// version's template is the same whatever content_digest the handler passes (it passes
    status.artifact.contentDigest, which only oci:// versions have): no Deployment re-rolls."""
    from modelversioning.api.settings import Serving

    for serving in (Serving(), Serving(node_cache_port=7070)):
        assert _rendered(serving, content_digest="e" * 64) == _rendered(serving)


def test_the_endpoint_reconcile_takes_the_content_digest_from_the_versions_status_only() -> None:
    """What the handler passes to render: the verified status.artifact.contentDigest (the operator
    writes status; the status-writers policy keeps tenants out of it), never spec or annotations."""
    from modelversioning.handlers.endpoint_inputs import version_facts

    spec = {
        "model": "fraud",
        "version": "1.0.0",
        "artifact": {"uri": f"oci://registry.example.com/team/fraud@sha256:{D}", "sha256": D},
        "lineage": {"codeCommit": "9b1e77c", "dataset": {"name": "tx", "version": "1"}},
        "metrics": {"auc": 0.9},
        "runtime": {"image": "ghcr.io/example/server:1"},
    }
    verified = {"type": "ArtifactVerified", "status": "True", "reason": "Verified"}
    body = {
        "metadata": {"name": "fraud-v1.0.0", "namespace": "ml", "uid": "u"},
        "spec": spec,
        "status": {"artifact": {"digest": D, "contentDigest": "e" * 64}, "conditions": [verified]},
    }
    facts, _, problem = version_facts(body, "ml", "fraud-v1.0.0")
    assert problem is None and facts is not None and facts.content_digest == "e" * 64
    body["status"]["artifact"] = {"digest": D}  # type: ignore[index]
    facts, _, _ = version_facts(body, "ml", "fraud-v1.0.0")
    assert facts is not None and facts.content_digest == ""


def test_an_oci_slot_prepared_while_verifying_has_no_cache_and_the_verified_one_pins_the_digest() -> None:
    """Through the endpoint reconciler: a slot is prepared while the oci:// version is being verified
    (no contentDigest yet: no cache in its pods, never the agent's word); once verified, the slot that
    takes the traffic carries the recorded contentDigest in its init container's arguments."""
    import copy

    from test_endpoint_reconciler import NS, World, _rv

    w = World(node_cache_port=7070)
    w.version("1.0.0", D, verified=False)
    body = copy.deepcopy(w.store.get("ModelVersion", NS, "m-v1.0.0"))
    body["spec"]["artifact"]["uri"] = f"oci://registry.example.com/team/m@sha256:{D}"
    body["metadata"]["resourceVersion"] = str(next(_rv))
    w.store.upsert("ModelVersion", copy.deepcopy(body))
    w.endpoint([{"name": "main", "version": "1.0.0", "weight": 100}])
    w.settle()
    (early,) = w.deployments().values()
    args = early["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert not any(a.startswith("--node-cache") for a in args)

    body["status"]["artifact"] = {"digest": D, "contentDigest": "e" * 64}
    body["status"]["conditions"] = [{"type": "ArtifactVerified", "status": "True", "reason": "Verified"}]
    body["metadata"]["resourceVersion"] = str(next(_rv))
    w.store.upsert("ModelVersion", copy.deepcopy(body))
    w.settle(6)
    (slot,) = {svc for svc, _ in w.routed().items()}
    dep = w.deployments()[slot]
    args = dep["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[args.index("--node-cache-content-digest") + 1] == "e" * 64
    assert slot != early["metadata"]["name"]
