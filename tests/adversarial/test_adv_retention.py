"""Issue 23, item 3: retention deletes only what a version provably owns.

A hostile tenant (namespace team-a) creates its own Model with ``deleteArtifactsAfter`` and
``artifactDeletion: Enabled`` and an archived ModelVersion whose URI is someone else's artifact. The
operator (``registry.allowArtifactDeletion: true``) runs the real Model reconciler on a real Store, with
the real deletion in the verifier's worker process, against a real file tree in tmp_path; every test
checks the victim's bytes are still there. As landed, every case here deleted the bytes.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
from fakes3 import FakeS3

from modelversioning.api import wire as R
from modelversioning.api.settings import ArtifactPolicy, Settings
from modelversioning.artifacts import delete_in_child, digest_local
from modelversioning.handlers.model import ModelReconciler
from modelversioning.handlers.store import Store

API = "modelversioning.io/v1alpha1"


class Kube:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[tuple[str, str, str]] = []  # (object, reason, message)

    def annotate(self, res: Any, ns: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        body["metadata"].setdefault("annotations", {}).update(annotations)
        return body

    def patch_status(self, res: Any, ns: str, name: str, status: dict[str, Any], old: Any) -> dict[str, Any]:
        body = copy.deepcopy(self.store.get(res.kind, ns, name))
        body["status"] = status
        return body

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((body["metadata"]["name"], reason, message))


def version(ns: str, name: str, uri: str, sha: str, stage: str, verified: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {
        "stage": stage,
        "history": [
            {"to": "candidate", "at": "2020-01-01T00:00:00Z"},
            {"from": "candidate", "to": stage, "at": "2020-01-02T00:00:00Z"},
        ],
    }
    if verified:
        status["artifact"] = {"digest": sha, "verifiedAt": "2020-01-01T00:00:00Z"}
        status["conditions"] = [{"type": "ArtifactVerified", "status": "True", "reason": "Verified"}]
    return {
        "apiVersion": API,
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": ns, "uid": f"{ns}-{name}", "resourceVersion": "2",
                     "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"model": name.split("-v")[0], "version": name.split("-v")[1], "stage": stage,
                 "artifact": {"uri": uri, "sha256": sha}},
        "status": status,
    }  # fmt: skip


class World:
    """team-a's hostile Model ``m`` and version ``m-v1.0.0``; team-b's production artifact."""

    def __init__(self, tmp: Path, roots: list[str] | None, max_files: int = 10000) -> None:
        self.files = tmp / "store"
        self.victim = self.files / "team-b" / "prod" / "1.0.0"
        self.victim_sha = tree(self.victim, {"weights.bin": b"team-b production", "config.json": b"{}"})
        self.store = Store()
        self.kube = Kube(self.store)
        self.store.upsert(
            "Model",
            {"apiVersion": API, "kind": "Model",
             "metadata": {"name": "m", "namespace": "team-a", "uid": "mu", "generation": 1,
                          "resourceVersion": "1"},
             "spec": {"retention": {"deleteArtifactsAfter": "0s", "keepPreviousProduction": 0,
                                    "artifactDeletion": "Enabled"}}},
        )  # fmt: skip
        self.store.upsert(
            "ModelVersion",
            version("team-b", "prod-v1.0.0", f"file://{self.victim}/", self.victim_sha, "production"),
        )
        if roots is not None:
            self.store.upsert(
                "ModelPlatformPolicy",
                {"apiVersion": API, "kind": "ModelPlatformPolicy",
                 "metadata": {"name": "platform", "uid": "p", "resourceVersion": "1"},
                 "spec": {"retention": {"storageRoots": roots}}},
            )  # fmt: skip
        settings = Settings.model_validate(
            {"registry": {"allowArtifactDeletion": True},
             "artifacts": {"fileRoots": [str(tmp)], "maxFiles": max_files, "timeoutSeconds": 20}}
        )  # fmt: skip
        self.reconciler = ModelReconciler(self.kube, self.store, settings, lambda ns, m: None)

    def hostile(self, uri: str, sha: str, verified: bool = True) -> None:
        self.store.upsert("ModelVersion", version("team-a", "m-v1.0.0", uri, sha, "archived", verified))

    def run(self) -> dict[str, Any]:
        self.reconciler.reconcile("team-a", "m")
        return dict(self.store.get("Model", "team-a", "m")["status"])

    def victim_intact(self) -> bool:
        return (self.victim / "weights.bin").read_bytes() == b"team-b production" and (
            self.victim / "config.json"
        ).exists()

    def refused(self, status: dict[str, Any]) -> str:
        assert any(r == R.ARTIFACT_DELETE_REFUSED for _, r, _ in self.kube.events), self.kube.events
        assert not any(r == R.ARTIFACT_DELETED for _, r, _ in self.kube.events), self.kube.events
        return str(status["refusedDeletions"][0]["message"])


def tree(d: Path, files: dict[str, bytes]) -> str:
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return digest_local(d).sha256


def test_another_namespaces_production_artifact_is_not_deleted(tmp_path: Path) -> None:
    w = World(tmp_path, roots=[f"file://{tmp_path}/store/{{namespace}}/"])
    w.hostile(f"file://{w.victim}/", w.victim_sha)
    why = w.refused(w.run())
    assert "not strictly under a storage root of namespace team-a" in why and w.victim_intact()
    # even with a root that covers everything, the other namespace's registered URI protects it
    w2 = World(tmp_path / "2", roots=[f"file://{tmp_path}/2/store/"])
    w2.hostile(f"file://{w2.victim}/", w2.victim_sha)
    assert "team-b/prod-v1.0.0" in w2.refused(w2.run()) and w2.victim_intact()


@pytest.mark.parametrize(
    "spelling", ["prefix", "no-slash", "registered-as-localhost", "registered-escaped", "double-slash"]
)
def test_a_prefix_or_another_spelling_of_a_registered_uri_is_refused(tmp_path: Path, spelling: str) -> None:
    w = World(tmp_path, roots=[f"file://{tmp_path}/store/"])
    registered = {  # how team-b spelled its URI
        "registered-as-localhost": f"file://localhost{w.victim}/",
        "registered-escaped": f"file://{w.victim}/".replace("/prod/", "/%70rod/"),
    }.get(spelling)
    if registered is not None:
        w.store.upsert(
            "ModelVersion", version("team-b", "prod-v1.0.0", registered, w.victim_sha, "production")
        )
    uri = {
        "prefix": f"file://{w.files}/team-b/",  # a shared prefix holding another registered URI
        "no-slash": f"file://{w.victim}",
        "double-slash": f"file://{w.victim}//",
    }.get(spelling, f"file://{w.victim}/")
    sha = digest_local(w.files / "team-b").sha256 if spelling == "prefix" else w.victim_sha
    w.hostile(uri, sha)
    why = w.refused(w.run())
    assert "team-b/prod-v1.0.0" in why, why
    assert w.victim_intact()


def test_s3a_and_s3_spellings_of_one_object_overlap() -> None:
    from modelversioning.domain.retention_owner import overlapping

    mine = "s3a://models/team-b/prod/1.0.0"
    assert overlapping(mine, [("team-b/prod", "s3://models/team-b/prod/1.0.0/")]) == ("team-b/prod",)
    assert overlapping("s3://models/team-b/", [("x", "S3N://models/team-b/prod/1.0.0")]) == ("x",)
    assert overlapping("s3://models/team-b/p", [("x", "s3://models/team-b/prod/")]) == ()


def test_the_whole_file_root_is_outside_any_root(tmp_path: Path) -> None:
    w = World(tmp_path, roots=[f"file://{tmp_path}/store/"])
    w.hostile(f"file://{tmp_path}/store/", digest_local(w.files).sha256)
    assert "not strictly under" in w.refused(w.run()) and w.victim_intact()
    w2 = World(tmp_path / "2", roots=None)  # no policy at all: nothing is deleted in the namespace
    mine = tmp_path / "2" / "store" / "team-a" / "m"
    w2.hostile(f"file://{mine}/", tree(mine, {"w.bin": b"mine"}))
    assert "no ModelPlatformPolicy" in w2.refused(w2.run()) and (mine / "w.bin").exists()


def test_a_never_verified_version_is_refused(tmp_path: Path) -> None:
    w = World(tmp_path, roots=[f"file://{tmp_path}/store/team-a/"])
    mine = w.files / "team-a" / "m" / "1.0.0"
    w.hostile(f"file://{mine}/", tree(mine, {"w.bin": b"mine"}), verified=False)
    assert "never verified" in w.refused(w.run()) and (mine / "w.bin").read_bytes() == b"mine"


def test_bytes_changed_since_the_verification_are_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    w = World(tmp_path, roots=[f"file://{tmp_path}/store/team-a/"])
    mine = w.files / "team-a" / "m" / "1.0.0"
    w.hostile(f"file://{mine}/", tree(mine, {"w.bin": b"mine", "extra/x.bin": b"x"}))
    (mine / "moved-in.bin").write_bytes(b"someone else's")  # after the verification
    why = w.refused(w.run())
    assert "no longer hash to the verified sha256" in why and "nothing deleted" in why
    assert sorted(p.name for p in mine.rglob("*.bin")) == ["moved-in.bin", "w.bin", "x.bin"]
    (mine / "moved-in.bin").unlink()  # the verified objects again: exactly those go
    w.kube.events.clear()
    w.run()
    assert not mine.exists() and (w.files / "team-a" / "m").exists() and w.victim_intact()
    assert [r for _, r, _ in w.kube.events] == [R.ARTIFACT_DELETED, R.ARTIFACT_DELETED]


def test_a_prefix_with_more_objects_than_max_files_is_refused_without_listing_them_all() -> None:
    sha = hashlib.sha256(b"anything").hexdigest()
    policy = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"], max_files=1000, timeout_seconds=20)
    with FakeS3(count=30_000) as s3:
        r = delete_in_child(
            "s3://bucket/many/", sha, policy=policy, secret_data={"AWS_ENDPOINT_URL": s3.endpoint_url}
        )
        methods = {m for m, _, _ in s3.requests}
        pages = sum(1 for m, _, p in s3.requests if "list-type" in p)
    assert not r.ok and r.refused and "artifacts.maxFiles (1000)" in r.message, r
    assert pages <= 2 and methods <= {"GET", "HEAD"}  # stopped after the page that crossed it; no delete
